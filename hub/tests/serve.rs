//! `flotilla-hub init` and `serve` as a user runs them: child processes on loopback, a temp
//! data directory and a local Git configuration repository made with the git CLI (reached
//! through a URL rewrite, as a mirror would be). The human API registers clusters and applies
//! an ApplicationSet; a signed push webhook republishes exactly the targeted clusters; a bad
//! signature changes nothing; no secret reaches the hub's TRACE log.

mod support;

use support::git;
use support::hub_process::{DEADLINE, Serve, hub, init, start, tail};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_hub::api::openapi::ROUTES;
use flotilla_shared::{PublicKey, TrustRoot};
use serde_json::json;

const FLEET: &str = "https://git.example/acme/fleet.git";
const WEBHOOK_SECRET: &str = "whsec-do-not-log-7f3a91c2";

fn commit_config(repo: &Path, greeting: &str) -> String {
    let dir = repo.join("apps/web");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web, namespace: web}}\ndata: {{greeting: {greeting}}}\n"
        ),
    )
    .expect("write");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", greeting]);
    git(repo, &["rev-parse", "HEAD"])
}

const APP_SET: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web, targetRevision: main}
      destination: {name: '{{name}}', namespace: web}
      syncPolicy: {automated: {}}
";

fn start_serve(dir: &Path, data_dir: &Path, fleet: &Path, token: String) -> Serve {
    let rewrite = format!("{FLEET}={}", fleet.display());
    start(
        dir,
        data_dir,
        token,
        WEBHOOK_SECRET,
        &["--rewrite".to_owned(), rewrite],
    )
}

fn push_event(after: &str) -> String {
    json!({
        "ref": "refs/heads/main",
        "after": after,
        "repository": {
            "clone_url": FLEET,
            "ssh_url": "git@git.example:acme/fleet.git",
            "html_url": "https://git.example/acme/fleet"
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_and_serve_publish_what_the_api_and_webhooks_say() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet).expect("mkdir");
    git(&fleet, &["init", "-q"]);
    commit_config(&fleet, "hello");

    let data_dir = dir.path().join("data");
    let token = init(&data_dir);
    // A second init never overwrites the data directory.
    let again = hub()
        .args(["init", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("runs init");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let public_key = PublicKey::from_spki_pem(
        &std::fs::read_to_string(data_dir.join("signing.pub")).expect("public key"),
    )
    .expect("SPKI");

    let hub = start_serve(dir.path(), &data_dir, &fleet, token.clone());

    // Health needs no token; everything else does, and says so with the error object.
    assert_eq!(hub.call("GET", "/healthz", None, None).await.status, 200);
    let refused = hub.call("GET", "/api/v1/clusters", None, None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["code"], "unauthorized");
    assert!(refused.body["error"]["message"].is_string());
    let wrong = hub
        .call("GET", "/api/v1/clusters", Some("flt_wrong"), None)
        .await;
    assert_eq!(wrong.status, 401);

    // The OpenAPI document lists every route.
    let doc = hub.admin("GET", "/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    for route in ROUTES {
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(
            doc.body["paths"][route.path][&method].is_object(),
            "{} {} is missing from the document",
            route.method,
            route.path
        );
    }

    // Unknown fields are refused, naming the field.
    let unknown = hub
        .admin(
            "POST",
            "/api/v1/clusters",
            Some(r#"{"name": "x", "labls": {"env": "prod"}}"#.to_owned()),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert_eq!(unknown.body["error"]["code"], "invalid_request");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("labls"),
        "{}",
        unknown.body
    );

    for (name, env) in [("prod-east", "prod"), ("prod-west", "prod"), ("lab", "dev")] {
        let reply = hub
            .admin(
                "POST",
                "/api/v1/clusters",
                Some(json!({"name": name, "labels": {"env": env}, "server": format!("https://{name}.example:6443")}).to_string()),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let listed = hub.admin("GET", "/api/v1/clusters", None).await;
    assert_eq!(
        listed.body["clusters"].as_array().expect("clusters").len(),
        3
    );

    let applied = hub
        .admin("POST", "/api/v1/apply", Some(APP_SET.to_owned()))
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(applied.body["applied"][0]["kind"], "ApplicationSet");
    assert!(applied.body["warnings"].is_array());

    let prod = ["prod-east", "prod-west"];
    let first = hub
        .wait_for(&prod, "first publication", |g| {
            g.iter().all(Option::is_some)
        })
        .await;
    for cluster in prod {
        let reply = hub
            .admin("GET", &format!("/api/v1/clusters/{cluster}/state"), None)
            .await;
        let envelope = serde_json::to_vec(&reply.body["envelope"]).expect("JSON");
        let verified = flotilla_shared::verify(
            &envelope,
            &TrustRoot::new([public_key.clone()]),
            cluster,
            None,
            jiff::Timestamp::now(),
        )
        .unwrap_or_else(|e| panic!("the state of {cluster} verifies: {e}"));
        let app = format!("web-{cluster}");
        assert!(verified.state.app(&app).is_some(), "{cluster} runs {app}");
        assert_eq!(reply.body["state"]["cluster"], cluster);
    }
    assert_eq!(hub.generation("lab").await, None, "lab is not prod");
    let app = hub
        .admin("GET", "/api/v1/applications/web-prod-east", None)
        .await;
    assert_eq!(app.status, 200, "{}", app.body);
    assert_eq!(app.body["generatedBy"][0], "web");

    // A push, announced with a bad signature: refused, and nothing moves.
    let after = commit_config(&fleet, "bonjour");
    assert_eq!(
        hub.webhook(&push_event(&after), "not-the-secret")
            .await
            .status,
        401
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hub.wait_for(&prod, "after a bad webhook", |_| true).await,
        first,
        "a refused webhook changes nothing"
    );

    // The same push, signed: the prod clusters get a new generation, lab still has none.
    assert_eq!(
        hub.webhook(&push_event(&after), WEBHOOK_SECRET)
            .await
            .status,
        202
    );
    let second = hub
        .wait_for(&prod, "publication after the webhook", |g| {
            g.iter().zip(&first).all(|(now, before)| now > before)
        })
        .await;
    assert!(second.iter().all(Option::is_some));
    let reply = hub
        .admin("GET", "/api/v1/clusters/prod-east/state", None)
        .await;
    assert_eq!(
        reply.body["state"]["apps"][0]["source"]["revision"], after,
        "{}",
        reply.body
    );
    assert_eq!(hub.generation("lab").await, None);

    // SIGTERM stops the hub cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &hub.child.id().to_string()])
        .status()
        .expect("runs kill");
    assert!(status.success());
    let mut hub = hub;
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = hub.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(start.elapsed() < DEADLINE, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        exit.success(),
        "serve exits cleanly: {exit}; log:\n{}",
        tail(&hub.stderr)
    );

    let log = std::fs::read_to_string(&hub.stderr).expect("log");
    assert!(log.contains("request served"), "requests are logged at all");
    assert!(!log.contains(&token), "the admin token is in the hub's log");
    assert!(
        !log.contains(WEBHOOK_SECRET),
        "the webhook secret is in the hub's log"
    );
}

/// An Application of `repo` (a URL the hub rewrites to a local path) on cluster east.
fn application(name: &str, repo: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}}}
spec:
  project: default
  source: {{repoURL: '{repo}', path: apps/web}}
  destination: {{name: east, namespace: web}}
  syncPolicy: {{automated: {{}}}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_repository_is_polled_at_its_own_interval_without_webhooks() {
    const FAST: &str = "https://git.example/acme/fast.git";
    const SLOW: &str = "https://git.example/acme/slow.git";
    let dir = tempfile::tempdir().expect("temp dir");
    let mut heads = Vec::new();
    for name in ["fast", "slow"] {
        let repo = dir.path().join(name);
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q"]);
        heads.push(commit_config(&repo, "hello"));
    }
    let data_dir = dir.path().join("data");
    let token = init(&data_dir);
    let rewrite =
        |url: &str, name: &str| format!("--rewrite={url}={}", dir.path().join(name).display());
    // Every repository is polled each second unless it says otherwise.
    let hub = start(
        dir.path(),
        &data_dir,
        token,
        WEBHOOK_SECRET,
        &[
            rewrite(FAST, "fast"),
            rewrite(SLOW, "slow"),
            "--poll-interval=1s".to_owned(),
            "--poll-jitter=200ms".to_owned(),
        ],
    );
    let slow = hub
        .admin(
            "PUT",
            "/api/v1/repositories",
            Some(json!({"url": SLOW, "pollInterval": "1h"}).to_string()),
        )
        .await;
    assert_eq!(slow.status, 201, "{}", slow.body);
    assert_eq!(slow.body["pollInterval"], "3600s");
    let cluster = hub
        .admin(
            "POST",
            "/api/v1/clusters",
            Some(json!({"name": "east"}).to_string()),
        )
        .await;
    assert_eq!(cluster.status, 201, "{}", cluster.body);
    let applied = hub
        .admin(
            "POST",
            "/api/v1/apply",
            Some(format!(
                "{}---\n{}",
                application("fast", FAST),
                application("slow", SLOW)
            )),
        )
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);

    let revisions = |state: &serde_json::Value| -> (String, String) {
        let revision = |app: &str| {
            state["state"]["apps"]
                .as_array()
                .and_then(|apps| apps.iter().find(|a| a["name"] == app))
                .and_then(|a| a["source"]["revision"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        (revision("fast"), revision("slow"))
    };
    let started = Instant::now();
    loop {
        let state = hub.state("east").await.unwrap_or_default();
        if revisions(&state) == (heads[0].clone(), heads[1].clone()) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "first state: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Both repositories move; no webhook says so.
    let fast_head = commit_config(&dir.path().join("fast"), "fast news");
    commit_config(&dir.path().join("slow"), "slow news");
    let started = Instant::now();
    let state = loop {
        let state = hub.state("east").await.unwrap_or_default();
        if revisions(&state).0 == fast_head {
            break state;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the fast repository's poll should land {fast_head}: {state}; log:\n{}",
            tail(&hub.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A few more fast polls pass; the slow repository waits for its hour.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = hub.state("east").await.unwrap_or_default();
    assert_eq!(revisions(&later).1, heads[1], "the slow one is not fetched");
    assert_eq!(revisions(&state).1, heads[1]);
    let log = hub.log();
    assert!(log.contains("poll scheduled"), "the scheduler ran");
}
