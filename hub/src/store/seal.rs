//! Encryption at rest of repository credentials: XChaCha20-Poly1305 under a 32-byte key kept
//! in the data directory (`credentials.key`, mode 0600), separate from the database so that a
//! copied database alone reveals no credential.
//!
//! Each sealed value is bound to its repository URL (associated data), so a ciphertext moved
//! to another row does not open. It must never put a key, a plaintext or a ciphertext into an
//! error, a log line or `Debug` output.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret as _, ExposeSecretMut as _, SecretBox, SecretSlice};

/// File name of the credentials key inside the data directory.
pub const CREDENTIAL_KEY_FILE: &str = "credentials.key";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Repository credentials in the clear (their format belongs to the fetcher). `Debug` shows
/// nothing of them; the memory is wiped when dropped.
pub struct Credentials(SecretSlice<u8>);

impl Credentials {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// The plaintext, for the fetcher only.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(redacted)")
    }
}

/// Why a key could not be loaded or a value not be opened. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("read credentials key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials key {path} is not {KEY_LEN} bytes")]
    KeyLength { path: PathBuf },
    #[error("write credentials key {path}: {source}")]
    WriteKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "credentials of repository {url} do not open with this data directory's key (wrong key, or altered)"
    )]
    Open { url: String },
}

/// The key that seals credentials. `Debug` shows nothing of it.
pub struct CredentialKey(SecretBox<[u8; KEY_LEN]>);

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(redacted)")
    }
}

impl CredentialKey {
    /// A key from given bytes (tests, and a key handed over by a secret manager).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// Reads `credentials.key` from `data_dir`, creating it (mode 0600, random) when missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SealError> {
        let path = data_dir.join(CREDENTIAL_KEY_FILE);
        match std::fs::File::open(&path) {
            Ok(mut file) => {
                let mut bytes = SecretBox::new(Box::new([0u8; KEY_LEN]));
                let mut rest = Vec::new();
                file.read_exact(bytes.expose_secret_mut())
                    .and_then(|()| file.read_to_end(&mut rest))
                    .map_err(|source| match source.kind() {
                        std::io::ErrorKind::UnexpectedEof => {
                            SealError::KeyLength { path: path.clone() }
                        }
                        _ => SealError::ReadKey {
                            path: path.clone(),
                            source,
                        },
                    })?;
                if !rest.is_empty() {
                    return Err(SealError::KeyLength { path });
                }
                Ok(Self(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(source) => Err(SealError::ReadKey { path, source }),
        }
    }

    fn create(path: &Path) -> Result<Self, SealError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&key);
        let key = Self::from_bytes(bytes);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let write_err = |source| SealError::WriteKey {
            path: path.to_owned(),
            source,
        };
        let mut file = options.open(path).map_err(write_err)?;
        file.write_all(key.0.expose_secret())
            .and_then(|()| file.sync_all())
            .map_err(write_err)?;
        Ok(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    /// `nonce || ciphertext` of `credentials`, bound to `url`.
    pub fn seal(&self, url: &str, credentials: &Credentials) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: credentials.expose(),
            aad: url.as_bytes(),
        };
        let sealed = self
            .cipher()
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what `seal` produced for the same `url`.
    pub fn open(&self, url: &str, sealed: &[u8]) -> Result<Credentials, SealError> {
        let refuse = || SealError::Open {
            url: url.to_owned(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(refuse());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: url.as_bytes(),
        };
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), payload)
            .map(Credentials::new)
            .map_err(|_| refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_url() {
        let key = CredentialKey::from_bytes([5; 32]);
        let secret = Credentials::new(b"token-s3cr3t".to_vec());
        let sealed = key.seal("https://git.example/a.git", &secret);
        assert!(!sealed.windows(12).any(|w| w == b"token-s3cr3t"));
        let opened = key
            .open("https://git.example/a.git", &sealed)
            .expect("opens");
        assert_eq!(opened.expose(), b"token-s3cr3t");
        // Another row, another key, a cut ciphertext: refused, without echoing anything.
        let err = key
            .open("https://git.example/b.git", &sealed)
            .expect_err("bound to a");
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(
            CredentialKey::from_bytes([6; 32])
                .open("https://git.example/a.git", &sealed)
                .is_err()
        );
        assert!(
            key.open("https://git.example/a.git", &sealed[..10])
                .is_err()
        );
        assert_eq!(
            format!("{secret:?} {key:?}"),
            "Credentials(redacted) CredentialKey(redacted)"
        );
    }

    #[test]
    fn key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = CredentialKey::load_or_create(dir.path()).expect("created");
        let sealed = key.seal("u", &Credentials::new(b"x".to_vec()));
        let again = CredentialKey::load_or_create(dir.path()).expect("read");
        assert_eq!(again.open("u", &sealed).expect("same key").expose(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(CREDENTIAL_KEY_FILE))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(CREDENTIAL_KEY_FILE), b"short").expect("write");
        assert!(matches!(
            CredentialKey::load_or_create(dir.path()),
            Err(SealError::KeyLength { .. })
        ));
    }
}
