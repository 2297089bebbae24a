//! The agent's apply engine against a real apiserver: staged server-side apply, zero-write
//! re-syncs, prune under the trust model's rules, orphans and tombstones, and refusal of
//! bundles that must not be applied.

use std::time::Duration;

use flotilla_agent::changeset::Action;
use flotilla_agent::health::AppHealth;
use flotilla_agent::oneshot::{self, Applied, OneshotError};

use crate::fixtures::Agent;
use flotilla_e2e::{heavy_test, shared, test_namespace};
use flotilla_shared::state::SyncPolicy;
use flotilla_shared::testing::{Signed, TestApp, config_map};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::Api;
use serde_json::{Value, json};

fn actions(applied: &Applied) -> Vec<(String, Action)> {
    applied
        .report
        .changes
        .entries
        .iter()
        .map(|c| (c.object.clone(), c.action))
        .collect()
}

fn app(name: &str, namespace: &str, objects: Vec<Value>, policy: SyncPolicy) -> TestApp {
    TestApp::new(name)
        .namespace(namespace)
        .objects(objects)
        .sync_policy(policy)
}

fn prune_policy() -> SyncPolicy {
    SyncPolicy {
        prune: true,
        ..SyncPolicy::default()
    }
}

async fn config_maps(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn a_crd_its_objects_a_namespace_a_deployment_and_a_service_apply_and_become_healthy()
-> anyhow::Result<()> {
    let _permit = heavy_test().await;
    let agent = Agent::new().await?;
    let ns = format!("{}-app", agent.namespace);
    let group = format!("{}.e2e.flotilla.dev", agent.namespace);
    let objects = vec![
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("gadgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
            "metadata": {"name": "g1"}, "spec": {"size": 2}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    ];
    let applied = agent
        .apply(
            agent
                .state()
                .with_app(app("demo", &ns, objects, prune_policy())),
        )
        .await?;
    assert!(
        applied.report.changes.succeeded(),
        "{}",
        applied.report.changes
    );
    assert_eq!(
        applied.report.changes.count(Action::Created),
        5,
        "{}",
        applied.report.changes
    );
    // Staged: the CRD and the Namespace come before what needs them.
    let order: Vec<String> = actions(&applied).into_iter().map(|(o, _)| o).collect();
    let position = |prefix: &str| {
        order
            .iter()
            .position(|o| o.starts_with(prefix))
            .expect(prefix)
    };
    assert!(
        position("CustomResourceDefinition") < position("Gadget"),
        "{order:?}"
    );
    assert!(position("Namespace") < position("Deployment"), "{order:?}");

    let healths =
        oneshot::wait_healthy(&agent.engine, &applied.report, Duration::from_secs(90)).await?;
    let (health, objects) = &healths["demo"];
    assert_eq!(*health, AppHealth::Healthy, "{objects:?}");
    Ok(())
}

/// Mutating requests in the audit log since byte `from`, excluding dry runs, the harness's
/// controllers and KWOK, and the agent's own bookkeeping in its namespace.
fn writes_since(
    audit: &std::path::Path,
    from: u64,
    agent_namespace: &str,
) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read(audit)?;
    let new = &text[usize::try_from(from)?.min(text.len())..];
    let mut writes = Vec::new();
    for line in String::from_utf8_lossy(new).lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let uri = event["requestURI"].as_str().unwrap_or_default();
        let namespace = event["objectRef"]["namespace"].as_str().unwrap_or_default();
        // The harness's controllers and KWOK share the admin identity; their user agents
        // tell them apart (a Deployment's status may still settle during the re-sync).
        let user_agent = event["userAgent"].as_str().unwrap_or_default();
        let harness = ["kube-controller-manager/", "kube-scheduler/", "kwok/"]
            .iter()
            .any(|p| user_agent.starts_with(p));
        if uri.contains("dryRun=All") || namespace == agent_namespace || harness {
            continue;
        }
        writes.push(format!(
            "{} {}",
            event["verb"].as_str().unwrap_or_default(),
            uri
        ));
    }
    Ok(writes)
}

#[tokio::test]
async fn an_unchanged_resync_makes_zero_writes() -> anyhow::Result<()> {
    let _permit = heavy_test().await;
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "resync").await?;
    let mut objects: Vec<Value> = (0..20)
        .map(|i| config_map(&ns, &format!("cm-{i}")))
        .collect();
    objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": "nginx:1.27"}]}}}}));
    let make = || {
        agent
            .state()
            .with_app(app("resync", &ns, objects.clone(), prune_policy()))
    };
    let first = agent.apply(make()).await?;
    assert!(first.report.changes.succeeded(), "{}", first.report.changes);
    let versions_before = resource_versions(&agent.client, &ns).await?;

    let audit = shared().await.audit_log();
    let from = std::fs::metadata(&audit)?.len();
    let again = agent.apply(make()).await?;
    assert_eq!(
        again.report.changes.count(Action::Unchanged),
        21,
        "{}",
        again.report.changes
    );
    assert_eq!(
        again.report.changes.entries.len(),
        21,
        "{}",
        again.report.changes
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = writes_since(&audit, from, &agent.namespace)?
        .into_iter()
        .filter(|w| w.contains(&ns))
        .collect::<Vec<_>>();
    assert!(writes.is_empty(), "an unchanged re-sync wrote: {writes:#?}");
    assert_eq!(
        resource_versions(&agent.client, &ns).await?,
        versions_before
    );
    Ok(())
}

async fn resource_versions(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut out: Vec<(String, String)> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn a_new_state_with_unchanged_content_restores_a_drifted_object() -> anyhow::Result<()> {
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "drift").await?;
    let objects = vec![config_map(&ns, "settings")];
    agent
        .apply(
            agent
                .state()
                .with_app(app("drift", &ns, objects.clone(), prune_policy())),
        )
        .await?;
    let api: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &ns);
    let patch = json!({"data": {"key": "edited by hand"}});
    api.patch(
        "settings",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;

    let again = agent
        .apply(
            agent
                .state()
                .with_app(app("drift", &ns, objects, prune_policy())),
        )
        .await?;
    assert_eq!(
        actions(&again),
        vec![(format!("ConfigMap {ns}/settings"), Action::Configured)]
    );
    let restored = api.get("settings").await?;
    assert_eq!(restored.data.unwrap_or_default()["key"], "settings");
    Ok(())
}

#[tokio::test]
async fn prune_deletes_what_left_and_the_limit_refuses_too_much() -> anyhow::Result<()> {
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "prune").await?;
    let all: Vec<Value> = (0..10)
        .map(|i| config_map(&ns, &format!("cm-{i}")))
        .collect();
    agent
        .apply(
            agent
                .state()
                .with_app(app("prune", &ns, all.clone(), prune_policy())),
        )
        .await?;
    assert_eq!(config_maps(&agent.client, &ns).await?.len(), 10);

    // One object leaves the app: it is pruned.
    let applied = agent
        .apply(
            agent
                .state()
                .with_app(app("prune", &ns, all[1..].to_vec(), prune_policy())),
        )
        .await?;
    assert!(
        actions(&applied).contains(&(format!("ConfigMap {ns}/cm-0"), Action::Deleted)),
        "{}",
        applied.report.changes
    );
    assert_eq!(config_maps(&agent.client, &ns).await?.len(), 9);

    // 8 of the remaining 9 leave at once (89% > 50%): the whole step is refused.
    let applied = agent
        .apply(
            agent
                .state()
                .with_app(app("prune", &ns, all[9..].to_vec(), prune_policy())),
        )
        .await?;
    let text = applied.report.changes.to_string();
    assert!(
        text.contains("prune refused: 8 of 9 objects would be deleted, more than pruneLimit 50%"),
        "{text}"
    );
    assert_eq!(applied.report.changes.count(Action::Deleted), 0, "{text}");
    assert_eq!(config_maps(&agent.client, &ns).await?.len(), 9);
    Ok(())
}

#[tokio::test]
async fn a_missing_app_is_orphaned_and_a_tombstone_removes_it() -> anyhow::Result<()> {
    let agent = Agent::new().await?;
    let ns = format!("{}-tomb", agent.namespace);
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        config_map(&ns, "a"),
        config_map(&ns, "b"),
    ];
    let keep = vec![config_map(&agent.namespace.replace("agent", "keep"), "x")];
    let keep_ns = agent.namespace.replace("agent", "keep");
    let keeper = || {
        app(
            "keeper",
            &keep_ns,
            keep.clone(),
            SyncPolicy {
                create_namespace: true,
                ..prune_policy()
            },
        )
    };
    agent
        .apply(
            agent
                .state()
                .with_app(app("gone", &ns, objects, prune_policy()))
                .with_app(keeper()),
        )
        .await?;
    assert_eq!(config_maps(&agent.client, &ns).await?, vec!["a", "b"]);

    // Missing without a tombstone: reported Orphaned, nothing deleted.
    let applied = agent.apply(agent.state().with_app(keeper())).await?;
    let text = applied.report.changes.to_string();
    assert!(text.contains("Orphaned"), "{text}");
    assert_eq!(applied.report.orphaned, vec!["gone".to_owned()]);
    assert_eq!(config_maps(&agent.client, &ns).await?, vec!["a", "b"]);

    // A tombstone deletes its objects, but its Namespace only with the opt-in.
    let applied = agent
        .apply(agent.state().with_app(keeper()).removed("gone", true))
        .await?;
    let text = applied.report.changes.to_string();
    assert_eq!(applied.report.changes.count(Action::Deleted), 2, "{text}");
    assert!(
        text.contains(&format!("Namespace {ns}")) && text.contains("allow-prune"),
        "{text}"
    );
    assert!(config_maps(&agent.client, &ns).await?.is_empty());
    let namespaces: Api<Namespace> = Api::all(agent.client.clone());
    assert!(
        namespaces.get_opt(&ns).await?.is_some(),
        "the Namespace was deleted without opt-in"
    );
    Ok(())
}

#[tokio::test]
async fn bundles_that_must_not_apply_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "refuse").await?;
    let good = |name: &str| {
        agent.state().with_app(app(
            "refuse",
            &ns,
            vec![config_map(&ns, name)],
            prune_policy(),
        ))
    };
    agent.apply(good("first")).await?;
    let snapshot = config_maps(&agent.client, &ns).await?;

    // Tampered: one byte of the signed payload changed inside the bundle file.
    let signed: Signed = good("tampered").signed_by(&agent.key);
    let mut file = signed.bundle_file();
    let needle = b"\"cluster\":\"e2e\"";
    let envelope = signed.envelope_bytes();
    assert!(
        !envelope.windows(needle.len()).any(|w| w == needle),
        "payload is base64 in the envelope"
    );
    flip_one_payload_byte(&mut file, &envelope);
    let refused = agent.apply_file(&file).await;
    assert!(
        matches!(refused, Err(OneshotError::Refused(_))),
        "tampered: {refused:?}"
    );

    // Another cluster's state.
    let other = good("other")
        .cluster("someone-else")
        .signed_by(&agent.key)
        .bundle_file();
    let refused = agent
        .apply_file(&other)
        .await
        .expect_err("another cluster's state");
    assert!(refused.to_string().contains("someone-else"), "{refused}");

    // Expired (issued 48 h ago with the generation of that time, valid for 24 h).
    let past = Timestamp::now() - SignedDuration::from_hours(48);
    let expired = good("expired")
        .issued_at(past)
        .expires_at(past + SignedDuration::from_hours(24))
        .generation(past.as_millisecond() as u64);
    let refused = Agent::new()
        .await?
        .apply(expired)
        .await
        .expect_err("an expired state");
    assert!(refused.to_string().contains("expired"), "{refused}");

    // Rolled back: a lower generation than the one accepted.
    let old = good("old").generation(1);
    let refused = agent.apply(old).await.expect_err("an older generation");
    assert!(refused.to_string().contains("roll"), "{refused}");

    assert_eq!(config_maps(&agent.client, &ns).await?, snapshot);
    Ok(())
}

/// Changes one character of the base64 payload of `envelope` where it sits in `file`, so the
/// bundle's digests no longer match (tar and OCI integrity must catch it).
fn flip_one_payload_byte(file: &mut [u8], envelope: &[u8]) {
    let start = file
        .windows(envelope.len())
        .position(|w| w == envelope)
        .expect("the envelope is stored whole");
    let payload_at = envelope
        .windows(11)
        .position(|w| w == b"\"payload\":\"")
        .expect("a payload field")
        + 11;
    let byte = &mut file[start + payload_at + 10];
    *byte = if *byte == b'A' { b'B' } else { b'A' };
}

#[tokio::test]
async fn bad_objects_fail_one_by_one_and_the_rest_applies() -> anyhow::Result<()> {
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "partial").await?;
    let missing_ns = format!("{ns}-does-not-exist");
    let objects = vec![
        config_map(&ns, "good"),
        json!({"apiVersion": "nowhere.flotilla.dev/v1", "kind": "Phantom",
            "metadata": {"name": "p", "namespace": ns}}),
        config_map(&missing_ns, "lost"),
        // A Deployment without a selector is invalid.
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "broken", "namespace": ns},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        // The agent's own namespace is off limits by default.
        config_map(&agent.namespace, "sneaky"),
    ];
    let mut limits_app = app("partial", &ns, objects, prune_policy());
    limits_app.app.sync_policy.create_namespace = false;
    let applied = agent.apply(agent.state().with_app(limits_app)).await?;
    let changes = &applied.report.changes;
    let entry = |object: &str| {
        changes
            .entries
            .iter()
            .find(|c| c.object == object)
            .unwrap_or_else(|| panic!("no entry for {object} in\n{changes}"))
    };
    assert_eq!(
        entry(&format!("ConfigMap {ns}/good")).action,
        Action::Created,
        "{changes}"
    );
    let phantom = entry(&format!("Phantom {ns}/p"));
    assert_eq!(phantom.action, Action::Failed);
    assert!(
        phantom
            .message
            .contains("unknown kind nowhere.flotilla.dev/v1 Phantom"),
        "{changes}"
    );
    let lost = entry(&format!("ConfigMap {missing_ns}/lost"));
    assert_eq!(lost.action, Action::Failed);
    assert!(lost.message.contains("not found"), "{changes}");
    let broken = entry(&format!("Deployment {ns}/broken"));
    assert_eq!(broken.action, Action::Failed);
    assert!(broken.message.contains("selector"), "{changes}");
    let sneaky = entry(&format!("ConfigMap {}/sneaky", agent.namespace));
    assert_eq!(sneaky.action, Action::Failed);
    assert!(
        sneaky.message.contains("does not change its own namespace"),
        "{changes}"
    );
    assert!(!changes.succeeded());
    assert_eq!(config_maps(&agent.client, &ns).await?, vec!["good"]);
    Ok(())
}

fn deployment(ns: &str, selector: &str, recreate: bool) -> Value {
    let mut annotations = serde_json::Map::new();
    if recreate {
        annotations.insert("flotilla.dev/recreate".into(), "true".into());
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "immutable", "namespace": ns, "annotations": annotations},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": selector}},
            "template": {"metadata": {"labels": {"app": selector}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

#[tokio::test]
async fn an_immutable_change_is_reported_and_recreates_only_with_the_opt_in() -> anyhow::Result<()>
{
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "immutable").await?;
    let state = |d: Value| {
        agent
            .state()
            .with_app(app("immutable", &ns, vec![d], prune_policy()))
    };
    agent.apply(state(deployment(&ns, "a", false))).await?;

    let applied = agent.apply(state(deployment(&ns, "b", false))).await?;
    let entry = &applied.report.changes.entries[0];
    assert_eq!(entry.action, Action::Failed, "{}", applied.report.changes);
    assert!(
        entry.message.contains("immutable") && entry.message.contains("flotilla.dev/recreate"),
        "{}",
        entry.message
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(agent.client.clone(), &ns);
    let live = deployments.get("immutable").await?;
    assert_eq!(
        live.spec
            .expect("spec")
            .selector
            .match_labels
            .expect("labels")["app"],
        "a"
    );

    let applied = agent.apply(state(deployment(&ns, "b", true))).await?;
    let entry = &applied.report.changes.entries[0];
    assert_eq!(
        entry.action,
        Action::Configured,
        "{}",
        applied.report.changes
    );
    assert!(entry.message.contains("recreated"), "{}", entry.message);
    let live = deployments.get("immutable").await?;
    assert_eq!(
        live.spec
            .expect("spec")
            .selector
            .match_labels
            .expect("labels")["app"],
        "b"
    );
    Ok(())
}

#[tokio::test]
async fn ignore_differences_leaves_a_field_to_others() -> anyhow::Result<()> {
    let agent = Agent::new().await?;
    let ns = test_namespace(&agent.client, "ignore").await?;
    let mut ignoring = app(
        "ignore",
        &ns,
        vec![config_map(&ns, "tuned")],
        prune_policy(),
    );
    ignoring.app.ignore_differences = vec![flotilla_shared::state::IgnoreDifference {
        group: String::new(),
        kind: "ConfigMap".into(),
        name: Some("tuned".into()),
        namespace: None,
        json_pointers: vec!["/data/key".into()],
    }];
    agent
        .apply(agent.state().with_app(ignoring.clone()))
        .await?;
    let api: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &ns);
    let patch = json!({"data": {"key": "tuned by an operator"}});
    let params = kube::api::PatchParams {
        field_manager: Some("operator".into()),
        ..Default::default()
    };
    api.patch("tuned", &params, &kube::api::Patch::Merge(&patch))
        .await?;

    let applied = agent.apply(agent.state().with_app(ignoring)).await?;
    assert_eq!(
        actions(&applied),
        vec![(format!("ConfigMap {ns}/tuned"), Action::Unchanged)]
    );
    assert_eq!(
        api.get("tuned").await?.data.unwrap_or_default()["key"],
        "tuned by an operator"
    );
    Ok(())
}
