//! The pure core of publication: from what a cluster should run now (rendered apps, failed
//! renders, failed generators, pins) and the state it was last served, the next
//! `ClusterState` — or the decision that nothing needs publishing.
//!
//! The hub-side trust rules live here (DESIGN.md "Trust model"):
//! - an app that left the configuration becomes a tombstone in `removed` (pruned per its last
//!   sync policy); tombstones are carried forward until the app comes back, so an agent that
//!   missed a generation still sees the removal;
//! - a render failure, a missing pinned revision or a failing generator keeps the app's last
//!   good entry and reports the problem: a failing generator never empties a cluster;
//! - `allowEmpty` only when the configuration has no app at all for the cluster;
//! - generation = max(last + 1, Unix milliseconds now), so a hub restored from an old backup
//!   still issues higher numbers;
//! - a state is re-issued only when its content changes, or at half its lifetime; a new
//!   commit whose render of an app is unchanged keeps that app's deployed revision, so only
//!   the clusters whose objects change get a new generation.
//!
//! No I/O, no clock, no signing: the caller passes `now` and signs the result.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_shared::Digest;
use flotilla_shared::blob::AppBlob;
use flotilla_shared::state::{
    API_VERSION, App, BlobRef, ClusterState, IgnoreDifference, Limits, STATE_KIND, Source,
    SyncPolicy, Tombstone,
};
use jiff::{SignedDuration, Timestamp};

use crate::render::Rendered;
use crate::store::Problem;

/// The default validity of a state; it is re-signed after half of it.
pub const DEFAULT_LIFETIME: SignedDuration = SignedDuration::from_hours(24);

/// What an app of a cluster should run, as configured now.
#[derive(Debug, Clone)]
pub struct DesiredApp {
    pub name: String,
    pub namespace: String,
    /// The source, its `revision` the commit that was rendered.
    pub source: Source,
    pub sync_policy: SyncPolicy,
    /// From the app's project; `None` means no limit.
    pub limits: Option<Limits>,
    pub ignore_differences: Vec<IgnoreDifference>,
    pub content: Content,
}

/// The outcome of rendering an app for a cluster.
#[derive(Debug, Clone)]
pub enum Content {
    /// The rendered objects.
    Rendered(Rendered),
    /// The render failed: keep the last good content and report why.
    Failed(String),
    /// Automated sync is off and no sync was asked for: keep what is deployed.
    Hold,
}

/// An ApplicationSet whose generators failed; the apps it generated last time are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorFailure {
    pub app_set: String,
    pub error: String,
    /// The names it generated the last time it succeeded.
    pub previous_apps: Vec<String>,
}

/// What a pin resolves to on this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedEntry {
    /// The app entry deployed at the pinned revision (from history).
    Found(Box<App>),
    /// The pinned revision was never deployed to this cluster.
    Missing { revision: String },
}

/// Everything the plan of one cluster depends on.
#[derive(Debug, Clone)]
pub struct ClusterInput {
    pub cluster: String,
    pub apps: Vec<DesiredApp>,
    pub generator_failures: Vec<GeneratorFailure>,
    /// Pins that apply to this cluster, by app name.
    pub pins: BTreeMap<String, PinnedEntry>,
}

impl ClusterInput {
    pub fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            apps: Vec::new(),
            generator_failures: Vec::new(),
            pins: BTreeMap::new(),
        }
    }
}

/// A blob to store, computed by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlob {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// What to do for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sign and serve this state.
    Publish {
        state: Box<ClusterState>,
        /// Blobs of rendered content not named by the previous state.
        blobs: Vec<NewBlob>,
        /// The entries that deploy new content or a new revision (for history).
        deployed: Vec<App>,
        /// True when only the validity was renewed.
        resigned: bool,
    },
    /// The served state is still right and fresh.
    Unchanged,
    /// Nothing can be published (no app has content, yet the configuration has apps):
    /// an empty state would make the agent remove nothing and refuse it anyway.
    NothingToPublish,
}

/// The plan of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    pub cluster: String,
    pub decision: Decision,
    pub problems: Vec<Problem>,
}

/// The generation after `last`: max(last + 1, Unix milliseconds of `now`).
pub fn next_generation(last: Option<u64>, now: Timestamp) -> u64 {
    let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    last.map_or(now_ms, |last| now_ms.max(last.saturating_add(1)))
}

/// Whether a state issued at `issued_at` is due for re-signing at `now`.
pub fn resign_due(issued_at: Timestamp, now: Timestamp, lifetime: SignedDuration) -> bool {
    now >= issued_at + lifetime / 2
}

/// The previous entry of an app with the current limits: a kept entry never carries limits
/// wider than the project allows now.
fn kept(previous: &App, limits: &Option<Limits>) -> App {
    App {
        limits: limits.clone(),
        ..previous.clone()
    }
}

/// Plans one cluster. `previous` is the state it is served now (its generation is the last
/// one issued); `lifetime` is how long a new state is valid.
pub fn plan_cluster(
    input: &ClusterInput,
    previous: Option<&ClusterState>,
    now: Timestamp,
    lifetime: SignedDuration,
) -> ClusterPlan {
    let previous_apps: BTreeMap<&str, &App> = previous
        .map(|p| p.apps.iter().map(|a| (a.name.as_str(), a)).collect())
        .unwrap_or_default();
    let known_digests: BTreeSet<Digest> = previous_apps.values().map(|a| a.blob.digest).collect();
    let mut apps: BTreeMap<String, App> = BTreeMap::new();
    let mut blobs: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut problem = |app: &str, message: String, kept: bool| {
        problems.push(Problem {
            app: app.to_owned(),
            message,
            kept,
        });
    };

    for desired in &input.apps {
        let last_good = previous_apps.get(desired.name.as_str()).copied();
        let fallback = |apps: &mut BTreeMap<String, App>,
                        reason: String,
                        problem: &mut dyn FnMut(&str, String, bool)| {
            match last_good {
                Some(entry) => {
                    apps.insert(desired.name.clone(), kept(entry, &desired.limits));
                    problem(&desired.name, reason, true);
                }
                None => problem(&desired.name, reason, false),
            }
        };
        if let Some(pinned) = input.pins.get(&desired.name) {
            match pinned {
                PinnedEntry::Found(entry) => {
                    apps.insert(
                        desired.name.clone(),
                        App {
                            sync_policy: desired.sync_policy.clone(),
                            limits: desired.limits.clone(),
                            ..(**entry).clone()
                        },
                    );
                }
                PinnedEntry::Missing { revision } => fallback(
                    &mut apps,
                    format!(
                        "app {} is pinned to revision {revision}, which was never deployed to cluster {}",
                        desired.name, input.cluster
                    ),
                    &mut problem,
                ),
            }
            continue;
        }
        match &desired.content {
            Content::Rendered(objects) => match AppBlob::new(objects.to_vec()) {
                Ok(blob) => {
                    let bytes = blob.to_canonical_json();
                    let blob = BlobRef::of(&bytes);
                    if !known_digests.contains(&blob.digest) {
                        blobs.entry(blob.digest).or_insert(bytes);
                    }
                    // Content that did not change keeps the revision it was deployed at: a
                    // commit that leaves a cluster's objects as they were does not republish it.
                    let source = match last_good {
                        Some(before)
                            if before.blob == blob
                                && before.source.repo_url == desired.source.repo_url
                                && before.source.path == desired.source.path =>
                        {
                            before.source.clone()
                        }
                        _ => desired.source.clone(),
                    };
                    apps.insert(
                        desired.name.clone(),
                        App {
                            name: desired.name.clone(),
                            namespace: desired.namespace.clone(),
                            source,
                            sync_policy: desired.sync_policy.clone(),
                            limits: desired.limits.clone(),
                            ignore_differences: desired.ignore_differences.clone(),
                            blob,
                        },
                    );
                }
                Err(e) => fallback(
                    &mut apps,
                    format!("app {}: render is not a valid blob: {e}", desired.name),
                    &mut problem,
                ),
            },
            Content::Failed(error) => fallback(&mut apps, error.clone(), &mut problem),
            Content::Hold => {
                if let Some(entry) = last_good {
                    apps.insert(desired.name.clone(), kept(entry, &desired.limits));
                }
            }
        }
    }

    for failure in &input.generator_failures {
        for name in &failure.previous_apps {
            if apps.contains_key(name) || input.apps.iter().any(|a| &a.name == name) {
                continue;
            }
            if let Some(entry) = previous_apps.get(name.as_str()) {
                apps.insert(name.clone(), (*entry).clone());
                problem(
                    name,
                    format!(
                        "application set {} failed to generate ({}); keeping app {name} as last published",
                        failure.app_set, failure.error
                    ),
                    true,
                );
            }
        }
    }

    // Tombstones: apps served before and absent now, plus earlier tombstones of apps that
    // did not come back.
    let mut removed: BTreeMap<String, Tombstone> = BTreeMap::new();
    if let Some(previous) = previous {
        for tombstone in &previous.removed {
            removed.insert(tombstone.name.clone(), tombstone.clone());
        }
        for app in &previous.apps {
            removed.insert(
                app.name.clone(),
                Tombstone {
                    name: app.name.clone(),
                    prune: app.sync_policy.prune,
                },
            );
        }
    }
    removed.retain(|name, _| !apps.contains_key(name));

    let allow_empty = input.apps.is_empty() && input.generator_failures.is_empty();
    let cluster = input.cluster.clone();
    if apps.is_empty() && !allow_empty {
        return ClusterPlan {
            cluster,
            decision: Decision::NothingToPublish,
            problems,
        };
    }

    let apps: Vec<App> = apps.into_values().collect();
    let removed: Vec<Tombstone> = removed.into_values().collect();
    let same_content = previous
        .is_some_and(|p| p.allow_empty == allow_empty && p.apps == apps && p.removed == removed);
    if same_content
        && let Some(p) = previous
        && !resign_due(p.issued_at, now, lifetime)
    {
        return ClusterPlan {
            cluster,
            decision: Decision::Unchanged,
            problems,
        };
    }

    let deployed = apps
        .iter()
        .filter(|app| {
            previous_apps.get(app.name.as_str()).is_none_or(|before| {
                before.source.revision != app.source.revision || before.blob != app.blob
            })
        })
        .cloned()
        .collect();
    let state = ClusterState {
        api_version: API_VERSION.to_owned(),
        kind: STATE_KIND.to_owned(),
        cluster: cluster.clone(),
        generation: next_generation(previous.map(|p| p.generation), now),
        issued_at: now,
        expires_at: now + lifetime,
        allow_empty,
        apps,
        removed,
    };
    ClusterPlan {
        cluster,
        decision: Decision::Publish {
            state: Box::new(state),
            blobs: blobs
                .into_iter()
                .map(|(digest, bytes)| NewBlob { digest, bytes })
                .collect(),
            deployed,
            resigned: same_content,
        },
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::testing::{config_map, now};
    use std::sync::Arc;

    const DAY: SignedDuration = DEFAULT_LIFETIME;

    fn rendered(name: &str, objects: &[&str]) -> DesiredApp {
        DesiredApp {
            name: name.to_owned(),
            namespace: name.to_owned(),
            source: Source {
                repo_url: "https://git.example/config.git".to_owned(),
                path: format!("apps/{name}"),
                revision: "c1".to_owned(),
            },
            sync_policy: SyncPolicy {
                prune: true,
                ..SyncPolicy::default()
            },
            limits: None,
            ignore_differences: Vec::new(),
            content: Content::Rendered(
                objects
                    .iter()
                    .map(|o| config_map(name, o))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        }
    }

    fn failed(name: &str, error: &str) -> DesiredApp {
        DesiredApp {
            content: Content::Failed(error.to_owned()),
            ..rendered(name, &[])
        }
    }

    fn input(apps: Vec<DesiredApp>) -> ClusterInput {
        ClusterInput {
            apps,
            ..ClusterInput::new("east")
        }
    }

    fn published(plan: &ClusterPlan) -> &ClusterState {
        match &plan.decision {
            Decision::Publish { state, .. } => state,
            other => panic!("expected a publication, got {other:?}"),
        }
    }

    /// The apps (name@revision) and tombstones (name, prune) of a plan's state, or the
    /// decision's name, and the problems as (app, kept).
    fn check(plan: &ClusterPlan, expected: &str, expected_problems: &[(&str, bool)]) {
        let got = match &plan.decision {
            Decision::Unchanged => "unchanged".to_owned(),
            Decision::NothingToPublish => "nothing".to_owned(),
            Decision::Publish { state, .. } => {
                let apps: Vec<String> = state
                    .apps
                    .iter()
                    .map(|a| format!("{}@{}", a.name, a.source.revision))
                    .collect();
                let removed: Vec<String> = state
                    .removed
                    .iter()
                    .map(|t| format!("-{}{}", t.name, if t.prune { "!" } else { "" }))
                    .collect();
                let empty = if state.allow_empty { " allowEmpty" } else { "" };
                format!(
                    "{}{}{empty}",
                    apps.join(" "),
                    if removed.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", removed.join(" "))
                    }
                )
            }
        };
        assert_eq!(got, expected);
        let problems: Vec<(&str, bool)> = plan
            .problems
            .iter()
            .map(|p| (p.app.as_str(), p.kept))
            .collect();
        assert_eq!(problems, expected_problems, "{:?}", plan.problems);
    }

    fn first(apps: Vec<DesiredApp>) -> ClusterState {
        published(&plan_cluster(&input(apps), None, now(), DAY)).clone()
    }

    #[test]
    fn first_state_has_every_rendered_app_and_its_blob() {
        let plan = plan_cluster(
            &input(vec![rendered("web", &["a"]), rendered("db", &["b"])]),
            None,
            now(),
            DAY,
        );
        check(&plan, "db@c1 web@c1", &[]);
        let Decision::Publish {
            state,
            blobs,
            deployed,
            resigned,
        } = &plan.decision
        else {
            panic!("publishes");
        };
        assert!(!resigned);
        assert_eq!(deployed.len(), 2);
        assert_eq!(blobs.len(), 2);
        for app in &state.apps {
            let blob = blobs
                .iter()
                .find(|b| b.digest == app.blob.digest)
                .expect("blob");
            assert_eq!(BlobRef::of(&blob.bytes), app.blob);
        }
        assert_eq!(state.check_structure(), Ok(()));
        assert_eq!(state.expires_at, now() + DAY);
    }

    #[test]
    fn a_removed_app_becomes_a_tombstone_that_stays_until_it_returns() {
        let mut keep = rendered("keep", &["k"]);
        keep.sync_policy.prune = false;
        let before = first(vec![
            rendered("web", &["a"]),
            keep.clone(),
            rendered("db", &["b"]),
        ]);
        let later = now() + SignedDuration::from_mins(1);
        let plan = plan_cluster(
            &input(vec![rendered("web", &["a"])]),
            Some(&before),
            later,
            DAY,
        );
        check(&plan, "web@c1 -db! -keep", &[]);
        // The next change still carries the tombstones.
        let second = published(&plan).clone();
        let plan = plan_cluster(
            &input(vec![rendered("web", &["a2"])]),
            Some(&second),
            later,
            DAY,
        );
        check(&plan, "web@c1 -db! -keep", &[]);
        // An app that comes back is no longer removed.
        let third = published(&plan).clone();
        let plan = plan_cluster(
            &input(vec![rendered("web", &["a2"]), rendered("db", &["b"])]),
            Some(&third),
            later,
            DAY,
        );
        check(&plan, "db@c1 web@c1 -keep", &[]);
    }

    #[test]
    fn a_failed_render_keeps_the_last_good_content_and_reports_it() {
        let before = first(vec![rendered("web", &["a"]), rendered("db", &["b"])]);
        let mut newer = rendered("web", &["a", "new"]);
        newer.source.revision = "c2".to_owned();
        let plan = plan_cluster(
            &input(vec![
                newer,
                failed("db", "render application db: kustomize failed"),
                failed("new", "boom"),
            ]),
            Some(&before),
            now() + SignedDuration::from_mins(1),
            DAY,
        );
        check(&plan, "db@c1 web@c2", &[("db", true), ("new", false)]);
        let state = published(&plan);
        assert_eq!(state.app("db"), before.app("db"), "db is exactly as before");
        assert_eq!(
            plan.problems[0].message,
            "render application db: kustomize failed"
        );
    }

    #[test]
    fn a_failing_generator_never_empties_a_cluster() {
        let before = first(vec![
            rendered("set-east", &["a"]),
            rendered("other", &["b"]),
        ]);
        let mut cluster = input(vec![]);
        cluster.generator_failures.push(GeneratorFailure {
            app_set: "set".to_owned(),
            error: "git directory generator: repository unreachable".to_owned(),
            previous_apps: vec!["set-east".to_owned(), "set-west".to_owned()],
        });
        let plan = plan_cluster(
            &cluster,
            Some(&before),
            now() + SignedDuration::from_mins(1),
            DAY,
        );
        // `other` really left the configuration; `set-east` is kept.
        check(&plan, "set-east@c1 -other!", &[("set-east", true)]);
        assert!(!published(&plan).allow_empty);
        assert!(plan.problems[0].message.contains("repository unreachable"));
    }

    #[test]
    fn allow_empty_only_when_the_configuration_has_no_app() {
        let before = first(vec![rendered("web", &["a"])]);
        let later = now() + SignedDuration::from_mins(1);
        check(
            &plan_cluster(&input(vec![]), Some(&before), later, DAY),
            " -web! allowEmpty",
            &[],
        );
        check(
            &plan_cluster(&input(vec![]), None, later, DAY),
            " allowEmpty",
            &[],
        );
        // Every app failed and none has content: nothing is published.
        check(
            &plan_cluster(&input(vec![failed("web", "boom")]), None, later, DAY),
            "nothing",
            &[("web", false)],
        );
        // A manual-sync app without deployed content is not "no apps".
        let mut held = rendered("web", &["a"]);
        held.content = Content::Hold;
        check(
            &plan_cluster(&input(vec![held]), None, later, DAY),
            "nothing",
            &[],
        );
    }

    #[test]
    fn a_new_commit_with_the_same_render_keeps_the_deployed_revision() {
        let before = first(vec![rendered("web", &["a"]), rendered("db", &["b"])]);
        let mut web = rendered("web", &["a"]);
        web.source.revision = "c2".to_owned();
        let mut db = rendered("db", &["b2"]);
        db.source.revision = "c2".to_owned();
        let later = now() + SignedDuration::from_mins(1);
        let mut same_db = rendered("db", &["b"]);
        same_db.source.revision = "c2".to_owned();
        let plan = plan_cluster(
            &input(vec![web.clone(), same_db]),
            Some(&before),
            later,
            DAY,
        );
        assert_eq!(plan.decision, Decision::Unchanged, "nothing to republish");
        let plan = plan_cluster(&input(vec![web, db]), Some(&before), later, DAY);
        check(&plan, "db@c2 web@c1", &[]);
    }

    #[test]
    fn held_apps_keep_what_is_deployed() {
        let before = first(vec![rendered("web", &["a"])]);
        let mut held = rendered("web", &["changed"]);
        held.source.revision = "c2".to_owned();
        held.content = Content::Hold;
        check(
            &plan_cluster(&input(vec![held]), Some(&before), now(), DAY),
            "unchanged",
            &[],
        );
    }

    #[test]
    fn generations_rise_even_when_the_clock_is_behind() {
        let check = |last: Option<u64>, now_ms: i64, expected: u64| {
            let now = Timestamp::from_millisecond(now_ms).expect("valid");
            assert_eq!(next_generation(last, now), expected, "{last:?} {now_ms}");
        };
        check(None, 1_000, 1_000);
        check(Some(5), 1_000, 1_000);
        check(Some(999), 1_000, 1_000);
        check(Some(1_000), 1_000, 1_001);
        // A clock far behind (or a restored backup far ahead): last + 1.
        check(Some(5_000), 1_000, 5_001);

        let before = first(vec![rendered("web", &["a"])]);
        let earlier = now() - SignedDuration::from_hours(3);
        let plan = plan_cluster(
            &input(vec![rendered("web", &["b"])]),
            Some(&before),
            earlier,
            DAY,
        );
        let state = published(&plan);
        assert_eq!(state.generation, before.generation + 1);
        assert_eq!(state.issued_at, earlier);
    }

    #[test]
    fn unchanged_content_is_resigned_at_half_the_lifetime() {
        let before = first(vec![rendered("web", &["a"])]);
        let apps = || input(vec![rendered("web", &["a"])]);
        let at = |hours: i64, mins: i64| {
            now() + SignedDuration::from_hours(hours) + SignedDuration::from_mins(mins)
        };
        check(
            &plan_cluster(&apps(), Some(&before), at(0, 1), DAY),
            "unchanged",
            &[],
        );
        check(
            &plan_cluster(&apps(), Some(&before), at(11, 59), DAY),
            "unchanged",
            &[],
        );
        let plan = plan_cluster(&apps(), Some(&before), at(12, 0), DAY);
        let Decision::Publish {
            state,
            blobs,
            deployed,
            resigned,
        } = &plan.decision
        else {
            panic!("re-signed");
        };
        assert!(resigned);
        assert!(blobs.is_empty() && deployed.is_empty());
        assert_eq!(state.apps, before.apps);
        assert!(state.generation > before.generation);
        assert_eq!(state.expires_at, at(36, 0));
        // A shorter lifetime re-signs sooner.
        assert!(resign_due(now(), at(1, 0), SignedDuration::from_hours(2)));
    }

    #[test]
    fn pins_carry_the_old_entry_and_missing_pins_keep_the_last_good() {
        let before = first(vec![rendered("web", &["a"]), rendered("db", &["b"])]);
        let old_web = before.app("web").expect("web").clone();
        let mut web2 = rendered("web", &["a2"]);
        web2.source.revision = "c2".to_owned();
        let mut db2 = rendered("db", &["b2"]);
        db2.source.revision = "c2".to_owned();
        let second = published(&plan_cluster(
            &input(vec![web2.clone(), db2.clone()]),
            Some(&before),
            now(),
            DAY,
        ))
        .clone();

        let mut pinned = input(vec![web2, db2]);
        pinned.pins.insert(
            "web".to_owned(),
            PinnedEntry::Found(Box::new(old_web.clone())),
        );
        pinned.pins.insert(
            "db".to_owned(),
            PinnedEntry::Missing {
                revision: "c0".to_owned(),
            },
        );
        let plan = plan_cluster(&pinned, Some(&second), now(), DAY);
        check(&plan, "db@c2 web@c1", &[("db", true)]);
        let state = published(&plan);
        assert_eq!(state.app("web").expect("web").blob, old_web.blob);
        let Decision::Publish {
            blobs, deployed, ..
        } = &plan.decision
        else {
            unreachable!()
        };
        assert!(blobs.is_empty(), "the old blob is already stored");
        assert_eq!(
            deployed.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["web"]
        );
    }

    #[test]
    fn identical_renders_across_100_clusters_are_one_blob() {
        let objects: Rendered = Arc::from(vec![config_map("shop", "a"), config_map("shop", "b")]);
        let mut digests = BTreeSet::new();
        let mut all_blobs = BTreeMap::new();
        for i in 0..100 {
            let mut app = rendered("shop", &[]);
            app.content = Content::Rendered(objects.clone());
            let cluster = ClusterInput {
                apps: vec![app],
                ..ClusterInput::new(&format!("c{i}"))
            };
            let plan = plan_cluster(&cluster, None, now(), DAY);
            let Decision::Publish { state, blobs, .. } = plan.decision else {
                panic!("publishes")
            };
            digests.insert(state.apps[0].blob.digest);
            for blob in blobs {
                all_blobs.insert(blob.digest, blob.bytes);
            }
        }
        assert_eq!(digests.len(), 1);
        assert_eq!(all_blobs.len(), 1);
    }

    #[test]
    fn an_invalid_render_is_a_failure() {
        let mut bad = rendered("web", &[]);
        bad.content = Content::Rendered(Arc::from(vec![serde_json::json!({"kind": "X"})]));
        let plan = plan_cluster(&input(vec![bad, rendered("db", &["b"])]), None, now(), DAY);
        check(&plan, "db@c1", &[("web", false)]);
        assert!(
            plan.problems[0]
                .message
                .starts_with("app web: render is not a valid blob")
        );
    }
}
