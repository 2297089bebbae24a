//! Keeps every path a render touches inside the repository checkout: the source path, Helm
//! values files and Kustomize references. The lexical checks are pure; [`resolve_in_repo`]
//! reads the file system only to follow symbolic links.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("is absolute; paths are relative to the repository root")]
    Absolute,
    #[error("contains `..`; a source path may not climb out of its directory")]
    ParentDir,
    #[error("leads outside the repository")]
    OutsideRepository,
    #[error("does not exist in the repository")]
    Missing,
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

/// A source path as written in an application (`apps/shop`, `./apps/shop`, `` or `.` for
/// the root), as a repository-relative path. Absolute paths and `..` are refused outright, as
/// Argo CD does for source paths.
pub fn source_path(path: &str) -> Result<PathBuf, PathProblem> {
    let path = Path::new(path);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathProblem::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(PathProblem::Absolute),
        }
    }
    Ok(out)
}

/// A Helm values file as Argo CD reads it: relative to the chart directory `chart_dir` (itself
/// repository-relative), or, when absolute, relative to the repository root. `..` is allowed
/// while the path stays inside the repository. Returns the repository-relative path.
pub fn value_file_path(chart_dir: &Path, file: &str) -> Result<PathBuf, PathProblem> {
    let file = Path::new(file);
    if file.has_root() {
        normalize(Path::new(""), file)
    } else {
        normalize(chart_dir, file)
    }
}

/// A relative reference (a Kustomize resource, base, component, generator or transformer)
/// from the repository-relative directory `dir`. Absolute references are refused; `..` is
/// allowed while the path stays inside the repository.
pub fn reference_path(dir: &Path, reference: &str) -> Result<PathBuf, PathProblem> {
    let reference = Path::new(reference);
    if reference.has_root() {
        return Err(PathProblem::Absolute);
    }
    normalize(dir, reference)
}

/// `base.join(path)` with `.` and `..` resolved lexically; climbing above the root is refused.
fn normalize(base: &Path, path: &Path) -> Result<PathBuf, PathProblem> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in base.components().chain(path.components()) {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(PathProblem::OutsideRepository);
                }
            }
            Component::Prefix(_) => return Err(PathProblem::Absolute),
        }
    }
    Ok(parts.iter().collect())
}

/// The canonical path of the repository-relative `relative` inside `repo`, symbolic links
/// followed; refused when it lands outside the repository or does not exist.
pub fn resolve_in_repo(repo: &Path, relative: &Path) -> Result<PathBuf, PathProblem> {
    let root = repo
        .canonicalize()
        .map_err(|e| PathProblem::Unreadable(format!("repository {}: {e}", repo.display())))?;
    let path = match root.join(relative).canonicalize() {
        Ok(path) => path,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling link that points out of the repository is still a link out.
            return match root.join(relative).read_link() {
                Ok(target)
                    if !root
                        .join(relative)
                        .with_file_name(&target)
                        .starts_with(&root) =>
                {
                    Err(PathProblem::OutsideRepository)
                }
                _ => Err(PathProblem::Missing),
            };
        }
        Err(e) => return Err(PathProblem::Unreadable(e.to_string())),
    };
    if path.starts_with(&root) {
        Ok(path)
    } else {
        Err(PathProblem::OutsideRepository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_source(input: &str, expected: Result<&str, PathProblem>) {
        assert_eq!(
            source_path(input),
            expected.map(PathBuf::from),
            "source path {input:?}"
        );
    }

    #[test]
    fn source_paths() {
        check_source("apps/shop", Ok("apps/shop"));
        check_source("./apps/shop/", Ok("apps/shop"));
        check_source("", Ok(""));
        check_source(".", Ok(""));
        check_source("../shop", Err(PathProblem::ParentDir));
        check_source("apps/../../shop", Err(PathProblem::ParentDir));
        check_source("apps/../shop", Err(PathProblem::ParentDir));
        check_source("/etc", Err(PathProblem::Absolute));
    }

    fn check_values(chart: &str, file: &str, expected: Result<&str, PathProblem>) {
        assert_eq!(
            value_file_path(Path::new(chart), file),
            expected.map(PathBuf::from),
            "values file {file:?} of chart {chart:?}"
        );
    }

    #[test]
    fn value_files() {
        check_values(
            "charts/web",
            "values-prod.yaml",
            Ok("charts/web/values-prod.yaml"),
        );
        check_values("charts/web", "../../env/prod.yaml", Ok("env/prod.yaml"));
        check_values("charts/web", "/env/prod.yaml", Ok("env/prod.yaml"));
        check_values(
            "charts/web",
            "../../../secret.yaml",
            Err(PathProblem::OutsideRepository),
        );
        check_values("", "/../etc/passwd", Err(PathProblem::OutsideRepository));
    }

    #[test]
    fn references() {
        assert_eq!(
            reference_path(Path::new("overlays/prod"), "../../base"),
            Ok(PathBuf::from("base"))
        );
        assert_eq!(
            reference_path(Path::new("overlays/prod"), "../../../x"),
            Err(PathProblem::OutsideRepository)
        );
        assert_eq!(
            reference_path(Path::new("a"), "/etc/passwd"),
            Err(PathProblem::Absolute)
        );
    }

    #[cfg(unix)]
    #[test]
    fn resolution_follows_links_and_stays_inside() {
        let outside = tempfile::tempdir().expect("temp dir");
        let repo = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(repo.path().join("apps")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), repo.path().join("out")).expect("link");
        std::os::unix::fs::symlink("apps", repo.path().join("alias")).expect("link");
        std::os::unix::fs::symlink("/nonexistent/x", repo.path().join("dangling")).expect("link");
        assert!(resolve_in_repo(repo.path(), Path::new("apps")).is_ok());
        assert!(resolve_in_repo(repo.path(), Path::new("alias")).is_ok());
        assert_eq!(
            resolve_in_repo(repo.path(), Path::new("out")),
            Err(PathProblem::OutsideRepository)
        );
        assert_eq!(
            resolve_in_repo(repo.path(), Path::new("dangling")),
            Err(PathProblem::OutsideRepository)
        );
        assert_eq!(
            resolve_in_repo(repo.path(), Path::new("nope")),
            Err(PathProblem::Missing)
        );
    }
}
