//! The deciding half of reconciliation, pure: which Applications exist (declared ones plus
//! what each ApplicationSet generates, a failing set keeping what it generated last), which
//! cluster and namespace each one targets, whether its AppProject allows that, and what the
//! signed entry carries (sync policy, `limits`, ignoreDifferences). It also checks rendered
//! objects against the project (namespaceResourceBlacklist, destination namespaces).
//!
//! It reads Git only through [`GitTree`] and must not fetch, render, sign or store.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_shared::state::{self, Limits, SyncPolicy};
use serde_json::Value;

use crate::declarative::application::DEFAULT_PROJECT;
use crate::declarative::git_tree::GitTree;
use crate::declarative::glob::wildcard_matches;
use crate::declarative::{AppProject, Application, ApplicationSet, GeneratorInputs, generate};
use crate::publish::plan::GeneratorFailure;
use crate::render::{ClusterInfo, HelmOptions, HelmParameter, RenderSource};

/// A registered cluster as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterTarget {
    pub name: String,
    /// The API server URL its agent reports (empty when unknown).
    pub server: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Kubernetes version and API versions, for Helm.
    pub info: ClusterInfo,
}

impl ClusterTarget {
    /// The cluster as ApplicationSet generators see it.
    pub fn generator_cluster(&self) -> crate::declarative::Cluster {
        crate::declarative::Cluster {
            name: self.name.clone(),
            server: self.server.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

impl From<&crate::store::ClusterRecord> for ClusterTarget {
    fn from(record: &crate::store::ClusterRecord) -> Self {
        Self {
            name: record.name.clone(),
            server: record.server_url.clone().unwrap_or_default(),
            labels: record.labels.clone(),
            annotations: record.annotations.clone(),
            info: ClusterInfo {
                kube_version: record.kube_version.clone(),
                api_versions: record.api_versions.clone(),
            },
        }
    }
}

/// An ApplicationSet as declared, with the names it generated the last time it succeeded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeclaredAppSet {
    pub set: ApplicationSet,
    pub last_generated: Vec<String>,
}

/// The declarative configuration: Applications, ApplicationSets and AppProjects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeclaredConfig {
    pub applications: Vec<Application>,
    pub app_sets: Vec<DeclaredAppSet>,
    pub projects: Vec<AppProject>,
    /// Declarations that could not be read; reported with the expansion.
    pub problems: Vec<ConfigProblem>,
}

/// An Application to place, and the ApplicationSet that generated it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandedApp {
    pub app: Application,
    pub app_set: Option<String>,
}

/// The outcome of one ApplicationSet's generators: the generated names, or why they failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub app_set: String,
    pub outcome: Result<Vec<String>, String>,
}

/// What kind of problem a [`ConfigProblem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The application's destination is not a registered cluster.
    Destination,
    /// The application name is declared or generated twice.
    Duplicate,
    /// The ApplicationSet's generators failed.
    Generator,
    /// The stored declaration does not parse.
    Invalid,
}

/// An application that reaches no cluster, or an ApplicationSet that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `application NAME` or `application set NAME`.
    pub subject: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// Every Application of the configuration, after generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expansion {
    pub apps: Vec<ExpandedApp>,
    pub generations: Vec<Generation>,
    /// Sets whose generators failed; their previously generated apps are kept as published.
    pub failures: Vec<GeneratorFailure>,
    pub problems: Vec<ConfigProblem>,
}

/// Declared Applications first, then each ApplicationSet's in name order. A name that
/// appears twice keeps its first owner; the later one is reported. A set whose generators
/// fail yields no apps now and a [`GeneratorFailure`] naming what it generated before.
pub fn expand(config: &DeclaredConfig, clusters: &[ClusterTarget], git: &dyn GitTree) -> Expansion {
    let generator_clusters: Vec<_> = clusters
        .iter()
        .map(ClusterTarget::generator_cluster)
        .collect();
    let inputs = GeneratorInputs {
        clusters: &generator_clusters,
        git,
    };
    let mut out = Expansion {
        problems: config.problems.clone(),
        ..Expansion::default()
    };
    let mut owners: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut add = |out: &mut Expansion, app: Application, app_set: Option<String>| {
        let name = app.metadata.name.clone();
        if let Some(owner) = owners.get(&name) {
            let owner = match owner {
                Some(set) => format!("application set {set}"),
                None => "a declared application".to_owned(),
            };
            out.problems.push(ConfigProblem {
                subject: format!("application {name}"),
                kind: ProblemKind::Duplicate,
                message: format!(
                    "{} declares it again, but it already comes from {owner}; the first one is kept",
                    app_set.as_deref().map_or("the configuration".to_owned(), |s| format!(
                        "application set {s}"
                    ))
                ),
            });
            return;
        }
        owners.insert(name, app_set.clone());
        out.apps.push(ExpandedApp { app, app_set });
    };
    for app in &config.applications {
        add(&mut out, app.clone(), None);
    }
    let mut sets: Vec<&DeclaredAppSet> = config.app_sets.iter().collect();
    sets.sort_by(|a, b| a.set.metadata.name.cmp(&b.set.metadata.name));
    for declared in sets {
        let name = declared.set.metadata.name.clone();
        match generate(&declared.set, &inputs) {
            Ok(apps) => {
                out.generations.push(Generation {
                    app_set: name.clone(),
                    outcome: Ok(apps.iter().map(|a| a.metadata.name.clone()).collect()),
                });
                for app in apps {
                    add(&mut out, app, Some(name.clone()));
                }
            }
            Err(error) => {
                let error = error.to_string();
                out.problems.push(ConfigProblem {
                    subject: format!("application set {name}"),
                    kind: ProblemKind::Generator,
                    message: format!(
                        "{error}; keeping the {} application(s) it generated before",
                        declared.last_generated.len()
                    ),
                });
                out.generations.push(Generation {
                    app_set: name.clone(),
                    outcome: Err(error.clone()),
                });
                out.failures.push(GeneratorFailure {
                    app_set: name,
                    error,
                    previous_apps: declared.last_generated.clone(),
                });
            }
        }
    }
    out
}

/// Why an application reaches no cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("destination cluster {name:?} is not registered")]
    UnknownName { name: String },
    #[error("destination server {server} is not the API server of any registered cluster")]
    UnknownServer { server: String },
    #[error("destination server {server} is ambiguous: clusters {clusters} report it")]
    AmbiguousServer { server: String, clusters: String },
    #[error("destination names no cluster (one of name or server is required)")]
    Missing,
}

/// The registered cluster an application's destination names, by `name` or by `server`.
pub fn destination<'c>(
    app: &Application,
    clusters: &'c [ClusterTarget],
) -> Result<&'c ClusterTarget, DestinationError> {
    let destination = &app.spec.destination;
    let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(name) = set(&destination.name) {
        return clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or(DestinationError::UnknownName { name });
    }
    let Some(server) = set(&destination.server) else {
        return Err(DestinationError::Missing);
    };
    let normalized = server.trim_end_matches('/');
    let matching: Vec<&ClusterTarget> = clusters
        .iter()
        .filter(|c| !c.server.is_empty() && c.server.trim_end_matches('/') == normalized)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(DestinationError::UnknownServer { server }),
        many => Err(DestinationError::AmbiguousServer {
            server,
            clusters: many
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The namespace an application deploys to: its destination's, else `default`.
pub fn namespace(app: &Application) -> String {
    app.spec
        .destination
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// The signed sync policy of an application.
pub fn sync_policy(app: &Application) -> SyncPolicy {
    SyncPolicy {
        automated: app.automated(),
        prune: app.prune(),
        self_heal: app.self_heal(),
        create_namespace: app.create_namespace(),
        ..SyncPolicy::default()
    }
}

/// The signed ignoreDifferences of an application.
pub fn ignore_differences(app: &Application) -> Vec<state::IgnoreDifference> {
    app.spec
        .ignore_differences
        .iter()
        .map(|d| state::IgnoreDifference {
            group: d.group.clone(),
            kind: d.kind.clone(),
            name: d.name.clone(),
            namespace: d.namespace.clone(),
            json_pointers: d.json_pointers.clone(),
        })
        .collect()
}

/// What an app's project permits on one cluster. The implicit `default` project (when the
/// configuration declares none by that name) permits everything, as in Argo CD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRules {
    pub project: String,
    /// Namespace patterns of the project's destinations for this cluster (`*` allowed);
    /// `None`: no limit.
    pub namespaces: Option<Vec<String>>,
    /// The clusterResourceWhitelist; `None`: no limit.
    pub cluster_resources: Option<Vec<state::GroupKind>>,
    /// The namespaceResourceBlacklist.
    pub blacklist: Vec<state::GroupKind>,
}

impl ProjectRules {
    /// No limit at all.
    pub fn open(project: &str) -> Self {
        Self {
            project: project.to_owned(),
            namespaces: None,
            cluster_resources: None,
            blacklist: Vec::new(),
        }
    }

    /// The rules of `project` for `cluster`.
    pub fn of(project: &AppProject, cluster: &ClusterTarget) -> Self {
        let matches = |pattern: &Option<String>, value: &str| {
            pattern
                .as_deref()
                .is_none_or(|p| wildcard_matches(p, value))
        };
        let mut namespaces = BTreeSet::new();
        for d in &project.spec.destinations {
            if (d.name.is_some() || d.server.is_some())
                && matches(&d.name, &cluster.name)
                && matches(&d.server, &cluster.server)
            {
                namespaces.insert(d.namespace.clone().unwrap_or_else(|| "*".to_owned()));
            }
        }
        let group_kind = |gk: &crate::declarative::project::GroupKind| state::GroupKind {
            group: gk.group.clone(),
            kind: gk.kind.clone(),
        };
        Self {
            project: project.metadata.name.clone(),
            namespaces: Some(namespaces.into_iter().collect()),
            cluster_resources: Some(
                project
                    .spec
                    .cluster_resource_whitelist
                    .iter()
                    .map(group_kind)
                    .collect(),
            ),
            blacklist: project
                .spec
                .namespace_resource_blacklist
                .iter()
                .map(group_kind)
                .collect(),
        }
    }

    fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| wildcard_matches(p, namespace)))
    }

    /// The signed limits for an app deploying to `namespace` with `objects`. The agent reads
    /// exact namespaces and `*`, so a partial pattern (`team-a-*`) is replaced by the
    /// namespaces the app actually uses that it matches.
    pub fn limits(&self, namespace: &str, objects: &[Value]) -> Option<Limits> {
        if self.namespaces.is_none() && self.cluster_resources.is_none() {
            return None;
        }
        let namespaces = self.namespaces.as_ref().map(|patterns| {
            let used: BTreeSet<&str> = std::iter::once(namespace)
                .chain(objects.iter().filter_map(object_namespace))
                .collect();
            let mut out = BTreeSet::new();
            for pattern in patterns {
                if pattern == "*" || !pattern.contains(['*', '?']) {
                    out.insert(pattern.clone());
                } else {
                    out.extend(
                        used.iter()
                            .filter(|ns| wildcard_matches(pattern, ns))
                            .map(|ns| (*ns).to_owned()),
                    );
                }
            }
            out.into_iter().collect()
        });
        Some(Limits {
            namespaces,
            cluster_resources: self.cluster_resources.clone(),
        })
    }

    /// Refuses objects of a blacklisted kind, objects in a namespace the project does not
    /// allow on this cluster, and objects of a well-known cluster-scoped kind the project's
    /// `clusterResourceWhitelist` leaves out; the message names the application and the
    /// object. Cluster-scoped kinds the hub cannot know (those of CRDs) are the agent's to
    /// refuse, by the signed limits and the cluster's discovery.
    pub fn check_objects(&self, app: &str, objects: &[Value]) -> Result<(), String> {
        for object in objects {
            let (group, kind) = group_kind(object);
            if let Some(allowed) = &self.cluster_resources
                && CLUSTER_SCOPED.contains(&(group, kind))
                && !allowed.iter().any(|gk| {
                    wildcard_matches(&gk.group, group) && wildcard_matches(&gk.kind, kind)
                })
            {
                return Err(format!(
                    "application {app}: {} is of the cluster-scoped kind {}, which project {} does not allow (clusterResourceWhitelist)",
                    describe(object),
                    shown_kind(group, kind),
                    self.project
                ));
            }
            if self
                .blacklist
                .iter()
                .any(|gk| wildcard_matches(&gk.group, group) && wildcard_matches(&gk.kind, kind))
            {
                return Err(format!(
                    "application {app}: {} is of kind {}, which project {} does not allow (namespaceResourceBlacklist)",
                    describe(object),
                    shown_kind(group, kind),
                    self.project
                ));
            }
            if let Some(ns) = object_namespace(object)
                && !self.allows_namespace(ns)
            {
                return Err(format!(
                    "application {app}: {} is in namespace {ns}, which project {} does not allow on this cluster",
                    describe(object),
                    self.project
                ));
            }
        }
        Ok(())
    }
}

/// Cluster-scoped kinds of Kubernetes itself, by (group, kind): what the hub refuses at render
/// time when a project's `clusterResourceWhitelist` leaves them out.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
];

fn object_namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty())
}

/// (group, kind) of an object; the core group is `""`.
fn group_kind(object: &Value) -> (&str, &str) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(group, _version)| group);
    (group, object["kind"].as_str().unwrap_or_default())
}

fn shown_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{group}/{kind}")
    }
}

fn describe(object: &Value) -> String {
    let (group, kind) = group_kind(object);
    let name = object["metadata"]["name"].as_str().unwrap_or("(unnamed)");
    match object_namespace(object) {
        Some(ns) => format!("{} {ns}/{name}", shown_kind(group, kind)),
        None => format!("{} {name}", shown_kind(group, kind)),
    }
}

/// An application placed on its cluster: everything but the revision and the render.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub app: String,
    pub app_set: Option<String>,
    pub cluster: String,
    pub namespace: String,
    /// The source as the render takes it (`target_revision` as declared).
    pub source: RenderSource,
    pub sync_policy: SyncPolicy,
    pub ignore_differences: Vec<state::IgnoreDifference>,
    pub rules: ProjectRules,
    /// Why the project refuses the app here; the app then fails on this cluster alone.
    pub refusal: Option<String>,
}

/// Places an application on the cluster its destination names and checks its project:
/// the project must exist (`default` always does) and allow the source repository and the
/// destination. A refusal is kept in [`Placement::refusal`]; only an unknown destination is
/// an error, since then there is no cluster to report on.
pub fn place(
    expanded: &ExpandedApp,
    clusters: &[ClusterTarget],
    projects: &BTreeMap<String, AppProject>,
) -> Result<Placement, DestinationError> {
    let app = &expanded.app;
    let cluster = destination(app, clusters)?;
    let name = app.metadata.name.clone();
    let namespace = namespace(app);
    let source = render_source(app);
    let project_name = app.project();
    let (rules, refusal) = match projects.get(project_name) {
        Some(project) => {
            let refusal = if !project.allows_source(&source.repo_url) {
                Some(format!(
                    "application {name}: repository {} is not permitted in project {project_name} (sourceRepos)",
                    source.repo_url
                ))
            } else if !project.allows_destination(&cluster.name, &cluster.server, &namespace) {
                Some(format!(
                    "application {name}: destination cluster {} namespace {namespace} is not permitted in project {project_name} (destinations)",
                    cluster.name
                ))
            } else {
                None
            };
            (ProjectRules::of(project, cluster), refusal)
        }
        None if project_name == DEFAULT_PROJECT => (ProjectRules::open(project_name), None),
        None => (
            // Nothing is allowed under a project that does not exist.
            ProjectRules {
                project: project_name.to_owned(),
                namespaces: Some(Vec::new()),
                cluster_resources: Some(Vec::new()),
                blacklist: Vec::new(),
            },
            Some(format!(
                "application {name}: project {project_name} does not exist"
            )),
        ),
    };
    Ok(Placement {
        app: name,
        app_set: expanded.app_set.clone(),
        cluster: cluster.name.clone(),
        namespace,
        source,
        sync_policy: sync_policy(app),
        ignore_differences: ignore_differences(app),
        rules,
        refusal,
    })
}

/// The render's view of an application's source.
pub fn render_source(app: &Application) -> RenderSource {
    let Some(source) = &app.spec.source else {
        return RenderSource::default();
    };
    let helm = source.helm.as_ref();
    RenderSource {
        repo_url: source.repo_url.clone(),
        path: source.path.clone().unwrap_or_default(),
        target_revision: source
            .target_revision
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "HEAD".to_owned()),
        chart: source.chart.clone(),
        helm: HelmOptions {
            value_files: helm.map(|h| h.value_files.clone()).unwrap_or_default(),
            values: helm.and_then(|h| h.values.clone()),
            values_object: helm.and_then(|h| h.values_object.clone()),
            parameters: helm
                .map(|h| {
                    h.parameters
                        .iter()
                        .map(|p| HelmParameter {
                            name: p.name.clone(),
                            value: p.value.clone(),
                            force_string: p.force_string,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            release_name: helm.and_then(|h| h.release_name.clone()),
            namespace: None,
        },
    }
}

/// Whether an app is rendered now: automated sync is on, or a sync of it was asked for.
pub fn wants_render(placement: &Placement, sync_requested: bool) -> bool {
    placement.sync_policy.automated || sync_requested
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declarative::git_tree::MemoryTree;
    use serde_json::json;

    fn cluster(name: &str, env: &str) -> ClusterTarget {
        ClusterTarget {
            name: name.to_owned(),
            server: format!("https://{name}.example:6443"),
            labels: [("env".to_owned(), env.to_owned())].into(),
            ..ClusterTarget::default()
        }
    }

    fn clusters() -> Vec<ClusterTarget> {
        vec![
            cluster("prod-east", "prod"),
            cluster("prod-west", "prod"),
            cluster("lab", "dev"),
        ]
    }

    fn app(value: Value) -> Application {
        serde_json::from_value(value).expect("an application")
    }

    fn web(destination: Value) -> Application {
        app(json!({"metadata": {"name": "web"},
                   "spec": {"project": "team-a",
                            "source": {"repoURL": "https://git.example/team-a/web.git", "path": "deploy"},
                            "destination": destination}}))
    }

    fn project() -> AppProject {
        serde_json::from_value(json!({
            "metadata": {"name": "team-a"},
            "spec": {"sourceRepos": ["https://git.example/team-a/*"],
                     "destinations": [{"name": "prod-*", "namespace": "team-a-*"},
                                      {"name": "prod-east", "namespace": "shared"},
                                      {"server": "https://lab.example:6443"}],
                     "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
                     "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"}]}
        }))
        .expect("a project")
    }

    fn projects() -> BTreeMap<String, AppProject> {
        [("team-a".to_owned(), project())].into()
    }

    /// Places `app` and shows `cluster/namespace`, the refusal, or the destination error.
    fn check_place(app: Application, expected: &str) {
        let expanded = ExpandedApp { app, app_set: None };
        let got = match place(&expanded, &clusters(), &projects()) {
            Ok(p) => match p.refusal {
                Some(refusal) => refusal,
                None => format!("{}/{}", p.cluster, p.namespace),
            },
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn destinations_resolve_by_name_or_server() {
        check_place(
            web(json!({"name": "prod-east", "namespace": "team-a-web"})),
            "prod-east/team-a-web",
        );
        check_place(
            web(json!({"server": "https://prod-west.example:6443/", "namespace": "team-a-web"})),
            "prod-west/team-a-web",
        );
        check_place(
            web(json!({"name": "nowhere"})),
            "destination cluster \"nowhere\" is not registered",
        );
        check_place(
            web(json!({"server": "https://10.0.0.9"})),
            "destination server https://10.0.0.9 is not the API server of any registered cluster",
        );
        let mut twins = clusters();
        twins[2].server = twins[0].server.clone();
        let expanded = ExpandedApp {
            app: web(json!({"server": "https://prod-east.example:6443"})),
            app_set: None,
        };
        assert_eq!(
            place(&expanded, &twins, &projects())
                .expect_err("ambiguous")
                .to_string(),
            "destination server https://prod-east.example:6443 is ambiguous: clusters prod-east, lab report it"
        );
    }

    #[test]
    fn projects_refuse_repositories_destinations_and_unknown_projects() {
        check_place(
            web(json!({"name": "prod-east", "namespace": "kube-system"})),
            "application web: destination cluster prod-east namespace kube-system is not permitted in project team-a (destinations)",
        );
        check_place(
            web(json!({"name": "prod-east"})),
            "application web: destination cluster prod-east namespace default is not permitted in project team-a (destinations)",
        );
        check_place(
            web(json!({"name": "lab", "namespace": "anything"})),
            "lab/anything",
        );
        let mut other = web(json!({"name": "prod-east", "namespace": "team-a-web"}));
        other.spec.source.as_mut().expect("source").repo_url =
            "https://git.example/team-b/web.git".to_owned();
        check_place(
            other,
            "application web: repository https://git.example/team-b/web.git is not permitted in project team-a (sourceRepos)",
        );
        let mut lost = web(json!({"name": "prod-east", "namespace": "team-a-web"}));
        lost.spec.project = "team-z".to_owned();
        check_place(lost, "application web: project team-z does not exist");
        let mut open = web(json!({"name": "prod-east", "namespace": "kube-system"}));
        open.spec.project = String::new();
        check_place(open, "prod-east/kube-system");
    }

    fn limits(rules: &ProjectRules, namespace: &str, objects: &[Value]) -> String {
        serde_json::to_string(&rules.limits(namespace, objects)).expect("json")
    }

    #[test]
    fn limits_come_from_the_project_for_that_cluster() {
        let p = project();
        let east = ProjectRules::of(&p, &clusters()[0]);
        let cm = |ns: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}});
        assert_eq!(
            limits(&east, "team-a-web", &[cm("team-a-web"), cm("team-a-jobs")]),
            r#"{"namespaces":["shared","team-a-jobs","team-a-web"],"clusterResources":[{"group":"","kind":"Namespace"}]}"#
        );
        let west = ProjectRules::of(&p, &clusters()[1]);
        assert_eq!(
            limits(&west, "team-a-web", &[]),
            r#"{"namespaces":["team-a-web"],"clusterResources":[{"group":"","kind":"Namespace"}]}"#
        );
        let lab = ProjectRules::of(&p, &clusters()[2]);
        assert_eq!(
            limits(&lab, "x", &[]),
            r#"{"namespaces":["*"],"clusterResources":[{"group":"","kind":"Namespace"}]}"#
        );
        assert_eq!(limits(&ProjectRules::open("default"), "x", &[]), "null");
    }

    #[test]
    fn objects_are_checked_against_the_project() {
        let east = ProjectRules::of(&project(), &clusters()[0]);
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
                           "metadata": {"name": "q", "namespace": "team-a-web"}});
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "web", "namespace": "team-a-web"}});
        let stray = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web", "namespace": "kube-system"}});
        assert_eq!(
            east.check_objects("web", std::slice::from_ref(&deploy)),
            Ok(())
        );
        assert_eq!(
            east.check_objects("web", &[deploy.clone(), quota]),
            Err("application web: ResourceQuota team-a-web/q is of kind ResourceQuota, which project team-a does not allow (namespaceResourceBlacklist)".to_owned())
        );
        assert_eq!(
            east.check_objects("web", &[stray]),
            Err("application web: apps/Deployment kube-system/web is in namespace kube-system, which project team-a does not allow on this cluster".to_owned())
        );
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                             "metadata": {"name": "root"}});
        assert_eq!(
            east.check_objects("web", std::slice::from_ref(&binding)),
            Err("application web: rbac.authorization.k8s.io/ClusterRoleBinding root is of the cluster-scoped kind rbac.authorization.k8s.io/ClusterRoleBinding, which project team-a does not allow (clusterResourceWhitelist)".to_owned())
        );
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a-web"}});
        assert_eq!(
            east.check_objects("web", &[namespace]),
            Ok(()),
            "whitelisted"
        );
        assert_eq!(
            ProjectRules::open("default").check_objects("web", &[deploy, binding]),
            Ok(())
        );
    }

    #[test]
    fn sync_policy_and_ignore_differences_are_carried() {
        let a = app(json!({"metadata": {"name": "web"},
            "spec": {"source": {"repoURL": "r"}, "destination": {"name": "lab"},
                     "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                                    "syncOptions": ["CreateNamespace=true"]},
                     "ignoreDifferences": [{"group": "apps", "kind": "Deployment",
                                            "jsonPointers": ["/spec/replicas"]}]}}));
        let policy = sync_policy(&a);
        assert!(policy.automated && policy.prune && policy.self_heal && policy.create_namespace);
        assert_eq!(ignore_differences(&a)[0].json_pointers, ["/spec/replicas"]);
        let manual = app(json!({"metadata": {"name": "web"},
            "spec": {"source": {"repoURL": "r"}, "destination": {"name": "lab"}}}));
        let policy = sync_policy(&manual);
        assert!(!policy.automated && !policy.prune && !policy.create_namespace);
        let placement = place(
            &ExpandedApp {
                app: manual,
                app_set: None,
            },
            &clusters(),
            &BTreeMap::new(),
        )
        .expect("placed");
        assert!(!wants_render(&placement, false));
        assert!(wants_render(&placement, true));
        assert_eq!(placement.source.target_revision, "HEAD");
    }

    fn appset(value: Value) -> ApplicationSet {
        serde_json::from_value(value).expect("an application set")
    }

    fn prod_set() -> ApplicationSet {
        appset(json!({"metadata": {"name": "web"},
            "spec": {"generators": [{"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}],
                     "template": {"metadata": {"name": "web-{{name}}"},
                                  "spec": {"source": {"repoURL": "r", "path": "web"},
                                           "destination": {"name": "{{name}}", "namespace": "web"}}}}}))
    }

    fn dirs_set() -> ApplicationSet {
        appset(json!({"metadata": {"name": "addons"},
            "spec": {"generators": [{"git": {"repoURL": "gone", "directories": [{"path": "addons/*"}]}}],
                     "template": {"metadata": {"name": "{{path.basename}}"},
                                  "spec": {"source": {"repoURL": "gone", "path": "{{path}}"},
                                           "destination": {"name": "lab"}}}}}))
    }

    fn names(expansion: &Expansion) -> Vec<String> {
        expansion
            .apps
            .iter()
            .map(|a| a.app.metadata.name.clone())
            .collect()
    }

    #[test]
    fn sets_expand_and_a_failing_set_keeps_what_it_generated() {
        let declared = web(json!({"name": "lab", "namespace": "x"}));
        let mut dup = declared.clone();
        dup.metadata.name = "web-prod-east".to_owned();
        let config = DeclaredConfig {
            applications: vec![declared, dup],
            app_sets: vec![
                DeclaredAppSet {
                    set: dirs_set(),
                    last_generated: vec!["grafana".to_owned()],
                },
                DeclaredAppSet {
                    set: prod_set(),
                    last_generated: Vec::new(),
                },
            ],
            ..DeclaredConfig::default()
        };
        let expansion = expand(&config, &clusters(), &MemoryTree::new());
        assert_eq!(names(&expansion), ["web", "web-prod-east", "web-prod-west"]);
        assert_eq!(
            expansion.generations,
            [
                Generation {
                    app_set: "addons".to_owned(),
                    outcome: Err(
                        "generator 0 (git): repository gone at HEAD: repository gone is not available"
                            .to_owned()
                    ),
                },
                Generation {
                    app_set: "web".to_owned(),
                    outcome: Ok(vec!["web-prod-east".to_owned(), "web-prod-west".to_owned()]),
                },
            ]
        );
        assert_eq!(expansion.failures[0].previous_apps, ["grafana"]);
        let problems: Vec<String> = expansion.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "application set addons: generator 0 (git): repository gone at HEAD: repository gone is not available; keeping the 1 application(s) it generated before",
                "application web-prod-east: application set web declares it again, but it already comes from a declared application; the first one is kept",
            ]
        );

        let tree = MemoryTree::new().with_file("gone", "addons/grafana/a.yaml", "");
        let expansion = expand(&config, &clusters(), &tree);
        assert_eq!(
            names(&expansion),
            ["web", "web-prod-east", "grafana", "web-prod-west"]
        );
        assert!(expansion.failures.is_empty());
    }
}
