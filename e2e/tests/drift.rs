//! Drift against a real apiserver: a watch on the applied objects reports an out-of-band
//! change and who made it; with selfHeal it is reverted without any new state, without it
//! the object is left OutOfSync until the next state; and fields another controller owns
//! (an HPA scaling podinfo's Deployment, whose manifest has no `replicas`) are not drift.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use flotilla_agent::changeset::Action;
use flotilla_agent::drift::{DriftError, DriftEvent, DriftState, DriftWatch};
use flotilla_agent::oneshot::Applied;
use flotilla_e2e::{eventually, heavy_test, test_namespace};
use flotilla_shared::state::SyncPolicy;
use flotilla_shared::testing::{TestApp, config_map};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot as signal};
use tokio::task::JoinHandle;

use crate::fixtures::Agent;

/// How long a drift may take to be reported.
const REPORTED_WITHIN: Duration = Duration::from_secs(30);
/// How long the watch must stay quiet for "no drift" to count.
const QUIET_FOR: Duration = Duration::from_secs(5);

/// Applies one app as a new state; every object must apply.
async fn apply(agent: &Agent, app: TestApp) -> anyhow::Result<Applied> {
    let applied = agent.apply(agent.state().with_app(app)).await?;
    anyhow::ensure!(
        applied.report.changes.succeeded(),
        "{}",
        applied.report.changes
    );
    Ok(applied)
}

fn app(name: &str, namespace: &str, objects: Vec<Value>, self_heal: bool) -> TestApp {
    TestApp::new(name)
        .namespace(namespace)
        .objects(objects)
        .sync_policy(SyncPolicy {
            prune: true,
            self_heal,
            ..SyncPolicy::default()
        })
}

/// A drift watch running in the background for one applied state.
struct Watching {
    events: mpsc::Receiver<DriftEvent>,
    stop: signal::Sender<()>,
    task: JoinHandle<Result<(), DriftError>>,
}

impl Watching {
    async fn start(agent: &Agent, applied: &Applied) -> anyhow::Result<Watching> {
        let watch = DriftWatch::new(agent.client.clone(), &applied.bundle, &applied.report).await?;
        let (events, receiver) = mpsc::channel(16);
        let (stop, stopped) = signal::channel();
        let task = tokio::spawn(watch.run(events, async {
            let _ = stopped.await;
        }));
        Ok(Watching {
            events: receiver,
            stop,
            task,
        })
    }

    /// The next drift event, within [`REPORTED_WITHIN`].
    async fn next(&mut self) -> anyhow::Result<DriftEvent> {
        tokio::time::timeout(REPORTED_WITHIN, self.events.recv())
            .await
            .with_context(|| format!("no drift reported within {REPORTED_WITHIN:?}"))?
            .context("the drift watch ended")
    }

    /// Fails if any drift is reported within [`QUIET_FOR`].
    async fn quiet(&mut self) -> anyhow::Result<()> {
        match tokio::time::timeout(QUIET_FOR, self.events.recv()).await {
            Err(_) => Ok(()),
            Ok(Some(event)) => anyhow::bail!("unexpected drift: {event}"),
            Ok(None) => anyhow::bail!("the drift watch ended"),
        }
    }

    /// Stops the watch and checks that it ended cleanly.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("the drift watch did not stop")???;
        Ok(())
    }
}

/// Edits an object as `kubectl edit` would: a write by another field manager.
fn by(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.to_owned()),
        ..PatchParams::default()
    }
}

async fn value_of(api: &Api<ConfigMap>, name: &str) -> anyhow::Result<String> {
    let map = api.get(name).await?;
    Ok(map.data.unwrap_or_default()["key"].clone())
}

#[tokio::test]
async fn with_self_heal_an_edit_is_reported_and_reverted_without_a_new_state() -> anyhow::Result<()>
{
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "heal").await?;
    let applied = apply(
        &agent,
        app("heal", &ns, vec![config_map(&ns, "settings")], true),
    )
    .await?;
    let mut watching = Watching::start(&agent, &applied).await?;
    let api: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &ns);

    api.patch(
        "settings",
        &by("kubectl-edit"),
        &Patch::Merge(json!({"data": {"key": "edited by hand"}})),
    )
    .await?;
    let event = watching.next().await?;
    assert_eq!(event.app, "heal");
    assert_eq!(event.object.to_string(), format!("ConfigMap {ns}/settings"));
    assert_eq!(event.state, DriftState::OutOfSync, "{event}");
    assert_eq!(event.changed, ["/data/key"], "{event}");
    assert_eq!(event.managers, ["kubectl-edit"], "{event}");
    assert!(event.healed, "{event}");
    assert_eq!(
        event.to_string(),
        format!(
            "drift: app heal ConfigMap {ns}/settings changed /data/key by kubectl-edit; reverted"
        )
    );
    // Reverted with no new state, and the revert itself is no drift (no loop).
    assert_eq!(value_of(&api, "settings").await?, "settings");
    watching.quiet().await?;

    // A deleted object is recreated.
    api.delete("settings", &DeleteParams::default()).await?;
    let event = watching.next().await?;
    assert_eq!(event.state, DriftState::Missing, "{event}");
    assert!(event.healed, "{event}");
    assert_eq!(value_of(&api, "settings").await?, "settings");
    watching.quiet().await?;
    watching.stop().await
}

#[tokio::test]
async fn without_self_heal_an_edit_is_reported_and_left_until_the_next_state() -> anyhow::Result<()>
{
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "noheal").await?;
    let objects = vec![config_map(&ns, "settings")];
    let applied = apply(&agent, app("noheal", &ns, objects.clone(), false)).await?;
    let mut watching = Watching::start(&agent, &applied).await?;
    let api: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &ns);

    api.patch(
        "settings",
        &by("kubectl-edit"),
        &Patch::Merge(json!({"data": {"key": "edited by hand"}})),
    )
    .await?;
    let event = watching.next().await?;
    assert_eq!(event.state, DriftState::OutOfSync, "{event}");
    assert_eq!(event.changed, ["/data/key"], "{event}");
    assert_eq!(event.managers, ["kubectl-edit"], "{event}");
    assert!(!event.healed, "{event}");
    assert!(
        event.to_string().ends_with("left OutOfSync (selfHeal off)"),
        "{event}"
    );
    // Reported once, and left alone.
    watching.quiet().await?;
    assert_eq!(value_of(&api, "settings").await?, "edited by hand");

    // The next state, with the same content, restores it; the restore is no drift.
    let again = apply(&agent, app("noheal", &ns, objects, false)).await?;
    let actions: Vec<Action> = again
        .report
        .changes
        .entries
        .iter()
        .map(|c| c.action)
        .collect();
    assert_eq!(actions, [Action::Configured], "{}", again.report.changes);
    assert_eq!(value_of(&api, "settings").await?, "settings");
    watching.quiet().await?;
    watching.stop().await
}

/// The objects of podinfo's Kustomize base (`deployment.yaml` has no `replicas`).
fn podinfo() -> anyhow::Result<Vec<Value>> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/real-world/podinfo/kustomize");
    ["deployment.yaml", "hpa.yaml", "service.yaml"]
        .iter()
        .map(|file| {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            serde_saphyr::from_str::<Value>(&text)
                .with_context(|| format!("parse {}", path.display()))
        })
        .collect()
}

async fn replicas(api: &Api<Deployment>) -> anyhow::Result<Option<i32>> {
    Ok(api.get("podinfo").await?.spec.and_then(|s| s.replicas))
}

#[tokio::test]
async fn an_hpa_scaling_podinfo_is_not_drift() -> anyhow::Result<()> {
    let _permit = heavy_test().await;
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "podinfo").await?;
    let objects = podinfo()?;
    assert!(
        objects[0]["kind"] == "Deployment" && objects[0]["spec"].get("replicas").is_none(),
        "podinfo's Deployment sets no replicas"
    );
    let applied = apply(&agent, app("podinfo", &ns, objects, true)).await?;
    let mut watching = Watching::start(&agent, &applied).await?;
    let api: Api<Deployment> = Api::namespaced(agent.client.clone(), &ns);

    // The cluster's own HPA controller raises the Deployment to minReplicas (2); with no
    // metrics on KWOK nodes it goes no further, so the HPA's scale-up to 3 is simulated:
    // a write to the scale subresource under the HPA's name.
    eventually(
        "the HPA to enforce minReplicas",
        Duration::from_secs(90),
        || async { Ok((replicas(&api).await? >= Some(2)).then_some(())) },
    )
    .await?;
    api.patch_scale(
        "podinfo",
        &by("horizontal-pod-autoscaler"),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await?;
    watching.quiet().await?;
    assert_eq!(replicas(&api).await?, Some(3), "the agent fought the HPA");

    // The watch is live: an edit of a field the manifest sets is drift and is reverted,
    // and the revert leaves the HPA's replicas alone.
    api.patch(
        "podinfo",
        &by("kubectl-edit"),
        &Patch::Merge(json!({"spec": {"minReadySeconds": 10}})),
    )
    .await?;
    let event = watching.next().await?;
    assert_eq!(event.object.to_string(), format!("Deployment {ns}/podinfo"));
    assert_eq!(event.changed, ["/spec/minReadySeconds"], "{event}");
    assert_eq!(event.managers, ["kubectl-edit"], "{event}");
    assert!(event.healed, "{event}");
    let live = api
        .get("podinfo")
        .await?
        .spec
        .context("a Deployment spec")?;
    assert_eq!(live.min_ready_seconds, Some(3));
    assert_eq!(
        live.replicas,
        Some(3),
        "the revert changed the HPA's replicas"
    );
    watching.quiet().await?;
    watching.stop().await
}
