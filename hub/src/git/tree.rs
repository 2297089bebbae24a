//! Reads commits of cached repositories: resolves a revision (branch, tag, full commit id,
//! `HEAD`) to a commit, lists and reads files straight from the object database, and
//! materializes a commit's tree into a checkout directory for rendering. It reads the cache
//! and writes checkouts on disk; it never talks to the network (fetching is
//! [`super::fetch`]'s job). [`Fetcher`] implements [`GitTree`] for the ApplicationSet Git
//! generators over what was last fetched.
//!
//! Hard limits: a file larger than `max_file_bytes` is never read, a checkout stops at
//! `max_checkout_bytes` and `max_entries`, and a tree entry whose name could leave the checkout
//! (`..`, `.git`, a separator) is refused. Symbolic links are written as links; the renderer's
//! tree check refuses those that point outside the repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use tracing::{debug, instrument};

use super::fetch::{FetchError, FetchLimits, Fetcher};
use crate::declarative::git_tree::{GitTree, GitTreeError};
use crate::declarative::glob::{DoubleStar, path_matches};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("resolve {revision} in {url}: no such branch, tag or commit")]
    Resolve { url: String, revision: String },
    #[error("read {url} at {commit}: {source}")]
    Read {
        url: String,
        commit: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("file {path} does not exist in {url} at {commit}")]
    NotFound {
        url: String,
        commit: String,
        path: String,
    },
    #[error("file {path} in {url} is not a regular file")]
    NotAFile { url: String, path: String },
    #[error("file {path} in {url} exceeds {limit} bytes")]
    FileTooLarge {
        url: String,
        path: String,
        limit: u64,
    },
    #[error("checkout {url} at {commit}: exceeds {limit}")]
    TooLarge {
        url: String,
        commit: String,
        limit: String,
    },
    #[error("checkout {url} at {commit}: tree entry {path:?} is not a safe file name")]
    UnsafeName {
        url: String,
        commit: String,
        path: String,
    },
    #[error("checkout {url} into {dir}: {source}")]
    Checkout {
        url: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One cached repository, as last fetched. Cheap to clone and safe to share.
#[derive(Clone)]
pub struct CachedRepository {
    url: String,
    repo: gix::ThreadSafeRepository,
    limits: FetchLimits,
}

impl std::fmt::Debug for CachedRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedRepository")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What a checkout wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    pub files: usize,
    pub bytes: u64,
}

/// One entry of a flattened tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlatEntry {
    path: String,
    kind: EntryKind,
    id: ObjectId,
}

impl CachedRepository {
    pub(super) fn new(url: String, repo: gix::ThreadSafeRepository, limits: FetchLimits) -> Self {
        Self { url, repo, limits }
    }

    /// The repository URL as fetched, without userinfo.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The commit `revision` names: empty or `HEAD` is the remote's HEAD; a full hex commit
    /// id must be in the cache; otherwise, as git reads names, `refs/…`, then a tag, then a
    /// branch. Annotated tags are peeled to their commit.
    pub fn resolve(&self, revision: &str) -> Result<ObjectId, TreeError> {
        let repo = self.repo.to_thread_local();
        let revision = revision.trim();
        let not_found = || TreeError::Resolve {
            url: self.url.clone(),
            revision: revision.to_owned(),
        };
        if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
            let id = ObjectId::from_hex(revision.as_bytes()).map_err(|_| not_found())?;
            return repo
                .find_object(id)
                .ok()
                .and_then(|object| object.peel_to_commit().ok())
                .map(|commit| commit.id)
                .ok_or_else(not_found);
        }
        let candidates: Vec<String> = if revision.is_empty() || revision == "HEAD" {
            vec!["refs/flotilla/HEAD".into()]
        } else if revision.starts_with("refs/") {
            vec![revision.to_owned()]
        } else {
            vec![
                format!("refs/tags/{revision}"),
                format!("refs/heads/{revision}"),
            ]
        };
        for name in candidates {
            let Ok(Some(mut reference)) = repo.try_find_reference(name.as_str()) else {
                continue;
            };
            let id = reference.peel_to_id().map_err(|_| not_found())?;
            let commit = id
                .object()
                .ok()
                .and_then(|object| object.peel_to_commit().ok())
                .ok_or_else(not_found)?;
            return Ok(commit.id);
        }
        Err(not_found())
    }

    fn read_error(
        &self,
        commit: ObjectId,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> TreeError {
        TreeError::Read {
            url: self.url.clone(),
            commit: commit.to_string(),
            source: source.into(),
        }
    }

    /// Every entry of the commit's tree, depth first, in path order.
    fn flatten(&self, commit: ObjectId) -> Result<Vec<FlatEntry>, TreeError> {
        let repo = self.repo.to_thread_local();
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree_id().map(|id| id.detach()))
            .map_err(|e| self.read_error(commit, e))?;
        let mut out = Vec::new();
        let mut pending = vec![(String::new(), tree)];
        while let Some((prefix, id)) = pending.pop() {
            let tree = repo.find_tree(id).map_err(|e| self.read_error(commit, e))?;
            let decoded = tree.decode().map_err(|e| self.read_error(commit, e))?;
            for entry in decoded.entries.iter() {
                let name = entry.filename.to_string();
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                if !safe_name(&name) {
                    return Err(TreeError::UnsafeName {
                        url: self.url.clone(),
                        commit: commit.to_string(),
                        path,
                    });
                }
                let kind = entry.mode.kind();
                if kind == EntryKind::Tree {
                    pending.push((path.clone(), entry.oid.to_owned()));
                }
                out.push(FlatEntry {
                    path,
                    kind,
                    id: entry.oid.to_owned(),
                });
                if out.len() > self.limits.max_entries {
                    return Err(TreeError::TooLarge {
                        url: self.url.clone(),
                        commit: commit.to_string(),
                        limit: format!("{} entries", self.limits.max_entries),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Paths of the regular files (and links) of `commit`, in path order.
    pub fn list_files(&self, commit: ObjectId) -> Result<Vec<String>, TreeError> {
        Ok(self
            .flatten(commit)?
            .into_iter()
            .filter(|e| e.kind != EntryKind::Tree && e.kind != EntryKind::Commit)
            .map(|e| e.path)
            .collect())
    }

    /// Paths of the directories of `commit`, in path order.
    pub fn list_dirs(&self, commit: ObjectId) -> Result<Vec<String>, TreeError> {
        Ok(self
            .flatten(commit)?
            .into_iter()
            .filter(|e| e.kind == EntryKind::Tree)
            .map(|e| e.path)
            .collect())
    }

    /// The bytes of the regular file at `path` in `commit`, refused above `max_file_bytes`.
    pub fn read_file(&self, commit: ObjectId, path: &str) -> Result<Vec<u8>, TreeError> {
        let repo = self.repo.to_thread_local();
        let path = path.trim_start_matches('/');
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| self.read_error(commit, e))?;
        let entry = tree
            .lookup_entry_by_path(path)
            .map_err(|e| self.read_error(commit, e))?
            .ok_or_else(|| TreeError::NotFound {
                url: self.url.clone(),
                commit: commit.to_string(),
                path: path.to_owned(),
            })?;
        if !matches!(
            entry.mode().kind(),
            EntryKind::Blob | EntryKind::BlobExecutable
        ) {
            return Err(TreeError::NotAFile {
                url: self.url.clone(),
                path: path.to_owned(),
            });
        }
        self.read_blob(&repo, commit, entry.object_id(), path)
    }

    fn read_blob(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        id: ObjectId,
        path: &str,
    ) -> Result<Vec<u8>, TreeError> {
        let header = repo
            .find_header(id)
            .map_err(|e| self.read_error(commit, e))?;
        if header.size() > self.limits.max_file_bytes {
            return Err(TreeError::FileTooLarge {
                url: self.url.clone(),
                path: path.to_owned(),
                limit: self.limits.max_file_bytes,
            });
        }
        let blob = repo.find_blob(id).map_err(|e| self.read_error(commit, e))?;
        Ok(blob.data.clone())
    }

    /// Writes the tree of `commit` into `dir` (created; it must be empty or absent). Files
    /// keep their executable bit, links are written as links, submodules are left out.
    #[instrument(skip_all, fields(url = %self.url, %commit))]
    pub fn checkout(&self, commit: ObjectId, dir: &Path) -> Result<CheckoutStats, TreeError> {
        let io = |source: std::io::Error| TreeError::Checkout {
            url: self.url.clone(),
            dir: dir.to_path_buf(),
            source,
        };
        let repo = self.repo.to_thread_local();
        let entries = self.flatten(commit)?;
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut stats = CheckoutStats::default();
        for entry in entries {
            let target = dir.join(&entry.path);
            match entry.kind {
                EntryKind::Tree => std::fs::create_dir_all(&target).map_err(io)?,
                EntryKind::Commit => {}
                EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                    let data = self.read_blob(&repo, commit, entry.id, &entry.path)?;
                    stats.bytes += data.len() as u64;
                    stats.files += 1;
                    if stats.bytes > self.limits.max_checkout_bytes {
                        return Err(TreeError::TooLarge {
                            url: self.url.clone(),
                            commit: commit.to_string(),
                            limit: format!("{} bytes", self.limits.max_checkout_bytes),
                        });
                    }
                    write_entry(&target, entry.kind, &data).map_err(io)?;
                }
            }
        }
        debug!(files = stats.files, bytes = stats.bytes, "checked out");
        Ok(stats)
    }
}

/// Whether a tree entry name stays inside its directory in any checkout.
fn safe_name(name: &str) -> bool {
    !(name.is_empty()
        || name == "."
        || name == ".."
        || name.eq_ignore_ascii_case(".git")
        || name.contains(['/', '\\', '\0']))
}

fn write_entry(target: &Path, kind: EntryKind, data: &[u8]) -> std::io::Result<()> {
    if kind == EntryKind::Link {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            return std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(data), target);
        }
        #[cfg(not(unix))]
        return Err(std::io::Error::other(
            "symbolic links are not supported here",
        ));
    }
    std::fs::write(target, data)?;
    #[cfg(unix)]
    if kind == EntryKind::BlobExecutable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn hidden(path: &str) -> bool {
    path.split('/').any(|segment| segment.starts_with('.'))
}

impl Fetcher {
    fn tree_for(
        &self,
        repo: &str,
        revision: &str,
    ) -> Result<(CachedRepository, ObjectId), GitTreeError> {
        let cached = self.cached(repo).map_err(|error| match error {
            FetchError::NotFetched { url } | FetchError::PasswordInUrl { url } => {
                GitTreeError::UnknownRepository { repo: url }
            }
            other => GitTreeError::Read {
                repo: crate::git::credentials::redact_url(repo),
                revision: revision.to_owned(),
                source: Box::new(other),
            },
        })?;
        let commit = cached
            .resolve(revision)
            .map_err(|e| tree_error(&cached, revision, e))?;
        Ok((cached, commit))
    }
}

fn tree_error(cached: &CachedRepository, revision: &str, error: TreeError) -> GitTreeError {
    match error {
        TreeError::NotFound { path, .. } => GitTreeError::NotFound { path },
        other => GitTreeError::Read {
            repo: cached.url().to_owned(),
            revision: revision.to_owned(),
            source: Box::new(other),
        },
    }
}

/// The Git generators read what was last fetched; a repository never fetched is
/// [`GitTreeError::UnknownRepository`].
impl GitTree for Fetcher {
    fn list_dirs(
        &self,
        repo: &str,
        revision: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError> {
        let (cached, commit) = self.tree_for(repo, revision)?;
        let dirs: BTreeSet<String> = cached
            .list_dirs(commit)
            .map_err(|e| tree_error(&cached, revision, e))?
            .into_iter()
            .filter(|d| !hidden(d) && path_matches(pattern, d, DoubleStar::SameAsStar))
            .collect();
        Ok(dirs.into_iter().collect())
    }

    fn list_files(
        &self,
        repo: &str,
        revision: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError> {
        let (cached, commit) = self.tree_for(repo, revision)?;
        Ok(cached
            .list_files(commit)
            .map_err(|e| tree_error(&cached, revision, e))?
            .into_iter()
            .filter(|f| !hidden(f) && path_matches(pattern, f, DoubleStar::AnySegments))
            .collect())
    }

    fn read_file(&self, repo: &str, revision: &str, path: &str) -> Result<Vec<u8>, GitTreeError> {
        let (cached, commit) = self.tree_for(repo, revision)?;
        cached
            .read_file(commit, path)
            .map_err(|e| tree_error(&cached, revision, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_a_checkout_are_unsafe() {
        for name in ["", ".", "..", ".git", ".GIT", "a/b", "a\\b", "a\0"] {
            assert!(!safe_name(name), "{name:?}");
        }
        for name in ["a", ".github", "..a", "a..", ".gitignore", "values.yaml"] {
            assert!(safe_name(name), "{name:?}");
        }
    }
}
