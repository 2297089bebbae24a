//! `flotilla-hub init` and `serve` as a user runs them: child processes on loopback, a temp
//! data directory and a local Git configuration repository made with the git CLI (reached
//! through a URL rewrite, as a mirror would be). The human API registers clusters and applies
//! an ApplicationSet; a signed push webhook republishes exactly the targeted clusters; a bad
//! signature changes nothing; no secret reaches the hub's TRACE log.

mod support;

use support::git;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_hub::api::openapi::ROUTES;
use flotilla_shared::{PublicKey, TrustRoot};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

const FLEET: &str = "https://git.example/acme/fleet.git";
const WEBHOOK_SECRET: &str = "whsec-do-not-log-7f3a91c2";
const DEADLINE: Duration = Duration::from_secs(60);

fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
}

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

/// The hub process; killed when dropped, so a failing test leaves nothing running.
struct Serve {
    child: Child,
    base: String,
    token: String,
    stderr: PathBuf,
    client: reqwest::Client,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

struct Reply {
    status: u16,
    body: Value,
}

impl Serve {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the hub answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body }
    }

    async fn admin(&self, method: &str, path: &str, body: Option<String>) -> Reply {
        self.call(method, path, Some(&self.token.clone()), body)
            .await
    }

    async fn webhook(&self, body: &str, secret: &str) -> u16 {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.client
            .post(format!("{}/api/v1/webhook/github", self.base))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the hub answers")
            .status()
            .as_u16()
    }

    async fn generation(&self, cluster: &str) -> Option<u64> {
        let reply = self
            .admin("GET", &format!("/api/v1/clusters/{cluster}/state"), None)
            .await;
        match reply.status {
            200 => reply.body["generation"].as_u64(),
            404 => {
                assert_eq!(reply.body["error"]["code"], "no_state", "{}", reply.body);
                None
            }
            other => panic!("state of {cluster}: {other} {}", reply.body),
        }
    }

    /// Polls until `done` holds for the generations of `clusters`, or fails at the deadline.
    async fn wait_for(
        &self,
        clusters: &[&str],
        what: &str,
        done: impl Fn(&[Option<u64>]) -> bool,
    ) -> Vec<Option<u64>> {
        let start = Instant::now();
        loop {
            let mut generations = Vec::new();
            for cluster in clusters {
                generations.push(self.generation(cluster).await);
            }
            if done(&generations) {
                return generations;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: generations {generations:?} after {DEADLINE:?}; hub log tail:\n{}",
                tail(&self.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn init(data_dir: &Path) -> String {
    let out = hub()
        .args(["init", "--data-dir"])
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("runs init");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let token = stdout
        .lines()
        .find_map(|l| l.split_once("admin token").map(|(_, rest)| rest))
        .and_then(|rest| rest.rsplit(' ').next())
        .expect("init prints the admin token")
        .to_owned();
    assert!(token.starts_with("flt_"), "{stdout}");
    token
}

fn start(dir: &Path, data_dir: &Path, fleet: &Path, token: String) -> Serve {
    let stderr = dir.join("hub.log");
    let mut child = hub()
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--poll-interval",
            "1h",
            "--rewrite",
        ])
        .arg(format!("{FLEET}={}", fleet.display()))
        .env("FLOTILLA_HUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("log file"))
        .spawn()
        .expect("starts serve");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ignored = tx.send(addr.to_owned());
            }
        }
    });
    let base = match rx.recv_timeout(DEADLINE) {
        Ok(base) => base,
        Err(_) => {
            let _ignored = child.kill();
            panic!("serve did not start; log:\n{}", tail(&stderr));
        }
    };
    Serve {
        child,
        base,
        token,
        stderr,
        client: reqwest::Client::new(),
    }
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

    let hub = start(dir.path(), &data_dir, &fleet, token.clone());

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
        hub.webhook(&push_event(&after), "not-the-secret").await,
        401
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hub.wait_for(&prod, "after a bad webhook", |_| true).await,
        first,
        "a refused webhook changes nothing"
    );

    // The same push, signed: the prod clusters get a new generation, lab still has none.
    assert_eq!(hub.webhook(&push_event(&after), WEBHOOK_SECRET).await, 202);
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
