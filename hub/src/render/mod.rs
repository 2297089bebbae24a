//! Renders one application source for one cluster into the Kubernetes objects it yields:
//! plain directories (YAML/JSON, recursive), Kustomize, Helm charts from a Git path and Helm
//! charts from a Helm repository. It reads the repository checkout it is given (fetching Git
//! is not its job), executes the pinned external binaries `helm` and `kustomize`, downloads
//! charts over HTTP, and caches results by (commit, path, parameters).
//!
//! Hard limits, each refusal an error naming the application and the offending path: no
//! source path, values file, Kustomize reference or symlink may leave the repository; caps on
//! file size, total size and object count ([`Limits`]); serde-saphyr's budget against YAML
//! bombs; a deadline per tool run, after which the tool is killed; no Kustomize exec or KRM
//! function plugins; Helm charts get no network for dependencies. A missing binary fails only
//! the applications that need it.
//!
//! It must not publish, sign or store anything, and it never sees a cluster credential: the
//! cluster's Kubernetes version and API versions arrive as plain values ([`ClusterInfo`]).

pub mod cache;
pub mod helm;
pub mod helm_repo;
pub mod kustomize;
pub mod limits;
pub mod paths;
pub mod tool;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{Value, json};
use tracing::Instrument;

pub use cache::{CacheKey, DEFAULT_CACHE_ENTRIES, RenderCache, Rendered};
pub use limits::Limits;
pub use paths::PathProblem;
pub use tool::{Tool, ToolError};

use crate::manifest_files::{ManifestError, check_tree, read_manifest_tree};

/// One application source, as the render needs it (the common subset of Argo CD's
/// `spec.source`). The kind is detected: `chart` set means a Helm repository; otherwise the
/// directory at `path` is a Kustomize base when it has a kustomization file, a Helm chart when
/// it has `Chart.yaml`, and plain manifests else.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderSource {
    /// The Git repository, or the Helm repository when `chart` is set.
    pub repo_url: String,
    /// A directory relative to the repository root; unused for a Helm repository.
    pub path: String,
    /// A Git revision, or the chart version of a Helm repository chart.
    pub target_revision: String,
    /// The chart name in a Helm repository.
    pub chart: Option<String>,
    /// Helm options; ignored for directories and Kustomize.
    pub helm: HelmOptions,
}

/// Helm options, as Argo CD's `spec.source.helm` has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmOptions {
    /// Values files relative to the chart directory (or, when absolute, to the repository
    /// root), applied in order; refused when they resolve outside the repository.
    pub value_files: Vec<String>,
    /// Inline values as a YAML string; ignored when `values_object` is set, as in Argo CD.
    pub values: Option<String>,
    /// Inline values as an object.
    pub values_object: Option<Value>,
    /// `--set` parameters, applied last.
    pub parameters: Vec<HelmParameter>,
    /// The release name [default: the application name].
    pub release_name: Option<String>,
    /// The release namespace [default: the application's destination namespace].
    pub namespace: Option<String>,
}

/// One Helm parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    pub name: String,
    pub value: String,
    /// `--set-string` instead of `--set`.
    pub force_string: bool,
}

/// What the render knows of the target cluster: what its agent reported, or what the user
/// gave on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// E.g. `v1.35.4`; Helm's built-in default when absent.
    pub kube_version: Option<String>,
    /// E.g. `apps/v1`, `monitoring.coreos.com/v1/ServiceMonitor`.
    pub api_versions: Vec<String>,
}

/// What kind of source a render is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Directory,
    Kustomize,
    HelmChart,
    HelmRepository,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            SourceKind::Directory => "directory",
            SourceKind::Kustomize => "kustomize",
            SourceKind::HelmChart => "helm",
            SourceKind::HelmRepository => "helmRepository",
        }
    }
}

/// The kind of the source directory `dir`.
pub fn detect_kind(dir: &Path) -> SourceKind {
    if kustomize::kustomization_file(dir).is_some() {
        SourceKind::Kustomize
    } else if dir.join("Chart.yaml").is_file() {
        SourceKind::HelmChart
    } else {
        SourceKind::Directory
    }
}

/// One render: an application's source for one cluster.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The application, named in every error.
    pub app: &'a str,
    /// The checkout of the source's repository at `commit`; unused for a Helm repository.
    pub repo_dir: &'a Path,
    /// The commit checked out (for a Helm repository, any stable name of the version).
    pub commit: &'a str,
    pub source: &'a RenderSource,
    /// The application's destination namespace (Helm's release namespace by default).
    pub namespace: &'a str,
    pub cluster: &'a ClusterInfo,
}

/// A render failed; the application is named first.
#[derive(Debug, thiserror::Error)]
#[error("render application {app}: {failure}")]
pub struct RenderError {
    pub app: String,
    pub failure: RenderFailure,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    #[error("source path {path:?} {problem}")]
    SourcePath { path: String, problem: PathProblem },
    #[error(transparent)]
    Files(#[from] ManifestError),
    #[error("kustomization {path}: {reason}")]
    Kustomization { path: PathBuf, reason: String },
    #[error(
        "kustomization {path}: {reason}; flotilla runs kustomize without exec or KRM function plugins"
    )]
    KustomizePlugin { path: PathBuf, reason: String },
    #[error("helm values file {file:?} {problem}")]
    ValueFile { file: String, problem: String },
    #[error(
        "helm chart {chart} needs {missing}, which is not vendored in its charts/ directory; charts are rendered without network access, so run `helm dependency build` and commit charts/"
    )]
    ChartDependency { chart: String, missing: String },
    #[error("helm repository {repo}: {reason}")]
    HelmRepository { repo: String, reason: String },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{tool} printed invalid manifests: {reason}")]
    Output { tool: &'static str, reason: String },
    #[error("the render yields {count} objects, more than the limit of {limit}")]
    TooManyObjects { count: usize, limit: usize },
    #[error("invalid {option} {value:?}: {reason}")]
    InvalidOption {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the renderer finds its tools, its limits and its cache size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// The `helm` binary; a bare name is looked up on PATH.
    pub helm: PathBuf,
    /// The `kustomize` binary; a bare name is looked up on PATH.
    pub kustomize: PathBuf,
    pub limits: Limits,
    /// Most renders kept in the cache.
    pub cache_entries: usize,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            helm: PathBuf::from("helm"),
            kustomize: PathBuf::from("kustomize"),
            limits: Limits::default(),
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

/// The render options of the hub's commands.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// The helm binary (a bare name is looked up on PATH).
    #[arg(
        long = "helm-path",
        env = "FLOTILLA_HUB_HELM_PATH",
        default_value = "helm"
    )]
    pub helm: PathBuf,
    /// The kustomize binary (a bare name is looked up on PATH).
    #[arg(
        long = "kustomize-path",
        env = "FLOTILLA_HUB_KUSTOMIZE_PATH",
        default_value = "kustomize"
    )]
    pub kustomize: PathBuf,
    /// How long one helm or kustomize run or chart download may take, e.g. `60s`.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_TIMEOUT", default_value = "60s")]
    pub render_timeout: jiff::SignedDuration,
    /// Largest file a render reads, in bytes.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_MAX_FILE_BYTES", default_value_t = limits::DEFAULT_MAX_FILE_BYTES)]
    pub render_max_file_bytes: u64,
    /// Largest source tree, tool output or download of a render, in bytes.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_MAX_TOTAL_BYTES", default_value_t = limits::DEFAULT_MAX_TOTAL_BYTES)]
    pub render_max_total_bytes: u64,
    /// Most objects one render may yield.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_MAX_OBJECTS", default_value_t = limits::DEFAULT_MAX_OBJECTS)]
    pub render_max_objects: usize,
    /// Most renders kept in memory.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_CACHE_ENTRIES", default_value_t = DEFAULT_CACHE_ENTRIES)]
    pub render_cache_entries: usize,
}

impl From<&RenderArgs> for RenderConfig {
    fn from(args: &RenderArgs) -> Self {
        Self {
            helm: args.helm.clone(),
            kustomize: args.kustomize.clone(),
            limits: Limits {
                max_file_bytes: args.render_max_file_bytes,
                max_total_bytes: args.render_max_total_bytes,
                max_objects: args.render_max_objects,
                timeout: args.render_timeout.unsigned_abs(),
            },
            cache_entries: args.render_cache_entries,
        }
    }
}

/// The render could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RenderSetupError {
    #[error("build the HTTP client for helm repositories: {0}")]
    Http(#[source] reqwest::Error),
}

/// Renders sources, caching by (commit, path, parameters).
#[derive(Debug)]
pub struct Renderer {
    helm: Tool,
    kustomize: Tool,
    limits: Limits,
    http: reqwest::Client,
    cache: RenderCache,
    executed: AtomicU64,
}

/// Helm settings of one render, resolved and checked.
#[derive(Debug)]
struct HelmPlan {
    release: String,
    namespace: String,
    /// Canonical paths inside the repository.
    value_files: Vec<PathBuf>,
    /// Inline values (`valuesObject` as JSON, else `values`), written to a file at render.
    inline: Option<String>,
}

/// What runs, with its canonical source directory.
#[derive(Debug)]
enum Target {
    Directory(PathBuf),
    Kustomize(PathBuf),
    HelmChart(PathBuf, HelmPlan),
    HelmRepository(HelmPlan),
}

/// Everything decided before the render runs (and before the cache is asked).
#[derive(Debug)]
struct Plan {
    kind: SourceKind,
    /// The source path, repository-relative.
    dir_rel: PathBuf,
    target: Target,
    key: CacheKey,
}

fn invalid(option: &'static str, value: &str, reason: String) -> RenderFailure {
    RenderFailure::InvalidOption {
        option,
        value: value.to_owned(),
        reason,
    }
}

impl Renderer {
    pub fn new(config: RenderConfig) -> Result<Self, RenderSetupError> {
        let http = reqwest::Client::builder()
            .timeout(config.limits.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(RenderSetupError::Http)?;
        Ok(Self {
            helm: Tool {
                name: "helm",
                path: config.helm,
                setting: "--helm-path (FLOTILLA_HUB_HELM_PATH)",
            },
            kustomize: Tool {
                name: "kustomize",
                path: config.kustomize,
                setting: "--kustomize-path (FLOTILLA_HUB_KUSTOMIZE_PATH)",
            },
            limits: config.limits,
            http,
            cache: RenderCache::new(config.cache_entries),
            executed: AtomicU64::new(0),
        })
    }

    /// How many renders actually ran (cache misses), since this renderer was made.
    pub fn renders_executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }

    /// The objects `request` renders to, from the cache when the same (commit, path,
    /// parameters) rendered before.
    pub async fn render(&self, request: &RenderRequest<'_>) -> Result<Rendered, RenderError> {
        let span = tracing::info_span!(
            "render",
            app = request.app,
            commit = request.commit,
            path = %request.source.path
        );
        let error = |failure| RenderError {
            app: request.app.to_owned(),
            failure,
        };
        async {
            let plan = self.plan(request).map_err(error)?;
            self.cache
                .get_or_render(plan.key, || async {
                    self.executed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(kind = plan.kind.name(), key = %plan.key, "render");
                    let objects = self.execute(request, &plan).await?;
                    if let Err(limit) = self.limits.check_objects(objects.len()) {
                        return Err(RenderFailure::TooManyObjects {
                            count: objects.len(),
                            limit,
                        });
                    }
                    Ok(Arc::from(objects))
                })
                .await
                .map_err(error)
        }
        .instrument(span)
        .await
    }

    /// Resolves and checks paths and options, and computes the cache key.
    fn plan(&self, request: &RenderRequest<'_>) -> Result<Plan, RenderFailure> {
        let source = request.source;
        let (kind, dir, dir_rel) = match &source.chart {
            Some(_) => (SourceKind::HelmRepository, None, PathBuf::new()),
            None => {
                let source_path = |problem| RenderFailure::SourcePath {
                    path: source.path.clone(),
                    problem,
                };
                let dir_rel = paths::source_path(&source.path).map_err(source_path)?;
                let dir =
                    paths::resolve_in_repo(request.repo_dir, &dir_rel).map_err(source_path)?;
                if !dir.is_dir() {
                    return Err(source_path(PathProblem::Unreadable(
                        "not a directory".to_owned(),
                    )));
                }
                (detect_kind(&dir), Some(dir), dir_rel)
            }
        };
        let helm = match kind {
            SourceKind::HelmChart | SourceKind::HelmRepository => {
                Some(self.plan_helm(request, kind, &dir_rel)?)
            }
            SourceKind::Directory | SourceKind::Kustomize => None,
        };
        let mut parameters = json!({"kind": kind.name(), "repoURL": source.repo_url});
        if let Some(helm) = &helm {
            if kind == SourceKind::HelmRepository {
                // For Git the commit pins the chart; for a Helm repository the version does.
                parameters["chart"] = json!(source.chart);
                parameters["targetRevision"] = json!(source.target_revision);
            }
            parameters["helm"] = json!({
                "releaseName": helm.release,
                "namespace": helm.namespace,
                "valueFiles": source.helm.value_files,
                "inline": helm.inline,
                "parameters": source.helm.parameters,
            });
            parameters["cluster"] = json!(request.cluster);
        }
        let key = CacheKey::new(request.commit, &dir_rel.to_string_lossy(), &parameters);
        let target = match (dir, helm) {
            (Some(dir), Some(helm)) => Target::HelmChart(dir, helm),
            (None, Some(helm)) => Target::HelmRepository(helm),
            (Some(dir), None) if kind == SourceKind::Kustomize => Target::Kustomize(dir),
            (Some(dir), None) => Target::Directory(dir),
            (None, None) => {
                return Err(invalid(
                    "source",
                    &source.repo_url,
                    "neither a chart nor a path".to_owned(),
                ));
            }
        };
        Ok(Plan {
            kind,
            dir_rel,
            target,
            key,
        })
    }

    fn plan_helm(
        &self,
        request: &RenderRequest<'_>,
        kind: SourceKind,
        dir_rel: &Path,
    ) -> Result<HelmPlan, RenderFailure> {
        let options = &request.source.helm;
        let release = options
            .release_name
            .clone()
            .unwrap_or_else(|| request.app.to_owned());
        helm::check_release_name(&release)
            .map_err(|reason| invalid("helm release name", &release, reason))?;
        let namespace = options
            .namespace
            .clone()
            .unwrap_or_else(|| request.namespace.to_owned());
        helm::check_namespace(&namespace)
            .map_err(|reason| invalid("helm namespace", &namespace, reason))?;
        if let Some(version) = &request.cluster.kube_version {
            helm::check_kube_version(version)
                .map_err(|reason| invalid("kubernetes version", version, reason))?;
        }
        for api in &request.cluster.api_versions {
            helm::check_api_version(api).map_err(|reason| invalid("api version", api, reason))?;
        }
        if kind == SourceKind::HelmRepository {
            let chart = request.source.chart.as_deref().unwrap_or_default();
            if chart.is_empty() || chart.contains(['/', '\\']) || chart.starts_with('.') {
                return Err(invalid(
                    "helm chart name",
                    chart,
                    "must be a plain chart name".to_owned(),
                ));
            }
            if request.source.target_revision.is_empty()
                || request.source.target_revision.contains(['/', '\\'])
            {
                return Err(invalid(
                    "chart version",
                    &request.source.target_revision,
                    "must be an exact chart version".to_owned(),
                ));
            }
        }
        let mut value_files = Vec::new();
        for file in &options.value_files {
            let refuse = |problem: String| RenderFailure::ValueFile {
                file: file.clone(),
                problem,
            };
            if kind == SourceKind::HelmRepository {
                return Err(refuse(
                    "cannot be read for a chart from a Helm repository; use values or valuesObject"
                        .to_owned(),
                ));
            }
            if file.contains("://") {
                return Err(refuse(
                    "is a URL; values files must come from the repository".to_owned(),
                ));
            }
            let relative =
                paths::value_file_path(dir_rel, file).map_err(|p| refuse(p.to_string()))?;
            let resolved = paths::resolve_in_repo(request.repo_dir, &relative)
                .map_err(|p| refuse(p.to_string()))?;
            let size = resolved
                .metadata()
                .map_err(|e| refuse(format!("cannot be read: {e}")))?
                .len();
            if !resolved.is_file() {
                return Err(refuse("is not a file".to_owned()));
            }
            if size > self.limits.max_file_bytes {
                return Err(refuse(format!(
                    "is {size} bytes, more than the limit of {}",
                    self.limits.max_file_bytes
                )));
            }
            value_files.push(resolved);
        }
        let inline = match (&options.values_object, &options.values) {
            (Some(object), _) => Some(object.to_string()),
            (None, Some(values)) if !values.trim().is_empty() => Some(values.clone()),
            (None, _) => None,
        };
        if let Some(inline) = &inline
            && inline.len() as u64 > self.limits.max_file_bytes
        {
            return Err(invalid(
                "helm values",
                "(inline)",
                format!("more than {} bytes", self.limits.max_file_bytes),
            ));
        }
        Ok(HelmPlan {
            release,
            namespace,
            value_files,
            inline,
        })
    }

    async fn execute(
        &self,
        request: &RenderRequest<'_>,
        plan: &Plan,
    ) -> Result<Vec<Value>, RenderFailure> {
        let repo = request.repo_dir.to_owned();
        let limits = self.limits;
        match &plan.target {
            Target::Directory(dir) => {
                let dir = dir.clone();
                blocking(move || {
                    read_manifest_tree(&dir, &repo, &limits.manifest()).map_err(Into::into)
                })
                .await
            }
            Target::Kustomize(dir) => {
                let dir_rel = plan.dir_rel.clone();
                blocking(move || kustomize::check(&repo, &dir_rel, &limits)).await?;
                let scratch = scratch_dir()?;
                kustomize::build(&self.kustomize, dir, scratch.path(), &self.limits).await
            }
            Target::HelmChart(dir, helm_plan) => {
                let checked = dir.clone();
                blocking(move || {
                    check_tree(&checked, &repo, &limits.manifest())
                        .map(drop)
                        .map_err(Into::into)
                })
                .await?;
                let scratch = scratch_dir()?;
                let name = plan.dir_rel.to_string_lossy().into_owned();
                self.helm_template(request, helm_plan, dir, scratch.path(), &name)
                    .await
            }
            Target::HelmRepository(helm_plan) => {
                let scratch = scratch_dir()?;
                let chart = request.source.chart.as_deref().unwrap_or_default();
                let archive = helm_repo::fetch_chart(
                    &self.http,
                    &request.source.repo_url,
                    chart,
                    &request.source.target_revision,
                    &self.limits,
                    scratch.path(),
                )
                .await?;
                self.helm_template(request, helm_plan, &archive, scratch.path(), chart)
                    .await
            }
        }
    }

    async fn helm_template(
        &self,
        request: &RenderRequest<'_>,
        plan: &HelmPlan,
        chart: &Path,
        scratch: &Path,
        chart_name: &str,
    ) -> Result<Vec<Value>, RenderFailure> {
        let mut values = plan.value_files.clone();
        if let Some(inline) = &plan.inline {
            let path = scratch.join("inline-values.yaml");
            std::fs::write(&path, inline).map_err(|source| RenderFailure::Io {
                path: path.clone(),
                source,
            })?;
            values.push(path);
        }
        let command = helm::TemplateCommand {
            release: &plan.release,
            chart,
            namespace: &plan.namespace,
            cluster: request.cluster,
            values: &values,
            parameters: &request.source.helm.parameters,
        };
        helm::template(&self.helm, &command, scratch, &self.limits, chart_name).await
    }
}

/// A fresh scratch directory for one tool run: its HOME, caches and inline values.
fn scratch_dir() -> Result<tempfile::TempDir, RenderFailure> {
    tempfile::Builder::new()
        .prefix("flotilla-render-")
        .tempdir()
        .map_err(|source| RenderFailure::Io {
            path: std::env::temp_dir(),
            source,
        })
}

/// Runs blocking file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RenderFailure> + Send + 'static,
) -> Result<T, RenderFailure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| RenderFailure::Io {
            path: PathBuf::from("<render task>"),
            source: std::io::Error::other(join.to_string()),
        })?
}
