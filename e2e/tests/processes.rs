//! The real processes the fleet-level tests run: `flotilla-hub init` and `serve` over a
//! local Git repository (its API, its CLI, a signed webhook) and any child process whose
//! ready line a test waits for, each killed when dropped. `fleet` and `chart` share them.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_e2e::binary;
use serde_json::{Value, json};

/// The URL the tests' manifests are published under; the hub rewrites it to the local
/// repository (`--rewrite`).
pub const FLEET: &str = "https://git.example/acme/fleet.git";
pub const WEBHOOK_SECRET: &str = "whsec-fleet-e2e";

pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Flotilla Test",
            "-c",
            "user.email=test@flotilla.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .with_context(|| format!("git {args:?}"))?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

pub fn commit(repo: &Path, message: &str) -> anyhow::Result<String> {
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", message])?;
    git(repo, &["rev-parse", "HEAD"])
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process, killed when dropped.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

impl Process {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(mut self) {
        let _ignored = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ignored = self.child.kill();
    }
}

/// Spawns `command` with its stderr in `log`, and returns the first stdout line that
/// starts with `prefix` (the rest of it).
pub fn spawn(
    mut command: Command,
    log: PathBuf,
    prefix: &str,
) -> anyhow::Result<(Process, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("spawn")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix(&wanted) {
                let _ignored = tx.send(rest.to_owned());
            }
        }
    });
    let process = Process { child, log };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => Ok((process, rest)),
        Err(_) => bail!("no {prefix:?} line; log:\n{}", process.log()),
    }
}

/// Spawns `command` with its stdout and stderr in `log`, for a process that prints no ready
/// line (the caller polls it instead).
pub fn spawn_logged(mut command: Command, log: PathBuf) -> anyhow::Result<Process> {
    let file = std::fs::File::create(&log)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("spawn")?;
    Ok(Process { child, log })
}

impl Process {
    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// (application, cluster) → (revision, sync, health).
pub type Deployments = BTreeMap<(String, String), (String, String, String)>;

/// A `flotilla-hub` with its data directory, serving [`FLEET`] from `repo`.
pub struct Hub {
    process: Option<Process>,
    /// The human API, `http://127.0.0.1:PORT`, once started.
    pub base: String,
    /// The admin token `init` printed.
    pub token: String,
    /// Where the logs (and the CLI's config) go.
    pub dir: PathBuf,
    /// The data directory: `ca.crt` (the agent API's CA) and `signing.pub` among others.
    pub data: PathBuf,
    agent_port: u16,
    repo: PathBuf,
    starts: u32,
}

impl Hub {
    /// Runs `flotilla-hub init` in `dir/data`; the hub is not started yet. Its agent API gets
    /// a fixed free port, so agents reach it at the same URL across restarts.
    pub fn init(dir: &Path, repo: &Path) -> anyhow::Result<Hub> {
        let data = dir.join("data");
        let init = Command::new(binary("flotilla-hub")?)
            .args(["init", "--data-dir"])
            .arg(&data)
            .output()?;
        anyhow::ensure!(
            init.status.success(),
            "init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let token = String::from_utf8(init.stdout)?
            .lines()
            .find_map(|l| {
                l.split_once("admin token")
                    .map(|(_, r)| r.trim().rsplit(' ').next().map(str::to_owned))
            })
            .flatten()
            .context("init prints the admin token")?;
        Ok(Hub {
            process: None,
            base: String::new(),
            token,
            dir: dir.to_owned(),
            data,
            agent_port: free_port()?,
            repo: repo.to_owned(),
            starts: 0,
        })
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let mut command = Command::new(binary("flotilla-hub")?);
        command
            .args(["serve", "--data-dir"])
            .arg(&self.data)
            .args(["--listen", "127.0.0.1:0"])
            .arg(format!("--agent-listen=127.0.0.1:{}", self.agent_port))
            .arg(format!("--rewrite={FLEET}={}", self.repo.display()))
            .args(["--poll-interval", "1h", "--offline-after", "20s"])
            .arg("--enable-test-hooks")
            .env("FLOTILLA_HUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("RUST_LOG", "info,flotilla_hub=debug");
        let log = self.dir.join(format!("hub-{}.log", self.starts));
        let (process, base) = spawn(command, log, "listening on ")?;
        self.process = Some(process);
        self.base = base;
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    /// The log of the running hub, if any.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    pub fn agent_url(&self) -> String {
        format!("https://localhost:{}", self.agent_port)
    }

    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Value> {
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }

    /// Runs the `flotilla` CLI against this hub with `-o json`.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = Command::new(binary("flotilla")?)
            .args(args)
            .args(["-o", "json"])
            .env("FLOTILLA_CONFIG", self.dir.join("cli.json"))
            .output()
            .context("run flotilla")?;
        if !out.status.success() {
            bail!(
                "flotilla {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("flotilla {args:?} printed no JSON"))
    }

    pub async fn webhook(&self, head: &str) -> anyhow::Result<()> {
        use hmac::Mac as _;
        let body = json!({"ref": "refs/heads/main", "after": head,
            "repository": {"clone_url": FLEET}})
        .to_string();
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).context("key")?;
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let status = reqwest::Client::new()
            .post(format!("{}/api/v1/webhook/github", self.base))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("webhook: {status}");
        }
        Ok(())
    }

    /// Per application and cluster: (revision, sync, health), from `flotilla app list`.
    pub fn deployments(&self) -> anyhow::Result<Deployments> {
        let listed = self.cli(&["app", "list"])?;
        let apps = listed["applications"]
            .as_array()
            .or_else(|| listed.as_array())
            .context("app list: no applications")?
            .clone();
        let mut all = BTreeMap::new();
        for app in apps {
            let name = app["name"].as_str().unwrap_or_default().to_owned();
            for cluster in app["clusters"].as_array().cloned().unwrap_or_default() {
                let text = |k: &str| cluster[k].as_str().unwrap_or_default().to_owned();
                all.insert(
                    (name.clone(), text("cluster")),
                    (text("revision"), text("sync"), text("health")),
                );
            }
        }
        Ok(all)
    }

    pub async fn cluster(&self, name: &str) -> anyhow::Result<Value> {
        let listed = self.api("GET", "/api/v1/clusters", None).await?;
        listed["clusters"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == name))
            .cloned()
            .with_context(|| format!("cluster {name} not listed"))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `apps/web` into `repo`: a ConfigMap `web` whose `greeting` is `greeting`, and a
/// Deployment `web` with two replicas on the KWOK node.
pub fn write_web_app(repo: &Path, greeting: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo.join("apps/web"))?;
    std::fs::write(
        repo.join("apps/web/config.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\ndata: {{greeting: '{greeting}'}}\n"
        ),
    )?;
    std::fs::write(
        repo.join("apps/web/deployment.yaml"),
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: web, image: registry.example/web:1}]
",
    )?;
    Ok(())
}

impl Hub {
    /// [`Hub::start`] with more `serve` arguments (a configuration repository, say).
    pub fn start_with(&mut self, extra: &[String]) -> anyhow::Result<()> {
        self.start_on("127.0.0.1:0", extra)
    }

    /// [`Hub::start_with`] with the human API on `listen` (`127.0.0.1:PORT`), for a test that
    /// must know the hub's address before it starts (an OIDC redirect URL, say).
    pub fn start_on(&mut self, listen: &str, extra: &[String]) -> anyhow::Result<()> {
        self.starts += 1;
        let mut command = Command::new(binary("flotilla-hub")?);
        command
            .args(["serve", "--data-dir"])
            .arg(&self.data)
            .args(["--listen", listen])
            .arg(format!("--agent-listen=127.0.0.1:{}", self.agent_port))
            .arg(format!("--rewrite={FLEET}={}", self.repo.display()))
            .args(["--poll-interval", "1h", "--offline-after", "20s"])
            .args(extra)
            .env("FLOTILLA_HUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("RUST_LOG", "info,flotilla_hub=debug");
        let log = self.dir.join(format!("hub-{}.log", self.starts));
        let (process, base) = spawn(command, log, "listening on ")?;
        self.process = Some(process);
        self.base = base;
        Ok(())
    }
}

/// A `flotilla-agent run` for `cluster` with the admin `kubeconfig`, its state in the
/// `default` namespace, registering with the bootstrap token in `token_file`; returns the
/// process and its metrics address.
pub fn admin_agent(
    hub: &Hub,
    cluster: &str,
    kubeconfig: &Path,
    token_file: &Path,
) -> anyhow::Result<(Process, String)> {
    let mut command = Command::new(binary("flotilla-agent")?);
    command
        .arg("run")
        .args(["--hub", &hub.agent_url()])
        .arg("--hub-ca")
        .arg(hub.data.join("ca.crt"))
        .arg("--trust-key")
        .arg(hub.data.join("signing.pub"))
        .args(["--cluster", cluster])
        .arg("--bootstrap-token-file")
        .arg(token_file)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--namespace", "default"])
        .arg("--cache-dir")
        .arg(hub.dir.join(format!("cache-{cluster}")))
        .args(["--listen", "127.0.0.1:0", "--holder", cluster])
        .args(["--poll-wait", "20s", "--heartbeat", "3s"])
        .env("RUST_LOG", "info,flotilla_agent=debug");
    let log = hub.dir.join(format!("agent-{cluster}.log"));
    spawn(command, log, "metrics listening on ")
}

/// Harness clusters named `names`, started at once.
pub async fn start_clusters(names: &[&str]) -> anyhow::Result<Vec<flotilla_e2e::Cluster>> {
    let starts: Vec<_> = names
        .iter()
        .map(|name| {
            let name = (*name).to_owned();
            tokio::task::spawn_blocking(move || flotilla_e2e::Cluster::start(&name))
        })
        .collect();
    let mut clusters = Vec::new();
    for start in starts {
        clusters.push(start.await??);
    }
    Ok(clusters)
}
