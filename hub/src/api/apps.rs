//! The application routes of the human API: listing with filters and pages, one
//! application with where it runs and why it is not synced, create and delete, sync now,
//! history, rollback, diff; ApplicationSets; the fleet's clusters one by one; the audit
//! log. Reads go through [`crate::fleet::Fleet`]; changes through the store and
//! [`super::actions`].

use std::collections::{BTreeMap, BTreeSet};

use flotilla_shared::AppBlob;
use flotilla_shared::blob::ObjectRef;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use super::handlers::{
    Declared, PinRequest, Res, audit, body, documents, query_params, store_declared,
};
use super::{ApiError, ApiState, Call, actions, guard, json};
use crate::declarative::Document;
use crate::fleet::{Cell, Counts, Fleet, Page, Selector};
use crate::rounds::Fetch;
use crate::store::{AppSetRecord, ApplicationRecord, Origin, Store as _};

/// Items in one page when the request names no `limit`.
const DEFAULT_LIMIT: usize = 1000;

/// The fleet as of now.
pub(super) async fn fleet(state: &ApiState) -> Result<Fleet, ApiError> {
    Ok(Fleet::load(
        &state.hub,
        state.agent.config.offline_after,
        Timestamp::now(),
    )
    .await?)
}

/// `limit` (1 to 1000) and `offset` of a listing.
pub(super) fn page(params: &BTreeMap<String, String>) -> Result<Page, ApiError> {
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=Page::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit {text:?}: expected 1 to {}", Page::MAX_LIMIT))
            })?,
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("offset {text:?}: expected a number from 0"))
        })?,
    };
    Ok(Page { offset, limit })
}

/// A label selector from the `selector` query parameter.
pub(super) fn selector(params: &BTreeMap<String, String>) -> Result<Selector, ApiError> {
    Selector::parse(params.get("selector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("selector: {e}")))
}

/// A page of `items` as an answer: the items under `key`, with the paging fields.
pub(super) fn paged(key: &str, items: &[Value], page: Page) -> Value {
    let (window, next) = page.of(items);
    json!({
        key: window,
        "total": items.len(),
        "offset": page.offset,
        "limit": page.limit,
        "nextOffset": next,
    })
}

pub(super) fn cell_json(cell: &Cell) -> Value {
    json!({
        "cluster": cell.cluster,
        "app": cell.app,
        "generation": cell.generation,
        "revision": cell.revision,
        "blob": cell.blob,
        "sync": cell.sync,
        "health": cell.health,
        "message": cell.message,
        "why": cell.why,
        "pinned": cell.pinned.as_ref().map(|(revision, by)| json!({"revision": revision, "by": by})),
    })
}

fn counts_json(counts: Counts) -> Value {
    json!({
        "clusters": counts.cells,
        "synced": counts.synced,
        "outOfSync": counts.out_of_sync,
        "healthy": counts.healthy,
        "degraded": counts.degraded,
        "progressing": counts.progressing,
        "unknown": counts.unknown,
    })
}

pub(super) fn application_json(app: &ApplicationRecord) -> Value {
    json!({
        "name": app.name,
        "project": app.project,
        "origin": app.origin.as_str(),
        "spec": app.spec,
        "updatedAt": app.updated_at.to_string(),
    })
}

fn app_set_json(set: &AppSetRecord) -> Value {
    json!({
        "name": set.name,
        "origin": set.origin.as_str(),
        "generated": set.generated,
        "generatorError": set.generator_error,
        "spec": set.spec,
        "updatedAt": set.updated_at.to_string(),
    })
}

/// `GET /api/v1/applications`: every application (declared and generated) with where it
/// runs, filtered by `project`, label `selector` and `cluster`, a page at a time.
pub(super) async fn applications(state: &ApiState, call: &Call) -> Res {
    let params = query_params(call, &["project", "selector", "cluster", "limit", "offset"])?;
    let page = page(&params)?;
    let selector = selector(&params)?;
    let fleet = fleet(state).await?;
    let store = state.hub.store();
    let declared: BTreeMap<String, ApplicationRecord> = store
        .applications()
        .await?
        .into_iter()
        .map(|a| (a.name.clone(), a))
        .collect();
    let items: Vec<Value> = fleet
        .apps
        .iter()
        .filter(|a| call.scope.allows(&a.project))
        .filter(|a| params.get("project").is_none_or(|p| &a.project == p))
        .filter(|a| selector.matches(&a.labels))
        .filter(|a| {
            params
                .get("cluster")
                .is_none_or(|c| fleet.cell(&a.name, c).is_some())
        })
        .map(|a| {
            let cells: Vec<&Cell> = fleet.cells_of_app(&a.name).collect();
            let mut value = match declared.get(&a.name) {
                Some(record) => application_json(record),
                None => json!({"name": a.name, "project": a.project, "origin": a.origin}),
            };
            value["generatedBy"] = json!(a.generated_by);
            value["labels"] = json!(a.labels);
            value["summary"] = counts_json(Counts::of(cells.iter().copied()));
            value["clusters"] = cells.iter().map(|c| cell_json(c)).collect();
            value
        })
        .collect();
    let mut answer = paged("applications", &items, page);
    answer["applicationSets"] = store
        .app_sets()
        .await?
        .iter()
        .filter(|s| guard::set_visible(&call.scope, s))
        .map(app_set_json)
        .collect();
    Ok(json(StatusCode::OK, &answer))
}

/// Names of the ApplicationSets that generated `name`.
async fn generated_by(state: &ApiState, name: &str) -> Result<Vec<String>, ApiError> {
    Ok(state
        .hub
        .store()
        .app_sets()
        .await?
        .into_iter()
        .filter(|s| s.generated.iter().any(|g| g == name))
        .map(|s| s.name)
        .collect())
}

/// `GET /api/v1/applications/{name}`.
pub(super) async fn application(state: &ApiState, name: &str) -> Res {
    let store = state.hub.store();
    let declared = store.application(name).await?;
    let generated_by = generated_by(state, name).await?;
    let fleet = fleet(state).await?;
    let cells: Vec<Value> = fleet.cells_of_app(name).map(cell_json).collect();
    if declared.is_none() && generated_by.is_empty() && cells.is_empty() {
        return Err(ApiError::not_found(format!(
            "application {name} is not known"
        )));
    }
    let history: Vec<Value> = store
        .history(name, 20)
        .await?
        .iter()
        .map(history_json)
        .collect();
    let pins: Vec<Value> = store
        .pins()
        .await?
        .into_iter()
        .filter(|p| p.app == name)
        .map(|p| json!({"cluster": p.cluster, "revision": p.revision, "pinnedBy": p.pinned_by}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "name": name,
            "declared": declared.as_ref().map(application_json),
            "generatedBy": generated_by,
            "clusters": cells,
            "pins": pins,
            "history": history,
        }),
    ))
}

fn history_json(h: &crate::store::HistoryEntry) -> Value {
    json!({
        "cluster": h.cluster,
        "revision": h.revision,
        "generation": h.generation,
        "blob": h.entry.blob.digest.to_string(),
        "deployedAt": h.deployed_at.to_string(),
        "deployedBy": h.deployed_by,
    })
}

/// The one document of a create request, of `kind`, and warnings naming unsupported
/// fields.
fn single(call: &Call, kind: &str) -> Result<(Declared, Vec<String>), ApiError> {
    let (mut parsed, warnings) = documents(call)?;
    if parsed.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "request body: expected one {kind} document, got {}",
            parsed.len()
        )));
    }
    let declared = parsed.remove(0);
    let got = match declared.document {
        Document::Application(_) => "Application",
        Document::ApplicationSet(_) => "ApplicationSet",
        Document::AppProject(_) => "AppProject",
    };
    if got != kind {
        return Err(ApiError::bad_request(format!(
            "request body: expected an {kind}, got an {got}"
        )));
    }
    Ok((declared, warnings))
}

fn declared_in_git(kind: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "declared_in_git",
        format!("{kind} {name} is declared in the configuration repository: change it there"),
    )
}

/// `POST /api/v1/applications`: one Application document; `?upsert=true` replaces one the
/// API declared before.
pub(super) async fn create_application(state: &ApiState, call: &Call) -> Res {
    let params = query_params(call, &["upsert"])?;
    let upsert = match params.get("upsert").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "upsert {other:?}: expected true or false"
            )));
        }
    };
    let (declared, warnings) = single(call, "Application")?;
    guard::declared(state, call, std::slice::from_ref(&declared)).await?;
    let name = declared.name.clone();
    let store = state.hub.store();
    let existing = store.application(&name).await?;
    match &existing {
        Some(app) if app.origin == Origin::Config => {
            return Err(declared_in_git("application", &name));
        }
        Some(_) if !upsert => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "exists",
                format!("application {name} exists (replace it with ?upsert=true)"),
            ));
        }
        _ => {}
    }
    if !generated_by(state, &name).await?.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "generated",
            format!("application {name} is generated by an ApplicationSet"),
        ));
    }
    store_declared(state, call, declared, "create application").await?;
    info!(app = %name, "application declared");
    Ok(declared_answer(
        state,
        "Application",
        &name,
        existing.is_none(),
        &warnings,
    ))
}

/// After a declaration was stored: asks for a round and says what was stored (201 when
/// new).
fn declared_answer(
    state: &ApiState,
    kind: &str,
    name: &str,
    created: bool,
    warnings: &[String],
) -> Response<Full<Bytes>> {
    state.hub.trigger(Fetch::Missing, "api");
    state.hub.changed();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(
        status,
        &json!({"kind": kind, "name": name, "created": created, "warnings": warnings}),
    )
}

/// `DELETE /api/v1/applications/{name}`: the application leaves every cluster (a tombstone
/// in the next state removes its objects where its policy prunes).
pub(super) async fn delete_application(state: &ApiState, name: &str, call: &Call) -> Res {
    let store = state.hub.store();
    match store.application(name).await? {
        Some(app) if app.origin == Origin::Config => Err(declared_in_git("application", name)),
        Some(_) => {
            store.delete_application(name).await?;
            store
                .record_audit(&audit(
                    call,
                    "delete application",
                    &format!("Application {name}"),
                    json!({}),
                ))
                .await?;
            info!(app = name, "application deleted");
            state.hub.trigger(Fetch::Missing, "api");
            state.hub.changed();
            Ok(json(StatusCode::OK, &json!({"deleted": name})))
        }
        None => match generated_by(state, name).await?.first() {
            Some(set) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "generated",
                format!(
                    "application {name} is generated by ApplicationSet {set}: change or delete the set"
                ),
            )),
            None => Err(ApiError::not_found(format!(
                "application {name} is not known"
            ))),
        },
    }
}

/// `POST /api/v1/applications/{name}/sync`: fetch its repositories and publish now.
pub(super) async fn sync(state: &ApiState, name: &str, call: &Call) -> Res {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SyncRequest {}
    if !call.body.is_empty() {
        let _: SyncRequest = body(call)?;
    }
    let repos = actions::repositories_for(&state.hub, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("application {name} is not known")))?;
    let count = repos.len();
    let round = actions::sync(&state.hub, &call.actor(), name, repos).await?;
    // The answer waits for the round that fetches and publishes, so that what it shows (and
    // what a client then waits on) is the new target.
    if !state.hub.round_done(round, SYNC_ROUND_WAIT).await {
        return Ok(json(
            StatusCode::ACCEPTED,
            &json!({"app": name, "repositories": count, "published": false}),
        ));
    }
    let fleet = fleet(state).await?;
    let clusters: Vec<Value> = fleet.cells_of_app(name).map(cell_json).collect();
    Ok(json(
        StatusCode::OK,
        &json!({"app": name, "repositories": count, "published": true, "clusters": clusters}),
    ))
}

/// How long `POST …/sync` waits for its round before it answers 202.
const SYNC_ROUND_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /api/v1/applications/{name}/history`.
pub(super) async fn history(state: &ApiState, name: &str, call: &Call) -> Res {
    let params = query_params(call, &["cluster", "limit"])?;
    let limit = match params.get("limit") {
        None => 50,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit {text:?}: expected 1 to 1000")))?,
    };
    let store = state.hub.store();
    let entries: Vec<Value> = store
        .history(
            name,
            if params.contains_key("cluster") {
                1000
            } else {
                limit
            },
        )
        .await?
        .iter()
        .filter(|h| params.get("cluster").is_none_or(|c| &h.cluster == c))
        .take(limit as usize)
        .map(history_json)
        .collect();
    if entries.is_empty()
        && store.application(name).await?.is_none()
        && generated_by(state, name).await?.is_empty()
    {
        return Err(ApiError::not_found(format!(
            "application {name} is not known"
        )));
    }
    Ok(json(
        StatusCode::OK,
        &json!({"app": name, "history": entries}),
    ))
}

/// `POST /api/v1/applications/{name}/rollback`: pins it at a revision of its history.
pub(super) async fn rollback(state: &ApiState, name: &str, call: &Call) -> Res {
    let request: PinRequest = body(call)?;
    if request.revision.trim().is_empty() {
        return Err(ApiError::bad_request("revision must not be empty"));
    }
    let pin = actions::rollback(
        &state.hub,
        &call.actor(),
        name,
        request.cluster.as_deref(),
        &request.revision,
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &json!({"app": name, "revision": pin.revision, "cluster": pin.cluster}),
    ))
}

/// The objects of a blob by identity, as YAML text.
async fn blob_objects(
    state: &ApiState,
    digest: &str,
) -> Result<BTreeMap<ObjectRef, String>, ApiError> {
    let digest: flotilla_shared::Digest = digest
        .parse()
        .map_err(|_| ApiError::internal(format!("stored digest {digest} is malformed")))?;
    let bytes = state
        .hub
        .store()
        .blob(&digest)
        .await?
        .ok_or_else(|| ApiError::internal(format!("blob {digest} is not stored")))?;
    let blob = AppBlob::from_json(&bytes)
        .map_err(|e| ApiError::internal(format!("blob {digest}: {e}")))?;
    let mut objects = BTreeMap::new();
    for (index, object) in blob.objects.iter().enumerate() {
        let id = ObjectRef::of(object, index)
            .map_err(|e| ApiError::internal(format!("blob {digest}: {e}")))?;
        let text = serde_saphyr::to_string(object)
            .map_err(|e| ApiError::internal(format!("blob {digest}: {e}")))?;
        objects.insert(id, text);
    }
    Ok(objects)
}

/// What changes between two sets of objects, object by object, with a unified diff.
fn object_changes(
    from: &BTreeMap<ObjectRef, String>,
    to: &BTreeMap<ObjectRef, String>,
) -> Vec<Value> {
    let ids: BTreeSet<&ObjectRef> = from.keys().chain(to.keys()).collect();
    let mut changes = Vec::new();
    for id in ids {
        let (old, new) = (from.get(id), to.get(id));
        let change = match (old, new) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "changed",
            _ => continue,
        };
        let name = id.to_string();
        let diff = similar::TextDiff::from_lines(
            old.map_or("", String::as_str),
            new.map_or("", String::as_str),
        )
        .unified_diff()
        .context_radius(3)
        .header(&format!("deployed/{name}"), &format!("target/{name}"))
        .to_string();
        changes.push(json!({"object": name, "change": change, "diff": diff}));
    }
    changes
}

/// `GET /api/v1/applications/{name}/diff`: per cluster, the rendered objects that change
/// between what the agent runs and the target (`revision`, else what the hub serves), and
/// the drift the agent reported.
pub(super) async fn diff(state: &ApiState, name: &str, call: &Call) -> Res {
    let params = query_params(call, &["revision", "cluster"])?;
    let fleet = fleet(state).await?;
    let cells: Vec<&Cell> = fleet
        .cells_of_app(name)
        .filter(|c| params.get("cluster").is_none_or(|want| &c.cluster == want))
        .collect();
    if cells.is_empty() {
        return Err(ApiError::not_found(match params.get("cluster") {
            Some(cluster) => format!("application {name} is not served to cluster {cluster}"),
            None => format!("application {name} is not served to any cluster"),
        }));
    }
    let store = state.hub.store();
    let mut clusters = Vec::new();
    for cell in cells {
        // Only the revision the agent runs is needed: the statuses without their objects.
        let reports = store.cluster_statuses(&cell.cluster).await?;
        let running = reports
            .iter()
            .find(|r| r.app == name)
            .and_then(|r| r.revision.clone());
        let from = match &running {
            Some(revision) => store
                .history_entry(name, &cell.cluster, revision)
                .await?
                .map(|h| (h.revision, h.entry.blob.digest.to_string())),
            None => None,
        };
        let to = match params.get("revision") {
            None => (cell.revision.clone(), cell.blob.clone()),
            Some(revision) => match store.history_entry(name, &cell.cluster, revision).await? {
                Some(h) => (h.revision, h.entry.blob.digest.to_string()),
                None => {
                    clusters.push(json!({
                        "cluster": cell.cluster,
                        "error": format!("revision {revision} was never rendered for cluster {}", cell.cluster),
                    }));
                    continue;
                }
            },
        };
        let old = match &from {
            Some((_, blob)) => blob_objects(state, blob).await?,
            None => BTreeMap::new(),
        };
        let new = if to.1.is_empty() {
            BTreeMap::new()
        } else {
            blob_objects(state, &to.1).await?
        };
        let drift: Vec<Value> = store
            .status_history(&cell.cluster, 100)
            .await?
            .iter()
            .flat_map(|r| r.report["drift"].as_array().cloned().unwrap_or_default())
            .filter(|d| d["app"] == name)
            .collect();
        clusters.push(json!({
            "cluster": cell.cluster,
            "from": from.map(|(revision, blob)| json!({"revision": revision, "blob": blob})),
            "to": {"revision": to.0, "blob": to.1},
            "objects": object_changes(&old, &new),
            "drift": drift,
        }));
    }
    Ok(json(
        StatusCode::OK,
        &json!({"app": name, "clusters": clusters}),
    ))
}

/// `GET /api/v1/applicationsets`.
pub(super) async fn app_sets(state: &ApiState, call: &Call) -> Res {
    let params = query_params(call, &["limit", "offset"])?;
    let page = page(&params)?;
    let sets: Vec<Value> = state
        .hub
        .store()
        .app_sets()
        .await?
        .iter()
        .filter(|s| guard::set_visible(&call.scope, s))
        .map(app_set_json)
        .collect();
    Ok(json(StatusCode::OK, &paged("applicationSets", &sets, page)))
}

/// `GET /api/v1/applicationsets/{name}`.
pub(super) async fn app_set(state: &ApiState, name: &str) -> Res {
    let set = state
        .hub
        .store()
        .app_set(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("ApplicationSet {name} is not known")))?;
    let fleet = fleet(state).await?;
    let mut value = app_set_json(&set);
    value["clusters"] = set
        .generated
        .iter()
        .flat_map(|app| fleet.cells_of_app(app))
        .map(cell_json)
        .collect();
    Ok(json(StatusCode::OK, &value))
}

/// `POST /api/v1/applicationsets`: declares or replaces one ApplicationSet.
pub(super) async fn put_app_set(state: &ApiState, call: &Call) -> Res {
    let (declared, warnings) = single(call, "ApplicationSet")?;
    guard::declared(state, call, std::slice::from_ref(&declared)).await?;
    let name = declared.name.clone();
    let existing = state.hub.store().app_set(&name).await?;
    if existing
        .as_ref()
        .is_some_and(|s| s.origin == Origin::Config)
    {
        return Err(declared_in_git("ApplicationSet", &name));
    }
    store_declared(state, call, declared, "put ApplicationSet").await?;
    Ok(declared_answer(
        state,
        "ApplicationSet",
        &name,
        existing.is_none(),
        &warnings,
    ))
}

/// `DELETE /api/v1/applicationsets/{name}`: its applications leave their clusters.
pub(super) async fn delete_app_set(state: &ApiState, name: &str, call: &Call) -> Res {
    let store = state.hub.store();
    match store.app_set(name).await? {
        None => Err(ApiError::not_found(format!(
            "ApplicationSet {name} is not known"
        ))),
        Some(set) if set.origin == Origin::Config => Err(declared_in_git("ApplicationSet", name)),
        Some(_) => {
            store.delete_app_set(name).await?;
            store
                .record_audit(&audit(
                    call,
                    "delete ApplicationSet",
                    &format!("ApplicationSet {name}"),
                    json!({}),
                ))
                .await?;
            state.hub.trigger(Fetch::Missing, "api");
            state.hub.changed();
            Ok(json(StatusCode::OK, &json!({"deleted": name})))
        }
    }
}

/// `GET /api/v1/clusters`, filtered by label `selector` and `status`, a page at a time.
pub(super) async fn clusters(state: &ApiState, call: &Call) -> Res {
    let params = query_params(call, &["selector", "status", "limit", "offset"])?;
    let page = page(&params)?;
    let selector = selector(&params)?;
    let store = state.hub.store();
    let generations: BTreeMap<String, u64> = store
        .latest_states()
        .await?
        .into_iter()
        .map(|s| (s.cluster, s.generation))
        .collect();
    let now = Timestamp::now();
    let offline_after = state.agent.config.offline_after;
    let mut records = store.clusters().await?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let items: Vec<Value> = records
        .iter()
        .filter(|c| selector.matches(&c.labels))
        .filter(|c| {
            params
                .get("status")
                .is_none_or(|s| crate::fleet::cluster_status(c, now, offline_after) == s)
        })
        .map(|c| {
            super::handlers::cluster_json(c, generations.get(&c.name).copied(), now, offline_after)
        })
        .collect();
    Ok(json(StatusCode::OK, &paged("clusters", &items, page)))
}

/// `GET /api/v1/clusters/{name}`: the cluster and every application it is served.
pub(super) async fn cluster(state: &ApiState, name: &str, call: &Call) -> Res {
    let store = state.hub.store();
    let record = store
        .cluster(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("cluster {name} is not registered")))?;
    let generation = store.latest_state(name).await?.map(|s| s.generation);
    let mut value = super::handlers::cluster_json(
        &record,
        generation,
        Timestamp::now(),
        state.agent.config.offline_after,
    );
    let fleet = fleet(state).await?;
    let visible: BTreeSet<&str> = fleet
        .apps
        .iter()
        .filter(|a| call.scope.allows(&a.project))
        .map(|a| a.name.as_str())
        .collect();
    let cells: Vec<&Cell> = fleet
        .cells_of_cluster(name)
        .filter(|c| visible.contains(c.app.as_str()))
        .collect();
    value["summary"] = counts_json(Counts::of(cells.iter().copied()));
    value["applications"] = cells.iter().map(|c| cell_json(c)).collect();
    value["apiVersions"] = json!(record.api_versions);
    Ok(json(StatusCode::OK, &value))
}

/// `GET /api/v1/audit`: who changed what, when and from where, newest first.
pub(super) async fn audit_log(state: &ApiState, call: &Call) -> Res {
    let params = query_params(call, &["limit"])?;
    let limit = match params.get("limit") {
        None => 100,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit {text:?}: expected 1 to 1000")))?,
    };
    let visible = guard::audit_subjects(state.hub.store(), &call.scope).await?;
    let entries: Vec<Value> = state
        .hub
        .store()
        .audit_log(limit)
        .await?
        .into_iter()
        .filter(|e| {
            visible.as_ref().is_none_or(|subjects| {
                e.who == call.principal.name || subjects.contains(e.subject.as_str())
            })
        })
        .map(|e| {
            json!({
                "at": e.at.to_string(),
                "who": e.who,
                "action": e.action,
                "subject": e.subject,
                "detail": e.detail,
                "source": e.source,
                "address": e.address,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"entries": entries})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(pairs: &[(&str, &str)]) -> BTreeMap<ObjectRef, String> {
        pairs
            .iter()
            .map(|(name, text)| {
                (
                    ObjectRef {
                        group: String::new(),
                        kind: "ConfigMap".to_owned(),
                        namespace: "web".to_owned(),
                        name: (*name).to_owned(),
                    },
                    (*text).to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn object_changes_name_each_object_and_diff_it() {
        let from = objects(&[
            ("a", "data:\n  x: '1'\n"),
            ("gone", "data: {}\n"),
            ("same", "s\n"),
        ]);
        let to = objects(&[
            ("a", "data:\n  x: '2'\n"),
            ("new", "data: {}\n"),
            ("same", "s\n"),
        ]);
        let changes = object_changes(&from, &to);
        let summary: Vec<(String, String)> = changes
            .iter()
            .map(|c| {
                (
                    c["object"].as_str().unwrap_or_default().to_owned(),
                    c["change"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("ConfigMap web/a".to_owned(), "changed".to_owned()),
                ("ConfigMap web/gone".to_owned(), "removed".to_owned()),
                ("ConfigMap web/new".to_owned(), "added".to_owned()),
            ]
        );
        let diff = changes[0]["diff"].as_str().unwrap_or_default();
        assert!(
            diff.contains("-  x: '1'") && diff.contains("+  x: '2'"),
            "{diff}"
        );
    }
}
