//! Prune decisions under the trust model's rules (DESIGN.md "Prune limits", "Removal is
//! explicit"): which stale objects of an app are deleted, which are held back and why, the
//! inventory that remains, and what becomes of apps that are no longer in the state.
//!
//! The rules, in the order they are applied to each stale object:
//! 1. prune disabled (the app's `prune: false`, or a tombstone with `prune: false`): every
//!    object is held, nothing is looked up;
//! 2. ownership, read from the live object: gone already → nothing to do; no
//!    `flotilla.dev/app` label → held (the agent did not create or adopt it); labelled for
//!    another app → held as a conflict;
//! 3. Namespaces and CRDs only with the app's opt-in, since deleting one deletes everything
//!    in it;
//! 4. the limit, for an ordinary step only: when the objects left after 1–3 are more than
//!    `pruneLimit` percent of the previous inventory (the app as the agent last applied
//!    it), the whole step is refused and every one of them is held, never a part chosen
//!    arbitrarily. Exactly the limit is allowed. There is no minimum of one object, so a
//!    one-object app loses its object only with `pruneLimit: 100` or through a tombstone.
//!
//! A `removed` tombstone with `prune: true` is an explicit, signed instruction to delete the
//! app: it is not subject to the limit (it would otherwise always refuse), but rules 2 and 3
//! still hold, so a tombstone deletes an app's Namespace or CRDs only with the opt-in.
//!
//! It must not delete, read the cluster or persist anything; callers supply ownership as a
//! function and execute the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::inventory::Inventory;
use crate::object::{APP_LABEL, ObjectRef};
use crate::order::deletion_order;

/// The annotation by which a Namespace or CustomResourceDefinition opts in to being pruned
/// (deleting one deletes everything in it or of its kind).
pub const ALLOW_PRUNE_ANNOTATION: &str = "flotilla.dev/allow-prune";

/// How a live object relates to the app whose inventory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Labelled `flotilla.dev/app=<this app>`; `opted_in` when it also carries
    /// `flotilla.dev/allow-prune: "true"` (as applied from a signed blob), the opt-in that
    /// lets a Namespace or CRD be pruned.
    Ours { opted_in: bool },
    /// No ownership label: created by someone else, or the label was removed.
    Unlabelled,
    /// Labelled for another app.
    OtherApp(String),
    /// The object does not exist any more.
    Gone,
}

/// The ownership of `live` (`None` when the apiserver does not have it) for `app`.
pub fn ownership(live: Option<&Value>, app: &str) -> Ownership {
    let Some(live) = live else {
        return Ownership::Gone;
    };
    let label = live
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(APP_LABEL))
        .and_then(Value::as_str);
    let opted_in = live
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(ALLOW_PRUNE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true");
    match label {
        None => Ownership::Unlabelled,
        Some(owner) if owner == app => Ownership::Ours { opted_in },
        Some(owner) => Ownership::OtherApp(owner.to_owned()),
    }
}

/// What an app allows prune to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Whether stale objects are deleted at all.
    pub prune: bool,
    /// At most this percentage of the previous inventory is deleted in one step.
    pub prune_limit_percent: u32,
    /// Whether the app's Namespaces may be deleted.
    pub allow_namespaces: bool,
    /// Whether the app's CustomResourceDefinitions may be deleted.
    pub allow_crds: bool,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        Self {
            prune: false,
            prune_limit_percent: flotilla_shared::state::DEFAULT_PRUNE_LIMIT,
            allow_namespaces: false,
            allow_crds: false,
        }
    }
}

/// Whether prune runs as a step of an app that stays, or removes the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Objects left an app that is still in the state; `previous_total` is the size of the
    /// previous inventory, the denominator of the limit.
    Step { previous_total: usize },
    /// A `removed` tombstone: the limit does not apply.
    Removal,
}

/// Why a stale object is not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldReason {
    PruneDisabled,
    /// The whole step was refused by the limit; `PrunePlan::refused` has the figures.
    LimitExceeded,
    NamespaceNotOptedIn,
    CrdNotOptedIn,
    /// No ownership label: the agent did not create (or adopt) it.
    NotOwned,
    /// Labelled for another app: a conflict.
    OwnedByOtherApp(String),
}

impl HeldReason {
    /// Whether the object stays in the app's inventory, so that a later step can prune it
    /// once the reason is gone. An object that is no longer ours leaves the inventory.
    pub fn stays_in_inventory(&self) -> bool {
        !matches!(self, Self::NotOwned | Self::OwnedByOtherApp(_))
    }
}

impl fmt::Display for HeldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PruneDisabled => f.write_str("not pruned: prune is disabled for the app"),
            Self::LimitExceeded => f.write_str("not pruned: the prune step exceeds pruneLimit"),
            Self::NamespaceNotOptedIn => {
                write!(
                    f,
                    "not pruned: Namespaces are pruned only with the annotation {ALLOW_PRUNE_ANNOTATION}: \"true\""
                )
            }
            Self::CrdNotOptedIn => write!(
                f,
                "not pruned: CustomResourceDefinitions are pruned only with the annotation \
                 {ALLOW_PRUNE_ANNOTATION}: \"true\""
            ),
            Self::NotOwned => write!(f, "not pruned: the object has no {APP_LABEL} label"),
            Self::OwnedByOtherApp(app) => {
                write!(f, "not pruned: conflict, the object belongs to app {app}")
            }
        }
    }
}

/// A prune step refused by the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "prune refused: {count} of {total} objects would be deleted, more than pruneLimit \
     {limit_percent}%"
)]
pub struct LimitRefusal {
    pub count: usize,
    pub total: usize,
    pub limit_percent: u32,
}

/// The outcome of planning a prune step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrunePlan {
    /// Objects to delete, in reverse apply order.
    pub delete: Vec<ObjectRef>,
    /// Objects not deleted, with the reason, sorted by identity.
    pub held: Vec<(ObjectRef, HeldReason)>,
    /// Stale objects that no longer exist: nothing to delete.
    pub gone: Vec<ObjectRef>,
    /// Set when the limit refused the step.
    pub refused: Option<LimitRefusal>,
}

/// Plans the deletion of `stale` objects. `ownership` is asked once per object, and only
/// when prune is enabled.
pub fn plan_prune(
    stale: impl IntoIterator<Item = ObjectRef>,
    ownership: impl Fn(&ObjectRef) -> Ownership,
    policy: &PrunePolicy,
    scope: Scope,
) -> PrunePlan {
    let stale: BTreeSet<ObjectRef> = stale.into_iter().collect();
    let mut plan = PrunePlan::default();
    if !policy.prune {
        plan.held = stale
            .into_iter()
            .map(|r| (r, HeldReason::PruneDisabled))
            .collect();
        return plan;
    }
    let mut candidates = Vec::new();
    for object in stale {
        let held = match ownership(&object) {
            Ownership::Gone => {
                plan.gone.push(object);
                continue;
            }
            Ownership::Unlabelled => Some(HeldReason::NotOwned),
            Ownership::OtherApp(app) => Some(HeldReason::OwnedByOtherApp(app)),
            Ownership::Ours { opted_in }
                if object.is("", "Namespace") && !(policy.allow_namespaces || opted_in) =>
            {
                Some(HeldReason::NamespaceNotOptedIn)
            }
            Ownership::Ours { opted_in }
                if object.is("apiextensions.k8s.io", "CustomResourceDefinition")
                    && !(policy.allow_crds || opted_in) =>
            {
                Some(HeldReason::CrdNotOptedIn)
            }
            Ownership::Ours { .. } => None,
        };
        match held {
            Some(reason) => plan.held.push((object, reason)),
            None => candidates.push(object),
        }
    }
    if let Scope::Step { previous_total } = scope
        && exceeds_limit(candidates.len(), previous_total, policy.prune_limit_percent)
    {
        plan.refused = Some(LimitRefusal {
            count: candidates.len(),
            total: previous_total,
            limit_percent: policy.prune_limit_percent,
        });
        plan.held.extend(
            candidates
                .into_iter()
                .map(|r| (r, HeldReason::LimitExceeded)),
        );
        plan.held.sort_by(|(a, _), (b, _)| a.cmp(b));
        return plan;
    }
    plan.delete = deletion_order(candidates);
    plan
}

/// Whether deleting `count` of `total` objects is more than `limit_percent` percent.
fn exceeds_limit(count: usize, total: usize, limit_percent: u32) -> bool {
    // u128 cannot overflow for any usize count and u32 percentage.
    (count as u128) * 100 > (total as u128) * u128::from(limit_percent)
}

/// The app's inventory after a step: the desired objects, plus the stale ones that stay
/// (held for a reason that may pass, and planned deletions not confirmed in `deleted`).
/// Objects gone already, confirmed deleted, or no longer ours leave it.
pub fn next_inventory(
    app: &str,
    desired: &[ObjectRef],
    plan: &PrunePlan,
    deleted: &BTreeSet<ObjectRef>,
) -> Inventory {
    // Desired entries come first so that their (newer) version is the one kept.
    let held = plan
        .held
        .iter()
        .filter(|(_, reason)| reason.stays_in_inventory())
        .map(|(r, _)| r);
    let undeleted = plan.delete.iter().filter(|r| !deleted.contains(r));
    Inventory::new(app, desired.iter().chain(held).chain(undeleted).cloned())
}

/// What becomes of an app the agent has an inventory for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppFate {
    /// Still in the state.
    Kept,
    /// Missing from the state without a tombstone: left alone and reported.
    Orphaned,
    /// Removed by a tombstone; its objects are deleted when `prune` is true and abandoned
    /// (left in place, inventory dropped) when it is false.
    Removed { prune: bool },
}

/// Classifies the apps that have inventories against a new state's apps and tombstones.
/// Tombstones for apps without an inventory have nothing to do and are not listed.
pub fn classify_apps<'a>(
    with_inventory: impl IntoIterator<Item = &'a str>,
    in_state: impl IntoIterator<Item = &'a str>,
    removed: &[flotilla_shared::state::Tombstone],
) -> BTreeMap<String, AppFate> {
    let in_state: BTreeSet<&str> = in_state.into_iter().collect();
    with_inventory
        .into_iter()
        .map(|app| {
            let fate = if in_state.contains(app) {
                AppFate::Kept
            } else if let Some(tombstone) = removed.iter().find(|t| t.name == app) {
                AppFate::Removed {
                    prune: tombstone.prune,
                }
            } else {
                AppFate::Orphaned
            };
            (app.to_owned(), fate)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::r;
    use flotilla_shared::state::Tombstone;
    use proptest::prelude::*;
    use serde_json::json;

    fn policy() -> PrunePolicy {
        PrunePolicy {
            prune: true,
            ..PrunePolicy::default()
        }
    }

    fn ours(_: &ObjectRef) -> Ownership {
        Ownership::Ours { opted_in: false }
    }

    /// Plans a prune of `stale` and renders it as `delete: …` and `held: name=reason` lines
    /// of object names.
    fn check(
        stale: &[&str],
        ownership: impl Fn(&ObjectRef) -> Ownership,
        policy: PrunePolicy,
        scope: Scope,
        delete: &[&str],
        held: &[(&str, HeldReason)],
    ) -> PrunePlan {
        let plan = plan_prune(stale.iter().map(|s| r(s)), ownership, &policy, scope);
        let names: Vec<&str> = plan.delete.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, delete, "delete");
        let got_held: Vec<(&str, HeldReason)> = plan
            .held
            .iter()
            .map(|(r, reason)| (r.name.as_str(), reason.clone()))
            .collect();
        assert_eq!(got_held, held, "held");
        plan
    }

    const STEP10: Scope = Scope::Step { previous_total: 10 };

    #[test]
    fn deletes_what_is_ours_in_reverse_order() {
        check(
            &[
                "v1 Namespace ns",
                "v1 ConfigMap n/c",
                "apps/v1 Deployment n/d",
            ],
            ours,
            PrunePolicy {
                allow_namespaces: true,
                ..policy()
            },
            STEP10,
            &["d", "c", "ns"],
            &[],
        );
    }

    #[test]
    fn nothing_stale_nothing_to_do() {
        let plan = check(&[], ours, policy(), STEP10, &[], &[]);
        assert_eq!(plan, PrunePlan::default());
    }

    #[test]
    fn prune_disabled_holds_everything_without_looking() {
        let plan = check(
            &["v1 ConfigMap n/a", "v1 ConfigMap n/b"],
            |_| panic!("ownership must not be looked up"),
            PrunePolicy::default(),
            STEP10,
            &[],
            &[
                ("a", HeldReason::PruneDisabled),
                ("b", HeldReason::PruneDisabled),
            ],
        );
        assert_eq!(plan.refused, None);
    }

    #[test]
    fn limit_allows_exactly_the_limit() {
        let stale: Vec<String> = (0..5).map(|i| format!("v1 ConfigMap n/c{i}")).collect();
        let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
        let plan = check(
            &stale,
            ours,
            policy(),
            STEP10,
            &["c4", "c3", "c2", "c1", "c0"],
            &[],
        );
        assert_eq!(plan.refused, None);
    }

    #[test]
    fn limit_refuses_the_whole_step() {
        let stale: Vec<String> = (0..8).map(|i| format!("v1 ConfigMap n/c{i}")).collect();
        let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
        let held: Vec<(&str, HeldReason)> = stale
            .iter()
            .map(|s| (&s[15..], HeldReason::LimitExceeded))
            .collect();
        let plan = check(&stale, ours, policy(), STEP10, &[], &held);
        let refusal = plan.refused.expect("refused");
        assert_eq!(
            refusal.to_string(),
            "prune refused: 8 of 10 objects would be deleted, more than pruneLimit 50%"
        );
    }

    #[test]
    fn limit_counts_only_what_would_be_deleted() {
        // 6 of 10 stale, but 2 are not ours and 1 is gone: 3 deletions are within 50%.
        let stale = [
            "v1 ConfigMap n/a",
            "v1 ConfigMap n/b",
            "v1 ConfigMap n/c",
            "v1 ConfigMap n/foreign",
            "v1 ConfigMap n/other",
            "v1 ConfigMap n/vanished",
        ];
        let plan = check(
            &stale,
            |r| match r.name.as_str() {
                "foreign" => Ownership::Unlabelled,
                "other" => Ownership::OtherApp("billing".into()),
                "vanished" => Ownership::Gone,
                _ => Ownership::Ours { opted_in: false },
            },
            policy(),
            STEP10,
            &["c", "b", "a"],
            &[
                ("foreign", HeldReason::NotOwned),
                ("other", HeldReason::OwnedByOtherApp("billing".into())),
            ],
        );
        assert_eq!(plan.gone, [r("v1 ConfigMap n/vanished")]);
    }

    #[test]
    fn limit_zero_refuses_any_prune() {
        check(
            &["v1 ConfigMap n/a"],
            ours,
            PrunePolicy {
                prune_limit_percent: 0,
                ..policy()
            },
            Scope::Step {
                previous_total: 1000,
            },
            &[],
            &[("a", HeldReason::LimitExceeded)],
        );
    }

    #[test]
    fn limit_hundred_allows_emptying_an_app() {
        check(
            &["v1 ConfigMap n/a"],
            ours,
            PrunePolicy {
                prune_limit_percent: 100,
                ..policy()
            },
            Scope::Step { previous_total: 1 },
            &["a"],
            &[],
        );
    }

    #[test]
    fn one_object_app_needs_the_limit_raised() {
        check(
            &["v1 ConfigMap n/a"],
            ours,
            policy(),
            Scope::Step { previous_total: 1 },
            &[],
            &[("a", HeldReason::LimitExceeded)],
        );
    }

    #[test]
    fn namespaces_and_crds_need_opt_in() {
        let stale = [
            "v1 Namespace shop",
            "apiextensions.k8s.io/v1 CustomResourceDefinition widgets.example.com",
        ];
        let wide = Scope::Step {
            previous_total: 100,
        };
        check(
            &stale,
            ours,
            policy(),
            wide,
            &[],
            &[
                ("shop", HeldReason::NamespaceNotOptedIn),
                ("widgets.example.com", HeldReason::CrdNotOptedIn),
            ],
        );
        check(
            &stale,
            ours,
            PrunePolicy {
                allow_namespaces: true,
                ..policy()
            },
            wide,
            &["shop"],
            &[("widgets.example.com", HeldReason::CrdNotOptedIn)],
        );
        check(
            &stale,
            ours,
            PrunePolicy {
                allow_crds: true,
                ..policy()
            },
            wide,
            &["widgets.example.com"],
            &[("shop", HeldReason::NamespaceNotOptedIn)],
        );
    }

    #[test]
    fn opt_in_does_not_override_ownership() {
        check(
            &["v1 Namespace shop"],
            |_| Ownership::Unlabelled,
            PrunePolicy {
                allow_namespaces: true,
                ..policy()
            },
            STEP10,
            &[],
            &[("shop", HeldReason::NotOwned)],
        );
    }

    #[test]
    fn tombstone_ignores_the_limit_but_not_the_opt_in() {
        let stale = [
            "v1 Namespace shop",
            "v1 ConfigMap shop/a",
            "apps/v1 Deployment shop/d",
        ];
        let plan = check(
            &stale,
            ours,
            policy(),
            Scope::Removal,
            &["d", "a"],
            &[("shop", HeldReason::NamespaceNotOptedIn)],
        );
        assert_eq!(plan.refused, None);
        check(
            &stale,
            ours,
            PrunePolicy {
                allow_namespaces: true,
                ..policy()
            },
            Scope::Removal,
            &["d", "a", "shop"],
            &[],
        );
    }

    #[test]
    fn tombstone_without_prune_abandons() {
        check(
            &["v1 ConfigMap n/a"],
            ours,
            PrunePolicy::default(),
            Scope::Removal,
            &[],
            &[("a", HeldReason::PruneDisabled)],
        );
    }

    #[test]
    fn ownership_from_the_label() {
        let check = |live: Option<Value>, expected: Ownership| {
            assert_eq!(ownership(live.as_ref(), "shop"), expected, "{live:?}");
        };
        check(None, Ownership::Gone);
        check(Some(json!({"metadata": {}})), Ownership::Unlabelled);
        check(
            Some(json!({"metadata": {"labels": {"app": "shop"}}})),
            Ownership::Unlabelled,
        );
        check(
            Some(json!({"metadata": {"labels": {APP_LABEL: "shop"}}})),
            Ownership::Ours { opted_in: false },
        );
        check(
            Some(json!({"metadata": {"labels": {APP_LABEL: "shop"},
                "annotations": {ALLOW_PRUNE_ANNOTATION: "true"}}})),
            Ownership::Ours { opted_in: true },
        );
        check(
            Some(json!({"metadata": {"labels": {APP_LABEL: "billing"}}})),
            Ownership::OtherApp("billing".into()),
        );
    }

    #[test]
    fn inventory_keeps_what_was_not_pruned() {
        let desired = [r("v1 ConfigMap n/keep")];
        let plan = PrunePlan {
            delete: vec![r("v1 ConfigMap n/deleted"), r("v1 ConfigMap n/failed")],
            held: vec![
                (r("v1 Namespace n"), HeldReason::NamespaceNotOptedIn),
                (r("v1 ConfigMap n/limited"), HeldReason::LimitExceeded),
                (r("v1 ConfigMap n/foreign"), HeldReason::NotOwned),
                (
                    r("v1 ConfigMap n/other"),
                    HeldReason::OwnedByOtherApp("b".into()),
                ),
            ],
            gone: vec![r("v1 ConfigMap n/vanished")],
            refused: None,
        };
        let deleted = BTreeSet::from([r("v1 ConfigMap n/deleted")]);
        let next = next_inventory("app", &desired, &plan, &deleted);
        let names: Vec<String> = next.entries.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "ConfigMap n/failed",
                "ConfigMap n/keep",
                "ConfigMap n/limited",
                "Namespace n"
            ]
        );
    }

    #[test]
    fn held_reasons_read_well() {
        assert_eq!(
            HeldReason::OwnedByOtherApp("billing".into()).to_string(),
            "not pruned: conflict, the object belongs to app billing"
        );
        assert_eq!(
            HeldReason::NotOwned.to_string(),
            "not pruned: the object has no flotilla.dev/app label"
        );
    }

    #[test]
    fn apps_are_kept_orphaned_or_removed() {
        let removed = [
            Tombstone {
                name: "old".into(),
                prune: true,
            },
            Tombstone {
                name: "abandoned".into(),
                prune: false,
            },
            Tombstone {
                name: "never-applied".into(),
                prune: true,
            },
        ];
        let got = classify_apps(
            ["shop", "old", "abandoned", "forgotten"],
            ["shop", "new"],
            &removed,
        );
        let expected = BTreeMap::from([
            ("abandoned".to_owned(), AppFate::Removed { prune: false }),
            ("forgotten".to_owned(), AppFate::Orphaned),
            ("old".to_owned(), AppFate::Removed { prune: true }),
            ("shop".to_owned(), AppFate::Kept),
        ]);
        assert_eq!(got, expected);
    }

    fn arb_stale() -> impl Strategy<Value = Vec<(ObjectRef, u8)>> {
        let kinds = prop::sample::select(vec![
            ("v1", "ConfigMap", true),
            ("apps/v1", "Deployment", true),
            ("v1", "Namespace", false),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition", false),
        ]);
        // Each object with an ownership selector 0..4.
        prop::collection::vec(
            (kinds, "[a-f]{1,2}", 0u8..4).prop_map(|((api, kind, namespaced), name, owner)| {
                let ns = namespaced.then_some("n");
                (ObjectRef::new(api, kind, ns, &name).expect("valid"), owner)
            }),
            0..30,
        )
    }

    fn arb_policy() -> impl Strategy<Value = PrunePolicy> {
        (any::<bool>(), 0u32..=100, any::<bool>(), any::<bool>()).prop_map(
            |(prune, prune_limit_percent, allow_namespaces, allow_crds)| PrunePolicy {
                prune,
                prune_limit_percent,
                allow_namespaces,
                allow_crds,
            },
        )
    }

    proptest! {
        #[test]
        fn prune_stays_within_stale_and_the_limit(
            stale in arb_stale(),
            policy in arb_policy(),
            extra in 0usize..40,
            removal in any::<bool>(),
        ) {
            let owners: BTreeMap<ObjectRef, u8> = stale.iter().cloned().collect();
            let ownership = |r: &ObjectRef| match owners.get(r) {
                Some(0) => Ownership::Unlabelled,
                Some(1) => Ownership::OtherApp("x".into()),
                Some(2) => Ownership::Gone,
                _ => Ownership::Ours { opted_in: false },
            };
            let stale_set: BTreeSet<ObjectRef> = owners.keys().cloned().collect();
            let previous_total = stale_set.len() + extra;
            let scope = if removal { Scope::Removal } else { Scope::Step { previous_total } };
            let plan = plan_prune(stale_set.iter().cloned(), ownership, &policy, scope);

            // Every stale object is accounted for exactly once, and nothing else appears.
            let mut seen: Vec<ObjectRef> = plan.delete.clone();
            seen.extend(plan.held.iter().map(|(r, _)| r.clone()));
            seen.extend(plan.gone.iter().cloned());
            seen.sort();
            prop_assert_eq!(seen, stale_set.iter().cloned().collect::<Vec<_>>());

            for r in &plan.delete {
                prop_assert_eq!(ownership(r), Ownership::Ours { opted_in: false });
                prop_assert!(!r.is("", "Namespace") || policy.allow_namespaces);
                prop_assert!(
                    !r.is("apiextensions.k8s.io", "CustomResourceDefinition") || policy.allow_crds
                );
            }
            if !policy.prune {
                prop_assert!(plan.delete.is_empty());
            }
            if !removal {
                prop_assert!(
                    plan.delete.len() * 100 <= previous_total * policy.prune_limit_percent as usize
                );
            }
            let mut reversed = plan.delete.clone();
            reversed.reverse();
            prop_assert_eq!(deletion_order(reversed), plan.delete);
        }
    }
}
