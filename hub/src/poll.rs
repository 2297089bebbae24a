//! Scheduled polling of repositories: one repeated job per repository on tokio-cron-scheduler,
//! at the repository's own interval (`pollInterval` when it was registered with one, the
//! hub's default otherwise). Each firing waits a random jitter first, so repositories that
//! share an interval are not fetched in lockstep, and then asks for a round that fetches that
//! repository alone.
//!
//! The jobs follow the repositories the hub knows: after every round [`run`] compares them
//! with the scheduled jobs, adds jobs for new repositories, replaces those whose interval
//! changed and removes the rest. It decides nothing about what a fetch changes; that is the
//! round's job.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore as _};
use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::rounds::{Fetch, Hub};

/// A random delay below `jitter`.
pub fn jitter(jitter: Duration) -> Duration {
    let millis = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(OsRng.next_u64() % millis)
}

/// What changes the scheduled jobs need to match the wanted intervals.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    /// Repositories to schedule, with their interval (new, or with a changed interval).
    add: BTreeMap<String, Duration>,
    /// Repositories whose job goes (gone, or with a changed interval).
    remove: BTreeSet<String>,
}

/// Compares the scheduled intervals with the wanted ones.
fn changes(scheduled: &BTreeMap<String, Duration>, wanted: &BTreeMap<String, Duration>) -> Changes {
    let mut changes = Changes::default();
    for (url, interval) in scheduled {
        if wanted.get(url) != Some(interval) {
            changes.remove.insert(url.clone());
        }
    }
    for (url, interval) in wanted {
        if scheduled.get(url) != Some(interval) {
            changes.add.insert(url.clone(), *interval);
        }
    }
    changes
}

/// The polling jobs of the known repositories.
struct Schedule {
    scheduler: JobScheduler,
    jobs: BTreeMap<String, (Duration, Uuid)>,
    jitter: Duration,
}

impl Schedule {
    async fn sync(
        &mut self,
        hub: &Arc<Hub>,
        wanted: &BTreeMap<String, Duration>,
    ) -> Result<(), JobSchedulerError> {
        let scheduled = self
            .jobs
            .iter()
            .map(|(url, (interval, _))| (url.clone(), *interval))
            .collect();
        let changes = changes(&scheduled, wanted);
        for url in &changes.remove {
            if let Some((_, id)) = self.jobs.remove(url) {
                self.scheduler.remove(&id).await?;
                debug!(url = %crate::git::redact_url(url), "poll job removed");
            }
        }
        for (url, interval) in changes.add {
            let job = {
                let hub = Arc::downgrade(hub);
                let url = url.clone();
                let jitter = self.jitter;
                Job::new_repeated_async(interval, move |_id, _scheduler| {
                    let hub = hub.clone();
                    let url = url.clone();
                    Box::pin(async move {
                        tokio::time::sleep(self::jitter(jitter)).await;
                        if let Some(hub) = hub.upgrade() {
                            hub.trigger(Fetch::Repos(BTreeSet::from([url])), "poll");
                        }
                    })
                })?
            };
            let id = self.scheduler.add(job).await?;
            info!(
                url = %crate::git::redact_url(&url),
                every_s = interval.as_secs(),
                "poll scheduled"
            );
            self.jobs.insert(url, (interval, id));
        }
        Ok(())
    }
}

/// Keeps one polling job per known repository until shutdown. `default` is the interval of
/// repositories registered without one; `jitter` the largest random delay of a firing.
pub async fn run(
    hub: Arc<Hub>,
    default: Duration,
    jitter: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let scheduler = match JobScheduler::new().await {
        Ok(scheduler) => scheduler,
        Err(error) => {
            warn!(%error, "start the poll scheduler: repositories are fetched only on webhooks and refreshes");
            return;
        }
    };
    if let Err(error) = scheduler.start().await {
        warn!(%error, "start the poll scheduler: repositories are fetched only on webhooks and refreshes");
        return;
    }
    let mut schedule = Schedule {
        scheduler,
        jobs: BTreeMap::new(),
        jitter,
    };
    let mut rounds = hub.rounds();
    loop {
        match hub.repository_intervals().await {
            Ok(intervals) => {
                let wanted = intervals
                    .into_iter()
                    .map(|(url, interval)| (url, interval.unwrap_or(default)))
                    .collect();
                if let Err(error) = schedule.sync(&hub, &wanted).await {
                    warn!(%error, "update poll jobs");
                }
            }
            Err(error) => warn!(%error, "list repositories for polling"),
        }
        tokio::select! {
            changed = rounds.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    if let Err(error) = schedule.scheduler.shutdown().await {
        debug!(%error, "stop the poll scheduler");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, u64)]) -> BTreeMap<String, Duration> {
        entries
            .iter()
            .map(|(url, s)| ((*url).to_owned(), Duration::from_secs(*s)))
            .collect()
    }

    #[test]
    fn jobs_follow_repositories_and_their_intervals() {
        let scheduled = map(&[("a", 60), ("b", 60), ("c", 300)]);
        let wanted = map(&[("a", 60), ("b", 30), ("d", 60)]);
        let changes = changes(&scheduled, &wanted);
        assert_eq!(changes.add, map(&[("b", 30), ("d", 60)]));
        assert_eq!(
            changes.remove,
            BTreeSet::from(["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            super::changes(&wanted, &wanted),
            Changes::default(),
            "nothing changes when nothing did"
        );
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) < Duration::from_millis(50));
        }
    }
}
