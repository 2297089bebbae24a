//! `flotilla-agent run`: the long-running agent. It serves `/healthz`, `/readyz` and
//! `/metrics`, takes part in the leader election, and while it leads either pulls its signed
//! state from the hub (`pull`) or applies bundle files dropped into a directory (`dir`, the
//! air gap), enforcing the accepted state until the next one (`enforce`).
//!
//! This module is the wiring: arguments, the election loop and shutdown. It decides nothing
//! about states; verification is `flotilla-shared`'s and applying is the engine's.
//! Invariant: only the replica that holds the Lease registers, polls, applies, heals and
//! reports; it stops all of that before another replica may take the Lease over.

pub mod backoff;
pub mod cache;
pub mod dir;
pub mod enforce;
pub mod hub;
pub mod identity_store;
pub mod lease;
pub mod pull;
pub mod serve;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use flotilla_shared::TrustRoot;
use jiff::SignedDuration;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::oneshot::ClusterArgs;
use crate::store::Store;
use crate::verify::{TrustArgs, load_trust_root};

use self::backoff::jittered;
use self::identity_store::TokenSource;
use self::lease::{Elector, Role};
use self::serve::Shared;

/// How long the leader's work may take to finish when the process ends (a last report to
/// deliver, a watch to stop). On a lost lease it gets a third of the lease duration: the
/// time left before another replica may take over.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The hub's agent API, `https://HOST:PORT`. Either this or --watch-dir.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_HUB",
        required_unless_present = "watch_dir",
        conflicts_with = "watch_dir"
    )]
    pub hub: Option<reqwest::Url>,
    /// The CA (PEM file) that signs the agent API's server certificate; the only CA the agent
    /// trusts for the hub.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_HUB_CA",
        required_unless_present = "watch_dir",
        conflicts_with = "watch_dir"
    )]
    pub hub_ca: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// A file holding the one-time bootstrap token; read only to register, when the identity
    /// Secret holds no certificate yet.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_BOOTSTRAP_TOKEN_FILE",
        conflicts_with = "bootstrap_secret"
    )]
    pub bootstrap_token_file: Option<PathBuf>,
    /// A Secret in the agent's namespace whose key `token` holds the one-time bootstrap token
    /// (instead of --bootstrap-token-file).
    #[arg(long, env = "FLOTILLA_AGENT_BOOTSTRAP_SECRET")]
    pub bootstrap_secret: Option<String>,
    /// The Secret in the agent's namespace where the agent keeps its key, its certificate and
    /// the hub CA (`tls.key`, `tls.crt`, `ca.crt`), so that a restart does not register again.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_IDENTITY_SECRET",
        default_value = "flotilla-agent-identity"
    )]
    pub identity_secret: String,
    /// A directory (a volume) where the newest verified state and its blobs are cached, so a
    /// restart while the hub is unreachable still enforces the accepted state.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_CACHE_DIR",
        default_value = "/var/cache/flotilla"
    )]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "FLOTILLA_AGENT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The Lease (in the agent's namespace) that elects the one replica that acts.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_LEASE_NAME",
        default_value = "flotilla-agent"
    )]
    pub lease_name: String,
    /// How long the Lease lasts unrenewed; the leader renews it every third of this.
    #[arg(long, env = "FLOTILLA_AGENT_LEASE_DURATION", default_value = "15s")]
    pub lease_duration: SignedDuration,
    /// This replica's name in the Lease (set it to the pod name). Default: HOSTNAME-PID.
    #[arg(long, env = "FLOTILLA_AGENT_HOLDER")]
    pub holder: Option<String>,
    /// How long one long poll of the state may wait for a change (at most 60s).
    #[arg(long, env = "FLOTILLA_AGENT_POLL_WAIT", default_value = "30s")]
    pub poll_wait: SignedDuration,
    /// How often the agent reports its status when nothing happens.
    #[arg(long, env = "FLOTILLA_AGENT_HEARTBEAT", default_value = "30s")]
    pub heartbeat: SignedDuration,
    /// The air gap: apply each new bundle file (`*.tar`) that appears in this directory, with
    /// the same verification as `apply --bundle`, instead of pulling from a hub. Write a file
    /// under another name and rename it to `*.tar`, or it is read once its size and time
    /// stay unchanged for one scan (every 2s).
    #[arg(long, env = "FLOTILLA_AGENT_WATCH_DIR")]
    pub watch_dir: Option<PathBuf>,
}

/// Where the states come from.
#[derive(Debug)]
pub enum Mode {
    Hub(pull::HubSettings),
    Dir(PathBuf),
}

/// What the leader's work needs, set up once.
pub struct Context {
    pub cluster: String,
    pub namespace: String,
    pub client: kube::Client,
    /// The apiserver URL as the agent reaches it.
    pub server: String,
    pub engine: Engine,
    pub store: Store,
    pub trust_root: TrustRoot,
    pub shared: Arc<Shared>,
    pub holder: String,
    pub heartbeat: Duration,
}

/// Why the leader's work stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// The lease is lost: stop at once, send nothing more.
    LeaseLost,
    /// The process ends: stop, giving a last report a moment to get out.
    Shutdown,
}

fn positive(name: &str, duration: SignedDuration) -> anyhow::Result<Duration> {
    Duration::try_from(duration)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be positive, not {duration:#}"))
}

fn default_holder() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let trust_root = load_trust_root(&args.trust.trust_keys)?;
    flotilla_shared::identity::validate_cluster_name(&args.trust.cluster)?;
    let heartbeat = positive("heartbeat", args.heartbeat)?;
    let lease_duration = positive("lease-duration", args.lease_duration)?;
    let mode = match (&args.hub, &args.watch_dir) {
        (Some(url), None) => {
            let ca_path = args.hub_ca.as_ref().context("--hub needs --hub-ca")?;
            let hub_ca_pem = std::fs::read_to_string(ca_path)
                .with_context(|| format!("read the hub CA {}", ca_path.display()))?;
            let token = match (&args.bootstrap_token_file, &args.bootstrap_secret) {
                (Some(path), _) => Some(TokenSource::File(path.clone())),
                (None, Some(name)) => Some(TokenSource::Secret(name.clone())),
                (None, None) => None,
            };
            Mode::Hub(pull::HubSettings {
                url: url.clone(),
                hub_ca_pem,
                token,
                identity_secret: args.identity_secret.clone(),
                cache_dir: args.cache_dir.clone(),
                poll_wait: positive("poll-wait", args.poll_wait)?,
            })
        }
        (None, Some(dir)) => Mode::Dir(dir.clone()),
        _ => anyhow::bail!("give either --hub or --watch-dir"),
    };

    let config = args.cluster.config().await?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)?;
    // The agent runs in its namespace, which the chart made; with RBAC restricted to some
    // namespaces it may not even read Namespaces, so a failed check is no reason to stop.
    if let Err(error) = crate::oneshot::ensure_namespace(&client, &args.cluster.namespace).await {
        tracing::warn!(error = %format!("{error:#}"), "cannot make sure of the agent's namespace");
    }
    let store = Store::new(client.clone(), &args.cluster.namespace);
    let shared = Arc::new(Shared::default());
    let listener = serve::bind(args.listen).await?;
    println!("metrics listening on http://{}", listener.local_addr()?);
    let served = tokio::spawn(serve::serve(listener, shared.clone()));

    let holder = args.holder.clone().unwrap_or_else(default_holder);
    let ctx = Context {
        cluster: args.trust.cluster.clone(),
        namespace: args.cluster.namespace.clone(),
        engine: Engine::new(client.clone(), store.clone(), args.cluster.settings()),
        client: client.clone(),
        server,
        store,
        trust_root,
        shared: shared.clone(),
        holder: holder.clone(),
        heartbeat,
    };
    let mut elector = Elector::new(
        client,
        &args.cluster.namespace,
        &args.lease_name,
        &holder,
        lease_duration,
    );
    tracing::info!(%holder, cluster = %ctx.cluster, "agent started");
    let result = elect_and_lead(&ctx, &mode, &mut elector).await;
    served.abort();
    result
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                None
            }
        };
    let term = async {
        match &mut terminate {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The election loop: stand by until the Lease is ours, lead while it stays ours, and on
/// shutdown stop leading and give the Lease up.
async fn elect_and_lead(ctx: &Context, mode: &Mode, elector: &mut Elector) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let round_deadline = elector.period();
    loop {
        // Standing by.
        loop {
            match tokio::time::timeout(round_deadline, elector.round()).await {
                Ok(Ok(Role::Leader)) => break,
                Ok(Ok(Role::Follower { holder })) => ctx.shared.standby(&holder),
                Ok(Err(error)) => {
                    ctx.shared.set_ready(
                        false,
                        format!(
                            "cannot take part in the election: {}",
                            flotilla_shared::error_chain::one_line(&error)
                        ),
                    );
                    tracing::warn!(error = %flotilla_shared::error_chain::one_line(&error),
                        "leader election failed");
                }
                Err(_) => tracing::warn!("leader election timed out"),
            }
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                () = tokio::time::sleep(jittered(elector.period())) => {}
            }
        }

        // Leading.
        tracing::info!("leading");
        ctx.shared.metrics.leader.store(true, Ordering::Relaxed);
        ctx.shared.set_ready(false, "leading: starting");
        let (stop, stopped) = watch::channel(Stop::Running);
        let work = lead(ctx, mode, stopped);
        tokio::pin!(work);
        let mut renewed = tokio::time::Instant::now();
        let (why, ended) = loop {
            tokio::select! {
                () = &mut shutdown => break (Stop::Shutdown, None),
                result = &mut work => break (Stop::Shutdown, Some(result)),
                () = tokio::time::sleep(elector.period()) => {
                    match tokio::time::timeout(round_deadline, elector.round()).await {
                        Ok(Ok(Role::Leader)) => renewed = tokio::time::Instant::now(),
                        Ok(Ok(Role::Follower { holder })) => {
                            tracing::warn!(%holder, "lost the lease");
                            break (Stop::LeaseLost, None);
                        }
                        Ok(Err(error)) => tracing::warn!(
                            error = %flotilla_shared::error_chain::one_line(&error),
                            "cannot renew the lease"
                        ),
                        Err(_) => tracing::warn!("renewing the lease timed out"),
                    }
                    if elector.must_step_down(tokio::time::Instant::now()) {
                        tracing::warn!(since = ?renewed.elapsed(), "could not renew the lease in time; stepping down");
                        break (Stop::LeaseLost, None);
                    }
                }
            }
        };
        let ended = match ended {
            Some(result) => Some(result),
            None => {
                let _ = stop.send(why);
                let deadline = match why {
                    Stop::LeaseLost => elector.period(),
                    Stop::Shutdown | Stop::Running => SHUTDOWN_DEADLINE,
                };
                match tokio::time::timeout(deadline, &mut work).await {
                    Ok(result) => Some(result),
                    Err(_) => {
                        tracing::warn!("the leader's work did not stop in time; dropping it");
                        None
                    }
                }
            }
        };
        ctx.shared.metrics.leader.store(false, Ordering::Relaxed);
        match why {
            Stop::LeaseLost => {
                if let Some(Err(error)) = ended {
                    tracing::warn!(error = %format!("{error:#}"), "the leader's work failed");
                }
                ctx.shared.set_ready(false, "lost the lease; standing by");
            }
            Stop::Shutdown | Stop::Running => {
                if let Err(error) = elector.release().await {
                    tracing::warn!(error = %flotilla_shared::error_chain::one_line(&error),
                        "cannot release the lease");
                }
                return ended.unwrap_or(Ok(()));
            }
        }
    }
}

/// The leader's work, until `stop` says otherwise.
async fn lead(ctx: &Context, mode: &Mode, stop: watch::Receiver<Stop>) -> anyhow::Result<()> {
    match mode {
        Mode::Hub(settings) => pull::lead(ctx, settings, stop).await,
        Mode::Dir(dir) => dir::lead(ctx, dir, stop).await,
    }
}

/// Waits until `stop` leaves `Running`; returns why.
pub async fn stopped(stop: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let current = *stop.borrow_and_update();
        if current != Stop::Running {
            return current;
        }
        if stop.changed().await.is_err() {
            return Stop::Shutdown;
        }
    }
}
