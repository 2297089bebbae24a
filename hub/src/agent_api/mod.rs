//! The agent API: its own listener, TLS with client certificates of the hub CA (`pki`),
//! HTTP/1.1 and HTTP/2, the routes of `flotilla_shared::agent_api`. Registration is the one
//! route without a client certificate (it takes a bootstrap token instead); every other route
//! reads the cluster from the verified certificate, refuses a revoked cluster or a replaced
//! certificate, and is rate limited per cluster. Bodies are capped and read under a deadline.
//!
//! It owns HTTP and TLS only: `registration` decides who may register, `pki` issues, the store
//! keeps clusters, tokens, states and reports, and `publish::Watchers` wakes long polls.

mod handlers;

pub(crate) use handlers::note_refusal;
pub mod limits;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument as _, debug, field, info, info_span, warn};

use crate::api::ApiError;
use crate::pki::{HubCa, PeerIdentity};
use crate::rounds::Hub;
use limits::{Limiter, Rate};

/// How the agent API behaves.
#[derive(Debug, Clone)]
pub struct AgentApiConfig {
    /// The URL agents reach this listener at (shown to administrators for `helm install`).
    pub url: String,
    /// Lifetime of the client certificates issued.
    pub client_lifetime: Duration,
    /// How far certificates are backdated.
    pub skew: Duration,
    pub rate: Rate,
    /// How long a TLS handshake and a request body may take.
    pub io_timeout: Duration,
    /// A cluster whose agent has not reported for this long is shown Offline.
    pub offline_after: Duration,
    /// Whether the test-only serve override may be set (never in production).
    pub test_hooks: bool,
}

/// What a test makes the agent API serve instead of the cluster's newest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeOverride {
    /// The oldest retained state of the cluster (a replayed, older generation).
    Oldest,
    /// Another cluster's newest state.
    From(String),
}

/// The agent API's shared state.
pub struct AgentApi {
    pub hub: Arc<Hub>,
    pub ca: HubCa,
    pub config: AgentApiConfig,
    limiter: Limiter,
    serve_override: RwLock<Option<ServeOverride>>,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for AgentApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentApi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AgentApi {
    pub fn new(
        hub: Arc<Hub>,
        ca: HubCa,
        config: AgentApiConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let limiter = Limiter::new(config.rate);
        Self {
            hub,
            ca,
            config,
            limiter,
            serve_override: RwLock::new(None),
            shutdown,
        }
    }

    /// Sets the test-only serve override; refused unless the hub runs with test hooks.
    pub fn set_serve_override(&self, value: Option<ServeOverride>) -> bool {
        if !self.config.test_hooks {
            return false;
        }
        warn!(override = ?value, "TEST HOOK: the agent API serve override changed");
        *self
            .serve_override
            .write()
            .unwrap_or_else(|e| e.into_inner()) = value;
        true
    }

    fn serve_override(&self) -> Option<ServeOverride> {
        self.serve_override
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

type Body = Full<Bytes>;

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = crate::api::json(error.status, &error.body());
    if error.status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Serves until `shutdown` fires, then gives open connections `grace` to finish. A refused
/// TLS handshake is logged with the peer address and the reason.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    api: Arc<AgentApi>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accept agent connection");
                continue;
            }
        };
        let api = api.clone();
        let acceptor = acceptor.clone();
        let mut conn_shutdown = shutdown.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(api.config.io_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    warn!(%peer, %error, "agent TLS handshake refused");
                    return;
                }
                Err(_) => {
                    warn!(%peer, "agent TLS handshake timed out");
                    return;
                }
            };
            let identity = match tls.get_ref().1.peer_certificates() {
                None | Some([]) => None,
                Some(certs) => match crate::pki::peer_identity(certs) {
                    Ok(identity) => Some(identity),
                    Err(error) => {
                        warn!(%peer, %error, "agent certificate refused");
                        return;
                    }
                },
            };
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                let identity = identity.clone();
                async move { Ok::<_, Infallible>(handle(&api, request, identity, peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        debug!(%error, "agent connection ended");
                    }
                }
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ignored = conn.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    crate::api::drain(connections, grace, "agent API").await;
}

async fn handle(
    api: &AgentApi,
    request: Request<Incoming>,
    identity: Option<PeerIdentity>,
    peer: SocketAddr,
) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let cluster = identity.as_ref().map(|i| i.cluster.clone());
    let span = info_span!(
        "agent_request",
        %method,
        %path,
        cluster = cluster.as_deref().unwrap_or("-"),
        status = field::Empty,
        %peer
    );
    async {
        let response = match handlers::route(api, request, identity.as_ref()).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        if status.is_client_error() && status != StatusCode::NOT_MODIFIED {
            info!("agent request refused");
        } else {
            debug!("agent request served");
        }
        response
    }
    .instrument(span)
    .await
}

/// Reads a body of at most `limit` bytes within the I/O timeout.
async fn read_body(
    api: &AgentApi,
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    match tokio::time::timeout(api.config.io_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => Err(ApiError::bad_request(format!("read request body: {error}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "request body not received in time",
        )),
    }
}
