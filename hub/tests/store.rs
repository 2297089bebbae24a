//! The SQLite store against a real database file, and publication through it: round trips,
//! atomic state commits, garbage collection, and rollback by pinning.

use std::path::Path;
use std::sync::Arc;

use flotilla_hub::failpoint::Failpoints;
use flotilla_hub::publish::plan::{ClusterInput, Content, DesiredApp, GeneratorFailure};
use flotilla_hub::publish::{PublishConfig, Publisher, stored_payload};
use flotilla_hub::store::{
    AppSetRecord, AppStatus, ApplicationRecord, AuditEntry, BlobBytes, ClusterRecord,
    CredentialKey, Credentials, NewState, ObjectStatus, Origin, Pin, ProjectRecord, Retention,
    SqliteStore, StatusReport, Store, StoreError, StoredState,
};
use flotilla_shared::Digest;
use flotilla_shared::state::{Source, SyncPolicy};
use flotilla_shared::testing::{config_map, key, now};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(
        &dir.join("flotilla.db"),
        CredentialKey::from_bytes([7; 32]),
        Retention {
            status_reports_per_cluster: 3,
            ..Retention::default()
        },
        Failpoints::none(),
    )
    .await
    .expect("store opens")
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: now(),
        who: "alice".to_owned(),
        action: action.to_owned(),
        subject: "shop".to_owned(),
        detail: json!({}),
        source: "api".to_owned(),
        address: "127.0.0.1:4000".to_owned(),
    }
}

#[tokio::test]
async fn records_round_trip_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await;
    let mut cluster = ClusterRecord::new("east", now());
    cluster.labels.insert("env".to_owned(), "prod".to_owned());
    cluster.api_versions = vec!["apps/v1".to_owned()];
    cluster.last_seen = Some(now());
    store.put_cluster(&cluster).await.expect("put");
    let app = ApplicationRecord {
        name: "shop".to_owned(),
        project: "default".to_owned(),
        spec: json!({"spec": {"source": {"path": "deploy"}}}),
        origin: Origin::Api,
        created_at: now(),
        updated_at: now(),
    };
    store.put_application(&app).await.expect("put");
    let set = AppSetRecord {
        name: "guestbook".to_owned(),
        spec: json!({"spec": {}}),
        origin: Origin::Config,
        generated: vec![],
        generator_error: None,
        created_at: now(),
        updated_at: now(),
    };
    store.put_app_set(&set).await.expect("put");
    let names = vec!["guestbook-east".to_owned()];
    store
        .record_generation("guestbook", Ok(&names), now())
        .await
        .expect("ok");
    store
        .record_generation("guestbook", Err("git generator: unreachable"), now())
        .await
        .expect("recorded");
    store.record_audit(&audit("apply")).await.expect("audit");
    store.close().await;

    let store = open(dir.path()).await;
    assert_eq!(store.cluster("east").await.expect("read"), Some(cluster));
    assert_eq!(store.applications().await.expect("read"), vec![app]);
    let set = store
        .app_set("guestbook")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        set.generated, names,
        "a failed generation keeps the last names"
    );
    assert_eq!(
        set.generator_error.as_deref(),
        Some("git generator: unreachable")
    );
    assert_eq!(store.audit_log(10).await.expect("read")[0].action, "apply");
    assert!(store.delete_cluster("east").await.expect("delete"));
    assert!(!store.delete_cluster("east").await.expect("delete"));
}

#[tokio::test]
async fn projects_are_stored_replaced_and_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await;
    let project = |origin, dest: &str| ProjectRecord {
        name: "shop".to_owned(),
        spec: json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "shop"}, "spec": {"destinations": [{"namespace": dest}]}}),
        origin,
        created_at: now(),
        updated_at: now(),
    };
    store
        .put_project(&project(Origin::Api, "shop"))
        .await
        .expect("put");
    store
        .put_project(&project(Origin::Config, "shop-*"))
        .await
        .expect("replace");
    store.close().await;
    let store = open(dir.path()).await;
    let projects = store.projects().await.expect("list");
    assert_eq!(projects.len(), 1, "a project survives a restart, once");
    assert_eq!(projects[0].origin, Origin::Config);
    assert_eq!(
        projects[0].spec["spec"]["destinations"][0]["namespace"],
        "shop-*"
    );
    assert!(store.delete_project("shop").await.expect("delete"));
    assert!(!store.delete_project("shop").await.expect("delete"));
    assert!(store.projects().await.expect("list").is_empty());
}

#[tokio::test]
async fn credentials_are_sealed_and_only_the_fetcher_gets_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await;
    let url = "https://git.example/shop.git";
    let secret = Credentials::new(b"ghp_s3cr3tT0ken".to_vec());
    store
        .put_repository(url, Some(&secret), None, now())
        .await
        .expect("put");
    store
        .put_repository(
            "/srv/local",
            None,
            Some(std::time::Duration::from_secs(300)),
            now(),
        )
        .await
        .expect("put");
    let listed = store.repositories().await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.poll_interval).collect::<Vec<_>>(),
        [Some(std::time::Duration::from_secs(300)), None],
        "each repository keeps its own poll interval"
    );
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.url.as_str(), r.has_credentials))
            .collect::<Vec<_>>(),
        [("/srv/local", false), (url, true)]
    );
    let opened = store
        .repository_credentials(url)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(opened.expose(), b"ghp_s3cr3tT0ken");
    assert!(format!("{listed:?}{opened:?}").find("s3cr3t").is_none());
    store.close().await;
    // Nothing on disk holds the plaintext.
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        // SQLite may still remove its -wal/-shm files after `close` returns.
        let bytes = match std::fs::read(entry.expect("entry").path()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            read => read.expect("read"),
        };
        assert!(!bytes.windows(6).any(|w| w == b"s3cr3t"));
    }
    // Another data directory's key cannot open them.
    let other = SqliteStore::open(
        &dir.path().join("flotilla.db"),
        CredentialKey::from_bytes([8; 32]),
        Retention::default(),
        Failpoints::none(),
    )
    .await
    .expect("opens");
    let err = other
        .repository_credentials(url)
        .await
        .expect_err("wrong key");
    assert!(!err.to_string().contains("s3cr3t"));
}

fn stored(cluster: &str, generation: u64) -> StoredState {
    StoredState {
        cluster: cluster.to_owned(),
        generation,
        envelope: b"{}".to_vec(),
        payload_digest: Digest::of(b"{}"),
        issued_at: now(),
        expires_at: now() + SignedDuration::from_hours(24),
        published_by: "test".to_owned(),
    }
}

#[tokio::test]
async fn a_state_commit_is_all_or_nothing_and_generations_only_rise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await;
    let blob = BlobBytes {
        digest: Digest::of(b"blob"),
        bytes: b"blob".to_vec(),
    };
    store
        .put_blobs(&[blob.clone(), blob.clone()], now())
        .await
        .expect("idempotent");
    let ok = NewState {
        state: stored("east", 10),
        blobs: vec![("shop".to_owned(), blob.digest)],
        deployed: vec![],
    };
    store.commit_state(&ok).await.expect("stored");

    // A blob that is not stored: nothing of the state is written.
    let missing = NewState {
        state: stored("east", 11),
        blobs: vec![
            ("shop".to_owned(), blob.digest),
            ("db".to_owned(), Digest::of(b"x")),
        ],
        deployed: vec![],
    };
    let err = store.commit_state(&missing).await.expect_err("refused");
    assert!(matches!(err, StoreError::MissingBlob { .. }), "{err}");
    assert_eq!(
        store
            .latest_state("east")
            .await
            .expect("read")
            .expect("some")
            .generation,
        10
    );

    for generation in [10, 9] {
        let err = store
            .commit_state(&NewState {
                state: stored("east", generation),
                ..ok.clone()
            })
            .await
            .expect_err("not increasing");
        assert!(
            matches!(err, StoreError::GenerationNotIncreasing { latest: 10, .. }),
            "{err}"
        );
    }
    // The blob is reachable only by the cluster whose state names it.
    assert!(
        store
            .cluster_blob("east", &blob.digest)
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        store
            .cluster_blob("west", &blob.digest)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn status_reports_replace_the_latest_and_keep_a_bounded_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await;
    let report = |seq: u64, health: &str| StatusReport {
        cluster: "east".to_owned(),
        seq,
        received_at: now(),
        apps: vec![AppStatus {
            app: "shop".to_owned(),
            generation: Some(5),
            revision: Some("c1".to_owned()),
            sync: "Synced".to_owned(),
            health: health.to_owned(),
            message: String::new(),
            objects: vec![ObjectStatus {
                object: "Deployment.apps shop/web".to_owned(),
                state: health.to_owned(),
                message: String::new(),
            }],
        }],
        raw: json!({"seq": seq}),
    };
    for seq in 1..=5 {
        assert!(
            store
                .record_status(&report(seq, "Progressing"))
                .await
                .expect("recorded")
        );
    }
    assert!(
        store
            .record_status(&report(6, "Healthy"))
            .await
            .expect("recorded")
    );
    assert!(
        !store
            .record_status(&report(6, "Degraded"))
            .await
            .expect("duplicate")
    );
    assert!(
        !store
            .record_status(&report(2, "Degraded"))
            .await
            .expect("old")
    );
    let statuses = store.app_statuses("east").await.expect("read");
    assert_eq!(statuses, report(6, "Healthy").apps);
    let history = store.status_history("east", 10).await.expect("read");
    assert_eq!(history.iter().map(|h| h.seq).collect::<Vec<_>>(), [6, 5, 4]);
}

fn app(revision: &str, objects: &[&str]) -> DesiredApp {
    DesiredApp {
        name: "shop".to_owned(),
        namespace: "shop".to_owned(),
        source: Source {
            repo_url: "https://git.example/shop.git".to_owned(),
            path: "deploy".to_owned(),
            revision: revision.to_owned(),
        },
        sync_policy: SyncPolicy::default(),
        limits: None,
        ignore_differences: Vec::new(),
        content: Content::Rendered(Arc::from(
            objects
                .iter()
                .map(|o| config_map("shop", o))
                .collect::<Vec<_>>(),
        )),
    }
}

fn clusters(revision: &str, objects: &[&str]) -> Vec<ClusterInput> {
    ["east", "west"]
        .iter()
        .map(|c| ClusterInput {
            apps: vec![app(revision, objects)],
            ..ClusterInput::new(c)
        })
        .collect()
}

async fn served(publisher: &Publisher<SqliteStore>, cluster: &str) -> (u64, String, Digest) {
    let stored = publisher
        .store()
        .latest_state(cluster)
        .await
        .expect("read")
        .expect("some");
    let state = stored_payload(&stored).expect("readable");
    let app = state.app("shop").expect("shop");
    (
        state.generation,
        app.source.revision.clone(),
        app.blob.digest,
    )
}

#[tokio::test]
async fn pinning_publishes_the_old_blob_until_unpinned_and_gc_follows_references() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await;
    let config = PublishConfig {
        blob_grace: SignedDuration::ZERO,
        ..PublishConfig::default()
    };
    let publisher = Publisher::new(store, key(1), config, Failpoints::none());
    let mut wake = publisher.watchers().subscribe("east");
    let t = |mins: i64| now() + SignedDuration::from_mins(mins);

    let report = publisher
        .publish(clusters("c1", &["a"]), "webhook", t(0))
        .await
        .expect("publishes");
    assert_eq!(
        report.blobs_written, 1,
        "identical renders on two clusters are one blob"
    );
    let (g1, _, d1) = served(&publisher, "east").await;
    assert!(wake.has_changed().expect("open"));
    assert_eq!(*wake.borrow_and_update(), g1);

    publisher
        .publish(clusters("c2", &["a", "b"]), "webhook", t(1))
        .await
        .expect("publishes");
    let (g2, rev, d2) = served(&publisher, "east").await;
    assert_eq!(rev, "c2");
    assert!(g2 > g1 && d2 != d1);
    let history = publisher
        .store()
        .history("shop", 10)
        .await
        .expect("history");
    assert_eq!(
        history.len(),
        4,
        "two revisions on two clusters: {history:?}"
    );
    assert_eq!(history[0].deployed_by, "webhook");

    // Nothing changed: nothing is published.
    let report = publisher
        .publish(clusters("c2", &["a", "b"]), "poll", t(2))
        .await
        .expect("ok");
    assert!(report.clusters.iter().all(|c| !c.published));

    // A revision never deployed cannot be pinned.
    let never = Pin {
        app: "shop".to_owned(),
        cluster: None,
        revision: "c9".to_owned(),
        pinned_by: "alice".to_owned(),
        pinned_at: t(3),
    };
    let err = publisher
        .store()
        .pin(&never, &audit("pin"))
        .await
        .expect_err("not in history");
    assert_eq!(
        err.to_string(),
        "pin application shop: revision c9 was never deployed"
    );

    // Pin east only to c1: east gets the old blob, west keeps the latest.
    let pin = Pin {
        cluster: Some("east".to_owned()),
        revision: "c1".to_owned(),
        ..never
    };
    publisher
        .store()
        .pin(&pin, &audit("pin"))
        .await
        .expect("pinned");
    publisher
        .publish(clusters("c2", &["a", "b"]), "pin", t(3))
        .await
        .expect("publishes");
    let (g3, rev, digest) = served(&publisher, "east").await;
    assert!(g3 > g2);
    assert_eq!((rev.as_str(), digest), ("c1", d1));
    assert_eq!(served(&publisher, "west").await.2, d2);

    // Automated sync of a new commit leaves the pin alone.
    publisher
        .publish(clusters("c3", &["a", "b", "c"]), "webhook", t(4))
        .await
        .expect("ok");
    assert_eq!(served(&publisher, "east").await.2, d1);
    let (_, rev, d3) = served(&publisher, "west").await;
    assert_eq!(rev, "c3");

    // c2's blob is still named by history, so it survives collection.
    assert!(publisher.store().blob(&d2).await.expect("read").is_some());

    // Unpin: back to the latest.
    assert!(
        publisher
            .store()
            .unpin("shop", Some("east"), &audit("unpin"))
            .await
            .expect("ok")
    );
    publisher
        .publish(clusters("c3", &["a", "b", "c"]), "unpin", t(5))
        .await
        .expect("ok");
    assert_eq!(served(&publisher, "east").await.2, d3);
    let actions: Vec<String> = publisher
        .store()
        .audit_log(10)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["unpin", "pin"]);

    // Blobs no state or history names are collected; named ones never.
    let orphan = BlobBytes {
        digest: Digest::of(b"orphan"),
        bytes: b"orphan".to_vec(),
    };
    publisher
        .store()
        .put_blobs(std::slice::from_ref(&orphan), t(5))
        .await
        .expect("put");
    assert_eq!(
        publisher.store().collect_garbage(t(5)).await.expect("gc"),
        0,
        "too young"
    );
    assert_eq!(
        publisher.store().collect_garbage(t(6)).await.expect("gc"),
        1
    );
    for digest in [d1, d2, d3] {
        assert!(
            publisher
                .store()
                .blob(&digest)
                .await
                .expect("read")
                .is_some()
        );
    }
}

#[tokio::test]
async fn a_failing_generator_keeps_apps_and_problems_are_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let publisher = Publisher::new(
        open(dir.path()).await,
        key(1),
        PublishConfig::default(),
        Failpoints::none(),
    );
    publisher
        .publish(clusters("c1", &["a"]), "webhook", now())
        .await
        .expect("ok");
    let (g1, _, d1) = served(&publisher, "east").await;
    let mut east = ClusterInput::new("east");
    east.generator_failures.push(GeneratorFailure {
        app_set: "shop-set".to_owned(),
        error: "git directory generator: repository https://git.example/x.git is unreachable"
            .to_owned(),
        previous_apps: vec!["shop".to_owned()],
    });
    let report = publisher
        .publish(vec![east], "poll", now() + SignedDuration::from_mins(1))
        .await
        .expect("ok");
    assert!(
        !report.clusters[0].published,
        "the same content is not re-published"
    );
    assert_eq!(served(&publisher, "east").await, (g1, "c1".to_owned(), d1));
    let problems = publisher.store().problems("east").await.expect("read");
    assert_eq!(problems.len(), 1);
    assert!(problems[0].kept && problems[0].message.contains("unreachable"));
}

#[tokio::test]
async fn resign_renews_states_at_half_their_lifetime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let publisher = Publisher::new(
        open(dir.path()).await,
        key(1),
        PublishConfig::default(),
        Failpoints::none(),
    );
    let start = Timestamp::now();
    publisher
        .publish(clusters("c1", &["a"]), "webhook", start)
        .await
        .expect("ok");
    let (g1, _, d1) = served(&publisher, "east").await;
    assert!(
        publisher
            .resign_due(start + SignedDuration::from_hours(11))
            .await
            .expect("ok")
            .is_empty()
    );
    let renewed = publisher
        .resign_due(start + SignedDuration::from_hours(12))
        .await
        .expect("ok");
    assert_eq!(renewed, ["east", "west"]);
    let (g2, _, d2) = served(&publisher, "east").await;
    assert!(g2 > g1);
    assert_eq!(d1, d2);
}
