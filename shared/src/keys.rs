//! Ed25519 signing and trusted keys: PKCS#8 PEM private keys, SPKI PEM public keys, key ids
//! (lowercase hex SHA-256 of the SPKI DER) and the `TrustRoot` an agent verifies against.
//!
//! It must not read key files itself, generate randomness of its own, or ever put private key
//! material into `Debug` output or an error.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use pkcs8::LineEnding;
use pkcs8::der::zeroize::Zeroizing;
use sha2::{Digest as _, Sha256};

/// A key id: lowercase hex SHA-256 of the public key's SPKI DER encoding.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The key id as it appears in a DSSE signature's `keyid`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Why key material could not be read. Messages never contain the key itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("private key is not a PKCS#8 PEM Ed25519 key: {0}")]
    Private(String),
    #[error("public key is not an SPKI PEM Ed25519 key: {0}")]
    Public(String),
}

/// An Ed25519 public key together with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
    keyid: KeyId,
}

impl PublicKey {
    fn new(key: ed25519_dalek::VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .expect("an Ed25519 public key always encodes as SPKI DER");
        let keyid = KeyId(hex::encode(Sha256::digest(der.as_bytes())));
        Self { key, keyid }
    }

    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) Ed25519 public key.
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self::new)
            .map_err(|e| KeyError::Public(e.to_string()))
    }

    /// The SPKI PEM encoding, with `\n` line endings.
    pub fn to_spki_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key always encodes as SPKI PEM")
    }

    /// The SPKI DER encoding.
    pub fn to_spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .expect("an Ed25519 public key always encodes as SPKI DER")
            .into_vec()
    }

    pub fn keyid(&self) -> &KeyId {
        &self.keyid
    }

    /// Verifies a signature strictly (no small-order keys, no malleable signatures).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.keyid)
    }
}

/// An Ed25519 signing key. Its `Debug` shows only the key id.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl SigningKey {
    /// A key from 32 secret bytes; the caller supplies the randomness (this crate has none).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = PublicKey::new(key.verifying_key());
        Self { key, public }
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| KeyError::Private(e.to_string()))?;
        let public = PublicKey::new(key.verifying_key());
        Ok(Self { key, public })
    }

    /// The PKCS#8 v1 PEM encoding (RFC 8410, as OpenSSL writes it); the buffer is wiped
    /// when dropped.
    ///
    /// Invariant: v1, without the optional public key. ed25519-dalek's own encoding is v2
    /// (OneAsymmetricKey with the public key), which OpenSSL 3 and pyca/cryptography refuse
    /// to read; the interoperability tests hold us to a file every tool accepts.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 private key always encodes as PKCS#8 PEM")
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn keyid(&self) -> &KeyId {
        &self.public.keyid
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public.keyid)
    }
}

/// The public keys an agent trusts to sign its cluster state. Several keys allow rotation
/// without downtime: any one of them suffices.
#[derive(Debug, Clone, Default)]
pub struct TrustRoot {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl TrustRoot {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut root = Self::default();
        for key in keys {
            root.add(key);
        }
        root
    }

    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(key.keyid.clone(), key);
    }

    pub fn get(&self, keyid: &str) -> Option<&PublicKey> {
        self.keys.get(&KeyId(keyid.to_owned()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_keyid_is_sha256_of_spki_der() {
        let key = SigningKey::from_seed([7; 32]);
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = SigningKey::from_pkcs8_pem(&pem).expect("reads its own PEM");
        assert_eq!(again.keyid(), key.keyid());

        let public_pem = key.public_key().to_spki_pem();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let public = PublicKey::from_spki_pem(&public_pem).expect("reads its own PEM");
        assert_eq!(public, *key.public_key());
        let der = public.to_spki_der();
        assert_eq!(
            der.len(),
            44,
            "Ed25519 SPKI DER is 12 bytes of prefix and 32 of key"
        );
        assert_eq!(public.keyid().as_str(), hex::encode(Sha256::digest(&der)));
        assert_eq!(public.keyid().as_str().len(), 64);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let key = SigningKey::from_seed([9; 32]);
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("SigningKey({})", key.keyid()));
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&body));
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let err = SigningKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
        )
        .expect_err("not a key");
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert!(PublicKey::from_spki_pem("nope").is_err());
        // A private key is not a public key.
        let key = SigningKey::from_seed([1; 32]);
        assert!(PublicKey::from_spki_pem(&key.to_pkcs8_pem()).is_err());
    }

    #[test]
    fn trust_root_finds_keys_by_id() {
        let a = SigningKey::from_seed([1; 32]);
        let b = SigningKey::from_seed([2; 32]);
        let root = TrustRoot::new([a.public_key().clone(), b.public_key().clone()]);
        assert_eq!(root.keys().count(), 2);
        assert!(root.get(a.keyid().as_str()).is_some());
        assert!(root.get(b.keyid().as_str()).is_some());
        assert!(root.get("00").is_none());
        let sig = a.sign(b"m");
        assert!(a.public_key().verify(b"m", &sig));
        assert!(!b.public_key().verify(b"m", &sig));
        assert!(!a.public_key().verify(b"n", &sig));
        assert!(!a.public_key().verify(b"m", &sig[..63]));
    }
}
