//! Declarative configuration in Argo CD's schema (argoproj.io/v1alpha1, the common subset):
//! `Application`, `ApplicationSet` and `AppProject` documents read from multi-document YAML
//! (YAML 1.1 as Kubernetes reads it, within serde-saphyr's budget), and ApplicationSet
//! generation ([`generate`]).
//!
//! Every field Flotilla does not support comes back as a [`Warning`] naming its path
//! (`spec.source.plugin is not supported`); nothing is dropped silently. Inside a generator,
//! where an unknown field could change which clusters get an application, and for generators
//! Flotilla does not implement, parsing fails instead, naming the field or generator.
//!
//! Pure logic: no network, no database, no Git. Git content comes through [`git_tree::GitTree`].

pub mod application;
pub mod appset;
pub mod generate;
pub mod git_tree;
pub mod glob;
pub mod project;
pub mod template;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use application::Application;
pub use appset::ApplicationSet;
pub use generate::{Cluster, GenerateError, GeneratorInputs, generate};
pub use project::AppProject;

/// The only apiVersion read.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";

/// A field that was read but will have no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Path of the field in its document, like `spec.generators[0].git.requeueAfterSeconds`.
    pub field: String,
    pub message: String,
}

impl Warning {
    pub(crate) fn unsupported(field: impl Into<String>) -> Self {
        Warning {
            field: field.into(),
            message: "is not supported".to_owned(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.starts_with("is ") {
            write!(f, "{} {}", self.field, self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A parsed value and the warnings about fields it ignores.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    pub value: T,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    Application(Box<Application>),
    ApplicationSet(ApplicationSet),
    AppProject(AppProject),
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("parse declarative configuration: invalid YAML: {0}")]
    Yaml(String),
    #[error("parse document {index}: {reason}")]
    Document { index: usize, reason: String },
    #[error("parse {kind} {name}: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("parse {kind} {name}: {field} is not supported")]
    Unsupported {
        kind: &'static str,
        name: String,
        field: String,
    },
    #[error("parse {kind} {name}: generator {generator:?} is not supported ({field})")]
    UnsupportedGenerator {
        kind: &'static str,
        name: String,
        generator: String,
        field: String,
    },
}

/// Reads every document of a multi-document YAML (or JSON) text; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Parsed<Document>>, ParseError> {
    let mut options = serde_saphyr::Options::default();
    // Kubernetes reads YAML 1.1: `0644` is an octal number.
    options.legacy_octal_numbers = true;
    let values: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| ParseError::Yaml(e.to_string()))?;
    values
        .into_iter()
        .enumerate()
        .filter(|(_, value)| !value.is_null())
        .map(|(index, value)| parse_document(index, value))
        .collect()
}

/// Reads one document already turned into JSON.
pub fn parse_document(index: usize, value: Value) -> Result<Parsed<Document>, ParseError> {
    let Value::Object(mut map) = value else {
        return Err(ParseError::Document {
            index,
            reason: "not an object".to_owned(),
        });
    };
    let api_version = map.remove("apiVersion");
    let kind = map.remove("kind");
    let (Some(Value::String(api_version)), Some(Value::String(kind))) = (api_version, kind) else {
        return Err(ParseError::Document {
            index,
            reason: "not a Kubernetes object: apiVersion and kind are required".to_owned(),
        });
    };
    if api_version != API_VERSION {
        return Err(ParseError::Document {
            index,
            reason: format!("{kind} of apiVersion {api_version} is not read, only {API_VERSION}"),
        });
    }
    let value = Value::Object(map);
    match kind.as_str() {
        "Application" => parse_application(value).map(|p| Parsed {
            value: Document::Application(Box::new(p.value)),
            warnings: p.warnings,
        }),
        "ApplicationSet" => appset::parse(value).map(|p| Parsed {
            value: Document::ApplicationSet(p.value),
            warnings: p.warnings,
        }),
        "AppProject" => parse_project(value).map(|p| Parsed {
            value: Document::AppProject(p.value),
            warnings: p.warnings,
        }),
        other => Err(ParseError::Document {
            index,
            reason: format!(
                "kind {other} is not read; only Application, ApplicationSet and AppProject"
            ),
        }),
    }
}

fn document_name(value: &Value) -> String {
    value["metadata"]["name"]
        .as_str()
        .unwrap_or("(unnamed)")
        .to_owned()
}

fn parse_application(value: Value) -> Result<Parsed<Application>, ParseError> {
    let name = document_name(&value);
    let invalid = |reason: String| ParseError::Invalid {
        kind: "Application",
        name: name.clone(),
        reason,
    };
    let (app, ignored): (Application, _) = typed(value).map_err(invalid)?;
    app.validate().map_err(|e| invalid(e.to_string()))?;
    let mut warnings: Vec<Warning> = ignored.into_iter().map(Warning::unsupported).collect();
    warnings.extend(app.warnings(""));
    Ok(Parsed {
        value: app,
        warnings,
    })
}

fn parse_project(value: Value) -> Result<Parsed<AppProject>, ParseError> {
    let name = document_name(&value);
    let (project, ignored): (AppProject, _) =
        typed(value).map_err(|reason| ParseError::Invalid {
            kind: "AppProject",
            name: name.clone(),
            reason,
        })?;
    if let Err(reason) = application::validate_name(&project.metadata.name) {
        return Err(ParseError::Invalid {
            kind: "AppProject",
            name,
            reason: format!("metadata.name: {reason}"),
        });
    }
    Ok(Parsed {
        value: project,
        warnings: ignored.into_iter().map(Warning::unsupported).collect(),
    })
}

/// Deserializes `value` into `T`, returning the paths of the fields `T` does not have. An
/// error names the path of the field that failed.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<(T, Vec<String>), String> {
    let mut ignored = Vec::new();
    let result = {
        let mut record = |path: serde_ignored::Path<'_>| ignored.push(path_text(&path));
        let deserializer = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(deserializer)
    };
    match result {
        Ok(parsed) => Ok((parsed, ignored)),
        Err(error) => {
            let path = error.path().to_string();
            Err(format!("{path}: {}", error.into_inner()))
        }
    }
}

fn path_text(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_text(parent)),
        Path::Map { parent, key } => {
            let parent = path_text(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_text(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str) -> Vec<String> {
        let parsed = parse_documents(text).expect("parses");
        parsed
            .iter()
            .flat_map(|p| p.warnings.iter().map(ToString::to_string))
            .collect()
    }

    fn check_err(text: &str, expected: &str) {
        let message = parse_documents(text).expect_err("refused").to_string();
        assert_eq!(message, expected);
    }

    const APP: &str = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd, finalizers: [resources-finalizer.argocd.argoproj.io]}
spec:
  project: team-a
  source:
    repoURL: https://git.example/web.git
    path: deploy
    targetRevision: main
    plugin: {name: cmp}
    helm: {valueFiles: [values-prod.yaml], values: 'replicas: 2', releaseName: web,
           parameters: [{name: image.tag, value: v1}], fileParameters: []}
  destination: {name: east, namespace: web}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true, PruneLast=true]
    retry: {limit: 5}
  ignoreDifferences:
  - {group: apps, kind: Deployment, jsonPointers: [/spec/replicas], jqPathExpressions: [.x]}
";

    #[test]
    fn application_fields_are_read_and_unsupported_ones_named() {
        let parsed = parse_documents(APP).expect("parses");
        let Document::Application(app) = &parsed[0].value else {
            panic!("an application")
        };
        assert_eq!(app.metadata.name, "web");
        assert_eq!(app.project(), "team-a");
        assert!(app.automated() && app.prune() && app.self_heal() && app.create_namespace());
        let source = app.spec.source.as_ref().expect("a source");
        assert_eq!(source.target_revision.as_deref(), Some("main"));
        let helm = source.helm.as_ref().expect("helm");
        assert_eq!(helm.value_files, ["values-prod.yaml"]);
        assert_eq!(helm.parameters[0].value, "v1");
        assert_eq!(
            app.spec.ignore_differences[0].json_pointers,
            ["/spec/replicas"]
        );
        assert_eq!(
            warnings(APP),
            [
                "metadata.finalizers is not supported",
                "spec.ignoreDifferences[0].jqPathExpressions is not supported",
                "spec.source.helm.fileParameters is not supported",
                "spec.source.plugin is not supported",
                "spec.syncPolicy.retry is not supported",
                "spec.syncPolicy.syncOptions[1]: PruneLast=true is not supported",
            ]
        );
    }

    #[test]
    fn yaml_is_read_as_kubernetes_reads_it() {
        let text = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web}
spec:
  source: {repoURL: r, helm: {valuesObject: {mode: 0644, debug: yes}}}
  destination: {server: 'https://1.2.3.4'}
";
        let parsed = parse_documents(text).expect("parses");
        let Document::Application(app) = &parsed[0].value else {
            panic!("an application")
        };
        let values = app.spec.source.as_ref().and_then(|s| s.helm.as_ref());
        let values = values
            .and_then(|h| h.values_object.clone())
            .expect("values");
        assert_eq!(values["mode"], 420);
        assert_eq!(values["debug"], true);
    }

    #[test]
    fn documents_are_refused_with_reasons() {
        check_err(
            "apiVersion: v1\nkind: ConfigMap\n",
            "parse document 0: ConfigMap of apiVersion v1 is not read, only argoproj.io/v1alpha1",
        );
        check_err(
            "key: {components: []}\n",
            "parse document 0: not a Kubernetes object: apiVersion and kind are required",
        );
        check_err(
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\n",
            "parse document 0: kind Rollout is not read; only Application, ApplicationSet and AppProject",
        );
        check_err(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec: {source: {repoURL: r}, destination: {}}\n",
            "parse Application a: spec.destination: one of name or server is required",
        );
        check_err(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec: {source: {repoURL: [1]}}\n",
            "parse Application a: spec.source.repoURL: invalid type: sequence, expected a string",
        );
        assert!(matches!(
            parse_documents("a: [1, 2\n"),
            Err(ParseError::Yaml(_))
        ));
    }

    #[test]
    fn projects_are_read() {
        let text = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a}
spec:
  sourceRepos: ['https://git.example/*']
  destinations: [{name: 'prod-*', namespace: team-a}]
  clusterResourceWhitelist: [{group: '', kind: Namespace}]
  namespaceResourceBlacklist: [{group: '', kind: ResourceQuota}]
  roles: []
---
";
        let parsed = parse_documents(text).expect("parses");
        assert_eq!(parsed.len(), 1);
        let Document::AppProject(project) = &parsed[0].value else {
            panic!("a project")
        };
        assert!(project.allows_source("https://git.example/web.git"));
        assert_eq!(warnings(text), ["spec.roles is not supported"]);
    }

    #[test]
    fn yaml_bombs_are_stopped() {
        let mut bomb = String::from(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: x}\nspec:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!(
                "  {i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        assert!(matches!(parse_documents(&bomb), Err(ParseError::Yaml(_))));
    }
}
