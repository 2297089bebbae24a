//! Real-world input through the agent's engine: Argo CD's `install.yaml` (huge CRDs that
//! client-side apply cannot take, RBAC, NetworkPolicies, Deployments and a StatefulSet) as
//! one app applies cleanly, its workloads become healthy, and a `removed` tombstone — with
//! the prune opt-in on its CRDs — deletes every object of it.
//!
//! Argo CD's CRDs are cluster-wide and global, so this test runs on a private cluster of its
//! own and never collides with another test or run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use flotilla_agent::changeset::Action;
use flotilla_agent::health::{AppHealth, Status};
use flotilla_agent::oneshot;
use flotilla_agent::prune::ALLOW_PRUNE_ANNOTATION;
use flotilla_e2e::{Cluster, eventually, heavy_test, test_namespace};
use flotilla_shared::state::SyncPolicy;
use flotilla_shared::testing::TestApp;
use serde_json::Value;

use crate::fixtures::Agent;

const APP: &str = "argocd";

/// The objects of a multi-document YAML file, empty documents skipped.
fn parse_manifests(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    // The defaults guard against YAML bombs; Argo CD's CRDs are large but honest, so the
    // budget grows with the file (≈1.9 MB, ~60 documents, deep OpenAPI schemas).
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 20_000_000;
    budget.max_nodes = 5_000_000;
    budget.max_depth = 256;
    budget.max_documents = 10_000;
    budget.max_total_scalar_bytes = 256 << 20;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options)
        .with_context(|| format!("parse {}", path.display()))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Marks a CRD as prunable: the opt-in travels with the signed object.
fn allow_prune(mut object: Value) -> Value {
    if object["kind"] == "CustomResourceDefinition" {
        let metadata = &mut object["metadata"];
        if !metadata["annotations"].is_object() {
            metadata["annotations"] = Value::Object(Default::default());
        }
        metadata["annotations"][ALLOW_PRUNE_ANNOTATION] = "true".into();
    }
    object
}

#[tokio::test]
async fn argo_cd_install_applies_becomes_healthy_and_a_tombstone_prunes_it() -> anyhow::Result<()> {
    let _permit = heavy_test().await;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/real-world/argo-cd/install.yaml");
    let objects: Vec<Value> = parse_manifests(&manifest)?
        .into_iter()
        .map(allow_prune)
        .collect();
    assert_eq!(objects.len(), 59, "Argo CD's install.yaml has 59 objects");

    let name = format!("realworld-{}", std::process::id());
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&name)).await??;
    let client = cluster.client().await?;
    let agent_namespace = test_namespace(&client, "agent").await?;
    let namespace = test_namespace(&client, "argocd").await?;
    let agent = Agent::with_client(client, &agent_namespace, 16);
    let app = TestApp::new(APP)
        .namespace(&namespace)
        .objects(objects)
        .sync_policy(SyncPolicy {
            prune: true,
            ..SyncPolicy::default()
        });

    let state = agent.state().with_app(app);
    let applied = agent.apply(state).await?;
    let changes = &applied.report.changes;
    assert_eq!(changes.count(Action::Failed), 0, "{changes}");
    assert_eq!(changes.count(Action::Created), 59, "{changes}");
    assert_eq!(changes.entries.len(), 59, "{changes}");

    let healths =
        oneshot::wait_healthy(&agent.engine, &applied.report, Duration::from_secs(180)).await?;
    let (health, objects) = &healths[APP];
    let unhealthy: Vec<_> = objects
        .iter()
        .filter(|(_, h)| h.status != Status::Current)
        .collect();
    assert_eq!(*health, AppHealth::Healthy, "{unhealthy:#?}");
    for workload in [
        "Deployment",
        "StatefulSet",
        "CustomResourceDefinition",
        "NetworkPolicy",
    ] {
        assert!(
            objects.iter().any(|(o, _)| o.kind == workload),
            "no {workload} among the app's objects"
        );
    }

    // The tombstone removes the whole app, CRDs included (they opted in).
    let tombstone = agent.state().allow_empty(true).removed(APP, true);
    let removed = agent.apply(tombstone).await?;
    let changes = &removed.report.changes;
    assert_eq!(changes.count(Action::Failed), 0, "{changes}");
    assert_eq!(
        changes
            .entries
            .iter()
            .filter(|c| c.app == APP && c.action == Action::Deleted)
            .count(),
        59,
        "{changes}"
    );
    let refs = applied.report.objects.clone();
    let kinds = agent.engine.kinds().await?;
    eventually(
        "every object of Argo CD to be gone",
        Duration::from_secs(120),
        || async {
            let healths = agent.engine.health(&kinds, &refs).await;
            let left: Vec<String> = healths[APP]
                .1
                .iter()
                .filter(|(_, h)| h.status != Status::NotFound)
                .map(|(o, h)| format!("{o}: {:?}", h.status))
                .collect();
            anyhow::ensure!(left.is_empty(), "still there: {left:?}");
            Ok(Some(()))
        },
    )
    .await?;
    assert!(
        agent.engine.store().inventory(APP).await?.is_none(),
        "the removed app's inventory is left behind"
    );
    drop(cluster);
    Ok(())
}
