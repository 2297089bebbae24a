//! Least privilege: the engine run as a ServiceAccount that may only touch two namespaces
//! (plus ConfigMaps in its own namespace for its state) applies what it may, and reports
//! every object the apiserver forbids as Failed, naming the object and the refusal.

use std::time::Duration;

use anyhow::Context;
use flotilla_agent::changeset::{Action, Change};
use flotilla_e2e::{eventually, shared, test_namespace};
use flotilla_shared::state::SyncPolicy;
use flotilla_shared::testing::{TestApp, config_map};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::fixtures::Agent;

const ACCOUNT: &str = "flotilla-agent";

/// Grants the agent's ServiceAccount every verb on `rules`' resources in `namespace`.
async fn grant(
    admin: &kube::Client,
    namespace: &str,
    agent_namespace: &str,
    rules: Value,
) -> anyhow::Result<()> {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "flotilla-agent"}, "rules": rules}))?;
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .with_context(|| format!("create Role {namespace}/flotilla-agent"))?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "flotilla-agent"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flotilla-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": agent_namespace}]}))?;
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .with_context(|| format!("create RoleBinding {namespace}/flotilla-agent"))?;
    Ok(())
}

/// A client for the agent's ServiceAccount, created here, with a fresh token.
async fn service_account_client(agent_namespace: &str) -> anyhow::Result<kube::Client> {
    let cluster = shared().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client().await?, agent_namespace);
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": ACCOUNT}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    cluster
        .service_account_client(agent_namespace, ACCOUNT)
        .await
}

fn change<'a>(changes: &'a [Change], object: &str) -> anyhow::Result<&'a Change> {
    changes
        .iter()
        .find(|c| c.object == object)
        .with_context(|| format!("no change reported for {object}"))
}

#[tokio::test]
async fn a_service_account_limited_to_two_namespaces_applies_them_and_reports_the_rest()
-> anyhow::Result<()> {
    let admin = shared().await.client().await?;
    let agent_namespace = test_namespace(&admin, "lp-agent").await?;
    let [a, b, c] = [
        test_namespace(&admin, "lp-a").await?,
        test_namespace(&admin, "lp-b").await?,
        test_namespace(&admin, "lp-c").await?,
    ];
    let workloads = json!([
        {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["*"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]);
    grant(&admin, &a, &agent_namespace, workloads.clone()).await?;
    grant(&admin, &b, &agent_namespace, workloads).await?;
    let store_rights = json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]);
    grant(&admin, &agent_namespace, &agent_namespace, store_rights).await?;
    let limited = service_account_client(&agent_namespace).await?;
    // RBAC reaches the authorizer through an informer: wait until the grants are in force.
    for namespace in [&a, &b, &agent_namespace] {
        let api: Api<ConfigMap> = Api::namespaced(limited.clone(), namespace);
        eventually("the Role to take effect", Duration::from_secs(30), || {
            let api = api.clone();
            async move { Ok(api.list(&ListParams::default()).await.map(|_| ()).ok()) }
        })
        .await?;
    }

    let agent = Agent::with_client(limited, &agent_namespace, 8);
    let extra_namespace = format!("{a}-extra");
    let cluster_role = format!("{a}-reader");
    let objects = vec![
        config_map(&a, "one"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": a},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": a},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        config_map(&b, "two"),
        config_map(&c, "three"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": cluster_role},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": extra_namespace}}),
    ];
    let app = TestApp::new("scoped")
        .namespace(&a)
        .objects(objects)
        .sync_policy(SyncPolicy {
            prune: true,
            ..SyncPolicy::default()
        });
    let applied = agent.apply(agent.state().with_app(app)).await?;
    let changes = &applied.report.changes;
    let entries = &changes.entries;

    for allowed in [
        format!("ConfigMap {a}/one"),
        format!("Deployment {a}/web"),
        format!("Service {a}/web"),
        format!("ConfigMap {b}/two"),
    ] {
        let found = change(entries, &allowed)?;
        assert_eq!(found.action, Action::Created, "{changes}");
    }
    for (forbidden, name) in [
        (format!("ConfigMap {c}/three"), "three"),
        (format!("ClusterRole {cluster_role}"), cluster_role.as_str()),
        (
            format!("Namespace {extra_namespace}"),
            extra_namespace.as_str(),
        ),
    ] {
        let found = change(entries, &forbidden)?;
        assert_eq!(found.action, Action::Failed, "{changes}");
        assert!(
            found.message.contains("forbidden") && found.message.contains(name),
            "the refusal of {forbidden} is unclear: {}",
            found.message
        );
    }
    assert_eq!(entries.len(), 7, "{changes}");
    assert!(!changes.succeeded(), "{changes}");

    // What was allowed is really there; what was forbidden is not.
    let config_maps = |namespace: &str| Api::<ConfigMap>::namespaced(admin.clone(), namespace);
    assert!(config_maps(&a).get_opt("one").await?.is_some());
    assert!(config_maps(&b).get_opt("two").await?.is_some());
    assert!(config_maps(&c).get_opt("three").await?.is_none());
    Ok(())
}
