//! The cache directory (`--cache-dir`, a volume): the envelope of the newest verified state and
//! the app blobs it names, so that an agent restarted while the hub is unreachable can verify
//! them again and keep enforcing that state. Talks to the disk.
//!
//! Layout: `state.dsse.json` and `blobs/sha256/<hex>`. Every file is written to a temporary
//! name and renamed, so a crash leaves the old file or the new one, never half of one.
//! Invariant: nothing read from here is trusted: the envelope is verified again and each blob
//! is checked against the digest and size the signed state names before it is parsed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flotilla_shared::Digest;

const ENVELOPE_FILE: &str = "state.dsse.json";
const BLOB_DIR: &str = "blobs/sha256";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cache directory of one agent.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating it if need be) the cache in `dir`.
    pub async fn open(dir: &Path) -> Result<Cache, CacheError> {
        let blobs = dir.join(BLOB_DIR);
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(|source| CacheError::Io {
                path: blobs,
                source,
            })?;
        Ok(Cache {
            dir: dir.to_owned(),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(BLOB_DIR).join(digest.hex())
    }

    /// The cached envelope, if there is one.
    pub async fn envelope(&self) -> Result<Option<Vec<u8>>, CacheError> {
        read_optional(&self.dir.join(ENVELOPE_FILE)).await
    }

    /// The cached bytes of a blob, if there are any (unchecked: the caller verifies them).
    pub async fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, CacheError> {
        read_optional(&self.blob_path(digest)).await
    }

    pub async fn put_envelope(&self, bytes: &[u8]) -> Result<(), CacheError> {
        write_atomically(&self.dir.join(ENVELOPE_FILE), bytes).await
    }

    pub async fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), CacheError> {
        write_atomically(&self.blob_path(digest), bytes).await
    }

    /// Removes every cached blob that `keep` does not name (and leftover temporary files).
    pub async fn retain(&self, keep: &BTreeSet<Digest>) -> Result<(), CacheError> {
        let dir = self.dir.join(BLOB_DIR);
        let io = |source| CacheError::Io {
            path: dir.clone(),
            source,
        };
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(io)?;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let name = entry.file_name();
            let kept = name
                .to_str()
                .and_then(|hex| Digest::from_hex(hex).ok())
                .is_some_and(|digest| keep.contains(&digest));
            if !kept {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                }
            }
        }
        Ok(())
    }
}

async fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CacheError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    tokio::fs::write(&temporary, bytes).await.map_err(io)?;
    tokio::fs::rename(&temporary, path).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_what_it_is_given_and_drops_what_is_not_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Cache::open(&dir.path().join("cache")).await.expect("open");
        assert_eq!(cache.envelope().await.expect("read"), None);
        cache.put_envelope(b"envelope").await.expect("write");
        assert_eq!(
            cache.envelope().await.expect("read").as_deref(),
            Some(&b"envelope"[..])
        );
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        cache.put_blob(&a, b"a").await.expect("write");
        cache.put_blob(&b, b"b").await.expect("write");
        cache.retain(&BTreeSet::from([b])).await.expect("retain");
        assert_eq!(cache.blob(&a).await.expect("read"), None);
        assert_eq!(
            cache.blob(&b).await.expect("read").as_deref(),
            Some(&b"b"[..])
        );
    }
}
