//! Reconciliation: from the declarative configuration (Applications, ApplicationSets,
//! AppProjects), the registered clusters, the Git cache and the renderer, what each cluster
//! should run now — one [`ClusterInput`] per cluster, ready for `publish`.
//!
//! The decisions are pure and live in [`placement`]: generation (a failing ApplicationSet
//! keeps the apps it generated before and says why), destinations, project checks, signed
//! limits, sync policy. This module is the I/O edge around them: it resolves each source's
//! `targetRevision` in the fetcher's cache, checks the commit out (once per repository and
//! commit), renders (the renderer caches by commit, path and parameters) and maps the outcome
//! onto [`Content`]: a refusal or a render error is `Content::Failed` for that app on that
//! cluster alone; automated sync off is `Content::Hold` unless a sync was asked for; a pinned
//! app is held too, with the pinned revision, since publication serves the pinned entry from
//! history. [`preview`] is `flotilla-hub render`, the same path for one cluster.
//!
//! It never fetches (repositories are read as last fetched: scheduling fetches is not its
//! job), signs or stores states; it reads the store only to load the configuration and
//! writes only each ApplicationSet's generation outcome.

pub mod placement;
pub mod preview;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flotilla_shared::state::Source;
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};
use tracing::{Instrument, info, instrument, warn};

use crate::declarative::{self, AppProject, Document, ParseError, Parsed, Warning};
use crate::git::Fetcher;
use crate::publish::plan::{ClusterInput, Content, DesiredApp};
use crate::render::{RenderRequest, Renderer};
use crate::store::{Pin, Store, StoreError};

pub use placement::{
    ClusterTarget, ConfigProblem, DeclaredAppSet, DeclaredConfig, Expansion, Generation, Placement,
    ProblemKind, ProjectRules,
};

/// Loading the configuration or recording generations failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("load declarative configuration: {0}")]
    Load(#[source] StoreError),
    #[error("record generation of application set {app_set}: {source}")]
    Record {
        app_set: String,
        #[source]
        source: StoreError,
    },
    #[error("prepare checkout directory {path}: {source}")]
    Checkouts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DeclaredConfig {
    /// The configuration of parsed documents, with their warnings.
    pub fn from_documents(documents: Vec<Parsed<Document>>) -> (Self, Vec<Warning>) {
        let mut config = DeclaredConfig::default();
        let mut warnings = Vec::new();
        for parsed in documents {
            warnings.extend(parsed.warnings);
            match parsed.value {
                Document::Application(app) => config.applications.push(*app),
                Document::ApplicationSet(set) => config.app_sets.push(DeclaredAppSet {
                    set,
                    last_generated: Vec::new(),
                }),
                Document::AppProject(project) => config.projects.push(project),
            }
        }
        (config, warnings)
    }

    /// The configuration as stored. A stored document that no longer parses is reported as a
    /// problem, not an error: the rest still reconciles.
    pub async fn load<S: Store>(store: &S) -> Result<Self, ReconcileError> {
        let mut config = DeclaredConfig::default();
        for record in store.projects().await.map_err(ReconcileError::Load)? {
            match declarative::parse_document(0, record.spec) {
                Ok(Parsed {
                    value: Document::AppProject(project),
                    ..
                }) => config.projects.push(project),
                other => config
                    .problems
                    .push(unreadable("AppProject", &record.name, other)),
            }
        }
        for record in store.applications().await.map_err(ReconcileError::Load)? {
            match declarative::parse_document(0, record.spec) {
                Ok(Parsed {
                    value: Document::Application(app),
                    ..
                }) => config.applications.push(*app),
                other => config
                    .problems
                    .push(unreadable("application", &record.name, other)),
            }
        }
        for record in store.app_sets().await.map_err(ReconcileError::Load)? {
            match declarative::parse_document(0, record.spec) {
                Ok(Parsed {
                    value: Document::ApplicationSet(set),
                    ..
                }) => config.app_sets.push(DeclaredAppSet {
                    set,
                    last_generated: record.generated,
                }),
                other => config
                    .problems
                    .push(unreadable("application set", &record.name, other)),
            }
        }
        Ok(config)
    }
}

fn unreadable(
    kind: &str,
    name: &str,
    parsed: Result<Parsed<Document>, ParseError>,
) -> ConfigProblem {
    ConfigProblem {
        subject: format!("{kind} {name}"),
        kind: ProblemKind::Invalid,
        message: match parsed {
            Ok(_) => format!("the stored document is not an {kind}"),
            Err(e) => format!("the stored document does not parse: {e}"),
        },
    }
}

/// Which apps a sync was explicitly asked for (they render even with automated sync off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SyncRequests {
    #[default]
    None,
    Apps(BTreeSet<String>),
    /// Every app, as a preview wants.
    All,
}

impl SyncRequests {
    pub fn contains(&self, app: &str) -> bool {
        match self {
            SyncRequests::None => false,
            SyncRequests::Apps(apps) => apps.contains(app),
            SyncRequests::All => true,
        }
    }
}

/// What one reconciliation looks at.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileRequest<'a> {
    pub config: &'a DeclaredConfig,
    pub clusters: &'a [ClusterTarget],
    /// Clusters served a state now: they get an input even when no app targets them any
    /// more, so the removal is published as tombstones.
    pub served: &'a BTreeSet<String>,
    pub sync: &'a SyncRequests,
    /// Pins from the store; a per-cluster pin wins over an all-cluster pin.
    pub pins: &'a [Pin],
}

/// What each cluster should run, and what went wrong on the way.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// One per cluster that has apps or is served now, in cluster order.
    pub inputs: Vec<ClusterInput>,
    /// Each ApplicationSet's outcome, to record with [`Reconciliation::record`].
    pub generations: Vec<Generation>,
    /// Apps that reach no cluster, duplicates, failing ApplicationSets, unreadable documents.
    pub problems: Vec<ConfigProblem>,
}

impl Reconciliation {
    /// The input of `cluster`, if it has one.
    pub fn input(&self, cluster: &str) -> Option<&ClusterInput> {
        self.inputs.iter().find(|i| i.cluster == cluster)
    }

    /// Records each ApplicationSet's generation outcome in the store: on success the names
    /// it generated, on failure the error (the names of the last success stay).
    pub async fn record<S: Store>(&self, store: &S, at: Timestamp) -> Result<(), ReconcileError> {
        for generation in &self.generations {
            let outcome = generation
                .outcome
                .as_ref()
                .map(Vec::as_slice)
                .map_err(String::as_str);
            store
                .record_generation(&generation.app_set, outcome, at)
                .await
                .map_err(|source| ReconcileError::Record {
                    app_set: generation.app_set.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Checkouts of (repository, commit), made once and shared by every app and cluster that
/// renders from them. Those a reconciliation did not use are removed at its end.
#[derive(Debug)]
struct Checkouts {
    root: tempfile::TempDir,
    /// (repository URL, commit) → checkout directory, and whether this run used it.
    done: Mutex<BTreeMap<(String, String), (PathBuf, bool)>>,
}

impl Checkouts {
    fn new(parent: Option<&Path>) -> Result<Self, ReconcileError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("flotilla-checkouts-");
        let root = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|source| ReconcileError::Checkouts {
            path: parent.map_or_else(std::env::temp_dir, Path::to_owned),
            source,
        })?;
        Ok(Self {
            root,
            done: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), (PathBuf, bool)>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The checkout of `commit` of `repo` (as `fetcher` caches it), made on a blocking
    /// thread the first time it is asked for.
    async fn checkout(
        &self,
        fetcher: &Fetcher,
        cached_url: &str,
        declared_url: &str,
        commit: gix::ObjectId,
    ) -> Result<PathBuf, String> {
        let key = (cached_url.to_owned(), commit.to_string());
        if let Some((dir, used)) = self.lock().get_mut(&key) {
            *used = true;
            return Ok(dir.clone());
        }
        let url_digest = hex::encode(Sha256::digest(cached_url.as_bytes()));
        let dir = self
            .root
            .path()
            .join(format!("{}-{commit}", &url_digest[..16]));
        let (fetcher, url, target) = (fetcher.clone(), declared_url.to_owned(), dir.clone());
        // gix repositories are not `Send` here, so the blocking thread opens its own.
        let result = tokio::task::spawn_blocking(move || {
            let repo = fetcher.cached(&url).map_err(|e| e.to_string())?;
            let result = repo.checkout(commit, &target).map_err(|e| e.to_string());
            if result.is_err() {
                // A partial checkout must never be rendered: remove it and try again next time.
                let _ignored = std::fs::remove_dir_all(&target);
            }
            result
        })
        .await
        .map_err(|join| format!("checkout {} at {commit}: {join}", key.0))?;
        result?;
        self.lock().insert(key, (dir.clone(), true));
        Ok(dir)
    }

    /// Removes the checkouts this run did not use and marks the rest unused for the next.
    fn sweep(&self) {
        let mut done = self.lock();
        done.retain(|_, (dir, used)| {
            if !*used {
                let _ignored = std::fs::remove_dir_all(dir.as_path());
            }
            std::mem::replace(used, false)
        });
    }
}

/// Computes cluster inputs from the configuration; holds the checkouts between runs.
#[derive(Debug)]
pub struct Reconciler {
    fetcher: Fetcher,
    renderer: Arc<Renderer>,
    checkouts: Checkouts,
    /// (repoURL, targetRevision) → (cached URL, commit), resolved once per round: a round
    /// with 100,000 apps from one repository opens and resolves it once, not per app.
    resolved: std::sync::Mutex<BTreeMap<(String, String), (String, gix::ObjectId)>>,
}

impl Reconciler {
    /// A reconciler reading repositories from `fetcher`'s cache and checking commits out
    /// under `work_dir` (the system's temporary directory when `None`).
    pub fn new(
        fetcher: Fetcher,
        renderer: Arc<Renderer>,
        work_dir: Option<&Path>,
    ) -> Result<Self, ReconcileError> {
        Ok(Self {
            fetcher,
            renderer,
            checkouts: Checkouts::new(work_dir)?,
            resolved: std::sync::Mutex::default(),
        })
    }

    fn resolutions(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), (String, gix::ObjectId)>> {
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// The inputs of every cluster that has apps or is served now. Failures are values:
    /// an app that cannot be rendered is `Content::Failed` on its cluster, an app that
    /// reaches no cluster or a failing ApplicationSet is a problem of the result.
    #[instrument(skip_all, fields(clusters = request.clusters.len()))]
    pub async fn reconcile(&self, request: &ReconcileRequest<'_>) -> Reconciliation {
        // Revisions move between rounds (a fetch may have come in): resolve them afresh.
        self.resolutions().clear();
        // Generation reads the local Git cache only (no network), so it runs inline.
        let expansion = placement::expand(request.config, request.clusters, &self.fetcher);
        let projects: BTreeMap<String, AppProject> = request
            .config
            .projects
            .iter()
            .map(|p| (p.metadata.name.clone(), p.clone()))
            .collect();
        let mut problems = expansion.problems;
        let mut per_cluster: BTreeMap<String, Vec<DesiredApp>> = BTreeMap::new();
        for expanded in &expansion.apps {
            match placement::place(expanded, request.clusters, &projects) {
                Ok(placed) => {
                    let cluster = request
                        .clusters
                        .iter()
                        .find(|c| c.name == placed.cluster)
                        .expect("place returns a cluster of the list");
                    let desired = self.desired(&placed, cluster, request).await;
                    per_cluster
                        .entry(placed.cluster.clone())
                        .or_default()
                        .push(desired);
                }
                Err(error) => problems.push(ConfigProblem {
                    subject: format!("application {}", expanded.app.metadata.name),
                    kind: ProblemKind::Destination,
                    message: error.to_string(),
                }),
            }
        }
        self.checkouts.sweep();
        for problem in &problems {
            warn!(%problem, "configuration problem");
        }
        let inputs: Vec<ClusterInput> = request
            .clusters
            .iter()
            .filter_map(|cluster| {
                let apps = per_cluster.remove(&cluster.name);
                if apps.is_none() && !request.served.contains(&cluster.name) {
                    return None;
                }
                Some(ClusterInput {
                    apps: apps.unwrap_or_default(),
                    generator_failures: expansion.failures.clone(),
                    ..ClusterInput::new(&cluster.name)
                })
            })
            .collect();
        info!(
            inputs = inputs.len(),
            problems = problems.len(),
            "reconciled"
        );
        Reconciliation {
            inputs,
            generations: expansion.generations,
            problems,
        }
    }

    /// What one placed app should run on its cluster.
    async fn desired(
        &self,
        placed: &Placement,
        cluster: &ClusterTarget,
        request: &ReconcileRequest<'_>,
    ) -> DesiredApp {
        let span = tracing::info_span!("app", cluster = %placed.cluster, app = %placed.app);
        async {
            let declared = &placed.source;
            let source = |revision: &str| Source {
                repo_url: declared.repo_url.clone(),
                path: declared
                    .chart
                    .clone()
                    .unwrap_or_else(|| declared.path.clone()),
                revision: revision.to_owned(),
            };
            let desired =
                |source: Source, content: Content, objects: &[serde_json::Value]| DesiredApp {
                    name: placed.app.clone(),
                    namespace: placed.namespace.clone(),
                    source,
                    sync_policy: placed.sync_policy.clone(),
                    limits: placed.rules.limits(&placed.namespace, objects),
                    ignore_differences: placed.ignore_differences.clone(),
                    content,
                };
            let declared_revision = source(&declared.target_revision);
            if let Some(refusal) = &placed.refusal {
                return desired(declared_revision, Content::Failed(refusal.clone()), &[]);
            }
            if let Some(pin) = pin_for(request.pins, &placed.app, &placed.cluster) {
                return desired(source(&pin.revision), Content::Hold, &[]);
            }
            if !placement::wants_render(placed, request.sync.contains(&placed.app)) {
                return desired(declared_revision, Content::Hold, &[]);
            }
            let (repo_dir, commit) = match &declared.chart {
                // A Helm repository chart: the version pins it, no checkout.
                Some(_) => (
                    self.checkouts.root.path().to_owned(),
                    declared.target_revision.clone(),
                ),
                None => match self.checkout(placed).await {
                    Ok(found) => found,
                    Err(message) => {
                        return desired(declared_revision, Content::Failed(message), &[]);
                    }
                },
            };
            let rendered = self
                .renderer
                .render(&RenderRequest {
                    app: &placed.app,
                    repo_dir: &repo_dir,
                    commit: &commit,
                    source: declared,
                    namespace: &placed.namespace,
                    cluster: &cluster.info,
                })
                .await;
            match rendered {
                Ok(objects) => match placed.rules.check_objects(&placed.app, &objects) {
                    Ok(()) => desired(
                        source(&commit),
                        Content::Rendered(objects.clone()),
                        &objects,
                    ),
                    Err(refusal) => desired(source(&commit), Content::Failed(refusal), &[]),
                },
                Err(error) => {
                    warn!(%error, "render failed");
                    desired(source(&commit), Content::Failed(error.to_string()), &[])
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The checkout of the app's source at its resolved commit, or why there is none.
    async fn checkout(&self, placed: &Placement) -> Result<(PathBuf, String), String> {
        let declared = &placed.source;
        let app = &placed.app;
        let key = (declared.repo_url.clone(), declared.target_revision.clone());
        let known = self.resolutions().get(&key).cloned();
        let (cached_url, commit) = match known {
            Some(found) => found,
            // The cached repository is not `Send`: it is dropped before anything is awaited.
            None => {
                let repo = self
                    .fetcher
                    .cached(&declared.repo_url)
                    .map_err(|e| format!("application {app}: {e}"))?;
                let commit = repo
                    .resolve(&declared.target_revision)
                    .map_err(|e| format!("application {app}: {e}"))?;
                let found = (repo.url().to_owned(), commit);
                self.resolutions().insert(key, found.clone());
                found
            }
        };
        let dir = self
            .checkouts
            .checkout(&self.fetcher, &cached_url, &declared.repo_url, commit)
            .await
            .map_err(|e| format!("application {app}: {e}"))?;
        Ok((dir, commit.to_string()))
    }
}

/// The pin of `app` on `cluster`: a per-cluster pin wins over an all-cluster pin.
fn pin_for<'p>(pins: &'p [Pin], app: &str, cluster: &str) -> Option<&'p Pin> {
    pins.iter()
        .filter(|p| p.app == app)
        .find(|p| p.cluster.as_deref() == Some(cluster))
        .or_else(|| pins.iter().find(|p| p.app == app && p.cluster.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::testing::now;

    fn pin(app: &str, cluster: Option<&str>, revision: &str) -> Pin {
        Pin {
            app: app.to_owned(),
            cluster: cluster.map(str::to_owned),
            revision: revision.to_owned(),
            pinned_by: "alice".to_owned(),
            pinned_at: now(),
        }
    }

    #[test]
    fn a_cluster_pin_wins_over_an_all_cluster_pin() {
        let pins = [
            pin("web", None, "c1"),
            pin("web", Some("east"), "c0"),
            pin("db", Some("west"), "c5"),
        ];
        let check =
            |app: &str, cluster: &str| pin_for(&pins, app, cluster).map(|p| p.revision.as_str());
        assert_eq!(check("web", "east"), Some("c0"));
        assert_eq!(check("web", "west"), Some("c1"));
        assert_eq!(check("db", "west"), Some("c5"));
        assert_eq!(check("db", "east"), None);
    }

    #[test]
    fn sync_requests() {
        assert!(!SyncRequests::None.contains("web"));
        assert!(SyncRequests::All.contains("web"));
        let some = SyncRequests::Apps(["web".to_owned()].into());
        assert!(some.contains("web") && !some.contains("db"));
    }

    #[test]
    fn documents_make_a_configuration() {
        let text = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web}
spec: {source: {repoURL: r, plugin: {}}, destination: {name: east}}
";
        let (config, warnings) =
            DeclaredConfig::from_documents(declarative::parse_documents(text).expect("parses"));
        assert_eq!(config.projects.len(), 1);
        assert_eq!(config.applications[0].metadata.name, "web");
        assert_eq!(
            warnings[0].to_string(),
            "spec.source.plugin is not supported"
        );
    }
}
