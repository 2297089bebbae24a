//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse>): the JSON form, the
//! pre-authentication encoding (PAE) and Ed25519 signing over it.
//!
//! It owns the envelope's bytes on the wire. It must not decide whether a signed payload is
//! acceptable: that is `verify`'s job, which checks signatures against a `TrustRoot`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::SigningKey;

/// The payloadType of a signed `ClusterState`.
pub const STATE_PAYLOAD_TYPE: &str = "application/vnd.flotilla.cluster-state.v1+json";

/// A DSSE envelope as it travels: `payload` and each `sig` are standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Signature>,
}

/// One signature of an envelope. `keyid` is an unauthenticated hint (DSSE allows it to be
/// empty or absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, with LEN the ASCII decimal byte
/// length. This, not the payload, is what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` as `payload_type` with one key.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Self {
        Self::sign_all(payload_type, payload, &[key])
    }

    /// Signs `payload` with each key in turn (for a key rotation, say).
    pub fn sign_all(payload_type: &str, payload: &[u8], keys: &[&SigningKey]) -> Self {
        let message = pae(payload_type, payload);
        let signatures = keys
            .iter()
            .map(|key| Signature {
                keyid: key.keyid().to_string(),
                sig: STANDARD.encode(key.sign(&message)),
            })
            .collect();
        Self {
            payload_type: payload_type.to_owned(),
            payload: STANDARD.encode(payload),
            signatures,
        }
    }

    /// The envelope's JSON bytes (compact, fields in DSSE order).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of strings always serializes")
    }

    /// Parses the envelope's JSON without checking anything it says.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The decoded payload bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(&self.payload)
    }
}

/// Decodes one signature's standard base64.
pub(crate) fn decode_sig(sig: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // The worked example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
        // Lengths are byte lengths, not character counts.
        assert_eq!(pae("é", "ü".as_bytes()), "DSSEv1 2 é 2 ü".as_bytes());
    }

    #[test]
    fn envelope_json_has_the_dsse_field_names() {
        let key = SigningKey::from_seed([3; 32]);
        let envelope = Envelope::sign(STATE_PAYLOAD_TYPE, b"{}", &key);
        let json: serde_json::Value =
            serde_json::from_slice(&envelope.to_json()).expect("valid JSON");
        assert_eq!(json["payloadType"], STATE_PAYLOAD_TYPE);
        assert_eq!(json["payload"], "e30=");
        assert_eq!(json["signatures"][0]["keyid"], key.keyid().as_str());
        let sig = decode_sig(json["signatures"][0]["sig"].as_str().expect("a string"))
            .expect("standard base64");
        assert_eq!(sig.len(), 64);
        assert_eq!(
            Envelope::from_json(&envelope.to_json()).expect("parses"),
            envelope
        );
    }
}
