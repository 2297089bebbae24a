//! Which objects the agent may touch: the app's signed `limits` (from its project) and the
//! agent's local policy (defence in depth: configured in the cluster, so even a validly
//! signed state cannot reach beyond it). By default the agent refuses to change its own
//! namespace, its ServiceAccount and its RBAC.
//!
//! Pure: it decides from an object's identity and scope; it must not talk to the apiserver.

use flotilla_shared::state::Limits;

use crate::object::ObjectRef;

/// The agent's own policy, from its command line or configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPolicy {
    /// Namespaces objects may live in; `None` allows every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Kinds (`group/Kind`, `Kind` for the core group, `*` for all) the agent may touch;
    /// `None` allows every kind.
    pub kinds: Option<Vec<String>>,
    /// The agent's own namespace: off limits unless `allow_self` is set.
    pub agent_namespace: Option<String>,
    /// The name of the agent's ServiceAccount and of its ClusterRole and ClusterRoleBinding.
    pub agent_name: Option<String>,
    /// Lets states change the agent's own namespace and RBAC (for self-management).
    pub allow_self: bool,
}

/// Why an object is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("namespace {namespace} is outside the app's project (allowed: {allowed})")]
    ProjectNamespace { namespace: String, allowed: String },
    #[error("cluster-scoped {kind} is not in the app's project's cluster resource allow list")]
    ProjectClusterResource { kind: String },
    #[error("namespace {namespace} is outside this agent's local policy (allowed: {allowed})")]
    LocalNamespace { namespace: String, allowed: String },
    #[error("kind {kind} is outside this agent's local policy")]
    LocalKind { kind: String },
    #[error("the agent does not change its own {what}")]
    AgentItself { what: &'static str },
}

fn group_kind(object: &ObjectRef) -> String {
    if object.group.is_empty() {
        object.kind.clone()
    } else {
        format!("{}/{}", object.group, object.kind)
    }
}

/// Checks one object whose namespace is final (`None` exactly for cluster-scoped kinds).
pub fn check(
    object: &ObjectRef,
    limits: Option<&Limits>,
    local: &LocalPolicy,
) -> Result<(), Refusal> {
    check_self(object, local)?;
    if let Some(kinds) = &local.kinds {
        let gk = group_kind(object);
        if !kinds.iter().any(|k| k == "*" || *k == gk) {
            return Err(Refusal::LocalKind { kind: gk });
        }
    }
    // A Namespace object is governed by the namespace lists as the namespace it creates.
    let namespace = match (&object.namespace, object.is("", "Namespace")) {
        (Some(ns), _) => Some(ns.as_str()),
        (None, true) => Some(object.name.as_str()),
        (None, false) => None,
    };
    if let (Some(ns), Some(allowed)) = (namespace, &local.namespaces)
        && !allowed.iter().any(|a| a == ns)
    {
        return Err(Refusal::LocalNamespace {
            namespace: ns.to_owned(),
            allowed: allowed.join(", "),
        });
    }
    let Some(limits) = limits else {
        return Ok(());
    };
    if let (Some(ns), Some(allowed)) = (object.namespace.as_deref(), &limits.namespaces)
        && !allowed.iter().any(|a| a == "*" || a == ns)
    {
        return Err(Refusal::ProjectNamespace {
            namespace: ns.to_owned(),
            allowed: allowed.join(", "),
        });
    }
    if object.namespace.is_none()
        && let Some(allowed) = &limits.cluster_resources
    {
        let permitted = allowed.iter().any(|gk| {
            (gk.group == "*" || gk.group == object.group)
                && (gk.kind == "*" || gk.kind == object.kind)
        });
        if !permitted {
            return Err(Refusal::ProjectClusterResource {
                kind: group_kind(object),
            });
        }
    }
    Ok(())
}

fn check_self(object: &ObjectRef, local: &LocalPolicy) -> Result<(), Refusal> {
    if local.allow_self {
        return Ok(());
    }
    if let Some(own) = &local.agent_namespace {
        if object.namespace.as_deref() == Some(own) {
            return Err(Refusal::AgentItself { what: "namespace" });
        }
        if object.is("", "Namespace") && &object.name == own {
            return Err(Refusal::AgentItself { what: "namespace" });
        }
    }
    if let Some(name) = &local.agent_name {
        let rbac = object.group == "rbac.authorization.k8s.io"
            && (object.kind == "ClusterRole" || object.kind == "ClusterRoleBinding");
        if rbac && &object.name == name {
            return Err(Refusal::AgentItself { what: "RBAC" });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::state::GroupKind;

    fn obj(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef::new(api_version, kind, namespace, name).expect("valid object")
    }

    fn check_case(
        object: ObjectRef,
        limits: Option<Limits>,
        local: LocalPolicy,
        expected: Result<(), &str>,
    ) {
        let got = check(&object, limits.as_ref(), &local).map_err(|r| r.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "object {object}");
    }

    fn agent() -> LocalPolicy {
        LocalPolicy {
            agent_namespace: Some("flotilla-system".into()),
            agent_name: Some("flotilla-agent".into()),
            ..LocalPolicy::default()
        }
    }

    #[test]
    fn no_limits_allow_everything_but_the_agent_itself() {
        check_case(
            obj("v1", "ConfigMap", Some("shop"), "a"),
            None,
            agent(),
            Ok(()),
        );
        check_case(
            obj("v1", "Secret", Some("flotilla-system"), "identity"),
            None,
            agent(),
            Err("the agent does not change its own namespace"),
        );
        check_case(
            obj("v1", "Namespace", None, "flotilla-system"),
            None,
            agent(),
            Err("the agent does not change its own namespace"),
        );
        check_case(
            obj(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "flotilla-agent",
            ),
            None,
            agent(),
            Err("the agent does not change its own RBAC"),
        );
        check_case(
            obj(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "flotilla-agent",
            ),
            None,
            LocalPolicy {
                allow_self: true,
                ..agent()
            },
            Ok(()),
        );
    }

    #[test]
    fn project_limits() {
        let limits = Limits {
            namespaces: Some(vec!["shop".into()]),
            cluster_resources: Some(vec![GroupKind {
                group: String::new(),
                kind: "Namespace".into(),
            }]),
        };
        check_case(
            obj("v1", "ConfigMap", Some("shop"), "a"),
            Some(limits.clone()),
            agent(),
            Ok(()),
        );
        check_case(
            obj("v1", "ConfigMap", Some("bank"), "a"),
            Some(limits.clone()),
            agent(),
            Err("namespace bank is outside the app's project (allowed: shop)"),
        );
        check_case(
            obj("v1", "Namespace", None, "shop"),
            Some(limits.clone()),
            agent(),
            Ok(()),
        );
        check_case(
            obj(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "admin",
            ),
            Some(limits),
            agent(),
            Err(
                "cluster-scoped rbac.authorization.k8s.io/ClusterRoleBinding is not in the app's project's cluster resource allow list",
            ),
        );
        let open = Limits {
            namespaces: Some(vec!["*".into()]),
            cluster_resources: Some(vec![GroupKind {
                group: "*".into(),
                kind: "*".into(),
            }]),
        };
        check_case(
            obj(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                "x",
            ),
            Some(open),
            agent(),
            Ok(()),
        );
    }

    #[test]
    fn local_policy_namespaces_and_kinds() {
        let local = LocalPolicy {
            namespaces: Some(vec!["team-a".into(), "team-b".into()]),
            kinds: Some(vec![
                "ConfigMap".into(),
                "apps/Deployment".into(),
                "Namespace".into(),
            ]),
            ..agent()
        };
        check_case(
            obj("apps/v1", "Deployment", Some("team-a"), "web"),
            None,
            local.clone(),
            Ok(()),
        );
        check_case(
            obj("v1", "ConfigMap", Some("kube-system"), "x"),
            None,
            local.clone(),
            Err(
                "namespace kube-system is outside this agent's local policy (allowed: team-a, team-b)",
            ),
        );
        check_case(
            obj("v1", "Secret", Some("team-a"), "x"),
            None,
            local.clone(),
            Err("kind Secret is outside this agent's local policy"),
        );
        check_case(
            obj("v1", "Namespace", None, "team-b"),
            None,
            local.clone(),
            Ok(()),
        );
        check_case(
            obj("v1", "Namespace", None, "team-c"),
            None,
            local,
            Err("namespace team-c is outside this agent's local policy (allowed: team-a, team-b)"),
        );
    }
}
