//! `flotilla-hub render`: what one cluster will get from a file of Applications,
//! ApplicationSets and AppProjects, rendered from a local Git repository — each generated
//! application (name, destination, source, revision) and its objects as YAML, or exactly why
//! it cannot render. For users, and for reviewing a change before merging it.
//!
//! Repositories: every Git `repoURL` written in the file (Applications, Git generators, and
//! ApplicationSet templates where it is not templated) is read from `--repo`, fetched like any
//! local path into a scratch cache, at `HEAD` unless the app names another revision. A
//! `--rewrite FROM=TO` rule (git's `insteadOf`, longest prefix wins) takes precedence for
//! the URLs it matches, e.g. to serve a second repository from another local path or a
//! templated `repoURL`. Helm repository charts (`chart` set) are downloaded as the hub does.
//!
//! The path is the hub's own: [`super::Reconciler`] with this one cluster, every app treated
//! as if a sync was asked for. It prints and never stores or signs anything.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::placement::{ClusterTarget, DeclaredConfig, ProblemKind};
use super::{ReconcileError, ReconcileRequest, Reconciler, SyncRequests};
use crate::declarative::{self, ParseError};
use crate::git::{Credentials, FetchError, FetchOptions, Fetcher, Rewrites};
use crate::publish::plan::Content;
use crate::render::{ClusterInfo, RenderArgs, RenderConfig, RenderSetupError, Renderer};

/// The options of `flotilla-hub render`.
#[derive(Debug, Clone, clap::Args)]
pub struct PreviewArgs {
    /// A local Git repository; every Git repoURL of the file is read from it (see --rewrite).
    #[arg(long, env = "FLOTILLA_HUB_RENDER_REPO")]
    pub repo: PathBuf,
    /// A YAML file of Applications, ApplicationSets and AppProjects (argoproj.io/v1alpha1).
    #[arg(long, env = "FLOTILLA_HUB_RENDER_FILE")]
    pub file: PathBuf,
    /// The cluster to render for.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_CLUSTER")]
    pub cluster: String,
    /// A label of the cluster, KEY=VALUE; repeat for more.
    #[arg(long = "label", env = "FLOTILLA_HUB_RENDER_LABELS", value_delimiter = ',', value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// An annotation of the cluster, KEY=VALUE; repeat for more.
    #[arg(long = "annotation", env = "FLOTILLA_HUB_RENDER_ANNOTATIONS", value_delimiter = ',', value_parser = key_value)]
    pub annotations: Vec<(String, String)>,
    /// The cluster's API server URL (the `server` of generators and destinations).
    #[arg(long, env = "FLOTILLA_HUB_RENDER_SERVER", default_value = "")]
    pub server: String,
    /// The cluster's Kubernetes version for Helm, e.g. v1.35.4.
    #[arg(long, env = "FLOTILLA_HUB_RENDER_KUBE_VERSION")]
    pub kube_version: Option<String>,
    /// The cluster's API versions for Helm, comma-separated (apps/v1,monitoring.coreos.com/v1).
    #[arg(long, env = "FLOTILLA_HUB_RENDER_API_VERSIONS", value_delimiter = ',')]
    pub api_versions: Vec<String>,
    /// Read repository URLs starting with FROM from TO instead (git's insteadOf); repeat for
    /// more. URLs no rule matches are read from --repo.
    #[arg(long = "rewrite", env = "FLOTILLA_HUB_RENDER_REWRITES", value_delimiter = ',', value_parser = key_value)]
    pub rewrites: Vec<(String, String)>,
    #[command(flatten)]
    pub render: RenderArgs,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Why nothing could be previewed at all.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("repository {path}: {source}")]
    Repository {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("prepare the scratch repository cache: {0}")]
    Cache(#[source] std::io::Error),
    #[error(transparent)]
    Fetcher(#[from] FetchError),
    #[error(transparent)]
    Renderer(#[from] RenderSetupError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What the preview found: the YAML to print, notes for stderr, and the failures that make
/// the command fail (each naming its application or application set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview {
    pub yaml: String,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

/// Git repoURLs written literally in the configuration (Helm repositories excluded).
pub fn repository_urls(config: &DeclaredConfig) -> BTreeSet<String> {
    fn literal(source: &Value) -> Option<String> {
        let url = source.get("repoURL")?.as_str()?;
        let git = source.get("chart").is_none_or(Value::is_null);
        (git && !url.is_empty() && !url.contains("{{")).then(|| url.to_owned())
    }
    let mut urls = BTreeSet::new();
    for app in &config.applications {
        if let Some(source) = &app.spec.source
            && source.chart.is_none()
            && !source.repo_url.is_empty()
        {
            urls.insert(source.repo_url.clone());
        }
    }
    for declared in &config.app_sets {
        let spec = &declared.set.spec;
        urls.extend(literal(&spec.template["spec"]["source"]));
        for generator in &spec.generators {
            if let Some(template) = generator.template() {
                urls.extend(literal(&template["spec"]["source"]));
            }
            if let Some(git) = &generator.git
                && !git.repo_url.contains("{{")
            {
                urls.insert(git.repo_url.clone());
            }
        }
    }
    urls
}

/// The rewrites of a preview: the user's rules, and every literal URL no rule matches
/// mapped to `repo`.
pub fn preview_rewrites(
    user: &[(String, String)],
    urls: &BTreeSet<String>,
    repo: &str,
) -> Rewrites {
    let mut rewrites = Rewrites::default();
    for (from, to) in user {
        rewrites = rewrites.with(from, to);
    }
    for url in urls {
        if !user.iter().any(|(from, _)| url.starts_with(from.as_str())) {
            rewrites = rewrites.with(url, repo);
        }
    }
    rewrites
}

/// Renders the file for the cluster. Blocking: it starts its own runtime.
pub fn preview(args: &PreviewArgs) -> Result<Preview, PreviewError> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| PreviewError::Read {
        path: args.file.clone(),
        source,
    })?;
    let documents = declarative::parse_documents(&text).map_err(|source| PreviewError::Parse {
        path: args.file.clone(),
        source,
    })?;
    let (config, warnings) = DeclaredConfig::from_documents(documents);
    let mut out = Preview::default();
    out.notes
        .extend(warnings.iter().map(|w| format!("warning: {w}")));

    let repo = std::fs::canonicalize(&args.repo).map_err(|source| PreviewError::Repository {
        path: args.repo.clone(),
        source,
    })?;
    let urls = repository_urls(&config);
    let cache = tempfile::Builder::new()
        .prefix("flotilla-render-cache-")
        .tempdir()
        .map_err(PreviewError::Cache)?;
    let mut options = FetchOptions::new(cache.path());
    options.rewrites = preview_rewrites(&args.rewrites, &urls, &repo.to_string_lossy());
    let fetcher = Fetcher::new(options)?;
    let mut fetched = BTreeSet::new();
    for url in &urls {
        // Many URLs usually read one repository: fetch each effective URL once.
        if !fetched.insert(fetcher.effective_url(url)?) {
            continue;
        }
        // A failed fetch shows here; the apps and generators that need it then fail naming it.
        if let Err(error) = fetcher.fetch(url, &Credentials::None) {
            out.notes.push(format!("error: {error}"));
        }
    }

    let cluster = ClusterTarget {
        name: args.cluster.clone(),
        server: args.server.clone(),
        labels: args.labels.iter().cloned().collect(),
        annotations: args.annotations.iter().cloned().collect(),
        info: ClusterInfo {
            kube_version: args.kube_version.clone(),
            api_versions: args.api_versions.clone(),
        },
    };
    let renderer = Arc::new(Renderer::new(RenderConfig::from(&args.render))?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PreviewError::Runtime)?;
    let reconciliation = runtime.block_on(async {
        let reconciler = Reconciler::new(fetcher, renderer, None)?;
        let served = BTreeSet::new();
        Ok::<_, ReconcileError>(
            reconciler
                .reconcile(&ReconcileRequest {
                    config: &config,
                    clusters: std::slice::from_ref(&cluster),
                    served: &served,
                    sync: &SyncRequests::All,
                    pins: &[],
                })
                .await,
        )
    })?;

    for problem in &reconciliation.problems {
        match problem.kind {
            // Another cluster's application is not this preview's business.
            ProblemKind::Destination => out.notes.push(format!(
                "note: {problem}; it is not rendered for cluster {}",
                cluster.name
            )),
            ProblemKind::Duplicate | ProblemKind::Generator | ProblemKind::Invalid => {
                out.failures.push(problem.to_string());
            }
        }
    }
    let apps = reconciliation
        .input(&cluster.name)
        .map(|i| i.apps.as_slice())
        .unwrap_or_default();
    if apps.is_empty() {
        out.notes.push(format!(
            "note: no application targets cluster {}",
            cluster.name
        ));
    }
    for app in apps {
        let mut header = format!(
            "# application: {}\n# destination: cluster {}, namespace {}\n# source: {} path {}\n# revision: {}\n",
            app.name,
            cluster.name,
            app.namespace,
            app.source.repo_url,
            app.source.path,
            app.source.revision
        );
        if !app.sync_policy.automated {
            header.push_str("# sync: automated sync is off; this waits for an explicit sync\n");
        }
        match &app.content {
            Content::Rendered(objects) => {
                if objects.is_empty() {
                    let _ = write!(out.yaml, "---\n{header}# (no objects)\n");
                }
                for (i, object) in objects.iter().enumerate() {
                    let yaml = serde_saphyr::to_string(object).unwrap_or_else(|e| {
                        // A JSON value always serializes; say so rather than drop the object.
                        format!("# this object could not be written as YAML: {e}\n")
                    });
                    let head = if i == 0 { header.as_str() } else { "" };
                    let _ = write!(out.yaml, "---\n{head}{yaml}");
                    if !out.yaml.ends_with('\n') {
                        out.yaml.push('\n');
                    }
                }
            }
            Content::Failed(error) => out.failures.push(error.clone()),
            Content::Hold => out.notes.push(format!(
                "note: application {} is held and was not rendered",
                app.name
            )),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_rewrites_are_key_value_pairs() {
        assert_eq!(
            key_value("env=prod"),
            Ok(("env".to_owned(), "prod".to_owned()))
        );
        assert_eq!(
            key_value("https://a/=/srv/a=b"),
            Ok(("https://a/".to_owned(), "/srv/a=b".to_owned()))
        );
        assert_eq!(key_value("env"), Err("\"env\" is not KEY=VALUE".to_owned()));
        assert_eq!(key_value("=x"), Err("\"=x\" is not KEY=VALUE".to_owned()));
    }

    #[test]
    fn literal_urls_go_to_the_repository_unless_a_rule_matches() {
        let text = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web}
spec: {source: {repoURL: 'https://git.example/web.git', path: web}, destination: {name: east}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: chart}
spec: {source: {repoURL: 'https://charts.example', chart: podinfo, targetRevision: 6.0.0}, destination: {name: east}}
---
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: addons}
spec:
  generators:
  - git: {repoURL: 'https://git.example/addons.git', directories: [{path: '*'}]}
  template:
    metadata: {name: '{{path.basename}}'}
    spec: {source: {repoURL: 'https://mirror.example/{{path}}.git'}, destination: {name: east}}
";
        let (config, _) =
            DeclaredConfig::from_documents(declarative::parse_documents(text).expect("parses"));
        let urls = repository_urls(&config);
        assert_eq!(
            urls.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "https://git.example/addons.git",
                "https://git.example/web.git"
            ]
        );
        let rules = [(
            "https://git.example/addons".to_owned(),
            "/srv/addons".to_owned(),
        )];
        let rewrites = preview_rewrites(&rules, &urls, "/work/repo");
        assert_eq!(rewrites.apply("https://git.example/web.git"), "/work/repo");
        assert_eq!(
            rewrites.apply("https://git.example/addons.git"),
            "/srv/addons.git"
        );
        assert_eq!(
            rewrites.apply("https://mirror.example/x.git"),
            "https://mirror.example/x.git"
        );
    }
}
