//! One function per route of the human API. Each reads the store, writes it and asks for a
//! round; none renders, fetches or signs itself.

use std::collections::{BTreeMap, BTreeSet};

use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::openapi::{self, Route};
use super::{ApiError, ApiState, Call, actions, apps, guard, json, users};
use crate::declarative::{self, Document};
use crate::publish::stored_payload;
use crate::rounds::Fetch;
use crate::store::{
    AppSetRecord, ApplicationRecord, AuditEntry, ClusterRecord, Origin, ProjectRecord,
    RepositoryRecord, Store as _,
};
use crate::webhook::{self, Delivery, Provider, WebhookError};

pub(super) type Res = Result<Response<Full<Bytes>>, ApiError>;

pub(super) async fn route(state: &ApiState, route: &Route, call: Call) -> Res {
    let param = |i: usize| call.params.get(i).map(String::as_str).unwrap_or_default();
    let call = &call;
    // The object-level half of authorization (the table was checked before): routes on one
    // application or ApplicationSet need its project in the call's scope.
    if route.path.starts_with("/api/v1/applications/{name}") {
        guard::app(state, call, param(0), &verb(route)).await?;
    } else if route.path == "/api/v1/applicationsets/{name}" {
        guard::app_set(state, call, param(0), &verb(route)).await?;
    }
    match (route.method.as_str(), route.path) {
        ("GET", "/healthz") => Ok(json(StatusCode::OK, &json!({"status": "ok"}))),
        ("GET", "/api/v1/openapi.json") => Ok(json(StatusCode::OK, &openapi::document())),
        ("GET", "/api/v1/whoami") => Ok(json(StatusCode::OK, &whoami(call))),
        ("POST", "/api/v1/apply") => apply(state, call).await,
        ("GET", "/api/v1/applications") => apps::applications(state, call).await,
        ("POST", "/api/v1/applications") => apps::create_application(state, call).await,
        ("GET", "/api/v1/applications/{name}") => apps::application(state, param(0)).await,
        ("DELETE", "/api/v1/applications/{name}") => {
            apps::delete_application(state, param(0), call).await
        }
        ("POST", "/api/v1/applications/{name}/sync") => apps::sync(state, param(0), call).await,
        ("GET", "/api/v1/applications/{name}/history") => {
            apps::history(state, param(0), call).await
        }
        ("POST", "/api/v1/applications/{name}/rollback") => {
            apps::rollback(state, param(0), call).await
        }
        ("GET", "/api/v1/applications/{name}/diff") => apps::diff(state, param(0), call).await,
        ("GET", "/api/v1/applicationsets") => apps::app_sets(state, call).await,
        ("POST", "/api/v1/applicationsets") => apps::put_app_set(state, call).await,
        ("GET", "/api/v1/applicationsets/{name}") => apps::app_set(state, param(0)).await,
        ("DELETE", "/api/v1/applicationsets/{name}") => {
            apps::delete_app_set(state, param(0), call).await
        }
        ("GET", "/api/v1/clusters/{name}") => apps::cluster(state, param(0), call).await,
        ("GET", "/api/v1/audit") => apps::audit_log(state, call).await,
        ("POST", "/api/v1/applications/{name}/pin") => pin(state, param(0), call).await,
        ("DELETE", "/api/v1/applications/{name}/pin") => unpin(state, param(0), call).await,
        ("GET", "/api/v1/clusters") => apps::clusters(state, call).await,
        ("POST", "/api/v1/clusters") => put_cluster(state, call).await,
        ("GET", "/api/v1/clusters/{name}/state") => cluster_state(state, param(0)).await,
        ("POST", "/api/v1/clusters/{name}/tokens") => create_token(state, param(0), call).await,
        ("POST", "/api/v1/clusters/{name}/approve") => approve(state, param(0), call).await,
        ("POST", "/api/v1/clusters/{name}/revoke") => revoke(state, param(0), call).await,
        ("POST", "/api/v1/clusters/{name}/labels") => label(state, param(0), call).await,
        ("GET", "/api/v1/clusters/{name}/bundle") => bundle(state, param(0), call).await,
        ("GET", "/api/v1/clusters/{name}/status") => {
            cluster_status_reports(state, param(0), call).await
        }
        ("GET", "/api/v1/agent-api") => Ok(json(
            StatusCode::OK,
            &json!({
                "url": state.agent.config.url,
                "caCertificate": state.agent.ca.cert_pem(),
                "trustedKeys": state.trusted_keys,
            }),
        )),
        ("PUT", "/api/v1/test/serve-override") => serve_override(state, call).await,
        ("GET", "/api/v1/repositories") => repositories(state, call).await,
        ("PUT", "/api/v1/repositories") => put_repository(state, call).await,
        ("DELETE", "/api/v1/repositories") => delete_repository(state, call).await,
        ("GET", "/api/v1/projects") => projects(state, call).await,
        ("GET", "/api/v1/config-repository") => {
            Ok(json(StatusCode::OK, &state.hub.config_status().to_json()))
        }
        ("POST", "/api/v1/refresh") => {
            state.hub.trigger(Fetch::All, "api");
            Ok(json(StatusCode::ACCEPTED, &json!({"status": "queued"})))
        }
        ("GET", "/api/v1/tokens") => users::tokens(state).await,
        ("POST", "/api/v1/tokens") => users::create_token(state, call).await,
        ("DELETE", "/api/v1/tokens/{id}") => users::revoke_token(state, param(0), call).await,
        ("POST", "/api/v1/webhook/{provider}") => receive_webhook(state, param(0), call).await,
        (method, path) => Err(ApiError::not_found(format!(
            "no handler for {method} {path}"
        ))),
    }
}

/// What a route does to an application, in words (`sync`, `read`), for refusals.
fn verb(route: &Route) -> String {
    let last = route.path.rsplit('/').next().unwrap_or_default();
    match (route.method.as_str(), last) {
        ("GET", _) => "read".to_owned(),
        ("DELETE", "pin") => "unpin".to_owned(),
        ("DELETE", _) => "delete".to_owned(),
        (_, "{name}") => "change".to_owned(),
        (_, action) => action.to_owned(),
    }
}

/// `GET /api/v1/whoami`: the principal, its grants and when its credential ends.
fn whoami(call: &Call) -> Value {
    let p = &call.principal;
    json!({
        "name": p.name,
        "kind": p.kind.as_str(),
        "grants": p.grants,
        "expiresAt": p.expires.map(|t| t.to_string()),
    })
}

/// A JSON body into `T`, refusing unknown fields (the message names the field).
pub(super) fn body<T: DeserializeOwned>(call: &Call) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(&call.body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::bad_request(format!("request body: {inner}"))
            } else {
                ApiError::bad_request(format!("request body at {path}: {inner}"))
            }
        })
        .and_then(|value| {
            de.end()
                .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
            Ok(value)
        })
}

/// An audit entry of the call's principal, now.
pub(super) fn audit(call: &Call, action: &str, subject: &str, detail: Value) -> AuditEntry {
    call.actor().audit(action, subject, detail)
}

/// A declared document with its JSON, as the request carried it.
pub(super) struct Declared {
    pub spec: Value,
    pub document: Document,
    pub name: String,
}

/// Every document of a YAML or JSON body, checked, with warnings naming unsupported fields.
/// Nothing is stored.
pub(super) fn documents(call: &Call) -> Result<(Vec<Declared>, Vec<String>), ApiError> {
    let text = std::str::from_utf8(&call.body)
        .map_err(|_| ApiError::bad_request("request body: not UTF-8 text"))?;
    let mut options = serde_saphyr::Options::default();
    // Kubernetes reads YAML 1.1: `0644` is an octal number.
    options.legacy_octal_numbers = true;
    let values: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| ApiError::bad_request(format!("request body: YAML or JSON: {e}")))?;
    let mut parsed = Vec::new();
    let mut warnings = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let document = declarative::parse_document(index, value.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let name = match &document.value {
            Document::Application(app) => app.metadata.name.clone(),
            Document::ApplicationSet(set) => set.metadata.name.clone(),
            Document::AppProject(project) => project.metadata.name.clone(),
        };
        for warning in &document.warnings {
            warnings.push(format!("document {index} ({name}): {warning}"));
        }
        parsed.push(Declared {
            spec: value,
            document: document.value,
            name,
        });
    }
    if parsed.is_empty() {
        return Err(ApiError::bad_request("request body: no documents"));
    }
    Ok((parsed, warnings))
}

/// Stores one declared document as the API's, with its audit entry; returns its kind.
pub(super) async fn store_declared(
    state: &ApiState,
    call: &Call,
    declared: Declared,
    action: &str,
) -> Result<&'static str, ApiError> {
    let store = state.hub.store();
    let now = Timestamp::now();
    let Declared {
        spec,
        document,
        name,
    } = declared;
    let kind = match document {
        Document::Application(app) => {
            let created_at = store
                .application(&name)
                .await?
                .map_or(now, |existing| existing.created_at);
            store
                .put_application(&ApplicationRecord {
                    name: name.clone(),
                    project: app.spec.project.clone(),
                    spec,
                    origin: Origin::Api,
                    created_at,
                    updated_at: now,
                })
                .await?;
            "Application"
        }
        Document::ApplicationSet(_) => {
            let existing = store.app_set(&name).await?;
            store
                .put_app_set(&AppSetRecord {
                    name: name.clone(),
                    spec,
                    origin: Origin::Api,
                    generated: existing
                        .as_ref()
                        .map(|s| s.generated.clone())
                        .unwrap_or_default(),
                    generator_error: None,
                    created_at: existing.map_or(now, |s| s.created_at),
                    updated_at: now,
                })
                .await?;
            "ApplicationSet"
        }
        Document::AppProject(_) => {
            store
                .put_project(&ProjectRecord {
                    name: name.clone(),
                    spec,
                    origin: Origin::Api,
                    created_at: now,
                    updated_at: now,
                })
                .await?;
            "AppProject"
        }
    };
    store
        .record_audit(&audit(call, action, &format!("{kind} {name}"), json!({})))
        .await?;
    Ok(kind)
}

async fn apply(state: &ApiState, call: &Call) -> Res {
    // Every document is checked before anything is stored.
    let (parsed, warnings) = documents(call)?;
    guard::declared(state, call, &parsed).await?;
    let mut applied = Vec::new();
    for declared in parsed {
        let name = declared.name.clone();
        let kind = store_declared(state, call, declared, "apply").await?;
        applied.push(json!({"kind": kind, "name": name}));
    }
    info!(
        documents = applied.len(),
        warnings = warnings.len(),
        "configuration applied"
    );
    state.hub.trigger(Fetch::Missing, "api");
    state.hub.changed();
    Ok(json(
        StatusCode::OK,
        &json!({"applied": applied, "warnings": warnings}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PinRequest {
    pub revision: String,
    #[serde(default)]
    pub cluster: Option<String>,
}

async fn pin(state: &ApiState, app: &str, call: &Call) -> Res {
    let request: PinRequest = body(call)?;
    let pin = actions::rollback(
        &state.hub,
        &call.actor(),
        app,
        request.cluster.as_deref(),
        &request.revision,
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &json!({"app": app, "revision": pin.revision, "cluster": pin.cluster}),
    ))
}

/// The query parameters of a call, percent-decoded; a parameter not in `known`, or given
/// twice, is refused by name.
pub(super) fn query_params(
    call: &Call,
    known: &[&str],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    let query = call.query.as_deref().unwrap_or_default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !known.contains(&key.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "query parameter {key:?} is not known (known: {})",
                known.join(", ")
            )));
        }
        if params.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {key:?} is given twice"
            )));
        }
    }
    Ok(params)
}

async fn unpin(state: &ApiState, app: &str, call: &Call) -> Res {
    let cluster = query_params(call, &["cluster"])?
        .remove("cluster")
        .filter(|c| !c.is_empty());
    actions::unpin(&state.hub, &call.actor(), app, cluster.as_deref()).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"app": app, "cluster": cluster}),
    ))
}

/// A repository as answers show it: never its credentials, only their kind.
fn repository_json(repo: &RepositoryRecord) -> Value {
    json!({
        "url": crate::git::redact_url(&repo.url),
        "hasCredentials": repo.has_credentials,
        "pollInterval": repo.poll_interval.map(|d| format!("{}s", d.as_secs())),
        "createdAt": repo.created_at.to_string(),
        "updatedAt": repo.updated_at.to_string(),
    })
}

/// `GET /api/v1/repositories`: every repository, or for a scoped principal those its
/// projects' `sourceRepos` allow. Never a credential: `hasCredentials` only.
async fn repositories(state: &ApiState, call: &Call) -> Res {
    let store = state.hub.store();
    let visible = guard::RepositoryFilter::of(store, &call.scope).await?;
    let repos: Vec<Value> = store
        .repositories()
        .await?
        .iter()
        .filter(|r| visible.allows(&r.url))
        .map(repository_json)
        .collect();
    Ok(json(StatusCode::OK, &json!({"repositories": repos})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RepositoryRequest {
    url: String,
    #[serde(default)]
    credentials: Option<crate::git::Credentials>,
    /// `30s`, `5m`, `1h`: how often it is fetched without a webhook.
    #[serde(default)]
    poll_interval: Option<String>,
}

/// Shortest per-repository poll interval: more often than this is a webhook's job.
const MIN_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

async fn put_repository(state: &ApiState, call: &Call) -> Res {
    let request: RepositoryRequest = body(call)?;
    let url = request.url.trim();
    if url.is_empty() {
        return Err(ApiError::bad_request("url must not be empty"));
    }
    if crate::git::credentials::has_password(url) {
        return Err(ApiError::bad_request(format!(
            "url {} carries a password: give it in credentials instead",
            crate::git::redact_url(url)
        )));
    }
    let poll_interval = match request.poll_interval.as_deref() {
        None => None,
        Some(text) => {
            let parsed: jiff::SignedDuration = text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "pollInterval {text:?} is not a duration (like 30s, 5m or 1h)"
                ))
            })?;
            let interval = std::time::Duration::try_from(parsed)
                .ok()
                .filter(|d| *d >= MIN_POLL_INTERVAL)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "pollInterval {text:?} is shorter than {}s",
                        MIN_POLL_INTERVAL.as_secs()
                    ))
                })?;
            Some(interval)
        }
    };
    let kind = request
        .credentials
        .as_ref()
        .map_or("none", crate::git::Credentials::kind);
    let sealed = request
        .credentials
        .as_ref()
        .and_then(crate::git::Credentials::to_json)
        .map(crate::store::Credentials::new);
    let store = state.hub.store();
    let created = !store.repositories().await?.iter().any(|r| r.url == url);
    store
        .put_repository(url, sealed.as_ref(), poll_interval, Timestamp::now())
        .await?;
    store
        .record_audit(&audit(
            call,
            "put repository",
            &format!("repository {}", crate::git::redact_url(url)),
            json!({"credentials": kind}),
        ))
        .await?;
    info!(url = %crate::git::redact_url(url), credentials = kind, "repository stored");
    state
        .hub
        .trigger(Fetch::Repos(BTreeSet::from([url.to_owned()])), "api");
    let repo = store
        .repositories()
        .await?
        .into_iter()
        .find(|r| r.url == url)
        .ok_or_else(|| ApiError::not_found(format!("repository {url} vanished")))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &repository_json(&repo)))
}

async fn delete_repository(state: &ApiState, call: &Call) -> Res {
    let url = query_params(call, &["url"])?
        .remove("url")
        .ok_or_else(|| ApiError::bad_request("query parameter url is required"))?;
    let store = state.hub.store();
    if !store.delete_repository(&url).await? {
        return Err(ApiError::not_found(format!(
            "repository {} is not registered",
            crate::git::redact_url(&url)
        )));
    }
    store
        .record_audit(&audit(
            call,
            "delete repository",
            &format!("repository {}", crate::git::redact_url(&url)),
            json!({}),
        ))
        .await?;
    Ok(json(
        StatusCode::OK,
        &json!({"deleted": crate::git::redact_url(&url)}),
    ))
}

async fn projects(state: &ApiState, call: &Call) -> Res {
    let projects: Vec<Value> = state
        .hub
        .store()
        .projects()
        .await?
        .into_iter()
        .filter(|p| call.scope.allows(&p.name))
        .map(|p| {
            json!({
                "name": p.name,
                "origin": p.origin.as_str(),
                "spec": p.spec,
                "updatedAt": p.updated_at.to_string(),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"projects": projects})))
}

pub(crate) use crate::fleet::cluster_status;

pub(super) fn cluster_json(
    cluster: &ClusterRecord,
    generation: Option<u64>,
    now: Timestamp,
    offline_after: std::time::Duration,
) -> Value {
    let registration = &cluster.registration;
    json!({
        "name": cluster.name,
        "labels": cluster.labels,
        "status": cluster_status(cluster, now, offline_after),
        "requireApproval": registration.require_approval,
        "approved": registration.approved,
        "revoked": registration.revoked_at.is_some(),
        "revokedAt": registration.revoked_at.map(|t| t.to_string()),
        "registeredAt": registration.registered_at.map(|t| t.to_string()),
        "certificateNotAfter": registration.cert_not_after.map(|t| t.to_string()),
        "lastError": registration.last_error,
        "lastErrorAt": registration.last_error_at.map(|t| t.to_string()),
        "server": cluster.server_url,
        "kubeVersion": cluster.kube_version,
        "agentVersion": cluster.agent_version,
        "lastSeen": cluster.last_seen.map(|t| t.to_string()),
        "generation": generation,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterRequest {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    server: Option<String>,
}

/// A DNS-1123 label: what Kubernetes and certificate names accept.
fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

async fn put_cluster(state: &ApiState, call: &Call) -> Res {
    let request: ClusterRequest = body(call)?;
    if !valid_cluster_name(&request.name) {
        return Err(ApiError::bad_request(format!(
            "cluster name {:?} is not a DNS-1123 label",
            request.name
        )));
    }
    let store = state.hub.store();
    let existing = store.cluster(&request.name).await?;
    let created = existing.is_none();
    let mut record =
        existing.unwrap_or_else(|| ClusterRecord::new(&request.name, Timestamp::now()));
    record.labels = request.labels;
    record.server_url = request.server.filter(|s| !s.is_empty());
    store.put_cluster(&record).await?;
    store
        .record_audit(&audit(
            call,
            "register cluster",
            &format!("cluster {}", record.name),
            json!({"labels": record.labels}),
        ))
        .await?;
    state.hub.trigger(Fetch::Missing, "api");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(
        status,
        &cluster_json(
            &record,
            None,
            Timestamp::now(),
            state.agent.config.offline_after,
        ),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenRequest {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// How long the token may be used: `1h`, `24h`, `7d`.
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    require_approval: bool,
}

/// Longest a bootstrap token may live.
const MAX_TOKEN_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 30);

async fn create_token(state: &ApiState, name: &str, call: &Call) -> Res {
    let request: TokenRequest = body(call)?;
    if !valid_cluster_name(name) {
        return Err(ApiError::bad_request(format!(
            "cluster name {name:?} is not a DNS-1123 label"
        )));
    }
    let ttl = match request.ttl.as_deref() {
        None => jiff::SignedDuration::from_hours(24),
        Some(text) => {
            let ttl: jiff::SignedDuration = text.parse().map_err(|_| {
                ApiError::bad_request(format!("ttl {text:?} is not a duration (like 1h or 24h)"))
            })?;
            if !ttl.is_positive() || ttl > MAX_TOKEN_TTL {
                return Err(ApiError::bad_request(format!(
                    "ttl {text:?} must be positive and at most 30 days"
                )));
            }
            ttl
        }
    };
    let store = state.hub.store();
    let now = Timestamp::now();
    let mut record = store
        .cluster(name)
        .await?
        .unwrap_or_else(|| ClusterRecord::new(name, now));
    if let Some(at) = record.registration.revoked_at {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "revoked",
            format!("cluster {name} was revoked at {at}; a revoked name is not admitted again"),
        ));
    }
    record.labels.extend(request.labels);
    record.registration.require_approval |= request.require_approval;
    store.put_cluster(&record).await?;
    let token = crate::registration::new_token();
    let expires_at = now + ttl;
    store
        .put_bootstrap_token(&crate::store::BootstrapToken {
            hash: crate::registration::token_hash(&token),
            cluster: name.to_owned(),
            expires_at,
            created_at: now,
            created_by: call.principal.name.clone(),
            key_fingerprint: None,
            used_at: None,
        })
        .await?;
    store
        .record_audit(&audit(
            call,
            "create bootstrap token",
            &format!("cluster {name}"),
            json!({"expiresAt": expires_at.to_string(), "requireApproval": record.registration.require_approval}),
        ))
        .await?;
    info!(cluster = name, expires_at = %expires_at, "bootstrap token created");
    state.hub.trigger(Fetch::Missing, "api");
    Ok(json(
        StatusCode::CREATED,
        &json!({"cluster": name, "token": token, "expiresAt": expires_at.to_string()}),
    ))
}

/// What the cluster's agent reported: the latest status per application and object, and
/// the newest reports (sequence number, time, reason, phase).
async fn cluster_status_reports(state: &ApiState, name: &str, call: &Call) -> Res {
    let limit = match query_params(call, &["limit"])?.remove("limit") {
        None => 20,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit {text:?}: expected 1 to 1000")))?,
    };
    known_cluster(state, name).await?;
    let store = state.hub.store();
    let projects: BTreeMap<String, String> = store
        .applications()
        .await?
        .into_iter()
        .map(|a| (a.name, a.project))
        .collect();
    let visible =
        |app: &str| call.scope.is_all() || projects.get(app).is_some_and(|p| call.scope.allows(p));
    let apps: Vec<Value> = store
        .app_statuses(name)
        .await?
        .into_iter()
        .filter(|a| visible(&a.app))
        .map(|a| {
            json!({
                "app": a.app,
                "generation": a.generation,
                "revision": a.revision,
                "sync": a.sync,
                "health": a.health,
                "message": a.message,
                "objects": a.objects.iter().map(|o| json!({
                    "object": o.object, "state": o.state, "message": o.message
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    // The agent's reports speak of the whole cluster, every project's apps included.
    let history = if call.scope.is_all() {
        store.status_history(name, limit).await?
    } else {
        Vec::new()
    };
    let reports: Vec<Value> = history
        .into_iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "receivedAt": r.received_at.to_string(),
                "reason": r.report["reason"],
                "phase": r.report["state"]["phase"],
                "generation": r.report["state"]["generation"],
                "message": r.report["state"]["message"],
                "holder": r.report["agent"]["holder"],
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"cluster": name, "apps": apps, "reports": reports}),
    ))
}

/// A registered cluster, or 404 naming it.
async fn known_cluster(state: &ApiState, name: &str) -> Result<ClusterRecord, ApiError> {
    state
        .hub
        .store()
        .cluster(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("cluster {name} is not registered")))
}

async fn approve(state: &ApiState, name: &str, call: &Call) -> Res {
    let mut record = known_cluster(state, name).await?;
    record.registration.approved = true;
    let store = state.hub.store();
    store.put_cluster(&record).await?;
    store
        .record_audit(&audit(
            call,
            "approve cluster",
            &format!("cluster {name}"),
            json!({}),
        ))
        .await?;
    info!(cluster = name, "cluster approved");
    Ok(json(
        StatusCode::OK,
        &json!({"cluster": name, "approved": true}),
    ))
}

async fn revoke(state: &ApiState, name: &str, call: &Call) -> Res {
    let mut record = known_cluster(state, name).await?;
    let now = Timestamp::now();
    record.registration.revoked_at.get_or_insert(now);
    let store = state.hub.store();
    store.put_cluster(&record).await?;
    store
        .record_audit(&audit(
            call,
            "revoke cluster",
            &format!("cluster {name}"),
            json!({}),
        ))
        .await?;
    warn!(
        cluster = name,
        "cluster revoked: its agent is refused from its next request on"
    );
    Ok(json(
        StatusCode::OK,
        &json!({"cluster": name, "revokedAt": record.registration.revoked_at.map(|t| t.to_string())}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelRequest {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// A Kubernetes label key: an optional DNS prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn valid_label_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

async fn label(state: &ApiState, name: &str, call: &Call) -> Res {
    let request: LabelRequest = body(call)?;
    if let Some(bad) = request
        .set
        .keys()
        .chain(request.remove.iter())
        .find(|k| !valid_label_key(k))
    {
        return Err(ApiError::bad_request(format!(
            "label key {bad:?} is not valid"
        )));
    }
    let mut record = known_cluster(state, name).await?;
    for key in &request.remove {
        record.labels.remove(key);
    }
    record.labels.extend(request.set);
    let store = state.hub.store();
    store.put_cluster(&record).await?;
    store
        .record_audit(&audit(
            call,
            "label cluster",
            &format!("cluster {name}"),
            json!({"labels": record.labels}),
        ))
        .await?;
    state.hub.trigger(Fetch::Missing, "api");
    Ok(json(
        StatusCode::OK,
        &json!({"cluster": name, "labels": record.labels}),
    ))
}

/// The cluster's newest state and its blobs as a bundle file, for `flotilla-agent apply
/// --bundle` behind an air gap.
async fn bundle(state: &ApiState, name: &str, call: &Call) -> Res {
    let store = state.hub.store();
    let Some(stored) = store.latest_state(name).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_state",
            format!("no state has been published for cluster {name} yet"),
        ));
    };
    let payload = stored_payload(&stored)
        .map_err(|e| ApiError::internal(format!("stored state unreadable: {e}")))?;
    let mut blobs = Vec::new();
    for app in &payload.apps {
        let bytes = store
            .blob(&app.blob.digest)
            .await?
            .ok_or_else(|| ApiError::internal(format!("blob of app {} is missing", app.name)))?;
        blobs.push((app.name.clone(), bytes));
    }
    let refs: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(app, bytes)| (app.as_str(), bytes.as_slice()))
        .collect();
    let tar = flotilla_shared::write_bundle(Vec::new(), &stored.envelope, &refs)
        .map_err(|e| ApiError::internal(format!("write bundle: {e}")))?;
    store
        .record_audit(&audit(
            call,
            "export bundle",
            &format!("cluster {name}"),
            json!({"generation": stored.generation}),
        ))
        .await?;
    let mut response = Response::new(Full::new(Bytes::from(tar)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&format!(
        "attachment; filename=\"{name}-{}.tar\"",
        stored.generation
    )) {
        headers.insert(http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    /// `oldest`, `from` (with `cluster`) or absent to serve normally again.
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    cluster: Option<String>,
}

/// Test hook: makes the agent API serve an older or another cluster's state. 404 unless the
/// hub runs with `--enable-test-hooks`.
async fn serve_override(state: &ApiState, call: &Call) -> Res {
    use crate::agent_api::ServeOverride;
    if !state.agent.config.test_hooks {
        return Err(ApiError::not_found(
            "test hooks are off (the hub runs without --enable-test-hooks)",
        ));
    }
    let request: OverrideRequest = body(call)?;
    let value = match (request.mode.as_deref(), request.cluster) {
        (None, _) => None,
        (Some("oldest"), _) => Some(ServeOverride::Oldest),
        (Some("from"), Some(cluster)) => Some(ServeOverride::From(cluster)),
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "mode {other:?}: expected oldest, or from with a cluster"
            )));
        }
    };
    state.agent.set_serve_override(value.clone());
    Ok(json(
        StatusCode::OK,
        &json!({"override": format!("{value:?}")}),
    ))
}

async fn cluster_state(state: &ApiState, name: &str) -> Res {
    let store = state.hub.store();
    if store.cluster(name).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "cluster {name} is not registered"
        )));
    }
    let Some(stored) = store.latest_state(name).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_state",
            format!("cluster {name} has no state yet: no application targets it"),
        ));
    };
    let envelope: Value = serde_json::from_slice(&stored.envelope).map_err(|e| {
        warn!(cluster = name, error = %e, "stored envelope is not JSON");
        ApiError::internal(format!("the stored state of cluster {name} is unreadable"))
    })?;
    let payload = stored_payload(&stored).map_err(|e| {
        warn!(cluster = name, error = %e, "stored state is unreadable");
        ApiError::internal(format!("the stored state of cluster {name} is unreadable"))
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "cluster": name,
            "generation": stored.generation,
            "issuedAt": stored.issued_at.to_string(),
            "expiresAt": stored.expires_at.to_string(),
            "envelope": envelope,
            "state": payload,
        }),
    ))
}

async fn receive_webhook(state: &ApiState, provider: &str, call: &Call) -> Res {
    let expected = match provider {
        "github" => Provider::GitHub,
        "gitlab" => Provider::GitLab,
        "gitea" | "forgejo" => Provider::Gitea,
        other => {
            return Err(ApiError::not_found(format!(
                "webhook provider {other:?} is not known (github, gitlab, gitea, forgejo)"
            )));
        }
    };
    let Some(secret) = super::webhook_secret(state) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_disabled",
            "no webhook secret is configured: the webhook refuses every delivery",
        ));
    };
    let delivery = webhook::receive(
        &call.headers,
        &call.body,
        secret,
        state.webhook_max_body_bytes,
    )
    .map_err(|error| match error {
        WebhookError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            error.to_string(),
        ),
        WebhookError::Parse { .. } => ApiError::bad_request(error.to_string()),
        WebhookError::UnknownProvider
        | WebhookError::Verify { .. }
        | WebhookError::MalformedSignature { .. } => {
            warn!(%error, "webhook refused");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                error.to_string(),
            )
        }
    })?;
    match delivery {
        Delivery::Ignored { provider, event } => Ok(json(
            StatusCode::ACCEPTED,
            &json!({"ignored": event, "provider": format!("{provider:?}")}),
        )),
        Delivery::Push(push) => {
            if push.provider != expected {
                return Err(ApiError::bad_request(format!(
                    "webhook for {provider} carries {:?} headers",
                    push.provider
                )));
            }
            let known = state.hub.known_repositories().await?;
            let targets: BTreeSet<String> = push
                .targets(known.iter().map(String::as_str))
                .into_iter()
                .map(str::to_owned)
                .collect();
            info!(repositories = targets.len(), "push received");
            let count = targets.len();
            if count > 0 {
                state.hub.trigger(Fetch::Repos(targets), "webhook");
            }
            Ok(json(StatusCode::ACCEPTED, &json!({"repositories": count})))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str) -> Call {
        Call {
            params: Vec::new(),
            query: None,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
            principal: crate::auth::Principal::local_admin(),
            scope: crate::auth::Scope::All,
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    #[test]
    fn bodies_refuse_unknown_fields_and_name_them() {
        let err =
            body::<ClusterRequest>(&call(r#"{"name": "a", "labls": {}}"#)).expect_err("refused");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("labls"), "{}", err.message);
        let err = body::<PinRequest>(&call(r#"{"revision": 1}"#)).expect_err("type");
        assert!(err.message.contains("revision"), "{}", err.message);
        let ok = body::<PinRequest>(&call(r#"{"revision": "abc"}"#)).expect("ok");
        assert_eq!((ok.revision.as_str(), ok.cluster), ("abc", None));
    }

    #[test]
    fn cluster_names_are_dns_labels() {
        for good in ["prod-east", "a", "x1"] {
            assert!(valid_cluster_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Prod", "a.b", &"a".repeat(64)] {
            assert!(!valid_cluster_name(bad), "{bad}");
        }
    }
}
