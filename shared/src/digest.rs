//! Content addresses: `sha256:<64 lowercase hex>` as used by app blobs, OCI blobs and the
//! last-accepted payload. Owns parsing, formatting and computing them; it must not know what
//! the bytes mean.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";

/// A SHA-256 content address, written `sha256:<64 lowercase hex>`.
///
/// Invariant: the textual form is canonical, so two equal digests always print the same
/// string (upper-case hex is refused when parsing rather than normalised).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} does not start with \"sha256:\"")]
    Algorithm(String),
    #[error("digest {0:?} is not 64 lowercase hex characters after \"sha256:\"")]
    Hex(String),
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters, without the `sha256:` prefix (the file name of an
    /// OCI blob).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the bare 64-character lowercase hex form (an OCI blob's file name).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        let invalid = || DigestError::Hex(format!("{PREFIX}{hex}"));
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| invalid())?;
        Ok(Self(out))
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| DigestError::Algorithm(s.to_owned()))?;
        Self::from_hex(hex).map_err(|_| DigestError::Hex(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The OCI empty config `{}`.
        assert_eq!(
            Digest::of(b"{}").to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    fn check(input: &str, ok: bool) {
        let parsed = input.parse::<Digest>();
        assert_eq!(parsed.is_ok(), ok, "{input}: {parsed:?}");
        if let Ok(d) = parsed {
            assert_eq!(d.to_string(), input);
        }
    }

    #[test]
    fn parsing() {
        let hex = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        check(&format!("sha256:{hex}"), true);
        check(hex, false);
        check(&format!("sha512:{hex}"), false);
        check(&format!("sha256:{}", hex.to_uppercase()), false);
        check(&format!("sha256:{}", &hex[1..]), false);
        check(&format!("sha256:{hex}0"), false);
        check(
            "sha256:zz136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            false,
        );
        check("", false);
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).expect("serializes");
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).expect("parses"), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
