//! Kustomize: refuses kustomizations that would run code (exec or KRM function plugins, any
//! external plugin) or reach outside the repository (remote bases, references that climb out),
//! by reading every kustomization the build would load before running anything, then runs
//! the pinned `kustomize build --load-restrictor LoadRestrictionsRootOnly` without
//! `--enable-exec` or `--enable-alpha-plugins`. Reads the repository checkout; the checks on
//! one parsed document are pure.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::RenderFailure;
use super::limits::Limits;
use super::paths::{reference_path, resolve_in_repo};
use super::tool::Tool;
use crate::manifest_files::{check_tree, parse_documents};

/// The file names Kustomize recognises, in its order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Annotations that make a generator or transformer a KRM function.
const FUNCTION_ANNOTATIONS: [&str; 2] = ["config.kubernetes.io/function", "config.k8s.io/function"];

/// The kustomization file of `dir`, if it has one.
pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Why the generator, transformer or validator configuration `config` would run a plugin, if
/// it would. Only Kustomize's built-in plugins (`apiVersion: builtin`) run in-process.
pub fn plugin_problem(config: &Value) -> Option<String> {
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let annotations = config
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    if let Some(annotation) = FUNCTION_ANNOTATIONS
        .iter()
        .find(|a| annotations.is_some_and(|m| m.contains_key(**a)))
    {
        return Some(format!(
            "{kind} {name} is a KRM function plugin (annotation {annotation})"
        ));
    }
    match config.get("apiVersion").and_then(Value::as_str) {
        Some("builtin") => None,
        Some(api) => Some(format!(
            "{kind} {name} ({api}) is an external exec or Go plugin"
        )),
        None => Some(format!(
            "{kind} {name} has no apiVersion: not a built-in plugin"
        )),
    }
}

/// Whether a reference is remote (a Git or HTTP URL), which Kustomize would fetch.
pub fn is_remote(reference: &str) -> bool {
    reference.contains("://")
        || reference.starts_with("git@")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|host| reference.starts_with(host))
}

fn refused(path: &Path, reason: String) -> RenderFailure {
    RenderFailure::KustomizePlugin {
        path: path.to_owned(),
        reason,
    }
}

fn invalid(path: &Path, reason: String) -> RenderFailure {
    RenderFailure::Kustomization {
        path: path.to_owned(),
        reason,
    }
}

fn read_documents(path: &Path, limits: &Limits) -> Result<Vec<Value>, RenderFailure> {
    let size = path
        .metadata()
        .map_err(|source| RenderFailure::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    if size > limits.max_file_bytes {
        return Err(invalid(
            path,
            format!(
                "{size} bytes, more than the limit of {}",
                limits.max_file_bytes
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|source| RenderFailure::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_documents(path, &bytes).map_err(|reason| invalid(path, reason))
}

/// Every YAML document under `dir` (a generator or transformer directory), to be checked as
/// plugin configuration; non-YAML files are ignored.
fn documents_under(dir: &Path, limits: &Limits) -> Result<Vec<(PathBuf, Value)>, RenderFailure> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| RenderFailure::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| RenderFailure::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                || path.file_name().is_some_and(|n| n == "Kustomization")
            {
                for document in read_documents(&path, limits)? {
                    out.push((path.clone(), document));
                }
            }
        }
    }
    Ok(out)
}

/// Checks the kustomization at repository-relative `root` and every kustomization it loads:
/// no plugin that runs code, no remote reference, no reference or symlink out of the
/// repository, every tree within the size limits.
pub fn check(repo: &Path, root: &Path, limits: &Limits) -> Result<(), RenderFailure> {
    let mut visited = HashSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir_rel) = stack.pop() {
        let dir =
            resolve_in_repo(repo, &dir_rel).map_err(|problem| RenderFailure::Kustomization {
                path: dir_rel.clone(),
                reason: problem.to_string(),
            })?;
        if !visited.insert(dir.clone()) {
            continue;
        }
        check_tree(&dir, repo, &limits.manifest())?;
        let Some(file) = kustomization_file(&dir) else {
            continue;
        };
        let Some(kustomization) = read_documents(&file, limits)?.into_iter().next() else {
            continue;
        };
        for field in ["generators", "transformers", "validators"] {
            for entry in entries(&kustomization, field) {
                check_plugin_entry(repo, &dir_rel, &file, field, entry, limits)?;
            }
        }
        for field in ["resources", "bases", "components"] {
            for entry in entries(&kustomization, field) {
                let Some(reference) = entry.as_str() else {
                    continue;
                };
                if is_remote(reference) {
                    return Err(invalid(
                        &file,
                        format!(
                            "{field} entry {reference} is remote; vendor it into the repository"
                        ),
                    ));
                }
                let target = reference_path(&dir_rel, reference).map_err(|problem| {
                    invalid(&file, format!("{field} entry {reference} {problem}"))
                })?;
                let resolved = resolve_in_repo(repo, &target).map_err(|problem| {
                    invalid(&file, format!("{field} entry {reference} {problem}"))
                })?;
                if resolved.is_dir() {
                    stack.push(target);
                }
            }
        }
    }
    Ok(())
}

fn entries<'a>(kustomization: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    kustomization
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn check_plugin_entry(
    repo: &Path,
    dir_rel: &Path,
    file: &Path,
    field: &str,
    entry: &Value,
    limits: &Limits,
) -> Result<(), RenderFailure> {
    let configs: Vec<(PathBuf, Value)> = match entry {
        // Kustomize accepts inline configuration as a YAML string with a newline in it.
        Value::String(text) if text.contains('\n') => parse_documents(file, text.as_bytes())
            .map_err(|reason| invalid(file, reason))?
            .into_iter()
            .map(|config| (file.to_owned(), config))
            .collect(),
        Value::String(reference) => {
            if is_remote(reference) {
                return Err(refused(
                    file,
                    format!("{field} entry {reference} is a remote plugin configuration"),
                ));
            }
            let target = reference_path(dir_rel, reference)
                .map_err(|problem| invalid(file, format!("{field} entry {reference} {problem}")))?;
            let resolved = resolve_in_repo(repo, &target)
                .map_err(|problem| invalid(file, format!("{field} entry {reference} {problem}")))?;
            if resolved.is_dir() {
                check_tree(&resolved, repo, &limits.manifest())?;
                documents_under(&resolved, limits)?
            } else {
                read_documents(&resolved, limits)?
                    .into_iter()
                    .map(|config| (resolved.clone(), config))
                    .collect()
            }
        }
        other => vec![(file.to_owned(), other.clone())],
    };
    for (path, config) in configs {
        // A kustomization inside a generator directory only lists the configurations.
        if config.get("kind").and_then(Value::as_str) == Some("Kustomization") {
            continue;
        }
        if let Some(reason) = plugin_problem(&config) {
            return Err(refused(&path, format!("{field}: {reason}")));
        }
    }
    Ok(())
}

/// `kustomize build DIR --load-restrictor LoadRestrictionsRootOnly`.
pub fn build_args(dir: &Path) -> Vec<OsString> {
    vec![
        "build".into(),
        dir.into(),
        "--load-restrictor".into(),
        "LoadRestrictionsRootOnly".into(),
    ]
}

/// Runs `kustomize build` on the checked directory `dir` and returns its objects.
pub(super) async fn build(
    kustomize: &Tool,
    dir: &Path,
    scratch: &Path,
    limits: &Limits,
) -> Result<Vec<Value>, RenderFailure> {
    let output = kustomize
        .run(
            &build_args(dir),
            scratch,
            limits.max_total_bytes,
            limits.timeout,
        )
        .await?;
    parse_documents(Path::new("kustomize build output"), &output).map_err(|reason| {
        RenderFailure::Output {
            tool: "kustomize",
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_config(config: Value, expected: Option<&str>) {
        let problem = plugin_problem(&config);
        match expected {
            None => assert_eq!(problem, None, "{config}"),
            Some(part) => {
                let problem = problem.expect("refused");
                assert!(problem.contains(part), "{problem}");
            }
        }
    }

    #[test]
    fn only_builtin_plugins_pass() {
        check_config(
            json!({"apiVersion": "builtin", "kind": "PatchTransformer", "metadata": {"name": "p"}}),
            None,
        );
        check_config(
            json!({"apiVersion": "example.com/v1", "kind": "Generator",
                   "metadata": {"name": "g", "annotations": {
                       "config.kubernetes.io/function": "exec:\n  path: ./gen.sh\n"}}}),
            Some("KRM function plugin (annotation config.kubernetes.io/function)"),
        );
        check_config(
            json!({"apiVersion": "builtin", "kind": "X",
                   "metadata": {"name": "g", "annotations": {"config.k8s.io/function": "{}"}}}),
            Some("config.k8s.io/function"),
        );
        check_config(
            json!({"apiVersion": "someteam.example.com/v1", "kind": "SecretsFromDatabase",
                   "metadata": {"name": "s"}}),
            Some("external exec or Go plugin"),
        );
    }

    #[test]
    fn remote_references() {
        for remote in [
            "https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0",
            "github.com/org/repo/base",
            "git@github.com:org/repo.git",
            "ssh://git@example.com/repo",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in ["../base", "deployment.yaml", "github-config/base"] {
            assert!(!is_remote(local), "{local}");
        }
    }
}
