//! Everything hub and agent must agree on byte for byte: the signed `ClusterState`, app
//! blobs, DSSE envelopes, bundle files and the rules by which an agent accepts a state.
//!
//! This crate is pure: it performs no network or file-system I/O of its own and pulls in
//! no async runtime, HTTP stack, Kubernetes client or Git library. Callers hand it bytes
//! (or a reader) and get values back.

pub mod agent_api;
pub mod blob;
pub mod bundle;
pub mod digest;
pub mod envelope;
pub mod error_chain;
pub mod identity;
pub mod keys;
pub mod state;
pub mod verify;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use blob::AppBlob;
pub use bundle::{VerifiedBundle, read_bundle, write_bundle};
pub use digest::Digest;
pub use envelope::{Envelope, STATE_PAYLOAD_TYPE};
pub use keys::{KeyId, PublicKey, SigningKey, TrustRoot};
pub use state::ClusterState;
pub use verify::{LastAccepted, Policy, Rejection, VerifiedState, verify, verify_blob};
