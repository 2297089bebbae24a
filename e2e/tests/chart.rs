//! The agent chart, installed for real: `helm install charts/flotilla-agent` in restricted
//! mode (`rbac.restrict.namespaces`) into a cluster of the test's own, then the Deployment's
//! own container arguments and environment run as a local `flotilla-agent run` process that
//! authenticates as the chart's ServiceAccount (a TokenRequest token) and reads its files
//! from the chart's ConfigMap. It must register with a real hub through the chart's
//! bootstrap Secret, apply the app in the namespace the chart allows with nothing but the
//! chart's RBAC, and refuse the app in a namespace outside it before the apiserver would
//! (not one write of the agent's reaches that namespace), the hub showing why.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_e2e::{Cluster, binary, eventually, heavy_test, tool};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::processes::{FLEET, Hub, commit, git, spawn};

const CLUSTER: &str = "chart-a";
const RELEASE: &str = "flotilla-agent";
const RELEASE_NAMESPACE: &str = "flotilla-system";
const ALLOWED: &str = "allowed";
const FORBIDDEN: &str = "forbidden";
/// The pod name the local process stands in for (the kubelet's `$(POD_NAME)`).
const POD_NAME: &str = "flotilla-agent-local";
const LIMIT: Duration = Duration::from_secs(120);

/// An ApplicationSet that reaches chart-a by its label, into the allowed namespace, and an
/// Application that names chart-a, into the namespace outside the chart's restriction.
fn applications() -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: web}}
spec:
  generators: [{{clusters: {{selector: {{matchLabels: {{env: prod}}}}}}}}]
  template:
    metadata: {{name: 'web-{{{{name}}}}'}}
    spec:
      project: default
      source: {{repoURL: '{FLEET}', path: apps/web}}
      destination: {{name: '{{{{name}}}}', namespace: {ALLOWED}}}
      syncPolicy: {{automated: {{prune: true, selfHeal: true}}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: outside}}
spec:
  project: default
  source: {{repoURL: '{FLEET}', path: apps/outside}}
  destination: {{name: {CLUSTER}, namespace: {FORBIDDEN}}}
  syncPolicy: {{automated: {{}}}}
"
    )
}

fn write_manifests(repo: &Path) -> anyhow::Result<()> {
    crate::processes::write_web_app(repo, "hello")?;
    std::fs::create_dir_all(repo.join("apps/outside"))?;
    std::fs::write(
        repo.join("apps/outside/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\ndata: {a: b}\n",
    )?;
    Ok(())
}

/// Runs the harness's helm against `cluster`, with its caches and config under `dir`.
async fn helm(cluster: &Cluster, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(tool("helm")?)
        .args(args)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .env("HELM_CACHE_HOME", dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", dir.join("helm/config"))
        .env("HELM_DATA_HOME", dir.join("helm/data"))
        .output()
        .await
        .context("run helm")?;
    if !out.status.success() {
        bail!(
            "helm {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The agent as the chart's Deployment runs it, as a local process: the container's
/// arguments and environment, `$(VAR)` expanded as the kubelet does, each volume mount a
/// local directory (a ConfigMap volume holds the ConfigMap's keys as files, the rest start
/// empty), the metrics listener on loopback, and the ServiceAccount's `kubeconfig` in place
/// of the in-cluster identity. Returns the command and the arguments as the chart set them.
async fn local_agent(
    admin: &kube::Client,
    deployment: &Deployment,
    root: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<(Command, Vec<String>)> {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .context("the Deployment has a pod template")?;
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == "agent")
        .context("the pod has an agent container")?;
    anyhow::ensure!(
        container.command.is_none(),
        "the image's entrypoint is the agent binary; the chart sets only args"
    );
    let chart_args = container.args.clone().unwrap_or_default();

    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let field = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        let value = match (&var.value, field) {
            (Some(value), _) => value.clone(),
            (None, Some("metadata.name")) => POD_NAME.to_owned(),
            _ => bail!("environment variable {} has no local stand-in", var.name),
        };
        env.insert(var.name.clone(), value);
    }

    let namespace = deployment
        .metadata
        .namespace
        .as_deref()
        .context("the Deployment has a namespace")?;
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .with_context(|| format!("volume {} is defined", mount.name))?;
        let local = root.join(&mount.name);
        std::fs::create_dir_all(&local)?;
        if let Some(source) = &volume.config_map {
            anyhow::ensure!(source.items.is_none(), "whole ConfigMaps are mounted");
            let config_map = Api::<ConfigMap>::namespaced(admin.clone(), namespace)
                .get(&source.name)
                .await
                .with_context(|| format!("ConfigMap {namespace}/{}", source.name))?;
            for (key, value) in config_map.data.unwrap_or_default() {
                std::fs::write(local.join(key), value)?;
            }
        }
        mounts.push((mount.mount_path.clone(), local));
    }
    let localize = |value: &str| -> String {
        for (path, local) in &mounts {
            if let Some(rest) = value.strip_prefix(path.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", local.display());
            }
        }
        value.to_owned()
    };

    let mut args = Vec::new();
    let mut listen = false;
    for arg in &chart_args {
        let mut arg = arg.clone();
        for (name, value) in &env {
            arg = arg.replace(&format!("$({name})"), value);
        }
        anyhow::ensure!(
            !arg.contains("$("),
            "{arg}: a variable the pod does not set"
        );
        let arg = match arg.split_once('=') {
            Some(("--listen", _)) => {
                listen = true;
                "--listen=127.0.0.1:0".to_owned()
            }
            Some((flag, value)) if flag.starts_with("--") => format!("{flag}={}", localize(value)),
            _ => localize(&arg),
        };
        args.push(arg);
    }
    anyhow::ensure!(listen, "the chart sets --listen: {chart_args:?}");

    let mut command = Command::new(binary("flotilla-agent")?);
    command
        .env_clear()
        .envs(&env)
        .args(&args)
        .arg(format!("--kubeconfig={}", kubeconfig.display()));
    Ok((command, chart_args))
}

/// The hub's view of `app` on chart-a: its entry in `GET /api/v1/applications`.
async fn deployed(hub: &Hub, app: &str) -> anyhow::Result<Option<Value>> {
    let listed = hub.api("GET", "/api/v1/applications", None).await?;
    Ok(listed["applications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == app)
        .flat_map(|a| a["clusters"].as_array().cloned().unwrap_or_default())
        .find(|c| c["cluster"] == CLUSTER))
}

/// The writes (the harness audits only those) made as `user`, from the apiserver's audit
/// log: (verb, namespace, resource, response code).
fn audited(cluster: &Cluster, user: &str) -> anyhow::Result<Vec<(String, String, String, i64)>> {
    let text = std::fs::read_to_string(cluster.audit_log())?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["user"]["username"] == user)
        .map(|event| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&event["verb"]),
                text(&event["objectRef"]["namespace"]),
                text(&event["objectRef"]["resource"]),
                event["responseStatus"]["code"].as_i64().unwrap_or_default(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restricted_agent_chart_is_enough_to_sync_and_refuses_other_namespaces()
-> anyhow::Result<()> {
    let _heavy = heavy_test().await;
    let work = tempfile::tempdir()?;
    let dir = work.path().to_owned();
    let cluster = tokio::task::spawn_blocking(|| Cluster::start("chart-agent")).await??;
    let admin = cluster.client().await?;
    // The chart's Roles go into namespaces that exist; the agent may not create them.
    for name in [ALLOWED, FORBIDDEN] {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }

    // The hub, a bootstrap token for chart-a, and its two applications.
    let repo = dir.join("fleet");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q"])?;
    write_manifests(&repo)?;
    commit(&repo, "web and outside")?;
    let mut hub = Hub::init(&dir, &repo)?;
    hub.start()?;
    let made = hub
        .api(
            "POST",
            &format!("/api/v1/clusters/{CLUSTER}/tokens"),
            Some(json!({"labels": {"env": "prod"}}).to_string()),
        )
        .await?;
    let token = made["token"].as_str().context("a bootstrap token")?;
    hub.api("POST", "/api/v1/apply", Some(applications()))
        .await?;

    // helm install, restricted to the allowed namespace. The chart's own pod is simulated
    // by KWOK (it becomes Ready, but nothing runs in it), so it never takes the Lease.
    let values = dir.join("values.json");
    std::fs::write(
        &values,
        json!({
            "cluster": {"name": CLUSTER},
            "hub": {
                "url": hub.agent_url(),
                "ca": std::fs::read_to_string(hub.data.join("ca.crt"))?,
            },
            "trust": {"keys": [std::fs::read_to_string(hub.data.join("signing.pub"))?]},
            "bootstrap": {"token": token},
            "rbac": {"restrict": {"namespaces": [ALLOWED]}},
            "heartbeat": "5s",
            "pollWait": "20s",
            "logLevel": "info,flotilla_agent=debug",
        })
        .to_string(),
    )?;
    let installing = Instant::now();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/flotilla-agent");
    let chart = chart.to_str().context("a UTF-8 chart path")?;
    let values = values.to_str().context("a UTF-8 values path")?;
    helm(
        &cluster,
        &dir,
        &[
            "install",
            RELEASE,
            chart,
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--values",
            values,
            "--wait",
            "--timeout",
            "2m",
        ],
    )
    .await?;

    // The installed Deployment, run locally as its ServiceAccount.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    let found = deployments
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
        .await?;
    let [deployment] = found.items.as_slice() else {
        bail!("one Deployment in the release, not {}", found.items.len());
    };
    let account = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.service_account_name.clone())
        .context("the pod names its ServiceAccount")?;
    let kubeconfig = dir.join("agent.kubeconfig");
    cluster
        .write_service_account_kubeconfig(RELEASE_NAMESPACE, &account, 3600, &kubeconfig)
        .await?;
    let (command, chart_args) =
        local_agent(&admin, deployment, &dir.join("pod"), &kubeconfig).await?;
    eprintln!("the chart's agent arguments: {chart_args:?}");
    for expected in [
        format!("--allow-namespace={ALLOWED}"),
        format!("--cluster={CLUSTER}"),
        format!("--namespace={RELEASE_NAMESPACE}"),
    ] {
        anyhow::ensure!(chart_args.contains(&expected), "no {expected}");
    }
    anyhow::ensure!(
        chart_args
            .iter()
            .any(|a| a.starts_with("--bootstrap-secret=")),
        "the chart hands the token over in a Secret: {chart_args:?}"
    );
    let (agent, _metrics) = spawn(command, dir.join("agent.log"), "metrics listening on ")?;

    // Registered, the allowed app Synced and Healthy, the other one refused.
    let settled = eventually("both apps reported by the agent", LIMIT, || async {
        let (Some(web), Some(outside)) = (
            deployed(&hub, "web-chart-a").await?,
            deployed(&hub, "outside").await?,
        ) else {
            return Ok(None);
        };
        let done =
            web["sync"] == "Synced" && web["health"] == "Healthy" && outside["sync"] == "Failed";
        Ok(done.then_some((web, outside)))
    })
    .await;
    let (web, outside) = match settled {
        Ok(both) => both,
        Err(error) => {
            eprintln!("agent log:\n{}\nhub log:\n{}", agent.log(), hub.log());
            return Err(error);
        }
    };
    println!(
        "helm install to both apps reported by the chart's agent: {:?}",
        installing.elapsed()
    );
    eprintln!("web-chart-a: {web}\noutside: {outside}");
    let listed = hub.cluster(CLUSTER).await?;
    assert_eq!(listed["status"], "Online", "{listed}");
    let message = outside["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("namespace {FORBIDDEN}")) && message.contains("local policy"),
        "the hub says why outside failed: {message}"
    );
    let status = hub
        .api("GET", &format!("/api/v1/clusters/{CLUSTER}/status"), None)
        .await?;
    let reported = |app: &str| {
        status["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["app"] == app))
            .cloned()
            .with_context(|| format!("chart-a's status reports {app}: {status}"))
    };
    let outside_status = reported("outside")?;
    assert_eq!(outside_status["sync"], "Failed", "{outside_status}");
    assert_eq!(outside_status["health"], "Degraded", "{outside_status}");
    assert_eq!(
        outside_status["objects"][0]["state"], "Failed",
        "the refused object is listed: {outside_status}"
    );
    assert!(
        outside_status["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!(
                "namespace {FORBIDDEN} is outside this agent's local policy (allowed: {ALLOWED})"
            ))),
        "{outside_status}"
    );
    let web_status = reported("web-chart-a")?;
    let mut web_objects: Vec<String> = web_status["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let text = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
            format!("{}: {}", text("object"), text("state"))
        })
        .collect();
    web_objects.sort();
    assert_eq!(
        web_objects,
        [
            format!("ConfigMap {ALLOWED}/web: Current"),
            format!("Deployment.apps {ALLOWED}/web: Current"),
        ],
        "{web_status}"
    );

    // What the hub says is so in the cluster.
    let allowed_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ALLOWED);
    let web_map = allowed_maps.get("web").await?;
    assert_eq!(
        web_map.data.unwrap_or_default().get("greeting"),
        Some(&"hello".to_owned())
    );
    let web_deployment = Api::<Deployment>::namespaced(admin.clone(), ALLOWED)
        .get("web")
        .await?;
    assert_eq!(
        web_deployment
            .status
            .and_then(|s| s.available_replicas)
            .unwrap_or_default(),
        2
    );
    let forbidden_maps: Vec<String> = Api::<ConfigMap>::namespaced(admin.clone(), FORBIDDEN)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(
        forbidden_maps,
        ["kube-root-ca.crt"],
        "nothing new in {FORBIDDEN}"
    );
    let forbidden_deployments = Api::<Deployment>::namespaced(admin.clone(), FORBIDDEN)
        .list(&ListParams::default())
        .await?;
    assert!(forbidden_deployments.items.is_empty());

    // The local process is the one that acted, and it kept its state where the chart says.
    let lease = Api::<Lease>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .get(RELEASE)
        .await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(POD_NAME)
    );
    let identity = Api::<Secret>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .get(&format!("{RELEASE}-identity"))
        .await?;
    assert!(
        identity
            .data
            .is_some_and(|d| d.contains_key("tls.crt") && d.contains_key("tls.key")),
        "the agent keeps its certificate in the identity Secret"
    );

    // The apiserver would refuse the agent there too: the local policy names what the
    // chart's RBAC grants.
    let user = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{account}");
    for (namespace, expected) in [(ALLOWED, true), (FORBIDDEN, false)] {
        let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
            "user": user,
            "groups": ["system:serviceaccounts",
                format!("system:serviceaccounts:{RELEASE_NAMESPACE}"), "system:authenticated"],
            "resourceAttributes": {"verb": "create", "resource": "configmaps", "namespace": namespace},
        }}))?;
        let allowed = Api::<SubjectAccessReview>::all(admin.clone())
            .create(&PostParams::default(), &review)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        assert_eq!(
            allowed, expected,
            "may {user} create ConfigMaps in {namespace}"
        );
    }

    // The chart's RBAC was enough: the apiserver refused none of the agent's writes (the
    // audit log records writes only; a refused read fails an object, or the agent warns),
    // and its local policy refused first: not one write reached the forbidden namespace.
    let writes = audited(&cluster, &user)?;
    let refused: Vec<_> = writes.iter().filter(|w| w.3 == 403).collect();
    assert!(refused.is_empty(), "RBAC refused the agent: {refused:?}");
    let outside_writes: Vec<_> = writes.iter().filter(|w| w.1 == FORBIDDEN).collect();
    assert!(outside_writes.is_empty(), "{outside_writes:?}");
    for resource in ["configmaps", "deployments"] {
        assert!(
            writes.iter().any(|w| w.1 == ALLOWED && w.2 == resource),
            "the agent wrote {resource} in {ALLOWED} as {user}: {writes:?}"
        );
    }
    let log = agent.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(warnings.is_empty(), "the agent warns: {warnings:#?}");

    drop(agent);
    helm(
        &cluster,
        &dir,
        &["uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE],
    )
    .await?;
    Ok(())
}
