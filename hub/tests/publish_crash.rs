//! Crash safety of publication: a child process (this test binary, re-run) publishes a new
//! state with one failpoint enabled and aborts there; the parent then reopens the SQLite
//! store and checks that what is served is the old state or the complete new one, that it
//! verifies, that every blob it names is stored with the right digest, and that no
//! generation goes backwards.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use clap::Parser as _;
use flotilla_hub::failpoint::{self, FailpointArgs, Failpoints};
use flotilla_hub::publish::plan::{ClusterInput, Content, DesiredApp};
use flotilla_hub::publish::{PublishConfig, Publisher, stored_payload};
use flotilla_hub::store::{CredentialKey, Retention, SqliteStore, Store};
use flotilla_shared::state::{Source, SyncPolicy};
use flotilla_shared::testing::{config_map, key, trust};
use jiff::Timestamp;

const CHILD_DB: &str = "FLOTILLA_CRASH_TEST_DB";
const CLUSTERS: [&str; 3] = ["east", "west", "north"];

#[derive(clap::Parser)]
struct ChildArgs {
    #[command(flatten)]
    failpoints: FailpointArgs,
}

fn inputs(revision: &str) -> Vec<ClusterInput> {
    CLUSTERS
        .iter()
        .map(|cluster| ClusterInput {
            apps: vec![DesiredApp {
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
                content: Content::Rendered(Arc::from(vec![
                    config_map("shop", revision),
                    config_map("shop", cluster),
                ])),
            }],
            ..ClusterInput::new(cluster)
        })
        .collect()
}

async fn open(db: &Path, failpoints: Failpoints) -> anyhow::Result<SqliteStore> {
    Ok(SqliteStore::open(
        db,
        CredentialKey::from_bytes([1; 32]),
        Retention::default(),
        failpoints,
    )
    .await?)
}

async fn publish(db: &Path, revision: &str, failpoints: Failpoints) -> anyhow::Result<()> {
    let store = open(db, failpoints.clone()).await?;
    let publisher = Publisher::new(store, key(1), PublishConfig::default(), failpoints);
    publisher
        .publish(inputs(revision), "test", Timestamp::now())
        .await?;
    publisher.store().close().await;
    Ok(())
}

/// The child's side: runs only when the parent set the database path.
#[tokio::test]
async fn child_publishes_with_failpoints() -> anyhow::Result<()> {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return Ok(());
    };
    let args = ChildArgs::try_parse_from(["child"])?;
    publish(Path::new(&db), "v2", args.failpoints.failpoints()?).await
}

/// Latest generation per cluster, after checking each served state.
async fn check_served(db: &Path, revisions: &[&str]) -> anyhow::Result<Vec<(u64, String)>> {
    let store = open(db, Failpoints::none()).await?;
    let mut out = Vec::new();
    for cluster in CLUSTERS {
        let stored = store
            .latest_state(cluster)
            .await?
            .ok_or_else(|| anyhow::anyhow!("cluster {cluster} has no state"))?;
        let verified = flotilla_shared::verify(
            &stored.envelope,
            &trust(&[&key(1)]),
            cluster,
            None,
            Timestamp::now(),
        )?;
        assert_eq!(verified.state.generation, stored.generation);
        assert_eq!(verified.payload_digest, stored.payload_digest);
        assert_eq!(stored_payload(&stored)?, verified.state);
        let app = verified.state.app("shop").expect("shop is served");
        let bytes = store
            .cluster_blob(cluster, &app.blob.digest)
            .await?
            .ok_or_else(|| anyhow::anyhow!("blob of {cluster} is missing"))?;
        flotilla_shared::verify_blob(app, &bytes)?;
        assert!(
            revisions.contains(&app.source.revision.as_str()),
            "{cluster} serves {}",
            app.source.revision
        );
        out.push((stored.generation, app.source.revision.clone()));
    }
    store.close().await;
    Ok(out)
}

#[tokio::test]
async fn a_crash_at_any_failpoint_never_serves_a_half_published_state() -> anyhow::Result<()> {
    for point in failpoint::ALL {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("flotilla.db");
        publish(&db, "v1", Failpoints::none()).await?;
        let before = check_served(&db, &["v1"]).await?;

        let child = Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "child_publishes_with_failpoints",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_DB, &db)
            .env("FLOTILLA_HUB_FAILPOINTS", point)
            .output()?;
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt as _;
            assert_eq!(
                child.status.signal(),
                Some(6),
                "{point}: the child must abort at the failpoint: {}",
                String::from_utf8_lossy(&child.stderr)
            );
        }
        assert!(!child.status.success(), "{point}: the child must abort");

        let after = check_served(&db, &["v1", "v2"]).await?;
        for ((old, _), (new, revision)) in before.iter().zip(&after) {
            assert!(new >= old, "{point}: generation went backwards");
            if *point == failpoint::AFTER_COMMIT {
                // The first cluster's state was committed before the abort.
                continue;
            }
            assert_eq!(revision, "v1", "{point}: nothing new can be served");
            assert_eq!(new, old, "{point}");
        }
        if *point == failpoint::AFTER_COMMIT {
            assert_eq!(after[0].1, "v2", "the committed state is served");
        }

        // The hub restarts and publishes again: everything converges, generations rise.
        publish(&db, "v2", Failpoints::none()).await?;
        let recovered = check_served(&db, &["v2"]).await?;
        for ((old, _), (new, _)) in after.iter().zip(&recovered) {
            assert!(
                new >= old,
                "{point}: generation went backwards after restart"
            );
        }
    }
    Ok(())
}
