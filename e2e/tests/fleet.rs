//! The fleet end to end: one `flotilla-hub serve` process, three harness clusters of their
//! own, and a `flotilla-agent run` process per cluster authenticated as a ServiceAccount
//! with limited rights. Registration with bootstrap tokens made by the `flotilla` CLI (and a
//! reused one refused), an ApplicationSet that reaches exactly the prod clusters, push →
//! Synced and Healthy timed over ten pushes, the hub stopped (agents keep the cluster and
//! self-heal, also after an agent restart from its cache), the hub restarted (report
//! sequence numbers without gap or duplicate), two replicas of one agent (only the Lease
//! holder applies), an older generation served through the test hook (refused, visible in
//! the hub), and revocation.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_e2e::{Cluster, binary, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

const FLEET: &str = "https://git.example/acme/fleet.git";
const WEBHOOK_SECRET: &str = "whsec-fleet-e2e";
const AGENT_NAMESPACE: &str = "flotilla-system";
const ACCOUNT: &str = "flotilla-agent";
const LIMIT: Duration = Duration::from_secs(120);

const APP_SETS: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web}
      destination: {name: '{{name}}', namespace: web}
      syncPolicy: {automated: {prune: true, selfHeal: true}, syncOptions: [CreateNamespace=true]}
---
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: tools}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: dev}}}}]
  template:
    metadata: {name: 'tools-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/tools}
      destination: {name: '{{name}}', namespace: tools}
      syncPolicy: {automated: {selfHeal: true}, syncOptions: [CreateNamespace=true]}
";

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
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

fn write_manifests(repo: &Path, greeting: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo.join("apps/web"))?;
    std::fs::create_dir_all(repo.join("apps/tools"))?;
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
    std::fs::write(
        repo.join("apps/tools/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tools}\ndata: {a: b}\n",
    )?;
    Ok(())
}

fn commit(repo: &Path, message: &str) -> anyhow::Result<String> {
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", message])?;
    git(repo, &["rev-parse", "HEAD"])
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process, killed when dropped.
struct Process {
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
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
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
fn spawn(mut command: Command, log: PathBuf, prefix: &str) -> anyhow::Result<(Process, String)> {
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

/// (application, cluster) → (revision, sync, health).
type Deployments = BTreeMap<(String, String), (String, String, String)>;

struct Hub {
    process: Option<Process>,
    base: String,
    token: String,
    dir: PathBuf,
    data: PathBuf,
    agent_port: u16,
    repo: PathBuf,
    starts: u32,
}

impl Hub {
    fn start(&mut self) -> anyhow::Result<()> {
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

    fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    fn agent_url(&self) -> String {
        format!("https://localhost:{}", self.agent_port)
    }

    async fn api(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<Value> {
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
    fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
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

    async fn webhook(&self, head: &str) -> anyhow::Result<()> {
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
    fn deployments(&self) -> anyhow::Result<Deployments> {
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

    async fn cluster(&self, name: &str) -> anyhow::Result<Value> {
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

/// One member cluster: the harness cluster, its agent's kubeconfig and token file.
struct Member {
    name: String,
    cluster: Cluster,
    kubeconfig: PathBuf,
    token_file: PathBuf,
}

/// Gives the agent's ServiceAccount limited rights: what the test apps use, namespaces,
/// and its own state (Lease, Secret, ConfigMaps) in its namespace. No RBAC, no nodes.
async fn limited_account(cluster: &Cluster) -> anyhow::Result<()> {
    let client = cluster.client().await?;
    let apply = |value: Value| {
        let client = client.clone();
        async move {
            let object: kube::api::DynamicObject = serde_json::from_value(value.clone())?;
            let kind = value["kind"].as_str().unwrap_or_default();
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
            let (resource, capabilities) = kube::discovery::pinned_kind(&client, &gvk).await?;
            let api: Api<kube::api::DynamicObject> =
                match (capabilities.scope, value["metadata"]["namespace"].as_str()) {
                    (kube::discovery::Scope::Namespaced, Some(ns)) => {
                        Api::namespaced_with(client, ns, &resource)
                    }
                    _ => Api::all_with(client, &resource),
                };
            api.create(&PostParams::default(), &object).await?;
            anyhow::Ok(())
        }
    };
    apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NAMESPACE}}))
        .await?;
    apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT, "namespace": AGENT_NAMESPACE}}))
    .await?;
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": ACCOUNT},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces", "configmaps", "services", "serviceaccounts"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
        ]}))
    .await?;
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": AGENT_NAMESPACE}]}))
    .await?;
    apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": ACCOUNT, "namespace": AGENT_NAMESPACE},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets", "configmaps"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
        ]}),
    )
    .await?;
    apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": ACCOUNT, "namespace": AGENT_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": AGENT_NAMESPACE}]}),
    )
    .await?;
    Ok(())
}

/// An agent process for `member`. `holder` names the replica; `cache` is its volume.
fn start_agent(
    hub: &Hub,
    member: &Member,
    holder: &str,
    cache: &Path,
    identity_secret: &str,
    extra: &[&str],
) -> anyhow::Result<(Process, String)> {
    let mut command = Command::new(binary("flotilla-agent")?);
    command
        .arg("run")
        .args(["--hub", &hub.agent_url()])
        .arg("--hub-ca")
        .arg(hub.data.join("ca.crt"))
        .arg("--trust-key")
        .arg(hub.data.join("signing.pub"))
        .args(["--cluster", &member.name])
        .arg("--bootstrap-token-file")
        .arg(&member.token_file)
        .arg("--kubeconfig")
        .arg(&member.kubeconfig)
        .args(["--namespace", AGENT_NAMESPACE])
        .args(["--identity-secret", identity_secret])
        .arg("--cache-dir")
        .arg(cache)
        .args(["--listen", "127.0.0.1:0", "--holder", holder])
        .args(["--poll-wait", "20s", "--heartbeat", "3s"])
        .args(extra)
        .env("RUST_LOG", "info,flotilla_agent=debug");
    let log = hub.dir.join(format!("agent-{holder}.log"));
    spawn(command, log, "metrics listening on ")
}

async fn metrics(address: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("{address}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_registers_syncs_survives_its_hub_and_refuses_what_it_must() -> anyhow::Result<()> {
    let _heavy = flotilla_e2e::heavy_test().await;
    let work = tempfile::tempdir()?;
    let dir = work.path().to_owned();

    // Three clusters of our own, started at once.
    let names = ["fleet-a", "fleet-b", "fleet-c"];
    let starts: Vec<_> = names
        .iter()
        .map(|name| {
            let name = (*name).to_owned();
            tokio::task::spawn_blocking(move || Cluster::start(&name))
        })
        .collect();
    let mut clusters = Vec::new();
    for start in starts {
        clusters.push(start.await??);
    }

    // The Git repository and the hub.
    let repo = dir.join("fleet");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q"])?;
    write_manifests(&repo, "v0")?;
    let mut head = commit(&repo, "v0")?;
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
    let admin = String::from_utf8(init.stdout)?
        .lines()
        .find_map(|l| {
            l.split_once("admin token")
                .map(|(_, r)| r.trim().rsplit(' ').next().map(str::to_owned))
        })
        .flatten()
        .context("init prints the admin token")?;
    let mut hub = Hub {
        process: None,
        base: String::new(),
        token: admin.clone(),
        dir: dir.clone(),
        data: data.clone(),
        agent_port: free_port()?,
        repo: repo.clone(),
        starts: 0,
    };
    hub.start()?;
    hub.cli(&["login", "--hub", &hub.base, "--token", &admin])
        .or_else(|_| anyhow::Ok(Value::Null))?;

    // Tokens for the three clusters, from the CLI; each agent as a limited ServiceAccount.
    let mut members = Vec::new();
    for (cluster, name) in clusters.into_iter().zip(names) {
        let env = if name == "fleet-c" {
            "env=dev"
        } else {
            "env=prod"
        };
        let made = hub.cli(&["cluster", "token", "create", name, "--label", env])?;
        let token = made["token"].as_str().context("a token")?.to_owned();
        let token_file = dir.join(format!("{name}.token"));
        std::fs::write(&token_file, &token)?;
        limited_account(&cluster).await?;
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        cluster
            .write_service_account_kubeconfig(AGENT_NAMESPACE, ACCOUNT, 3600, &kubeconfig)
            .await?;
        members.push(Member {
            name: name.to_owned(),
            cluster,
            kubeconfig,
            token_file,
        });
    }
    hub.api("POST", "/api/v1/apply", Some(APP_SETS.to_owned()))
        .await?;
    let mut agents = Vec::new();
    for member in &members {
        let cache = dir.join(format!("cache-{}", member.name));
        agents.push(Some(start_agent(
            &hub,
            member,
            &member.name,
            &cache,
            "flotilla-agent-identity",
            &[],
        )?));
    }

    // Every app reaches Synced and Healthy, exactly where its ApplicationSet says.
    let expected: Vec<(String, String)> = vec![
        ("tools-fleet-c".into(), "fleet-c".into()),
        ("web-fleet-a".into(), "fleet-a".into()),
        ("web-fleet-b".into(), "fleet-b".into()),
    ];
    let all_healthy = |revision: String| {
        let hub = &hub;
        let expected = expected.clone();
        move || {
            let revision = revision.clone();
            let expected = expected.clone();
            async move {
                let deployed = hub.deployments()?;
                let keys: Vec<_> = deployed.keys().cloned().collect();
                anyhow::ensure!(keys == expected, "deployed where: {keys:?}");
                let done = deployed.iter().all(|((app, _), (rev, sync, health))| {
                    (app.starts_with("tools") || *rev == revision)
                        && sync == "Synced"
                        && health == "Healthy"
                });
                Ok(done.then_some(()))
            }
        }
    };
    if let Err(error) = eventually(
        "every app Synced and Healthy",
        LIMIT,
        all_healthy(head.clone()),
    )
    .await
    {
        for (process, _) in agents.iter().flatten() {
            eprintln!("{}", process.log());
        }
        return Err(error);
    }
    let listed = hub.cli(&["cluster", "list"])?;
    eprintln!("cluster list: {listed}");
    for name in names {
        assert_eq!(hub.cluster(name).await?["status"], "Online", "{name}");
    }

    // A reused token is refused: a second key for fleet-a with the spent token.
    let (thief, _) = start_agent(
        &hub,
        &members[0],
        "thief",
        &dir.join("cache-thief"),
        "thief-identity",
        &["--lease-name", "thief"],
    )?;
    eventually("the reused token refused", LIMIT, || async {
        let error = hub.cluster("fleet-a").await?["lastError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(error.contains("already used").then_some(()))
    })
    .await?;
    anyhow::ensure!(
        thief.log().contains("already used"),
        "the agent says why:\n{}",
        thief.log()
    );
    drop(thief);

    // Push → Synced and Healthy on every target, ten times.
    let mut times = Vec::new();
    for round in 1..=10 {
        write_manifests(&repo, &format!("v{round}"))?;
        head = commit(&repo, &format!("v{round}"))?;
        let pushed = Instant::now();
        hub.webhook(&head).await?;
        eventually("the push lands", LIMIT, all_healthy(head.clone())).await?;
        times.push(pushed.elapsed());
    }
    times.sort();
    println!(
        "push → all Synced and Healthy over {} pushes: p50 {:?}, p90 {:?}, max {:?}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        times[times.len() - 1]
    );

    // The hub goes away: agents keep enforcing, self-heal included.
    hub.stop();
    let web_a: Api<ConfigMap> = Api::namespaced(members[0].cluster.client().await?, "web");
    let heal = |api: Api<ConfigMap>, what: &'static str| async move {
        api.delete("web", &DeleteParams::default()).await?;
        eventually(what, LIMIT, || {
            let api = api.clone();
            async move { Ok(api.get_opt("web").await?.map(|_| ())) }
        })
        .await
    };
    heal(web_a.clone(), "self-heal with the hub down").await?;
    // Restart fleet-a's agent while the hub is down: it holds the cluster from its cache.
    if let Some((process, _)) = agents[0].take() {
        process.stop();
    }
    agents[0] = Some(start_agent(
        &hub,
        &members[0],
        "fleet-a",
        &dir.join("cache-fleet-a"),
        "flotilla-agent-identity",
        &[],
    )?);
    heal(
        web_a.clone(),
        "self-heal after an agent restart with the hub down",
    )
    .await?;
    let data_now = web_a.get("web").await?.data.unwrap_or_default();
    anyhow::ensure!(
        data_now.get("greeting").map(String::as_str) == Some("v10"),
        "the last state stays"
    );

    // The hub returns; agents reconnect by themselves; reports have no gap, no duplicate.
    hub.start()?;
    eventually("agents report again", LIMIT, || async {
        let a = hub.cluster("fleet-a").await?;
        Ok((a["status"] == "Online").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in names {
        let status = hub
            .api(
                "GET",
                &format!("/api/v1/clusters/{name}/status?limit=1000"),
                None,
            )
            .await?;
        let mut seqs: Vec<u64> = status["reports"]
            .as_array()
            .context("reports")?
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        seqs.sort();
        let first = *seqs.first().context("some reports")?;
        let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "{name}: report seqs without gap or duplicate"
        );
    }

    // Two replicas of fleet-b's agent: only the Lease holder applies.
    let (second, second_metrics) = start_agent(
        &hub,
        &members[1],
        "fleet-b-2",
        &dir.join("cache-fleet-b-2"),
        "flotilla-agent-identity",
        &[],
    )?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first_metrics = agents[1]
        .as_ref()
        .map(|(_, m)| m.clone())
        .context("agent b")?;
    let (one, two) = (
        metrics(&first_metrics).await?,
        metrics(&second_metrics).await?,
    );
    assert_eq!(one.get("flotilla_agent_leader"), Some(&1.0), "{one:?}");
    assert_eq!(two.get("flotilla_agent_leader"), Some(&0.0), "{two:?}");
    assert!(
        !two.iter()
            .any(|(k, v)| k.starts_with("flotilla_agent_applies_total") && *v > 0.0),
        "the standby applied nothing: {two:?}"
    );
    drop(second);

    // An older generation, served through the test hook: refused, cluster unchanged.
    hub.api(
        "PUT",
        "/api/v1/test/serve-override",
        Some(json!({"mode": "oldest"}).to_string()),
    )
    .await?;
    eventually("the refusal shows in the hub", LIMIT, || async {
        let error = hub.cluster("fleet-a").await?["lastError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(error.contains("refused generation").then_some(error))
    })
    .await?;
    let data_now = web_a.get("web").await?.data.unwrap_or_default();
    anyhow::ensure!(
        data_now.get("greeting").map(String::as_str) == Some("v10"),
        "the cluster is unchanged"
    );
    hub.api("PUT", "/api/v1/test/serve-override", Some("{}".to_owned()))
        .await?;

    // Revocation: fleet-c's agent is refused from its next request on.
    hub.api("POST", "/api/v1/clusters/fleet-c/revoke", None)
        .await?;
    eventually("fleet-c revoked", LIMIT, || async {
        let log = agents[2].as_ref().map(|(p, _)| p.log()).unwrap_or_default();
        Ok(log.contains("revoked").then_some(()))
    })
    .await?;
    assert_eq!(hub.cluster("fleet-c").await?["status"], "Revoked");
    drop(agents);
    Ok(())
}
