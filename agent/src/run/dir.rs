//! The air-gap mode of `run` (`--watch-dir`), while this replica leads: applies each new
//! bundle file (`*.tar`) that appears in a directory, verified exactly as `apply --bundle`
//! verifies it, and keeps the accepted state enforced in between. It never calls a hub.
//! Talks to the disk; which files to read when is decided by [`Files`] (pure).
//!
//! At start the newest file (by modification time, then name) is applied again (that
//! re-enforces the accepted state after a restart; an older file is refused as a rollback,
//! changing nothing) and every file present counts as seen. A file is read once its size
//! and modification time are the same at two scans in a row, so a copy in progress is not
//! read half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use flotilla_shared::Policy;
use flotilla_shared::bundle::BundleError;
use flotilla_shared::error_chain::one_line;
use jiff::Timestamp;
use tokio::sync::watch;

use crate::verify::read_bundle_file;

use super::enforce::Enforcer;
use super::status::{Phase, Situation, refused_generation};
use super::{Context, Stop, stopped};

/// How often the directory is scanned.
const SCAN_EVERY: Duration = Duration::from_secs(2);

/// What a scan saw of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub modified: SystemTime,
}

/// The bundle files seen so far.
#[derive(Debug, Default)]
pub struct Files {
    /// Per file, the stamp of the last scan and whether that version was handled.
    seen: BTreeMap<PathBuf, (Stamp, bool)>,
}

impl Files {
    /// The first scan: every file counts as handled; returns the newest, to apply again.
    pub fn baseline(&mut self, listing: Vec<(PathBuf, Stamp)>) -> Option<PathBuf> {
        let newest = listing
            .iter()
            .max_by(|(a, sa), (b, sb)| sa.modified.cmp(&sb.modified).then(a.cmp(b)))
            .map(|(path, _)| path.clone());
        self.seen = listing
            .into_iter()
            .map(|(path, stamp)| (path, (stamp, true)))
            .collect();
        newest
    }

    /// A later scan: the files to handle now (in name order), those whose stamp is the same
    /// as at the previous scan and not yet handled. They count as handled from now on.
    pub fn scan(&mut self, listing: Vec<(PathBuf, Stamp)>) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        let mut next = BTreeMap::new();
        for (path, stamp) in listing {
            let handled = match self.seen.get(&path) {
                Some((previous, handled)) if *previous == stamp => {
                    if !handled {
                        ready.push(path.clone());
                    }
                    true
                }
                _ => false,
            };
            next.insert(path, (stamp, handled));
        }
        self.seen = next;
        ready
    }
}

/// The `*.tar` files directly in `dir`.
async fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    let mut files = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "tar") {
            continue;
        }
        let metadata = entry.metadata().await?;
        if !metadata.is_file() {
            continue;
        }
        files.push((
            path,
            Stamp {
                size: metadata.len(),
                modified: metadata.modified()?,
            },
        ));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Leads in directory mode until `stop` says otherwise.
pub async fn lead(
    ctx: &Context,
    dir: &Path,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let (mut enforcer, mut drift_events) =
        super::enforce::Enforcer::new(ctx.client.clone(), ctx.engine.clone(), ctx.shared.clone());
    let mut situation = Situation::default();
    let mut files = Files::default();
    ready(ctx, dir, &enforcer, &situation);
    let listing = match list(dir).await {
        Ok(listing) => listing,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot read the bundle directory");
            Vec::new()
        }
    };
    if let Some(newest) = files.baseline(listing) {
        tokio::select! {
            _ = stopped(&mut stop) => {
                enforcer.stop().await;
                return Ok(());
            }
            () = apply_file(ctx, &mut enforcer, &mut situation, &newest) => {}
        }
        ready(ctx, dir, &enforcer, &situation);
    }
    let mut scan = tokio::time::interval(SCAN_EVERY);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(ctx.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let expiry = expiry(&enforcer, &situation);
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(event) = drift_events.recv() => enforcer.note_drift(&event),
            _ = scan.tick() => {
                let listing = match list(dir).await {
                    Ok(listing) => listing,
                    Err(error) => {
                        tracing::warn!(dir = %dir.display(), %error, "cannot read the bundle directory");
                        continue;
                    }
                };
                for path in files.scan(listing) {
                    apply_file(ctx, &mut enforcer, &mut situation, &path).await;
                    ready(ctx, dir, &enforcer, &situation);
                }
            }
            _ = heartbeat.tick() => enforcer.ensure_watch().await,
            () = sleep_until(expiry) => {
                if let Some(current) = enforcer.current() {
                    let state = &current.bundle.state.state;
                    tracing::warn!(generation = state.generation, expired = %state.expires_at,
                        "the accepted state expired; enforcing it without syncing until a newer bundle file comes");
                    situation = Situation::new(Phase::Stale, format!(
                        "generation {} expired at {}; it is still enforced (self-heal only)",
                        state.generation, state.expires_at));
                    ready(ctx, dir, &enforcer, &situation);
                }
            }
        }
    }
    enforcer.stop().await;
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn expiry(enforcer: &Enforcer, situation: &Situation) -> Option<tokio::time::Instant> {
    if situation.phase == Phase::Stale {
        return None;
    }
    Some(super::pull::expiry(
        enforcer.current()?.bundle.state.state.expires_at,
    ))
}

fn ready(ctx: &Context, dir: &Path, enforcer: &Enforcer, situation: &Situation) {
    match enforcer.current() {
        Some(current) => ctx.shared.set_ready(
            true,
            format!(
                "leading: enforcing generation {} ({})",
                current.bundle.state.state.generation,
                situation.phase.as_str()
            ),
        ),
        None => ctx.shared.set_ready(
            false,
            format!("leading: waiting for a bundle file in {}", dir.display()),
        ),
    }
}

/// Verifies one bundle file and applies it; a refused file changes nothing.
#[tracing::instrument(skip_all, fields(file = %path.display()))]
async fn apply_file(
    ctx: &Context,
    enforcer: &mut Enforcer,
    situation: &mut Situation,
    path: &Path,
) {
    let bytes = match read_bundle_file(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(error = %one_line(&error), "cannot read the bundle file");
            return;
        }
    };
    let last = match ctx.store.last_accepted().await {
        Ok(last) => last,
        Err(error) => {
            tracing::warn!(error = %one_line(&error), "cannot read the last accepted generation");
            return;
        }
    };
    let bundle = match Policy::default().read_bundle(
        bytes.as_slice(),
        &ctx.trust_root,
        &ctx.cluster,
        last.as_ref(),
        Timestamp::now(),
    ) {
        Ok(bundle) => bundle,
        Err(refusal) => {
            ctx.shared
                .metrics
                .state_refusals
                .fetch_add(1, Ordering::Relaxed);
            let generation = match &refusal {
                BundleError::Rejected(rejection) => refused_generation(rejection, None),
                _ => None,
            };
            tracing::warn!(reason = %one_line(&refusal), ?generation,
                "bundle file refused; the last accepted state stays");
            *situation = Situation::refused(generation, one_line(&refusal));
            return;
        }
    };
    drop(bytes);
    if enforcer.is_enforcing(&bundle.state.last_accepted()) {
        tracing::info!("the bundle file holds the state already enforced");
        return;
    }
    let generation = bundle.state.state.generation;
    match enforcer.apply(bundle, last.as_ref()).await {
        Ok(enforced) => {
            *situation = Situation::after_sync(generation, &enforced.sync);
            println!("applied generation {generation} from {}", path.display());
        }
        Err(error) => {
            tracing::warn!(error = %one_line(&error), "cannot apply the bundle file");
            *situation = Situation::new(
                Phase::Failed,
                format!(
                    "generation {generation} could not be applied: {}",
                    one_line(&error)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, size: u64) -> Stamp {
        Stamp {
            size,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
        }
    }

    fn listing(files: &[(&str, Stamp)]) -> Vec<(PathBuf, Stamp)> {
        files
            .iter()
            .map(|(name, stamp)| (PathBuf::from(name), *stamp))
            .collect()
    }

    #[test]
    fn the_first_scan_picks_the_newest_file_and_takes_the_rest_as_seen() {
        let mut files = Files::default();
        let newest = files.baseline(listing(&[
            ("b.tar", at(20, 1)),
            ("a.tar", at(30, 1)),
            ("c.tar", at(10, 1)),
        ]));
        assert_eq!(newest, Some(PathBuf::from("a.tar")));
        assert!(
            files
                .scan(listing(&[("a.tar", at(30, 1)), ("b.tar", at(20, 1))]))
                .is_empty()
        );
        assert_eq!(Files::default().baseline(Vec::new()), None);
    }

    #[test]
    fn a_new_file_is_read_once_it_stops_changing() {
        let mut files = Files::default();
        files.baseline(Vec::new());
        assert!(files.scan(listing(&[("new.tar", at(1, 100))])).is_empty());
        assert!(files.scan(listing(&[("new.tar", at(2, 200))])).is_empty());
        assert_eq!(
            files.scan(listing(&[("new.tar", at(2, 200))])),
            [PathBuf::from("new.tar")]
        );
        assert!(files.scan(listing(&[("new.tar", at(2, 200))])).is_empty());
    }

    #[test]
    fn a_rewritten_file_is_read_again_and_several_go_in_name_order() {
        let mut files = Files::default();
        files.baseline(listing(&[("a.tar", at(1, 1))]));
        let changed = listing(&[("a.tar", at(5, 2)), ("b.tar", at(5, 1))]);
        assert!(files.scan(changed.clone()).is_empty());
        assert_eq!(
            files.scan(changed),
            [PathBuf::from("a.tar"), PathBuf::from("b.tar")]
        );
        // A file that disappears and comes back unchanged is new again.
        files.scan(Vec::new());
        assert!(files.scan(listing(&[("a.tar", at(5, 2))])).is_empty());
        assert_eq!(
            files.scan(listing(&[("a.tar", at(5, 2))])),
            [PathBuf::from("a.tar")]
        );
    }
}
