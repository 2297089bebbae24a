//! Object health by the kstatus rules (sigs.k8s.io/cli-utils `kstatus`, as fluxcd uses it):
//! `health(&live_object)` says Current / InProgress / Failed / Terminating, `roll_up` turns
//! the states of an app's objects into the app health of DESIGN.md "Status", and
//! `is_suspended` spots workloads paused on purpose.
//!
//! It owns only pure functions over an object's JSON as the apiserver returns it. It must not
//! fetch, watch or wait (callers do, and report a missing object as `NotFound`), and it never
//! reads a clock: rules that kstatus bases on elapsed time are decided without one (see
//! `pod`).
//!
//! Where these rules deliberately differ from kstatus:
//! - a LoadBalancer Service is Current only once `status.loadBalancer.ingress` is set (Argo
//!   CD's rule, which users moving from Argo CD expect; kstatus only wants a clusterIP);
//! - a Pod that cannot be scheduled stays InProgress (kstatus fails it after 15 seconds,
//!   which needs a clock; a cluster autoscaler may still add a node);
//! - a Ready, Stalled or Reconciling condition that carries an `observedGeneration` older
//!   than `metadata.generation` describes an earlier spec and makes the object InProgress;
//! - when both Stalled=True and Reconciling=True are present, Stalled (Failed) wins, whatever
//!   the order of the conditions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The state of one object (kstatus terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Fully reconciled: what the spec asks for is what runs.
    Current,
    /// Still being reconciled; expected to become Current without intervention.
    InProgress,
    /// Reconciliation failed or stalled; needs attention.
    Failed,
    /// Being deleted (`metadata.deletionTimestamp` is set).
    Terminating,
    /// The object does not exist; decided by callers, never by `health`.
    NotFound,
}

/// The state of one object and why, e.g. `Ready: 1/3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: Status,
    pub message: String,
}

impl Health {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn current(message: impl Into<String>) -> Self {
        Self::new(Status::Current, message)
    }

    fn in_progress(message: impl Into<String>) -> Self {
        Self::new(Status::InProgress, message)
    }

    fn failed(message: impl Into<String>) -> Self {
        Self::new(Status::Failed, message)
    }

    /// The health of an object that the apiserver does not have.
    pub fn not_found() -> Self {
        Self::new(Status::NotFound, "object not found")
    }
}

/// The health of an app, rolled up from its objects (DESIGN.md "Status").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppHealth {
    Healthy,
    Progressing,
    Suspended,
    Missing,
    Degraded,
}

/// Rolls object states up into the app's health.
///
/// Precedence, worst first: Degraded (any Failed) > Missing (any NotFound) > Suspended (the
/// app has a suspended workload) > Progressing (any InProgress or Terminating) > Healthy
/// (every object Current, and an app with no objects).
///
/// Suspended outranks Progressing because a paused Deployment's rollout will not finish on
/// its own: "Progressing" would promise something that is not happening. Failures and
/// missing objects still outrank it, since they need attention whether or not something is
/// paused.
pub fn roll_up<'a>(objects: impl IntoIterator<Item = &'a Status>, suspended: bool) -> AppHealth {
    let (mut failed, mut missing, mut progressing) = (false, false, false);
    for status in objects {
        match status {
            Status::Current => {}
            Status::InProgress | Status::Terminating => progressing = true,
            Status::Failed => failed = true,
            Status::NotFound => missing = true,
        }
    }
    if failed {
        AppHealth::Degraded
    } else if missing {
        AppHealth::Missing
    } else if suspended {
        AppHealth::Suspended
    } else if progressing {
        AppHealth::Progressing
    } else {
        AppHealth::Healthy
    }
}

/// Whether a workload is suspended on purpose: a Deployment with `spec.paused`, or any
/// object with `spec.suspend` (CronJob, Job, Flux objects and other CRDs that follow the
/// convention) set to true.
pub fn is_suspended(obj: &Value) -> bool {
    let is_true = |pointer| obj.pointer(pointer).and_then(Value::as_bool) == Some(true);
    let deployment = matches!(group_kind(obj), ("apps" | "extensions", "Deployment"));
    (deployment && is_true("/spec/paused")) || is_true("/spec/suspend")
}

/// The health of a live object.
pub fn health(obj: &Value) -> Health {
    if let Some(health) = generic(obj) {
        return health;
    }
    let by_kind = match group_kind(obj) {
        ("apps" | "extensions", "Deployment") => Some(deployment(obj)),
        ("apps", "StatefulSet") => Some(stateful_set(obj)),
        ("apps" | "extensions", "DaemonSet") => Some(daemon_set(obj)),
        ("apps" | "extensions", "ReplicaSet") => Some(replica_set(obj)),
        ("", "Pod") => Some(pod(obj)),
        ("batch", "Job") => Some(job(obj)),
        // A CronJob is a schedule; its Jobs carry the health.
        ("batch", "CronJob") => Some(Health::current("CronJob is scheduled")),
        ("", "PersistentVolumeClaim") => Some(persistent_volume_claim(obj)),
        ("", "Service") => Some(service(obj)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(crd(obj)),
        ("policy", "PodDisruptionBudget") => Some(pod_disruption_budget(obj)),
        _ => None,
    };
    by_kind
        .or_else(|| ready_condition(obj))
        .unwrap_or_else(|| Health::current("resource is current"))
}

/// Rules for every kind: deletion, an unobserved generation, and the Stalled/Reconciling
/// conditions. `None` when they decide nothing.
fn generic(obj: &Value) -> Option<Health> {
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Some(Health::new(
            Status::Terminating,
            "resource is being deleted",
        ));
    }
    let generation = int(obj, "/metadata/generation");
    if let (Some(generation), Some(observed)) = (generation, int(obj, "/status/observedGeneration"))
        && observed != generation
    {
        return Some(Health::in_progress(format!(
            "{} generation is {generation}, but latest observed generation is {observed}",
            kind(obj)
        )));
    }
    for name in ["Stalled", "Reconciling", "Ready"] {
        if let Some(condition) = condition(obj, name)
            && let (Some(generation), Some(observed)) = (generation, condition.observed_generation)
            && observed < generation
        {
            return Some(Health::in_progress(format!(
                "condition {name} is for generation {observed}, latest is {generation}"
            )));
        }
    }
    if let Some(stalled) = condition(obj, "Stalled").filter(|c| c.status == "True") {
        return Some(Health::failed(stalled.describe("stalled")));
    }
    if let Some(reconciling) = condition(obj, "Reconciling").filter(|c| c.status == "True") {
        return Some(Health::in_progress(reconciling.describe("reconciling")));
    }
    None
}

/// The widely used (if unofficial) Ready condition, for kinds without rules of their own.
/// kstatus treats Ready=False as InProgress: only Stalled makes a custom resource Failed.
fn ready_condition(obj: &Value) -> Option<Health> {
    let ready = condition(obj, "Ready")?;
    Some(match ready.status {
        "True" => Health::current(ready.describe("resource is ready")),
        _ => Health::in_progress(ready.describe("resource is not ready")),
    })
}

fn deployment(obj: &Value) -> Health {
    // Without a deadline (the controller's MaxInt32 sentinel) there is never a Progressing
    // condition to wait for.
    let mut progressing = int(obj, "/spec/progressDeadlineSeconds") == Some(i64::from(i32::MAX));
    let mut available = false;
    for c in conditions(obj) {
        match c.kind {
            "Progressing" if c.reason == "ProgressDeadlineExceeded" => {
                return Health::failed(c.describe("progress deadline exceeded"));
            }
            "Progressing" if c.status == "True" && c.reason == "NewReplicaSetAvailable" => {
                progressing = true;
            }
            "Available" if c.status == "True" => available = true,
            _ => {}
        }
    }
    let spec = int(obj, "/spec/replicas").unwrap_or(1);
    let replicas = int_or_zero(obj, "/status/replicas");
    let updated = int_or_zero(obj, "/status/updatedReplicas");
    let ready = int_or_zero(obj, "/status/readyReplicas");
    let available_replicas = int_or_zero(obj, "/status/availableReplicas");
    if spec > replicas {
        return Health::in_progress(format!("replicas: {replicas}/{spec}"));
    }
    if spec > updated {
        return Health::in_progress(format!("updated: {updated}/{spec}"));
    }
    if replicas > spec {
        return Health::in_progress(format!("pending termination: {}", replicas - spec));
    }
    if updated > available_replicas {
        return Health::in_progress(format!("available: {available_replicas}/{updated}"));
    }
    if spec > ready {
        return Health::in_progress(format!("ready: {ready}/{spec}"));
    }
    if !progressing {
        return Health::in_progress("new ReplicaSet is not available yet");
    }
    if !available {
        return Health::in_progress("Deployment is not Available");
    }
    Health::current(format!("Deployment is available, replicas: {replicas}"))
}

fn stateful_set(obj: &Value) -> Health {
    // With OnDelete the user replaces Pods; there is no rollout to wait for.
    if string(obj, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Health::current("StatefulSet uses the OnDelete update strategy");
    }
    let spec = int(obj, "/spec/replicas").unwrap_or(1);
    let replicas = int_or_zero(obj, "/status/replicas");
    let ready = int_or_zero(obj, "/status/readyReplicas");
    let current = int_or_zero(obj, "/status/currentReplicas");
    let updated = int_or_zero(obj, "/status/updatedReplicas");
    if spec > replicas {
        return Health::in_progress(format!("replicas: {replicas}/{spec}"));
    }
    if spec > ready {
        return Health::in_progress(format!("ready: {ready}/{spec}"));
    }
    if replicas > spec {
        return Health::in_progress(format!("pending termination: {}", replicas - spec));
    }
    // A partitioned rollout is done when every Pod at or above the partition is updated.
    if let Some(partition) = int(obj, "/spec/updateStrategy/rollingUpdate/partition") {
        let want = (spec - partition).max(0);
        if updated < want {
            return Health::in_progress(format!("partitioned rollout, updated: {updated}/{want}"));
        }
        return Health::current(format!("partitioned rollout complete, updated: {updated}"));
    }
    if spec > current {
        return Health::in_progress(format!("current: {current}/{spec}"));
    }
    if string(obj, "/status/currentRevision") != string(obj, "/status/updateRevision") {
        return Health::in_progress("waiting for the update revision to become current");
    }
    Health::current(format!("all replicas are current, replicas: {replicas}"))
}

fn daemon_set(obj: &Value) -> Health {
    let Some(desired) = int(obj, "/status/desiredNumberScheduled") else {
        return Health::in_progress("status.desiredNumberScheduled is not set yet");
    };
    let counts = [
        ("current", "/status/currentNumberScheduled"),
        ("updated", "/status/updatedNumberScheduled"),
        ("available", "/status/numberAvailable"),
        ("ready", "/status/numberReady"),
    ];
    for (what, pointer) in counts {
        let count = int_or_zero(obj, pointer);
        if desired > count {
            return Health::in_progress(format!("{what}: {count}/{desired}"));
        }
    }
    Health::current(format!(
        "all Pods are scheduled and available, desired: {desired}"
    ))
}

fn replica_set(obj: &Value) -> Health {
    if conditions(obj).any(|c| c.kind == "ReplicaFailure" && c.status == "True") {
        return Health::in_progress("replica failure, check the Pods");
    }
    let spec = int(obj, "/spec/replicas").unwrap_or(1);
    let counts = [
        ("labelled", "/status/fullyLabeledReplicas"),
        ("available", "/status/availableReplicas"),
        ("ready", "/status/readyReplicas"),
    ];
    for (what, pointer) in counts {
        let count = int_or_zero(obj, pointer);
        if spec > count {
            return Health::in_progress(format!("{what}: {count}/{spec}"));
        }
    }
    let replicas = int_or_zero(obj, "/status/replicas");
    if replicas > spec {
        return Health::in_progress(format!("pending termination: {}", replicas - spec));
    }
    Health::current(format!("ReplicaSet is available, replicas: {replicas}"))
}

fn pod(obj: &Value) -> Health {
    match string(obj, "/status/phase") {
        Some("Succeeded") => Health::current("Pod has completed successfully"),
        Some("Failed") => Health::failed("Pod has completed, but not successfully"),
        Some("Running") => {
            if condition(obj, "Ready").is_some_and(|c| c.status == "True") {
                return Health::current("Pod is ready");
            }
            let crashing = crash_looping(obj);
            if !crashing.is_empty() {
                return Health::failed(format!(
                    "containers in CrashLoopBackOff: {}",
                    crashing.join(", ")
                ));
            }
            Health::in_progress("Pod is running but not ready")
        }
        Some("Pending") => {
            let crashing = crash_looping(obj);
            if !crashing.is_empty() {
                return Health::failed(format!(
                    "init containers in CrashLoopBackOff: {}",
                    crashing.join(", ")
                ));
            }
            match condition(obj, "PodScheduled") {
                Some(c) if c.status == "False" && c.reason == "Unschedulable" => {
                    Health::in_progress(c.describe("Pod cannot be scheduled"))
                }
                _ => Health::in_progress("Pod is pending"),
            }
        }
        None => Health::in_progress("Pod phase is not known yet"),
        Some(other) => Health::in_progress(format!("Pod phase is {other}")),
    }
}

/// Names of containers (and init containers) waiting in CrashLoopBackOff.
fn crash_looping(obj: &Value) -> Vec<&str> {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|pointer| obj.pointer(pointer).and_then(Value::as_array))
        .flatten()
        .filter(|s| {
            s.pointer("/state/waiting/reason").and_then(Value::as_str) == Some("CrashLoopBackOff")
        })
        .map(|s| s.get("name").and_then(Value::as_str).unwrap_or("?"))
        .collect()
}

fn job(obj: &Value) -> Health {
    let succeeded = int_or_zero(obj, "/status/succeeded");
    let failed = int_or_zero(obj, "/status/failed");
    let active = int_or_zero(obj, "/status/active");
    for c in conditions(obj).filter(|c| c.status == "True") {
        match c.kind {
            "Complete" => return Health::current(format!("Job completed, succeeded: {succeeded}")),
            "Failed" => {
                return Health::failed(c.describe(&format!("Job failed, failed: {failed}")));
            }
            _ => {}
        }
    }
    if string(obj, "/status/startTime").is_none() {
        return Health::in_progress("Job has not started");
    }
    Health::in_progress(format!(
        "Job in progress, succeeded: {succeeded}, active: {active}, failed: {failed}"
    ))
}

fn persistent_volume_claim(obj: &Value) -> Health {
    match string(obj, "/status/phase") {
        Some("Bound") => Health::current("PersistentVolumeClaim is bound"),
        // A claim whose volume is gone will not bind again on its own.
        Some("Lost") => Health::failed("PersistentVolumeClaim lost its volume"),
        phase => Health::in_progress(format!(
            "PersistentVolumeClaim is not bound, phase: {}",
            phase.unwrap_or("unknown")
        )),
    }
}

fn service(obj: &Value) -> Health {
    if string(obj, "/spec/type") != Some("LoadBalancer") {
        return Health::current("Service is ready");
    }
    let ingress = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|ingress| !ingress.is_empty());
    if ingress {
        Health::current("LoadBalancer Service has an ingress")
    } else {
        Health::in_progress("LoadBalancer Service is waiting for an ingress address")
    }
}

fn crd(obj: &Value) -> Health {
    for c in conditions(obj) {
        if c.kind == "NamesAccepted" && c.status == "False" {
            return Health::failed(c.describe("CRD names are not accepted"));
        }
        if c.kind == "Established" {
            if c.status == "True" {
                return Health::current("CRD is established");
            }
            if c.status == "False" && c.reason != "Installing" {
                return Health::failed(c.describe("CRD is not established"));
            }
        }
    }
    Health::in_progress("CRD is being installed")
}

fn pod_disruption_budget(obj: &Value) -> Health {
    let healthy = int_or_zero(obj, "/status/currentHealthy");
    let desired = int_or_zero(obj, "/status/desiredHealthy");
    if healthy < desired {
        return Health::in_progress(format!("budget not met, healthy: {healthy}/{desired}"));
    }
    Health::current(format!("budget is met, healthy: {healthy}/{desired}"))
}

/// One entry of `status.conditions`.
struct Condition<'a> {
    kind: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
    observed_generation: Option<i64>,
}

impl Condition<'_> {
    /// `fallback` followed by the condition's reason and message, when it has them.
    fn describe(&self, fallback: &str) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (true, true) => fallback.to_owned(),
            (false, true) => format!("{fallback}: {}", self.reason),
            (true, false) => format!("{fallback}: {}", self.message),
            (false, false) => format!("{fallback}: {}: {}", self.reason, self.message),
        }
    }
}

fn conditions(obj: &Value) -> impl Iterator<Item = Condition<'_>> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let field = |name| c.get(name).and_then(Value::as_str).unwrap_or("");
            let kind = c.get("type").and_then(Value::as_str)?;
            Some(Condition {
                kind,
                status: field("status"),
                reason: field("reason"),
                message: field("message"),
                observed_generation: c.get("observedGeneration").and_then(Value::as_i64),
            })
        })
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<Condition<'a>> {
    conditions(obj).find(|c| c.kind == kind)
}

fn group_kind(obj: &Value) -> (&str, &str) {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    (group, kind(obj))
}

fn kind(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

fn int_or_zero(obj: &Value, pointer: &str) -> i64 {
    int(obj, pointer).unwrap_or(0)
}

fn string<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Asserts the status of an object, and that its message is not empty.
    fn check(obj: Value, expected: Status) {
        let got = health(&obj);
        assert_eq!(got.status, expected, "{obj}: {}", got.message);
        assert!(!got.message.is_empty(), "{obj}");
    }

    fn deploy(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "namespace": "n", "generation": 2},
               "spec": spec, "status": status})
    }

    fn available_conditions() -> Value {
        json!([
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        ])
    }

    fn rolled_out(replicas: i64) -> Value {
        json!({"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas,
               "readyReplicas": replicas, "availableReplicas": replicas,
               "conditions": available_conditions()})
    }

    #[test]
    fn generic_rules() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        check(cm.clone(), Status::Current);
        let mut deleting = cm;
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        check(deleting, Status::Terminating);
        // Terminating beats every kind rule, even a Failed Pod.
        check(
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                   "status": {"phase": "Failed"}}),
            Status::Terminating,
        );
        let custom = |generation: i64, status: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w", "generation": generation}, "status": status})
        };
        check(
            custom(3, json!({"observedGeneration": 2})),
            Status::InProgress,
        );
        check(custom(3, json!({"observedGeneration": 3})), Status::Current);
        check(custom(3, json!({})), Status::Current);
        let cond = |kind: &str, status: &str| {
            json!({"observedGeneration": 3,
                   "conditions": [{"type": kind, "status": status, "reason": "R"}]})
        };
        check(custom(3, cond("Reconciling", "True")), Status::InProgress);
        check(custom(3, cond("Reconciling", "False")), Status::Current);
        check(custom(3, cond("Stalled", "True")), Status::Failed);
        check(custom(3, cond("Stalled", "False")), Status::Current);
        check(custom(3, cond("Ready", "True")), Status::Current);
        check(custom(3, cond("Ready", "False")), Status::InProgress);
        check(custom(3, cond("Ready", "Unknown")), Status::InProgress);
        check(custom(3, cond("Healthy", "False")), Status::Current);
        // Stalled wins over Reconciling whatever the order.
        check(
            custom(
                3,
                json!({"conditions": [{"type": "Reconciling", "status": "True"},
                                      {"type": "Stalled", "status": "True"}]}),
            ),
            Status::Failed,
        );
        // A condition about an older generation says nothing about the current spec.
        check(
            custom(
                3,
                json!({"conditions": [{"type": "Ready", "status": "True",
                                       "observedGeneration": 2}]}),
            ),
            Status::InProgress,
        );
        check(
            custom(
                3,
                json!({"conditions": [{"type": "Stalled", "status": "True",
                                       "observedGeneration": 2}]}),
            ),
            Status::InProgress,
        );
        check(
            custom(
                3,
                json!({"conditions": [{"type": "Ready", "status": "True",
                                       "observedGeneration": 3}]}),
            ),
            Status::Current,
        );
    }

    #[test]
    fn deployments() {
        check(
            deploy(json!({"replicas": 3}), rolled_out(3)),
            Status::Current,
        );
        // spec.replicas defaults to 1.
        check(deploy(json!({}), rolled_out(1)), Status::Current);
        check(
            deploy(json!({"replicas": 0}), rolled_out(0)),
            Status::Current,
        );
        let mut old = rolled_out(3);
        old["observedGeneration"] = json!(1);
        check(deploy(json!({"replicas": 3}), old), Status::InProgress);
        let partly = |field: &str, value: i64| {
            let mut status = rolled_out(3);
            status[field] = json!(value);
            deploy(json!({"replicas": 3}), status)
        };
        check(partly("replicas", 2), Status::InProgress);
        check(partly("updatedReplicas", 2), Status::InProgress);
        check(partly("readyReplicas", 2), Status::InProgress);
        check(partly("availableReplicas", 2), Status::InProgress);
        // Surplus Pods of the old ReplicaSet are still terminating.
        check(partly("replicas", 4), Status::InProgress);
        let mut unavailable = rolled_out(3);
        unavailable["conditions"][0]["status"] = json!("False");
        check(
            deploy(json!({"replicas": 3}), unavailable),
            Status::InProgress,
        );
        let mut not_progressed = rolled_out(3);
        not_progressed["conditions"][1]["reason"] = json!("ReplicaSetUpdated");
        check(
            deploy(json!({"replicas": 3}), not_progressed),
            Status::InProgress,
        );
        let mut deadline = rolled_out(3);
        deadline["readyReplicas"] = json!(1);
        deadline["conditions"][1] = json!({"type": "Progressing", "status": "False",
                                           "reason": "ProgressDeadlineExceeded",
                                           "message": "ReplicaSet \"d-1\" has timed out"});
        check(deploy(json!({"replicas": 3}), deadline), Status::Failed);
        // No deadline: the controller never sets the Progressing condition.
        let mut no_deadline = rolled_out(2);
        no_deadline["conditions"] = json!([{"type": "Available", "status": "True"}]);
        check(
            deploy(
                json!({"replicas": 2, "progressDeadlineSeconds": 2147483647}),
                no_deadline,
            ),
            Status::Current,
        );
        check(
            deploy(json!({"replicas": 1}), json!({})),
            Status::InProgress,
        );
    }

    #[test]
    fn deployment_message_says_what_is_missing() {
        let mut status = rolled_out(3);
        status["readyReplicas"] = json!(1);
        let got = health(&deploy(json!({"replicas": 3}), status));
        assert_eq!(got.message, "ready: 1/3");
    }

    fn sts(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "s", "generation": 1}, "spec": spec, "status": status})
    }

    #[test]
    fn stateful_sets() {
        let done = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
                          "currentReplicas": 3, "updatedReplicas": 3,
                          "currentRevision": "s-1", "updateRevision": "s-1"});
        check(sts(json!({"replicas": 3}), done.clone()), Status::Current);
        let mut rolling = done.clone();
        rolling["updateRevision"] = json!("s-2");
        check(sts(json!({"replicas": 3}), rolling), Status::InProgress);
        let mut not_ready = done.clone();
        not_ready["readyReplicas"] = json!(2);
        check(sts(json!({"replicas": 3}), not_ready), Status::InProgress);
        let mut not_current = done.clone();
        not_current["currentReplicas"] = json!(2);
        check(sts(json!({"replicas": 3}), not_current), Status::InProgress);
        check(
            sts(
                json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}}),
                json!({"replicas": 3, "updateRevision": "s-2"}),
            ),
            Status::Current,
        );
        // Partition 2 of 3: only the Pod with ordinal 2 is updated, which is complete.
        let mut partitioned = done.clone();
        partitioned["updatedReplicas"] = json!(1);
        partitioned["updateRevision"] = json!("s-2");
        let spec = json!({"replicas": 3,
                          "updateStrategy": {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 2}}});
        check(sts(spec.clone(), partitioned.clone()), Status::Current);
        partitioned["updatedReplicas"] = json!(0);
        check(sts(spec, partitioned), Status::InProgress);
    }

    #[test]
    fn daemon_sets() {
        let ds = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                   "status": status})
        };
        let done = json!({"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                          "updatedNumberScheduled": 2, "numberAvailable": 2, "numberReady": 2});
        check(ds(done.clone()), Status::Current);
        check(ds(json!({})), Status::InProgress);
        for field in [
            "currentNumberScheduled",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberReady",
        ] {
            let mut short = done.clone();
            short[field] = json!(1);
            check(ds(short), Status::InProgress);
        }
        check(ds(json!({"desiredNumberScheduled": 0})), Status::Current);
    }

    #[test]
    fn replica_sets() {
        let rs = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
                   "spec": {"replicas": 2}, "status": status})
        };
        let done = json!({"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                          "availableReplicas": 2});
        check(rs(done.clone()), Status::Current);
        let mut not_ready = done.clone();
        not_ready["readyReplicas"] = json!(1);
        check(rs(not_ready), Status::InProgress);
        let mut failure = done;
        failure["conditions"] = json!([{"type": "ReplicaFailure", "status": "True"}]);
        check(rs(failure), Status::InProgress);
    }

    fn pod_with(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status})
    }

    #[test]
    fn pods() {
        check(pod_with(json!({"phase": "Succeeded"})), Status::Current);
        check(pod_with(json!({"phase": "Failed"})), Status::Failed);
        check(
            pod_with(json!({"phase": "Running",
                            "conditions": [{"type": "Ready", "status": "True"}]})),
            Status::Current,
        );
        check(
            pod_with(json!({"phase": "Running",
                            "conditions": [{"type": "Ready", "status": "False"}]})),
            Status::InProgress,
        );
        check(
            pod_with(json!({"phase": "Running",
                            "conditions": [{"type": "Ready", "status": "False"}],
                            "containerStatuses": [
                                {"name": "sidecar", "state": {"running": {}}},
                                {"name": "app",
                                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
            Status::Failed,
        );
        check(
            pod_with(json!({"phase": "Pending",
                            "initContainerStatuses": [
                                {"name": "init",
                                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
            Status::Failed,
        );
        check(pod_with(json!({"phase": "Pending"})), Status::InProgress);
        check(
            pod_with(json!({"phase": "Pending",
                            "conditions": [{"type": "PodScheduled", "status": "False",
                                            "reason": "Unschedulable"}]})),
            Status::InProgress,
        );
        check(pod_with(json!({})), Status::InProgress);
    }

    #[test]
    fn crash_loop_message_names_the_container() {
        let got = health(&pod_with(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})));
        assert_eq!(got.message, "containers in CrashLoopBackOff: app");
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let job = |status: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "status": status})
        };
        check(
            job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})),
            Status::Current,
        );
        check(
            job(
                json!({"failed": 6, "conditions": [{"type": "Failed", "status": "True",
                                                    "reason": "BackoffLimitExceeded"}]}),
            ),
            Status::Failed,
        );
        check(job(json!({})), Status::InProgress);
        check(
            job(json!({"startTime": "2026-01-01T00:00:00Z", "active": 1})),
            Status::InProgress,
        );
        check(
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "status": {}}),
            Status::Current,
        );
    }

    #[test]
    fn claims_services_and_crds() {
        let pvc = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "c"}, "status": {"phase": phase}})
        };
        check(pvc("Bound"), Status::Current);
        check(pvc("Pending"), Status::InProgress);
        check(pvc("Lost"), Status::Failed);
        let svc = |spec: Value, status: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                   "spec": spec, "status": status})
        };
        check(
            svc(json!({"type": "ClusterIP"}), json!({})),
            Status::Current,
        );
        check(svc(json!({}), json!({})), Status::Current);
        check(svc(json!({"type": "NodePort"}), json!({})), Status::Current);
        check(
            svc(json!({"type": "LoadBalancer"}), json!({"loadBalancer": {}})),
            Status::InProgress,
        );
        check(
            svc(
                json!({"type": "LoadBalancer"}),
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}),
            ),
            Status::Current,
        );
        let crd = |conditions: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"},
                   "status": {"conditions": conditions}})
        };
        check(
            crd(json!([{"type": "NamesAccepted", "status": "True"},
                       {"type": "Established", "status": "True"}])),
            Status::Current,
        );
        check(crd(json!([])), Status::InProgress);
        check(
            crd(json!([{"type": "Established", "status": "False", "reason": "Installing"}])),
            Status::InProgress,
        );
        check(
            crd(json!([{"type": "NamesAccepted", "status": "False",
                        "reason": "MultipleNamesConflict"},
                       {"type": "Established", "status": "False"}])),
            Status::Failed,
        );
        let pdb = |status: Value| {
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "p"}, "status": status})
        };
        check(
            pdb(json!({"currentHealthy": 2, "desiredHealthy": 2})),
            Status::Current,
        );
        check(
            pdb(json!({"currentHealthy": 1, "desiredHealthy": 2})),
            Status::InProgress,
        );
    }

    #[test]
    fn kind_rules_need_the_right_group() {
        // A Knative Service is a custom resource: judged by its Ready condition.
        check(
            json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                   "metadata": {"name": "s"},
                   "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            Status::InProgress,
        );
        // A custom Deployment kind without status is Current, not a stuck rollout.
        check(
            json!({"apiVersion": "example.com/v1", "kind": "Deployment",
                   "metadata": {"name": "d"}}),
            Status::Current,
        );
    }

    #[test]
    fn roll_up_precedence() {
        use Status::*;
        let check = |states: &[Status], suspended: bool, expected: AppHealth| {
            assert_eq!(
                roll_up(states, suspended),
                expected,
                "{states:?} {suspended}"
            );
        };
        check(&[], false, AppHealth::Healthy);
        check(&[Current, Current], false, AppHealth::Healthy);
        check(&[Current, InProgress], false, AppHealth::Progressing);
        check(&[Current, Terminating], false, AppHealth::Progressing);
        check(&[InProgress, NotFound], false, AppHealth::Missing);
        check(&[NotFound, Failed, InProgress], false, AppHealth::Degraded);
        check(&[Current], true, AppHealth::Suspended);
        check(&[InProgress], true, AppHealth::Suspended);
        check(&[NotFound], true, AppHealth::Missing);
        check(&[Failed], true, AppHealth::Degraded);
    }

    #[test]
    fn suspension() {
        let check = |obj: Value, expected: bool| assert_eq!(is_suspended(&obj), expected, "{obj}");
        check(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"paused": true}}),
            true,
        );
        check(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"paused": false}}),
            false,
        );
        check(
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"suspend": true}}),
            true,
        );
        check(
            json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                   "spec": {"suspend": true}}),
            true,
        );
        // `paused` means nothing on other kinds.
        check(
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"paused": true}}),
            false,
        );
        check(json!({"apiVersion": "v1", "kind": "ConfigMap"}), false);
    }
}
