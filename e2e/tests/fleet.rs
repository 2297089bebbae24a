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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_e2e::{Cluster, binary, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::processes::{Hub, Process, commit, git, spawn};

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

fn write_manifests(repo: &Path, greeting: &str) -> anyhow::Result<()> {
    crate::processes::write_web_app(repo, greeting)?;
    std::fs::create_dir_all(repo.join("apps/tools"))?;
    std::fs::write(
        repo.join("apps/tools/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tools}\ndata: {a: b}\n",
    )?;
    Ok(())
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
    let clusters = crate::processes::start_clusters(&names).await?;

    // The Git repository and the hub.
    let repo = dir.join("fleet");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q"])?;
    write_manifests(&repo, "v0")?;
    let mut head = commit(&repo, "v0")?;
    let mut hub = Hub::init(&dir, &repo)?;
    hub.start()?;
    hub.cli(&["login", "--hub", &hub.base, "--token", &hub.token])
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
    eventually("the newest state is accepted again", LIMIT, || async {
        let a = hub.cluster("fleet-a").await?;
        Ok(a["lastError"].is_null().then_some(()))
    })
    .await?;

    // Another cluster's state, served through the test hook: refused as well.
    hub.api(
        "PUT",
        "/api/v1/test/serve-override",
        Some(json!({"mode": "from", "cluster": "fleet-b"}).to_string()),
    )
    .await?;
    let error = eventually("the wrong cluster's state refused", LIMIT, || async {
        let error = hub.cluster("fleet-a").await?["lastError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((error.contains("refused generation") && error.contains("fleet-b")).then_some(error))
    })
    .await?;
    println!("fleet-a on another cluster's state: {error}");
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
