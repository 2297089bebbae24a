//! Argo CD's `ApplicationSet` (argoproj.io/v1alpha1) as Flotilla reads it: the list,
//! clusters and Git (directories, files) generators, the Application template with either
//! template syntax, and generator-level templates that patch it. Matrix, merge, SCM provider,
//! pull request, cluster decision resource and plugin generators are refused by name, as are
//! `templatePatch` and any generator field Flotilla does not understand. Generation itself
//! is [`super::generate`]; this module only reads and checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::application::{Application, ObjectMeta};
use super::template::Syntax;
use super::{ParseError, Parsed, Warning, typed};

/// Argo CD generators Flotilla does not implement.
pub const UNSUPPORTED_GENERATORS: &[&str] = &[
    "matrix",
    "merge",
    "scmProvider",
    "pullRequest",
    "clusterDecisionResource",
    "plugin",
];

const KIND: &str = "ApplicationSet";

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ApplicationSetSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSpec {
    #[serde(default)]
    pub go_template: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub go_template_options: Vec<String>,
    #[serde(default)]
    pub generators: Vec<Generator>,
    /// The Application template, kept as JSON: its strings are templates.
    #[serde(default)]
    pub template: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<ApplicationSetSyncPolicy>,
    /// Refused when present; read only to name it.
    #[serde(default, skip_serializing)]
    pub template_patch: Option<Value>,
}

impl ApplicationSetSpec {
    /// The template syntax and options of this set.
    pub fn syntax(&self) -> Syntax {
        if self.go_template {
            Syntax::Go {
                missing_key_error: self
                    .go_template_options
                    .iter()
                    .any(|o| o == "missingkey=error"),
            }
        } else {
            Syntax::Fast
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSyncPolicy {
    /// Flotilla never deletes an application's objects because its set was deleted without
    /// a tombstone, so this is accepted as it is.
    #[serde(default)]
    pub preserve_resources_on_deletion: bool,
}

/// One generator; exactly one of its fields is set.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Generator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitGenerator>,
}

impl Generator {
    /// The generator's kind, as Argo CD names it.
    pub fn kind(&self) -> &'static str {
        match (&self.list, &self.clusters, &self.git) {
            (Some(_), _, _) => "list",
            (_, Some(_), _) => "clusters",
            _ => "git",
        }
    }

    /// The generator's own template, a patch over `spec.template`.
    pub fn template(&self) -> Option<&Value> {
        self.list
            .as_ref()
            .and_then(|g| g.template.as_ref())
            .or_else(|| self.clusters.as_ref().and_then(|g| g.template.as_ref()))
            .or_else(|| self.git.as_ref().and_then(|g| g.template.as_ref()))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListGenerator {
    #[serde(default)]
    pub elements: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGenerator {
    #[serde(default)]
    pub selector: LabelSelector,
    /// Extra parameters `values.<key>`; each value is itself a template over the cluster's
    /// parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitGenerator {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Empty means `HEAD`.
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<GitPathPattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<GitPathPattern>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    /// Read only to warn: the hub fetches on its own schedule and on webhooks.
    #[serde(default, skip_serializing)]
    pub requeue_after_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct GitPathPattern {
    pub path: String,
    #[serde(default)]
    pub exclude: bool,
}

/// Reads an ApplicationSet whose apiVersion and kind were already checked.
pub(crate) fn parse(value: Value) -> Result<Parsed<ApplicationSet>, ParseError> {
    let name = super::document_name(&value);
    let invalid = |reason: String| ParseError::Invalid {
        kind: KIND,
        name: name.clone(),
        reason,
    };
    let unsupported = |field: String| ParseError::Unsupported {
        kind: KIND,
        name: name.clone(),
        field,
    };
    let (appset, ignored): (ApplicationSet, _) = typed(value).map_err(invalid)?;
    let mut warnings = Vec::new();
    for field in ignored {
        if let Some(rest) = field.strip_prefix("spec.generators[") {
            // `N].kind` names a generator; anything deeper is a field of a known one.
            let generator = rest.split_once("].").map(|(_, g)| g).unwrap_or_default();
            if UNSUPPORTED_GENERATORS.contains(&generator) {
                return Err(ParseError::UnsupportedGenerator {
                    kind: KIND,
                    name,
                    generator: generator.to_owned(),
                    field,
                });
            }
            return Err(unsupported(field));
        }
        warnings.push(Warning::unsupported(field));
    }
    let spec = &appset.spec;
    if spec.template_patch.is_some() {
        return Err(unsupported("spec.templatePatch".to_owned()));
    }
    for (i, option) in spec.go_template_options.iter().enumerate() {
        if !matches!(
            option.as_str(),
            "missingkey=error" | "missingkey=default" | "missingkey=invalid" | "missingkey=zero"
        ) {
            return Err(unsupported(format!(
                "spec.goTemplateOptions[{i}] {option:?}"
            )));
        }
    }
    if spec.generators.is_empty() {
        return Err(invalid(
            "spec.generators: at least one generator is required".to_owned(),
        ));
    }
    if spec.template.is_null() {
        return Err(invalid("spec.template is required".to_owned()));
    }
    warnings.extend(template_warnings(&spec.template, "spec.template.").map_err(invalid)?);
    for (i, generator) in spec.generators.iter().enumerate() {
        let set = [
            generator.list.is_some(),
            generator.clusters.is_some(),
            generator.git.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            return Err(invalid(format!(
                "spec.generators[{i}]: exactly one generator is required, found {set}"
            )));
        }
        let kind = generator.kind();
        if let Some(git) = &generator.git {
            if git.directories.is_empty() == git.files.is_empty() {
                return Err(invalid(format!(
                    "spec.generators[{i}].git: exactly one of directories or files is required"
                )));
            }
            if git.requeue_after_seconds.is_some() {
                warnings.push(Warning {
                    field: format!("spec.generators[{i}].git.requeueAfterSeconds"),
                    message: "is not supported: the hub fetches on its schedule and on webhooks"
                        .to_owned(),
                });
            }
        }
        if let Some(template) = generator.template() {
            let prefix = format!("spec.generators[{i}].{kind}.template.");
            warnings.extend(template_warnings(template, &prefix).map_err(invalid)?);
        }
    }
    Ok(Parsed {
        value: appset,
        warnings,
    })
}

/// Type-checks an Application template and names the fields it would ignore.
fn template_warnings(template: &Value, prefix: &str) -> Result<Vec<Warning>, String> {
    let (app, ignored): (Application, _) =
        typed(template.clone()).map_err(|e| format!("{prefix}{e}"))?;
    let mut warnings: Vec<Warning> = ignored
        .into_iter()
        .map(|field| Warning::unsupported(format!("{prefix}{field}")))
        .collect();
    warnings.extend(app.warnings(prefix));
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::super::{Document, parse_documents};
    use super::*;

    const HEADER: &str =
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: set}\n";
    const TEMPLATE: &str = "  template:
    metadata: {name: '{{name}}-web'}
    spec:
      source: {repoURL: r, path: web}
      destination: {server: '{{server}}', namespace: web}
";

    fn parse_spec(spec: &str) -> Result<Parsed<ApplicationSet>, String> {
        let text = format!("{HEADER}spec:\n{spec}");
        let mut parsed = parse_documents(&text).map_err(|e| e.to_string())?;
        let parsed = parsed.remove(0);
        let Document::ApplicationSet(appset) = parsed.value else {
            panic!("an ApplicationSet")
        };
        Ok(Parsed {
            value: appset,
            warnings: parsed.warnings,
        })
    }

    fn check_err(spec: &str, expected: &str) {
        assert_eq!(
            parse_spec(spec).map(|_| ()),
            Err(expected.to_owned()),
            "{spec}"
        );
    }

    fn check_warnings(spec: &str, expected: &[&str]) {
        let parsed = parse_spec(spec).expect("parses");
        let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings, expected, "{spec}");
    }

    #[test]
    fn unsupported_generators_are_refused_by_name() {
        for generator in UNSUPPORTED_GENERATORS {
            check_err(
                &format!("  generators: [{{{generator}: {{}}}}]\n{TEMPLATE}"),
                &format!(
                    "parse ApplicationSet set: generator {generator:?} is not supported (spec.generators[0].{generator})"
                ),
            );
        }
    }

    #[test]
    fn unknown_generator_fields_are_refused() {
        check_err(
            &format!("  generators: [{{clusters: {{filters: [{{expr: x}}]}}}}]\n{TEMPLATE}"),
            "parse ApplicationSet set: spec.generators[0].clusters.filters is not supported",
        );
        check_err(
            &format!("  generators: [{{list: {{elementsYaml: '[]'}}}}]\n{TEMPLATE}"),
            "parse ApplicationSet set: spec.generators[0].list.elementsYaml is not supported",
        );
        check_err(
            &format!(
                "  generators: [{{clusters: {{}}, selector: {{matchLabels: {{a: b}}}}}}]\n{TEMPLATE}"
            ),
            "parse ApplicationSet set: spec.generators[0].selector is not supported",
        );
        check_err(
            &format!("  generators: [{{}}]\n{TEMPLATE}"),
            "parse ApplicationSet set: spec.generators[0]: exactly one generator is required, found 0",
        );
        check_err(
            &format!("  generators: [{{git: {{repoURL: r}}}}]\n{TEMPLATE}"),
            "parse ApplicationSet set: spec.generators[0].git: exactly one of directories or files is required",
        );
    }

    #[test]
    fn set_level_refusals() {
        check_err(
            &format!(
                "  goTemplate: true\n  templatePatch: 'spec: {{}}'\n  generators: [{{clusters: {{}}}}]\n{TEMPLATE}"
            ),
            "parse ApplicationSet set: spec.templatePatch is not supported",
        );
        check_err(
            &format!(
                "  goTemplateOptions: [strict]\n  generators: [{{clusters: {{}}}}]\n{TEMPLATE}"
            ),
            "parse ApplicationSet set: spec.goTemplateOptions[0] \"strict\" is not supported",
        );
        check_err(
            "  generators: [{clusters: {}}]\n",
            "parse ApplicationSet set: spec.template is required",
        );
        check_err(
            "  generators: [{clusters: {}}]\n  template: {spec: {syncPolicy: {automated: {prune: '{{x}}'}}}}\n",
            "parse ApplicationSet set: spec.template.spec.syncPolicy.automated.prune: invalid type: string \"{{x}}\", expected a boolean",
        );
    }

    #[test]
    fn warnings_name_fields_outside_generators() {
        check_warnings(
            "  generators: [{git: {repoURL: r, directories: [{path: '*'}], requeueAfterSeconds: 60}}]
  syncPolicy: {preserveResourcesOnDeletion: true, applicationsSync: create-only}
  strategy: {type: RollingSync}
  template:
    metadata: {name: '{{path.basename}}'}
    spec:
      source: {repoURL: r, plugin: {}}
      destination: {server: 'https://1.2.3.4'}
      syncPolicy: {syncOptions: [Validate=false]}
",
            &[
                "spec.strategy is not supported",
                "spec.syncPolicy.applicationsSync is not supported",
                "spec.template.spec.source.plugin is not supported",
                "spec.template.spec.syncPolicy.syncOptions[0]: Validate=false is not supported",
                "spec.generators[0].git.requeueAfterSeconds is not supported: the hub fetches on its schedule and on webhooks",
            ],
        );
    }

    #[test]
    fn reads_generators_and_syntax() {
        let parsed = parse_spec(&format!(
            "  goTemplate: true
  goTemplateOptions: [missingkey=error]
  generators:
  - list: {{elements: [{{cluster: a}}]}}
  - clusters: {{selector: {{matchLabels: {{env: prod}}, matchExpressions: [{{key: tier, operator: In, values: [a]}}]}}, values: {{x: z}}}}
  - git: {{repoURL: r, revision: main, files: [{{path: '**/config.json'}}, {{path: 'x/*', exclude: true}}]}}
{TEMPLATE}"
        ))
        .expect("parses");
        let spec = &parsed.value.spec;
        assert_eq!(
            spec.syntax(),
            Syntax::Go {
                missing_key_error: true
            }
        );
        let kinds: Vec<&str> = spec.generators.iter().map(Generator::kind).collect();
        assert_eq!(kinds, ["list", "clusters", "git"]);
        let clusters = spec.generators[1].clusters.as_ref().expect("clusters");
        assert_eq!(clusters.selector.match_expressions[0].operator, "In");
        let git = spec.generators[2].git.as_ref().expect("git");
        assert!(git.files[1].exclude);
        assert!(parsed.warnings.is_empty());
    }
}
