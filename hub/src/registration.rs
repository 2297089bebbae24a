//! Who may register as a cluster's agent: bootstrap tokens (made here, stored as their
//! SHA-256, single use, with a TTL) and the decision on a registration attempt. Pure: the
//! caller reads the token and the cluster from the store, asks [`decide`], and writes what
//! the decision says.
//!
//! Invariant: a token is used by one key only. The first CSR's key claims it; the same key
//! may come back (its answer was lost, or it waits for approval), any other key is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use crate::store::{BootstrapToken, ClusterRecord};

/// How every bootstrap token starts, so a leaked one is easy to recognise.
pub const BOOTSTRAP_TOKEN_PREFIX: &str = "flt_bt_";

/// A new bootstrap token (256 random bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{BOOTSTRAP_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 (hex) under which a token is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Why a registration was refused. The messages name the cluster and the reason, never the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("bootstrap token is not known to this hub")]
    UnknownToken,
    #[error("bootstrap token was made for cluster {token_cluster}, not {cluster}")]
    OtherCluster {
        token_cluster: String,
        cluster: String,
    },
    #[error("bootstrap token for cluster {cluster} expired at {at}")]
    Expired { cluster: String, at: Timestamp },
    #[error(
        "bootstrap token for cluster {cluster} was already used{} by another key; make a new one",
        used_at.map(|t| format!(" at {t}")).unwrap_or_default()
    )]
    Reused {
        cluster: String,
        used_at: Option<Timestamp>,
    },
    #[error("cluster {cluster} was revoked at {at}")]
    Revoked { cluster: String, at: Timestamp },
    #[error("cluster {0} is not registered")]
    UnknownCluster(String),
}

impl Refusal {
    /// The stable error code of the agent API's answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Revoked { .. } => "revoked",
            _ => "token_invalid",
        }
    }
}

/// What to do with a registration attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue a certificate.
    Issue,
    /// Claim the token for this key, and answer that an administrator must approve first.
    Pending,
    Refuse(Refusal),
}

/// Decides a registration for `cluster` by a key with `fingerprint`, presenting a token that
/// hashed to `token` (`None`: not found).
pub fn decide(
    token: Option<&BootstrapToken>,
    record: Option<&ClusterRecord>,
    cluster: &str,
    fingerprint: &str,
    now: Timestamp,
) -> Decision {
    let Some(token) = token else {
        return Decision::Refuse(Refusal::UnknownToken);
    };
    if token.cluster != cluster {
        return Decision::Refuse(Refusal::OtherCluster {
            token_cluster: token.cluster.clone(),
            cluster: cluster.to_owned(),
        });
    }
    let Some(record) = record else {
        return Decision::Refuse(Refusal::UnknownCluster(cluster.to_owned()));
    };
    if let Some(at) = record.registration.revoked_at {
        return Decision::Refuse(Refusal::Revoked {
            cluster: cluster.to_owned(),
            at,
        });
    }
    let claimed_by_other = token
        .key_fingerprint
        .as_deref()
        .is_some_and(|claimed| claimed != fingerprint);
    if claimed_by_other {
        return Decision::Refuse(Refusal::Reused {
            cluster: cluster.to_owned(),
            used_at: token.used_at,
        });
    }
    // A token its own key already used stays good for that key after it expires: the
    // answer may have been lost just before.
    if token.used_at.is_none() && now >= token.expires_at {
        return Decision::Refuse(Refusal::Expired {
            cluster: cluster.to_owned(),
            at: token.expires_at,
        });
    }
    if record.registration.require_approval && !record.registration.approved {
        return Decision::Pending;
    }
    Decision::Issue
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn now() -> Timestamp {
        "2026-11-28T12:00:00Z".parse().expect("time")
    }

    fn token(cluster: &str) -> BootstrapToken {
        BootstrapToken {
            hash: token_hash("t"),
            cluster: cluster.to_owned(),
            expires_at: now() + SignedDuration::from_hours(1),
            created_at: now(),
            created_by: "admin".to_owned(),
            key_fingerprint: None,
            used_at: None,
        }
    }

    fn cluster(name: &str) -> ClusterRecord {
        ClusterRecord::new(name, now())
    }

    #[test]
    fn a_fresh_token_for_its_cluster_issues() {
        let (t, c) = (token("east"), cluster("east"));
        assert_eq!(
            decide(Some(&t), Some(&c), "east", "k1", now()),
            Decision::Issue
        );
    }

    #[test]
    fn the_same_key_may_come_back_another_may_not() {
        let mut t = token("east");
        t.key_fingerprint = Some("k1".to_owned());
        t.used_at = Some(now());
        let c = cluster("east");
        let later = now() + SignedDuration::from_hours(5);
        assert_eq!(
            decide(Some(&t), Some(&c), "east", "k1", later),
            Decision::Issue,
            "a lost answer does not burn the token, even past its expiry"
        );
        let refused = decide(Some(&t), Some(&c), "east", "k2", now());
        assert_eq!(
            refused,
            Decision::Refuse(Refusal::Reused {
                cluster: "east".to_owned(),
                used_at: Some(now())
            })
        );
        let Decision::Refuse(refusal) = refused else {
            unreachable!()
        };
        assert_eq!(
            refusal.to_string(),
            "bootstrap token for cluster east was already used at 2026-11-28T12:00:00Z by another key; make a new one"
        );
    }

    #[test]
    fn refusals_name_their_reason() {
        let c = cluster("east");
        let message = |d: Decision| match d {
            Decision::Refuse(r) => r.to_string(),
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(
            message(decide(None, Some(&c), "east", "k", now())),
            "bootstrap token is not known to this hub"
        );
        assert_eq!(
            message(decide(Some(&token("west")), Some(&c), "east", "k", now())),
            "bootstrap token was made for cluster west, not east"
        );
        let late = now() + SignedDuration::from_hours(2);
        assert_eq!(
            message(decide(Some(&token("east")), Some(&c), "east", "k", late)),
            "bootstrap token for cluster east expired at 2026-11-28T13:00:00Z"
        );
        let mut revoked = cluster("east");
        revoked.registration.revoked_at = Some(now());
        let refusal = decide(Some(&token("east")), Some(&revoked), "east", "k", now());
        assert_eq!(
            message(refusal.clone()),
            "cluster east was revoked at 2026-11-28T12:00:00Z"
        );
        let Decision::Refuse(r) = refusal else {
            unreachable!()
        };
        assert_eq!(r.code(), "revoked");
    }

    #[test]
    fn approval_holds_a_registration_until_given() {
        let t = token("east");
        let mut c = cluster("east");
        c.registration.require_approval = true;
        assert_eq!(
            decide(Some(&t), Some(&c), "east", "k", now()),
            Decision::Pending
        );
        c.registration.approved = true;
        assert_eq!(
            decide(Some(&t), Some(&c), "east", "k", now()),
            Decision::Issue
        );
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(BOOTSTRAP_TOKEN_PREFIX) && a.len() > 40, "{a}");
        assert_eq!(token_hash(&a).len(), 64);
        assert!(!token_hash(&a).contains(&a[7..]));
    }
}
