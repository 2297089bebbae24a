//! Status reports (DESIGN.md "Status"): what one says ([`Situation`], [`app_reports`],
//! [`drift_report`], [`fit`]: pure), the sequence-number scheme ([`Outbox`]: pure), and the
//! task that delivers them ([`Reporter`]: talks to the hub, and to the apiserver to persist
//! the sequence number).
//!
//! The sequence-number scheme. The hub records a report when its `seq` is above every seq it
//! holds for the cluster, and answers `recorded: false` otherwise. The agent:
//! - hands out seqs one by one from a counter kept in ConfigMap `flotilla-agent-status`, and
//!   stores each new seq there *before* the first attempt to send it;
//! - keeps one report in flight: it is retried, unchanged and with the same seq, until the
//!   hub answers; `recorded: false` then means an earlier attempt got through (only its
//!   answer was lost), so it counts as delivered;
//! - keeps at most one further report waiting (no seq yet): a newer report replaces it, its
//!   drift entries carried over, so a burst becomes one report and nothing piles up while
//!   the hub is away;
//! - after a restart (or a change of leader) sends its first report with the stored seq
//!   again, since the previous process may have stored it without ever sending it. If the
//!   hub recorded that seq already it answers `recorded: false`, and the same content goes
//!   out at once under the next seq.
//!
//! So the seqs the hub records rise by exactly one each time, across restarts and leader
//! changes; a gap means reports were lost only if the counter itself was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_shared::agent_api::{
    AppReport, DriftReport, MAX_STATUS_BYTES, ObjectReport, StateReport, StatusAck, StatusReport,
};
use flotilla_shared::state::ClusterState;
use flotilla_shared::{Envelope, Rejection};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::changeset::Action;
use crate::drift::DriftEvent;
use crate::engine::SyncReport;
use crate::object::ObjectRef;
use crate::oneshot::AppHealths;
use crate::store::Store;

use super::backoff::Backoff;
use super::hub::HubClient;
use super::serve::Shared;

/// Most drift entries one report carries (the newest are kept).
const MAX_DRIFT_ENTRIES: usize = 200;

/// Why a report is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Start,
    Apply,
    Drift,
    Refused,
    Heartbeat,
    Stale,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Apply => "apply",
            Reason::Drift => "drift",
            Reason::Refused => "refused",
            Reason::Heartbeat => "heartbeat",
            Reason::Stale => "stale",
        }
    }
}

/// What the agent did with the newest state it saw (`StateReport`'s phase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No state accepted yet.
    Waiting,
    Applying,
    /// The accepted state is applied.
    Applied,
    /// The accepted state is applied, but some objects failed.
    Failed,
    /// The newest state was refused; the last accepted one is kept.
    Refused,
    /// The accepted state expired and no newer one could be had; it is still enforced.
    Stale,
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Waiting => "Waiting",
            Phase::Applying => "Applying",
            Phase::Applied => "Applied",
            Phase::Failed => "Failed",
            Phase::Refused => "Refused",
            Phase::Stale => "Stale",
        }
    }
}

/// The state part of the next report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Situation {
    pub phase: Phase,
    pub message: String,
    pub refused_generation: Option<u64>,
}

impl Default for Situation {
    fn default() -> Self {
        Self {
            phase: Phase::Waiting,
            message: "no state accepted yet".to_owned(),
            refused_generation: None,
        }
    }
}

impl Situation {
    pub fn new(phase: Phase, message: impl Into<String>) -> Self {
        Self {
            phase,
            message: message.into(),
            refused_generation: None,
        }
    }

    /// The phase after a sync: Applied, or Failed when an object failed.
    pub fn after_sync(generation: u64, report: &SyncReport) -> Self {
        let failed = report.changes.count(Action::Failed);
        if failed == 0 {
            Self::new(
                Phase::Applied,
                format!("generation {generation} is applied"),
            )
        } else {
            Self::new(
                Phase::Failed,
                format!("generation {generation} is applied, but {failed} objects failed"),
            )
        }
    }

    pub fn refused(generation: Option<u64>, reason: impl Into<String>) -> Self {
        Self {
            phase: Phase::Refused,
            message: reason.into(),
            refused_generation: generation,
        }
    }

    pub fn state_report(&self, accepted: Option<&ClusterState>) -> StateReport {
        StateReport {
            generation: accepted.map_or(0, |s| s.generation),
            phase: self.phase.as_str().to_owned(),
            message: self.message.clone(),
            refused_generation: self.refused_generation,
            expires_at: accepted
                .map(|s| s.expires_at.to_string())
                .unwrap_or_default(),
        }
    }
}

/// How an object is named in a report: `Kind.group namespace/name` (no group for the core
/// group, no namespace for cluster-scoped objects).
pub fn object_name(object: &ObjectRef) -> String {
    let kind = if object.group.is_empty() {
        object.kind.clone()
    } else {
        format!("{}.{}", object.kind, object.group)
    };
    match &object.namespace {
        Some(namespace) => format!("{kind} {namespace}/{}", object.name),
        None => format!("{kind} {}", object.name),
    }
}

/// One report entry per app of the accepted `state`, and per orphaned app.
///
/// Sync: `Failed` when an object of the app failed in the last sync, `OutOfSync` when it
/// drifted since and was not healed, else `Synced`; `Orphaned` for an app with objects that
/// the state neither lists nor removes.
pub fn app_reports(
    state: &ClusterState,
    sync: &SyncReport,
    out_of_sync: &BTreeSet<String>,
    healths: &AppHealths,
) -> Vec<AppReport> {
    // Per app, the objects that failed and why.
    let mut failures: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for change in &sync.changes.entries {
        if change.action == Action::Failed {
            failures
                .entry(change.app.as_str())
                .or_default()
                .push((change.object.as_str(), change.message.as_str()));
        }
    }
    let mut apps: Vec<AppReport> = state
        .apps
        .iter()
        .map(|app| {
            let failed = failures.get(app.name.as_str());
            // A prune step the limit refused leaves stale objects: not in sync.
            let held = sync.changes.entries.iter().find(|c| {
                c.app == app.name
                    && c.action == Action::Skipped
                    && c.message.contains("exceeds pruneLimit")
            });
            let (sync_state, message) = match failed {
                Some(failed) => (
                    "Failed",
                    format!("{} objects failed: {}", failed.len(), failed[0].1),
                ),
                None if held.is_some() => (
                    "OutOfSync",
                    held.map(|c| format!("{} ({})", c.message, c.object))
                        .unwrap_or_default(),
                ),
                None if out_of_sync.contains(&app.name) => (
                    "OutOfSync",
                    "objects changed out of band and were not reverted".to_owned(),
                ),
                None => ("Synced", String::new()),
            };
            let (health, objects) = match healths.get(&app.name) {
                Some((health, objects)) => (
                    format!("{health:?}"),
                    objects
                        .iter()
                        .map(|(object, h)| ObjectReport {
                            object: object_name(object),
                            state: format!("{:?}", h.status),
                            message: h.message.clone(),
                        })
                        .collect(),
                ),
                None => ("Missing".to_owned(), Vec::new()),
            };
            // Objects that failed to apply are part of the app too: listed as Failed, and
            // an app with any of them is not Healthy.
            let mut objects = objects;
            let mut health = health;
            if let Some(failed) = failed {
                for (object, message) in failed {
                    let failed = ObjectReport {
                        object: (*object).to_owned(),
                        state: "Failed".to_owned(),
                        message: (*message).to_owned(),
                    };
                    match objects.iter_mut().find(|o| o.object == *object) {
                        Some(known) => *known = failed,
                        None => objects.push(failed),
                    }
                }
                if health == "Healthy" {
                    health = "Degraded".to_owned();
                }
            }
            AppReport {
                name: app.name.clone(),
                generation: state.generation,
                revision: app.source.revision.clone(),
                sync: sync_state.to_owned(),
                health,
                message,
                objects,
            }
        })
        .collect();
    for orphan in &sync.orphaned {
        apps.push(AppReport {
            name: orphan.clone(),
            generation: 0,
            revision: String::new(),
            sync: "Orphaned".to_owned(),
            health: "Unknown".to_owned(),
            message: "the app is not in the state and has no tombstone; its objects stay"
                .to_owned(),
            objects: Vec::new(),
        });
    }
    apps
}

/// The generation a refused state has, for `refusedGeneration`: from the refusal where it
/// names one, else from the payload (`envelope`) when the signature verified, so the number
/// is the signer's; `None` when the state could not be shown to be signed.
pub fn refused_generation(rejection: &Rejection, envelope: Option<&[u8]>) -> Option<u64> {
    match rejection {
        Rejection::RolledBack { got, .. } => Some(*got),
        Rejection::GenerationReused { generation }
        | Rejection::GenerationTooFarAhead { generation, .. } => Some(*generation),
        Rejection::TooLarge { .. }
        | Rejection::Malformed { .. }
        | Rejection::UnknownKey { .. }
        | Rejection::BadSignature { .. }
        | Rejection::WrongPayloadType { .. } => None,
        Rejection::WrongCluster { .. }
        | Rejection::NotYetValid { .. }
        | Rejection::Expired { .. }
        | Rejection::Empty
        | Rejection::BlobSizeMismatch { .. }
        | Rejection::BlobDigestMismatch { .. } => {
            let payload = Envelope::from_json(envelope?).ok()?.payload_bytes().ok()?;
            serde_json::from_slice::<serde_json::Value>(&payload)
                .ok()?
                .get("generation")?
                .as_u64()
        }
    }
}

/// A drift event as reported.
pub fn drift_report(event: &DriftEvent, at: Timestamp) -> DriftReport {
    DriftReport {
        app: event.app.clone(),
        object: object_name(&event.object),
        changed_by: event.managers.clone(),
        healed: event.healed,
        at: at.to_string(),
    }
}

/// Makes a report fit the hub's size limit: first the objects that are Current are left
/// out of the app entries, then every object entry (each app's roll-up stays).
pub fn fit(report: &mut StatusReport, limit: usize) {
    let size = |r: &StatusReport| serde_json::to_vec(r).map_or(usize::MAX, |b| b.len());
    if size(report) <= limit {
        return;
    }
    for app in &mut report.apps {
        app.objects.retain(|o| o.state != "Current");
    }
    if size(report) <= limit {
        return;
    }
    for app in &mut report.apps {
        app.objects.clear();
    }
}

/// The report in flight: sent (or about to be) with its seq, retried unchanged.
#[derive(Debug)]
struct InFlight {
    report: StatusReport,
    /// Whether its seq is stored already.
    persisted: bool,
    /// Whether its seq was taken over from a previous process, which may have sent it.
    inherited: bool,
}

/// What the reporter does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to send.
    Idle,
    /// Store this seq, then ask again.
    Persist(u64),
    /// Send this report.
    Send(Box<StatusReport>),
}

/// The sequence-number scheme of the module docs, as a state machine without I/O.
#[derive(Debug)]
pub struct Outbox {
    /// The highest seq handed out (and stored, or about to be).
    assigned: u64,
    /// Whether the first report takes over `assigned` (see the module docs).
    inherit: bool,
    in_flight: Option<InFlight>,
    waiting: Option<StatusReport>,
}

impl Outbox {
    /// An outbox whose counter was stored as `stored`.
    pub fn new(stored: u64) -> Self {
        Self {
            assigned: stored,
            inherit: stored > 0,
            in_flight: None,
            waiting: None,
        }
    }

    /// Queues a report; it replaces the waiting one (keeping that one's drift entries).
    pub fn push(&mut self, mut report: StatusReport) {
        if let Some(older) = self.waiting.take() {
            let mut drift = older.drift;
            drift.append(&mut report.drift);
            report.drift = drift;
        }
        let excess = report.drift.len().saturating_sub(MAX_DRIFT_ENTRIES);
        report.drift.drain(..excess);
        self.waiting = Some(report);
    }

    /// The next step. A waiting report gets its seq (and `sent_at`, the clock offset) when it
    /// goes in flight.
    pub fn step(&mut self, now: Timestamp, clock_offset_ms: i64) -> Step {
        if self.in_flight.is_none() {
            let Some(mut report) = self.waiting.take() else {
                return Step::Idle;
            };
            report.sent_at = now.to_string();
            report.agent.clock_offset_ms = clock_offset_ms;
            let inherited = std::mem::take(&mut self.inherit);
            if !inherited {
                self.assigned += 1;
            }
            report.seq = self.assigned;
            self.in_flight = Some(InFlight {
                report,
                persisted: inherited,
                inherited,
            });
        }
        let in_flight = self.in_flight.as_ref().expect("set above");
        if in_flight.persisted {
            Step::Send(Box::new(in_flight.report.clone()))
        } else {
            Step::Persist(in_flight.report.seq)
        }
    }

    /// The seq of `Step::Persist` is stored.
    pub fn persisted(&mut self) {
        if let Some(in_flight) = &mut self.in_flight {
            in_flight.persisted = true;
        }
    }

    /// The hub answered the report in flight. Returns the seq the hub now holds for this
    /// report, or `None` when its content must go out again under a new seq.
    pub fn answered(&mut self, ack: &StatusAck) -> Option<u64> {
        let in_flight = self.in_flight.take()?;
        self.assigned = self.assigned.max(ack.last_seq);
        if ack.recorded || !in_flight.inherited {
            return Some(in_flight.report.seq);
        }
        // The seq was the previous process's and the hub has it: send this content again
        // under the next seq, unless a newer report is waiting (it supersedes this one).
        let report = in_flight.report;
        match self.waiting.take() {
            Some(newer) => {
                self.push(report);
                self.push(newer);
            }
            None => self.waiting = Some(report),
        }
        None
    }

    /// The highest seq handed out.
    pub fn assigned(&self) -> u64 {
        self.assigned
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_none() && self.waiting.is_none()
    }
}

/// Delivers reports to the hub in the background, one at a time, by the scheme above.
/// Dropping it stops the delivery at once.
pub struct Reporter {
    sender: Option<mpsc::UnboundedSender<StatusReport>>,
    task: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn spawn(hub: Arc<HubClient>, store: Store, shared: Arc<Shared>) -> Reporter {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(deliver(hub, store, shared, receiver));
        Reporter {
            sender: Some(sender),
            task: Some(task),
        }
    }

    /// Queues a report.
    pub fn push(&self, mut report: StatusReport) {
        fit(&mut report, MAX_STATUS_BYTES);
        if let Some(sender) = &self.sender {
            // The task ends only when the sender is dropped (or on abort).
            let _ = sender.send(report);
        }
    }

    /// Stops taking reports and gives what is queued until `deadline` to reach the hub.
    pub async fn finish(mut self, deadline: Duration) {
        self.sender = None;
        if let Some(task) = &mut self.task
            && tokio::time::timeout(deadline, task).await.is_ok()
        {
            self.task = None;
        }
    }

    /// Stops at once (this replica no longer leads: its reports are not the cluster's any
    /// more).
    pub fn abort(self) {}
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn deliver(
    hub: Arc<HubClient>,
    store: Store,
    shared: Arc<Shared>,
    mut receiver: mpsc::UnboundedReceiver<StatusReport>,
) {
    let mut backoff = Backoff::hub();
    let mut pending = Vec::new();
    let stored = loop {
        match store.status_seq().await {
            Ok(seq) => break seq,
            Err(error) => {
                tracing::warn!(error = %flotilla_shared::error_chain::one_line(&error),
                    "cannot read the status sequence number; retrying");
                if !wait(&mut receiver, &mut pending, backoff.fail()).await {
                    return;
                }
            }
        }
    };
    backoff.reset();
    let mut outbox = Outbox::new(stored);
    for report in pending.drain(..) {
        outbox.push(report);
    }
    let mut open = true;
    loop {
        while let Ok(report) = receiver.try_recv() {
            outbox.push(report);
        }
        let delay = match outbox.step(Timestamp::now(), hub.clock_offset_ms()) {
            Step::Idle => {
                if !open {
                    return;
                }
                match receiver.recv().await {
                    Some(report) => outbox.push(report),
                    None => open = false,
                }
                continue;
            }
            Step::Persist(seq) => match store.save_status_seq(seq).await {
                Ok(()) => {
                    outbox.persisted();
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = %flotilla_shared::error_chain::one_line(&error),
                        seq, "cannot store the status sequence number; retrying");
                    backoff.fail()
                }
            },
            Step::Send(report) => match hub.status(&report).await {
                Ok(ack) => {
                    backoff.reset();
                    if let Some(seq) = outbox.answered(&ack) {
                        tracing::debug!(seq, recorded = ack.recorded, "status report delivered");
                        shared.metrics.status_seq.store(seq, Ordering::Relaxed);
                    }
                    continue;
                }
                Err(error) => {
                    shared.metrics.hub_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %flotilla_shared::error_chain::one_line(&error),
                        seq = report.seq, "status report not delivered; retrying");
                    backoff.fail()
                }
            },
        };
        if !open {
            // Finishing: what could not be delivered now waits for the next process.
            return;
        }
        let mut queued = Vec::new();
        let still_open = wait(&mut receiver, &mut queued, delay).await;
        for report in queued {
            outbox.push(report);
        }
        open = still_open;
        if !open && outbox.is_empty() {
            return;
        }
    }
}

/// Waits `delay`, collecting reports pushed meanwhile; false when no more will come.
async fn wait(
    receiver: &mut mpsc::UnboundedReceiver<StatusReport>,
    into: &mut Vec<StatusReport>,
    delay: Duration,
) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return true,
            report = receiver.recv() => match report {
                Some(report) => into.push(report),
                None => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_shared::agent_api::AgentInfo;

    use super::*;
    use crate::health::{AppHealth, Health, Status};

    fn report(reason: &str, drift: &[&str]) -> StatusReport {
        StatusReport {
            seq: 0,
            sent_at: String::new(),
            reason: reason.to_owned(),
            agent: AgentInfo::default(),
            state: StateReport::default(),
            apps: Vec::new(),
            drift: drift
                .iter()
                .map(|o| DriftReport {
                    object: (*o).to_owned(),
                    ..DriftReport::default()
                })
                .collect(),
        }
    }

    fn now() -> Timestamp {
        "2026-11-28T00:00:00Z".parse().expect("time")
    }

    /// A fake hub: records a seq above its last, answers like the real one.
    #[derive(Default)]
    struct Hub {
        recorded: Vec<(u64, String)>,
    }

    impl Hub {
        fn receive(&mut self, report: &StatusReport) -> StatusAck {
            let last = self.recorded.last().map_or(0, |(seq, _)| *seq);
            let recorded = report.seq > last;
            if recorded {
                self.recorded.push((report.seq, report.reason.clone()));
            }
            StatusAck {
                recorded,
                last_seq: last.max(report.seq),
            }
        }

        fn seqs(&self) -> Vec<u64> {
            self.recorded.iter().map(|(s, _)| *s).collect()
        }
    }

    /// Runs the outbox until idle against `hub`, storing seqs in `stored`; `lose` says,
    /// per attempt, whether the answer is lost on the way back (the hub still got it).
    fn drain(outbox: &mut Outbox, hub: &mut Hub, stored: &mut u64, lose: &mut dyn FnMut() -> bool) {
        for _ in 0..100 {
            match outbox.step(now(), 0) {
                Step::Idle => return,
                Step::Persist(seq) => {
                    assert!(seq > *stored, "seq {seq} stored twice");
                    *stored = seq;
                    outbox.persisted();
                }
                Step::Send(report) => {
                    assert!(
                        report.seq <= *stored,
                        "seq {} sent before it was stored",
                        report.seq
                    );
                    let ack = hub.receive(&report);
                    if !lose() {
                        outbox.answered(&ack);
                    }
                }
            }
        }
        panic!("the outbox did not settle");
    }

    #[test]
    fn seqs_rise_by_one_and_are_stored_before_they_are_sent() {
        let (mut hub, mut stored) = (Hub::default(), 0);
        let mut outbox = Outbox::new(stored);
        for reason in ["start", "apply", "heartbeat"] {
            outbox.push(report(reason, &[]));
            drain(&mut outbox, &mut hub, &mut stored, &mut || false);
        }
        assert_eq!(hub.seqs(), [1, 2, 3]);
        assert_eq!(stored, 3);
    }

    #[test]
    fn a_report_whose_answer_was_lost_is_retried_with_its_seq_and_counts_once() {
        let (mut hub, mut stored) = (Hub::default(), 0);
        let mut outbox = Outbox::new(stored);
        outbox.push(report("start", &[]));
        let mut attempts = 0;
        drain(&mut outbox, &mut hub, &mut stored, &mut || {
            attempts += 1;
            attempts <= 2
        });
        outbox.push(report("apply", &[]));
        drain(&mut outbox, &mut hub, &mut stored, &mut || false);
        assert_eq!(hub.seqs(), [1, 2]);
    }

    #[test]
    fn while_one_is_in_flight_newer_reports_collapse_into_one_keeping_drift() {
        let mut outbox = Outbox::new(0);
        outbox.push(report("start", &[]));
        let Step::Persist(1) = outbox.step(now(), 0) else {
            panic!("persist first")
        };
        outbox.persisted();
        // The hub is away: the in-flight report stays, newer ones collapse.
        outbox.push(report("drift", &["a"]));
        outbox.push(report("drift", &["b"]));
        outbox.push(report("heartbeat", &[]));
        let Step::Send(first) = outbox.step(now(), 0) else {
            panic!("send")
        };
        assert_eq!((first.seq, first.reason.as_str()), (1, "start"));
        let Step::Send(again) = outbox.step(now(), 0) else {
            panic!("send again")
        };
        assert_eq!(again, first, "a retry is the same report");
        outbox.answered(&StatusAck {
            recorded: true,
            last_seq: 1,
        });
        assert_eq!(outbox.step(now(), 0), Step::Persist(2));
        outbox.persisted();
        let Step::Send(next) = outbox.step(now(), 0) else {
            panic!("send")
        };
        assert_eq!(next.reason, "heartbeat");
        let drift: Vec<&str> = next.drift.iter().map(|d| d.object.as_str()).collect();
        assert_eq!(drift, ["a", "b"]);
        outbox.answered(&StatusAck {
            recorded: true,
            last_seq: 2,
        });
        assert_eq!(outbox.step(now(), 0), Step::Idle);
    }

    #[test]
    fn a_restart_continues_without_a_gap_whether_or_not_the_last_seq_got_through() {
        // The previous process stored seq 3; the hub got it.
        let mut hub = Hub::default();
        for seq in 1..=3 {
            hub.receive(&StatusReport {
                seq,
                ..report("heartbeat", &[])
            });
        }
        let mut stored = 3;
        let mut outbox = Outbox::new(stored);
        outbox.push(report("start", &[]));
        drain(&mut outbox, &mut hub, &mut stored, &mut || false);
        assert_eq!(hub.seqs(), [1, 2, 3, 4]);
        assert_eq!(hub.recorded.last().map(|r| r.1.as_str()), Some("start"));

        // The previous process stored seq 3 and died before sending it.
        let mut hub = Hub::default();
        for seq in 1..=2 {
            hub.receive(&StatusReport {
                seq,
                ..report("heartbeat", &[])
            });
        }
        let mut stored = 3;
        let mut outbox = Outbox::new(stored);
        outbox.push(report("start", &[]));
        drain(&mut outbox, &mut hub, &mut stored, &mut || false);
        assert_eq!(hub.seqs(), [1, 2, 3]);
        assert_eq!(stored, 3, "nothing new stored");
    }

    #[test]
    fn a_hub_ahead_of_the_stored_counter_moves_it_forward() {
        let mut hub = Hub::default();
        for seq in 1..=9 {
            hub.receive(&StatusReport {
                seq,
                ..report("heartbeat", &[])
            });
        }
        let mut stored = 4;
        let mut outbox = Outbox::new(stored);
        outbox.push(report("start", &[]));
        outbox.push(report("apply", &[]));
        drain(&mut outbox, &mut hub, &mut stored, &mut || false);
        outbox.push(report("heartbeat", &[]));
        drain(&mut outbox, &mut hub, &mut stored, &mut || false);
        assert_eq!(hub.seqs(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    }

    #[test]
    fn seqs_stay_gapless_under_any_pattern_of_lost_answers() {
        let (mut hub, mut stored) = (Hub::default(), 0);
        let mut outbox = Outbox::new(stored);
        let mut n = 0u32;
        for round in 0..50u32 {
            if round % 7 == 3 {
                // A restart: a new outbox from the stored counter.
                outbox = Outbox::new(stored);
            }
            outbox.push(report("heartbeat", &[]));
            drain(&mut outbox, &mut hub, &mut stored, &mut || {
                n += 1;
                n.is_multiple_of(3)
            });
        }
        let seqs = hub.seqs();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert_eq!(seqs.len(), 50);
    }

    #[test]
    fn drift_entries_are_capped_keeping_the_newest() {
        let mut outbox = Outbox::new(0);
        let names: Vec<String> = (0..MAX_DRIFT_ENTRIES + 10).map(|i| i.to_string()).collect();
        for name in &names {
            outbox.push(report("drift", &[name]));
        }
        outbox.step(now(), 0);
        outbox.persisted();
        let Step::Send(sent) = outbox.step(now(), 0) else {
            panic!("send")
        };
        assert_eq!(sent.drift.len(), MAX_DRIFT_ENTRIES);
        assert_eq!(sent.drift[0].object, "10");
    }

    fn object(kind: &str, group: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        let api_version = if group.is_empty() {
            "v1".to_owned()
        } else {
            format!("{group}/v1")
        };
        ObjectRef::new(&api_version, kind, namespace, name).expect("valid")
    }

    #[test]
    fn objects_are_named_with_their_group() {
        assert_eq!(
            object_name(&object("ConfigMap", "", Some("shop"), "a")),
            "ConfigMap shop/a"
        );
        assert_eq!(
            object_name(&object("Deployment", "apps", Some("shop"), "web")),
            "Deployment.apps shop/web"
        );
        assert_eq!(
            object_name(&object(
                "ClusterRole",
                "rbac.authorization.k8s.io",
                None,
                "x"
            )),
            "ClusterRole.rbac.authorization.k8s.io x"
        );
    }

    fn state(apps: &[&str]) -> ClusterState {
        let mut bundle = flotilla_shared::testing::Bundle::test();
        for app in apps {
            bundle = bundle.with_app(flotilla_shared::testing::TestApp::new(app));
        }
        bundle.finish().0
    }

    #[test]
    fn apps_report_sync_health_and_objects() {
        let state = state(&["shop", "blog", "wiki"]);
        let cm = |ns: &str| object("ConfigMap", "", Some(ns), "config");
        let mut sync = SyncReport::default();
        sync.changes
            .record("blog", &cm("blog"), Action::Failed, "forbidden".into());
        sync.changes
            .record("shop", &cm("shop"), Action::Created, String::new());
        sync.orphaned.push("old".into());
        let current = Health {
            status: Status::Current,
            message: "Resource is current".into(),
        };
        let healths: AppHealths = BTreeMap::from([
            (
                "shop".to_owned(),
                (AppHealth::Healthy, vec![(cm("shop"), current.clone())]),
            ),
            (
                "blog".to_owned(),
                (AppHealth::Missing, vec![(cm("blog"), Health::not_found())]),
            ),
            (
                "wiki".to_owned(),
                (AppHealth::Healthy, vec![(cm("wiki"), current)]),
            ),
        ]);
        let out_of_sync = BTreeSet::from(["wiki".to_owned()]);
        let apps = app_reports(&state, &sync, &out_of_sync, &healths);
        let summary: Vec<(&str, &str, &str)> = apps
            .iter()
            .map(|a| (a.name.as_str(), a.sync.as_str(), a.health.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("shop", "Synced", "Healthy"),
                ("blog", "Failed", "Missing"),
                ("wiki", "OutOfSync", "Healthy"),
                ("old", "Orphaned", "Unknown"),
            ]
        );
        assert_eq!(apps[0].generation, state.generation);
        assert_eq!(apps[0].revision, state.apps[0].source.revision);
        assert_eq!(apps[1].message, "1 objects failed: forbidden");
        assert_eq!(
            apps[1].objects,
            [ObjectReport {
                object: "ConfigMap blog/config".into(),
                state: "Failed".into(),
                message: "forbidden".into(),
            }],
            "a failed object says why"
        );
    }

    #[test]
    fn a_prune_held_by_the_limit_leaves_the_app_out_of_sync_and_says_so() {
        let state = state(&["shop"]);
        let mut sync = SyncReport::default();
        let stale = object("ConfigMap", "", Some("shop"), "old");
        sync.changes.record(
            "shop",
            &stale,
            Action::Skipped,
            "not pruned: the prune step exceeds pruneLimit".into(),
        );
        let healths: AppHealths =
            BTreeMap::from([("shop".to_owned(), (AppHealth::Healthy, vec![]))]);
        let apps = app_reports(&state, &sync, &BTreeSet::new(), &healths);
        assert_eq!(
            (apps[0].sync.as_str(), apps[0].health.as_str()),
            ("OutOfSync", "Healthy")
        );
        assert_eq!(
            apps[0].message,
            "not pruned: the prune step exceeds pruneLimit (ConfigMap shop/old)"
        );
    }

    #[test]
    fn an_app_whose_objects_all_failed_is_not_healthy() {
        let state = state(&["outside"]);
        let mut sync = SyncReport::default();
        let cm = object("ConfigMap", "", Some("forbidden"), "config");
        sync.changes
            .record("outside", &cm, Action::Failed, "outside the policy".into());
        // Nothing was applied, so nothing was checked: the roll-up of no objects.
        let healths: AppHealths =
            BTreeMap::from([("outside".to_owned(), (AppHealth::Healthy, Vec::new()))]);
        let apps = app_reports(&state, &sync, &BTreeSet::new(), &healths);
        assert_eq!(
            (apps[0].sync.as_str(), apps[0].health.as_str()),
            ("Failed", "Degraded")
        );
        assert_eq!(apps[0].objects.len(), 1);
        assert_eq!(apps[0].objects[0].state, "Failed");
        assert_eq!(apps[0].objects[0].message, "outside the policy");
    }

    #[test]
    fn an_oversized_report_drops_current_objects_first() {
        let objects = |n: usize, state: &str| -> Vec<ObjectReport> {
            (0..n)
                .map(|i| ObjectReport {
                    object: format!("ConfigMap shop/{i:04}"),
                    state: state.to_owned(),
                    message: String::new(),
                })
                .collect()
        };
        let mut big = report("heartbeat", &[]);
        big.apps.push(AppReport {
            name: "shop".into(),
            objects: [objects(1000, "Current"), objects(3, "Failed")].concat(),
            ..AppReport::default()
        });
        let mut trimmed = big.clone();
        fit(&mut trimmed, 10_000);
        assert_eq!(trimmed.apps[0].objects.len(), 3);
        let mut tiny = big.clone();
        fit(&mut tiny, 400);
        assert!(tiny.apps[0].objects.is_empty());
        let mut untouched = big.clone();
        fit(&mut untouched, MAX_STATUS_BYTES);
        assert_eq!(untouched, big);
    }

    #[test]
    fn a_refused_generation_is_named_only_when_it_is_the_signers() {
        let signed = flotilla_shared::testing::Bundle::test()
            .generation(77)
            .with_app(flotilla_shared::testing::TestApp::new("shop"))
            .signed_by(&flotilla_shared::testing::key(1));
        let envelope = signed.envelope_bytes();
        let check = |rejection: Rejection, expected: Option<u64>| {
            assert_eq!(
                refused_generation(&rejection, Some(&envelope)),
                expected,
                "{rejection}"
            );
        };
        check(Rejection::RolledBack { got: 5, last: 9 }, Some(5));
        check(Rejection::GenerationReused { generation: 9 }, Some(9));
        check(Rejection::Empty, Some(77));
        check(
            Rejection::WrongCluster {
                got: "a".into(),
                expected: "b".into(),
            },
            Some(77),
        );
        check(Rejection::UnknownKey { keyids: vec![] }, None);
        check(Rejection::BadSignature { keyid: "k".into() }, None);
        assert_eq!(refused_generation(&Rejection::Empty, None), None);
        assert_eq!(refused_generation(&Rejection::Empty, Some(b"{}")), None);
    }

    #[test]
    fn the_state_report_says_the_phase_and_what_was_refused() {
        let state = state(&["shop"]);
        let refused = Situation::refused(Some(41), "generation 41 is older");
        let report = refused.state_report(Some(&state));
        assert_eq!(report.phase, "Refused");
        assert_eq!(report.refused_generation, Some(41));
        assert_eq!(report.generation, state.generation);
        assert_eq!(report.expires_at, state.expires_at.to_string());
        let waiting = Situation::default().state_report(None);
        assert_eq!((waiting.generation, waiting.phase.as_str()), (0, "Waiting"));
    }
}
