//! The hub mode of `run`, while this replica leads: enforce the cached state at once (the
//! hub may be away), make sure of an identity (register with the bootstrap token, keep the
//! certificate in a Secret, renew it at two thirds of its life), then long-poll the state;
//! verify each new one, fetch the blobs not cached, cache them, apply, and report. Drift
//! events, heartbeats and the state's expiry each lead to a report.
//!
//! It owns the sequence and the retries; every rule of acceptance is `flotilla-shared`'s
//! `verify`, and applying is the engine's (through `enforce`).
//! Invariant: a refused state changes nothing: the last accepted state stays enforced, and
//! the refusal is reported with its reason. A state past its expiry is still enforced
//! (self-heal included) but never synced again, and reported Stale.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use flotilla_shared::agent_api::{
    AgentInfo, CertificateResponse, DriftReport, RegisterRequest, RenewRequest, StatusReport,
};
use flotilla_shared::bundle::VerifiedBlob;
use flotilla_shared::error_chain::one_line;
use flotilla_shared::{Digest, LastAccepted, Policy, Rejection, VerifiedBundle, VerifiedState};
use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret as _;
use tokio::sync::{mpsc, watch};

use crate::discovery::Kinds;
use crate::drift::DriftEvent;
use crate::identity::{AgentKey, Certificate};

use super::backoff::{Backoff, jittered};
use super::cache::Cache;
use super::enforce::Enforcer;
use super::hub::{HubClient, HubError, Registration, StateAnswer};
use super::identity_store::{IdentityStore, IdentityStoreError, Issued, TokenSource};
use super::status::{
    Phase, Reason, Reporter, Situation, app_reports, drift_report, refused_generation,
};
use super::{Context, Stop, stopped};

/// How long a last report may take to get out when the process ends.
const LAST_REPORT_DEADLINE: Duration = Duration::from_secs(2);
/// A long poll that comes back sooner than this with "unchanged" is followed by a pause, so
/// a hub that does not hold polls open cannot make the agent spin.
const SHORTEST_POLL: Duration = Duration::from_secs(1);
/// How often the agent asks again while the hub has no state for its cluster.
const NO_STATE_PAUSE: Duration = Duration::from_secs(5);
/// Drift entries kept while no report can be sent.
const MAX_PENDING_DRIFT: usize = 200;

/// The hub mode's settings.
#[derive(Debug)]
pub struct HubSettings {
    pub url: reqwest::Url,
    pub hub_ca_pem: String,
    pub token: Option<TokenSource>,
    pub identity_secret: String,
    pub cache_dir: PathBuf,
    pub poll_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error(transparent)]
    Token(#[from] IdentityStoreError),
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// What one exchange with the hub came to.
enum Outcome {
    Registered(Result<Registration, RegisterError>),
    Renewed(Result<CertificateResponse, HubError>),
    Polled {
        answer: Result<StateAnswer, HubError>,
        took: Duration,
    },
}

type Exchange = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Why blobs could not be had.
enum BlobFailure {
    Hub(HubError),
    Refused(Rejection),
}

struct Puller<'a> {
    ctx: &'a Context,
    settings: &'a HubSettings,
    hub: Arc<HubClient>,
    cache: Cache,
    identities: IdentityStore,
    key: Option<Arc<AgentKey>>,
    csr: String,
    certificate: Option<Certificate>,
    renew_at: Option<Timestamp>,
    enforcer: Enforcer,
    situation: Situation,
    /// The situation the last sync left, to return to when the hub serves the accepted state
    /// again after one it refused.
    settled: Option<Situation>,
    /// Why nothing is enforced, while nothing is.
    waiting: String,
    /// `If-None-Match` of the next poll: the ETag of the newest state seen (accepted or
    /// refused), so the hub does not send a refused state again and again.
    etag: Option<String>,
    reporter: Option<Reporter>,
    drift: Vec<DriftReport>,
    info: AgentInfo,
    hub_backoff: Backoff,
    register_backoff: Backoff,
    renew_backoff: Backoff,
}

/// Leads in hub mode until `stop` says otherwise.
pub async fn lead(
    ctx: &Context,
    settings: &HubSettings,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let hub = Arc::new(HubClient::new(&settings.url, &settings.hub_ca_pem)?);
    let cache = Cache::open(&settings.cache_dir).await?;
    let (enforcer, mut drift_events) =
        Enforcer::new(ctx.client.clone(), ctx.engine.clone(), ctx.shared.clone());
    let mut puller = Puller {
        ctx,
        settings,
        hub,
        cache,
        identities: IdentityStore::new(
            ctx.client.clone(),
            &ctx.namespace,
            &settings.identity_secret,
        ),
        key: None,
        csr: String::new(),
        certificate: None,
        renew_at: None,
        enforcer,
        situation: Situation::default(),
        settled: None,
        waiting: "starting".to_owned(),
        etag: None,
        reporter: None,
        drift: Vec::new(),
        info: agent_info(ctx).await,
        hub_backoff: Backoff::hub(),
        register_backoff: Backoff::registration(),
        renew_backoff: Backoff::hub(),
    };
    let started = tokio::select! {
        why = stopped(&mut stop) => Err(why),
        started = puller.start() => Ok(started),
    };
    match started {
        Err(why) => {
            puller.finish(why).await;
            return Ok(());
        }
        Ok(Err(error)) => {
            puller.finish(Stop::LeaseLost).await;
            return Err(error);
        }
        Ok(Ok(())) => {}
    }
    let mut heartbeat = tokio::time::interval(ctx.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let mut delay = Duration::ZERO;
    let mut exchange: Option<Exchange> = None;
    let why = loop {
        let next = exchange.get_or_insert_with(|| puller.exchange(delay));
        let expiry = puller.expiry();
        tokio::select! {
            why = stopped(&mut stop) => break why,
            Some(event) = drift_events.recv() => puller.on_drift(event, &mut drift_events).await,
            _ = heartbeat.tick() => puller.on_heartbeat().await,
            () = sleep_until(expiry) => puller.on_expired(),
            outcome = next => {
                exchange = None;
                delay = puller.on_outcome(outcome).await;
            }
        }
    };
    puller.finish(why).await;
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Who the agent is and where it runs, for its reports.
async fn agent_info(ctx: &Context) -> AgentInfo {
    let kube_version = match ctx.client.apiserver_version().await {
        Ok(version) => version.git_version,
        Err(error) => {
            tracing::warn!(%error, "cannot read the apiserver's version");
            String::new()
        }
    };
    let api_versions = match Kinds::load(&ctx.client).await {
        Ok(kinds) => kinds.api_versions(),
        Err(error) => {
            tracing::warn!(error = %one_line(&error), "cannot read the apiserver's API versions");
            Vec::new()
        }
    };
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        kube_version,
        api_versions,
        server: ctx.server.clone(),
        clock_offset_ms: 0,
        holder: ctx.holder.clone(),
    }
}

/// The ETag of a state: its payload digest, quoted.
fn etag_of(state: &VerifiedState) -> String {
    format!("\"{}\"", state.payload_digest)
}

impl Puller<'_> {
    async fn start(&mut self) -> anyhow::Result<()> {
        self.enforce_cache().await;
        self.load_identity().await?;
        if self.hub.has_identity() {
            self.start_reporting();
        }
        Ok(())
    }

    fn ready(&self) {
        let shared = &self.ctx.shared;
        match self.enforcer.current() {
            Some(current) => shared.set_ready(
                true,
                format!(
                    "leading: enforcing generation {} ({})",
                    current.bundle.state.state.generation,
                    self.situation.phase.as_str()
                ),
            ),
            None => shared.set_ready(false, format!("leading: {}", self.waiting)),
        }
    }

    /// Reads until the apiserver answers (backing off meanwhile).
    async fn last_accepted(&mut self) -> Option<LastAccepted> {
        let mut backoff = Backoff::hub();
        loop {
            match self.ctx.store.last_accepted().await {
                Ok(last) => return last,
                Err(error) => {
                    tracing::warn!(error = %one_line(&error), "cannot read the last accepted generation; retrying");
                    tokio::time::sleep(backoff.fail()).await;
                }
            }
        }
    }

    /// Enforces the cached state when it is the last accepted one (or newer) and verifies.
    #[tracing::instrument(skip_all)]
    async fn enforce_cache(&mut self) {
        self.hold_cluster().await;
        if self.enforcer.current().is_none() {
            // Reported until a state arrives: nothing is enforced, self-heal waits for the hub.
            self.situation = Situation::new(Phase::Waiting, self.waiting.clone());
        }
        self.ready();
    }

    /// Enforces the cached state when it verifies; else says in `waiting` why not.
    async fn hold_cluster(&mut self) {
        let Some(last) = self.last_accepted().await else {
            self.waiting = "no state accepted yet; waiting for the hub".to_owned();
            return;
        };
        let hold = |reason: String| {
            format!(
                "holding the cluster as it is: generation {} was accepted, but {reason}; \
                 self-heal waits for the hub",
                last.generation
            )
        };
        let envelope = match self.cache.envelope().await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => {
                self.waiting = hold("it is not in the cache".to_owned());
                tracing::warn!(reason = %self.waiting, "no cached state");
                return;
            }
            Err(error) => {
                self.waiting = hold(one_line(&error));
                tracing::warn!(reason = %self.waiting, "no cached state");
                return;
            }
        };
        let policy = Policy::default();
        let (trust, cluster) = (&self.ctx.trust_root, &self.ctx.cluster);
        let verified = match policy.verify(&envelope, trust, cluster, Some(&last), Timestamp::now())
        {
            Ok(verified) => Ok((verified, false)),
            // An expired state is still the one to enforce (without syncing it): check
            // everything else as of a moment before it expired.
            Err(Rejection::Expired { at, .. }) => {
                let before = at.checked_sub(SignedDuration::from_secs(1)).unwrap_or(at);
                policy
                    .verify(&envelope, trust, cluster, Some(&last), before)
                    .map(|v| (v, true))
            }
            Err(rejection) => Err(rejection),
        };
        let (verified, expired) = match verified {
            Ok(verified) => verified,
            Err(rejection) => {
                self.waiting = hold(format!("the cached state is refused: {rejection}"));
                tracing::warn!(reason = %self.waiting, "cached state not usable");
                return;
            }
        };
        let mut blobs = Vec::new();
        for app in &verified.state.apps {
            let digest = app.blob.digest;
            let verified_blob = match self.cache.blob(&digest).await {
                Ok(Some(bytes)) => policy
                    .verify_blob(app, &bytes)
                    .map(|blob| VerifiedBlob {
                        app: app.name.clone(),
                        digest,
                        bytes,
                        blob,
                    })
                    .map_err(|e| e.to_string()),
                Ok(None) => Err(format!("blob {digest} of app {} is not cached", app.name)),
                Err(error) => Err(one_line(&error)),
            };
            match verified_blob {
                Ok(blob) => blobs.push(blob),
                Err(reason) => {
                    self.waiting = hold(reason);
                    tracing::warn!(reason = %self.waiting, "cached state not usable");
                    return;
                }
            }
        }
        let generation = verified.state.generation;
        let etag = etag_of(&verified);
        let expires_at = verified.state.expires_at;
        let bundle = VerifiedBundle {
            state: verified,
            envelope,
            blobs,
        };
        tracing::info!(generation, expired, "enforcing the cached state");
        if expired {
            match self.enforcer.hold(bundle).await {
                Ok(()) => {
                    self.situation = stale(generation, expires_at);
                    self.etag = Some(etag);
                }
                Err(error) => {
                    self.waiting = hold(one_line(&error));
                    tracing::warn!(error = %one_line(&error), "cannot enforce the cached state");
                }
            }
        } else {
            match self.enforcer.apply(bundle, Some(&last)).await {
                Ok(enforced) => {
                    self.situation = Situation::after_sync(generation, &enforced.sync);
                    self.settled = Some(self.situation.clone());
                    self.etag = Some(etag);
                }
                Err(error) => {
                    self.waiting = hold(one_line(&error));
                    tracing::warn!(error = %one_line(&error), "cannot apply the cached state");
                }
            }
        }
    }

    /// Reads the identity Secret: a key (made and kept now when there is none) and, when the
    /// agent registered before, its certificate.
    #[tracing::instrument(skip_all, fields(secret = %self.settings.identity_secret))]
    async fn load_identity(&mut self) -> anyhow::Result<()> {
        let mut backoff = Backoff::hub();
        let stored = loop {
            match self.identities.load().await {
                Ok(stored) => break stored,
                Err(error @ IdentityStoreError::Corrupt { .. }) => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(error = %one_line(&error), "cannot read the identity; retrying");
                    tokio::time::sleep(backoff.fail()).await;
                }
            }
        };
        let key = match stored {
            Some(stored) => {
                if let Some(issued) = stored.issued {
                    self.adopt(&stored.key, &issued, false)
                        .context("the identity Secret holds an unusable certificate")?;
                }
                stored.key
            }
            None => {
                let key = AgentKey::generate()?;
                // Kept before registering: a restart while the hub waits for approval sends
                // the same CSR again.
                loop {
                    match self.identities.save(&key, None).await {
                        Ok(()) => break,
                        Err(error) => {
                            tracing::warn!(error = %one_line(&error), "cannot keep the new key; retrying");
                            tokio::time::sleep(backoff.fail()).await;
                        }
                    }
                }
                tracing::info!("made a new key");
                key
            }
        };
        self.csr = key.csr_pem(&self.ctx.cluster)?;
        self.key = Some(Arc::new(key));
        if !self.hub.has_identity() {
            self.waiting = "registering with the hub".to_owned();
            self.ready();
        }
        Ok(())
    }

    /// Uses an issued certificate (unless it expired, when `fresh` is false: then the agent
    /// registers again).
    fn adopt(&mut self, key: &AgentKey, issued: &Issued, fresh: bool) -> anyhow::Result<()> {
        let certificate = Certificate::parse(&issued.chain_pem)?;
        if !fresh && certificate.expired(Timestamp::now()) {
            tracing::warn!(not_after = %certificate.not_after,
                "the kept certificate expired; registering again");
            return Ok(());
        }
        self.hub
            .set_identity(key, &issued.chain_pem, &issued.ca_pem)?;
        let renew_at = certificate.renew_after(Timestamp::now());
        tracing::info!(serial = %certificate.serial_hex, not_after = %certificate.not_after,
            %renew_at, "client certificate in use");
        self.renew_at = Some(renew_at);
        self.certificate = Some(certificate);
        Ok(())
    }

    fn start_reporting(&mut self) {
        if self.reporter.is_some() {
            return;
        }
        self.reporter = Some(Reporter::spawn(
            self.hub.clone(),
            self.ctx.store.clone(),
            self.ctx.shared.clone(),
        ));
        self.report(Reason::Start);
    }

    /// The next exchange with the hub, after `delay`.
    fn exchange(&self, delay: Duration) -> Exchange {
        let hub = self.hub.clone();
        if !hub.has_identity() {
            let client = self.ctx.client.clone();
            let namespace = self.ctx.namespace.clone();
            let token = self.settings.token.clone();
            let cluster = self.ctx.cluster.clone();
            let csr = self.csr.clone();
            return Box::pin(async move {
                tokio::time::sleep(delay).await;
                Outcome::Registered(
                    register(&hub, &client, &namespace, token.as_ref(), cluster, csr).await,
                )
            });
        }
        if self.renew_at.is_some_and(|at| Timestamp::now() >= at) {
            let request = RenewRequest {
                csr: self.csr.clone(),
            };
            return Box::pin(async move {
                tokio::time::sleep(delay).await;
                Outcome::Renewed(hub.renew(&request).await)
            });
        }
        let etag = self.etag.clone();
        let wait = self.settings.poll_wait;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let started = tokio::time::Instant::now();
            let answer = hub
                .state(etag.as_deref(), wait, Policy::default().max_envelope_bytes)
                .await;
            Outcome::Polled {
                answer,
                took: started.elapsed(),
            }
        })
    }

    /// Handles an exchange; returns how long to wait before the next.
    async fn on_outcome(&mut self, outcome: Outcome) -> Duration {
        let metrics = &self.ctx.shared.metrics;
        match outcome {
            Outcome::Registered(Ok(Registration::Issued(response))) => {
                self.on_issued(response).await
            }
            Outcome::Registered(Ok(Registration::Pending(message))) => {
                tracing::info!(%message, "registration waits for approval");
                self.waiting = format!("registering: the hub waits for approval: {message}");
                self.ready();
                self.register_backoff.fail()
            }
            Outcome::Registered(Err(error)) => {
                metrics.hub_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %one_line(&error), "registration failed");
                self.waiting = format!("registering: {}", one_line(&error));
                self.ready();
                self.register_backoff.fail()
            }
            Outcome::Renewed(Ok(response)) => self.on_issued(response).await,
            Outcome::Renewed(Err(error)) => {
                metrics.hub_errors.fetch_add(1, Ordering::Relaxed);
                let retry = self.renew_backoff.fail();
                tracing::warn!(error = %one_line(&error), ?retry, "renewal failed");
                self.renew_at = Some(
                    Timestamp::now()
                        .checked_add(SignedDuration::try_from(retry).unwrap_or_default())
                        .unwrap_or(Timestamp::MAX),
                );
                Duration::ZERO
            }
            Outcome::Polled { answer, took } => match answer {
                Ok(StateAnswer::Unchanged) => {
                    self.hub_backoff.reset();
                    if took < SHORTEST_POLL {
                        jittered(SHORTEST_POLL)
                    } else {
                        Duration::ZERO
                    }
                }
                Ok(StateAnswer::NoState) => {
                    self.hub_backoff.reset();
                    if self.enforcer.current().is_none() {
                        self.waiting = "the hub has no state for this cluster yet".to_owned();
                        self.ready();
                    }
                    jittered(NO_STATE_PAUSE)
                }
                Ok(StateAnswer::State { envelope, etag }) => {
                    self.hub_backoff.reset();
                    self.on_state(envelope, etag).await
                }
                Err(error) => {
                    metrics.hub_errors.fetch_add(1, Ordering::Relaxed);
                    let retry = self.hub_backoff.fail();
                    tracing::warn!(error = %one_line(&error), ?retry, "polling the hub failed");
                    let unauthenticated = matches!(error, HubError::Refused { status: 401, .. });
                    if unauthenticated
                        && self
                            .certificate
                            .as_ref()
                            .is_some_and(|c| c.expired(Timestamp::now()))
                    {
                        tracing::warn!("the client certificate expired; registering again");
                        self.hub.clear_identity();
                        self.certificate = None;
                        self.renew_at = None;
                    }
                    retry
                }
            },
        }
    }

    /// A certificate came back from registering or renewing: use it and keep it.
    async fn on_issued(&mut self, response: CertificateResponse) -> Duration {
        let key = self.key.clone().expect("a key exists before registering");
        let issued = Issued {
            chain_pem: response.certificate,
            ca_pem: response.ca_certificate,
        };
        if let Err(error) = self.adopt(&key, &issued, true) {
            self.ctx
                .shared
                .metrics
                .hub_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %format!("{error:#}"), "the hub issued an unusable certificate");
            return self.register_backoff.fail();
        }
        self.register_backoff.reset();
        self.renew_backoff.reset();
        let mut backoff = Backoff::hub();
        for attempt in 1..=3 {
            match self.identities.save(&key, Some(&issued)).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = %one_line(&error), attempt,
                        "cannot keep the certificate; a restart will register again");
                    tokio::time::sleep(backoff.fail()).await;
                }
            }
        }
        if self.enforcer.current().is_none() {
            self.waiting = "no state accepted yet; waiting for the hub".to_owned();
            self.ready();
        }
        self.start_reporting();
        Duration::ZERO
    }

    /// A state from the hub: verify it, get its blobs, cache, apply, report.
    #[tracing::instrument(skip_all)]
    async fn on_state(&mut self, envelope: Vec<u8>, etag: Option<String>) -> Duration {
        let last = self.last_accepted().await;
        let verified = match Policy::default().verify(
            &envelope,
            &self.ctx.trust_root,
            &self.ctx.cluster,
            last.as_ref(),
            Timestamp::now(),
        ) {
            Ok(verified) => verified,
            Err(rejection) => {
                let generation = refused_generation(&rejection, Some(&envelope));
                self.refuse(generation, rejection.to_string());
                self.etag = etag.or_else(|| {
                    let payload = flotilla_shared::Envelope::from_json(&envelope)
                        .ok()?
                        .payload_bytes()
                        .ok()?;
                    Some(format!("\"{}\"", Digest::of(&payload)))
                });
                return Duration::ZERO;
            }
        };
        let etag = etag.unwrap_or_else(|| etag_of(&verified));
        if self.enforcer.is_enforcing(&verified.last_accepted()) {
            self.etag = Some(etag);
            // The hub serves what is enforced again: a refusal in between is over.
            if self.situation.phase == Phase::Refused
                && let Some(settled) = self.settled.clone()
            {
                tracing::info!("the hub serves the accepted state again");
                self.situation = settled;
                self.report(Reason::Apply);
            }
            return Duration::ZERO;
        }
        let generation = verified.state.generation;
        let blobs = match self.blobs(&verified).await {
            Ok(blobs) => blobs,
            Err(BlobFailure::Hub(error)) => {
                self.ctx
                    .shared
                    .metrics
                    .hub_errors
                    .fetch_add(1, Ordering::Relaxed);
                let retry = self.hub_backoff.fail();
                tracing::warn!(error = %one_line(&error), ?retry, "cannot fetch a blob");
                return retry;
            }
            Err(BlobFailure::Refused(rejection)) => {
                // Not remembered as seen: the state is asked for again after the backoff.
                self.refuse(Some(generation), rejection.to_string());
                return self.hub_backoff.fail();
            }
        };
        if let Err(error) = self.cache.put_envelope(&envelope).await {
            tracing::warn!(error = %one_line(&error), "cannot cache the state");
        }
        let keep = verified.state.apps.iter().map(|a| a.blob.digest).collect();
        self.situation =
            Situation::new(Phase::Applying, format!("applying generation {generation}"));
        let bundle = VerifiedBundle {
            state: verified,
            envelope,
            blobs,
        };
        match self.enforcer.apply(bundle, last.as_ref()).await {
            Ok(enforced) => {
                self.situation = Situation::after_sync(generation, &enforced.sync);
                self.settled = Some(self.situation.clone());
                self.etag = Some(etag);
                if let Err(error) = self.cache.retain(&keep).await {
                    tracing::warn!(error = %one_line(&error), "cannot clean the cache");
                }
                self.ready();
                self.report(Reason::Apply);
                Duration::ZERO
            }
            Err(error) => {
                let retry = self.hub_backoff.fail();
                tracing::warn!(error = %one_line(&error), ?retry, "cannot apply the state; retrying");
                self.situation = match self.enforcer.current() {
                    Some(current) => Situation::new(
                        Phase::Failed,
                        format!(
                            "generation {generation} could not be applied ({}); generation {} stays",
                            one_line(&error),
                            current.bundle.state.state.generation
                        ),
                    ),
                    None => Situation::new(
                        Phase::Failed,
                        format!(
                            "generation {generation} could not be applied: {}",
                            one_line(&error)
                        ),
                    ),
                };
                self.ready();
                retry
            }
        }
    }

    /// The verified blobs of a state: from the cache where they are there and intact, else
    /// from the hub (then cached).
    async fn blobs(&self, verified: &VerifiedState) -> Result<Vec<VerifiedBlob>, BlobFailure> {
        let policy = Policy::default();
        let mut blobs = Vec::new();
        for app in &verified.state.apps {
            let digest = app.blob.digest;
            if let Ok(Some(bytes)) = self.cache.blob(&digest).await
                && let Ok(blob) = policy.verify_blob(app, &bytes)
            {
                blobs.push(VerifiedBlob {
                    app: app.name.clone(),
                    digest,
                    bytes,
                    blob,
                });
                continue;
            }
            let bytes = self
                .hub
                .blob(&digest, app.blob.size.min(policy.max_blob_bytes))
                .await
                .map_err(BlobFailure::Hub)?;
            let blob = policy
                .verify_blob(app, &bytes)
                .map_err(BlobFailure::Refused)?;
            if let Err(error) = self.cache.put_blob(&digest, &bytes).await {
                tracing::warn!(error = %one_line(&error), "cannot cache a blob");
            }
            blobs.push(VerifiedBlob {
                app: app.name.clone(),
                digest,
                bytes,
                blob,
            });
        }
        Ok(blobs)
    }

    fn refuse(&mut self, generation: Option<u64>, reason: String) {
        self.ctx
            .shared
            .metrics
            .state_refusals
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(?generation, %reason, "state refused; the last accepted state stays");
        self.situation = Situation::refused(generation, reason);
        self.ready();
        self.report(Reason::Refused);
    }

    async fn on_drift(&mut self, first: DriftEvent, more: &mut mpsc::Receiver<DriftEvent>) {
        let now = Timestamp::now();
        let mut events = vec![first];
        while let Ok(event) = more.try_recv() {
            events.push(event);
        }
        for event in &events {
            self.enforcer.note_drift(event);
            self.drift.push(drift_report(event, now));
        }
        let excess = self.drift.len().saturating_sub(MAX_PENDING_DRIFT);
        self.drift.drain(..excess);
        if self.reporter.is_some() {
            self.enforcer.refresh_health().await;
            self.report(Reason::Drift);
        }
    }

    async fn on_heartbeat(&mut self) {
        self.enforcer.ensure_watch().await;
        if self.reporter.is_some() {
            self.enforcer.refresh_health().await;
            self.report(Reason::Heartbeat);
        }
    }

    /// When the enforced state expires (unless it is already reported Stale).
    fn expiry(&self) -> Option<tokio::time::Instant> {
        if self.situation.phase == Phase::Stale {
            return None;
        }
        Some(expiry(
            self.enforcer.current()?.bundle.state.state.expires_at,
        ))
    }

    fn on_expired(&mut self) {
        let Some(current) = self.enforcer.current() else {
            return;
        };
        let state = &current.bundle.state.state;
        self.situation = stale(state.generation, state.expires_at);
        tracing::warn!(generation = state.generation, expired = %state.expires_at,
            "the accepted state expired and no newer one came; enforcing it without syncing");
        self.ready();
        self.report(Reason::Stale);
    }

    /// Queues a report (once the agent can report: drift is kept until then).
    fn report(&mut self, reason: Reason) {
        let Some(reporter) = &self.reporter else {
            return;
        };
        let current = self.enforcer.current();
        let report = StatusReport {
            seq: 0,
            sent_at: String::new(),
            reason: reason.as_str().to_owned(),
            agent: self.info.clone(),
            state: self
                .situation
                .state_report(current.map(|c| &c.bundle.state.state)),
            apps: current
                .map(|c| app_reports(&c.bundle.state.state, &c.sync, &c.out_of_sync, &c.healths))
                .unwrap_or_default(),
            drift: std::mem::take(&mut self.drift),
        };
        reporter.push(report);
    }

    async fn finish(&mut self, why: Stop) {
        self.enforcer.stop().await;
        if let Some(reporter) = self.reporter.take() {
            match why {
                Stop::Shutdown => reporter.finish(LAST_REPORT_DEADLINE).await,
                Stop::LeaseLost | Stop::Running => reporter.abort(),
            }
        }
    }
}

/// When a state that expires at `expires_at` counts as expired: when verification would
/// refuse it as expired, that is past `expires_at` by more than the tolerated clock skew.
pub fn expiry(expires_at: Timestamp) -> tokio::time::Instant {
    let expired_at = expires_at
        .checked_add(Policy::default().skew)
        .unwrap_or(Timestamp::MAX);
    let left =
        Duration::try_from(expired_at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + left
}

fn stale(generation: u64, expires_at: Timestamp) -> Situation {
    Situation::new(
        Phase::Stale,
        format!(
            "generation {generation} expired at {expires_at} and no newer state could be had; \
             it is still enforced (self-heal only: nothing new applied, nothing pruned)"
        ),
    )
}

/// Registers with the bootstrap token (read now, used once, never logged).
async fn register(
    hub: &HubClient,
    client: &kube::Client,
    namespace: &str,
    token: Option<&TokenSource>,
    cluster: String,
    csr: String,
) -> Result<Registration, RegisterError> {
    let token = super::identity_store::bootstrap_token(client, namespace, token).await?;
    let request = RegisterRequest {
        cluster,
        token: token.expose_secret().to_owned(),
        csr,
    };
    Ok(hub.register(&request).await?)
}
