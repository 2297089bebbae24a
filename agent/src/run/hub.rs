//! The agent API as the agent calls it (DESIGN.md "Transport and identity";
//! `flotilla_shared::agent_api`): register, renew, long-poll the state, fetch blobs and post
//! status reports. Talks to the hub over HTTPS with reqwest and rustls: mutual TLS with the
//! agent's certificate on every route but registration, which presents none.
//!
//! It owns the requests, their deadlines and size caps, and reading the answers; it decides
//! nothing about them. Every request has a timeout. The hub's `Date` header gives the clock
//! offset the agent reports.
//! Invariant: no token, key or certificate is in an error or a log line from here; the
//! bootstrap token goes only into the body of `POST /v1/register`.

use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use flotilla_shared::Digest;
use flotilla_shared::agent_api::{
    BLOBS_PATH, CertificateResponse, ErrorBody, MAX_WAIT_SECONDS, REGISTER_PATH, RENEW_PATH,
    RegisterRequest, RenewRequest, STATE_PATH, STATUS_PATH, StatusAck, StatusReport,
};
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{DATE, ETAG, HeaderMap, IF_NONE_MATCH};

use crate::identity::{self, AgentKey, IdentityError};

/// Deadline of a request that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline of a blob download (blobs are up to 64 MiB).
const BLOB_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than its `wait` a long poll may take before it counts as lost.
const POLL_GRACE: Duration = Duration::from_secs(15);
/// Largest answer read for anything but a state or a blob.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("build the HTTP client for the hub")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{route}: the agent has no client certificate yet")]
    NotRegistered { route: &'static str },
    #[error("{route}: no answer from the hub")]
    Unreachable {
        route: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{route}: the hub answered {status} {code}: {message}")]
    Refused {
        route: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{route}: unusable answer: {reason}")]
    BadAnswer { route: &'static str, reason: String },
}

/// The answer to a registration.
#[derive(Debug)]
pub enum Registration {
    Issued(CertificateResponse),
    /// The hub waits for an administrator to approve the cluster; the message says so.
    Pending(String),
}

/// The answer to a long poll of the state.
#[derive(Debug)]
pub enum StateAnswer {
    /// Nothing newer than the state named in `If-None-Match` within the wait.
    Unchanged,
    /// The hub has no state for this cluster yet.
    NoState,
    /// The envelope of the cluster's newest state, and its `ETag` (the payload digest,
    /// quoted) when the hub sent one.
    State {
        envelope: Vec<u8>,
        etag: Option<String>,
    },
}

/// A client of one hub's agent API.
pub struct HubClient {
    /// `https://host:port`, without a trailing slash.
    base: String,
    hub_ca_pem: String,
    registration: reqwest::Client,
    /// The mutual-TLS client, once the agent has a certificate (replaced on renewal).
    mtls: RwLock<Option<reqwest::Client>>,
    clock_offset_ms: AtomicI64,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn http_client(config: &rustls::ClientConfig) -> Result<reqwest::Client, HubError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(config.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("flotilla-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HubError::Client)
}

impl HubClient {
    /// A client of the hub at `base` whose server certificate the CA in `hub_ca_pem` signs.
    pub fn new(base: &reqwest::Url, hub_ca_pem: &str) -> Result<HubClient, HubError> {
        let registration = http_client(&*identity::registration_config(hub_ca_pem)?)?;
        Ok(HubClient {
            base: base.as_str().trim_end_matches('/').to_owned(),
            hub_ca_pem: hub_ca_pem.to_owned(),
            registration,
            mtls: RwLock::new(None),
            clock_offset_ms: AtomicI64::new(0),
        })
    }

    /// From now on, calls present `chain_pem` (the certificate of `key`). `extra_ca_pem` (the
    /// CA the hub named when it issued the certificate) is trusted next to the configured one.
    pub fn set_identity(
        &self,
        key: &AgentKey,
        chain_pem: &str,
        extra_ca_pem: &str,
    ) -> Result<(), HubError> {
        let cas = format!("{}\n{extra_ca_pem}", self.hub_ca_pem);
        let client = http_client(&*identity::client_config(key, chain_pem, &cas)?)?;
        *self
            .mtls
            .write()
            .expect("the client lock is never poisoned") = Some(client);
        Ok(())
    }

    /// Forgets the client certificate (it expired): the agent registers again.
    pub fn clear_identity(&self) {
        *self
            .mtls
            .write()
            .expect("the client lock is never poisoned") = None;
    }

    pub fn has_identity(&self) -> bool {
        self.mtls
            .read()
            .expect("the client lock is never poisoned")
            .is_some()
    }

    /// The agent's clock minus the hub's, in milliseconds, from the last answer's `Date`.
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    fn mtls(&self, route: &'static str) -> Result<reqwest::Client, HubError> {
        self.mtls
            .read()
            .expect("the client lock is never poisoned")
            .clone()
            .ok_or(HubError::NotRegistered { route })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and notes the hub's clock.
    async fn send(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HubError> {
        let response = request
            .send()
            .await
            .map_err(|source| HubError::Unreachable { route, source })?;
        if let Some(offset) = clock_offset_ms(response.headers(), Timestamp::now()) {
            self.clock_offset_ms.store(offset, Ordering::Relaxed);
        }
        Ok(response)
    }

    /// `POST /v1/register`: the bootstrap token and a CSR for a certificate.
    #[tracing::instrument(skip_all, fields(cluster = %request.cluster))]
    pub async fn register(&self, request: &RegisterRequest) -> Result<Registration, HubError> {
        let route = REGISTER_PATH;
        let body = serde_json::to_vec(request).expect("a registration serializes");
        let response = self
            .send(
                route,
                self.registration
                    .post(self.url(route))
                    .header("content-type", "application/json")
                    .timeout(REQUEST_TIMEOUT)
                    .body(body),
            )
            .await?;
        match response.status() {
            StatusCode::OK => Ok(Registration::Issued(json(
                route,
                read_capped(route, response, MAX_ANSWER_BYTES).await?,
            )?)),
            StatusCode::ACCEPTED => {
                let body = read_capped(route, response, MAX_ANSWER_BYTES).await?;
                let message = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|e| e.error.message)
                    .unwrap_or_else(|_| "waiting for approval".to_owned());
                Ok(Registration::Pending(message))
            }
            _ => Err(refused(route, response).await),
        }
    }

    /// `POST /v1/renew`: a new certificate, over mutual TLS with the current one.
    #[tracing::instrument(skip_all)]
    pub async fn renew(&self, request: &RenewRequest) -> Result<CertificateResponse, HubError> {
        self.post_mtls(RENEW_PATH, request).await
    }

    /// `GET /v1/state?wait=…`: waits up to `wait` for a state other than the one whose
    /// payload digest is `if_none_match`; reads at most `max_bytes` of envelope.
    #[tracing::instrument(skip_all, fields(wait = wait.as_secs()))]
    pub async fn state(
        &self,
        if_none_match: Option<&str>,
        wait: Duration,
        max_bytes: u64,
    ) -> Result<StateAnswer, HubError> {
        let route = STATE_PATH;
        let wait = wait.as_secs().min(MAX_WAIT_SECONDS);
        let mut request = self
            .mtls(route)?
            .get(self.url(&format!("{route}?wait={wait}")))
            .timeout(Duration::from_secs(wait) + POLL_GRACE);
        if let Some(etag) = if_none_match {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = self.send(route, request).await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(StateAnswer::Unchanged),
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let envelope = read_capped(route, response, max_bytes).await?;
                Ok(StateAnswer::State { envelope, etag })
            }
            StatusCode::NOT_FOUND => match refused(route, response).await {
                HubError::Refused { code, .. } if code == "no_state" => Ok(StateAnswer::NoState),
                other => Err(other),
            },
            _ => Err(refused(route, response).await),
        }
    }

    /// `GET /v1/blobs/sha256:…`: a blob's bytes, at most `max_bytes` of them (the caller
    /// checks them against the signed state).
    #[tracing::instrument(skip_all, fields(%digest))]
    pub async fn blob(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>, HubError> {
        let route = BLOBS_PATH;
        let response = self
            .send(
                route,
                self.mtls(route)?
                    .get(self.url(&format!("{route}{digest}")))
                    .timeout(BLOB_TIMEOUT),
            )
            .await?;
        if response.status() != StatusCode::OK {
            return Err(refused(route, response).await);
        }
        read_capped(route, response, max_bytes).await
    }

    /// `POST /v1/status`.
    #[tracing::instrument(skip_all, fields(seq = report.seq, reason = %report.reason))]
    pub async fn status(&self, report: &StatusReport) -> Result<StatusAck, HubError> {
        self.post_mtls(STATUS_PATH, report).await
    }

    /// POSTs `body` as JSON to `route` over mutual TLS; 200 with a JSON answer or an error.
    async fn post_mtls<B: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        route: &'static str,
        body: &B,
    ) -> Result<A, HubError> {
        let body = serde_json::to_vec(body).expect("agent API requests serialize");
        let response = self
            .send(
                route,
                self.mtls(route)?
                    .post(self.url(route))
                    .header("content-type", "application/json")
                    .timeout(REQUEST_TIMEOUT)
                    .body(body),
            )
            .await?;
        if response.status() != StatusCode::OK {
            return Err(refused(route, response).await);
        }
        json(route, read_capped(route, response, MAX_ANSWER_BYTES).await?)
    }
}

/// Reads a body of at most `limit` bytes.
async fn read_capped(
    route: &'static str,
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, HubError> {
    let too_large = || HubError::BadAnswer {
        route,
        reason: format!("the body is larger than {limit} bytes"),
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| HubError::Unreachable { route, source })?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn json<T: serde::de::DeserializeOwned>(route: &'static str, body: Vec<u8>) -> Result<T, HubError> {
    serde_json::from_slice(&body).map_err(|e| HubError::BadAnswer {
        route,
        reason: e.to_string(),
    })
}

/// The error of an answer with an unexpected status, with the hub's message when it sent
/// an error object.
async fn refused(route: &'static str, response: reqwest::Response) -> HubError {
    let status = response.status();
    let body = read_capped(route, response, MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(error) => (error.error.code, error.error.message),
        Err(_) => (
            String::new(),
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned(),
        ),
    };
    HubError::Refused {
        route,
        status: status.as_u16(),
        code,
        message,
    }
}

/// `now` minus the `Date` an answer carries, in milliseconds.
pub fn clock_offset_ms(headers: &HeaderMap, now: Timestamp) -> Option<i64> {
    let date = headers.get(DATE)?.to_str().ok()?;
    let hub = jiff::fmt::rfc2822::parse(date).ok()?.timestamp();
    i64::try_from(now.duration_since(hub).as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn check(date: Option<&str>, now: &str, expected: Option<i64>) {
        let mut headers = HeaderMap::new();
        if let Some(date) = date {
            headers.insert(DATE, HeaderValue::from_str(date).expect("header"));
        }
        let now: Timestamp = now.parse().expect("time");
        assert_eq!(clock_offset_ms(&headers, now), expected, "{date:?}");
    }

    #[test]
    fn the_clock_offset_comes_from_the_date_header() {
        check(
            Some("Sat, 28 Nov 2026 00:00:00 GMT"),
            "2026-11-28T00:00:01.500Z",
            Some(1500),
        );
        check(
            Some("Sat, 28 Nov 2026 00:00:10 GMT"),
            "2026-11-28T00:00:00Z",
            Some(-10_000),
        );
        check(Some("yesterday"), "2026-11-28T00:00:00Z", None);
        check(None, "2026-11-28T00:00:00Z", None);
    }
}
