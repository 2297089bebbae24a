//! Publication: turns the plan of each cluster ([`plan`], pure) into signed, stored
//! ClusterStates and wakes the agents waiting for them ([`Watchers`]).
//!
//! The executor is thin and ordered for crash safety: plan (failpoint `after-render`) →
//! store the new blobs, content-addressed and deduplicated across all clusters
//! (`after-blob-write`) → sign each state (`after-sign`) → store it with its blob references
//! and history in one transaction (`mid-transaction` inside) → wake its watchers
//! (`after-commit` before). A crash at any step leaves the previous state served, or the
//! complete new one; blobs written for a state that never committed are unreferenced and
//! collected later.
//!
//! Invariant: one publication runs at a time per `Publisher`, so generations of a cluster are
//! issued in order and garbage collection never races a publication of this hub.
//!
//! It must not render, fetch or read the clock: inputs and `now` come from the caller.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use flotilla_shared::envelope::{Envelope, STATE_PAYLOAD_TYPE};
use flotilla_shared::state::ClusterState;
use flotilla_shared::{Digest, SigningKey};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tracing::{info, instrument, warn};

use crate::failpoint::{self, Failpoints};
use crate::store::{BlobBytes, NewState, Pin, Store, StoreError, StoredState};
use plan::{ClusterInput, Decision, PinnedEntry};

/// Tunables of publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishConfig {
    /// How long a state is valid; it is re-signed after half of it.
    pub lifetime: SignedDuration,
    /// Unreferenced blobs younger than this are not collected (they may belong to a
    /// publication of another hub replica under way).
    pub blob_grace: SignedDuration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            lifetime: plan::DEFAULT_LIFETIME,
            blob_grace: SignedDuration::from_mins(10),
        }
    }
}

/// A publication failed; nothing half-done is served.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("load state of cluster {cluster}: {source}")]
    Load {
        cluster: String,
        #[source]
        source: StoreError,
    },
    #[error("load state of cluster {cluster}: stored envelope is unreadable: {reason}")]
    Unreadable { cluster: String, reason: String },
    #[error("load pins: {0}")]
    Pins(#[source] StoreError),
    #[error("store blobs: {0}")]
    StoreBlobs(#[source] StoreError),
    #[error("store state of cluster {cluster}: {source}")]
    StoreState {
        cluster: String,
        #[source]
        source: StoreError,
    },
    #[error("collect unreferenced blobs: {0}")]
    Collect(#[source] StoreError),
}

/// What happened to one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOutcome {
    pub cluster: String,
    /// The generation now served, if any.
    pub generation: Option<u64>,
    /// True when a new state was stored by this publication.
    pub published: bool,
    pub problems: Vec<crate::store::Problem>,
}

/// The result of one publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub clusters: Vec<ClusterOutcome>,
    /// Distinct blobs written (after deduplication across clusters).
    pub blobs_written: usize,
    pub blobs_collected: u64,
}

/// Per-cluster wake-ups for long-polling agents: the value is the newest generation stored
/// by this process (0 before the first).
#[derive(Debug, Default)]
pub struct Watchers {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    /// A receiver that changes whenever a new state of `cluster` is stored.
    pub fn subscribe(&self, cluster: &str) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders
            .entry(cluster.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify(&self, cluster: &str, generation: u64) {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders
            .entry(cluster.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .send_replace(generation);
    }
}

/// Signs and stores cluster states.
pub struct Publisher<S> {
    store: S,
    key: SigningKey,
    config: PublishConfig,
    failpoints: Failpoints,
    watchers: Watchers,
    running: tokio::sync::Mutex<()>,
}

impl<S> std::fmt::Debug for Publisher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("key", &self.key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Reads the state inside a stored envelope (written by this hub, so trusted).
pub fn stored_payload(stored: &StoredState) -> Result<ClusterState, PublishError> {
    let unreadable = |reason: String| PublishError::Unreadable {
        cluster: stored.cluster.clone(),
        reason,
    };
    let envelope = Envelope::from_json(&stored.envelope).map_err(|e| unreadable(e.to_string()))?;
    let payload = envelope
        .payload_bytes()
        .map_err(|e| unreadable(e.to_string()))?;
    ClusterState::from_payload(&payload)
        .map(|parsed| parsed.state)
        .map_err(|e| unreadable(e.to_string()))
}

impl<S: Store> Publisher<S> {
    pub fn new(store: S, key: SigningKey, config: PublishConfig, failpoints: Failpoints) -> Self {
        Self {
            store,
            key,
            config,
            failpoints,
            watchers: Watchers::default(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The wake-ups of the agent API.
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// Resolves the pins of `clusters` against history: per cluster, app → pinned entry.
    async fn resolve_pins(
        &self,
        clusters: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, PinnedEntry>>, PublishError> {
        let pins = self.store.pins().await.map_err(PublishError::Pins)?;
        let mut out: BTreeMap<String, BTreeMap<String, PinnedEntry>> = BTreeMap::new();
        for cluster in clusters {
            // A per-cluster pin wins over an all-cluster pin of the same app.
            let mut effective: BTreeMap<&str, &Pin> = BTreeMap::new();
            for pin in pins.iter().filter(|p| p.cluster.is_none()) {
                effective.insert(&pin.app, pin);
            }
            for pin in pins
                .iter()
                .filter(|p| p.cluster.as_deref() == Some(cluster))
            {
                effective.insert(&pin.app, pin);
            }
            let resolved = out.entry((*cluster).to_owned()).or_default();
            for (app, pin) in effective {
                let entry = self
                    .store
                    .history_entry(app, cluster, &pin.revision)
                    .await
                    .map_err(PublishError::Pins)?;
                resolved.insert(
                    app.to_owned(),
                    match entry {
                        Some(entry) => PinnedEntry::Found(Box::new(entry.entry)),
                        None => PinnedEntry::Missing {
                            revision: pin.revision.clone(),
                        },
                    },
                );
            }
        }
        Ok(out)
    }

    /// Publishes the given clusters: plans each, stores new blobs once, signs and stores
    /// each changed state, wakes its watchers, records problems, then collects blobs no
    /// state or history names. `inputs[..].pins` are filled in from the store's pins.
    #[instrument(skip_all, fields(clusters = inputs.len(), who))]
    pub async fn publish(
        &self,
        mut inputs: Vec<ClusterInput>,
        who: &str,
        now: Timestamp,
    ) -> Result<PublishReport, PublishError> {
        let _running = self.running.lock().await;
        let names: Vec<String> = inputs.iter().map(|i| i.cluster.clone()).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut pins = self.resolve_pins(&name_refs).await?;
        let mut plans = Vec::with_capacity(inputs.len());
        for input in &mut inputs {
            input.pins = pins.remove(&input.cluster).unwrap_or_default();
            let previous = self
                .store
                .latest_state(&input.cluster)
                .await
                .map_err(|source| PublishError::Load {
                    cluster: input.cluster.clone(),
                    source,
                })?;
            let previous = previous.as_ref().map(stored_payload).transpose()?;
            plans.push(plan::plan_cluster(
                input,
                previous.as_ref(),
                now,
                self.config.lifetime,
            ));
        }
        self.failpoints.hit(failpoint::AFTER_RENDER);

        let mut blobs: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
        for plan in &mut plans {
            if let Decision::Publish { blobs: new, .. } = &mut plan.decision {
                for blob in new.drain(..) {
                    blobs.entry(blob.digest).or_insert(blob.bytes);
                }
            }
        }
        let blobs: Vec<BlobBytes> = blobs
            .into_iter()
            .map(|(digest, bytes)| BlobBytes { digest, bytes })
            .collect();
        if !blobs.is_empty() {
            self.store
                .put_blobs(&blobs, now)
                .await
                .map_err(PublishError::StoreBlobs)?;
        }
        self.failpoints.hit(failpoint::AFTER_BLOB_WRITE);

        let mut report = PublishReport {
            blobs_written: blobs.len(),
            ..PublishReport::default()
        };
        for plan in plans {
            let mut outcome = ClusterOutcome {
                cluster: plan.cluster.clone(),
                generation: None,
                published: false,
                problems: plan.problems.clone(),
            };
            match plan.decision {
                Decision::Publish {
                    state,
                    deployed,
                    resigned,
                    ..
                } => {
                    let stored = self.commit(*state, deployed, who).await?;
                    info!(
                        cluster = %plan.cluster,
                        generation = stored,
                        resigned,
                        "published cluster state"
                    );
                    outcome.generation = Some(stored);
                    outcome.published = true;
                }
                Decision::Unchanged => {}
                Decision::NothingToPublish => {
                    warn!(cluster = %plan.cluster, "no app has content to publish");
                }
            }
            if !plan.problems.is_empty() {
                for problem in &plan.problems {
                    warn!(cluster = %plan.cluster, app = %problem.app, kept = problem.kept,
                        error = %problem.message, "app not published as configured");
                }
            }
            self.store
                .set_problems(&plan.cluster, &plan.problems, now)
                .await
                .map_err(|source| PublishError::StoreState {
                    cluster: plan.cluster.clone(),
                    source,
                })?;
            report.clusters.push(outcome);
        }
        report.blobs_collected = self
            .store
            .collect_garbage(now - self.config.blob_grace)
            .await
            .map_err(PublishError::Collect)?;
        Ok(report)
    }

    /// Re-signs every stored state due at `now` (half its lifetime passed) with a new
    /// generation and the same content; returns the clusters re-signed.
    #[instrument(skip_all)]
    pub async fn resign_due(&self, now: Timestamp) -> Result<Vec<String>, PublishError> {
        let _running = self.running.lock().await;
        let states = self
            .store
            .latest_states()
            .await
            .map_err(|source| PublishError::Load {
                cluster: "*".to_owned(),
                source,
            })?;
        let mut resigned = Vec::new();
        for stored in states {
            if !plan::resign_due(stored.issued_at, now, self.config.lifetime) {
                continue;
            }
            let mut state = stored_payload(&stored)?;
            state.generation = plan::next_generation(Some(state.generation), now);
            state.issued_at = now;
            state.expires_at = now + self.config.lifetime;
            self.commit(state, Vec::new(), "hub:re-sign").await?;
            resigned.push(stored.cluster);
        }
        Ok(resigned)
    }

    /// Signs and stores one state, then wakes its watchers; returns its generation.
    async fn commit(
        &self,
        state: ClusterState,
        deployed: Vec<flotilla_shared::state::App>,
        who: &str,
    ) -> Result<u64, PublishError> {
        let payload = state.to_payload();
        let envelope = Envelope::sign(STATE_PAYLOAD_TYPE, &payload, &self.key).to_json();
        self.failpoints.hit(failpoint::AFTER_SIGN);
        let new = NewState {
            state: StoredState {
                cluster: state.cluster.clone(),
                generation: state.generation,
                envelope,
                payload_digest: Digest::of(&payload),
                issued_at: state.issued_at,
                expires_at: state.expires_at,
                published_by: who.to_owned(),
            },
            blobs: state
                .apps
                .iter()
                .map(|app| (app.name.clone(), app.blob.digest))
                .collect(),
            deployed,
        };
        self.store
            .commit_state(&new)
            .await
            .map_err(|source| PublishError::StoreState {
                cluster: state.cluster.clone(),
                source,
            })?;
        self.failpoints.hit(failpoint::AFTER_COMMIT);
        self.watchers.notify(&state.cluster, state.generation);
        Ok(state.generation)
    }
}
