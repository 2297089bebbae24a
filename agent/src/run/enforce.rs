//! Enforcing one accepted state at a time: applying it with the engine, then watching its
//! objects for drift (healing what the apps ask to be healed), and knowing its health for
//! status reports. What the hub mode and the directory mode share. Talks to the apiserver
//! through the engine and the drift watch.
//!
//! Invariant: the drift watch of a state is stopped before the next state is applied, so
//! it never fights a newer state.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flotilla_shared::{LastAccepted, VerifiedBundle};
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::changeset::Action;
use crate::drift::{DriftError, DriftEvent, DriftWatch};
use crate::engine::{Engine, EngineError, SyncReport};
use crate::oneshot::{AppHealths, apply_verified};

use super::serve::Shared;

/// The state being enforced.
#[derive(Debug)]
pub struct Enforced {
    /// The state and its parsed blobs (their bytes freed).
    pub bundle: VerifiedBundle,
    /// What the last sync did; for a state only watched, the objects a sync would apply.
    pub sync: SyncReport,
    /// False for a state that this process only watches (an expired one after a restart).
    pub synced: bool,
    /// Apps with drift that was not healed since the sync.
    pub out_of_sync: BTreeSet<String>,
    /// Health as last looked at.
    pub healths: AppHealths,
}

struct Watching {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DriftError>>,
}

/// Applies states and keeps the current one enforced.
pub struct Enforcer {
    client: kube::Client,
    engine: Engine,
    shared: Arc<Shared>,
    drift: mpsc::Sender<DriftEvent>,
    current: Option<Enforced>,
    watching: Option<Watching>,
}

impl Enforcer {
    /// An enforcer, and the receiver of the drift events of its watches.
    pub fn new(
        client: kube::Client,
        engine: Engine,
        shared: Arc<Shared>,
    ) -> (Self, mpsc::Receiver<DriftEvent>) {
        let (drift, events) = mpsc::channel(256);
        (
            Self {
                client,
                engine,
                shared,
                drift,
                current: None,
                watching: None,
            },
            events,
        )
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn current(&self) -> Option<&Enforced> {
        self.current.as_ref()
    }

    /// Whether the state with this payload is the one enforced, synced by this process.
    pub fn is_enforcing(&self, accepted: &LastAccepted) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.synced && c.bundle.state.last_accepted() == *accepted)
    }

    /// Records `bundle` as accepted (`last` being what was recorded before) and syncs it,
    /// then watches it. On an error the previous state stays the one enforced.
    #[tracing::instrument(skip_all, fields(generation = bundle.state.state.generation))]
    pub async fn apply(
        &mut self,
        bundle: VerifiedBundle,
        last: Option<&LastAccepted>,
    ) -> Result<&Enforced, EngineError> {
        self.stop_watch().await;
        let metrics = &self.shared.metrics;
        let applied = match apply_verified(&self.engine, bundle, last).await {
            Ok(applied) => applied,
            Err(error) => {
                metrics.applies_errored.fetch_add(1, Ordering::Relaxed);
                self.ensure_watch().await;
                return Err(error);
            }
        };
        let generation = applied.bundle.state.state.generation;
        metrics.generation.store(generation, Ordering::Relaxed);
        if applied.report.changes.succeeded() {
            metrics.applies_succeeded.fetch_add(1, Ordering::Relaxed);
            metrics
                .last_success
                .store(Timestamp::now().as_second(), Ordering::Relaxed);
        } else {
            metrics.applies_failed.fetch_add(1, Ordering::Relaxed);
        }
        let changes = &applied.report.changes;
        tracing::info!(
            created = changes.count(Action::Created),
            configured = changes.count(Action::Configured),
            unchanged = changes.count(Action::Unchanged),
            deleted = changes.count(Action::Deleted),
            failed = changes.count(Action::Failed),
            "applied"
        );
        self.current = Some(Enforced {
            bundle: applied.bundle,
            sync: applied.report,
            synced: true,
            out_of_sync: BTreeSet::new(),
            healths: AppHealths::new(),
        });
        self.refresh_health().await;
        self.ensure_watch().await;
        Ok(self.current.as_ref().expect("set above"))
    }

    /// Enforces `bundle` by watching alone: no sync, so nothing new is applied and nothing is
    /// pruned (an expired state: DESIGN.md "Freshness"), but drift is still healed.
    #[tracing::instrument(skip_all, fields(generation = bundle.state.state.generation))]
    pub async fn hold(&mut self, mut bundle: VerifiedBundle) -> Result<(), EngineError> {
        self.stop_watch().await;
        for blob in &mut bundle.blobs {
            blob.bytes = Vec::new();
        }
        let objects = self.engine.planned_objects(&bundle).await?;
        self.shared
            .metrics
            .generation
            .store(bundle.state.state.generation, Ordering::Relaxed);
        self.current = Some(Enforced {
            bundle,
            sync: SyncReport {
                objects,
                ..SyncReport::default()
            },
            synced: false,
            out_of_sync: BTreeSet::new(),
            healths: AppHealths::new(),
        });
        self.refresh_health().await;
        self.ensure_watch().await;
        Ok(())
    }

    /// Notes a drift event for the status of its app.
    pub fn note_drift(&mut self, event: &DriftEvent) {
        self.shared
            .metrics
            .drift_events
            .fetch_add(1, Ordering::Relaxed);
        if let Some(current) = &mut self.current
            && !event.healed
        {
            current.out_of_sync.insert(event.app.clone());
        }
    }

    /// Looks at the health of every object of the current state again.
    pub async fn refresh_health(&mut self) {
        let Some(current) = &mut self.current else {
            return;
        };
        match self.engine.kinds().await {
            Ok(kinds) => {
                current.healths = self.engine.health(&kinds, &current.sync.objects).await;
            }
            Err(error) => tracing::warn!(
                error = %flotilla_shared::error_chain::one_line(&error),
                "cannot look at health"
            ),
        }
    }

    /// Starts the drift watch of the current state unless it runs (again, after it ended).
    pub async fn ensure_watch(&mut self) {
        if self
            .watching
            .as_ref()
            .is_some_and(|w| !w.task.is_finished())
        {
            return;
        }
        if let Some(ended) = self.watching.take()
            && let Ok(Err(error)) = ended.task.await
        {
            tracing::warn!(
                error = %flotilla_shared::error_chain::one_line(&error),
                "drift watch ended; restarting it"
            );
        }
        let Some(current) = &self.current else {
            return;
        };
        let watch = match DriftWatch::new(self.client.clone(), &current.bundle, &current.sync).await
        {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(
                    error = %flotilla_shared::error_chain::one_line(&error),
                    "cannot start the drift watch; trying again at the next heartbeat"
                );
                return;
            }
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(watch.run(self.drift.clone(), async {
            let _ = stopped.await;
        }));
        self.watching = Some(Watching { stop, task });
    }

    async fn stop_watch(&mut self) {
        if let Some(watching) = self.watching.take() {
            let _ = watching.stop.send(());
            let _ = watching.task.await;
        }
    }

    /// Stops watching (the replica stops leading or the process ends).
    pub async fn stop(&mut self) {
        self.stop_watch().await;
    }
}

/// An enforcer dropped without `stop` (its leader's work was cut short) takes its watch
/// with it: a replica that no longer leads must not heal.
impl Drop for Enforcer {
    fn drop(&mut self) {
        if let Some(watching) = &self.watching {
            watching.task.abort();
        }
    }
}
