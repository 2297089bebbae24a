//! `flotilla-agent verify`: reads a bundle file from disk and checks it exactly as the agent
//! would before applying it, printing what it holds or precisely why it is refused. It owns
//! the command's options and its report; every rule lives in `flotilla-shared`. It never
//! touches a cluster.

use std::fmt;
use std::path::PathBuf;

use flotilla_shared::bundle::{BundleError, VerifiedBundle};
use flotilla_shared::keys::KeyError;
use flotilla_shared::{LastAccepted, Policy, PublicKey, TrustRoot};
use jiff::Timestamp;

/// Which bundle, which keys to trust, which cluster: what `verify` and `apply` share.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The bundle file.
    #[arg(long, env = "FLOTILLA_AGENT_BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Which keys to trust and which cluster this is: what every command that verifies a
/// state shares (`verify`, `apply`, `run`).
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// A trusted public key (SPKI PEM). Repeatable; any one of them suffices. In the
    /// environment, separate paths with `:`.
    #[arg(
        long = "trust-key",
        env = "FLOTILLA_AGENT_TRUST_KEYS",
        value_delimiter = ':',
        required = true
    )]
    pub trust_keys: Vec<PathBuf>,
    /// This agent's cluster name; the state must be for it.
    #[arg(long, env = "FLOTILLA_AGENT_CLUSTER")]
    pub cluster: String,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: BundleArgs,
    /// The last generation this cluster accepted: an older one is a rollback, and the same
    /// one is refused too (it cannot be shown to be the same state).
    #[arg(long, env = "FLOTILLA_AGENT_LAST_GENERATION")]
    pub last_generation: Option<u64>,
}

/// Why verification could not even be attempted (as opposed to a refused bundle).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("read trusted key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trusted key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("open bundle file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The outcome for the operator: what the bundle holds, or why it is refused.
#[derive(Debug)]
pub enum Outcome {
    Verified(Box<VerifiedBundle>),
    Refused(BundleError),
}

/// Reads the trusted public keys (SPKI PEM files) into a trust root.
pub fn load_trust_root(paths: &[PathBuf]) -> Result<TrustRoot, VerifyError> {
    let mut trust_root = TrustRoot::default();
    for path in paths {
        let pem = std::fs::read_to_string(path).map_err(|source| VerifyError::ReadKey {
            path: path.clone(),
            source,
        })?;
        let key = PublicKey::from_spki_pem(&pem).map_err(|source| VerifyError::Key {
            path: path.clone(),
            source,
        })?;
        trust_root.add(key);
    }
    Ok(trust_root)
}

/// Reads a bundle file whole (bounded by the policy's cap on bundle files).
pub fn read_bundle_file(path: &std::path::Path) -> Result<Vec<u8>, VerifyError> {
    let open = |source| VerifyError::Open {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, Policy::default().max_bundle_bytes + 1),
        &mut bytes,
    )
    .map_err(open)?;
    Ok(bytes)
}

/// Reads the trusted keys and the bundle, and verifies it as of `now`.
pub fn verify(args: &VerifyArgs, now: Timestamp) -> Result<Outcome, VerifyError> {
    let trust_root = load_trust_root(&args.source.trust.trust_keys)?;
    let args_bundle = &args.source.bundle;
    let file = std::fs::File::open(args_bundle).map_err(|source| VerifyError::Open {
        path: args_bundle.clone(),
        source,
    })?;
    let last = args.last_generation.map(|generation| LastAccepted {
        generation,
        payload_digest: None,
    });
    let outcome = Policy::default().read_bundle(
        std::io::BufReader::new(file),
        &trust_root,
        &args.source.trust.cluster,
        last.as_ref(),
        now,
    );
    Ok(match outcome {
        Ok(bundle) => Outcome::Verified(Box::new(bundle)),
        Err(refusal) => Outcome::Refused(refusal),
    })
}

/// The report printed for a verified bundle.
pub struct Report<'a>(pub &'a VerifiedBundle);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verified = &self.0.state;
        let state = &verified.state;
        writeln!(f, "verified: cluster {}", state.cluster)?;
        writeln!(f, "generation: {}", state.generation)?;
        writeln!(f, "issued: {}", state.issued_at)?;
        writeln!(f, "expires: {}", state.expires_at)?;
        writeln!(f, "signed by: {}", verified.keyid)?;
        writeln!(f, "payload: {}", verified.payload_digest)?;
        if state.allow_empty {
            writeln!(f, "allow empty: true")?;
        }
        writeln!(f, "apps: {}", state.apps.len())?;
        for (app, blob) in state.apps.iter().zip(&self.0.blobs) {
            let p = &app.sync_policy;
            writeln!(
                f,
                "  {} namespace={} objects={} blob={} size={} automated={} prune={} selfHeal={} createNamespace={} pruneLimit={}",
                app.name,
                app.namespace,
                blob.blob.objects.len(),
                app.blob.digest,
                app.blob.size,
                p.automated,
                p.prune,
                p.self_heal,
                p.create_namespace,
                p.prune_limit,
            )?;
        }
        writeln!(f, "removed: {}", state.removed.len())?;
        for tombstone in &state.removed {
            writeln!(f, "  {} prune={}", tombstone.name, tombstone.prune)?;
        }
        if !verified.unknown_fields.is_empty() {
            writeln!(
                f,
                "unknown fields (ignored): {}",
                verified.unknown_fields.join(", ")
            )?;
        }
        Ok(())
    }
}
