//! The hub's reconcile rounds, as `serve` runs them: fetch the repositories a trigger names,
//! load the declared configuration and the registered clusters, reconcile, record each
//! ApplicationSet's generation, publish. Rounds are started by [`Trigger`]s — at start, on
//! the poll timer, on a verified webhook, after an API change — and run one at a time in one
//! task; triggers that arrive during a round are merged into the next one.
//!
//! Talks to Git (through `git::Fetcher`, on blocking threads) and the store. It decides
//! nothing itself: what each cluster gets is `reconcile`'s, what is signed is `publish`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument as _, info, info_span, warn};

use crate::config_repo::{self, ConfigSource, ConfigStatus};
use crate::git::{Credentials, Fetcher};
use crate::manifest_files::ManifestLimits;
use crate::publish::Publisher;
use crate::reconcile::{
    ClusterTarget, DeclaredConfig, ReconcileError, ReconcileRequest, Reconciler, SyncRequests,
};
use crate::store::{SqliteStore, Store as _, StoreError};

/// Which repositories a round fetches before it reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// Only repositories never fetched yet (an API change may name a new one).
    Missing,
    /// Every known repository (start, poll timer, refresh).
    All,
    /// These repositories (a webhook push), plus any never fetched.
    Repos(BTreeSet<String>),
}

/// A request for a round.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Rises with every trigger: a round reports the highest it consumed.
    pub seq: u64,
    pub fetch: Fetch,
    /// Why, for the logs: `start`, `poll`, `webhook`, `api`.
    pub reason: &'static str,
}

/// Everything a round needs, shared with the API.
pub struct Hub {
    pub publisher: Publisher<SqliteStore>,
    pub reconciler: Reconciler,
    pub fetcher: Fetcher,
    /// What the configuration repository last did, when there is one.
    config: RwLock<ConfigStatus>,
    /// Why the last fetch of a repository failed, by URL (cleared by a good fetch).
    fetch_errors: RwLock<BTreeMap<String, String>>,
    triggers: mpsc::UnboundedSender<Trigger>,
    /// Rounds completed since start: the API can wait for the effect of a change.
    rounds: watch::Sender<u64>,
    /// Counts changes people look at (a round, an agent's report, a registration): the
    /// dashboard's live updates follow it.
    changes: watch::Sender<u64>,
    /// Apps a sync was asked for since the last round began: they render even with automated
    /// sync off.
    sync_requests: std::sync::Mutex<BTreeSet<String>>,
    /// Decoded served states for the fleet views.
    fleet: crate::fleet::FleetCache,
    /// The last trigger's sequence number.
    trigger_seq: std::sync::atomic::AtomicU64,
    /// The highest trigger sequence number a finished round consumed.
    done: watch::Sender<u64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// The hub and the receiving end of its triggers, for [`run`].
    pub fn new(
        publisher: Publisher<SqliteStore>,
        reconciler: Reconciler,
        fetcher: Fetcher,
        config_source: Option<ConfigSource>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Trigger>) {
        let (triggers, receiver) = mpsc::unbounded_channel();
        let hub = Self {
            publisher,
            reconciler,
            fetcher,
            config: RwLock::new(ConfigStatus {
                source: config_source,
                ..ConfigStatus::default()
            }),
            fetch_errors: RwLock::default(),
            triggers,
            rounds: watch::channel(0).0,
            changes: watch::channel(0).0,
            sync_requests: std::sync::Mutex::default(),
            fleet: crate::fleet::FleetCache::default(),
            trigger_seq: std::sync::atomic::AtomicU64::new(0),
            done: watch::channel(0).0,
        };
        (Arc::new(hub), receiver)
    }

    pub fn store(&self) -> &SqliteStore {
        self.publisher.store()
    }

    /// Asks for a round; never blocks. Returns the trigger's sequence number, for
    /// [`Hub::round_done`].
    pub fn trigger(&self, fetch: Fetch, reason: &'static str) -> u64 {
        let seq = self
            .trigger_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        // The receiver only goes away at shutdown, when nothing needs a round any more.
        let _ignored = self.triggers.send(Trigger { seq, fetch, reason });
        seq
    }

    /// Waits until a round that consumed trigger `seq` has finished, at most `limit`;
    /// whether it did.
    pub async fn round_done(&self, seq: u64, limit: Duration) -> bool {
        let mut done = self.done.subscribe();
        tokio::time::timeout(limit, done.wait_for(|d| *d >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A receiver of the count of completed rounds.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// What the fleet views keep between loads.
    pub fn fleet_cache(&self) -> &crate::fleet::FleetCache {
        &self.fleet
    }

    /// Asks the next round to render `app` even when its automated sync is off.
    pub fn request_sync(&self, app: &str) {
        self.sync_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.to_owned());
    }

    /// The sync requests so far, cleared.
    fn take_sync_requests(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.sync_requests.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Notes that something the fleet views show has changed.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A receiver of the count of changes (see [`Hub::changed`]).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// What the configuration repository last did.
    pub fn config_status(&self) -> ConfigStatus {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn config_source(&self) -> Option<ConfigSource> {
        self.config_status().source
    }

    /// Every repository URL the hub knows: the configuration repository, registered ones,
    /// and every literal `repoURL` of the declared Applications and ApplicationSets
    /// (templated ones are resolved only when generated, and fetched through the repository
    /// they name literally elsewhere).
    pub async fn known_repositories(&self) -> Result<BTreeSet<String>, StoreError> {
        Ok(self.repository_intervals().await?.into_keys().collect())
    }

    /// Every known repository with its own poll interval (`None`: the hub's default).
    pub async fn repository_intervals(
        &self,
    ) -> Result<BTreeMap<String, Option<Duration>>, StoreError> {
        let store = self.store();
        let mut literal = BTreeSet::new();
        if let Some(source) = self.config_source() {
            literal.insert(source.url);
        }
        for app in store.applications().await? {
            collect_repo_urls(&app.spec, &mut literal);
        }
        for set in store.app_sets().await? {
            collect_repo_urls(&set.spec, &mut literal);
        }
        let mut urls: BTreeMap<String, Option<Duration>> =
            literal.into_iter().map(|url| (url, None)).collect();
        for repo in store.repositories().await? {
            urls.insert(repo.url, repo.poll_interval);
        }
        Ok(urls)
    }
}

/// Adds every literal `repoURL` string under `value`.
fn collect_repo_urls(value: &Value, urls: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("repoURL", Value::String(url)) if !url.contains("{{") && !url.is_empty() => {
                        urls.insert(url.clone());
                    }
                    _ => collect_repo_urls(value, urls),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_repo_urls(v, urls)),
        _ => {}
    }
}

/// A round failed before publication; the next trigger tries again.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("list repositories: {0}")]
    Repositories(#[source] StoreError),
    #[error("load clusters: {0}")]
    Clusters(#[source] StoreError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("publish: {0}")]
    Publish(#[from] crate::publish::PublishError),
}

/// Runs rounds until `triggers` closes or `shutdown` fires; a round under way finishes.
pub async fn run(
    hub: Arc<Hub>,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            trigger = triggers.recv() => match trigger {
                Some(trigger) => trigger,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let mut fetch = first.fetch;
        let mut seq = first.seq;
        let mut reasons = BTreeSet::from([first.reason]);
        while let Ok(more) = triggers.try_recv() {
            reasons.insert(more.reason);
            seq = seq.max(more.seq);
            fetch = merge(fetch, more.fetch);
        }
        let reasons = reasons.into_iter().collect::<Vec<_>>().join(",");
        let span = info_span!("round", reasons = %reasons);
        match round(&hub, &fetch).instrument(span.clone()).await {
            Ok(()) => {}
            Err(error) => span.in_scope(|| warn!(%error, "round failed")),
        }
        hub.rounds.send_modify(|n| *n += 1);
        hub.done.send_modify(|d| *d = (*d).max(seq));
        hub.changed();
    }
}

fn merge(a: Fetch, b: Fetch) -> Fetch {
    match (a, b) {
        (Fetch::All, _) | (_, Fetch::All) => Fetch::All,
        (Fetch::Repos(mut x), Fetch::Repos(y)) => {
            x.extend(y);
            Fetch::Repos(x)
        }
        (Fetch::Repos(x), Fetch::Missing) | (Fetch::Missing, Fetch::Repos(x)) => Fetch::Repos(x),
        (Fetch::Missing, Fetch::Missing) => Fetch::Missing,
    }
}

/// One round: fetch, reconcile, record, publish.
pub async fn round(hub: &Hub, fetch: &Fetch) -> Result<(), RoundError> {
    let known = hub
        .known_repositories()
        .await
        .map_err(RoundError::Repositories)?;
    let wanted: Vec<String> = known
        .into_iter()
        .filter(|url| match fetch {
            Fetch::All => true,
            Fetch::Repos(repos) => repos.contains(url) || hub.fetcher.cached(url).is_err(),
            Fetch::Missing => hub.fetcher.cached(url).is_err(),
        })
        .collect();
    fetch_all(hub, wanted).await;
    sync_config(hub).await;

    let store = hub.store();
    let config = DeclaredConfig::load(store).await?;
    let clusters: Vec<ClusterTarget> = store
        .clusters()
        .await
        .map_err(RoundError::Clusters)?
        .iter()
        .map(ClusterTarget::from)
        .collect();
    let served: BTreeSet<String> = store
        .latest_states()
        .await
        .map_err(RoundError::Clusters)?
        .into_iter()
        .map(|s| s.cluster)
        .collect();
    let pins = store.pins().await.map_err(RoundError::Clusters)?;
    let sync = hub.take_sync_requests();
    if !sync.is_empty() {
        info!(apps = ?sync, "sync asked for");
    }
    let sync = SyncRequests::Apps(sync);
    let reconciliation = hub
        .reconciler
        .reconcile(&ReconcileRequest {
            config: &config,
            clusters: &clusters,
            served: &served,
            sync: &sync,
            pins: &pins,
        })
        .await;
    let now = Timestamp::now();
    reconciliation.record(store, now).await?;
    let report = hub
        .publisher
        .publish(reconciliation.inputs, "hub", now)
        .await?;
    info!(
        clusters = report.clusters.len(),
        published = report.clusters.iter().filter(|c| c.published).count(),
        blobs_written = report.blobs_written,
        blobs_collected = report.blobs_collected,
        "round done"
    );
    Ok(())
}

/// Fetches each repository on a blocking thread; a failure is logged and the round goes on
/// with what the cache holds (the trust model's "keep the last good content").
async fn fetch_all(hub: &Hub, urls: Vec<String>) {
    for url in urls {
        let credentials = match hub.store().repository_credentials(&url).await {
            Ok(None) => Credentials::None,
            Ok(Some(sealed)) => match Credentials::from_json(sealed.expose()) {
                Ok(credentials) => credentials,
                Err(error) => {
                    warn!(url = %crate::git::redact_url(&url), %error, "stored credentials are unreadable; not fetched");
                    continue;
                }
            },
            Err(error) => {
                warn!(url = %crate::git::redact_url(&url), %error, "read repository credentials; not fetched");
                continue;
            }
        };
        let fetcher = hub.fetcher.clone();
        let shown = crate::git::redact_url(&url);
        let url_key = url.clone();
        let result =
            tokio::task::spawn_blocking(move || fetcher.fetch(&url, &credentials).map(|_| ()))
                .await;
        let failure = match result {
            Ok(Ok(())) => {
                info!(url = %shown, "fetched");
                None
            }
            Ok(Err(error)) => {
                warn!(url = %shown, %error, "fetch failed");
                Some(error.to_string())
            }
            Err(error) => {
                warn!(url = %shown, %error, "fetch task failed");
                Some(error.to_string())
            }
        };
        hub.note_fetch(&url_key, failure);
    }
}

/// Applies the configuration repository's documents when its commit changed since the last
/// time they applied (or failed). A failure is kept in the status; the store keeps the last
/// configuration that applied.
async fn sync_config(hub: &Hub) {
    let Some(source) = hub.config_source() else {
        return;
    };
    let shown = crate::git::redact_url(&source.url);
    let url = source.url.clone();
    let status = hub.config_status();
    let done = [status.applied_commit, status.failed_commit];
    let fetcher = hub.fetcher.clone();
    // Resolve and read on a blocking thread: `None` when the commit was already handled.
    let read = tokio::task::spawn_blocking(move || {
        let repo = fetcher
            .cached(&source.url)
            .map_err(|e| (None, e.to_string()))?;
        let commit = repo
            .resolve(&source.revision)
            .map_err(|e| (None, e.to_string()))?;
        let hex = commit.to_string();
        if done.iter().flatten().any(|c| *c == hex) {
            return Ok(None);
        }
        config_repo::read(&repo, commit, &source.path, &ManifestLimits::default())
            .map(|documents| Some((hex.clone(), documents)))
            .map_err(|e| (Some(hex), e.to_string()))
    })
    .await;
    let (commit_hex, documents) = match read {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) => return,
        Ok(Err((commit, error))) => {
            // An unreadable cache is most often a failed fetch: say that first.
            let error = match (&commit, hub.fetch_error(&url)) {
                (None, Some(fetch)) => format!("fetch {shown}: {fetch}"),
                _ => error,
            };
            warn!(url = %shown, commit = commit.as_deref().unwrap_or("-"), %error, "configuration not applied");
            hub.config_failed(commit, error);
            return;
        }
        Err(error) => {
            warn!(url = %shown, %error, "configuration read task failed");
            return;
        }
    };
    let now = Timestamp::now();
    match config_repo::apply(hub.store(), &documents, now).await {
        Ok(applied) => {
            for warning in &applied.warnings {
                warn!(url = %shown, commit = %commit_hex, %warning, "configuration warning");
            }
            info!(
                url = %shown,
                commit = %commit_hex,
                stored = applied.stored.len(),
                deleted = applied.deleted.len(),
                warnings = applied.warnings.len(),
                "configuration applied"
            );
            let audit = crate::store::AuditEntry {
                at: now,
                who: "config-repository".to_owned(),
                action: "apply configuration".to_owned(),
                subject: format!("commit {commit_hex}"),
                detail: serde_json::json!({"stored": applied.stored, "deleted": applied.deleted}),
                source: shown.clone(),
                address: String::new(),
            };
            if let Err(error) = hub.store().record_audit(&audit).await {
                warn!(%error, "record audit");
            }
            let mut status = hub.config.write().unwrap_or_else(|e| e.into_inner());
            status.applied_commit = Some(commit_hex);
            status.applied_at = Some(now);
            status.documents = applied.stored;
            status.warnings = applied.warnings;
            status.error = None;
            status.failed_commit = None;
        }
        Err(error) => {
            warn!(url = %shown, commit = %commit_hex, %error, "configuration not applied");
            // A store failure may pass: the next round tries the same commit again.
            hub.config_failed(None, error.to_string());
        }
    }
}

impl Hub {
    fn note_fetch(&self, url: &str, failure: Option<String>) {
        let mut errors = self.fetch_errors.write().unwrap_or_else(|e| e.into_inner());
        match failure {
            Some(error) => errors.insert(url.to_owned(), error),
            None => errors.remove(url),
        };
    }

    /// Why the last fetch of `url` failed, if it did.
    pub fn fetch_error(&self, url: &str) -> Option<String> {
        self.fetch_errors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned()
    }

    /// Records why the configuration did not apply; `commit` when that commit is at fault
    /// (it is not tried again until the repository moves).
    fn config_failed(&self, commit: Option<String>, error: String) {
        let mut status = self.config.write().unwrap_or_else(|e| e.into_inner());
        status.error = Some(error);
        status.failed_commit = commit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_are_collected_literally() {
        let spec = serde_json::json!({
            "spec": {
                "generators": [{"git": {"repoURL": "https://a.example/x.git"}}],
                "template": {"spec": {"source": {"repoURL": "{{url}}"}}},
                "sources": [{"repoURL": "https://b.example/y.git"}, {"repoURL": ""}]
            }
        });
        let mut urls = BTreeSet::new();
        collect_repo_urls(&spec, &mut urls);
        assert_eq!(
            urls.into_iter().collect::<Vec<_>>(),
            ["https://a.example/x.git", "https://b.example/y.git"]
        );
    }

    #[test]
    fn triggers_merge_to_the_widest_fetch() {
        let repos = |r: &[&str]| Fetch::Repos(r.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(merge(Fetch::Missing, Fetch::All), Fetch::All);
        assert_eq!(merge(repos(&["a"]), repos(&["b"])), repos(&["a", "b"]));
        assert_eq!(merge(Fetch::Missing, repos(&["a"])), repos(&["a"]));
        assert_eq!(merge(Fetch::Missing, Fetch::Missing), Fetch::Missing);
    }
}
