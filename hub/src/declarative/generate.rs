//! ApplicationSet generation: each generator yields parameter sets (list elements, clusters
//! by label selector, Git directories, Git files), each set renders the Application template
//! (patched by the generator's own template) into one [`Application`], as Argo CD would.
//!
//! Parameter names follow Argo CD. Clusters: `name`, `nameNormalized`, `server`,
//! `metadata.labels.<k>`, `metadata.annotations.<k>`, `values.<k>` (with `goTemplate`,
//! `.metadata.labels` etc. are objects). Git directories: `path`, `path.basename`,
//! `path.basenameNormalized`, `path[N]` (with `goTemplate`: `.path.path`, `.path.basename`,
//! `.path.basenameNormalized`, `.path.segments`). Git files: the file's keys (flattened with
//! dots for fasttemplate) plus the same `path` parameters and `path.filename`,
//! `path.filenameNormalized`.
//!
//! Invariant: every Flotilla cluster is, in Argo CD's terms, a registered cluster secret, so
//! it carries the label `argocd.argoproj.io/secret-type: cluster` for selectors and
//! parameters; selectors written for Argo CD keep selecting the same clusters.
//!
//! Pure: clusters and Git content come in through [`GeneratorInputs`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::application::Application;
use super::appset::{ApplicationSet, ClusterGenerator, GitGenerator, LabelSelector};
use super::git_tree::{GitTree, GitTreeError};
use super::glob::{DoubleStar, path_matches};
use super::template::{RenderError, Syntax, normalize, render_str, render_value, scalar_text};

/// The label every cluster carries for Argo CD compatibility (see the module invariant).
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";

/// Largest parameter file the Git file generator reads.
pub const MAX_PARAMETER_FILE_BYTES: usize = 1 << 20;

/// A cluster as generators see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    pub name: String,
    /// The API server URL its agent reports.
    pub server: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Cluster {
    /// The labels selectors and parameters see: the cluster's own plus
    /// [`SECRET_TYPE_LABEL`]` = cluster` unless the cluster sets it.
    pub fn effective_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels
            .entry(SECRET_TYPE_LABEL.to_owned())
            .or_insert_with(|| "cluster".to_owned());
        labels
    }
}

/// What generators read besides the ApplicationSet.
pub struct GeneratorInputs<'a> {
    pub clusters: &'a [Cluster],
    pub git: &'a dyn GitTree,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("generator {index} ({kind}): {reason}")]
    Generator {
        index: usize,
        kind: &'static str,
        reason: String,
    },
    #[error("generator {index} (git): repository {repo} at {revision}: {source}")]
    Git {
        index: usize,
        repo: String,
        revision: String,
        #[source]
        source: GitTreeError,
    },
    #[error("generator {index} ({kind}), parameter set {set}: {source}")]
    Render {
        index: usize,
        kind: &'static str,
        set: usize,
        #[source]
        source: RenderError,
    },
    #[error("generator {index} ({kind}), parameter set {set}: application {name:?}: {reason}")]
    Invalid {
        index: usize,
        kind: &'static str,
        set: usize,
        name: String,
        reason: String,
    },
    #[error(
        "generator {index} ({kind}), parameter set {set}: application {name:?} is generated twice"
    )]
    Duplicate {
        index: usize,
        kind: &'static str,
        set: usize,
        name: String,
    },
}

/// The Applications `appset` generates from `inputs`, in generator then parameter order.
pub fn generate(
    appset: &ApplicationSet,
    inputs: &GeneratorInputs<'_>,
) -> Result<Vec<Application>, GenerateError> {
    let spec = &appset.spec;
    let syntax = spec.syntax();
    let mut apps = Vec::new();
    let mut names = BTreeSet::new();
    for (index, generator) in spec.generators.iter().enumerate() {
        let kind = generator.kind();
        let failed = |reason: String| GenerateError::Generator {
            index,
            kind,
            reason,
        };
        let sets = if let Some(list) = &generator.list {
            list_params(&list.elements, syntax).map_err(failed)?
        } else if let Some(clusters) = &generator.clusters {
            cluster_params(clusters, inputs.clusters, syntax).map_err(failed)?
        } else if let Some(git) = &generator.git {
            git_params(index, git, inputs.git, syntax)?
        } else {
            return Err(failed("names no generator".to_owned()));
        };
        let template = match generator.template() {
            Some(patch) => merge_template(patch, &spec.template),
            None => spec.template.clone(),
        };
        for (set, params) in sets.iter().enumerate() {
            let rendered =
                render_value(&template, params, syntax, "spec.template").map_err(|source| {
                    GenerateError::Render {
                        index,
                        kind,
                        set,
                        source,
                    }
                })?;
            let mut app: Application =
                serde_json::from_value(rendered).map_err(|e| GenerateError::Invalid {
                    index,
                    kind,
                    set,
                    name: String::new(),
                    reason: format!("the rendered template is not an Application: {e}"),
                })?;
            if app.metadata.namespace.is_none() {
                app.metadata.namespace = appset.metadata.namespace.clone();
            }
            if let Err(error) = app.validate() {
                let mut reason = error.to_string();
                if syntax == Syntax::Fast && reason.contains("{{.") {
                    reason.push_str(
                        "; fasttemplate leaves unknown parameters as written, and Go template syntax like {{.name}} needs spec.goTemplate: true",
                    );
                }
                return Err(GenerateError::Invalid {
                    index,
                    kind,
                    set,
                    name: app.metadata.name,
                    reason,
                });
            }
            if !names.insert(app.metadata.name.clone()) {
                return Err(GenerateError::Duplicate {
                    index,
                    kind,
                    set,
                    name: app.metadata.name,
                });
            }
            apps.push(app);
        }
    }
    Ok(apps)
}

type Params = Map<String, Value>;

/// A fasttemplate parameter: scalars as text; objects and lists have no text.
fn fast_scalar(value: &Value) -> Option<Value> {
    match value {
        Value::Object(_) | Value::Array(_) => None,
        other => Some(Value::String(scalar_text(other))),
    }
}

fn list_params(elements: &[Value], syntax: Syntax) -> Result<Vec<Params>, String> {
    let mut sets = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        let Value::Object(element) = element else {
            return Err(format!("element {i} is not an object"));
        };
        if matches!(syntax, Syntax::Go { .. }) {
            sets.push(element.clone());
            continue;
        }
        let mut params = Params::new();
        for (key, value) in element {
            match (key.as_str(), value) {
                ("values", Value::Object(values)) => {
                    for (k, v) in values {
                        let v = fast_scalar(v).ok_or_else(|| {
                            format!("element {i}: values.{k} is not a string (nested values need spec.goTemplate: true)")
                        })?;
                        params.insert(format!("values.{k}"), v);
                    }
                }
                _ => {
                    let v = fast_scalar(value).ok_or_else(|| {
                        format!("element {i}: {key} is not a string (nested values need spec.goTemplate: true)")
                    })?;
                    params.insert(key.clone(), v);
                }
            }
        }
        sets.push(params);
    }
    Ok(sets)
}

fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    if !selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return Ok(false);
    }
    for requirement in &selector.match_expressions {
        let value = labels.get(&requirement.key);
        let matched = match requirement.operator.as_str() {
            "In" => value.is_some_and(|v| requirement.values.contains(v)),
            "NotIn" => value.is_none_or(|v| !requirement.values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(format!("selector operator {other:?} is not supported")),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

fn cluster_params(
    generator: &ClusterGenerator,
    clusters: &[Cluster],
    syntax: Syntax,
) -> Result<Vec<Params>, String> {
    let mut sets = Vec::new();
    for cluster in clusters {
        let labels = cluster.effective_labels();
        if !selector_matches(&generator.selector, &labels)? {
            continue;
        }
        let mut params = Params::new();
        params.insert("name".to_owned(), Value::from(cluster.name.clone()));
        params.insert(
            "nameNormalized".to_owned(),
            Value::from(normalize(&cluster.name)),
        );
        params.insert("server".to_owned(), Value::from(cluster.server.clone()));
        match syntax {
            Syntax::Fast => {
                for (k, v) in &labels {
                    params.insert(format!("metadata.labels.{k}"), Value::from(v.clone()));
                }
                for (k, v) in &cluster.annotations {
                    params.insert(format!("metadata.annotations.{k}"), Value::from(v.clone()));
                }
            }
            Syntax::Go { .. } => {
                let mut metadata = Params::new();
                metadata.insert("labels".to_owned(), string_map(&labels));
                if !cluster.annotations.is_empty() {
                    metadata.insert("annotations".to_owned(), string_map(&cluster.annotations));
                }
                params.insert("metadata".to_owned(), Value::Object(metadata));
            }
        }
        add_values(&mut params, &generator.values, syntax)?;
        sets.push(params);
    }
    Ok(sets)
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

/// Adds a generator's `values`, each rendered over the parameters so far.
fn add_values(
    params: &mut Params,
    values: &BTreeMap<String, String>,
    syntax: Syntax,
) -> Result<(), String> {
    if values.is_empty() {
        return Ok(());
    }
    let mut rendered = Params::new();
    for (key, template) in values {
        let value =
            render_str(template, params, syntax).map_err(|e| format!("values.{key}: {e}"))?;
        rendered.insert(key.clone(), Value::from(value));
    }
    match syntax {
        Syntax::Fast => {
            for (key, value) in rendered {
                params.insert(format!("values.{key}"), value);
            }
        }
        Syntax::Go { .. } => {
            params.insert("values".to_owned(), Value::Object(rendered));
        }
    }
    Ok(())
}

fn git_params(
    index: usize,
    git: &GitGenerator,
    tree: &dyn GitTree,
    syntax: Syntax,
) -> Result<Vec<Params>, GenerateError> {
    let revision = if git.revision.is_empty() {
        "HEAD"
    } else {
        git.revision.as_str()
    };
    let git_error = |source| GenerateError::Git {
        index,
        repo: git.repo_url.clone(),
        revision: revision.to_owned(),
        source,
    };
    let failed = |reason: String| GenerateError::Generator {
        index,
        kind: "git",
        reason,
    };
    let (patterns, double_star) = if git.directories.is_empty() {
        (&git.files, DoubleStar::AnySegments)
    } else {
        (&git.directories, DoubleStar::SameAsStar)
    };
    // Exclude patterns win over include patterns, whatever their order.
    let mut found = BTreeSet::new();
    for pattern in patterns.iter().filter(|p| !p.exclude) {
        let listed = if double_star == DoubleStar::SameAsStar {
            tree.list_dirs(&git.repo_url, revision, &pattern.path)
        } else {
            tree.list_files(&git.repo_url, revision, &pattern.path)
        };
        found.extend(listed.map_err(git_error)?);
    }
    found.retain(|path: &String| {
        !patterns
            .iter()
            .any(|p| p.exclude && path_matches(&p.path, path, double_star))
    });
    let mut sets = Vec::new();
    for path in found {
        if double_star == DoubleStar::SameAsStar {
            let mut params = path_params(&path, None, syntax);
            add_values(&mut params, &git.values, syntax).map_err(failed)?;
            sets.push(params);
            continue;
        }
        let bytes = tree
            .read_file(&git.repo_url, revision, &path)
            .map_err(git_error)?;
        for object in parameter_objects(&path, &bytes).map_err(failed)? {
            let mut params = match syntax {
                Syntax::Go { .. } => object,
                Syntax::Fast => {
                    let mut flat = Params::new();
                    flatten("", &Value::Object(object), &mut flat);
                    flat
                }
            };
            params.extend(path_params(
                path.rsplit_once('/').map_or(".", |(dir, _)| dir),
                Some(path.rsplit('/').next().unwrap_or(&path)),
                syntax,
            ));
            add_values(&mut params, &git.values, syntax).map_err(failed)?;
            sets.push(params);
        }
    }
    Ok(sets)
}

/// The `path` parameters of a directory (and of the file in it, for the file generator).
fn path_params(dir: &str, file: Option<&str>, syntax: Syntax) -> Params {
    let basename = dir.rsplit('/').next().unwrap_or(dir);
    let segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let mut params = Params::new();
    match syntax {
        Syntax::Fast => {
            params.insert("path".to_owned(), Value::from(dir));
            params.insert("path.basename".to_owned(), Value::from(basename));
            params.insert(
                "path.basenameNormalized".to_owned(),
                Value::from(normalize(basename)),
            );
            for (i, segment) in segments.iter().enumerate() {
                params.insert(format!("path[{i}]"), Value::from(*segment));
            }
            if let Some(file) = file {
                params.insert("path.filename".to_owned(), Value::from(file));
                params.insert(
                    "path.filenameNormalized".to_owned(),
                    Value::from(normalize(file)),
                );
            }
        }
        Syntax::Go { .. } => {
            let mut path = Params::new();
            path.insert("path".to_owned(), Value::from(dir));
            path.insert("basename".to_owned(), Value::from(basename));
            path.insert(
                "basenameNormalized".to_owned(),
                Value::from(normalize(basename)),
            );
            path.insert("segments".to_owned(), Value::from(segments));
            if let Some(file) = file {
                path.insert("filename".to_owned(), Value::from(file));
                path.insert(
                    "filenameNormalized".to_owned(),
                    Value::from(normalize(file)),
                );
            }
            params.insert("path".to_owned(), Value::Object(path));
        }
    }
    params
}

/// The parameter sets of one file: a JSON/YAML object, or a list of objects.
fn parameter_objects(path: &str, bytes: &[u8]) -> Result<Vec<Params>, String> {
    if bytes.len() > MAX_PARAMETER_FILE_BYTES {
        return Err(format!(
            "file {path} has {} bytes, more than the limit of {MAX_PARAMETER_FILE_BYTES}",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| format!("file {path} is not UTF-8"))?;
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    let value: Value = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| format!("file {path}: invalid YAML or JSON: {e}"))?;
    match value {
        Value::Object(object) => Ok(vec![object]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(object) => Ok(object),
                _ => Err(format!("file {path}: item {i} is not an object")),
            })
            .collect(),
        _ => Err(format!(
            "file {path} is neither an object nor a list of objects"
        )),
    }
}

/// Flattens nested objects and lists into `a.b` and `a.0` keys with text values.
fn flatten(prefix: &str, value: &Value, out: &mut Params) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        scalar => {
            out.insert(prefix.to_owned(), Value::from(scalar_text(scalar)));
        }
    }
}

/// A generator's template patch over the set's template: the patch's non-empty fields win,
/// objects merge key by key, and empty fields (`""`, `{}`, `[]`, `false`, `0`, null) take the
/// set's value, as Argo CD merges them.
pub fn merge_template(patch: &Value, base: &Value) -> Value {
    match (patch, base) {
        (Value::Object(patch), Value::Object(base)) => {
            let mut out = patch.clone();
            for (key, base_value) in base {
                let merged = match patch.get(key) {
                    Some(value) => merge_template(value, base_value),
                    None => base_value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (patch, base) if is_empty(patch) => base.clone(),
        (patch, _) => patch.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::git_tree::MemoryTree;
    use super::super::{Document, parse_documents};
    use super::*;
    use serde_json::json;

    fn appset(yaml: &str) -> ApplicationSet {
        let text = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: set, namespace: argocd}}\n{yaml}"
        );
        let mut parsed = parse_documents(&text).expect("parses");
        match parsed.remove(0).value {
            Document::ApplicationSet(appset) => appset,
            other => panic!("not an ApplicationSet: {other:?}"),
        }
    }

    fn clusters() -> Vec<Cluster> {
        let cluster = |name: &str, server: &str, env: &str| Cluster {
            name: name.to_owned(),
            server: server.to_owned(),
            labels: [("env".to_owned(), env.to_owned())].into(),
            annotations: [("owner".to_owned(), "team-a".to_owned())].into(),
        };
        vec![
            cluster("East_1", "https://east:6443", "prod"),
            cluster("west", "https://west:6443", "prod"),
            cluster("lab", "https://lab:6443", "dev"),
        ]
    }

    fn tree() -> MemoryTree {
        MemoryTree::new()
            .with_file("r", "apps/web/kustomization.yaml", "")
            .with_file("r", "apps/My_Api/all.yaml", "")
            .with_file("r", "apps/skip/all.yaml", "")
            .with_file("r", "apps/.hidden/all.yaml", "")
            .with_file(
                "r",
                "config/east/config.json",
                r#"{"cluster": {"name": "east", "address": "https://e"}, "tags": ["a"]}"#,
            )
            .with_file(
                "r",
                "config/list.yaml",
                "- {cluster: {name: one, address: 'https://1'}}\n- {cluster: {name: two, address: 'https://2'}}\n",
            )
    }

    /// (name, destination server or name, namespace, source path) of each generated app.
    fn check(yaml: &str, expected: &[(&str, &str, &str, &str)]) {
        let clusters = clusters();
        let tree = tree();
        let apps = generate(
            &appset(yaml),
            &GeneratorInputs {
                clusters: &clusters,
                git: &tree,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(String, String, String, String)> = apps
            .iter()
            .map(|a| {
                let d = &a.spec.destination;
                (
                    a.metadata.name.clone(),
                    d.server.clone().or(d.name.clone()).unwrap_or_default(),
                    d.namespace.clone().unwrap_or_default(),
                    a.spec
                        .source
                        .as_ref()
                        .and_then(|s| s.path.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let expected: Vec<(String, String, String, String)> = expected
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
            .collect();
        assert_eq!(got, expected, "{yaml}");
    }

    fn check_err(yaml: &str, expected: &str) {
        let clusters = clusters();
        let tree = tree();
        let message = generate(
            &appset(yaml),
            &GeneratorInputs {
                clusters: &clusters,
                git: &tree,
            },
        )
        .expect_err("fails")
        .to_string();
        assert!(message.contains(expected), "{message}\nwanted: {expected}");
    }

    #[test]
    fn cluster_generator_fasttemplate_parameters() {
        check(
            "spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}, values: {rev: 'r-{{nameNormalized}}'}}}]
  template:
    metadata: {name: '{{nameNormalized}}-web', labels: {owner: '{{metadata.annotations.owner}}'}}
    spec:
      source: {repoURL: r, path: 'web/{{metadata.labels.env}}/{{values.rev}}'}
      destination: {server: '{{server}}', namespace: web}
",
            &[
                ("east-1-web", "https://east:6443", "web", "web/prod/r-east-1"),
                ("west-web", "https://west:6443", "web", "web/prod/r-west"),
            ],
        );
    }

    #[test]
    fn cluster_generator_go_template_parameters() {
        check(
            r#"spec:
  goTemplate: true
  goTemplateOptions: [missingkey=error]
  generators:
  - clusters:
      selector:
        matchExpressions: [{key: env, operator: NotIn, values: [prod]}]
      values: {ns: '{{ index .metadata.annotations "owner" }}'}
  template:
    metadata: {name: '{{ .name | lower }}'}
    spec:
      source: {repoURL: r, path: '{{ .metadata.labels.env }}'}
      destination: {name: '{{ .name }}', namespace: '{{ .values.ns }}'}
"#,
            &[("lab", "lab", "team-a", "dev")],
        );
    }

    #[test]
    fn argo_secret_type_selector_selects_every_cluster() {
        check(
            "spec:
  generators: [{clusters: {selector: {matchLabels: {argocd.argoproj.io/secret-type: cluster}}}}]
  template:
    metadata: {name: '{{nameNormalized}}'}
    spec: {source: {repoURL: r}, destination: {server: '{{server}}'}}
",
            &[
                ("east-1", "https://east:6443", "", ""),
                ("west", "https://west:6443", "", ""),
                ("lab", "https://lab:6443", "", ""),
            ],
        );
    }

    #[test]
    fn list_generator_with_values_and_template_patch() {
        check(
            "spec:
  generators:
  - list:
      elements: [{cluster: a, url: 'https://a', values: {project: p1}}, {cluster: b, url: 'https://b'}]
      template:
        metadata: {}
        spec: {source: {path: '{{cluster}}-override'}, destination: {}}
  template:
    metadata: {name: '{{cluster}}-web'}
    spec:
      project: '{{values.project}}'
      source: {repoURL: r, path: default, targetRevision: HEAD}
      destination: {server: '{{url}}', namespace: web}
",
            &[
                ("a-web", "https://a", "web", "a-override"),
                ("b-web", "https://b", "web", "b-override"),
            ],
        );
    }

    #[test]
    fn git_directory_generator_parameters_and_excludes() {
        check(
            "spec:
  generators:
  - git: {repoURL: r, directories: [{path: 'apps/*'}, {path: apps/skip, exclude: true}]}
  template:
    metadata: {name: '{{path.basenameNormalized}}'}
    spec:
      source: {repoURL: r, path: '{{path}}'}
      destination: {name: '{{path[0]}}', namespace: '{{path.basename}}'}
",
            &[
                ("my-api", "apps", "My_Api", "apps/My_Api"),
                ("web", "apps", "web", "apps/web"),
            ],
        );
        check(
            "spec:
  goTemplate: true
  generators:
  - git: {repoURL: r, revision: main, directories: [{path: 'apps/w*'}]}
  template:
    metadata: {name: '{{.path.basename}}'}
    spec:
      source: {repoURL: r, path: '{{.path.path}}'}
      destination: {name: '{{index .path.segments 0}}', namespace: '{{.path.basenameNormalized}}'}
",
            &[("web", "apps", "web", "apps/web")],
        );
    }

    #[test]
    fn git_files_generator_flattens_file_keys() {
        check(
            "spec:
  generators: [{git: {repoURL: r, files: [{path: 'config/**/*.json'}, {path: 'config/*.yaml'}]}}]
  template:
    metadata: {name: '{{cluster.name}}-{{path.basename}}'}
    spec:
      source: {repoURL: r, path: '{{path}}/{{path.filename}}/{{tags.0}}'}
      destination: {server: '{{cluster.address}}'}
",
            &[
                ("east-east", "https://e", "", "config/east/config.json/a"),
                ("one-config", "https://1", "", "config/list.yaml/{{tags.0}}"),
                ("two-config", "https://2", "", "config/list.yaml/{{tags.0}}"),
            ],
        );
        check(
            "spec:
  goTemplate: true
  goTemplateOptions: [missingkey=error]
  generators: [{git: {repoURL: r, files: [{path: 'config/**'}, {path: '**/*.yaml', exclude: true}], values: {n: '{{.cluster.name}}'}}}]
  template:
    metadata: {name: '{{.values.n}}'}
    spec:
      source: {repoURL: r, path: '{{.path.path}}/{{.path.filenameNormalized}}/{{index .tags 0}}'}
      destination: {server: '{{.cluster.address}}'}
",
            &[("east", "https://e", "", "config/east/config.json/a")],
        );
    }

    #[test]
    fn generation_errors_name_their_cause() {
        check_err(
            "spec:
  generators: [{clusters: {}}]
  template:
    metadata: {name: '{{.name}}-web'}
    spec: {source: {repoURL: r}, destination: {server: '{{server}}'}}
",
            r#"generator 0 (clusters), parameter set 0: application "{{.name}}-web": metadata.name: "{{.name}}-web" is not a valid name"#,
        );
        check_err(
            "spec:
  goTemplate: true
  goTemplateOptions: [missingkey=error]
  generators: [{list: {elements: [{a: x}]}}]
  template:
    metadata: {name: '{{.b}}'}
    spec: {source: {repoURL: r}, destination: {server: s}}
",
            r#"generator 0 (list), parameter set 0: render spec.template.metadata.name: execute template "{{.b}}": map has no entry for key "b""#,
        );
        check_err(
            "spec:
  generators: [{list: {elements: [{a: x}, {a: x}]}}]
  template:
    metadata: {name: '{{a}}'}
    spec: {source: {repoURL: r}, destination: {server: s}}
",
            r#"parameter set 1: application "x" is generated twice"#,
        );
        check_err(
            "spec:
  generators: [{git: {repoURL: other, directories: [{path: '*'}]}}]
  template:
    metadata: {name: x}
    spec: {source: {repoURL: r}, destination: {server: s}}
",
            "generator 0 (git): repository other at HEAD: repository other is not available",
        );
        check_err(
            "spec:
  generators: [{clusters: {selector: {matchExpressions: [{key: a, operator: Gt}]}}}]
  template:
    metadata: {name: x}
    spec: {source: {repoURL: r}, destination: {server: s}}
",
            r#"generator 0 (clusters): selector operator "Gt" is not supported"#,
        );
    }

    #[test]
    fn merge_template_prefers_non_empty_patch_fields() {
        let merged = merge_template(
            &json!({"metadata": {}, "spec": {"project": "p2", "source": {"path": "x", "targetRevision": ""}, "destination": {}}}),
            &json!({"metadata": {"name": "n", "labels": {"a": "1"}}, "spec": {"project": "p1", "source": {"repoURL": "r", "path": "d", "targetRevision": "HEAD"}, "destination": {"server": "s"}}}),
        );
        assert_eq!(
            merged,
            json!({"metadata": {"name": "n", "labels": {"a": "1"}}, "spec": {"project": "p2", "source": {"repoURL": "r", "path": "x", "targetRevision": "HEAD"}, "destination": {"server": "s"}}})
        );
    }
}
