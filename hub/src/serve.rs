//! `flotilla-hub serve`: wires the hub together and runs it. It opens the data directory
//! `init` made (store, signing key, credentials key, admin token hash), builds the fetcher,
//! renderer, reconciler and publisher, and runs until SIGTERM or Ctrl-C:
//!
//! - the human API (`api`) on `--listen`;
//! - the reconcile rounds (`rounds`): one at start, one per scheduled poll of a repository
//!   (`poll`: tokio-cron-scheduler, each repository at its own interval plus a random
//!   jitter), one per verified webhook push and one after each API change;
//! - re-signing of states at half their lifetime (`Publisher::resign_due`) and collection of
//!   unreferenced blobs, each on its own timer.
//!
//! On shutdown the listener closes, open requests get the grace period, a round under way
//! finishes, and the store is closed (checkpointing its WAL).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_shared::SigningKey;
use jiff::Timestamp;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::agent_api::limits::Rate;
use crate::agent_api::{AgentApi, AgentApiConfig};
use crate::api::{self, ApiState};
use crate::config::{ConfigError, ServeArgs, ServeConfig};
use crate::git::{FetchError, FetchOptions, Fetcher};
use crate::init::ADMIN_TOKEN_HASH_FILE;
use crate::keygen::PRIVATE_KEY_FILE;
use crate::publish::{PublishConfig, Publisher};
use crate::reconcile::{ReconcileError, Reconciler};
use crate::render::{RenderConfig, RenderSetupError, Renderer};
use crate::rounds::{self, Fetch, Hub};
use crate::store::sqlite::DATABASE_FILE;
use crate::store::{CredentialKey, Retention, SealError, SqliteStore, Store as _, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data directory {0} is not initialized: run `flotilla-hub init --data-dir` first")]
    NotInitialized(PathBuf),
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key {0}: not a PKCS#8 Ed25519 key")]
    SigningKey(PathBuf),
    #[error("admin token hash {0}: not a hex SHA-256")]
    TokenHash(PathBuf),
    #[error("credentials key: {0}")]
    CredentialKey(#[from] SealError),
    #[error("open store: {0}")]
    Store(#[from] StoreError),
    #[error("set up git fetcher: {0}")]
    Fetcher(#[from] FetchError),
    #[error("set up renderer: {0}")]
    Renderer(#[from] RenderSetupError),
    #[error("set up reconciler: {0}")]
    Reconciler(#[from] ReconcileError),
    #[error("failpoints: {0}")]
    Failpoints(#[from] crate::failpoint::FailpointError),
    #[error("create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("single sign-on: {0}")]
    Sso(String),
    #[error("hub CA: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn read(path: &Path) -> Result<String, ServeError> {
    std::fs::read_to_string(path).map_err(|source| ServeError::Read {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(path: &Path) -> Result<(), ServeError> {
    std::fs::create_dir_all(path).map_err(|source| ServeError::CreateDir {
        path: path.to_owned(),
        source,
    })
}

/// Runs the hub until SIGTERM or Ctrl-C. Blocking: it starts its own runtime.
pub fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let config = ServeConfig::resolve(args)?;
    let failpoints = args.failpoints.failpoints()?;
    let render = RenderConfig::from(&args.render);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(run(config, render, failpoints))
}

async fn run(
    config: ServeConfig,
    render: RenderConfig,
    failpoints: crate::failpoint::Failpoints,
) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    let database = dir.join(DATABASE_FILE);
    let key_file = dir.join(PRIVATE_KEY_FILE);
    let hash_file = dir.join(ADMIN_TOKEN_HASH_FILE);
    if !database.is_file() || !key_file.is_file() || !hash_file.is_file() {
        return Err(ServeError::NotInitialized(dir.clone()));
    }
    let key = SigningKey::from_pkcs8_pem(&read(&key_file)?)
        .map_err(|_| ServeError::SigningKey(key_file.clone()))?;
    let admin_token_hash = api::parse_token_hash(&read(&hash_file)?)
        .ok_or_else(|| ServeError::TokenHash(hash_file.clone()))?;
    let credential_key = CredentialKey::load_or_create(dir)?;
    let store = SqliteStore::open(
        &database,
        credential_key,
        Retention::default(),
        failpoints.clone(),
    )
    .await?;

    let cache = dir.join("git-cache");
    let work = dir.join("work");
    create_dir(&cache)?;
    create_dir(&work)?;
    let mut options = FetchOptions::new(cache);
    options.rewrites = config.rewrites.clone();
    if let Some(path) = &config.git_ca_file {
        options.extra_ca_pem = Some(std::fs::read(path).map_err(|source| ServeError::Read {
            path: path.clone(),
            source,
        })?);
    }
    let fetcher = Fetcher::new(options)?;
    let renderer = Arc::new(Renderer::new(render)?);
    let reconciler = Reconciler::new(fetcher.clone(), renderer, Some(&work))?;
    let publish_config = PublishConfig::default();
    let publisher = Publisher::new(store, key, publish_config, failpoints);
    if let Some(source) = &config.config_source {
        info!(
            url = %crate::git::redact_url(&source.url),
            revision = %source.revision,
            path = %source.path,
            "configuration repository"
        );
    }
    let (hub, triggers) = Hub::new(publisher, reconciler, fetcher, config.config_source.clone());

    // The agent API: its server certificate from the hub CA, on its own listener.
    let ca = crate::pki::HubCa::load(dir)?;
    let agent_listener = tokio::net::TcpListener::bind(config.agent_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.agent_listen,
            source,
        })?;
    let agent_local = agent_listener
        .local_addr()
        .map_err(|source| ServeError::Listen {
            addr: config.agent_listen,
            source,
        })?;
    let agent_url = config
        .agent_url
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", agent_local.port()));
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(host) = url_host(&agent_url) {
        names.push(host);
    }
    names.extend(config.agent_hostnames.iter().cloned());
    names.sort();
    names.dedup();
    let server_cert = ca.issue_server(
        &names,
        crate::pki::DEFAULT_SERVER_LIFETIME,
        Timestamp::now(),
    )?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let agent = Arc::new(AgentApi::new(
        hub.clone(),
        ca,
        AgentApiConfig {
            url: agent_url.clone(),
            client_lifetime: config.client_cert_lifetime.unsigned_abs(),
            skew: crate::pki::DEFAULT_CLOCK_SKEW,
            rate: Rate::default(),
            io_timeout: Duration::from_secs(30),
            offline_after: config.offline_after.unsigned_abs(),
            test_hooks: config.enable_test_hooks,
        },
        shutdown.clone(),
    ));
    let refused: crate::pki::RefusedCertificates = {
        let agent = Arc::downgrade(&agent);
        Arc::new(move |cluster: Option<String>, why: String| {
            let (Some(agent), Some(cluster)) = (agent.upgrade(), cluster) else {
                warn!(reason = %why, "client certificate refused");
                return;
            };
            let message = format!("a client certificate for cluster {cluster} was refused: {why}");
            tokio::spawn(async move {
                crate::agent_api::note_refusal(&agent, &cluster, &message).await;
            });
        })
    };
    let agent_tls = agent.ca.server_config(server_cert, Some(refused))?;
    if config.enable_test_hooks {
        warn!("TEST HOOKS ARE ENABLED: never run a production hub with --enable-test-hooks");
    }
    let trusted_keys = vec![read(&dir.join(crate::keygen::PUBLIC_KEY_FILE))?];

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    if config.webhook_secret.is_none() {
        warn!("no webhook secret configured: the webhook endpoint refuses every delivery");
    }
    let sso = single_sign_on(&config.oidc, local)?;
    crate::auth::PERMISSIONS
        .as_ref()
        .map_err(|e| ServeError::Sso(format!("the permissions table is unreadable: {e}")))?;
    let state = Arc::new(ApiState {
        hub: hub.clone(),
        agent: agent.clone(),
        trusted_keys,
        admin_token_hash,
        webhook_secret: config.webhook_secret,
        max_body_bytes: config.max_body_bytes,
        webhook_max_body_bytes: config.webhook_max_body_bytes,
        sso,
    });

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(rounds::run(hub.clone(), triggers, shutdown.clone()));
    hub.trigger(Fetch::All, "start");
    tasks.spawn(crate::poll::run(
        hub.clone(),
        config.poll_interval.unsigned_abs(),
        config.poll_jitter.unsigned_abs(),
        shutdown.clone(),
    ));
    tasks.spawn(resign(
        hub.clone(),
        config.resign_check_interval.unsigned_abs(),
        shutdown.clone(),
    ));
    tasks.spawn(collect(
        hub.clone(),
        config.gc_interval.unsigned_abs(),
        publish_config.blob_grace,
        shutdown.clone(),
    ));
    tasks.spawn(api::serve(
        listener,
        state,
        shutdown.clone(),
        config.shutdown_grace.unsigned_abs(),
    ));
    tasks.spawn(crate::agent_api::serve(
        agent_listener,
        agent_tls,
        agent,
        shutdown.clone(),
        config.shutdown_grace.unsigned_abs(),
    ));
    info!(addr = %local, agent_addr = %agent_local, agent_url = %agent_url, data_dir = %dir.display(), "hub serving");
    // Tests and scripts read the addresses from here (port 0 picks a free one). The agent
    // line comes first: a reader that waits for the human API has both then.
    println!("agent API listening on https://{agent_local}");
    println!("listening on http://{local}");

    wait_for_signal().await;
    info!("shutting down");
    let _ignored = shutdown_tx.send(true);
    while tasks.join_next().await.is_some() {}
    hub.store().close().await;
    info!("stopped");
    Ok(())
}

/// The host of a URL (`https://name:port/…` → `name`), for the server certificate.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the hub");
                let _ignored = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ignored = tokio::signal::ctrl_c().await;
    }
}

/// Sleeps `every` plus a random delay up to `jitter` between ticks, until shutdown.
struct Ticker {
    every: Duration,
    jitter: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Ticker {
    /// False once the hub shuts down.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.every + crate::poll::jitter(self.jitter)) => true,
            _ = self.shutdown.changed() => false,
        }
    }
}

async fn resign(hub: Arc<Hub>, every: Duration, shutdown: watch::Receiver<bool>) {
    let mut ticker = Ticker {
        every,
        jitter: Duration::ZERO,
        shutdown,
    };
    while ticker.tick().await {
        match hub.publisher.resign_due(Timestamp::now()).await {
            Ok(clusters) if clusters.is_empty() => {}
            Ok(clusters) => info!(clusters = clusters.len(), "states re-signed"),
            Err(error) => warn!(%error, "re-sign states"),
        }
    }
}

async fn collect(
    hub: Arc<Hub>,
    every: Duration,
    grace: jiff::SignedDuration,
    shutdown: watch::Receiver<bool>,
) {
    let mut ticker = Ticker {
        every,
        jitter: Duration::ZERO,
        shutdown,
    };
    while ticker.tick().await {
        match hub.store().collect_garbage(Timestamp::now() - grace).await {
            Ok(0) => {}
            Ok(n) => info!(blobs = n, "unreferenced blobs collected"),
            Err(error) => warn!(%error, "collect unreferenced blobs"),
        }
    }
}

/// The single sign-on client `--oidc-issuer` asks for, checked now so a bad flag stops the
/// hub at start rather than at the first login.
fn single_sign_on(
    args: &crate::config::OidcArgs,
    local: std::net::SocketAddr,
) -> Result<Option<Arc<crate::auth::oidc::Sso>>, ServeError> {
    use crate::auth::oidc::{OidcConfig, Sso, parse_group_mapping};
    let Some(issuer) = &args.oidc_issuer else {
        if !args.oidc_groups.is_empty() {
            return Err(ServeError::Sso("--oidc-group needs --oidc-issuer".into()));
        }
        return Ok(None);
    };
    let groups = args
        .oidc_groups
        .iter()
        .map(|g| parse_group_mapping(g).map_err(|e| ServeError::Sso(format!("--oidc-group {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if groups.is_empty() {
        warn!("single sign-on has no --oidc-group: nobody can sign in through it");
    }
    let client_secret = match &args.oidc_client_secret_file {
        Some(path) => {
            let text = read(path)?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(ServeError::Sso(format!(
                    "--oidc-client-secret-file {}: the file is empty",
                    path.display()
                )));
            }
            Some(secrecy::SecretString::from(secret.to_owned()))
        }
        None => None,
    };
    let redirect_url = args
        .oidc_redirect_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}/auth/callback"));
    let sso = Sso::new(OidcConfig {
        issuer: issuer.clone(),
        client_id: args.oidc_client_id.clone(),
        client_secret,
        redirect_url: redirect_url.clone(),
        groups,
    })
    .map_err(|e| ServeError::Sso(e.to_string()))?;
    info!(issuer = %issuer, redirect = %redirect_url, "single sign-on enabled");
    Ok(Some(Arc::new(sso)))
}
