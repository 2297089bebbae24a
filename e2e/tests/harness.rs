//! The harness itself: the clusters it starts behave like real Kubernetes — controllers,
//! scheduler and KWOK nodes make workloads Available, CRDs become Established, and RBAC
//! is enforced.

use std::time::Duration;

use flotilla_e2e::{Cluster, eventually, heavy_test, shared, test_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

#[tokio::test]
async fn nodes_are_ready_kwok_nodes() -> anyhow::Result<()> {
    let client = shared().await.client().await?;
    let nodes: Api<Node> = Api::all(client);
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await?;
    assert!(
        !list.items.is_empty(),
        "the harness cluster has no KWOK node"
    );
    for node in list.items {
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "node {:?} is not Ready", node.metadata.name);
    }
    Ok(())
}

#[tokio::test]
async fn apiserver_reports_the_pinned_version() -> anyhow::Result<()> {
    let client = shared().await.client().await?;
    let version = client.apiserver_version().await?;
    assert!(
        version.git_version.starts_with("v1.") && !version.git_version.contains("master"),
        "apiserver reports {:?}, not a pinned release",
        version.git_version
    );
    assert_eq!(
        format!("v{}.{}", version.major, version.minor),
        pinned_minor()
    );
    Ok(())
}

/// `v1.NN` of the Kubernetes version the harness script pins.
fn pinned_minor() -> String {
    let script = std::fs::read_to_string(flotilla_e2e::script()).expect("read e2e/cluster");
    let line = script
        .lines()
        .find(|l| l.starts_with("K8S_VERSION="))
        .expect("e2e/cluster pins K8S_VERSION");
    let version = line.trim_start_matches("K8S_VERSION=");
    version
        .rsplit_once('.')
        .expect("version has a patch part")
        .0
        .to_owned()
}

#[tokio::test]
async fn deployment_becomes_available() -> anyhow::Result<()> {
    let _permit = heavy_test().await;
    let client = shared().await.client().await?;
    let ns = test_namespace(&client, "harness-deploy").await?;
    let api: Api<Deployment> = Api::namespaced(client, &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    }))?;
    api.create(&PostParams::default(), &deployment).await?;
    let available = eventually("3 available replicas", Duration::from_secs(120), || async {
        let d = api.get("web").await?;
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        Ok((available == 3).then_some(available))
    })
    .await?;
    assert_eq!(available, 3);
    Ok(())
}

#[tokio::test]
async fn crd_becomes_established_and_serves_custom_objects() -> anyhow::Result<()> {
    let client = shared().await.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.harness.flotilla.dev"},
        "spec": {
            "group": "harness.flotilla.dev",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            }]
        }
    }))?;
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        // An earlier run against the same cluster created it; it is the same definition.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    eventually(
        "the CRD to become Established",
        Duration::from_secs(60),
        || async {
            let crd = crds.get("widgets.harness.flotilla.dev").await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        },
    )
    .await?;

    let ns = test_namespace(&client, "harness-crd").await?;
    let gvk = GroupVersionKind::gvk("harness.flotilla.dev", "v1", "Widget");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "harness.flotilla.dev/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))?;
    // Discovery of a new CRD takes a moment to reach every apiserver handler.
    eventually(
        "a Widget to be created",
        Duration::from_secs(30),
        || async {
            match widgets.create(&PostParams::default(), &widget).await {
                Ok(created) => Ok(Some(created)),
                Err(e) => Err(e.into()),
            }
        },
    )
    .await?;
    let read = widgets.get("w1").await?;
    assert_eq!(read.data["spec"]["size"], 3);
    Ok(())
}

#[tokio::test]
async fn rbac_refuses_a_service_account_without_rights() -> anyhow::Result<()> {
    let cluster = shared().await;
    let admin = cluster.client().await?;
    let ns = test_namespace(&admin, "harness-rbac").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "nobody"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    let limited = cluster.service_account_client(&ns, "nobody").await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(limited, &ns);
    match configmaps.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "expected Forbidden, got {e:?}");
            assert!(
                e.message
                    .contains(&format!("system:serviceaccount:{ns}:nobody")),
                "the refusal names the ServiceAccount: {}",
                e.message
            );
        }
        other => panic!("a ServiceAccount without rights listed ConfigMaps: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn three_clusters_run_at_once_and_stop_without_a_trace() -> anyhow::Result<()> {
    let _permit = heavy_test().await;
    let pid = std::process::id();
    let names = [format!("extra-{pid}-1"), format!("extra-{pid}-2")];
    let extra = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Cluster>> {
        names.iter().map(|n| Cluster::start(n)).collect()
    })
    .await??;
    let shared = shared().await;

    // A ConfigMap written to one cluster exists in that cluster only.
    let clients = [
        shared.client().await?,
        extra[0].client().await?,
        extra[1].client().await?,
    ];
    let mut namespaces = Vec::new();
    for client in &clients {
        namespaces.push(test_namespace(client, "harness-isolation").await?);
    }
    let marker: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "marker"}}))?;
    Api::<ConfigMap>::namespaced(clients[1].clone(), &namespaces[1])
        .create(&PostParams::default(), &marker)
        .await?;
    for (i, client) in clients.iter().enumerate() {
        let found = Api::<ConfigMap>::namespaced(client.clone(), &namespaces[1])
            .get_opt("marker")
            .await?
            .is_some();
        assert_eq!(
            found,
            i == 1,
            "cluster {i} sees the marker of cluster 1: {found}"
        );
    }

    let dirs: Vec<_> = extra
        .iter()
        .map(|c| {
            c.kubeconfig()
                .parent()
                .expect("kubeconfig lies in the cluster dir")
                .to_owned()
        })
        .collect();
    drop(extra);
    for dir in dirs {
        assert!(!dir.exists(), "{} is left behind after down", dir.display());
    }
    Ok(())
}
