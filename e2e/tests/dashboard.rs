//! The dashboard in a real browser: one `flotilla-hub serve` whose configuration repository
//! (a local Git repository) declares an ApplicationSet over three harness clusters of the
//! test's own, a `flotilla-agent run` per cluster, two commits of the app (revision A, then
//! B) landed everywhere, then `browser/dashboard.spec.mjs` in headless Chromium: login
//! through the form, the matrix, axe-core on every page, a rollback to A with the button of
//! the application's history, and the change watched landing through the live updates. The
//! hub's API and the clusters themselves must then say the same.
//!
//! Chromium (`/usr/bin/chromium`, or `FLOTILLA_CHROMIUM`), Node and `browser/node_modules`
//! are required: without them the test fails and says how to install them (`make e2e` runs
//! `npm ci --prefix browser`; `.ci/run` installs Chromium). Screenshots go to
//! `target/browser-artifacts/`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use flotilla_e2e::eventually;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::browser::{browser_tools, run_script, workspace};
use crate::processes::{Hub, Process, admin_agent, commit, git, write_web_app};

const LIMIT: Duration = Duration::from_secs(120);
/// The matrix column under test: the ApplicationSet, and the prefix of what it generates.
const COLUMN: &str = "web";
/// The browser script's own watchdog stops it after 180 s; this is the test's.
const BROWSER_LIMIT: Duration = Duration::from_secs(240);

const FLEET_YAML: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web, targetRevision: main}
      destination: {name: '{{name}}', namespace: web}
      syncPolicy: {automated: {prune: true, selfHeal: true}, syncOptions: [CreateNamespace=true]}
";

/// Per generated application: (revision, sync, health), from the API.
async fn column_state(hub: &Hub) -> anyhow::Result<Vec<(String, String, String, String)>> {
    let listed = hub.api("GET", "/api/v1/applications", None).await?;
    let mut rows = Vec::new();
    for app in listed["applications"].as_array().context("applications")? {
        if app["generatedBy"] != COLUMN {
            continue;
        }
        for cell in app["clusters"].as_array().cloned().unwrap_or_default() {
            let text = |k: &str| cell[k].as_str().unwrap_or_default().to_owned();
            rows.push((
                text("cluster"),
                text("revision"),
                text("sync"),
                text("health"),
            ));
        }
    }
    rows.sort();
    Ok(rows)
}

/// Waits until every cluster runs `revision` of the column, Synced and Healthy.
async fn landed(hub: &Hub, names: &[&str], revision: &str) -> anyhow::Result<()> {
    eventually(
        &format!("{COLUMN} Synced and Healthy at {revision} on {names:?}"),
        LIMIT,
        || async {
            let rows = column_state(hub).await?;
            let clusters: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            ensure!(clusters == names, "deployed on {clusters:?}");
            Ok(rows
                .iter()
                .all(|(_, rev, sync, health)| {
                    rev == revision && sync == "Synced" && health == "Healthy"
                })
                .then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_fleet_and_a_rollback_lands_live() -> anyhow::Result<()> {
    browser_tools("dashboard")?;
    let _heavy = flotilla_e2e::heavy_test().await;
    let work = tempfile::tempdir()?;
    let dir = work.path().to_owned();

    // Three clusters of our own, started at once.
    let names = ["dash-a", "dash-b", "dash-c"];
    let clusters = crate::processes::start_clusters(&names).await?;

    // The Git repository: the fleet's declaration and the app, revision A.
    let repo = dir.join("fleet");
    std::fs::create_dir_all(repo.join("fleet"))?;
    git(&repo, &["init", "-q"])?;
    std::fs::write(repo.join("fleet/fleet.yaml"), FLEET_YAML)?;
    write_web_app(&repo, "A")?;
    let revision_a = commit(&repo, "revision A")?;

    // The hub, reading its configuration from the repository.
    let mut hub = Hub::init(&dir, &repo)?;
    hub.start_with(&[
        format!("--config-repo={}", crate::processes::FLEET),
        "--config-path=fleet".to_owned(),
        "--config-revision=main".to_owned(),
    ])?;
    hub.cli(&["login", "--hub", &hub.base, "--token", &hub.token])
        .or_else(|_| anyhow::Ok(serde_json::Value::Null))?;
    let mut agents: Vec<Process> = Vec::new();
    for (cluster, name) in clusters.iter().zip(names) {
        let made = hub.cli(&["cluster", "token", "create", name, "--label", "env=prod"])?;
        let token_file = dir.join(format!("{name}.token"));
        std::fs::write(&token_file, made["token"].as_str().context("a token")?)?;
        agents.push(admin_agent(&hub, name, cluster.kubeconfig(), &token_file)?.0);
    }
    let logs = |hub: &Hub, agents: &[Process]| {
        eprintln!("--- hub\n{}", hub.log());
        for agent in agents {
            eprintln!("--- agent\n{}", agent.log());
        }
    };
    if let Err(error) = landed(&hub, &names, &revision_a).await {
        logs(&hub, &agents);
        return Err(error);
    }

    // Revision B, pushed.
    write_web_app(&repo, "B")?;
    let revision_b = commit(&repo, "revision B")?;
    hub.webhook(&revision_b).await?;
    if let Err(error) = landed(&hub, &names, &revision_b).await {
        logs(&hub, &agents);
        return Err(error);
    }
    println!("{COLUMN} at B ({revision_b}) on {names:?}; A is {revision_a}");

    // The browser: login, matrix, accessibility, rollback to A watched landing live.
    let shots = workspace().join("target/browser-artifacts");
    let started = Instant::now();
    let (passed, _output) = run_script(
        &dir,
        "dashboard.spec.mjs",
        &[
            ("FLOTILLA_URL", hub.base.clone()),
            ("FLOTILLA_TOKEN", hub.token.clone()),
            ("FLOTILLA_APP", COLUMN.to_owned()),
            ("FLOTILLA_REVISION_A", revision_a.clone()),
            ("FLOTILLA_SCREENSHOTS", shots.display().to_string()),
            ("FLOTILLA_CLUSTERS", names.len().to_string()),
        ],
        BROWSER_LIMIT,
    )?;
    if !passed {
        logs(&hub, &agents);
        bail!("browser/dashboard.spec.mjs failed (its output is above)");
    }
    println!(
        "browser script: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );

    // The hub says the same: every generated app pinned to A and running it.
    for name in names {
        let app = format!("{COLUMN}-{name}");
        let answer = hub
            .api("GET", &format!("/api/v1/applications/{app}"), None)
            .await?;
        let pins = answer["pins"].as_array().context("pins")?;
        ensure!(
            pins.iter().any(|p| p["revision"] == revision_a.as_str()),
            "{app} is not pinned to A: {answer}"
        );
        let cells = answer["clusters"].as_array().context("clusters")?;
        ensure!(
            cells.len() == 1
                && cells[0]["cluster"] == name
                && cells[0]["revision"] == revision_a.as_str()
                && cells[0]["sync"] == "Synced",
            "{app} does not run A: {answer}"
        );
    }
    // And so do the clusters.
    for (cluster, name) in clusters.iter().zip(names) {
        let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "web");
        let greeting = config_maps.get("web").await?.data.unwrap_or_default();
        ensure!(
            greeting.get("greeting").map(String::as_str) == Some("A"),
            "{name} says {greeting:?}"
        );
    }
    drop(agents);
    Ok(())
}
