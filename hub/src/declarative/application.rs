//! Argo CD's `Application` (argoproj.io/v1alpha1), the subset Flotilla carries: one source
//! (Git path, Helm chart, Kustomize, directory), a destination cluster by `name` or `server`,
//! the sync policy (automated on or off, prune, selfHeal, sync options) and
//! ignoreDifferences. It only models and validates; it must not render or fetch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Warning;

/// The project an application without `spec.project` belongs to, as in Argo CD.
pub const DEFAULT_PROJECT: &str = "default";

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ApplicationSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// Empty means [`DEFAULT_PROJECT`]; see [`Application::project`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default)]
    pub destination: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifference>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(rename = "repoURL", default)]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// A chart of a Helm repository (`repoURL` is then the Helm repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySource>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Inline values as one YAML string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Inline values as an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_object: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub force_string: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySource {
    #[serde(default)]
    pub recurse: bool,
}

/// The target cluster, by exactly one of `name` or `server`, and the default namespace.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Present: automated sync is on (unless `enabled: false`); absent: a change waits for
    /// an explicit sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<Automated>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Automated {
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub self_heal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifference {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
}

/// Why an application is not valid, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidApplication {
    pub field: &'static str,
    pub reason: String,
}

impl Application {
    /// The project, `default` when none is set.
    pub fn project(&self) -> &str {
        if self.spec.project.is_empty() {
            DEFAULT_PROJECT
        } else {
            &self.spec.project
        }
    }

    /// Whether automated sync is on.
    pub fn automated(&self) -> bool {
        self.spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automated.as_ref())
            .is_some_and(|a| a.enabled != Some(false))
    }

    /// Whether automated sync prunes (only meaningful when [`Self::automated`]).
    pub fn prune(&self) -> bool {
        self.automated_policy().is_some_and(|a| a.prune)
    }

    pub fn self_heal(&self) -> bool {
        self.automated_policy().is_some_and(|a| a.self_heal)
    }

    fn automated_policy(&self) -> Option<&Automated> {
        self.spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automated.as_ref())
            .filter(|a| a.enabled != Some(false))
    }

    /// `CreateNamespace=true` among the sync options (the last one wins).
    pub fn create_namespace(&self) -> bool {
        self.sync_options()
            .filter_map(|o| o.strip_prefix("CreateNamespace="))
            .next_back()
            .is_some_and(|v| v == "true")
    }

    fn sync_options(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.spec
            .sync_policy
            .iter()
            .flat_map(|p| p.sync_options.iter().map(String::as_str))
    }

    /// Checks what Argo CD's admission checks and what Flotilla needs to place the app.
    pub fn validate(&self) -> Result<(), InvalidApplication> {
        if let Err(reason) = validate_name(&self.metadata.name) {
            return Err(InvalidApplication {
                field: "metadata.name",
                reason,
            });
        }
        let Some(source) = &self.spec.source else {
            return Err(InvalidApplication {
                field: "spec.source",
                reason: "is required".to_owned(),
            });
        };
        if source.repo_url.is_empty() {
            return Err(InvalidApplication {
                field: "spec.source.repoURL",
                reason: "is required".to_owned(),
            });
        }
        let destination = &self.spec.destination;
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        match (set(&destination.name), set(&destination.server)) {
            (true, true) => Err(InvalidApplication {
                field: "spec.destination",
                reason: "only one of name or server may be set".to_owned(),
            }),
            (false, false) => Err(InvalidApplication {
                field: "spec.destination",
                reason: "one of name or server is required".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Warnings for sync options Flotilla does not act on; `prefix` is the path of this
    /// application in its document (empty for an Application document).
    pub fn warnings(&self, prefix: &str) -> Vec<Warning> {
        let Some(policy) = &self.spec.sync_policy else {
            return Vec::new();
        };
        policy
            .sync_options
            .iter()
            .enumerate()
            .filter(|(_, option)| !SUPPORTED_SYNC_OPTIONS.contains(&option.as_str()))
            .map(|(i, option)| Warning {
                field: format!("{prefix}spec.syncPolicy.syncOptions[{i}]"),
                message: format!("{option} is not supported"),
            })
            .collect()
    }
}

/// Sync options Flotilla honours. Server-side apply is how the agent always applies.
const SUPPORTED_SYNC_OPTIONS: &[&str] = &[
    "CreateNamespace=true",
    "CreateNamespace=false",
    "ServerSideApply=true",
];

/// A Kubernetes object name (DNS-1123 subdomain), as an Application's name must be.
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() {
        Err("is required".to_owned())
    } else if name.len() > 253 {
        Err(format!("{name:?} is longer than 253 characters"))
    } else if !name.chars().all(valid_char)
        || !alnum(name.chars().next())
        || !alnum(name.chars().next_back())
    {
        Err(format!(
            "{name:?} is not a valid name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(value: Value) -> Application {
        serde_json::from_value(value).expect("an application")
    }

    fn check(value: Value, expected: Result<(), &str>) {
        assert_eq!(
            app(value).validate().map_err(|e| e.to_string()),
            expected.map_err(str::to_owned)
        );
    }

    fn base() -> Value {
        json!({"metadata": {"name": "web"},
               "spec": {"source": {"repoURL": "https://git.example/r.git", "path": "web"},
                        "destination": {"name": "east", "namespace": "web"}}})
    }

    #[test]
    fn validation_names_the_field() {
        check(base(), Ok(()));
        let mut v = base();
        v["metadata"]["name"] = json!("{{.name}}-guestbook");
        check(
            v,
            Err(
                "metadata.name: \"{{.name}}-guestbook\" is not a valid name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
            ),
        );
        let mut v = base();
        v["spec"]["destination"]["server"] = json!("https://1.2.3.4");
        check(
            v,
            Err("spec.destination: only one of name or server may be set"),
        );
        let mut v = base();
        v["spec"]["destination"] = json!({"namespace": "web"});
        check(
            v,
            Err("spec.destination: one of name or server is required"),
        );
        let mut v = base();
        v["spec"]["source"] = Value::Null;
        check(v, Err("spec.source: is required"));
    }

    #[test]
    fn sync_policy_reading() {
        let a = app(base());
        assert!(!a.automated() && !a.prune() && !a.create_namespace());
        assert_eq!(a.project(), "default");
        let mut v = base();
        v["spec"]["syncPolicy"] = json!({"automated": {"prune": true},
                                         "syncOptions": ["CreateNamespace=true", "Validate=false"]});
        let a = app(v);
        assert!(a.automated() && a.prune() && !a.self_heal() && a.create_namespace());
        let warnings: Vec<String> = a.warnings("").iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            ["spec.syncPolicy.syncOptions[1]: Validate=false is not supported"]
        );
        let mut v = base();
        v["spec"]["syncPolicy"] = json!({"automated": {"enabled": false, "prune": true}});
        let a = app(v);
        assert!(!a.automated() && !a.prune());
        let mut v = base();
        v["spec"]["syncPolicy"] = json!({"automated": {}});
        assert!(app(v).automated());
    }
}
