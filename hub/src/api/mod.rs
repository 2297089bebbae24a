//! The human API: JSON under `/api/v1` over HTTP/1.1 (hyper), a bearer token on every route
//! but `/healthz` and the webhook (which is verified by the webhook secret instead), one
//! error object ([`error::ApiError`]), capped bodies, request bodies that refuse unknown
//! fields, and its OpenAPI document ([`openapi`]). One span per request with method, path and
//! status; no header, body or query string is logged.
//!
//! It owns HTTP only: what a request changes goes through the store and `rounds::Hub`.

pub mod actions;
mod apps;
pub mod error;
pub(crate) mod events;
pub mod guard;
mod handlers;
pub mod openapi;
mod users;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument as _, debug, field, info, info_span, warn};

use crate::auth::{self, Principal, Scope};
use crate::rounds::Hub;
use crate::store::Store as _;
pub use error::ApiError;
use jiff::Timestamp;
use openapi::{ROUTES, Route};

/// What every request handler may use.
pub struct ApiState {
    pub hub: Arc<Hub>,
    /// The agent API, for what the human API shows of it (its URL, CA) and the test hook.
    pub agent: Arc<crate::agent_api::AgentApi>,
    /// PEM of the public keys agents must trust (the hub's signing key).
    pub trusted_keys: Vec<String>,
    /// SHA-256 of the admin token.
    pub admin_token_hash: [u8; 32],
    pub webhook_secret: Option<SecretString>,
    pub max_body_bytes: usize,
    pub webhook_max_body_bytes: usize,
    /// Single sign-on for the dashboard, when an issuer is configured.
    pub sso: Option<Arc<crate::auth::oidc::Sso>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Every answer's body: most are one buffer, the event stream is not.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole answer in one buffer.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json(error.status, &error.body()).map(http_body_util::BodyExt::boxed_unsync);
    if error.status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A request as handlers see it: parameters from the path, the body read within its cap.
#[derive(Debug)]
pub(crate) struct Call {
    pub params: Vec<String>,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// Who sends it (anonymous on the public routes).
    pub principal: Principal,
    /// What the permissions table lets them reach on this route.
    pub scope: Scope,
    pub peer: SocketAddr,
}

impl Call {
    /// The one acting through this request, for the audit log.
    pub fn actor(&self) -> actions::Actor {
        actions::Actor {
            who: self.principal.name.clone(),
            source: "api",
            address: self.peer.to_string(),
        }
    }

    /// A 403 unless the scope reaches `project`; `what` says what was asked
    /// (`sync application web`).
    pub fn require_project(&self, project: &str, what: &str) -> Result<(), ApiError> {
        if self.scope.allows(project) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "{} ({}) may not {what}: it belongs to project {project}",
            self.principal.name,
            self.principal.grants_text()
        )))
    }
}

/// Serves until `shutdown` fires, then gives open connections `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accept connection");
                continue;
            }
        };
        let state = state.clone();
        let mut conn_shutdown = shutdown.clone();
        let request_shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                let shutdown = request_shutdown.clone();
                async move { Ok::<_, Infallible>(handle(&state, request, peer, shutdown).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        debug!(%error, "connection ended");
                    }
                }
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ignored = conn.await;
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drain(connections, grace, "human API").await;
}

/// Gives open connections `grace` to finish after shutdown, then closes the rest.
pub(crate) async fn drain(mut connections: JoinSet<()>, grace: Duration, listener: &str) {
    if tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!(
            listener,
            open = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.abort_all();
    }
}

async fn handle(
    state: &ApiState,
    request: Request<Incoming>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = info_span!(
        "request",
        %method,
        %path,
        status = field::Empty,
        who = field::Empty,
        %peer
    );
    async {
        let response = match dispatch(state, request, peer, shutdown).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        let span = tracing::Span::current();
        span.record("status", response.status().as_u16());
        info!("request served");
        response
    }
    .instrument(span)
    .await
}

fn find_route(method: &Method, path: &str) -> Result<(&'static Route, Vec<String>), ApiError> {
    let mut path_matched = false;
    for route in ROUTES {
        if let Some(params) = openapi::match_path(route.path, path) {
            if route.method == *method {
                return Ok((route, params));
            }
            path_matched = true;
        }
    }
    if path_matched {
        Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ))
    } else {
        Err(ApiError::not_found(format!("no route {path}")))
    }
}

/// Who the request's bearer token stands for, or a 401 that says why it stands for nobody.
pub(crate) async fn authenticate(
    state: &ApiState,
    headers: &http::HeaderMap,
) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    principal_of_token(state, token).await
}

/// Who `token` stands for: the local admin, or a live API token's grants.
pub(crate) async fn principal_of_token(
    state: &ApiState,
    token: &str,
) -> Result<Principal, ApiError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::unauthorized());
    }
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if bool::from(hash.ct_eq(&state.admin_token_hash)) {
        return Ok(Principal::local_admin());
    }
    let found = state
        .hub
        .store()
        .api_token_by_hash(&hex::encode(hash))
        .await?;
    auth::tokens::check(found.as_ref(), Timestamp::now()).map_err(|refused| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            refused.to_string(),
        )
    })
}

/// What `principal` may do on `route`: the permissions table's answer, or a 403 naming who
/// may not do what. A route missing from the table is refused to everyone.
fn authorize(principal: &Principal, route: &Route) -> Result<Scope, ApiError> {
    auth::scope(principal, &route.method, route.path).map_err(ApiError::forbidden)
}

async fn dispatch(
    state: &ApiState,
    request: Request<Incoming>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Result<Response<Body>, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    if !path.starts_with("/api/") && path != "/healthz" {
        return Ok(crate::dashboard::serve(state, request, peer, shutdown).await);
    }
    let (route, params) = find_route(&method, &path)?;
    // Authentication and authorization come before anything else is looked at, the body
    // included.
    let (principal, scope) = if route.bearer {
        let principal = authenticate(state, request.headers()).await?;
        let scope = authorize(&principal, route)?;
        (principal, scope)
    } else {
        (Principal::anonymous(), Scope::All)
    };
    tracing::Span::current().record("who", principal.name.as_str());
    if route.path == "/api/v1/events" {
        return Ok(events::stream(state.hub.changes(), shutdown));
    }
    let limit = if route.bearer {
        state.max_body_bytes
    } else {
        state.webhook_max_body_bytes
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::bad_request(format!("read request body: {error}"))
            }
        })?
        .to_bytes();
    let call = Call {
        params,
        query,
        headers: parts.headers,
        body,
        principal,
        scope,
        peer,
    };
    handlers::route(state, route, call)
        .await
        .map(|response| response.map(http_body_util::BodyExt::boxed_unsync))
}

/// The SHA-256 of a token as `init` stores it (hex), decoded.
pub fn parse_token_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// Whether `secret` is configured and non-empty (the webhook refuses everything otherwise).
pub(crate) fn webhook_secret(state: &ApiState) -> Option<&SecretString> {
    state
        .webhook_secret
        .as_ref()
        .filter(|s| !s.expose_secret().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_by_method_and_path() {
        let (route, params) =
            find_route(&Method::GET, "/api/v1/clusters/east/state").expect("found");
        assert_eq!(
            (route.path, params),
            ("/api/v1/clusters/{name}/state", vec!["east".to_owned()])
        );
        let err = find_route(&Method::PUT, "/api/v1/clusters").expect_err("method");
        assert_eq!(err.status, StatusCode::METHOD_NOT_ALLOWED);
        let err = find_route(&Method::GET, "/api/v2/clusters").expect_err("path");
        assert_eq!(err.code, "not_found");
        assert!(
            !find_route(&Method::POST, "/api/v1/webhook/github")
                .expect("found")
                .0
                .bearer
        );
    }

    #[test]
    fn token_hashes_round_trip() {
        let hash = crate::init::token_hash("flt_x");
        let parsed = parse_token_hash(&format!("{hash}\n")).expect("hex");
        assert_eq!(hex::encode(parsed), hash);
        assert_eq!(parse_token_hash("zz"), None);
    }
}
