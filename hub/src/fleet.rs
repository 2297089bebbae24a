//! The fleet as people look at it: every cluster, every application and every (application,
//! cluster) pair with its sync, health, revision and — when it is not synced and healthy —
//! one plain sentence saying why. The human API and the dashboard both read it from here.
//!
//! Maps are `foldhash` hash maps: a view of 100,000 cells hashes names a million times.
//!
//! [`Fleet::load`] reads the store (a handful of queries, whatever the fleet's size);
//! [`why`], [`Selector`] and [`Filter`] are pure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::publish::stored_payload;
use crate::store::{AppStatus, ClusterRecord, Pin, Problem, StoreError};

/// A hash map with a fast, non-cryptographic hasher (the keys are names the hub stores).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A cluster as the fleet views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `Online`, `Offline`, `Registered`, `Pending`, `Unregistered` or `Revoked`.
    pub status: &'static str,
    pub last_seen: Option<Timestamp>,
    pub agent_version: Option<String>,
    pub kube_version: Option<String>,
    pub server: Option<String>,
    /// Why its agent was last refused, or refused a state.
    pub last_error: Option<String>,
    /// The generation of the state it is served.
    pub generation: Option<u64>,
}

/// An application as the fleet views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppView {
    pub name: String,
    pub project: String,
    /// `api`, `config` or `generated`.
    pub origin: &'static str,
    /// The ApplicationSet that generated it.
    pub generated_by: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A column of the fleet matrix: an ApplicationSet (its generated applications, one per
/// cluster it targets) or an application of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `ApplicationSet` or `Application`.
    pub kind: &'static str,
    pub project: String,
    /// The applications it stands for, by name.
    pub apps: Vec<String>,
}

/// One application on one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub app: String,
    pub cluster: String,
    /// The generation of the state that carries it.
    pub generation: u64,
    /// The revision the hub serves.
    pub revision: String,
    pub blob: String,
    /// `Synced`, `OutOfSync`, `Failed`, `Orphaned` or `Unknown` (no report yet).
    pub sync: String,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub health: String,
    /// The agent's own message.
    pub message: String,
    /// Why it is not synced and healthy, in one sentence; `None` when it is.
    pub why: Option<String>,
    /// The revision it is pinned to, and by whom.
    pub pinned: Option<(String, String)>,
}

impl Cell {
    /// Synced and healthy: nothing to look at.
    pub fn is_fine(&self) -> bool {
        self.sync == "Synced" && self.health == "Healthy"
    }
}

/// Totals over a set of cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub cells: usize,
    pub synced: usize,
    pub out_of_sync: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub progressing: usize,
    pub unknown: usize,
}

impl Counts {
    pub fn of<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> Self {
        let mut counts = Self::default();
        for cell in cells {
            counts.cells += 1;
            match cell.sync.as_str() {
                "Synced" => counts.synced += 1,
                "Unknown" => counts.unknown += 1,
                _ => counts.out_of_sync += 1,
            }
            match cell.health.as_str() {
                "Healthy" => counts.healthy += 1,
                "Progressing" => counts.progressing += 1,
                "Degraded" | "Missing" => counts.degraded += 1,
                _ => {}
            }
        }
        counts
    }
}

/// Everything the fleet views show, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// By name.
    pub clusters: Vec<ClusterView>,
    /// By name: declared applications, then generated ones.
    pub apps: Vec<AppView>,
    /// The matrix's columns, by name.
    pub columns: Vec<Column>,
    /// app → cluster → cell.
    cells: HashMap<String, HashMap<String, Cell>>,
    /// column → cluster → the application of the column on the cluster.
    column_cells: HashMap<String, HashMap<String, String>>,
    /// cluster → the applications it is served.
    by_cluster: HashMap<String, Vec<String>>,
}

impl Fleet {
    /// Reads the fleet from the hub's store, with the hub's cache of decoded states.
    /// `offline_after`: how long a silent agent is still online.
    pub async fn load(
        hub: &crate::rounds::Hub,
        offline_after: Duration,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        Self::load_from(hub.store(), hub.fleet_cache(), offline_after, now).await
    }

    /// [`Fleet::load`] from any store: a handful of queries, and only the states that
    /// changed since `cache` last saw them are read and decoded.
    pub async fn load_from(
        store: &impl crate::store::Store,
        cache: &FleetCache,
        offline_after: Duration,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let records = store.clusters().await?;
        let states = cache.served.refresh(store).await?;
        let reports = cache.statuses.refresh(store, &records).await?;
        let problems: HashMap<(String, String), Problem> = store
            .all_problems()
            .await?
            .into_iter()
            .map(|(cluster, problem)| ((problem.app.clone(), cluster), problem))
            .collect();
        let pins = store.pins().await?;
        let declared = store.applications().await?;
        let sets = store.app_sets().await?;

        let generations: HashMap<&str, u64> = states
            .iter()
            .map(|s| (s.cluster.as_str(), s.generation))
            .collect();
        let clusters: Vec<ClusterView> = records
            .iter()
            .map(|c| {
                ClusterView::new(
                    c,
                    generations.get(c.name.as_str()).copied(),
                    now,
                    offline_after,
                )
            })
            .collect();
        let cluster_index: HashMap<&str, &ClusterView> =
            clusters.iter().map(|c| (c.name.as_str(), c)).collect();

        let mut fleet = Fleet::default();
        for stored in &states {
            let Some(cluster) = cluster_index.get(stored.cluster.as_str()) else {
                continue;
            };
            for app in stored.apps.iter() {
                let report = reports.get(&stored.cluster).and_then(|of_cluster| {
                    of_cluster
                        .binary_search_by(|r| r.app.as_str().cmp(&app.name))
                        .ok()
                        .map(|i| &of_cluster[i])
                });
                let pin = pin_for(&pins, &app.name, &stored.cluster);
                let (sync, health, message) = match report {
                    None => ("Unknown".to_owned(), "Unknown".to_owned(), String::new()),
                    Some(r) if r.revision.as_deref() != Some(app.revision.as_str()) => {
                        ("OutOfSync".to_owned(), r.health.clone(), r.message.clone())
                    }
                    Some(r) => (r.sync.clone(), r.health.clone(), r.message.clone()),
                };
                let why = why(&Situation {
                    cluster,
                    served_revision: &app.revision,
                    report,
                    // Problems are rare: no key is built for the common case.
                    problem: if problems.is_empty() {
                        None
                    } else {
                        problems.get(&(app.name.clone(), stored.cluster.clone()))
                    },
                    pin,
                });
                fleet.insert(Cell {
                    app: app.name.clone(),
                    cluster: stored.cluster.clone(),
                    generation: stored.generation,
                    revision: app.revision.clone(),
                    blob: app.blob.clone(),
                    sync,
                    health,
                    message,
                    why,
                    pinned: pin.map(|p| (p.revision.clone(), p.pinned_by.clone())),
                });
            }
        }
        // An application that failed to render for a cluster before it was ever served
        // there has no entry in the state, only a problem.
        for ((app, cluster), problem) in &problems {
            if fleet.cell(app, cluster).is_some() || problem.kept {
                continue;
            }
            let Some(view) = cluster_index.get(cluster.as_str()) else {
                continue;
            };
            fleet.insert(Cell {
                app: app.clone(),
                cluster: cluster.clone(),
                generation: view.generation.unwrap_or(0),
                revision: String::new(),
                blob: String::new(),
                sync: "OutOfSync".to_owned(),
                health: "Missing".to_owned(),
                message: String::new(),
                why: Some(format!("cannot be published: {}", problem.message)),
                pinned: None,
            });
        }

        let mut generated_by: HashMap<&str, &str> = HashMap::default();
        for set in &sets {
            for name in &set.generated {
                generated_by.insert(name.as_str(), set.name.as_str());
            }
        }
        let mut apps: Vec<AppView> = declared
            .iter()
            .map(|a| AppView {
                name: a.name.clone(),
                project: a.project.clone(),
                origin: a.origin.as_str(),
                generated_by: None,
                labels: labels_of(&a.spec),
            })
            .collect();
        let declared_names: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            declared.iter().map(|a| a.name.as_str()).collect();
        let set_projects: HashMap<&str, &str> = sets
            .iter()
            .map(|s| {
                let project = s
                    .spec
                    .pointer("/spec/template/spec/project")
                    .and_then(|p| p.as_str())
                    .unwrap_or("default");
                (s.name.as_str(), project)
            })
            .collect();
        for name in fleet.cells.keys() {
            if declared_names.contains(name.as_str()) {
                continue;
            }
            let set = generated_by.get(name.as_str()).copied();
            apps.push(AppView {
                name: name.clone(),
                project: set
                    .and_then(|s| set_projects.get(s).copied())
                    .unwrap_or("default")
                    .to_owned(),
                origin: "generated",
                generated_by: set.map(str::to_owned),
                labels: BTreeMap::new(),
            });
        }
        fleet.finish(clusters, apps);
        Ok(fleet)
    }

    /// Sorts, and derives the matrix's columns.
    fn finish(&mut self, mut clusters: Vec<ClusterView>, mut apps: Vec<AppView>) {
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let fleet = self;
        let mut columns: BTreeMap<String, Column> = BTreeMap::new();
        for app in &apps {
            let (name, kind) = match &app.generated_by {
                Some(set) => (set.clone(), "ApplicationSet"),
                None => (app.name.clone(), "Application"),
            };
            let column = columns.entry(name.clone()).or_insert_with(|| Column {
                name,
                kind,
                project: app.project.clone(),
                apps: Vec::new(),
            });
            column.apps.push(app.name.clone());
        }
        for column in columns.values() {
            let mut of_column: HashMap<String, String> = HashMap::default();
            for app in &column.apps {
                for cluster in fleet.cells.get(app).into_iter().flat_map(HashMap::keys) {
                    of_column
                        .entry(cluster.clone())
                        .or_insert_with(|| app.clone());
                }
            }
            fleet.column_cells.insert(column.name.clone(), of_column);
        }
        fleet.columns = columns.into_values().collect();
        fleet.apps = apps;
        fleet.clusters = clusters;
    }

    /// The fleet as someone who sees only the projects `keep` accepts sees it: every cluster,
    /// the applications (and their cells and columns) of those projects alone.
    pub fn only_projects(self, keep: impl Fn(&str) -> bool) -> Fleet {
        let Fleet {
            clusters,
            apps,
            mut cells,
            ..
        } = self;
        let apps: Vec<AppView> = apps.into_iter().filter(|a| keep(&a.project)).collect();
        let kept: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            apps.iter().map(|a| a.name.as_str()).collect();
        cells.retain(|app, _| kept.contains(app.as_str()));
        let mut fleet = Fleet::default();
        let mut all: Vec<Cell> = cells.into_values().flat_map(HashMap::into_values).collect();
        all.sort_by(|a, b| (&a.cluster, &a.app).cmp(&(&b.cluster, &b.app)));
        for cell in all {
            fleet.insert(cell);
        }
        fleet.finish(clusters, apps);
        fleet
    }

    /// The cell of a matrix column on a cluster.
    pub fn column_cell(&self, column: &str, cluster: &str) -> Option<&Cell> {
        let app = self.column_cells.get(column)?.get(cluster)?;
        self.cell(app, cluster)
    }

    /// A fleet from its parts, as [`Fleet::load`] assembles it (for tests and benchmarks of
    /// the views). Columns follow the applications' `generated_by`.
    pub fn from_parts(clusters: Vec<ClusterView>, apps: Vec<AppView>, cells: Vec<Cell>) -> Self {
        let mut fleet = Fleet::default();
        for cell in cells {
            fleet.insert(cell);
        }
        fleet.finish(clusters, apps);
        fleet
    }

    fn insert(&mut self, cell: Cell) {
        let by_cluster = self.by_cluster.entry(cell.cluster.clone()).or_default();
        let of_app = self.cells.entry(cell.app.clone()).or_default();
        if !of_app.contains_key(&cell.cluster) {
            by_cluster.push(cell.app.clone());
        }
        of_app.insert(cell.cluster.clone(), cell);
    }

    /// The application on the cluster, when the cluster is served it.
    pub fn cell(&self, app: &str, cluster: &str) -> Option<&Cell> {
        self.cells.get(app)?.get(cluster)
    }

    /// Every cluster the application is served to, by cluster name.
    pub fn cells_of_app<'a>(&'a self, app: &str) -> impl Iterator<Item = &'a Cell> + 'a {
        let mut cells: Vec<&Cell> = self
            .cells
            .get(app)
            .map(|of_app| of_app.values().collect())
            .unwrap_or_default();
        cells.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        cells.into_iter()
    }

    /// Every application served to the cluster, by application name.
    pub fn cells_of_cluster<'a>(&'a self, cluster: &str) -> impl Iterator<Item = &'a Cell> + 'a {
        let mut cells: Vec<&Cell> = self
            .by_cluster
            .get(cluster)
            .into_iter()
            .flatten()
            .filter_map(|app| self.cell(app, cluster))
            .collect();
        cells.sort_by(|a, b| a.app.cmp(&b.app));
        cells.into_iter()
    }

    /// Every cell.
    pub fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells.values().flat_map(HashMap::values)
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterView> {
        self.clusters
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.clusters[i])
    }

    pub fn app(&self, name: &str) -> Option<&AppView> {
        self.apps
            .binary_search_by(|a| a.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.apps[i])
    }

    /// The clusters and matrix columns `filter` keeps, in name order.
    pub fn select(&self, filter: &Filter) -> (Vec<&ClusterView>, Vec<&Column>) {
        let columns: Vec<&Column> = self
            .columns
            .iter()
            .filter(|c| filter.project.as_ref().is_none_or(|p| &c.project == p))
            .filter(|c| {
                filter.app.as_ref().is_none_or(|s| {
                    c.name.contains(s.as_str()) || c.apps.iter().any(|a| a.contains(s.as_str()))
                })
            })
            .filter(|c| {
                filter.app_selector.is_empty()
                    || c.apps.iter().any(|a| {
                        self.app(a)
                            .is_some_and(|a| filter.app_selector.matches(&a.labels))
                    })
            })
            .collect();
        let clusters: Vec<&ClusterView> = self
            .clusters
            .iter()
            .filter(|c| filter.cluster_selector.matches(&c.labels))
            .filter(|c| {
                filter
                    .cluster
                    .as_ref()
                    .is_none_or(|s| c.name.contains(s.as_str()))
            })
            .filter(|c| filter.status.as_ref().is_none_or(|s| c.status == s))
            .filter(|c| {
                !filter.problems_only
                    || c.status != "Online"
                    || columns.iter().any(|col| {
                        self.column_cell(&col.name, &c.name)
                            .is_some_and(|x| !x.is_fine())
                    })
            })
            .collect();
        (clusters, columns)
    }
}

impl ClusterView {
    pub fn new(
        record: &ClusterRecord,
        generation: Option<u64>,
        now: Timestamp,
        offline_after: Duration,
    ) -> Self {
        Self {
            name: record.name.clone(),
            labels: record.labels.clone(),
            status: cluster_status(record, now, offline_after),
            last_seen: record.last_seen,
            agent_version: record.agent_version.clone(),
            kube_version: record.kube_version.clone(),
            server: record.server_url.clone(),
            last_error: record.registration.last_error.clone(),
            generation,
        }
    }
}

/// What a cluster is, in one word: `Revoked`, `Pending` (waits for approval), `Unregistered`
/// (no agent yet), `Offline` (no report for `offline_after`), `Registered` (an agent has a
/// certificate but has not reported), or `Online`.
pub fn cluster_status(
    cluster: &ClusterRecord,
    now: Timestamp,
    offline_after: Duration,
) -> &'static str {
    let registration = &cluster.registration;
    if registration.revoked_at.is_some() {
        return "Revoked";
    }
    if registration.cert_serials.is_empty() {
        return if registration.require_approval && !registration.approved {
            "Pending"
        } else {
            "Unregistered"
        };
    }
    match cluster.last_seen {
        None => "Registered",
        Some(seen) => {
            let silent = now.duration_since(seen);
            if silent
                > jiff::SignedDuration::try_from(offline_after).unwrap_or(jiff::SignedDuration::MAX)
            {
                "Offline"
            } else {
                "Online"
            }
        }
    }
}

/// The pin that holds `app` on `cluster`: a per-cluster pin wins over an all-cluster pin.
fn pin_for<'a>(pins: &'a [Pin], app: &str, cluster: &str) -> Option<&'a Pin> {
    pins.iter()
        .find(|p| p.app == app && p.cluster.as_deref() == Some(cluster))
        .or_else(|| pins.iter().find(|p| p.app == app && p.cluster.is_none()))
}

fn labels_of(spec: &serde_json::Value) -> BTreeMap<String, String> {
    spec.pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// What a served state says of one app, as the fleet views need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedApp {
    pub name: String,
    pub revision: String,
    pub blob: String,
}

/// A cluster's newest state, decoded.
#[derive(Debug, Clone)]
pub struct Served {
    pub cluster: String,
    pub generation: u64,
    pub apps: Arc<Vec<ServedApp>>,
}

/// What fleet views keep between loads: decoded served states and the agents' statuses.
#[derive(Debug, Default)]
pub struct FleetCache {
    pub served: ServedCache,
    pub statuses: StatusCache,
}

/// The agents' latest app statuses by cluster (sorted by app, without objects), re-read
/// only for clusters whose agent reported since: a report moves the cluster's `last_seen`
/// after its statuses are stored.
#[derive(Debug, Default)]
pub struct StatusCache(Mutex<HashMap<String, Statuses>>);

/// A cluster's statuses and the `last_seen` they were read at.
type Statuses = (Option<Timestamp>, Arc<Vec<AppStatus>>);

impl StatusCache {
    /// The statuses of every cluster of `clusters`, reading only what changed.
    pub async fn refresh(
        &self,
        store: &impl crate::store::Store,
        clusters: &[ClusterRecord],
    ) -> Result<HashMap<String, Arc<Vec<AppStatus>>>, StoreError> {
        let stale: Vec<&ClusterRecord> = {
            let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
            clusters
                .iter()
                .filter(|c| {
                    cached
                        .get(&c.name)
                        .is_none_or(|(seen, _)| *seen != c.last_seen)
                })
                .collect()
        };
        let mut read: HashMap<String, Vec<AppStatus>> = HashMap::default();
        if stale.len() > clusters.len() / 2 {
            for (cluster, status) in store.fleet_statuses().await? {
                read.entry(cluster).or_default().push(status);
            }
        } else {
            for cluster in &stale {
                read.insert(
                    cluster.name.clone(),
                    store.cluster_statuses(&cluster.name).await?,
                );
            }
        }
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for cluster in stale {
            let mut statuses = read.remove(&cluster.name).unwrap_or_default();
            statuses.sort_by(|a, b| a.app.cmp(&b.app));
            cached.insert(
                cluster.name.clone(),
                (cluster.last_seen, Arc::new(statuses)),
            );
        }
        let live: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            clusters.iter().map(|c| c.name.as_str()).collect();
        cached.retain(|cluster, _| live.contains(cluster.as_str()));
        Ok(cached
            .iter()
            .map(|(cluster, (_, statuses))| (cluster.clone(), statuses.clone()))
            .collect())
    }
}

/// The newest state of every cluster, decoded once per generation: a fleet view reads only
/// the states that changed since the last one.
#[derive(Debug, Default)]
pub struct ServedCache(Mutex<HashMap<String, Decoded>>);

/// A cluster's decoded state and its generation.
type Decoded = (u64, Arc<Vec<ServedApp>>);

impl ServedCache {
    /// The newest state of every cluster, reading and decoding only what changed.
    pub async fn refresh(
        &self,
        store: &impl crate::store::Store,
    ) -> Result<Vec<Served>, StoreError> {
        let generations = store.latest_generations().await?;
        let stale: Vec<&str> = {
            let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
            generations
                .iter()
                .filter(|(cluster, generation)| {
                    cached.get(cluster).is_none_or(|(g, _)| g != generation)
                })
                .map(|(cluster, _)| cluster.as_str())
                .collect()
        };
        let mut decoded = Vec::new();
        if stale.len() > generations.len() / 2 {
            for stored in store.latest_states().await? {
                decoded.push((
                    stored.cluster.clone(),
                    stored.generation,
                    Self::decode(&stored),
                ));
            }
        } else {
            for cluster in stale {
                if let Some(stored) = store.latest_state(cluster).await? {
                    decoded.push((
                        stored.cluster.clone(),
                        stored.generation,
                        Self::decode(&stored),
                    ));
                }
            }
        }
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (cluster, generation, apps) in decoded {
            cached.insert(cluster, (generation, Arc::new(apps)));
        }
        let live: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            generations.iter().map(|(c, _)| c.as_str()).collect();
        cached.retain(|cluster, _| live.contains(cluster.as_str()));
        Ok(generations
            .iter()
            .filter_map(|(cluster, _)| {
                let (generation, apps) = cached.get(cluster)?;
                Some(Served {
                    cluster: cluster.clone(),
                    generation: *generation,
                    apps: apps.clone(),
                })
            })
            .collect())
    }

    fn decode(stored: &crate::store::StoredState) -> Vec<ServedApp> {
        match stored_payload(stored) {
            Ok(payload) => payload
                .apps
                .into_iter()
                .map(|app| ServedApp {
                    name: app.name,
                    revision: app.source.revision,
                    blob: app.blob.digest.to_string(),
                })
                .collect(),
            Err(error) => {
                tracing::warn!(cluster = %stored.cluster, %error, "stored state unreadable; left out of the fleet view");
                Vec::new()
            }
        }
    }
}

/// A revision as people read it: a commit's first 7 characters, anything else whole.
pub fn short_revision(revision: &str) -> &str {
    if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        &revision[..7]
    } else {
        revision
    }
}

/// What [`why`] looks at for one application on one cluster.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    pub cluster: &'a ClusterView,
    /// The revision the hub serves the cluster.
    pub served_revision: &'a str,
    /// The agent's latest report of the application.
    pub report: Option<&'a AppStatus>,
    /// Why the hub could not publish the newest content.
    pub problem: Option<&'a Problem>,
    pub pin: Option<&'a Pin>,
}

/// Why an application is not synced and healthy on a cluster, in one sentence with its
/// cause; `None` when it is synced, healthy and follows Git.
pub fn why(s: &Situation<'_>) -> Option<String> {
    let cluster = s.cluster;
    match cluster.status {
        "Revoked" => {
            return Some(format!(
                "cluster {} is revoked: its agent is refused and applies nothing new",
                cluster.name
            ));
        }
        "Pending" => {
            return Some(format!(
                "the agent of cluster {} waits for approval (flotilla cluster approve {})",
                cluster.name, cluster.name
            ));
        }
        "Unregistered" => {
            return Some(format!(
                "no agent has registered for cluster {} yet",
                cluster.name
            ));
        }
        "Registered" if s.report.is_none() => {
            return Some("the agent is registered but has not reported yet".to_owned());
        }
        "Offline" => {
            let since = cluster.last_seen.map_or_else(
                || "its start".to_owned(),
                |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            );
            return Some(format!("the agent is offline since {since}"));
        }
        _ => {}
    }
    if let Some(error) = cluster
        .last_error
        .as_deref()
        .filter(|e| e.starts_with("the agent refused generation"))
    {
        return Some(format!(
            "the state was refused by the agent: {}",
            error.trim_start_matches("the agent refused ")
        ));
    }
    if let Some(problem) = s.problem {
        // A render error, a checkout that failed or a project that refuses the app.
        return Some(if problem.kept {
            format!(
                "the newest revision cannot be published, the last good one is still served: {}",
                problem.message
            )
        } else {
            format!("cannot be published: {}", problem.message)
        });
    }
    let pinned = s.pin.map(|pin| {
        format!(
            "pinned to revision {} by {}",
            short_revision(&pin.revision),
            pin.pinned_by
        )
    });
    let Some(report) = s.report else {
        return Some(match pinned {
            Some(p) => format!("{p}; no report from the agent yet"),
            None => "no report from the agent yet".to_owned(),
        });
    };
    let reported = report.revision.as_deref().unwrap_or_default();
    if reported != s.served_revision {
        return Some(format!(
            "the agent still runs revision {}; revision {} is served and not applied yet",
            if reported.is_empty() {
                "-"
            } else {
                short_revision(reported)
            },
            short_revision(s.served_revision)
        ));
    }
    let failed = report.objects.iter().find(|o| o.state == "Failed");
    if let Some(crd) = report.objects.iter().find(|o| waits_for_crd(&o.message)) {
        return Some(format!(
            "waiting for a CRD: {} ({})",
            crd.object, crd.message
        ));
    }
    if waits_for_crd(&report.message) {
        return Some(format!("waiting for a CRD: {}", report.message));
    }
    if report.message.contains("pruneLimit") {
        return Some(format!(
            "prune held back by the circuit breaker: {}",
            report.message
        ));
    }
    if report.sync == "Failed" {
        return Some(match failed {
            Some(o) => format!("applying {} failed: {}", o.object, o.message),
            None => format!("applying failed: {}", report.message),
        });
    }
    if report.sync == "OutOfSync" {
        return Some(if report.message.is_empty() {
            "objects changed out of band and were not reverted (selfHeal is off)".to_owned()
        } else {
            report.message.clone()
        });
    }
    if report.sync == "Orphaned" {
        return Some(report.message.clone());
    }
    if report.health != "Healthy" {
        let object = failed.or_else(|| report.objects.iter().find(|o| o.state != "Current"));
        return Some(match (report.health.as_str(), object) {
            ("Progressing", Some(o)) => {
                format!("waiting for {} to become ready: {}", o.object, o.message)
            }
            (_, Some(o)) => format!("health check failing on {}: {}", o.object, o.message),
            (health, None) => format!("the application is {health}"),
        });
    }
    pinned
}

/// Whether an object's message says its kind is not served yet.
fn waits_for_crd(message: &str) -> bool {
    message.contains("CRD is being installed")
        || message.contains("no matches for kind")
        || message.contains("is not served by the cluster")
}

/// A label selector: `k=v`, `k!=v`, `k` (present) and `!k` (absent), comma-separated, all of
/// which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl Selector {
    /// Parses a selector; an empty text selects everything.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(key(k)?, v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(key(k)?)
            } else {
                Requirement::Exists(key(part)?)
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn key(text: &str) -> Result<String, String> {
    let key = text.trim();
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("label key {key:?} is not valid"))
    }
}

/// What a fleet view keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub cluster_selector: Selector,
    pub app_selector: Selector,
    pub project: Option<String>,
    /// A part of the cluster's name.
    pub cluster: Option<String>,
    /// A part of the application's name.
    pub app: Option<String>,
    /// The cluster's status word.
    pub status: Option<String>,
    /// Only clusters with something to look at: not online, or an application there not
    /// synced and healthy.
    pub problems_only: bool,
}

/// A window of a longer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    /// At most this many items in one page.
    pub const MAX_LIMIT: usize = 1000;

    /// The page's items of `items`, and the offset of the next page if there is one.
    pub fn of<'a, T>(&self, items: &'a [T]) -> (&'a [T], Option<usize>) {
        let start = self.offset.min(items.len());
        let end = start.saturating_add(self.limit).min(items.len());
        let next = (end < items.len()).then_some(end);
        (&items[start..end], next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectStatus;

    fn cluster(status: &'static str) -> ClusterView {
        ClusterView {
            name: "east".to_owned(),
            labels: BTreeMap::new(),
            status,
            last_seen: Some("2026-11-28T06:00:00Z".parse().expect("time")),
            agent_version: None,
            kube_version: None,
            server: None,
            last_error: None,
            generation: Some(3),
        }
    }

    fn report(revision: &str, sync: &str, health: &str, objects: Vec<ObjectStatus>) -> AppStatus {
        AppStatus {
            app: "web".to_owned(),
            generation: Some(3),
            revision: Some(revision.to_owned()),
            sync: sync.to_owned(),
            health: health.to_owned(),
            message: String::new(),
            objects,
        }
    }

    fn object(state: &str, message: &str) -> ObjectStatus {
        ObjectStatus {
            object: "Deployment.apps web/web".to_owned(),
            state: state.to_owned(),
            message: message.to_owned(),
        }
    }

    const REV: &str = "0123456789abcdef0123456789abcdef01234567";

    fn why_of(
        cluster: &ClusterView,
        report: Option<&AppStatus>,
        problem: Option<&Problem>,
        pin: Option<&Pin>,
    ) -> Option<String> {
        why(&Situation {
            cluster,
            served_revision: REV,
            report,
            problem,
            pin,
        })
    }

    #[test]
    fn synced_and_healthy_needs_no_sentence() {
        let fine = report(REV, "Synced", "Healthy", vec![object("Current", "")]);
        assert_eq!(why_of(&cluster("Online"), Some(&fine), None, None), None);
    }

    #[test]
    fn each_cause_gets_its_sentence() {
        let fine = report(REV, "Synced", "Healthy", vec![]);
        let online = cluster("Online");
        let cases: Vec<(Option<String>, &str)> = vec![
            (
                why_of(&cluster("Offline"), Some(&fine), None, None),
                "the agent is offline since 2026-11-28 06:00:00 UTC",
            ),
            (
                why_of(
                    &ClusterView {
                        last_error: Some(
                            "the agent refused generation 4: signature does not verify".to_owned(),
                        ),
                        ..cluster("Online")
                    },
                    Some(&fine),
                    None,
                    None,
                ),
                "the state was refused by the agent: generation 4: signature does not verify",
            ),
            (
                why_of(
                    &online,
                    Some(&fine),
                    Some(&Problem {
                        app: "web".into(),
                        message: "helm template: chart not found".into(),
                        kept: true,
                    }),
                    None,
                ),
                "the newest revision cannot be published, the last good one is still served: helm template: chart not found",
            ),
            (
                why_of(
                    &online,
                    Some(&fine),
                    None,
                    Some(&Pin {
                        app: "web".into(),
                        cluster: None,
                        revision: REV.into(),
                        pinned_by: "admin".into(),
                        pinned_at: "2026-11-28T06:00:00Z".parse().expect("time"),
                    }),
                ),
                "pinned to revision 0123456 by admin",
            ),
            (
                why_of(&online, None, None, None),
                "no report from the agent yet",
            ),
            (
                why_of(
                    &online,
                    Some(&report(
                        "fedcba9876543210fedcba9876543210fedcba98",
                        "Synced",
                        "Healthy",
                        vec![],
                    )),
                    None,
                    None,
                ),
                "the agent still runs revision fedcba9; revision 0123456 is served and not applied yet",
            ),
            (
                why_of(
                    &online,
                    Some(&report(
                        REV,
                        "Synced",
                        "Progressing",
                        vec![object("InProgress", "CRD is being installed")],
                    )),
                    None,
                    None,
                ),
                "waiting for a CRD: Deployment.apps web/web (CRD is being installed)",
            ),
            (
                why_of(
                    &online,
                    Some(&AppStatus {
                        message: "not pruned: the prune step exceeds pruneLimit".into(),
                        ..report(REV, "OutOfSync", "Healthy", vec![])
                    }),
                    None,
                    None,
                ),
                "prune held back by the circuit breaker: not pruned: the prune step exceeds pruneLimit",
            ),
            (
                why_of(
                    &online,
                    Some(&report(
                        REV,
                        "Failed",
                        "Degraded",
                        vec![object("Failed", "field is immutable")],
                    )),
                    None,
                    None,
                ),
                "applying Deployment.apps web/web failed: field is immutable",
            ),
            (
                why_of(
                    &online,
                    Some(&report(
                        REV,
                        "Synced",
                        "Degraded",
                        vec![object("Failed", "0 of 2 replicas available")],
                    )),
                    None,
                    None,
                ),
                "health check failing on Deployment.apps web/web: 0 of 2 replicas available",
            ),
            (
                why_of(&cluster("Pending"), None, None, None),
                "the agent of cluster east waits for approval (flotilla cluster approve east)",
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got.as_deref(), Some(expected));
        }
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let labels: BTreeMap<String, String> = [
            ("env".to_owned(), "prod".to_owned()),
            ("region".to_owned(), "east".to_owned()),
        ]
        .into();
        let matches = |s: &str| Selector::parse(s).expect("parses").matches(&labels);
        assert!(matches(""));
        assert!(matches("env=prod"));
        assert!(matches("env==prod,region"));
        assert!(matches("env!=dev,!tier"));
        assert!(!matches("env=dev"));
        assert!(!matches("region,tier"));
        assert!(Selector::parse("bad key=x").is_err());
    }

    #[test]
    fn pages_window_a_list() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(
            Page {
                offset: 0,
                limit: 4
            }
            .of(&items),
            (&items[0..4], Some(4))
        );
        assert_eq!(
            Page {
                offset: 8,
                limit: 4
            }
            .of(&items),
            (&items[8..10], None)
        );
        assert_eq!(
            Page {
                offset: 20,
                limit: 4
            }
            .of(&items)
            .0
            .len(),
            0
        );
    }
}
