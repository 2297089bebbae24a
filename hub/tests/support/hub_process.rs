//! The hub as a user runs it: `flotilla-hub init` and `serve` as child processes on
//! loopback with a temp data directory, driven through the human API and signed push
//! webhooks. The hub logs at TRACE into a file, and every answer it gives is kept, so a test
//! can search both for secrets.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;

/// How long any wait for the hub may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
}

/// Runs `flotilla-hub init` on `data_dir`; the admin token it prints.
pub fn init(data_dir: &Path) -> String {
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

/// The hub process; killed when dropped, so a failing test leaves nothing running.
pub struct Serve {
    pub child: Child,
    pub base: String,
    /// `https://ADDR` of the agent API.
    pub agent_base: String,
    pub token: String,
    /// The hub's stderr: its log at TRACE.
    pub stderr: PathBuf,
    client: reqwest::Client,
    /// Every answer received, as `STATUS BODY`.
    answers: Mutex<Vec<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// Starts `serve` on `data_dir` (made by [`init`]) with a free port, polls an hour apart (so
/// only webhooks and API changes start rounds), `webhook_secret`, and `args`; waits until it
/// listens. Its log goes to `DIR/hub.log`.
pub fn start(
    dir: &Path,
    data_dir: &Path,
    token: String,
    webhook_secret: &str,
    args: &[String],
) -> Serve {
    let stderr = dir.join("hub.log");
    let mut child = hub()
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"])
        .args(args)
        // Only webhooks fetch, unless a test's own --poll-interval says otherwise.
        .env("FLOTILLA_HUB_POLL_INTERVAL", "1h")
        .env("FLOTILLA_HUB_WEBHOOK_SECRET", webhook_secret)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("log file"))
        .spawn()
        .expect("starts serve");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut agent = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("agent API listening on ") {
                agent = addr.to_owned();
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ignored = tx.send((addr.to_owned(), agent.clone()));
            }
        }
    });
    let (base, agent_base) = match rx.recv_timeout(DEADLINE) {
        Ok(addresses) => addresses,
        Err(_) => {
            let _ignored = child.kill();
            let _ignored = child.wait();
            panic!("serve did not start; log:\n{}", tail(&stderr));
        }
    };
    Serve {
        child,
        base,
        agent_base,
        token,
        stderr,
        client: reqwest::Client::new(),
        answers: Mutex::new(Vec::new()),
    }
}

pub fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Serve {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the hub answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{status} {}", String::from_utf8_lossy(&bytes)));
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        self.send(request).await
    }

    /// Only the status of an answer (an event stream's body never ends).
    pub async fn status(&self, method: &str, path: &str, token: Option<&str>) -> u16 {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the hub answers")
            .status()
            .as_u16()
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<String>) -> Reply {
        self.call(method, path, Some(&self.token.clone()), body)
            .await
    }

    /// Delivers a GitHub push event signed with `secret`.
    pub async fn webhook(&self, body: &str, secret: &str) -> Reply {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let request = self
            .client
            .post(format!("{}/api/v1/webhook/github", self.base))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.send(request).await
    }

    /// The latest state of `cluster` (`generation`, `state`, `envelope`, …), or `None` before
    /// its first publication.
    pub async fn state(&self, cluster: &str) -> Option<Value> {
        let reply = self
            .admin("GET", &format!("/api/v1/clusters/{cluster}/state"), None)
            .await;
        match reply.status {
            200 => Some(reply.body),
            404 => {
                assert_eq!(reply.body["error"]["code"], "no_state", "{}", reply.body);
                None
            }
            other => panic!("state of {cluster}: {other} {}", reply.body),
        }
    }

    pub async fn generation(&self, cluster: &str) -> Option<u64> {
        self.state(cluster)
            .await
            .and_then(|state| state["generation"].as_u64())
    }

    /// Polls until `done` holds for the generations of `clusters`, or fails at the deadline.
    pub async fn wait_for(
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

    /// Every answer received so far, one per line.
    pub fn answers(&self) -> String {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// The hub's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).expect("hub log")
    }
}
