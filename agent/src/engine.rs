//! One sync of a verified cluster state: for each app, prepare its objects (namespaces,
//! policy, limits), apply them stage by stage, prune what left it under the trust model's
//! rules, and deal with apps that were removed by a tombstone or are merely missing. Talks
//! to the apiserver through `apply`, `discovery` and `store`.
//!
//! Invariant: nothing here is reached with a state that `flotilla_shared::verify` did not
//! accept, and the accepted generation is recorded before the first object is applied, so
//! a crash mid-sync cannot reopen the door to an older state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_shared::state::App;
use flotilla_shared::{LastAccepted, VerifiedBundle};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::Value;

use crate::apply::{Applier, Outcome, Target, api_for, describe};
use crate::changeset::{Action, ChangeSet};
use crate::discovery::{DiscoveryError, Kinds};
use crate::health::{self, AppHealth, Health, Status};
use crate::inventory::{self, Inventory};
use crate::object::{Desired, ObjectRef};
use crate::order::{Stage, plan_apply};
use crate::policy::{self, LocalPolicy};
use crate::prune::{self, AppFate, PrunePolicy, Scope};
use crate::store::{FIELD_MANAGER, Store, StoreError};

/// How long the engine waits for applied CRDs to become Established.
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: LocalPolicy,
    /// Server-side applies in flight at once within a batch.
    pub concurrency: usize,
}

/// Applies verified states to one cluster.
#[derive(Clone)]
pub struct Engine {
    client: kube::Client,
    store: Store,
    settings: Settings,
}

/// What a sync did, per app and per object.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub changes: ChangeSet,
    /// The objects of each app of the state, as applied (for health checks).
    pub objects: BTreeMap<String, Vec<ObjectRef>>,
    /// Apps with an inventory that the state neither lists nor removes.
    pub orphaned: Vec<String>,
}

/// An app's objects made ready to apply, plus the objects refused on the way.
struct Prepared {
    objects: Vec<Desired>,
    refused: Vec<Outcome>,
}

impl Engine {
    pub fn new(client: kube::Client, store: Store, settings: Settings) -> Self {
        Self {
            client,
            store,
            settings,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records `accepted` as the last accepted state (no write when unchanged).
    pub async fn accept(
        &self,
        accepted: &LastAccepted,
        previous: Option<&LastAccepted>,
    ) -> Result<(), EngineError> {
        Ok(self.store.save_accepted(accepted, previous).await?)
    }

    /// Makes the cluster match a verified bundle.
    #[tracing::instrument(skip_all, fields(cluster = %bundle.state.state.cluster, generation = bundle.state.state.generation))]
    pub async fn sync(&self, bundle: &VerifiedBundle) -> Result<SyncReport, EngineError> {
        let state = &bundle.state.state;
        let mut kinds = Kinds::load(&self.client).await?;
        let mut report = SyncReport::default();
        for (app, blob) in state.apps.iter().zip(&bundle.blobs) {
            let objects = self
                .sync_app(
                    &mut kinds,
                    app,
                    state.generation,
                    &blob.blob.objects,
                    &mut report.changes,
                )
                .await?;
            report.objects.insert(app.name.clone(), objects);
        }
        let with_inventory = self.store.apps().await?;
        let fates = prune::classify_apps(
            with_inventory.iter().map(String::as_str),
            state.apps.iter().map(|a| a.name.as_str()),
            &state.removed,
        );
        for (app, fate) in fates {
            match fate {
                AppFate::Kept => {}
                AppFate::Orphaned => {
                    report.changes.record_app(
                        &app,
                        Action::Skipped,
                        "Orphaned: the app is not in the state and has no tombstone; its objects stay".into(),
                    );
                    report.orphaned.push(app);
                }
                AppFate::Removed { prune } => {
                    self.remove_app(&kinds, &app, prune, &mut report.changes)
                        .await?;
                }
            }
        }
        Ok(report)
    }

    /// The objects a sync of `bundle` would apply, per app, placed and checked against the
    /// local policy and the app's limits as a sync does, without touching the cluster beyond
    /// discovery. For enforcing a state that may not be synced again (an expired one) by
    /// watching for drift alone.
    pub async fn planned_objects(
        &self,
        bundle: &VerifiedBundle,
    ) -> Result<BTreeMap<String, Vec<ObjectRef>>, EngineError> {
        let mut kinds = Kinds::load(&self.client).await?;
        let state = &bundle.state.state;
        let mut planned = BTreeMap::new();
        for (app, blob) in state.apps.iter().zip(&bundle.blobs) {
            let prepared = self.prepare(&mut kinds, app, &blob.blob.objects);
            planned.insert(
                app.name.clone(),
                prepared.objects.into_iter().map(|d| d.object_ref).collect(),
            );
        }
        Ok(planned)
    }

    async fn sync_app(
        &self,
        kinds: &mut Kinds,
        app: &App,
        generation: u64,
        objects: &[Value],
        changes: &mut ChangeSet,
    ) -> Result<Vec<ObjectRef>, EngineError> {
        let prepared = self.prepare(kinds, app, objects);
        for refused in &prepared.refused {
            changes.record(
                &app.name,
                &refused.object,
                refused.action,
                refused.message.clone(),
            );
        }
        if app.sync_policy.create_namespace
            && let Err(message) = self.ensure_namespace(&app.namespace).await
        {
            changes.record(
                &app.name,
                &namespace_ref(&app.namespace),
                Action::Failed,
                format!("createNamespace: {message}"),
            );
        }
        let desired_refs: Vec<ObjectRef> = prepared
            .objects
            .iter()
            .map(|d| d.object_ref.clone())
            .collect();
        let plan = plan_apply(prepared.objects);
        for warning in &plan.warnings {
            tracing::warn!(app = %app.name, %warning, "invalid sync wave");
        }
        for rejected in &plan.rejected {
            let object = match rejected {
                crate::order::PlanError::Duplicate { object, .. } => object,
            };
            changes.record(&app.name, object, Action::Failed, rejected.to_string());
        }
        let applier = Applier::new(self.client.clone(), self.settings.concurrency);
        let target = Target {
            app: &app.name,
            generation,
            ignore_differences: &app.ignore_differences,
        };
        // Discovery was loaded at the start of the sync; only CRDs written by this sync can
        // add kinds, so only then is it loaded again (an unchanged re-sync skips it).
        let mut crds_written = false;
        for batch in plan.batches {
            if batch.stage != Stage::Definitions && crds_written {
                kinds.refresh(&self.client).await?;
                crds_written = false;
            }
            let crds: Vec<String> = batch
                .objects
                .iter()
                .filter(|d| {
                    d.object_ref
                        .is("apiextensions.k8s.io", "CustomResourceDefinition")
                })
                .map(|d| d.object_ref.name.clone())
                .collect();
            let mut outcomes = applier.apply_batch(kinds, target, batch.objects).await;
            outcomes.sort_by(|a, b| a.object.cmp(&b.object));
            for outcome in outcomes {
                crds_written |= matches!(outcome.action, Action::Created | Action::Configured)
                    && outcome
                        .object
                        .is("apiextensions.k8s.io", "CustomResourceDefinition");
                changes.record(&app.name, &outcome.object, outcome.action, outcome.message);
            }
            if !crds.is_empty() {
                for (name, message) in self.wait_established(&crds).await {
                    tracing::warn!(app = %app.name, crd = %name, %message, "CRD not established");
                }
            }
        }
        self.prune_app(kinds, app, &desired_refs, changes).await?;
        Ok(desired_refs)
    }

    /// Parses and places an app's objects; refuses what policy or limits forbid.
    fn prepare(&self, kinds: &mut Kinds, app: &App, objects: &[Value]) -> Prepared {
        let mut prepared = Prepared {
            objects: Vec::new(),
            refused: Vec::new(),
        };
        for object in objects {
            if object.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                kinds.declare_crd(object);
            }
        }
        for (index, object) in objects.iter().enumerate() {
            let mut desired = match Desired::from_object(object.clone()) {
                Ok(desired) => desired,
                Err(error) => {
                    let placeholder = ObjectRef::new("v1", "Unknown", None, &format!("#{index}"))
                        .expect("a placeholder reference is valid");
                    prepared.refused.push(Outcome {
                        object: placeholder,
                        action: Action::Failed,
                        message: format!("object #{index} of the app is invalid: {error}"),
                    });
                    continue;
                }
            };
            place(kinds, &app.namespace, &mut desired);
            if let Err(refusal) = policy::check(
                &desired.object_ref,
                app.limits.as_ref(),
                &self.settings.policy,
            ) {
                prepared.refused.push(Outcome {
                    object: desired.object_ref,
                    action: Action::Failed,
                    message: format!("refused: {refusal}"),
                });
                continue;
            }
            prepared.objects.push(desired);
        }
        prepared
    }

    async fn ensure_namespace(&self, name: &str) -> Result<(), String> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_opt(name).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                let body = serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "flotilla"}}
                });
                api.patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&body),
                )
                .await
                .map(|_| ())
                .map_err(|e| describe(&e))
            }
            Err(error) => Err(describe(&error)),
        }
    }

    /// Waits (bounded) until the named CRDs are Established; returns those that are not.
    async fn wait_established(&self, names: &[String]) -> Vec<(String, String)> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + CRD_ESTABLISH_TIMEOUT;
        let mut pending: BTreeSet<String> = names.iter().cloned().collect();
        loop {
            let mut still = BTreeSet::new();
            for name in &pending {
                let established = match api.get_opt(name).await {
                    Ok(Some(crd)) => {
                        let value = serde_json::to_value(crd).expect("CRDs serialize");
                        health::health(&value).status == Status::Current
                    }
                    _ => false,
                };
                if !established {
                    still.insert(name.clone());
                }
            }
            pending = still;
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                return pending
                    .into_iter()
                    .map(|n| (n, "not Established within 60s".to_owned()))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Loads the apiserver's kinds (discovery), for `health`; load once, ask many times.
    pub async fn kinds(&self) -> Result<Kinds, EngineError> {
        Ok(Kinds::load(&self.client).await?)
    }

    /// Reads the live object of each reference (`None` when gone or its kind is gone).
    async fn live_objects(&self, kinds: &Kinds, refs: &[ObjectRef]) -> BTreeMap<ObjectRef, Value> {
        let mut live = BTreeMap::new();
        for object in refs {
            let Some(resolved) = kinds.resolve(object) else {
                continue;
            };
            let api = api_for(&self.client, &resolved, object);
            if let Ok(Some(found)) = api.get_opt(&object.name).await {
                live.insert(
                    object.clone(),
                    serde_json::to_value(found).expect("objects serialize"),
                );
            }
        }
        live
    }

    async fn prune_app(
        &self,
        kinds: &Kinds,
        app: &App,
        desired: &[ObjectRef],
        changes: &mut ChangeSet,
    ) -> Result<(), EngineError> {
        let previous = self.store.inventory(&app.name).await?;
        let empty = Inventory::empty(app.name.clone());
        let diff = inventory::diff(previous.as_ref().unwrap_or(&empty), desired);
        let live = self.live_objects(kinds, &diff.stale).await;
        let policy = PrunePolicy {
            prune: app.sync_policy.prune,
            prune_limit_percent: app.sync_policy.prune_limit,
            allow_namespaces: false,
            allow_crds: false,
        };
        let previous_total = previous.as_ref().map_or(0, Inventory::len);
        let plan = prune::plan_prune(
            diff.stale.iter().cloned(),
            |r| prune::ownership(live.get(r), &app.name),
            &policy,
            Scope::Step { previous_total },
        );
        let deleted = self.execute_prune(kinds, &app.name, &plan, changes).await;
        let next = prune::next_inventory(&app.name, desired, &plan, &deleted);
        self.store.save_inventory(&next, previous.as_ref()).await?;
        Ok(())
    }

    /// Deletes what a prune plan says and records every held object. Returns the objects
    /// whose deletion the apiserver accepted.
    async fn execute_prune(
        &self,
        kinds: &Kinds,
        app: &str,
        plan: &prune::PrunePlan,
        changes: &mut ChangeSet,
    ) -> BTreeSet<ObjectRef> {
        if let Some(refusal) = &plan.refused {
            changes.record_app(app, Action::Skipped, refusal.to_string());
        }
        for (object, reason) in &plan.held {
            changes.record(app, object, Action::Skipped, reason.to_string());
        }
        let mut deleted = BTreeSet::new();
        for object in &plan.delete {
            let Some(resolved) = kinds.resolve(object) else {
                deleted.insert(object.clone());
                continue;
            };
            let api = api_for(&self.client, &resolved, object);
            match api.delete(&object.name, &DeleteParams::background()).await {
                Ok(_) => {
                    changes.record(app, object, Action::Deleted, "pruned".into());
                    deleted.insert(object.clone());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    deleted.insert(object.clone());
                }
                Err(error) => changes.record(
                    app,
                    object,
                    Action::Failed,
                    format!("prune: {}", describe(&error)),
                ),
            }
        }
        deleted
    }

    async fn remove_app(
        &self,
        kinds: &Kinds,
        app: &str,
        prune: bool,
        changes: &mut ChangeSet,
    ) -> Result<(), EngineError> {
        let Some(inventory) = self.store.inventory(app).await? else {
            return Ok(());
        };
        if !prune {
            changes.record_app(
                app,
                Action::Skipped,
                "removed without prune: its objects stay, unmanaged".into(),
            );
            self.store.delete_inventory(app).await?;
            return Ok(());
        }
        let refs: Vec<ObjectRef> = inventory.entries.iter().cloned().collect();
        let live = self.live_objects(kinds, &refs).await;
        let policy = PrunePolicy {
            prune: true,
            ..PrunePolicy::default()
        };
        let plan = prune::plan_prune(
            refs,
            |r| prune::ownership(live.get(r), app),
            &policy,
            Scope::Removal,
        );
        let deleted = self.execute_prune(kinds, app, &plan, changes).await;
        let next = prune::next_inventory(app, &[], &plan, &deleted);
        if next.is_empty() {
            self.store.delete_inventory(app).await?;
        } else {
            self.store.save_inventory(&next, Some(&inventory)).await?;
        }
        Ok(())
    }

    /// The health of every object of each app, and each app's roll-up, resolving kinds with
    /// `kinds` (discovery is not reloaded per call: `wait_healthy` asks every half second).
    pub async fn health(
        &self,
        kinds: &Kinds,
        objects: &BTreeMap<String, Vec<ObjectRef>>,
    ) -> BTreeMap<String, (AppHealth, Vec<(ObjectRef, Health)>)> {
        let mut out = BTreeMap::new();
        for (app, refs) in objects {
            let live = self.live_objects(kinds, refs).await;
            let mut healths = Vec::new();
            let mut suspended = false;
            for object in refs {
                let health = match live.get(object) {
                    Some(value) => {
                        suspended |= health::is_suspended(value);
                        health::health(value)
                    }
                    None => Health::not_found(),
                };
                healths.push((object.clone(), health));
            }
            let roll_up = health::roll_up(healths.iter().map(|(_, h)| &h.status), suspended);
            out.insert(app.clone(), (roll_up, healths));
        }
        out
    }
}

/// Puts an object where the engine applies it: a namespaced object without a namespace
/// goes to the app's namespace, a cluster-scoped one loses the namespace it names; a kind
/// neither discovery nor a CRD of the state knows is left as it is.
pub fn place(kinds: &Kinds, app_namespace: &str, desired: &mut Desired) {
    match kinds.namespaced(&desired.object_ref) {
        Some(true) if desired.object_ref.namespace.is_none() => {
            desired.object["metadata"]["namespace"] = app_namespace.into();
            desired.object_ref.namespace = Some(app_namespace.to_owned());
        }
        Some(false) if desired.object_ref.namespace.is_some() => {
            if let Some(metadata) = desired
                .object
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
            {
                metadata.remove("namespace");
            }
            desired.object_ref.namespace = None;
        }
        _ => {}
    }
}

fn namespace_ref(name: &str) -> ObjectRef {
    ObjectRef::new("v1", "Namespace", None, name).expect("a Namespace reference is valid")
}
