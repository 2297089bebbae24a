//! Server-side apply of one app's objects, batch by batch, against the apiserver: read the
//! live object, check ownership, dry-run, compare, and write only what differs. Talks to the
//! apiserver.
//!
//! Invariant: an object that is already as desired costs one read and at most one dry-run
//! (none when `diff::apply_is_noop` can tell from the live object alone), never a write;
//! the generation annotation alone never makes an object differ. The read is one GET,
//! or a share of one paged LIST when a batch holds many objects of one kind and namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_shared::state::IgnoreDifference;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::changeset::Action;
use crate::diff::{Comparison, Pointer, apply_is_noop, compare, ignore_pointers};
use crate::discovery::{Kinds, Resolved};
use crate::object::{APP_LABEL, Desired, ObjectRef};
use crate::store::FIELD_MANAGER;

/// The annotation recording the generation of the state that last wrote an object.
pub const GENERATION_ANNOTATION: &str = "flotilla.dev/generation";
/// An existing object without our label is adopted only when the desired object carries
/// this annotation set to `"true"`.
pub const ADOPT_ANNOTATION: &str = "flotilla.dev/adopt";
/// An object whose immutable fields changed is deleted and created again only when the
/// desired object carries this annotation set to `"true"`.
pub const RECREATE_ANNOTATION: &str = "flotilla.dev/recreate";

/// A batch reads the live objects of a kind in a namespace with one paged LIST instead of
/// one GET each when it applies at least this many of them.
const LIST_AT: usize = 16;
/// Objects per page of such a LIST; only the batch's own objects are kept from each page.
const LIST_PAGE: u32 = 250;

/// The live state of an object read ahead by a LIST, as JSON bytes (a parsed `Value` costs
/// several times as much while it waits): `None` when it does not exist.
type Prefetched = BTreeMap<ObjectRef, Option<Vec<u8>>>;

/// The app an apply works for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub app: &'a str,
    pub generation: u64,
    pub ignore_differences: &'a [IgnoreDifference],
}

/// What happened to one object.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub object: ObjectRef,
    pub action: Action,
    pub message: String,
}

impl Outcome {
    fn new(object: &ObjectRef, action: Action, message: impl Into<String>) -> Self {
        Self {
            object: object.clone(),
            action,
            message: message.into(),
        }
    }
}

/// Runs server-side applies with a bounded number in flight.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    concurrency: usize,
}

/// The dynamic API for an object of a resolved kind.
pub fn api_for(
    client: &kube::Client,
    resolved: &Resolved,
    object: &ObjectRef,
) -> Api<DynamicObject> {
    match (&object.namespace, resolved.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resolved.resource),
        _ => Api::all_with(client.clone(), &resolved.resource),
    }
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/labels")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The short reason of an apiserver refusal, without its status boilerplate.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => match status.code {
            403 => format!("forbidden: {}", status.message),
            _ => status.message.clone(),
        },
        other => other.to_string(),
    }
}

/// The live objects named in `names`, read page by page; the rest of each page is dropped,
/// so memory follows the batch, not the namespace. List items carry no apiVersion and kind:
/// they are set, so that a listed object compares like a fetched one. Of their
/// managedFields only the agent's own Apply entry is kept while they wait for their turn.
async fn list_named(
    api: &Api<DynamicObject>,
    resolved: &Resolved,
    names: &BTreeSet<&str>,
) -> Result<BTreeMap<String, Vec<u8>>, kube::Error> {
    let mut found = BTreeMap::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    // Bounded: a namespace cannot hold more pages than this of one kind in practice, and a
    // LIST that would need more falls back to GETs.
    for _ in 0..1_000 {
        let page = api.list(&params).await?;
        for mut item in page.items {
            let Some(name) = item.metadata.name.clone() else {
                continue;
            };
            if names.contains(name.as_str()) {
                // Only the agent's own Apply entry matters (for `apply_is_noop`).
                if let Some(entries) = item.metadata.managed_fields.as_mut() {
                    entries.retain(|e| {
                        e.manager.as_deref() == Some(FIELD_MANAGER)
                            && e.operation.as_deref() == Some("Apply")
                    });
                }
                let mut value = serde_json::to_value(item).expect("objects serialize");
                value["apiVersion"] = resolved.resource.api_version.clone().into();
                value["kind"] = resolved.resource.kind.clone().into();
                found.insert(name, serde_json::to_vec(&value).expect("objects serialize"));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(found),
        }
    }
    Err(kube::Error::Service(
        "a LIST of more than 1,000 pages was cut short".into(),
    ))
}

fn is_immutable(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 422 && s.message.contains("immutable"))
}

impl Applier {
    pub fn new(client: kube::Client, concurrency: usize) -> Self {
        Self {
            client,
            concurrency: concurrency.max(1),
        }
    }

    /// Applies one object, as a batch would: the self-heal of a drifted or deleted object.
    pub async fn apply_desired(
        &self,
        kinds: &Kinds,
        target: Target<'_>,
        desired: Desired,
    ) -> Outcome {
        self.apply_one(kinds, target, desired, None).await
    }

    /// Applies one batch; the objects may be applied in any order.
    pub async fn apply_batch(
        &self,
        kinds: &Kinds,
        target: Target<'_>,
        objects: Vec<Desired>,
    ) -> Vec<Outcome> {
        let mut prefetched = self.prefetch(kinds, &objects).await;
        futures::stream::iter(objects)
            .map(|desired| {
                let live = prefetched.remove(&desired.object_ref);
                self.apply_one(kinds, target, desired, live)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Reads ahead, with one paged LIST per kind and namespace, the live objects of every
    /// kind and namespace with at least [`LIST_AT`] objects in the batch. A LIST that fails
    /// (e.g. the agent may get but not list) leaves its objects to their own GETs.
    async fn prefetch(&self, kinds: &Kinds, objects: &[Desired]) -> Prefetched {
        let mut groups: BTreeMap<(&str, &str, &str, Option<&str>), Vec<&ObjectRef>> =
            BTreeMap::new();
        for desired in objects {
            let o = &desired.object_ref;
            groups
                .entry((&o.group, &o.version, &o.kind, o.namespace.as_deref()))
                .or_default()
                .push(o);
        }
        let mut prefetched = Prefetched::new();
        for refs in groups.into_values().filter(|r| r.len() >= LIST_AT) {
            let Some(resolved) = kinds.resolve(refs[0]) else {
                continue;
            };
            let api = api_for(&self.client, &resolved, refs[0]);
            let names: BTreeSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
            match list_named(&api, &resolved, &names).await {
                Ok(mut found) => {
                    for object in refs {
                        let live = found.remove(object.name.as_str());
                        prefetched.insert(object.clone(), live);
                    }
                }
                Err(error) => {
                    tracing::debug!(kind = %refs[0].kind, %error, "list failed; reading objects one by one");
                }
            }
        }
        prefetched
    }

    /// Applies one object; `prefetched` is its live state when a LIST already read it.
    #[tracing::instrument(skip_all, fields(app = target.app, object = %desired.object_ref))]
    async fn apply_one(
        &self,
        kinds: &Kinds,
        target: Target<'_>,
        desired: Desired,
        prefetched: Option<Option<Vec<u8>>>,
    ) -> Outcome {
        let object = &desired.object_ref;
        let Some(resolved) = kinds.resolve(object) else {
            return Outcome::new(
                object,
                Action::Failed,
                format!(
                    "unknown kind {} {}: the cluster serves no such resource",
                    object.api_version(),
                    object.kind
                ),
            );
        };
        let ignore = match ignore_pointers(object, target.ignore_differences) {
            Ok(pointers) => pointers,
            Err(error) => {
                return Outcome::new(
                    object,
                    Action::Failed,
                    format!("ignoreDifferences: {error}"),
                );
            }
        };
        let api = api_for(&self.client, &resolved, object);
        let live = match prefetched {
            Some(live) => live.map(|bytes| {
                serde_json::from_slice(&bytes).expect("bytes serialized from a Value parse back")
            }),
            None => match api.get_opt(&object.name).await {
                Ok(live) => live.map(|l| serde_json::to_value(l).expect("objects serialize")),
                Err(error) => return Outcome::new(object, Action::Failed, describe(&error)),
            },
        };
        let mut body = with_ownership(desired.object, target);
        match &live {
            None => self.create(&api, object, &body).await,
            Some(live) => {
                match label(live, APP_LABEL) {
                    Some(owner) if owner == target.app => {}
                    Some(owner) => {
                        return Outcome::new(
                            object,
                            Action::Failed,
                            format!("conflict: the object belongs to app {owner}; left alone"),
                        );
                    }
                    None if annotation(&body, ADOPT_ANNOTATION) == Some("true") => {}
                    None => {
                        return Outcome::new(
                            object,
                            Action::Failed,
                            format!(
                                "conflict: the object exists and was not created by flotilla; \
                                 annotate it {ADOPT_ANNOTATION}: \"true\" in Git to adopt it"
                            ),
                        );
                    }
                }
                for pointer in &ignore {
                    pointer.keep_live(&mut body, live);
                }
                self.update(&api, object, &body, live, &ignore).await
            }
        }
    }

    async fn create(&self, api: &Api<DynamicObject>, object: &ObjectRef, body: &Value) -> Outcome {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&object.name, &params, &Patch::Apply(body)).await {
            Ok(_) => Outcome::new(object, Action::Created, ""),
            Err(kube::Error::Api(status))
                if status.code == 404
                    && status
                        .details
                        .as_ref()
                        .is_some_and(|d| d.kind == "namespaces") =>
            {
                let namespace = object.namespace.as_deref().unwrap_or_default();
                Outcome::new(
                    object,
                    Action::Failed,
                    format!(
                        "namespace {namespace} not found: add it to the app or set createNamespace"
                    ),
                )
            }
            Err(error) => Outcome::new(object, Action::Failed, describe(&error)),
        }
    }

    async fn update(
        &self,
        api: &Api<DynamicObject>,
        object: &ObjectRef,
        body: &Value,
        live: &Value,
        ignore: &[Pointer],
    ) -> Outcome {
        let mut ignored = ignore.to_vec();
        ignored.push(generation_pointer());
        if apply_is_noop(body, live, &ignored) {
            return Outcome::new(object, Action::Unchanged, "");
        }
        let dry_run = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        let merged = match api.patch(&object.name, &dry_run, &Patch::Apply(body)).await {
            Ok(merged) => serde_json::to_value(merged).expect("objects serialize"),
            Err(error) if is_immutable(&error) => {
                return self.recreate(api, object, body, &error).await;
            }
            Err(error) => return Outcome::new(object, Action::Failed, describe(&error)),
        };
        match compare(&merged, live, &ignored) {
            Comparison::Unchanged => Outcome::new(object, Action::Unchanged, ""),
            Comparison::Configured { changed } => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&object.name, &params, &Patch::Apply(body)).await {
                    Ok(_) => Outcome::new(object, Action::Configured, changed.join(", ")),
                    Err(error) => Outcome::new(object, Action::Failed, describe(&error)),
                }
            }
        }
    }

    /// Deletes and creates an object whose immutable fields changed, if it opts in.
    async fn recreate(
        &self,
        api: &Api<DynamicObject>,
        object: &ObjectRef,
        body: &Value,
        error: &kube::Error,
    ) -> Outcome {
        if annotation(body, RECREATE_ANNOTATION) != Some("true") {
            return Outcome::new(
                object,
                Action::Failed,
                format!(
                    "{}; annotate it {RECREATE_ANNOTATION}: \"true\" to allow deleting and \
                     creating it again",
                    describe(error)
                ),
            );
        }
        if let Err(error) = api.delete(&object.name, &DeleteParams::foreground()).await {
            return Outcome::new(
                object,
                Action::Failed,
                format!("recreate: {}", describe(&error)),
            );
        }
        // Bounded wait for the old object (and its dependents) to go.
        for _ in 0..240 {
            match api.get_opt(&object.name).await {
                Ok(None) => {
                    let created: Result<DynamicObject, _> =
                        serde_json::from_value(body.clone()).map_err(|e| e.to_string());
                    let result = match created {
                        Ok(created) => api
                            .create(
                                &PostParams {
                                    field_manager: Some(FIELD_MANAGER.into()),
                                    ..Default::default()
                                },
                                &created,
                            )
                            .await
                            .map_err(|e| describe(&e)),
                        Err(e) => Err(e),
                    };
                    return match result {
                        Ok(_) => Outcome::new(
                            object,
                            Action::Configured,
                            "recreated: an immutable field changed",
                        ),
                        Err(e) => Outcome::new(object, Action::Failed, format!("recreate: {e}")),
                    };
                }
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(error) => {
                    return Outcome::new(
                        object,
                        Action::Failed,
                        format!("recreate: {}", describe(&error)),
                    );
                }
            }
        }
        Outcome::new(
            object,
            Action::Failed,
            "recreate: the old object was not deleted within 60s",
        )
    }
}

/// The pointer of the generation annotation, which alone never makes an object differ.
pub fn generation_pointer() -> Pointer {
    Pointer::parse(&format!(
        "/metadata/annotations/{}",
        GENERATION_ANNOTATION.replace('/', "~1")
    ))
    .expect("the generation annotation pointer is valid")
}

/// Adds the ownership label and the generation annotation.
pub fn with_ownership(mut object: Value, target: Target<'_>) -> Value {
    let metadata = object
        .as_object_mut()
        .expect("desired objects are JSON objects")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(metadata) = metadata.as_object_mut() {
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(APP_LABEL.to_owned(), target.app.into());
        }
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(
                GENERATION_ANNOTATION.to_owned(),
                target.generation.to_string().into(),
            );
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ownership_is_added_without_touching_the_rest() {
        let target = Target {
            app: "shop",
            generation: 42,
            ignore_differences: &[],
        };
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"tier": "web"}}, "data": {"k": "v"}});
        let owned = with_ownership(object, target);
        assert_eq!(
            owned["metadata"]["labels"],
            json!({"tier": "web", "flotilla.dev/app": "shop"})
        );
        assert_eq!(
            owned["metadata"]["annotations"],
            json!({"flotilla.dev/generation": "42"})
        );
        assert_eq!(owned["data"], json!({"k": "v"}));
    }

    #[test]
    fn a_new_generation_alone_is_no_change() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a",
            "annotations": {"flotilla.dev/generation": "1"}}, "data": {"k": "v"}});
        let merged = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a",
            "annotations": {"flotilla.dev/generation": "2"}}, "data": {"k": "v"}});
        assert_eq!(
            compare(&merged, &live, &[generation_pointer()]),
            Comparison::Unchanged
        );
    }
}
