//! What the Git generators need from a repository: the directories and files matching a
//! pattern at a revision, and a file's bytes. [`GitTree`] is the seam; the Git-backed
//! implementation lives with the repository cache. [`MemoryTree`] holds files in memory for
//! tests and previews. This module must not fetch anything itself.

use std::collections::{BTreeMap, BTreeSet};

use super::glob::{DoubleStar, path_matches};

#[derive(Debug, thiserror::Error)]
pub enum GitTreeError {
    #[error("repository {repo} is not available")]
    UnknownRepository { repo: String },
    #[error("file {path} does not exist")]
    NotFound { path: String },
    #[error("read repository {repo} at {revision}: {source}")]
    Read {
        repo: String,
        revision: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A read-only view of repositories at revisions. Paths are relative to the repository
/// root, slash-separated, without a leading slash. Directories and files whose name starts
/// with `.` (and everything under them) are not listed, as in Argo CD.
pub trait GitTree {
    /// Directories matching `pattern` with Go's `path.Match` (`*` stays within a segment;
    /// see [`DoubleStar::SameAsStar`]), in path order.
    fn list_dirs(
        &self,
        repo: &str,
        revision: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError>;

    /// Files matching `pattern`, where a `**` segment matches any depth (see
    /// [`DoubleStar::AnySegments`]), in path order.
    fn list_files(
        &self,
        repo: &str,
        revision: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError>;

    /// The bytes of one file.
    fn read_file(&self, repo: &str, revision: &str, path: &str) -> Result<Vec<u8>, GitTreeError>;
}

/// Repositories as maps from file path to content; every revision sees the same files.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    repos: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (and so its parent directories) to `repo`.
    pub fn with_file(mut self, repo: &str, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .insert(path.trim_start_matches('/').to_owned(), content.into());
        self
    }

    fn files(&self, repo: &str) -> Result<&BTreeMap<String, Vec<u8>>, GitTreeError> {
        self.repos
            .get(repo)
            .ok_or_else(|| GitTreeError::UnknownRepository {
                repo: repo.to_owned(),
            })
    }
}

fn hidden(path: &str) -> bool {
    path.split('/').any(|segment| segment.starts_with('.'))
}

impl GitTree for MemoryTree {
    fn list_dirs(
        &self,
        repo: &str,
        _revision: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError> {
        let mut dirs = BTreeSet::new();
        for path in self.files(repo)?.keys() {
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                dirs.insert(parent.to_owned());
                dir = parent;
            }
        }
        Ok(dirs
            .into_iter()
            .filter(|d| !hidden(d) && path_matches(pattern, d, DoubleStar::SameAsStar))
            .collect())
    }

    fn list_files(
        &self,
        repo: &str,
        _revision: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError> {
        Ok(self
            .files(repo)?
            .keys()
            .filter(|f| !hidden(f) && path_matches(pattern, f, DoubleStar::AnySegments))
            .cloned()
            .collect())
    }

    fn read_file(&self, repo: &str, _revision: &str, path: &str) -> Result<Vec<u8>, GitTreeError> {
        self.files(repo)?
            .get(path)
            .cloned()
            .ok_or_else(|| GitTreeError::NotFound {
                path: path.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_tree_lists_directories_and_files_by_pattern() {
        let tree = MemoryTree::new()
            .with_file("r", "add-ons/grafana/values.yaml", "a: 1")
            .with_file("r", "add-ons/argo/x/all.yaml", "")
            .with_file("r", ".github/workflows/ci.yaml", "")
            .with_file("r", "config.json", "{}");
        assert_eq!(
            tree.list_dirs("r", "HEAD", "add-ons/*").expect("lists"),
            ["add-ons/argo", "add-ons/grafana"]
        );
        assert_eq!(
            tree.list_dirs("r", "HEAD", "*").expect("lists"),
            ["add-ons"]
        );
        assert_eq!(
            tree.list_files("r", "HEAD", "**/*.yaml").expect("lists"),
            ["add-ons/argo/x/all.yaml", "add-ons/grafana/values.yaml"]
        );
        assert!(matches!(
            tree.list_dirs("other", "HEAD", "*"),
            Err(GitTreeError::UnknownRepository { .. })
        ));
        assert!(matches!(
            tree.read_file("r", "HEAD", "nope"),
            Err(GitTreeError::NotFound { .. })
        ));
    }
}
