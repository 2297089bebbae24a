//! The order in which an app's objects are applied, and the reverse order in which they are
//! deleted: stages, sync waves, kinds, names, grouped into batches whose objects may be
//! applied concurrently.
//!
//! The order is, Argo CD style, (stage, wave, tier, kind, identity):
//! 1. stage 1, definitions: CustomResourceDefinitions, Namespaces and ClusterRoles; the
//!    engine waits until the CRDs are Established before the next stage;
//! 2. stage 2, cluster-wide classes (StorageClass, IngressClass, PriorityClass, …, and any
//!    other cluster-scoped kind whose name ends in `Class`);
//! 3. stage 3, everything else, first by `argocd.argoproj.io/sync-wave` (ascending), then
//!    with admission webhooks and policies as a tier of their own at the end of their wave
//!    (a webhook goes live only after everything it would have to admit), then by a stable
//!    kind order (ServiceAccounts and RBAC, configuration, storage, Services, workloads,
//!    then what scales and shields them, then custom resources).
//!
//! Sync waves order stage 3 only: the definitions and classes of stages 1 and 2 must exist
//! before anything else whatever their annotation says. An invalid wave annotation is
//! treated as wave 0, as Argo CD does, and reported as a warning so it does not go unseen.
//!
//! It must not talk to the apiserver or decide whether an object needs applying.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::object::{Desired, ObjectRef};

/// The annotation that orders objects of stage 3 (an integer, may be negative).
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";

/// The apply stages; the engine finishes one (and waits for CRDs) before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CustomResourceDefinitions, Namespaces and ClusterRoles.
    Definitions = 1,
    /// Cluster-wide classes.
    Classes = 2,
    /// Everything else.
    Resources = 3,
}

/// Within a wave of stage 3: ordinary objects, then admission control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Objects,
    /// Mutating/ValidatingWebhookConfigurations and ValidatingAdmissionPolicies (and their
    /// bindings).
    Admission,
}

/// Objects that may be applied concurrently, in a stable order (the order to start them in
/// when concurrency is bounded).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    pub stage: Stage,
    /// The sync wave; always 0 in stages 1 and 2.
    pub wave: i64,
    pub tier: Tier,
    pub objects: Vec<T>,
}

/// Why an object's wave annotation was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {SYNC_WAVE_ANNOTATION} of {object} is {value:?}, not an integer; using wave 0")]
pub struct WaveWarning {
    pub object: ObjectRef,
    pub value: String,
}

/// Why an object was left out of the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The same object appears more than once in the app; no copy is applied, since picking
    /// one would be arbitrary.
    #[error("{object} appears {count} times in the app")]
    Duplicate { object: ObjectRef, count: usize },
}

/// Batches in apply order, plus what the planner has to say about single objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyPlan {
    pub batches: Vec<Batch<Desired>>,
    pub warnings: Vec<WaveWarning>,
    pub rejected: Vec<PlanError>,
}

impl ApplyPlan {
    /// Every planned object in apply order.
    pub fn objects(&self) -> impl Iterator<Item = &Desired> {
        self.batches.iter().flat_map(|b| b.objects.iter())
    }
}

/// The stage of an object. An unknown kind ending in `Class` is taken for a class only when
/// the object names no namespace.
pub fn stage(object: &ObjectRef) -> Stage {
    let (group, kind) = (object.group.as_str(), object.kind.as_str());
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("", "Namespace")
        | ("rbac.authorization.k8s.io", "ClusterRole") => Stage::Definitions,
        ("storage.k8s.io", "StorageClass" | "VolumeAttributesClass")
        | ("networking.k8s.io", "IngressClass")
        | ("scheduling.k8s.io", "PriorityClass")
        | ("node.k8s.io", "RuntimeClass")
        | ("gateway.networking.k8s.io", "GatewayClass")
        | ("snapshot.storage.k8s.io", "VolumeSnapshotClass")
        | ("resource.k8s.io", "DeviceClass") => Stage::Classes,
        _ if kind.ends_with("Class") && object.namespace.is_none() => Stage::Classes,
        _ => Stage::Resources,
    }
}

/// Known kinds of stage 3, in apply order. Kinds not listed come after all of these (custom
/// resources included), and admission control is a tier of its own.
const KIND_ORDER: &[(&str, &str)] = &[
    ("", "ServiceAccount"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ResourceQuota"),
    ("", "LimitRange"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "Service"),
    ("", "Endpoints"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("", "ReplicationController"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("", "Pod"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("policy", "PodDisruptionBudget"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("apiregistration.k8s.io", "APIService"),
];

fn is_admission(object: &ObjectRef) -> bool {
    object.group == "admissionregistration.k8s.io"
        && matches!(
            object.kind.as_str(),
            "MutatingWebhookConfiguration"
                | "ValidatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding"
        )
}

/// The position of a kind in `KIND_ORDER`; unknown kinds share the last position. The old
/// `extensions` group counts as the group that took its kinds over.
fn kind_rank(object: &ObjectRef) -> usize {
    let group = match (object.group.as_str(), object.kind.as_str()) {
        ("extensions", "Deployment" | "DaemonSet" | "ReplicaSet") => "apps",
        ("extensions", "Ingress" | "NetworkPolicy") => "networking.k8s.io",
        (group, _) => group,
    };
    KIND_ORDER
        .iter()
        .position(|&(g, k)| g == group && k == object.kind)
        .unwrap_or(KIND_ORDER.len())
}

/// The sort key of an object, with the wave already decided.
fn key(object: &ObjectRef, wave: i64) -> (Stage, i64, Tier, usize, &ObjectRef) {
    let stage = stage(object);
    let (wave, tier) = match stage {
        Stage::Resources if is_admission(object) => (wave, Tier::Admission),
        Stage::Resources => (wave, Tier::Objects),
        Stage::Definitions | Stage::Classes => (0, Tier::Objects),
    };
    (stage, wave, tier, kind_rank(object), object)
}

/// The wave an object's annotation asks for: `Ok(0)` without the annotation, `Err(value)`
/// when it is not an integer. Surrounding whitespace is allowed.
pub fn sync_wave(object: &Value) -> Result<i64, String> {
    let annotation = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SYNC_WAVE_ANNOTATION));
    match annotation {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| s.clone()),
        Some(other) => Err(other.to_string()),
    }
}

/// Orders an app's objects into batches. The result depends only on the set of objects,
/// not on the order they come in. Call it after namespaces are defaulted: an unknown
/// `…Class` kind without a namespace is taken for a cluster-wide class.
pub fn plan_apply(objects: Vec<Desired>) -> ApplyPlan {
    let mut by_ref: BTreeMap<ObjectRef, Vec<Desired>> = BTreeMap::new();
    for desired in objects {
        by_ref
            .entry(desired.object_ref.clone())
            .or_default()
            .push(desired);
    }
    let mut warnings = Vec::new();
    let mut rejected = Vec::new();
    let mut keyed = Vec::with_capacity(by_ref.len());
    for (object_ref, mut copies) in by_ref {
        if copies.len() > 1 {
            rejected.push(PlanError::Duplicate {
                object: object_ref,
                count: copies.len(),
            });
            continue;
        }
        let Some(desired) = copies.pop() else {
            continue;
        };
        let wave = sync_wave(&desired.object).unwrap_or_else(|value| {
            if stage(&object_ref) == Stage::Resources {
                warnings.push(WaveWarning {
                    object: object_ref.clone(),
                    value,
                });
            }
            0
        });
        keyed.push((wave, desired));
    }
    keyed.sort_by(|(wa, a), (wb, b)| key(&a.object_ref, *wa).cmp(&key(&b.object_ref, *wb)));
    let mut batches: Vec<Batch<Desired>> = Vec::new();
    for (wave, desired) in keyed {
        let (stage, wave, tier, _, _) = key(&desired.object_ref, wave);
        match batches.last_mut() {
            Some(b) if (b.stage, b.wave, b.tier) == (stage, wave, tier) => b.objects.push(desired),
            _ => batches.push(Batch {
                stage,
                wave,
                tier,
                objects: vec![desired],
            }),
        }
    }
    ApplyPlan {
        batches,
        warnings,
        rejected,
    }
}

/// Orders objects for deletion: the exact reverse of their apply order, so webhooks go
/// first and Namespaces and CRDs (which take their contents with them) last. Waves are not
/// known for objects that left the app and count as 0. Duplicates are dropped.
pub fn deletion_order(objects: impl IntoIterator<Item = ObjectRef>) -> Vec<ObjectRef> {
    let mut objects: Vec<ObjectRef> = objects.into_iter().collect();
    objects.sort_by(|a, b| key(b, 0).cmp(&key(a, 0)));
    objects.dedup();
    objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Desired {
        object_in_wave(api_version, kind, namespace, name, None)
    }

    fn object_in_wave(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        wave: Option<&str>,
    ) -> Desired {
        let mut metadata = json!({"name": name});
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        if let Some(wave) = wave {
            metadata["annotations"] = json!({SYNC_WAVE_ANNOTATION: wave});
        }
        Desired::from_object(json!({"apiVersion": api_version, "kind": kind,
                                    "metadata": metadata}))
        .expect("test objects are valid")
    }

    /// Plans `objects` and renders the result as one line per batch: `stage/wave/tier:
    /// Kind name, …`.
    fn check(objects: Vec<Desired>, expected: &[&str]) {
        let plan = plan_apply(objects);
        let got: Vec<String> = plan
            .batches
            .iter()
            .map(|b| {
                let names: Vec<String> = b
                    .objects
                    .iter()
                    .map(|d| format!("{} {}", d.object_ref.kind, d.object_ref.name))
                    .collect();
                format!(
                    "{}/{}/{:?}: {}",
                    b.stage as u8,
                    b.wave,
                    b.tier,
                    names.join(", ")
                )
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn stages_come_first() {
        check(
            vec![
                object("apps/v1", "Deployment", Some("web"), "api"),
                object("v1", "Service", Some("web"), "api"),
                object("storage.k8s.io/v1", "StorageClass", None, "fast"),
                object("v1", "Namespace", None, "web"),
                object(
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    None,
                    "widgets.example.com",
                ),
                object(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRole",
                    None,
                    "reader",
                ),
                object("example.com/v1", "Widget", Some("web"), "w"),
                object("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default"),
            ],
            &[
                "1/0/Objects: Namespace web, CustomResourceDefinition widgets.example.com, \
                 ClusterRole reader",
                "2/0/Objects: EC2NodeClass default, StorageClass fast",
                "3/0/Objects: Service api, Deployment api, Widget w",
            ],
        );
    }

    #[test]
    fn kind_order_in_stage_three() {
        check(
            vec![
                object(
                    "admissionregistration.k8s.io/v1",
                    "ValidatingWebhookConfiguration",
                    None,
                    "v",
                ),
                object(
                    "admissionregistration.k8s.io/v1",
                    "MutatingWebhookConfiguration",
                    None,
                    "m",
                ),
                object("networking.k8s.io/v1", "NetworkPolicy", Some("n"), "np"),
                object("networking.k8s.io/v1", "Ingress", Some("n"), "ing"),
                object("policy/v1", "PodDisruptionBudget", Some("n"), "pdb"),
                object(
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                    Some("n"),
                    "hpa",
                ),
                object("v1", "Pod", Some("n"), "pod"),
                object("batch/v1", "CronJob", Some("n"), "cron"),
                object("batch/v1", "Job", Some("n"), "job"),
                object("apps/v1", "DaemonSet", Some("n"), "ds"),
                object("apps/v1", "StatefulSet", Some("n"), "sts"),
                object("apps/v1", "Deployment", Some("n"), "deploy"),
                object("v1", "Service", Some("n"), "svc"),
                object("v1", "PersistentVolumeClaim", Some("n"), "pvc"),
                object("v1", "LimitRange", Some("n"), "lr"),
                object("v1", "ResourceQuota", Some("n"), "rq"),
                object("v1", "Secret", Some("n"), "sec"),
                object("v1", "ConfigMap", Some("n"), "cm"),
                object(
                    "rbac.authorization.k8s.io/v1",
                    "RoleBinding",
                    Some("n"),
                    "rb",
                ),
                object(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRoleBinding",
                    None,
                    "crb",
                ),
                object("rbac.authorization.k8s.io/v1", "Role", Some("n"), "role"),
                object("v1", "ServiceAccount", Some("n"), "sa"),
                object("example.com/v1", "Widget", Some("n"), "w"),
                object("extensions/v1beta1", "Ingress", Some("n"), "old-ing"),
            ],
            &[
                "3/0/Objects: ServiceAccount sa, Role role, ClusterRoleBinding crb, \
                 RoleBinding rb, ConfigMap cm, Secret sec, ResourceQuota rq, LimitRange lr, \
                 PersistentVolumeClaim pvc, Service svc, Deployment deploy, StatefulSet sts, \
                 DaemonSet ds, Job job, CronJob cron, Pod pod, HorizontalPodAutoscaler hpa, \
                 PodDisruptionBudget pdb, Ingress old-ing, Ingress ing, NetworkPolicy np, \
                 Widget w",
                "3/0/Admission: MutatingWebhookConfiguration m, \
                 ValidatingWebhookConfiguration v",
            ],
        );
    }

    #[test]
    fn waves_order_stage_three_before_kinds() {
        check(
            vec![
                object_in_wave("v1", "ConfigMap", Some("n"), "late", Some("5")),
                object_in_wave("apps/v1", "Deployment", Some("n"), "early", Some("-1")),
                object("v1", "Service", Some("n"), "default"),
                object_in_wave("v1", "ConfigMap", Some("n"), "zero", Some(" 0 ")),
                // Waves do not move definitions out of stage 1.
                object_in_wave("v1", "Namespace", None, "n", Some("10")),
                object_in_wave(
                    "admissionregistration.k8s.io/v1",
                    "ValidatingWebhookConfiguration",
                    None,
                    "hook",
                    Some("-1"),
                ),
            ],
            &[
                "1/0/Objects: Namespace n",
                "3/-1/Objects: Deployment early",
                "3/-1/Admission: ValidatingWebhookConfiguration hook",
                "3/0/Objects: ConfigMap zero, Service default",
                "3/5/Objects: ConfigMap late",
            ],
        );
    }

    #[test]
    fn same_kind_orders_by_namespace_then_name() {
        check(
            vec![
                object("v1", "ConfigMap", Some("b"), "a"),
                object("v1", "ConfigMap", Some("a"), "z"),
                object("v1", "ConfigMap", Some("a"), "b"),
            ],
            &["3/0/Objects: ConfigMap b, ConfigMap z, ConfigMap a"],
        );
    }

    #[test]
    fn invalid_wave_is_wave_zero_with_a_warning() {
        let plan = plan_apply(vec![
            object_in_wave("v1", "ConfigMap", Some("n"), "c", Some("soon")),
            object_in_wave("v1", "ConfigMap", Some("n"), "d", Some("1")),
        ]);
        assert_eq!(plan.batches.len(), 2);
        assert_eq!(plan.batches[0].wave, 0);
        let warnings: Vec<String> = plan.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "annotation argocd.argoproj.io/sync-wave of ConfigMap n/c is \"soon\", not an \
              integer; using wave 0"
            ]
        );
    }

    #[test]
    fn sync_wave_values() {
        let check = |annotation: Value, expected: Result<i64, &str>| {
            let obj = json!({"metadata": {"annotations": {SYNC_WAVE_ANNOTATION: annotation}}});
            assert_eq!(sync_wave(&obj), expected.map_err(str::to_owned), "{obj}");
        };
        check(json!("3"), Ok(3));
        check(json!("-2"), Ok(-2));
        check(json!("+4"), Ok(4));
        check(json!(null), Ok(0));
        check(json!("1.5"), Err("1.5"));
        check(json!(""), Err(""));
        check(json!(7), Err("7"));
        assert_eq!(sync_wave(&json!({"metadata": {}})), Ok(0));
    }

    #[test]
    fn duplicates_are_rejected() {
        let plan = plan_apply(vec![
            object("v1", "ConfigMap", Some("n"), "c"),
            object("v1", "ConfigMap", Some("n"), "c"),
            object("v1", "ConfigMap", Some("n"), "d"),
        ]);
        assert_eq!(plan.objects().count(), 1);
        let rejected: Vec<String> = plan.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(rejected, ["ConfigMap n/c appears 2 times in the app"]);
    }

    #[test]
    fn deletion_is_reverse_apply_order() {
        let objects = vec![
            object("v1", "Namespace", None, "n"),
            object("apps/v1", "Deployment", Some("n"), "d"),
            object("v1", "ConfigMap", Some("n"), "c"),
            object(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                None,
                "m",
            ),
            object("storage.k8s.io/v1", "StorageClass", None, "s"),
        ];
        let refs: Vec<ObjectRef> = objects.iter().map(|d| d.object_ref.clone()).collect();
        let applied: Vec<ObjectRef> = plan_apply(objects)
            .objects()
            .map(|d| d.object_ref.clone())
            .collect();
        let mut deleted = deletion_order(refs);
        let names: Vec<&str> = deleted.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            names,
            [
                "MutatingWebhookConfiguration",
                "Deployment",
                "ConfigMap",
                "StorageClass",
                "Namespace"
            ]
        );
        deleted.reverse();
        assert_eq!(deleted, applied);
    }

    fn arb_object() -> impl Strategy<Value = Desired> {
        let kinds = prop::sample::select(vec![
            ("v1", "ConfigMap", true),
            ("v1", "Namespace", false),
            ("apps/v1", "Deployment", true),
            ("v1", "Service", true),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition", false),
            ("storage.k8s.io/v1", "StorageClass", false),
            ("example.com/v1", "Widget", true),
            ("other.io/v1", "Widget", true),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                false,
            ),
        ]);
        let waves = prop::option::of(prop::sample::select(vec!["-1", "0", "2", "x"]));
        (kinds, "[ab]", "[a-c]{1,2}", waves).prop_map(
            |((api_version, kind, namespaced), ns, name, wave)| {
                let ns = namespaced.then_some(ns.as_str());
                object_in_wave(api_version, kind, ns, &name, wave)
            },
        )
    }

    /// Unique objects (by identity) and a permutation of them.
    fn arb_permuted() -> impl Strategy<Value = (Vec<Desired>, Vec<Desired>)> {
        prop::collection::vec(arb_object(), 0..40).prop_flat_map(|objects| {
            let mut seen = std::collections::BTreeSet::new();
            let unique: Vec<Desired> = objects
                .into_iter()
                .filter(|d| seen.insert(d.object_ref.clone()))
                .collect();
            (Just(unique.clone()), Just(unique).prop_shuffle())
        })
    }

    proptest! {
        #[test]
        fn order_ignores_input_permutation((objects, shuffled) in arb_permuted()) {
            let count = objects.len();
            let a = plan_apply(objects);
            let b = plan_apply(shuffled);
            prop_assert_eq!(&a, &b);
            // Nothing lost, and batches strictly ascend by (stage, wave, tier).
            prop_assert_eq!(a.objects().count(), count);
            for pair in a.batches.windows(2) {
                prop_assert!(
                    (pair[0].stage, pair[0].wave, pair[0].tier)
                        < (pair[1].stage, pair[1].wave, pair[1].tier)
                );
            }
        }

        #[test]
        fn deletion_order_ignores_input_permutation((objects, shuffled) in arb_permuted()) {
            let refs = |v: Vec<Desired>| v.into_iter().map(|d| d.object_ref).collect::<Vec<_>>();
            let a = deletion_order(refs(objects));
            let b = deletion_order(refs(shuffled));
            prop_assert_eq!(a, b);
        }
    }
}
