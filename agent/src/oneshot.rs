//! `flotilla-agent apply --bundle`: the one-shot (air-gap) mode. Verifies a bundle file
//! against the trusted keys and the last generation this cluster accepted (read from the
//! cluster), records the new generation, and makes the cluster match; optionally waits
//! until every object is healthy.
//!
//! It owns the sequence, not the rules: verification is `flotilla-shared`'s, applying is
//! the engine's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_shared::bundle::BundleError;
use flotilla_shared::{LastAccepted, Policy, TrustRoot, VerifiedBundle};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};

use crate::changeset::Action;
use crate::engine::{Engine, EngineError, Settings, SyncReport};
use crate::health::{AppHealth, Health, Status};
use crate::object::ObjectRef;
use crate::policy::LocalPolicy;
use crate::store::{FIELD_MANAGER, Store};
use crate::verify::{BundleArgs, load_trust_root, read_bundle_file};

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub source: BundleArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// After applying, wait until every object is healthy and print each one's health.
    #[arg(long, env = "FLOTILLA_AGENT_WAIT")]
    pub wait: bool,
    /// How long `--wait` waits, e.g. `5m`.
    #[arg(long, env = "FLOTILLA_AGENT_TIMEOUT", default_value = "5m")]
    pub timeout: SignedDuration,
    /// After applying, keep watching the applied objects for drift until Ctrl-C, printing
    /// one line per out-of-band change and who made it; apps with `selfHeal` have it
    /// reverted (a deleted object recreated), the others are reported OutOfSync (or
    /// Missing) and left alone until the next state.
    #[arg(long, env = "FLOTILLA_AGENT_WATCH")]
    pub watch: bool,
}

/// Where and how the agent acts on its cluster: the kubeconfig, its own namespace and the
/// local policy (defence in depth: limits that even a validly signed state cannot lift).
/// What `apply` and `run` share.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// The kubeconfig to use; without it, the in-cluster identity or $KUBECONFIG.
    #[arg(long, env = "FLOTILLA_AGENT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The agent's namespace, where it keeps the last accepted generation and the
    /// inventories; created if missing, and off limits to the states it applies.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_NAMESPACE",
        default_value = "flotilla-system"
    )]
    pub namespace: String,
    /// The name of the agent's ServiceAccount, ClusterRole and ClusterRoleBinding, which
    /// states may not change.
    #[arg(long, env = "FLOTILLA_AGENT_NAME", default_value = "flotilla-agent")]
    pub agent_name: String,
    /// Let states change the agent's own namespace and RBAC.
    #[arg(long, env = "FLOTILLA_AGENT_ALLOW_SELF")]
    pub allow_self: bool,
    /// Restrict the agent to these namespaces (repeatable; comma-separated in the
    /// environment). Default: every namespace.
    #[arg(
        long = "allow-namespace",
        env = "FLOTILLA_AGENT_ALLOW_NAMESPACES",
        value_delimiter = ','
    )]
    pub allow_namespaces: Vec<String>,
    /// Restrict the agent to these kinds, as `Kind` (core group) or `group/Kind`
    /// (repeatable; comma-separated in the environment). Default: every kind.
    #[arg(
        long = "allow-kind",
        env = "FLOTILLA_AGENT_ALLOW_KINDS",
        value_delimiter = ','
    )]
    pub allow_kinds: Vec<String>,
    /// Server-side applies in flight at once.
    #[arg(long, env = "FLOTILLA_AGENT_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
}

impl ClusterArgs {
    /// The engine's settings: the local policy and the concurrency.
    pub fn settings(&self) -> Settings {
        Settings {
            policy: LocalPolicy {
                namespaces: (!self.allow_namespaces.is_empty())
                    .then(|| self.allow_namespaces.clone()),
                kinds: (!self.allow_kinds.is_empty()).then(|| self.allow_kinds.clone()),
                agent_namespace: Some(self.namespace.clone()),
                agent_name: Some(self.agent_name.clone()),
                allow_self: self.allow_self,
            },
            concurrency: self.concurrency,
        }
    }

    /// The client configuration: `--kubeconfig`, else the in-cluster identity or
    /// $KUBECONFIG.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        config(self.kubeconfig.as_deref()).await
    }

    /// A client for the cluster, and the agent's namespace made sure of.
    pub async fn connect(&self) -> anyhow::Result<kube::Client> {
        let client = kube::Client::try_from(self.config().await?)?;
        ensure_namespace(&client, &self.namespace).await?;
        Ok(client)
    }
}

/// Runs `flotilla-agent apply`: prints the change set (and, with `--wait`, health); fails
/// when the bundle is refused, an object failed, or (with `--wait`) something is unhealthy.
pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let trust_root = load_trust_root(&args.source.trust.trust_keys)?;
    let file = read_bundle_file(&args.source.bundle)?;
    let client = args.cluster.connect().await?;
    let engine = Engine::new(
        client.clone(),
        Store::new(client.clone(), &args.cluster.namespace),
        args.cluster.settings(),
    );
    let applied = apply_bundle(
        &engine,
        file,
        &trust_root,
        &args.source.trust.cluster,
        Timestamp::now(),
    )
    .await?;
    let state = &applied.bundle.state.state;
    println!(
        "applied generation {} to cluster {}",
        state.generation, state.cluster
    );
    println!("{}", applied.report.changes);
    let mut ok = applied.report.changes.succeeded();
    if args.wait {
        let timeout = Duration::try_from(args.timeout).unwrap_or(Duration::ZERO);
        let healths = wait_healthy(&engine, &applied.report, timeout).await?;
        for (app, (health, objects)) in &healths {
            println!("app {app}: {health:?}");
            for (object, h) in objects {
                println!(
                    "  {:<12} {object}  {}",
                    format!("{:?}", h.status),
                    h.message
                );
            }
            ok &= *health == AppHealth::Healthy;
        }
    }
    if !ok {
        let failed = applied.report.changes.count(Action::Failed);
        anyhow::bail!(
            "generation {} is not fully applied: {failed} objects failed or are unhealthy",
            state.generation
        );
    }
    if args.watch {
        watch_drift(client, &applied).await?;
    }
    Ok(())
}

/// Prints drift of the applied objects (healing it where the app says so) until Ctrl-C.
async fn watch_drift(client: kube::Client, applied: &Applied) -> anyhow::Result<()> {
    let (events, mut drifts) = tokio::sync::mpsc::channel(64);
    let stop = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let watch = crate::drift::watch(client, &applied.bundle, &applied.report, events, stop);
    let print = async {
        while let Some(drift) = drifts.recv().await {
            println!("{drift}");
        }
    };
    println!("watching for drift; Ctrl-C stops");
    let (watched, ()) = tokio::join!(watch, print);
    watched?;
    Ok(())
}

async fn config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

/// Creates the agent's namespace when it is missing.
pub(crate) async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| anyhow::anyhow!("create the agent's namespace {name}: {e}"))?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum OneshotError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The bundle was refused; the cluster was not touched.
    #[error("{0}")]
    Refused(#[source] BundleError),
}

/// The result of a one-shot apply.
#[derive(Debug)]
pub struct Applied {
    pub bundle: VerifiedBundle,
    pub report: SyncReport,
}

/// Verifies `bundle_file` and applies it. A refused bundle changes nothing in the cluster.
/// The file's bytes, and the blobs' bytes once parsed, are freed before the sync starts:
/// the agent holds each object once.
pub async fn apply_bundle(
    engine: &Engine,
    bundle_file: Vec<u8>,
    trust_root: &TrustRoot,
    cluster: &str,
    now: Timestamp,
) -> Result<Applied, OneshotError> {
    let last = engine
        .store()
        .last_accepted()
        .await
        .map_err(EngineError::from)?;
    let bundle = Policy::default()
        .read_bundle(
            bundle_file.as_slice(),
            trust_root,
            cluster,
            last.as_ref(),
            now,
        )
        .map_err(OneshotError::Refused)?;
    drop(bundle_file);
    Ok(apply_verified(engine, bundle, last.as_ref()).await?)
}

/// Applies a verified bundle: records it as the last accepted state (`last` is the one
/// recorded before), then syncs. The blobs' bytes are freed first: the parsed objects are
/// all the sync needs.
pub async fn apply_verified(
    engine: &Engine,
    mut bundle: VerifiedBundle,
    last: Option<&LastAccepted>,
) -> Result<Applied, EngineError> {
    for blob in &mut bundle.blobs {
        blob.bytes = Vec::new();
    }
    engine.accept(&bundle.state.last_accepted(), last).await?;
    let report = engine.sync(&bundle).await?;
    Ok(Applied { bundle, report })
}

/// Health of each app after waiting, bounded by `timeout`, for every object to be Current.
pub type AppHealths = BTreeMap<String, (AppHealth, Vec<(ObjectRef, Health)>)>;

/// Polls health until every object of every app is Current, or `timeout` passes; returns
/// the last observation either way.
pub async fn wait_healthy(
    engine: &Engine,
    report: &SyncReport,
    timeout: Duration,
) -> Result<AppHealths, EngineError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let kinds = engine.kinds().await?;
    loop {
        let healths = engine.health(&kinds, &report.objects).await;
        let all_current = healths
            .values()
            .all(|(_, objects)| objects.iter().all(|(_, h)| h.status == Status::Current));
        if all_current || tokio::time::Instant::now() >= deadline {
            return Ok(healths);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
