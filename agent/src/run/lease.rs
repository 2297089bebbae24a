//! One active agent per cluster (DESIGN.md "Agent"): leader election with a
//! `coordination.k8s.io/v1` Lease in the agent's namespace, as client-go does it. Talks to the
//! apiserver; the decision itself ([`decide`]) is pure.
//!
//! A replica takes the Lease when it does not exist, has no holder, or has not been renewed
//! for a whole lease duration *as this replica observed it* (the time since its record last
//! changed, on this replica's monotonic clock, so clock skew between nodes does not matter).
//! The holder renews every third of the duration and steps down when it could not renew for
//! two thirds of it, before anyone else may take over. Every write carries the
//! resourceVersion it read, so two replicas never both win.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("read Lease {namespace}/{name}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("write Lease {namespace}/{name}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What a round of the election decided, from the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, held by us.
    Create,
    /// The Lease is free or expired: take it.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it.
    Wait { holder: String },
}

/// Decides a round. `observed_at` is when this replica first saw the Lease's current record.
pub fn decide(
    lease: Option<&LeaseSpec>,
    me: &str,
    observed_at: Instant,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Take;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if now.duration_since(observed_at) >= duration {
        Decision::Take
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
        }
    }
}

/// The outcome of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { holder: String },
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    holder: String,
    duration: Duration,
    /// The resourceVersion of the record last read, and when it was first seen.
    observed: Option<(String, Instant)>,
    /// When this replica last renewed (or took) the Lease.
    renewed_at: Option<Instant>,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            duration,
            observed: None,
            renewed_at: None,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often a round runs: a third of the lease duration.
    pub fn period(&self) -> Duration {
        self.duration / 3
    }

    /// Whether a leader that last renewed at `renewed_at` must step down at `now`: it could
    /// not renew for two thirds of the duration, so another replica may soon take over.
    pub fn must_step_down(&self, now: Instant) -> bool {
        self.renewed_at
            .is_none_or(|at| now.duration_since(at) >= self.duration * 2 / 3)
    }

    fn read_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Read {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn write_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Write {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// One round: takes or renews the Lease when this replica may.
    #[tracing::instrument(skip_all, fields(lease = %self.name, holder = %self.holder))]
    pub async fn round(&mut self) -> Result<Role, LeaseError> {
        let lease = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.read_error(e))?;
        let now = Instant::now();
        let version = lease
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone())
            .unwrap_or_default();
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                self.observed = Some((version, now));
                now
            }
        };
        let decision = decide(
            lease.as_ref().and_then(|l| l.spec.as_ref()),
            &self.holder,
            observed_at,
            now,
            self.duration,
        );
        let written = match decision {
            Decision::Wait { holder } => {
                self.renewed_at = None;
                return Ok(Role::Follower { holder });
            }
            Decision::Create => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(self.name.clone());
                lease.spec = Some(self.taken(None));
                self.api.create(&PostParams::default(), &lease).await
            }
            Decision::Take | Decision::Renew => {
                let mut lease = lease.expect("a decision to take or renew reads a Lease");
                let previous = lease.spec.take();
                lease.spec = Some(if decision == Decision::Renew {
                    let mut spec = previous.unwrap_or_default();
                    spec.renew_time = Some(MicroTime(Timestamp::now()));
                    spec.lease_duration_seconds = Some(self.duration_seconds());
                    spec
                } else {
                    self.taken(previous.as_ref())
                });
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                if decision != Decision::Renew {
                    tracing::info!("took the lease");
                }
                self.observed = lease
                    .metadata
                    .resource_version
                    .map(|version| (version, Instant::now()));
                self.renewed_at = Some(now);
                Ok(Role::Leader)
            }
            // Another replica wrote first; the next round reads what it wrote.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.observed = None;
                self.renewed_at = None;
                Ok(Role::Follower {
                    holder: "another replica".to_owned(),
                })
            }
            Err(e) => Err(self.write_error(e)),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    fn taken(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(if previous.is_some() {
                transitions.saturating_add(1)
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up (when this replica holds it), so another replica takes over at
    /// once instead of after a lease duration.
    #[tracing::instrument(skip_all, fields(lease = %self.name, holder = %self.holder))]
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        self.renewed_at = None;
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.read_error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!("released the lease");
                Ok(())
            }
            // Someone else changed it meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(self.write_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    fn check(lease: Option<LeaseSpec>, seen_for: Duration, expected: Decision) {
        let observed_at = Instant::now();
        let now = observed_at + seen_for;
        assert_eq!(
            decide(lease.as_ref(), "me", observed_at, now, DURATION),
            expected,
            "{lease:?} seen for {seen_for:?}"
        );
    }

    #[test]
    fn a_missing_or_free_lease_is_taken() {
        check(None, Duration::ZERO, Decision::Create);
        check(Some(spec(None, Some(15))), Duration::ZERO, Decision::Take);
        check(
            Some(spec(Some(""), Some(15))),
            Duration::ZERO,
            Decision::Take,
        );
    }

    #[test]
    fn our_own_lease_is_renewed_however_old() {
        check(
            Some(spec(Some("me"), Some(15))),
            Duration::ZERO,
            Decision::Renew,
        );
        check(
            Some(spec(Some("me"), Some(15))),
            Duration::from_secs(3600),
            Decision::Renew,
        );
    }

    #[test]
    fn another_holder_keeps_it_for_a_whole_observed_duration() {
        let other = || Some(spec(Some("other"), Some(15)));
        let wait = Decision::Wait {
            holder: "other".into(),
        };
        check(other(), Duration::ZERO, wait.clone());
        check(other(), Duration::from_secs(14), wait.clone());
        check(other(), Duration::from_secs(15), Decision::Take);
        // The Lease's own duration counts, else ours.
        check(
            Some(spec(Some("other"), Some(60))),
            Duration::from_secs(30),
            wait.clone(),
        );
        check(
            Some(spec(Some("other"), None)),
            Duration::from_secs(15),
            Decision::Take,
        );
        check(
            Some(spec(Some("other"), Some(-1))),
            Duration::from_secs(14),
            wait,
        );
    }
}
