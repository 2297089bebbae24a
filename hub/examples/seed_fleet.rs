//! Seeds a hub data directory with a large fleet, so the dashboard can be shown and timed at
//! scale: `SEED_CLUSTERS` clusters (1,000) × `SEED_APP_SETS` ApplicationSets (100) whose
//! clusters generators select every cluster — 100,000 applications.
//!
//! It does what a real hub would have done, through the hub's own code: `flotilla-hub init`
//! makes the data directory; a local Git repository (the configuration repository, under
//! `fleet/`, and the manifests, under `apps/`) is committed with the git CLI; the clusters are
//! stored as registered agents (a certificate serial, seen now, so they read Online); one
//! round (`rounds::round`: fetch, configuration, reconcile, record, publish) signs every
//! cluster's state; then one status report per cluster is recorded as its agent would send
//! it — mostly Synced and Healthy, a few percent OutOfSync, Failed, Degraded or Progressing
//! with messages, so the matrix shows why sentences, and a few clusters silent for days.
//!
//! ```console
//! $ cargo run --release -p flotilla-hub --example seed_fleet -- /tmp/fleet-1000
//! ```
//!
//! It writes `DIR/data` (the hub's data directory), `DIR/repo` (the Git repository),
//! `DIR/admin.token` and `DIR/serve.args` (the arguments of the `flotilla-hub serve` that shows
//! this fleet: the configuration repository, the URL rewrite and `--offline-after 240h`),
//! and prints progress and the time of each step. `browser/screenshots` runs it, starts the
//! hub and takes the screenshots in `docs/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use flotilla_hub::config_repo::ConfigSource;
use flotilla_hub::failpoint::Failpoints;
use flotilla_hub::git::{FetchOptions, Fetcher, Rewrites};
use flotilla_hub::init::{InitArgs, init};
use flotilla_hub::publish::{PublishConfig, Publisher, stored_payload};
use flotilla_hub::reconcile::Reconciler;
use flotilla_hub::render::{RenderConfig, Renderer};
use flotilla_hub::rounds::{self, Fetch, Hub};
use flotilla_hub::store::{
    AppStatus, ClusterRecord, CredentialKey, ObjectStatus, Retention, SqliteStore, StatusReport,
    Store as _,
};
use flotilla_shared::SigningKey;
use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret as _;
use serde_json::json;

/// The URL the declarations name; `serve` rewrites it to the local repository.
const REPO_URL: &str = "https://git.example/acme/fleet.git";
const REGIONS: [&str; 8] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
];
const DOMAINS: [&str; 20] = [
    "auth",
    "billing",
    "catalog",
    "checkout",
    "search",
    "orders",
    "payments",
    "inventory",
    "shipping",
    "notify",
    "profile",
    "reviews",
    "pricing",
    "ledger",
    "reports",
    "gateway",
    "media",
    "chat",
    "analytics",
    "audit",
];
const ROLES: [&str; 5] = ["api", "worker", "cron", "web", "cache"];
/// Clusters whose agent has been silent for days (`serve --offline-after 240h` shows them
/// Offline), one in this many.
const OFFLINE_EVERY: usize = 250;

fn env_size(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not a count")),
        Err(_) => Ok(default),
    }
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=Flotilla Seed"])
        .args(["-c", "user.email=seed@flotilla.invalid"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn write(dir: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    let parent = path.parent().context("a file has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
    std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))
}

/// The name of ApplicationSet `i`: `billing-api`, `billing-worker`, …
fn set_name(i: usize) -> String {
    let domain = DOMAINS[(i / ROLES.len()) % DOMAINS.len()];
    let role = ROLES[i % ROLES.len()];
    match i / (ROLES.len() * DOMAINS.len()) {
        0 => format!("{domain}-{role}"),
        n => format!("{domain}-{role}-{n}"),
    }
}

/// The name of cluster `c`: `prod-eu-west-1-017`, one in five a staging cluster.
fn cluster_name(c: usize) -> (String, &'static str, &'static str) {
    let region = REGIONS[c % REGIONS.len()];
    let env = if c % 5 == 4 { "staging" } else { "prod" };
    (
        format!("{env}-{region}-{:03}", c / REGIONS.len()),
        env,
        region,
    )
}

/// The manifests of one role (a ConfigMap, a Deployment, a Service), and the fleet's
/// declarations: two AppProjects and `sets` ApplicationSets over every cluster.
fn write_repository(repo: &Path, sets: usize, greeting: &str) -> anyhow::Result<()> {
    for role in ROLES {
        write(
            repo,
            &format!("apps/{role}/config.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {role}-config}}\n\
                 data: {{greeting: '{greeting}', role: {role}}}\n"
            ),
        )?;
        write(
            repo,
            &format!("apps/{role}/deployment.yaml"),
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {role}}}\n\
                 spec:\n  replicas: 3\n  selector: {{matchLabels: {{app: {role}}}}}\n  \
                 template:\n    metadata: {{labels: {{app: {role}}}}}\n    \
                 spec: {{containers: [{{name: {role}, image: 'registry.example/{role}:1.4.2'}}]}}\n"
            ),
        )?;
        write(
            repo,
            &format!("apps/{role}/service.yaml"),
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {role}}}\n\
                 spec: {{selector: {{app: {role}}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
            ),
        )?;
    }
    let mut fleet = String::new();
    for project in ["platform", "shop"] {
        fleet.push_str(&format!(
            "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {{name: {project}}}
spec:
  sourceRepos: ['https://git.example/acme/*']
  destinations: [{{name: '*', namespace: '*'}}]
  clusterResourceWhitelist: [{{group: '', kind: Namespace}}]
---
"
        ));
    }
    for i in 0..sets {
        let name = set_name(i);
        let role = ROLES[i % ROLES.len()];
        let project = if i % 2 == 0 { "shop" } else { "platform" };
        fleet.push_str(&format!(
            "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: {name}}}
spec:
  generators: [{{clusters: {{selector: {{matchExpressions: [{{key: env, operator: Exists}}]}}}}}}]
  template:
    metadata: {{name: '{name}-{{{{name}}}}', labels: {{team: {domain}}}}}
    spec:
      project: {project}
      source: {{repoURL: '{REPO_URL}', path: apps/{role}, targetRevision: main}}
      destination: {{name: '{{{{name}}}}', namespace: {name}}}
      syncPolicy: {{automated: {{prune: true, selfHeal: true}}, syncOptions: [CreateNamespace=true]}}
---
",
            domain = DOMAINS[(i / ROLES.len()) % DOMAINS.len()],
        ));
    }
    write(repo, "fleet/fleet.yaml", &fleet)
}

/// A small deterministic hash, so every run seeds the same fleet.
fn mix(a: usize, b: usize) -> u64 {
    let mut x =
        (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (b as u64).wrapping_add(0x632B_E59B);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

/// What the agent of a cluster says about one application (per mille: 8 still on the old
/// revision, 4 failed to apply, 10 Degraded, 15 Progressing, the rest Synced and Healthy).
fn app_status(
    app: &str,
    namespace: &str,
    role: &str,
    generation: u64,
    served: &str,
    previous: &str,
    roll: u64,
) -> AppStatus {
    let deployment = format!("apps/v1 Deployment {namespace}/{role}");
    let object = |state: &str, message: &str| ObjectStatus {
        object: deployment.clone(),
        state: state.to_owned(),
        message: message.to_owned(),
    };
    let (revision, sync, health, message, objects) = match roll % 1000 {
        0..8 => (previous, "Synced", "Healthy", String::new(), Vec::new()),
        8..12 => (
            served,
            "Failed",
            "Healthy",
            format!("apply {deployment}: spec.selector: field is immutable"),
            vec![object("Failed", "spec.selector: field is immutable")],
        ),
        12..22 => (
            served,
            "Synced",
            "Degraded",
            String::new(),
            vec![object(
                "Failed",
                "0 of 3 replicas available: container {role}: ImagePullBackOff",
            )],
        ),
        22..37 => (
            served,
            "Synced",
            "Progressing",
            String::new(),
            vec![object(
                "InProgress",
                "2 of 3 updated replicas are available",
            )],
        ),
        _ => (served, "Synced", "Healthy", String::new(), Vec::new()),
    };
    AppStatus {
        app: app.to_owned(),
        generation: Some(generation),
        revision: Some(revision.to_owned()),
        sync: sync.to_owned(),
        health: health.to_owned(),
        message,
        objects: objects
            .into_iter()
            .map(|mut o| {
                o.message = o.message.replace("{role}", role);
                o
            })
            .collect(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: seed_fleet DIR (a directory that does not exist yet)")?;
    ensure!(
        !dir.exists(),
        "{} exists; seed_fleet makes a new one",
        dir.display()
    );
    let clusters = env_size("SEED_CLUSTERS", 1000)?;
    let sets = env_size("SEED_APP_SETS", 100)?;
    let started = Instant::now();
    let step = |what: &str, since: Instant| {
        println!(
            "{what:<58} {:>7.2} s (total {:>7.2} s)",
            since.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    };
    println!(
        "seeding {}: {clusters} clusters × {sets} ApplicationSets ({} applications)",
        dir.display(),
        clusters * sets
    );

    // The data directory, as `flotilla-hub init` makes it.
    let phase = Instant::now();
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let data = dir.join("data");
    let args = InitArgs {
        data_dir: data.clone(),
        if_missing: false,
    };
    // `init` runs its own runtime: off this one's threads.
    let created = tokio::task::spawn_blocking(move || init(&args))
        .await
        .context("the init task")?
        .context("flotilla-hub init")?;
    std::fs::write(
        dir.join("admin.token"),
        format!("{}\n", created.admin_token.expose_secret()),
    )
    .context("write admin.token")?;
    step("flotilla-hub init", phase);

    // The Git repository: an older commit (some agents still run it), then the served one.
    let phase = Instant::now();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).context("mkdir repo")?;
    git(&repo, &["init", "-q"])?;
    write_repository(&repo, sets, "hello")?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "the fleet"])?;
    let previous = git(&repo, &["rev-parse", "HEAD"])?;
    write_repository(&repo, sets, "hello again")?;
    git(&repo, &["commit", "-q", "-am", "a new greeting"])?;
    let served = git(&repo, &["rev-parse", "HEAD"])?;
    step("Git repository (two commits)", phase);

    // The hub's parts, as `serve` builds them over this data directory.
    let phase = Instant::now();
    let key = SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(data.join(flotilla_hub::keygen::PRIVATE_KEY_FILE))
            .context("read the signing key")?,
    )
    .context("a signing key")?;
    let store = SqliteStore::open(
        &data.join(flotilla_hub::store::sqlite::DATABASE_FILE),
        CredentialKey::load_or_create(&data).context("credential key")?,
        Retention::default(),
        Failpoints::none(),
    )
    .await
    .context("open the store")?;
    // The directories `serve` makes, where it will find the cache this round fills.
    for sub in ["git-cache", "work"] {
        std::fs::create_dir_all(data.join(sub)).with_context(|| format!("mkdir data/{sub}"))?;
    }
    let mut options = FetchOptions::new(data.join("git-cache"));
    options.rewrites = Rewrites::default().with(REPO_URL, repo.to_str().context("a UTF-8 path")?);
    let fetcher = Fetcher::new(options).context("fetcher")?;
    let renderer = std::sync::Arc::new(Renderer::new(RenderConfig::default()).context("renderer")?);
    let reconciler = Reconciler::new(fetcher.clone(), renderer, Some(&data.join("work")))
        .context("reconciler")?;
    let publisher = Publisher::new(store, key, PublishConfig::default(), Failpoints::none());
    let source = ConfigSource {
        url: REPO_URL.to_owned(),
        revision: "main".to_owned(),
        path: "fleet".to_owned(),
    };
    let (hub, _triggers) = Hub::new(publisher, reconciler, fetcher, Some(source));
    let store = hub.store();

    // Registered clusters whose agents reported just now (some long ago).
    let now = Timestamp::now();
    let long_ago = now - SignedDuration::from_hours(24 * 11);
    let mut names = Vec::with_capacity(clusters);
    for c in 0..clusters {
        let (name, env, region) = cluster_name(c);
        let mut cluster = ClusterRecord::new(&name, now - SignedDuration::from_hours(24 * 30));
        cluster.labels.insert("env".to_owned(), env.to_owned());
        cluster
            .labels
            .insert("region".to_owned(), region.to_owned());
        cluster.server_url = Some(format!("https://{name}.k8s.example:6443"));
        cluster.kube_version = Some("v1.35.4".to_owned());
        cluster.agent_version = Some(env!("CARGO_PKG_VERSION").to_owned());
        cluster.registration.cert_serials = vec![format!("{:032x}", mix(c, 7))];
        cluster.registration.registered_at = Some(now - SignedDuration::from_hours(24 * 30));
        cluster.registration.cert_not_after = Some(now + SignedDuration::from_hours(24 * 60));
        cluster.last_seen = Some(if c % OFFLINE_EVERY == OFFLINE_EVERY / 2 {
            long_ago
        } else {
            now
        });
        store
            .put_cluster(&cluster)
            .await
            .with_context(|| format!("store cluster {name}"))?;
        names.push(name);
    }
    step(&format!("{clusters} clusters registered"), phase);

    // One round of the hub: fetch, the configuration repository, reconcile, publish.
    let phase = Instant::now();
    rounds::round(&hub, &Fetch::All)
        .await
        .context("the hub's round")?;
    let states = store.latest_states().await.context("read the states")?;
    step(
        &format!(
            "round (fetch, config, reconcile, publish): {} states",
            states.len()
        ),
        phase,
    );
    ensure!(
        states.len() == clusters,
        "{} of {clusters} clusters got a state",
        states.len()
    );

    // The agents' reports, one per cluster, about what their state carries.
    let phase = Instant::now();
    let mut apps_reported = 0usize;
    let mut not_fine = 0usize;
    for (c, state) in states.iter().enumerate() {
        let payload = stored_payload(state).context("a stored state reads")?;
        let index = names.iter().position(|n| *n == state.cluster).unwrap_or(c);
        let apps: Vec<AppStatus> = payload
            .apps
            .iter()
            .enumerate()
            .map(|(a, app)| {
                let role = ROLES
                    .iter()
                    .find(|r| app.source.path.ends_with(*r))
                    .copied()
                    .unwrap_or("api");
                app_status(
                    &app.name,
                    &app.namespace,
                    role,
                    state.generation,
                    &app.source.revision,
                    &previous,
                    mix(index, a),
                )
            })
            .collect();
        apps_reported += apps.len();
        not_fine += apps
            .iter()
            .filter(|a| {
                a.sync != "Synced" || a.health != "Healthy" || a.revision.as_ref() != Some(&served)
            })
            .count();
        let raw = json!({"cluster": state.cluster, "seq": 1, "apps": apps.len()});
        store
            .record_status(&StatusReport {
                cluster: state.cluster.clone(),
                seq: 1,
                received_at: now,
                apps,
                raw,
            })
            .await
            .with_context(|| format!("record the status of {}", state.cluster))?;
    }
    step(
        &format!("{clusters} status reports ({apps_reported} apps, {not_fine} not Synced/Healthy)"),
        phase,
    );
    store.close().await;

    let serve_args = [
        "--data-dir".to_owned(),
        data.display().to_string(),
        format!("--rewrite={REPO_URL}={}", repo.display()),
        format!("--config-repo={REPO_URL}"),
        "--config-path=fleet".to_owned(),
        "--config-revision=main".to_owned(),
        "--offline-after=240h".to_owned(),
        "--poll-interval=24h".to_owned(),
    ];
    std::fs::write(dir.join("serve.args"), serve_args.join("\n") + "\n")
        .context("write serve.args")?;
    println!(
        "seeded in {:.1} s; serve it with:\n  flotilla-hub serve {}\nadmin token in {}",
        started.elapsed().as_secs_f64(),
        serve_args.join(" "),
        dir.join("admin.token").display()
    );
    Ok(())
}
