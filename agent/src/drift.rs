//! Drift: watching the objects a sync applied for out-of-band change, deciding whether a
//! change is drift, saying who made it, and (with the app's `selfHeal`) reverting it. Talks
//! to the apiserver.
//!
//! A change is drift when a server-side dry run of the desired object, built exactly as
//! `apply` builds it, would change the live object: fields the manifest does not set (an
//! HPA's `replicas`, an injected CA bundle) stay as the cluster has them in the dry-run
//! result and so are never drift, and our own writes compare Unchanged, so healing cannot
//! loop. Who changed what is read from `metadata.managedFields`.
//!
//! Invariant: a watch serves the one state it was started with; the caller stops it before
//! applying the next state, so it never fights a newer state (nor reports its prunes as
//! missing objects).
//! Invariant: content the watch already judged (status, resourceVersion and managedFields
//! aside) is not judged again, so a status update costs no request and a drift is reported
//! once, not on every later event of the object.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use flotilla_shared::VerifiedBundle;
use flotilla_shared::state::IgnoreDifference;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::apply::{Applier, Target, api_for, describe, generation_pointer, with_ownership};
use crate::changeset::Action;
use crate::diff::{Comparison, Pointer, compare, ignore_pointers};
use crate::discovery::{DiscoveryError, Kinds, Resolved};
use crate::engine::{SyncReport, place};
use crate::object::{APP_LABEL, Desired, ObjectRef};
use crate::store::FIELD_MANAGER;

/// Self-heal reverts one object at most this often within [`HEAL_WINDOW`]; beyond that
/// another writer is fighting the agent, and the drift is reported instead of reverted.
const HEAL_LIMIT: usize = 5;
const HEAL_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// The state a drifted object was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftState {
    /// The live object differs from what applying the state would make it.
    OutOfSync,
    /// The object is gone.
    Missing,
}

/// One out-of-band change of a managed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEvent {
    pub app: String,
    pub object: ObjectRef,
    pub state: DriftState,
    /// JSON pointers that applying would change, sorted; empty for a missing object.
    pub changed: Vec<String>,
    /// Field managers other than flotilla that own a changed field, most recent first (or,
    /// when none owns one, as for a removed field, the most recent such manager).
    pub managers: Vec<String>,
    /// Whether self-heal reverted the change (or recreated the object).
    pub healed: bool,
    /// Why self-heal did not revert it, when it was on; empty otherwise.
    pub message: String,
    /// Whether the app has selfHeal on.
    pub self_heal: bool,
}

/// `drift: app shop ConfigMap shop/settings changed /data/key by kubectl-edit; reverted`.
impl fmt::Display for DriftEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drift: app {} {}", self.app, self.object)?;
        match self.state {
            DriftState::OutOfSync => {
                let by = if self.managers.is_empty() {
                    "an unknown manager".to_owned()
                } else {
                    self.managers.join(", ")
                };
                write!(f, " changed {} by {by}", self.changed.join(", "))?;
            }
            DriftState::Missing => write!(f, " is missing")?,
        }
        match (self.healed, self.self_heal, self.state) {
            (true, _, DriftState::OutOfSync) => write!(f, "; reverted"),
            (true, _, DriftState::Missing) => write!(f, "; recreated"),
            (false, true, _) => write!(f, "; not healed: {}", self.message),
            (false, false, DriftState::OutOfSync) => write!(f, "; left OutOfSync (selfHeal off)"),
            (false, false, DriftState::Missing) => write!(f, "; left Missing (selfHeal off)"),
        }
    }
}

/// One managed object and what its app says about it.
struct Managed {
    app: String,
    generation: u64,
    ignore_differences: Vec<IgnoreDifference>,
    self_heal: bool,
    desired: Desired,
    /// The app's `ignoreDifferences` pointers for this object.
    ignore: Vec<Pointer>,
    resolved: Resolved,
}

impl Managed {
    fn target(&self) -> Target<'_> {
        Target {
            app: &self.app,
            generation: self.generation,
            ignore_differences: &self.ignore_differences,
        }
    }
}

/// What the watch last made of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Content with this fingerprint was judged.
    Content(u64),
    Missing,
}

/// Watches the objects one sync applied. Build it with [`DriftWatch::new`], then
/// [`DriftWatch::run`] it (it owns what it needs, so it can be spawned).
pub struct DriftWatch {
    client: kube::Client,
    kinds: Kinds,
    applier: Applier,
    objects: BTreeMap<ObjectRef, Managed>,
    seen: HashMap<ObjectRef, Seen>,
    heals: HashMap<ObjectRef, VecDeque<Instant>>,
}

/// Watches the objects `report` says were applied from `bundle` until `stop` completes,
/// sending one [`DriftEvent`] per out-of-band change.
pub async fn watch(
    client: kube::Client,
    bundle: &VerifiedBundle,
    report: &SyncReport,
    events: mpsc::Sender<DriftEvent>,
    stop: impl Future<Output = ()>,
) -> Result<(), DriftError> {
    DriftWatch::new(client, bundle, report)
        .await?
        .run(events, stop)
        .await
}

/// One watch: a resource in one namespace (or cluster-wide), and the managed objects in it.
struct Watched {
    resource: ApiResource,
    namespace: Option<String>,
    objects: BTreeSet<ObjectRef>,
}

impl DriftWatch {
    /// Collects the objects of `bundle` that `report` says were applied (failed and refused
    /// objects are not watched), placed and resolved as the engine applied them.
    pub async fn new(
        client: kube::Client,
        bundle: &VerifiedBundle,
        report: &SyncReport,
    ) -> Result<Self, DriftError> {
        let kinds = Kinds::load(&client).await?;
        let failed: BTreeSet<(&str, &str)> = report
            .changes
            .entries
            .iter()
            .filter(|c| c.action == Action::Failed)
            .map(|c| (c.app.as_str(), c.object.as_str()))
            .collect();
        let state = &bundle.state.state;
        let mut objects = BTreeMap::new();
        for (app, blob) in state.apps.iter().zip(&bundle.blobs) {
            let Some(applied) = report.objects.get(&app.name) else {
                continue;
            };
            for object in &blob.blob.objects {
                let Ok(mut desired) = Desired::from_object(object.clone()) else {
                    continue;
                };
                place(&kinds, &app.namespace, &mut desired);
                let name = desired.object_ref.to_string();
                if !applied.contains(&desired.object_ref)
                    || failed.contains(&(app.name.as_str(), name.as_str()))
                {
                    continue;
                }
                let Some(resolved) = kinds.resolve(&desired.object_ref) else {
                    continue;
                };
                let Ok(ignore) = ignore_pointers(&desired.object_ref, &app.ignore_differences)
                else {
                    continue;
                };
                objects.insert(
                    desired.object_ref.clone(),
                    Managed {
                        app: app.name.clone(),
                        generation: state.generation,
                        ignore_differences: app.ignore_differences.clone(),
                        self_heal: app.sync_policy.self_heal,
                        desired,
                        ignore,
                        resolved,
                    },
                );
            }
        }
        Ok(Self {
            applier: Applier::new(client.clone(), 1),
            client,
            kinds,
            objects,
            seen: HashMap::new(),
            heals: HashMap::new(),
        })
    }

    /// The objects this watch looks after.
    pub fn objects(&self) -> impl Iterator<Item = &ObjectRef> {
        self.objects.keys()
    }

    /// One watch per resource and namespace of the managed objects.
    fn watches(&self) -> Vec<Watched> {
        let mut by_key: BTreeMap<(String, String, Option<String>), Watched> = BTreeMap::new();
        for (object, managed) in &self.objects {
            let resource = &managed.resolved.resource;
            let namespace = object
                .namespace
                .clone()
                .filter(|_| managed.resolved.namespaced);
            by_key
                .entry((
                    resource.api_version.clone(),
                    resource.plural.clone(),
                    namespace.clone(),
                ))
                .or_insert_with(|| Watched {
                    resource: resource.clone(),
                    namespace,
                    objects: BTreeSet::new(),
                })
                .objects
                .insert(object.clone());
        }
        by_key.into_values().collect()
    }

    /// Watches until `stop` completes (or `events` is closed), judging every change of a
    /// managed object and sending an event for each drift.
    #[tracing::instrument(skip_all, fields(objects = self.objects.len()))]
    pub async fn run(
        mut self,
        events: mpsc::Sender<DriftEvent>,
        stop: impl Future<Output = ()>,
    ) -> Result<(), DriftError> {
        let watches = self.watches();
        let streams: Vec<BoxStream<'static, _>> = watches
            .iter()
            .enumerate()
            .map(|(index, w)| {
                let api: Api<DynamicObject> = match &w.namespace {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &w.resource),
                    None => Api::all_with(self.client.clone(), &w.resource),
                };
                watcher(api, watcher::Config::default().labels(APP_LABEL))
                    .default_backoff()
                    .map(move |event| (index, event))
                    .boxed()
            })
            .collect();
        tracing::info!(watches = streams.len(), "watching for drift");
        let mut merged = futures::stream::select_all(streams);
        // Per watch, the objects listed since its last (re)start.
        let mut listed: Vec<BTreeSet<ObjectRef>> = vec![BTreeSet::new(); watches.len()];
        tokio::pin!(stop);
        loop {
            let next = tokio::select! {
                () = &mut stop => return Ok(()),
                next = merged.next() => next,
            };
            let Some((index, event)) = next else {
                return Ok(());
            };
            let judged = self.judge(&watches[index], &mut listed[index], event);
            let found = tokio::select! {
                () = &mut stop => return Ok(()),
                found = judged => found,
            };
            for event in found {
                tracing::info!(app = %event.app, object = %event.object, healed = event.healed,
                    changed = ?event.changed, managers = ?event.managers, "drift");
                let sent = tokio::select! {
                    () = &mut stop => return Ok(()),
                    sent = events.send(event) => sent,
                };
                if sent.is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// Judges one event of a watch; `listed` collects what the watch lists on a (re)start,
    /// so that objects deleted while it was away are noticed when the list is done.
    async fn judge(
        &mut self,
        watched: &Watched,
        listed: &mut BTreeSet<ObjectRef>,
        event: Result<watcher::Event<DynamicObject>, watcher::Error>,
    ) -> Vec<DriftEvent> {
        let resource = &watched.resource;
        let mut found = Vec::new();
        match event {
            Err(error) => tracing::warn!(%error, "drift watch failed; retrying"),
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(object_ref) = identify(resource, &object) {
                    listed.insert(object_ref.clone());
                    found.extend(self.changed(resource, object_ref, object).await);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<ObjectRef> = watched.objects.difference(listed).cloned().collect();
                for object_ref in gone {
                    found.extend(self.deleted(resource, object_ref).await);
                }
            }
            Ok(watcher::Event::Apply(object)) => {
                if let Some(object_ref) = identify(resource, &object) {
                    found.extend(self.changed(resource, object_ref, object).await);
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                if let Some(object_ref) = identify(resource, &object) {
                    found.extend(self.deleted(resource, object_ref).await);
                }
            }
        }
        found
    }

    /// Judges a managed object as the watch now sees it.
    #[tracing::instrument(skip_all, fields(object = %object_ref))]
    async fn changed(
        &mut self,
        resource: &ApiResource,
        object_ref: ObjectRef,
        object: DynamicObject,
    ) -> Option<DriftEvent> {
        let managed = self.objects.get(&object_ref)?;
        let mut live = serde_json::to_value(object).expect("objects serialize");
        // List responses leave out each item's apiVersion and kind.
        live["apiVersion"] = resource.api_version.clone().into();
        live["kind"] = resource.kind.clone().into();
        let fingerprint = fingerprint(&live);
        if self.seen.get(&object_ref) == Some(&Seen::Content(fingerprint)) {
            return None;
        }
        let changed = match dry_run(&self.client, managed, &live).await {
            Ok(Comparison::Unchanged) => {
                self.seen.insert(object_ref, Seen::Content(fingerprint));
                return None;
            }
            Ok(Comparison::Configured { changed }) => changed,
            Err(error) => {
                // Not recorded as seen: the next event of the object tries again.
                tracing::warn!(error = %describe(&error), "drift dry run failed");
                return None;
            }
        };
        // The dry run saw the object as it is now; if that is newer than this event, a
        // later event judges it.
        let api = api_for(&self.client, &managed.resolved, &object_ref);
        match api.get_opt(&object_ref.name).await {
            Ok(Some(now))
                if now.metadata.resource_version.as_deref() == resource_version(&live) => {}
            Ok(_) => return None,
            Err(error) => {
                tracing::warn!(error = %describe(&error), "drift re-read failed");
                return None;
            }
        }
        self.seen
            .insert(object_ref.clone(), Seen::Content(fingerprint));
        let managers = changed_by(&live, &changed);
        Some(
            self.drifted(object_ref, DriftState::OutOfSync, changed, managers)
                .await,
        )
    }

    /// Handles a managed object that left the watch: deleted, or no longer labelled.
    #[tracing::instrument(skip_all, fields(object = %object_ref))]
    async fn deleted(
        &mut self,
        resource: &ApiResource,
        object_ref: ObjectRef,
    ) -> Option<DriftEvent> {
        let managed = self.objects.get(&object_ref)?;
        let api = api_for(&self.client, &managed.resolved, &object_ref);
        match api.get_opt(&object_ref.name).await {
            Ok(Some(object)) => return self.changed(resource, object_ref, object).await,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %describe(&error), "drift re-read failed");
                return None;
            }
        }
        if self.seen.insert(object_ref.clone(), Seen::Missing) == Some(Seen::Missing) {
            return None;
        }
        Some(
            self.drifted(object_ref, DriftState::Missing, Vec::new(), Vec::new())
                .await,
        )
    }

    /// Builds the event of a drift, reverting it first when the app has selfHeal.
    async fn drifted(
        &mut self,
        object_ref: ObjectRef,
        state: DriftState,
        changed: Vec<String>,
        managers: Vec<String>,
    ) -> DriftEvent {
        let managed = self
            .objects
            .get(&object_ref)
            .expect("only managed objects drift");
        let mut event = DriftEvent {
            app: managed.app.clone(),
            object: object_ref.clone(),
            state,
            changed,
            managers,
            healed: false,
            message: String::new(),
            self_heal: managed.self_heal,
        };
        if !managed.self_heal {
            return event;
        }
        let now = Instant::now();
        let heals = self.heals.entry(object_ref).or_default();
        while heals
            .front()
            .is_some_and(|t| now.duration_since(*t) > HEAL_WINDOW)
        {
            heals.pop_front();
        }
        if heals.len() >= HEAL_LIMIT {
            event.message = format!(
                "self-heal paused: reverted {HEAL_LIMIT} times within {}s, another writer keeps \
                 changing it",
                HEAL_WINDOW.as_secs()
            );
            return event;
        }
        heals.push_back(now);
        let outcome = self
            .applier
            .apply_desired(&self.kinds, managed.target(), managed.desired.clone())
            .await;
        match outcome.action {
            Action::Created | Action::Configured => event.healed = true,
            Action::Unchanged => event.message = "it was already as desired again".into(),
            _ => event.message = outcome.message,
        }
        event
    }
}

/// The reference of a watched object, with the kind and version the watch addresses.
fn identify(resource: &ApiResource, object: &DynamicObject) -> Option<ObjectRef> {
    let name = object.metadata.name.as_deref()?;
    ObjectRef::new(
        &resource.api_version,
        &resource.kind,
        object.metadata.namespace.as_deref(),
        name,
    )
    .ok()
}

fn resource_version(live: &Value) -> Option<&str> {
    live.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// What applying the desired object would change in `live`: a server-side dry run of the
/// body `apply` would send, compared as `apply` compares it.
async fn dry_run(
    client: &kube::Client,
    managed: &Managed,
    live: &Value,
) -> Result<Comparison, kube::Error> {
    let object = &managed.desired.object_ref;
    let mut body = with_ownership(managed.desired.object.clone(), managed.target());
    for pointer in &managed.ignore {
        pointer.keep_live(&mut body, live);
    }
    let api = api_for(client, &managed.resolved, object);
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let merged = api
        .patch(&object.name, &params, &Patch::Apply(&body))
        .await?;
    let merged = serde_json::to_value(merged).expect("objects serialize");
    let mut ignore = managed.ignore.clone();
    ignore.push(generation_pointer());
    Ok(compare(&merged, live, &ignore))
}

/// A fingerprint of what an object says, leaving out what changes without anyone changing
/// the object's content: its status, resourceVersion and managedFields.
fn fingerprint(live: &Value) -> u64 {
    let mut content = live.clone();
    if let Some(object) = content.as_object_mut() {
        object.remove("status");
    }
    if let Some(metadata) = content.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    let mut hasher = DefaultHasher::new();
    content.to_string().hash(&mut hasher);
    hasher.finish()
}

/// The field managers other than flotilla whose `managedFields` entries own one of the
/// `changed` pointers, most recent first. When none owns one (a removed field has no
/// owner), the most recent manager other than flotilla.
pub fn changed_by(live: &Value, changed: &[String]) -> Vec<String> {
    let mut entries: Vec<(&str, &str, &Value)> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let manager = entry.get("manager")?.as_str()?;
            let operation = entry.get("operation").and_then(Value::as_str);
            let time = entry.get("time").and_then(Value::as_str).unwrap_or("");
            let ours = manager == FIELD_MANAGER;
            let write = matches!(operation, Some("Apply" | "Update"));
            (!ours && write).then(|| (manager, time, entry.get("fieldsV1").unwrap_or(&Value::Null)))
        })
        .collect();
    entries.sort_by(|a, b| b.1.cmp(a.1));
    let paths: Vec<Vec<String>> = changed.iter().map(|p| tokens(p)).collect();
    let mut owners: Vec<String> = Vec::new();
    for (manager, _, fields) in &entries {
        if paths.iter().any(|path| owns(fields, path)) && !owners.iter().any(|m| m == manager) {
            owners.push((*manager).to_owned());
        }
    }
    if owners.is_empty()
        && let Some((manager, _, _)) = entries.first()
    {
        owners.push((*manager).to_owned());
    }
    owners
}

/// The decoded tokens of a JSON pointer (RFC 6901).
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Whether a `fieldsV1` set owns the field at `path` or something inside it. The pointers
/// `diff::compare` reports only name object members, so every token is an `f:` key; an
/// empty set on the way is an atomic field owned whole.
fn owns(fields: &Value, path: &[String]) -> bool {
    let Some(mut node) = fields.as_object().filter(|f| !f.is_empty()) else {
        return false;
    };
    for token in path {
        if node.is_empty() {
            return true;
        }
        match node.get(&format!("f:{token}")).and_then(Value::as_object) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, operation: &str, time: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": operation, "time": time,
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    fn check(entries: Vec<Value>, changed: &[&str], expected: &[&str]) {
        let live = json!({"metadata": {"name": "a", "managedFields": entries}});
        let changed: Vec<String> = changed.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(changed_by(&live, &changed), expected, "{changed:?}");
    }

    fn flotilla() -> Value {
        entry(
            "flotilla",
            "Apply",
            "2026-01-01T00:00:00Z",
            json!({"f:data": {"f:key": {}},
                   "f:metadata": {"f:labels": {"f:flotilla.dev/app": {}}}}),
        )
    }

    #[test]
    fn the_manager_owning_a_changed_field_is_named() {
        let edit = entry(
            "kubectl-edit",
            "Update",
            "2026-01-01T00:01:00Z",
            json!({"f:data": {"f:key": {}}}),
        );
        let other = entry(
            "other",
            "Update",
            "2026-01-01T00:02:00Z",
            json!({"f:data": {"f:other": {}}}),
        );
        check(
            vec![flotilla(), edit.clone(), other.clone()],
            &["/data/key"],
            &["kubectl-edit"],
        );
        check(
            vec![flotilla(), edit, other],
            &["/data/key", "/data/other"],
            &["other", "kubectl-edit"],
        );
    }

    #[test]
    fn owning_something_inside_or_around_a_changed_path_counts() {
        let labels = entry(
            "labeller",
            "Update",
            "2026-01-01T00:01:00Z",
            json!({"f:metadata": {"f:labels": {"f:team": {}}}}),
        );
        check(vec![labels.clone()], &["/metadata/labels"], &["labeller"]);
        let atomic = entry(
            "selector",
            "Apply",
            "2026-01-01T00:01:00Z",
            json!({"f:spec": {"f:selector": {}}}),
        );
        check(vec![atomic], &["/spec/selector/matchLabels"], &["selector"]);
        let escaped = entry(
            "annotator",
            "Update",
            "2026-01-01T00:01:00Z",
            json!({"f:metadata": {"f:annotations": {"f:a/b": {}}}}),
        );
        check(
            vec![escaped],
            &["/metadata/annotations/a~1b"],
            &["annotator"],
        );
    }

    #[test]
    fn without_an_owner_the_most_recent_other_manager_is_named() {
        let early = entry(
            "early",
            "Update",
            "2026-01-01T00:01:00Z",
            json!({"f:x": {}}),
        );
        let late = entry("late", "Update", "2026-01-01T00:05:00Z", json!({"f:y": {}}));
        check(vec![flotilla(), early, late], &["/data/removed"], &["late"]);
        // Flotilla itself and status writers are never named.
        let status = entry(
            "kubelet",
            "Status",
            "2026-01-01T00:09:00Z",
            json!({"f:status": {}}),
        );
        check(vec![flotilla(), status], &["/data/key"], &[]);
        check(vec![], &["/data/key"], &[]);
    }

    #[test]
    fn status_and_bookkeeping_do_not_change_the_fingerprint() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{"manager": "x"}]}, "spec": {"replicas": 1}, "status": {"ready": 0}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "2",
            "managedFields": [{"manager": "y"}]}, "spec": {"replicas": 1}, "status": {"ready": 1}});
        let c = json!({"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"replicas": 2}});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    fn event(state: DriftState, healed: bool, self_heal: bool, managers: &[&str]) -> DriftEvent {
        DriftEvent {
            app: "shop".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("shop"), "settings").expect("valid"),
            state,
            changed: if state == DriftState::Missing {
                vec![]
            } else {
                vec!["/data/key".into()]
            },
            managers: managers.iter().map(|m| (*m).to_owned()).collect(),
            healed,
            message: if self_heal && !healed {
                "forbidden".into()
            } else {
                String::new()
            },
            self_heal,
        }
    }

    #[test]
    fn events_print_as_one_line() {
        let cases = [
            (
                event(DriftState::OutOfSync, true, true, &["kubectl-edit"]),
                "drift: app shop ConfigMap shop/settings changed /data/key by kubectl-edit; \
                 reverted",
            ),
            (
                event(DriftState::OutOfSync, false, false, &[]),
                "drift: app shop ConfigMap shop/settings changed /data/key by an unknown manager; \
                 left OutOfSync (selfHeal off)",
            ),
            (
                event(DriftState::OutOfSync, false, true, &["a", "b"]),
                "drift: app shop ConfigMap shop/settings changed /data/key by a, b; not healed: \
                 forbidden",
            ),
            (
                event(DriftState::Missing, true, true, &[]),
                "drift: app shop ConfigMap shop/settings is missing; recreated",
            ),
            (
                event(DriftState::Missing, false, false, &[]),
                "drift: app shop ConfigMap shop/settings is missing; left Missing (selfHeal off)",
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(event.to_string(), expected);
        }
    }
}
