//! `flotilla-hub keygen`: creates the hub's Ed25519 signing key pair on disk — `signing.key`
//! (PKCS#8 PEM, mode 0600) and `signing.pub` (SPKI PEM). It never overwrites a key and never
//! prints or logs the private key.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flotilla_shared::{KeyId, SigningKey};
use rand_core::{OsRng, RngCore as _};

/// File name of the private key inside the output directory.
pub const PRIVATE_KEY_FILE: &str = "signing.key";
/// File name of the public key inside the output directory.
pub const PUBLIC_KEY_FILE: &str = "signing.pub";

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write signing.key and signing.pub into (created if missing).
    #[arg(long, env = "FLOTILLA_HUB_KEYGEN_OUT")]
    pub out: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("key file {0} already exists; refusing to overwrite a signing key")]
    Exists(PathBuf),
    #[error("create key directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Generates a key pair from the operating system's randomness and writes it to `dir`.
pub fn keygen(dir: &Path) -> Result<KeyId, KeygenError> {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let key = SigningKey::from_seed(seed);
    write_key_pair(dir, &key)?;
    Ok(key.keyid().clone())
}

/// Writes `key` as `signing.key` (0600) and `signing.pub` (0644) in `dir`; refuses if either
/// file exists, before writing anything.
pub fn write_key_pair(dir: &Path, key: &SigningKey) -> Result<(), KeygenError> {
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for path in [&private, &public] {
        if path.symlink_metadata().is_ok() {
            return Err(KeygenError::Exists(path.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| KeygenError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    write_new(&private, key.to_pkcs8_pem().as_bytes(), 0o600)?;
    write_new(&public, key.public_key().to_spki_pem().as_bytes(), 0o644)
}

/// Creates a file that must not exist yet, with `mode` from the start (no window in which a
/// private key is readable by others).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeygenError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeygenError::Exists(path.to_owned())
        } else {
            KeygenError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeygenError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_readable_pair_with_a_private_mode_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("keys");
        let keyid = keygen(&out).expect("writes");
        let private = std::fs::read_to_string(out.join(PRIVATE_KEY_FILE)).expect("reads");
        let public = std::fs::read_to_string(out.join(PUBLIC_KEY_FILE)).expect("reads");
        let key = SigningKey::from_pkcs8_pem(&private).expect("PKCS#8");
        assert_eq!(key.keyid(), &keyid);
        assert_eq!(
            flotilla_shared::PublicKey::from_spki_pem(&public)
                .expect("SPKI")
                .keyid(),
            &keyid
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(out.join(PRIVATE_KEY_FILE))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = keygen(&out).expect_err("exists");
        assert!(matches!(err, KeygenError::Exists(_)));
        // The existing key is untouched.
        assert_eq!(
            std::fs::read_to_string(out.join(PRIVATE_KEY_FILE)).expect("reads"),
            private
        );
        // A second run never produces the same key.
        let other = keygen(&dir.path().join("other")).expect("writes");
        assert_ne!(other, keyid);
    }
}
