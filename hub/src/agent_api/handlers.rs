//! One function per route of the agent API.

use std::time::Instant;

use flotilla_shared::Digest;
use flotilla_shared::agent_api::{
    BLOBS_PATH, CertificateResponse, MAX_STATUS_BYTES, MAX_WAIT_SECONDS, REGISTER_PATH, RENEW_PATH,
    RegisterRequest, RenewRequest, STATE_PATH, STATUS_PATH, StatusAck, StatusReport,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use super::{AgentApi, ServeOverride, read_body};
use crate::api::ApiError;
use crate::pki::{Csr, IssuedCert, PeerIdentity};
use crate::registration::{self, Decision, Refusal};
use crate::rounds::Fetch;
use crate::store::{
    AppStatus, AuditEntry, ClusterRecord, ObjectStatus, StatusReport as StoredReport, Store as _,
    StoredState,
};

type Res = Result<Response<Full<Bytes>>, ApiError>;

/// Largest registration or renewal body.
const MAX_CSR_BYTES: usize = 64 << 10;

/// The media type of a served state.
const STATE_MEDIA_TYPE: &str = "application/vnd.flotilla.cluster-state.v1+dsse+json";

pub(super) async fn route(
    api: &AgentApi,
    request: Request<Incoming>,
    identity: Option<&PeerIdentity>,
) -> Res {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let (parts, body) = request.into_parts();
    if method == Method::POST && path == REGISTER_PATH {
        let bytes = read_body(api, body, &parts.headers, MAX_CSR_BYTES).await?;
        return register(api, &bytes).await;
    }
    let known = [RENEW_PATH, STATE_PATH, STATUS_PATH].contains(&path.as_str())
        || path.starts_with(BLOBS_PATH);
    if !known {
        return Err(ApiError::not_found(format!("no route {path}")));
    }
    let identity = identity.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a client certificate issued by this hub is required (register first)",
        )
    })?;
    let cluster = authenticate(api, identity).await?;
    if !api.limiter.allow(&cluster.name, Instant::now()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("cluster {} makes too many requests", cluster.name),
        ));
    }
    match (method, path.as_str()) {
        (Method::POST, RENEW_PATH) => {
            let bytes = read_body(api, body, &parts.headers, MAX_CSR_BYTES).await?;
            renew(api, cluster, &bytes).await
        }
        (Method::GET, STATE_PATH) => {
            state(api, &cluster.name, query.as_deref(), &parts.headers).await
        }
        (Method::GET, blob_path) if blob_path.starts_with(BLOBS_PATH) => {
            blob(api, &cluster.name, &blob_path[BLOBS_PATH.len()..]).await
        }
        (Method::POST, STATUS_PATH) => {
            let bytes = read_body(api, body, &parts.headers, MAX_STATUS_BYTES).await?;
            status(api, cluster, &bytes).await
        }
        (method, path) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )),
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    crate::api::json(
        status,
        &serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
    )
}

fn audit(action: &str, cluster: &str, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        at: Timestamp::now(),
        who: format!("agent:{cluster}"),
        action: action.to_owned(),
        subject: format!("cluster {cluster}"),
        detail,
        source: "agent-api".to_owned(),
        address: String::new(),
    }
}

/// Records why a cluster's agent was refused, for `flotilla cluster list`, and logs it.
pub(crate) async fn note_refusal(api: &AgentApi, cluster: &str, message: &str) {
    warn!(cluster, reason = message, "agent refused");
    let store = api.hub.store();
    match store.cluster(cluster).await {
        Ok(Some(mut record)) => {
            record.registration.last_error = Some(message.to_owned());
            record.registration.last_error_at = Some(Timestamp::now());
            if let Err(error) = store.put_cluster(&record).await {
                warn!(%error, "record the refusal");
            }
            api.hub.changed();
        }
        Ok(None) => {}
        Err(error) => warn!(%error, "read cluster to record a refusal"),
    }
}

fn certificate_answer(api: &AgentApi, issued: &IssuedCert) -> CertificateResponse {
    CertificateResponse {
        certificate: issued.chain_pem.clone(),
        ca_certificate: api.ca.cert_pem().to_owned(),
        not_after: issued.not_after.to_string(),
    }
}

/// Stores what was issued: the key, the serials the hub accepts (this one and the one it
/// replaces), the expiry; clears the last error.
fn record_issue(record: &mut ClusterRecord, issued: &IssuedCert, now: Timestamp) {
    let registration = &mut record.registration;
    registration.key_fingerprint = Some(issued.key_fingerprint.clone());
    let previous = registration.cert_serials.first().cloned();
    registration.cert_serials = std::iter::once(issued.serial_hex.clone())
        .chain(previous)
        .collect();
    registration.cert_not_after = Some(issued.not_after);
    registration.registered_at.get_or_insert(now);
    registration.last_error = None;
    registration.last_error_at = None;
}

async fn register(api: &AgentApi, bytes: &[u8]) -> Res {
    let request: RegisterRequest = parse(bytes)?;
    let cluster = request.cluster.as_str();
    flotilla_shared::identity::validate_cluster_name(cluster)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !api
        .limiter
        .allow(&format!("register:{cluster}"), Instant::now())
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many registrations for cluster {cluster}"),
        ));
    }
    let store = api.hub.store();
    let csr = match Csr::parse(&request.csr, cluster) {
        Ok(csr) => csr,
        Err(error) => {
            let message = format!("registration refused: {error}");
            note_refusal(api, cluster, &message).await;
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "csr_invalid",
                message,
            ));
        }
    };
    let hash = registration::token_hash(request.token.trim());
    let token = store.bootstrap_token(&hash).await?;
    let record = store.cluster(cluster).await?;
    let now = Timestamp::now();
    let decision = registration::decide(
        token.as_ref(),
        record.as_ref(),
        cluster,
        csr.key_fingerprint(),
        now,
    );
    let refuse = |refusal: Refusal| async move {
        let message = format!("registration refused: {refusal}");
        // Only a token made for this cluster may put an error on it: anyone could name it.
        if !matches!(
            refusal,
            Refusal::UnknownToken | Refusal::OtherCluster { .. }
        ) {
            note_refusal(api, cluster, &message).await;
        } else {
            warn!(cluster, reason = %message, "agent refused");
        }
        let status = match refusal {
            Refusal::Revoked { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Err(ApiError::new(status, refusal.code(), message))
    };
    match decision {
        Decision::Refuse(refusal) => refuse(refusal).await,
        Decision::Pending => {
            if !store
                .claim_bootstrap_token(&hash, csr.key_fingerprint(), None)
                .await?
            {
                return refuse(Refusal::Reused {
                    cluster: cluster.to_owned(),
                    used_at: None,
                })
                .await;
            }
            info!(cluster, "registration waits for approval");
            let mut record = record.ok_or_else(|| ApiError::internal("cluster vanished"))?;
            let message = format!(
                "cluster {cluster} waits for approval: `flotilla cluster approve {cluster}`"
            );
            record.registration.last_error = Some(message.clone());
            record.registration.last_error_at = Some(now);
            store.put_cluster(&record).await?;
            Err(ApiError::new(
                StatusCode::ACCEPTED,
                "pending_approval",
                message,
            ))
        }
        Decision::Issue => {
            if !store
                .claim_bootstrap_token(&hash, csr.key_fingerprint(), Some(now))
                .await?
            {
                return refuse(Refusal::Reused {
                    cluster: cluster.to_owned(),
                    used_at: None,
                })
                .await;
            }
            let issued = api
                .ca
                .issue_client(&csr, api.config.client_lifetime, api.config.skew, now)
                .map_err(|error| {
                    warn!(%error, cluster, "issue a client certificate");
                    ApiError::internal("could not issue a certificate; see the hub's log")
                })?;
            let mut record = record.ok_or_else(|| ApiError::internal("cluster vanished"))?;
            record_issue(&mut record, &issued, now);
            store.put_cluster(&record).await?;
            store
                .record_audit(&audit(
                    "register",
                    cluster,
                    json!({"serial": issued.serial_hex, "notAfter": issued.not_after.to_string()}),
                ))
                .await?;
            info!(cluster, serial = %issued.serial_hex, not_after = %issued.not_after, "agent registered");
            Ok(json(StatusCode::OK, &certificate_answer(api, &issued)))
        }
    }
}

/// The cluster a verified certificate names, if it is registered, not revoked, and the
/// certificate is one the hub still accepts.
async fn authenticate(api: &AgentApi, identity: &PeerIdentity) -> Result<ClusterRecord, ApiError> {
    let cluster = &identity.cluster;
    let forbidden =
        |code: &'static str, message: String| ApiError::new(StatusCode::FORBIDDEN, code, message);
    let Some(record) = api.hub.store().cluster(cluster).await? else {
        return Err(forbidden(
            "unauthenticated",
            format!("cluster {cluster} is not registered with this hub"),
        ));
    };
    if let Some(at) = record.registration.revoked_at {
        let message = format!("cluster {cluster} was revoked at {at}");
        warn!(cluster = %cluster, "revoked cluster refused");
        return Err(forbidden("revoked", message));
    }
    if !record
        .registration
        .cert_serials
        .contains(&identity.serial_hex)
    {
        let message = format!(
            "certificate {} of cluster {cluster} was replaced by a newer registration",
            identity.serial_hex
        );
        note_refusal(api, cluster, &message).await;
        return Err(forbidden("unauthenticated", message));
    }
    Ok(record)
}

async fn renew(api: &AgentApi, mut record: ClusterRecord, bytes: &[u8]) -> Res {
    let request: RenewRequest = parse(bytes)?;
    let cluster = record.name.clone();
    let csr = Csr::parse(&request.csr, &cluster).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "csr_invalid",
            format!("renewal refused: {error}"),
        )
    })?;
    let now = Timestamp::now();
    let issued = api
        .ca
        .issue_client(&csr, api.config.client_lifetime, api.config.skew, now)
        .map_err(|error| {
            warn!(%error, cluster, "renew a client certificate");
            ApiError::internal("could not issue a certificate; see the hub's log")
        })?;
    record_issue(&mut record, &issued, now);
    api.hub.store().put_cluster(&record).await?;
    api.hub.changed();
    api.hub
        .store()
        .record_audit(&audit(
            "renew",
            &cluster,
            json!({"serial": issued.serial_hex}),
        ))
        .await?;
    info!(cluster, serial = %issued.serial_hex, "certificate renewed");
    Ok(json(StatusCode::OK, &certificate_answer(api, &issued)))
}

/// The state served to `cluster`: its newest, unless a test hook says otherwise.
async fn served_state(api: &AgentApi, cluster: &str) -> Result<Option<StoredState>, ApiError> {
    let store = api.hub.store();
    Ok(match api.serve_override() {
        None => store.latest_state(cluster).await?,
        Some(ServeOverride::Oldest) => store.cluster_states(cluster).await?.pop(),
        Some(ServeOverride::From(other)) => store.latest_state(&other).await?,
    })
}

fn etag(state: &StoredState) -> String {
    format!("\"{}\"", state.payload_digest)
}

async fn state(
    api: &AgentApi,
    cluster: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Res {
    let mut wait = 0u64;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "wait" => {
                wait = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("wait {value:?} is not a number of seconds"))
                })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "query parameter {other:?} is not known"
                )));
            }
        }
    }
    let wait = std::time::Duration::from_secs(wait.min(MAX_WAIT_SECONDS));
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .map(str::to_owned);
    // Subscribe before reading, so a publication in between still wakes us.
    let mut changed = api.hub.publisher.watchers().subscribe(cluster);
    let mut shutdown = api.shutdown.clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = served_state(api, cluster).await?;
        if let Some(state) = &current
            && known.as_deref() != Some(etag(state).as_str())
        {
            let mut response = Response::new(Full::new(Bytes::from(state.envelope.clone())));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(STATE_MEDIA_TYPE),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(value) = HeaderValue::from_str(&etag(state)) {
                headers.insert(header::ETAG, value);
            }
            if let Ok(value) = HeaderValue::from_str(&state.generation.to_string()) {
                headers.insert("x-flotilla-generation", value);
            }
            return Ok(response);
        }
        let woke = tokio::select! {
            changed = changed.changed() => changed.is_ok(),
            () = tokio::time::sleep_until(deadline) => false,
            _ = shutdown.changed() => false,
        };
        if !woke {
            return match current {
                Some(_) => {
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::NOT_MODIFIED;
                    Ok(response)
                }
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_state",
                    format!("no state has been published for cluster {cluster} yet"),
                )),
            };
        }
    }
}

async fn blob(api: &AgentApi, cluster: &str, digest: &str) -> Res {
    let not_found = || ApiError::not_found(format!("no blob {digest} for cluster {cluster}"));
    let digest: Digest = digest.parse().map_err(|_| not_found())?;
    let Some(bytes) = api.hub.store().cluster_blob(cluster, &digest).await? else {
        return Err(not_found());
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.flotilla.app-blob.v1+json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(response)
}

/// Whether an agent of `agent` version may talk to a hub of `hub` version: the same release
/// line or the previous minor one (the same major, for 0.x the same minor or one less).
pub(crate) fn agent_supported(agent: &str, hub: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.trim_start_matches('v').split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(agent), parse(hub)) {
        (Some((a_major, a_minor)), Some((h_major, h_minor))) => {
            a_major == h_major && a_minor + 1 >= h_minor
        }
        _ => false,
    }
}

async fn status(api: &AgentApi, mut record: ClusterRecord, bytes: &[u8]) -> Res {
    let report: StatusReport = parse(bytes)?;
    let cluster = record.name.clone();
    let hub_version = env!("CARGO_PKG_VERSION");
    if !agent_supported(&report.agent.version, hub_version) {
        let message = format!(
            "agent version {} is too old for hub {hub_version}: upgrade the agent to this hub's release or the one before",
            report.agent.version
        );
        note_refusal(api, &cluster, &message).await;
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "agent_too_old",
            message,
        ));
    }
    let now = Timestamp::now();
    let stored = StoredReport {
        cluster: cluster.clone(),
        seq: report.seq,
        received_at: now,
        apps: report
            .apps
            .iter()
            .map(|app| AppStatus {
                app: app.name.clone(),
                generation: Some(app.generation),
                revision: Some(app.revision.clone()).filter(|r| !r.is_empty()),
                sync: app.sync.clone(),
                health: app.health.clone(),
                message: app.message.clone(),
                objects: app
                    .objects
                    .iter()
                    .map(|o| ObjectStatus {
                        object: o.object.clone(),
                        state: o.state.clone(),
                        message: o.message.clone(),
                    })
                    .collect(),
            })
            .collect(),
        raw: serde_json::from_slice(bytes).unwrap_or_default(),
    };
    let store = api.hub.store();
    let recorded = store.record_status(&stored).await?;
    let last_seq = store
        .status_history(&cluster, 1)
        .await?
        .first()
        .map_or(0, |entry| entry.seq);
    // What the agent says about its cluster feeds rendering (Helm's versions, the cluster
    // generator's `server`): a change asks for a round.
    let info = &report.agent;
    let changed = record.server_url.as_deref() != Some(info.server.as_str())
        || record.kube_version.as_deref() != Some(info.kube_version.as_str())
        || record.api_versions != info.api_versions;
    record.server_url = Some(info.server.clone()).filter(|s| !s.is_empty());
    record.kube_version = Some(info.kube_version.clone()).filter(|s| !s.is_empty());
    record.api_versions = info.api_versions.clone();
    record.agent_version = Some(info.version.clone());
    record.last_seen = Some(now);
    if report.state.phase == "Refused" {
        let message = format!(
            "the agent refused generation {}: {}",
            report
                .state
                .refused_generation
                .map_or_else(|| "?".to_owned(), |g| g.to_string()),
            report.state.message
        );
        warn!(cluster = %cluster, reason = %message, "state refused by the agent");
        record.registration.last_error = Some(message);
        record.registration.last_error_at = Some(now);
    } else if recorded
        && record.registration.last_error.is_some()
        && report.state.phase == "Applied"
    {
        record.registration.last_error = None;
        record.registration.last_error_at = None;
    }
    store.put_cluster(&record).await?;
    api.hub.changed();
    if changed {
        api.hub.trigger(Fetch::Missing, "agent");
    }
    if !recorded {
        info!(cluster = %cluster, seq = report.seq, last_seq, "duplicate status report ignored");
    }
    Ok(json(StatusCode::OK, &StatusAck { recorded, last_seq }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_of_this_and_the_previous_minor_release_are_served() {
        assert!(agent_supported("0.1.0", "0.1.3"));
        assert!(agent_supported("v0.1.9", "0.2.0"));
        assert!(!agent_supported("0.1.0", "0.3.0"));
        assert!(!agent_supported("1.4.0", "2.0.0"));
        assert!(agent_supported("0.3.0", "0.2.0"), "a newer agent is fine");
        assert!(!agent_supported("garbage", "0.1.0"));
    }
}
