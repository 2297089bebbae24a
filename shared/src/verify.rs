//! The acceptance rules of DESIGN.md's trust model: when an agent may act on a signed
//! `ClusterState`, and when an app blob may be parsed. A rejection is a value with one
//! variant per reason and a message an operator can act on.
//!
//! It must not persist anything (the caller keeps `LastAccepted`), read a clock (the caller
//! passes `now`) or do any I/O.

use jiff::{SignedDuration, Timestamp};

use crate::blob::AppBlob;
use crate::digest::Digest;
use crate::envelope::{Envelope, STATE_PAYLOAD_TYPE, decode_sig, pae};
use crate::keys::{KeyId, TrustRoot};
use crate::state::{App, ClusterState};

/// Tunable limits of verification. `Policy::default()` is what agents use unless told
/// otherwise.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Tolerated clock difference between hub and agent, both ways.
    pub skew: SignedDuration,
    /// How far a generation may be ahead of its own `issuedAt` in Unix milliseconds.
    pub max_generation_lead: SignedDuration,
    /// Hard cap on the envelope's size, checked before it is parsed.
    pub max_envelope_bytes: u64,
    /// Hard cap on one app blob's size, checked before it is read.
    pub max_blob_bytes: u64,
    /// At most this many signatures are tried (each costs a verification).
    pub max_signatures: usize,
    /// Hard cap on a whole bundle file.
    pub max_bundle_bytes: u64,
    /// At most this many entries in a bundle file.
    pub max_bundle_entries: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            skew: SignedDuration::from_mins(5),
            max_generation_lead: SignedDuration::from_hours(24),
            max_envelope_bytes: 8 << 20,
            max_blob_bytes: 64 << 20,
            max_signatures: 16,
            max_bundle_bytes: 1 << 30,
            max_bundle_entries: 10_000,
        }
    }
}

/// What the agent persists about the last state it accepted, so that restarts do not reset
/// rollback protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastAccepted {
    pub generation: u64,
    /// SHA-256 of the exact payload bytes, to tell an idempotent re-fetch (same generation,
    /// same bytes) from a forged re-use of a generation. `None` when only the generation is
    /// known (an operator's `--last-generation`): an equal generation is then refused,
    /// because it cannot be shown to be the same state.
    pub payload_digest: Option<Digest>,
}

/// A state that passed every rule, with the exact bytes that were signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedState {
    pub state: ClusterState,
    pub payload: Vec<u8>,
    pub payload_digest: Digest,
    /// The trusted key whose signature verified.
    pub keyid: KeyId,
    /// Fields this v1 agent does not know (to be reported, not acted on).
    pub unknown_fields: Vec<String>,
    /// True when this is the last accepted state again (same generation, same bytes).
    pub same_as_last: bool,
}

impl VerifiedState {
    /// What to persist once this state has been accepted.
    pub fn last_accepted(&self) -> LastAccepted {
        LastAccepted {
            generation: self.state.generation,
            payload_digest: Some(self.payload_digest),
        }
    }
}

/// Why a state or a blob is refused. Nothing in the cluster changes because of a rejected
/// state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("envelope has no signature by a trusted key (signed by {})", keyids_or_none(.keyids))]
    UnknownKey { keyids: Vec<String> },
    #[error(
        "signature by trusted key {keyid} does not verify: the envelope was altered or signed by another key"
    )]
    BadSignature { keyid: String },
    #[error("payload type is {got:?}, expected {STATE_PAYLOAD_TYPE:?}")]
    WrongPayloadType { got: String },
    #[error("state is for cluster {got:?}, but this is cluster {expected:?}")]
    WrongCluster { got: String, expected: String },
    #[error("generation {got} is older than the last accepted generation {last} (rollback)")]
    RolledBack { got: u64, last: u64 },
    #[error(
        "generation {generation} was already accepted, and this payload is not known to be byte-identical to that state"
    )]
    GenerationReused { generation: u64 },
    #[error(
        "generation {generation} is implausibly far ahead: more than {lead:#} after issuedAt {issued_at} (at most {ceiling})"
    )]
    GenerationTooFarAhead {
        generation: u64,
        issued_at: Timestamp,
        lead: SignedDuration,
        ceiling: i128,
    },
    #[error(
        "state is not yet valid: issued at {issued_at}, now is {now} (clock skew allowed: {skew:#})"
    )]
    NotYetValid {
        issued_at: Timestamp,
        now: Timestamp,
        skew: SignedDuration,
    },
    #[error("state expired at {at} (now is {now})")]
    Expired { at: Timestamp, now: Timestamp },
    #[error("state has no apps and does not set allowEmpty")]
    Empty,
    #[error("blob of app {app} is {got} bytes, but the signed state says {expected}")]
    BlobSizeMismatch {
        app: String,
        expected: u64,
        got: u64,
    },
    #[error("blob of app {app} has digest {got}, but the signed state says {expected}")]
    BlobDigestMismatch {
        app: String,
        expected: Digest,
        got: Digest,
    },
}

fn keyids_or_none(keyids: &[String]) -> String {
    if keyids.is_empty() {
        "no key".to_owned()
    } else {
        keyids.join(", ")
    }
}

fn malformed(what: &str, reason: impl ToString) -> Rejection {
    Rejection::Malformed {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// Verifies a signed cluster state with the default `Policy`. See `Policy::verify`.
pub fn verify(
    envelope: &[u8],
    trust_root: &TrustRoot,
    expected_cluster: &str,
    last_accepted: Option<&LastAccepted>,
    now: Timestamp,
) -> Result<VerifiedState, Rejection> {
    Policy::default().verify(envelope, trust_root, expected_cluster, last_accepted, now)
}

/// Checks an app blob against the signed state with the default `Policy`. See
/// `Policy::verify_blob`.
pub fn verify_blob(app: &App, bytes: &[u8]) -> Result<AppBlob, Rejection> {
    Policy::default().verify_blob(app, bytes)
}

impl Policy {
    /// Verifies the envelope's bytes, in this order: size cap; envelope syntax; a signature
    /// by a trusted key over the DSSE PAE; the payload type; the payload's syntax and
    /// structure; the cluster; the generation against the last accepted one; the generation
    /// ceiling; the validity window; and a non-empty state unless `allowEmpty`.
    pub fn verify(
        &self,
        envelope: &[u8],
        trust_root: &TrustRoot,
        expected_cluster: &str,
        last_accepted: Option<&LastAccepted>,
        now: Timestamp,
    ) -> Result<VerifiedState, Rejection> {
        let size = envelope.len() as u64;
        if size > self.max_envelope_bytes {
            return Err(Rejection::TooLarge {
                what: "envelope".to_owned(),
                size,
                limit: self.max_envelope_bytes,
            });
        }
        let envelope = Envelope::from_json(envelope).map_err(|e| malformed("envelope", e))?;
        let (payload, keyid) = self.check_signature(&envelope, trust_root)?;
        if envelope.payload_type != STATE_PAYLOAD_TYPE {
            return Err(Rejection::WrongPayloadType {
                got: envelope.payload_type,
            });
        }

        let parsed =
            ClusterState::from_payload(&payload).map_err(|e| malformed("cluster state", e))?;
        let state = parsed.state;
        state
            .check_structure()
            .map_err(|reason| malformed("cluster state", reason))?;

        if state.cluster != expected_cluster {
            return Err(Rejection::WrongCluster {
                got: state.cluster,
                expected: expected_cluster.to_owned(),
            });
        }

        let payload_digest = Digest::of(&payload);
        let mut same_as_last = false;
        if let Some(last) = last_accepted {
            if state.generation < last.generation {
                return Err(Rejection::RolledBack {
                    got: state.generation,
                    last: last.generation,
                });
            }
            if state.generation == last.generation {
                if last.payload_digest != Some(payload_digest) {
                    return Err(Rejection::GenerationReused {
                        generation: state.generation,
                    });
                }
                same_as_last = true;
            }
        }

        let ceiling =
            i128::from(state.issued_at.as_millisecond()) + self.max_generation_lead.as_millis();
        if i128::from(state.generation) > ceiling {
            return Err(Rejection::GenerationTooFarAhead {
                generation: state.generation,
                issued_at: state.issued_at,
                lead: self.max_generation_lead,
                ceiling,
            });
        }

        // Saturating: a `now` at the edge of the representable range must not panic.
        let latest_issue = now.checked_add(self.skew).unwrap_or(Timestamp::MAX);
        if state.issued_at > latest_issue {
            return Err(Rejection::NotYetValid {
                issued_at: state.issued_at,
                now,
                skew: self.skew,
            });
        }
        let earliest_expiry = now.checked_sub(self.skew).unwrap_or(Timestamp::MIN);
        if state.expires_at <= earliest_expiry {
            return Err(Rejection::Expired {
                at: state.expires_at,
                now,
            });
        }

        if state.apps.is_empty() && !state.allow_empty {
            return Err(Rejection::Empty);
        }

        Ok(VerifiedState {
            state,
            payload,
            payload_digest,
            keyid,
            unknown_fields: parsed.unknown_fields,
            same_as_last,
        })
    }

    /// Finds a signature by a trusted key that verifies over PAE(type, payload). A keyid
    /// names the key to try; an empty keyid tries every trusted key.
    fn check_signature(
        &self,
        envelope: &Envelope,
        trust_root: &TrustRoot,
    ) -> Result<(Vec<u8>, KeyId), Rejection> {
        let payload = envelope
            .payload_bytes()
            .map_err(|e| malformed("envelope", format!("payload is not standard base64: {e}")))?;
        if envelope.signatures.len() > self.max_signatures {
            return Err(malformed(
                "envelope",
                format!(
                    "{} signatures, more than the limit of {}",
                    envelope.signatures.len(),
                    self.max_signatures
                ),
            ));
        }
        let message = pae(&envelope.payload_type, &payload);
        let mut bad_keyid = None;
        let mut unknown = Vec::new();
        for signature in &envelope.signatures {
            let candidates: Vec<_> = if signature.keyid.is_empty() {
                trust_root.keys().collect()
            } else {
                trust_root.get(&signature.keyid).into_iter().collect()
            };
            if candidates.is_empty() {
                unknown.push(signature.keyid.clone());
                continue;
            }
            let Ok(sig) = decode_sig(&signature.sig) else {
                bad_keyid.get_or_insert_with(|| signature.keyid.clone());
                continue;
            };
            for key in candidates {
                if key.verify(&message, &sig) {
                    return Ok((payload, key.keyid().clone()));
                }
            }
            bad_keyid.get_or_insert_with(|| signature.keyid.clone());
        }
        match bad_keyid {
            Some(keyid) => Err(Rejection::BadSignature { keyid }),
            None => Err(Rejection::UnknownKey { keyids: unknown }),
        }
    }

    /// Checks a blob's size and digest against the app's signed `BlobRef` and only then
    /// parses it. The blob must be for this app.
    pub fn verify_blob(&self, app: &App, bytes: &[u8]) -> Result<AppBlob, Rejection> {
        let size = bytes.len() as u64;
        if size > self.max_blob_bytes {
            return Err(Rejection::TooLarge {
                what: format!("blob of app {}", app.name),
                size,
                limit: self.max_blob_bytes,
            });
        }
        if size != app.blob.size {
            return Err(Rejection::BlobSizeMismatch {
                app: app.name.clone(),
                expected: app.blob.size,
                got: size,
            });
        }
        let digest = Digest::of(bytes);
        if digest != app.blob.digest {
            return Err(Rejection::BlobDigestMismatch {
                app: app.name.clone(),
                expected: app.blob.digest,
                got: digest,
            });
        }
        let what = format!("blob of app {}", app.name);
        let blob = AppBlob::from_json(bytes).map_err(|e| malformed(&what, e))?;
        if let Some(named) = blob.app.as_ref().filter(|named| **named != app.name) {
            return Err(malformed(&what, format!("it is the blob of app {named:?}")));
        }
        Ok(blob)
    }
}

#[cfg(test)]
mod tests;
