//! Argo CD's `AppProject` (argoproj.io/v1alpha1), the subset Flotilla carries into each
//! app's signed `limits`: allowed source repositories, destinations, the cluster-scoped kinds
//! an app may create and the namespaced kinds it may not. Pure data and matching; it must
//! not decide what happens to a refused app.

use serde::{Deserialize, Serialize};

use super::application::ObjectMeta;
use super::glob::wildcard_matches;

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AppProjectSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Repository URL patterns (`*` matches anything).
    #[serde(default)]
    pub source_repos: Vec<String>,
    #[serde(default)]
    pub destinations: Vec<ProjectDestination>,
    /// Cluster-scoped kinds apps of this project may manage; empty allows none.
    #[serde(default)]
    pub cluster_resource_whitelist: Vec<GroupKind>,
    /// Namespaced kinds apps of this project may not manage.
    #[serde(default)]
    pub namespace_resource_blacklist: Vec<GroupKind>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A kind by API group (`""` is the core group); both may be `*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct GroupKind {
    #[serde(default)]
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    fn matches(&self, group: &str, kind: &str) -> bool {
        wildcard_matches(&self.group, group) && wildcard_matches(&self.kind, kind)
    }
}

impl AppProject {
    /// Whether an app of this project may take its source from `repo_url`.
    pub fn allows_source(&self, repo_url: &str) -> bool {
        self.spec
            .source_repos
            .iter()
            .any(|pattern| wildcard_matches(pattern, repo_url))
    }

    /// Whether an app may deploy to `namespace` of the cluster `cluster_name` at `server`. A
    /// project destination names the cluster by `name` or `server` (absent means any).
    pub fn allows_destination(&self, cluster_name: &str, server: &str, namespace: &str) -> bool {
        let matches = |pattern: &Option<String>, value: &str| {
            pattern
                .as_deref()
                .is_none_or(|p| wildcard_matches(p, value))
        };
        self.spec.destinations.iter().any(|d| {
            (d.name.is_some() || d.server.is_some())
                && matches(&d.name, cluster_name)
                && matches(&d.server, server)
                && matches(&d.namespace, namespace)
        })
    }

    /// Whether an app may manage the cluster-scoped kind `group`/`kind`.
    pub fn allows_cluster_resource(&self, group: &str, kind: &str) -> bool {
        self.spec
            .cluster_resource_whitelist
            .iter()
            .any(|gk| gk.matches(group, kind))
    }

    /// Whether an app may manage the namespaced kind `group`/`kind`.
    pub fn allows_namespaced_resource(&self, group: &str, kind: &str) -> bool {
        !self
            .spec
            .namespace_resource_blacklist
            .iter()
            .any(|gk| gk.matches(group, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project() -> AppProject {
        serde_json::from_value(json!({
            "metadata": {"name": "team-a"},
            "spec": {
                "sourceRepos": ["https://git.example/team-a/*"],
                "destinations": [{"name": "prod-*", "namespace": "team-a-*"},
                                 {"server": "https://10.0.0.1:6443", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
                "namespaceResourceBlacklist": [{"group": "*", "kind": "NetworkPolicy"}]
            }
        }))
        .expect("a project")
    }

    #[test]
    fn sources_and_destinations_match_wildcards() {
        let p = project();
        assert!(p.allows_source("https://git.example/team-a/web.git"));
        assert!(!p.allows_source("https://git.example/team-b/web.git"));
        assert!(p.allows_destination("prod-east", "https://x", "team-a-web"));
        assert!(!p.allows_destination("prod-east", "https://x", "kube-system"));
        assert!(p.allows_destination("lab", "https://10.0.0.1:6443", "kube-system"));
        assert!(!p.allows_destination("lab", "https://10.0.0.2:6443", "default"));
    }

    #[test]
    fn resource_lists() {
        let p = project();
        assert!(p.allows_cluster_resource("", "Namespace"));
        assert!(!p.allows_cluster_resource("rbac.authorization.k8s.io", "ClusterRole"));
        assert!(p.allows_namespaced_resource("apps", "Deployment"));
        assert!(!p.allows_namespaced_resource("networking.k8s.io", "NetworkPolicy"));
    }
}
