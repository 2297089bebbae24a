//! The hub benchmark: what one reconcile + publish round costs for a large fleet.
//!
//! It builds a temporary data directory (SQLite store, signing key pair from `keygen`), a
//! local Git repository made with the git CLI, registers `BENCH_CLUSTERS` clusters (100) and
//! declares `BENCH_APP_SETS` ApplicationSets (1,000), each with a clusters generator selecting
//! every cluster, whose sources are `BENCH_DIRECTORIES` (10) small manifest directories shared
//! by all sets — 100,000 generated applications whose renders the cache shares. It runs one
//! round (reconcile → record → publish) and prints the wall time per phase, renders actually
//! executed, applications generated, ClusterStates signed, the blob count in the store and
//! peak RSS. Then a second commit adds a small Helm chart and `BENCH_HELM_SETS` (100) of the
//! sets switch to it with per-cluster values (`helm.parameters` from the cluster label
//! `replicas`), and the same figures are printed for that incremental round.
//!
//! Run it with `cargo bench -p flotilla-hub --bench publish` (release profile); `make bench`
//! runs it too. Helm comes from `BENCH_HELM` or `e2e/cluster bin helm`. The figures are
//! printed next to their target; timing never fails the run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flotilla_hub::failpoint::Failpoints;
use flotilla_hub::git::{Credentials, FetchOptions, Fetcher, Rewrites};
use flotilla_hub::keygen;
use flotilla_hub::publish::plan::Content;
use flotilla_hub::publish::{PublishConfig, Publisher};
use flotilla_hub::reconcile::{
    ClusterTarget, DeclaredConfig, ReconcileRequest, Reconciler, SyncRequests,
};
use flotilla_hub::render::{RenderConfig, Renderer};
use flotilla_hub::store::{
    AppSetRecord, ClusterRecord, CredentialKey, Origin, ProjectRecord, Retention, SqliteStore,
    Store,
};
use flotilla_shared::SigningKey;
use jiff::Timestamp;
use serde_json::Value;

const REPO_URL: &str = "https://git.example/bench.git";
/// Distinct values of the `replicas` cluster label, so the Helm sets render this many times.
const REPLICA_VALUES: usize = 10;

const PROJECT: &str = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: bench}
spec:
  sourceRepos: ['https://git.example/*']
  destinations: [{name: '*', namespace: '*'}]
";

/// The sizes of one run, from the environment (defaults: the benchmark).
#[derive(Debug, Clone, Copy)]
struct Sizes {
    clusters: usize,
    app_sets: usize,
    directories: usize,
    helm_sets: usize,
}

fn env_size(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not a count")),
        Err(_) => Ok(default),
    }
}

fn workspace() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .context("the hub crate lies in the workspace")
}

/// `BENCH_HELM`, else the harness's pinned helm.
fn helm() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_HELM") {
        return Ok(PathBuf::from(path));
    }
    let out = Command::new(workspace()?.join("e2e/cluster"))
        .args(["bin", "helm"])
        .output()
        .context("run e2e/cluster bin helm")?;
    if !out.status.success() {
        bail!(
            "e2e/cluster bin helm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(["-c", "user.name=Flotilla Bench"])
        .args(["-c", "user.email=bench@flotilla.invalid"])
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
    Ok(())
}

fn write(dir: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    let parent = path.parent().context("a file has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
    std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))
}

/// The first commit: `directories` small manifest directories (a ConfigMap and a Service).
fn first_commit(repo: &Path, directories: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo).context("mkdir repository")?;
    git(repo, &["init", "-q"])?;
    for d in 0..directories {
        write(
            repo,
            &format!("apps/app-{d:02}/config.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-{d:02}, namespace: bench}}\n\
                 data: {{greeting: hello, index: '{d}'}}\n"
            ),
        )?;
        write(
            repo,
            &format!("apps/app-{d:02}/service.yaml"),
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: app-{d:02}, namespace: bench}}\n\
                 spec: {{selector: {{app: app-{d:02}}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
            ),
        )?;
    }
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "directories"])
}

/// The second commit: a small local Helm chart whose replicas come from the values.
fn second_commit(repo: &Path) -> anyhow::Result<()> {
    write(
        repo,
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    )?;
    write(repo, "charts/web/values.yaml", "replicaCount: 1\n")?;
    write(
        repo,
        "charts/web/templates/deployment.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      containers: [{name: web, image: 'ghcr.io/stefanprodan/podinfo:6.9.0'}]
",
    )?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "helm chart"])
}

/// ApplicationSet `i`: a clusters generator selecting every cluster, a directory source.
fn directory_set(i: usize, directories: usize) -> String {
    let d = i % directories;
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: set-{i:04}}}
spec:
  generators: [{{clusters: {{selector: {{matchLabels: {{fleet: bench}}}}}}}}]
  template:
    metadata: {{name: 'set-{i:04}-{{{{name}}}}'}}
    spec:
      project: bench
      source: {{repoURL: '{REPO_URL}', path: apps/app-{d:02}, targetRevision: main}}
      destination: {{name: '{{{{name}}}}', namespace: bench}}
      syncPolicy: {{automated: {{prune: true}}}}
"
    )
}

/// ApplicationSet `i` switched to the Helm chart, with replicas from the cluster's labels.
/// Release name and namespace are fixed so the render depends on the label only.
fn helm_set(i: usize) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: set-{i:04}}}
spec:
  generators: [{{clusters: {{selector: {{matchLabels: {{fleet: bench}}}}}}}}]
  template:
    metadata: {{name: 'set-{i:04}-{{{{name}}}}'}}
    spec:
      project: bench
      source:
        repoURL: '{REPO_URL}'
        path: charts/web
        targetRevision: main
        helm:
          releaseName: web
          parameters: [{{name: replicaCount, value: '{{{{metadata.labels.replicas}}}}'}}]
      destination: {{name: '{{{{name}}}}', namespace: bench}}
      syncPolicy: {{automated: {{prune: true}}}}
"
    )
}

async fn declare(store: &SqliteStore, yaml: &str) -> anyhow::Result<()> {
    let spec: Value = serde_saphyr::from_str(yaml).context("an ApplicationSet parses")?;
    let name = spec["metadata"]["name"]
        .as_str()
        .context("the set has a name")?
        .to_owned();
    store
        .put_app_set(&AppSetRecord {
            name,
            spec,
            origin: Origin::Config,
            generated: Vec::new(),
            generator_error: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        })
        .await
        .context("store the ApplicationSet")
}

/// `VmHWM` (peak) and `VmRSS` (now) of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Bench {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    db: PathBuf,
    fetcher: Fetcher,
    renderer: Arc<Renderer>,
    reconciler: Reconciler,
    publisher: Publisher<SqliteStore>,
}

impl Bench {
    fn store(&self) -> &SqliteStore {
        self.publisher.store()
    }

    async fn fetch(&self) -> anyhow::Result<()> {
        let fetcher = self.fetcher.clone();
        tokio::task::spawn_blocking(move || {
            fetcher
                .fetch(REPO_URL, &Credentials::None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .context("fetch task")?
        .map_err(|e| anyhow::anyhow!("fetch the bench repository: {e}"))?;
        Ok(())
    }

    async fn blob_count(&self) -> anyhow::Result<i64> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.db)
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .context("open the store read-only")?;
        let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM blobs")
            .fetch_one(&pool)
            .await
            .context("count blobs")?;
        pool.close().await;
        Ok(count)
    }

    /// One round as `rounds::round` runs it (without the fetch), timed per phase.
    async fn round(&self, label: &str, sizes: Sizes) -> anyhow::Result<()> {
        let renders_before = self.renderer.renders_executed();
        let start = Instant::now();
        let store = self.store();
        let config = DeclaredConfig::load(store)
            .await
            .context("load configuration")?;
        let clusters: Vec<ClusterTarget> = store
            .clusters()
            .await
            .context("clusters")?
            .iter()
            .map(ClusterTarget::from)
            .collect();
        let served: BTreeSet<String> = store
            .latest_states()
            .await
            .context("states")?
            .into_iter()
            .map(|s| s.cluster)
            .collect();
        let pins = store.pins().await.context("pins")?;
        let loaded = start.elapsed();

        let phase = Instant::now();
        let reconciliation = self
            .reconciler
            .reconcile(&ReconcileRequest {
                config: &config,
                clusters: &clusters,
                served: &served,
                sync: &SyncRequests::None,
                pins: &pins,
            })
            .await;
        let reconciled = phase.elapsed();
        let (after_reconcile_peak, after_reconcile_rss) = memory();

        let phase = Instant::now();
        let now = Timestamp::now();
        reconciliation
            .record(store, now)
            .await
            .context("record generations")?;
        let recorded = phase.elapsed();

        let phase = Instant::now();
        let mut generated = 0usize;
        let mut failed = Vec::new();
        for input in &reconciliation.inputs {
            for app in &input.apps {
                generated += 1;
                if let Content::Failed(error) = &app.content {
                    failed.push(format!("{}: {error}", app.name));
                }
            }
        }
        let counted = phase.elapsed();

        let phase = Instant::now();
        let report = self
            .publisher
            .publish(reconciliation.inputs, "bench", now)
            .await
            .context("publish")?;
        let published = phase.elapsed();
        let total = start.elapsed() - counted;

        let signed = report.clusters.iter().filter(|c| c.published).count();
        let blobs = self.blob_count().await?;
        let (peak, rss) = memory();
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "\n== {label}: {} clusters × {} ApplicationSets ==",
            sizes.clusters, sizes.app_sets
        );
        println!(
            "wall time (load + reconcile + record + publish): {:>8.2} s{}",
            secs(total),
            if label.starts_with("directory") {
                "   (target: < 30 s for 100 × 1,000)"
            } else {
                ""
            }
        );
        println!(
            "  load {:.2} s · reconcile (expand + place + render) {:.2} s · record {:.2} s · publish (plan + blobs + sign + commit + gc) {:.2} s",
            secs(loaded),
            secs(reconciled),
            secs(recorded),
            secs(published)
        );
        println!(
            "renders executed:               {:>8}",
            self.renderer.renders_executed() - renders_before
        );
        println!("applications generated:         {generated:>8}");
        println!("applications failed:            {:>8}", failed.len());
        for failure in failed.iter().take(3) {
            println!("  e.g. {failure}");
        }
        println!("ClusterStates signed:           {signed:>8}");
        println!(
            "blobs written this round:       {:>8}",
            report.blobs_written
        );
        println!("blobs in the store (dedup):     {blobs:>8}");
        println!("peak RSS (VmHWM, whole run):    {peak:>8.1} MiB");
        println!(
            "  RSS after reconcile {after_reconcile_rss:.1} MiB (peak then {after_reconcile_peak:.1} MiB), now {rss:.1} MiB"
        );
        // What the API and the dashboard read for every fleet view.
        let cache = flotilla_hub::fleet::FleetCache::default();
        let load =
            || flotilla_hub::fleet::Fleet::load_from(store, &cache, Duration::from_secs(90), now);
        let phase = Instant::now();
        load().await.context("fleet view")?;
        let first_load = phase.elapsed();
        let phase = Instant::now();
        let fleet = load().await.context("fleet view")?;
        let loaded = phase.elapsed();
        let phase = Instant::now();
        let (rows, columns) = fleet.select(&flotilla_hub::fleet::Filter::default());
        let cells = rows
            .iter()
            .take(50)
            .flat_map(|r| columns.iter().map(|c| (r.name.clone(), c.name.clone())))
            .filter(|(row, column)| fleet.column_cell(column, row).is_some())
            .count();
        println!(
            "fleet view: {} cells loaded in {:.0} ms (states decoded), {:.0} ms (states cached); a page of 50 clusters × {} columns ({cells} cells) selected in {:.1} ms",
            fleet.cells().count(),
            first_load.as_secs_f64() * 1000.0,
            loaded.as_secs_f64() * 1000.0,
            columns.len(),
            phase.elapsed().as_secs_f64() * 1000.0
        );
        Ok(())
    }
}

async fn setup(sizes: Sizes) -> anyhow::Result<Bench> {
    let dir = tempfile::Builder::new()
        .prefix("flotilla-bench-")
        .tempdir()
        .context("temp dir")?;
    let repo = dir.path().join("repo");
    first_commit(&repo, sizes.directories)?;

    let data = dir.path().join("data");
    let keys = data.join("keys");
    keygen::keygen(&keys).context("keygen")?;
    let pem = std::fs::read_to_string(keys.join(keygen::PRIVATE_KEY_FILE))
        .context("read the signing key")?;
    let key = SigningKey::from_pkcs8_pem(&pem).context("a signing key")?;

    let mut options = FetchOptions::new(data.join("git-cache"));
    options.rewrites =
        Rewrites::default().with(REPO_URL, repo.to_str().context("a UTF-8 temp path")?);
    let fetcher = Fetcher::new(options).context("fetcher")?;
    let renderer = Arc::new(
        Renderer::new(RenderConfig {
            helm: helm()?,
            ..RenderConfig::default()
        })
        .context("renderer")?,
    );
    let reconciler =
        Reconciler::new(fetcher.clone(), renderer.clone(), Some(&data)).context("reconciler")?;
    let db = data.join("flotilla.db");
    let store = SqliteStore::open(
        &db,
        CredentialKey::from_bytes([7; 32]),
        Retention::default(),
        Failpoints::none(),
    )
    .await
    .context("open the store")?;
    for c in 0..sizes.clusters {
        let name = format!("cluster-{c:03}");
        let mut cluster = ClusterRecord::new(&name, Timestamp::now());
        cluster
            .labels
            .insert("fleet".to_owned(), "bench".to_owned());
        cluster
            .labels
            .insert("replicas".to_owned(), (c % REPLICA_VALUES + 1).to_string());
        cluster.server_url = Some(format!("https://{name}.example:6443"));
        cluster.kube_version = Some("v1.35.4".to_owned());
        store
            .put_cluster(&cluster)
            .await
            .context("register a cluster")?;
    }
    for i in 0..sizes.app_sets {
        declare(&store, &directory_set(i, sizes.directories)).await?;
    }
    let project: Value = serde_saphyr::from_str(PROJECT).context("the project parses")?;
    store
        .put_project(&ProjectRecord {
            name: project["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            spec: project,
            origin: Origin::Config,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        })
        .await
        .context("store the project")?;
    let publisher = Publisher::new(store, key, PublishConfig::default(), Failpoints::none());
    let bench = Bench {
        _dir: dir,
        repo,
        db,
        fetcher,
        renderer,
        reconciler,
        publisher,
    };
    bench.fetch().await?;
    Ok(bench)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to choose, so arguments are ignored.
    let sizes = Sizes {
        clusters: env_size("BENCH_CLUSTERS", 100)?,
        app_sets: env_size("BENCH_APP_SETS", 1000)?,
        directories: env_size("BENCH_DIRECTORIES", 10)?.max(1),
        helm_sets: env_size("BENCH_HELM_SETS", 100)?,
    };
    let started = Instant::now();
    let bench = setup(sizes).await?;
    println!(
        "flotilla hub benchmark: {} clusters, {} ApplicationSets ({} applications) over {} shared directories; setup {:.1} s",
        sizes.clusters,
        sizes.app_sets,
        sizes.clusters * sizes.app_sets,
        sizes.directories,
        started.elapsed().as_secs_f64()
    );
    bench.round("directory sources, first round", sizes).await?;

    second_commit(&bench.repo)?;
    for i in 0..sizes.helm_sets.min(sizes.app_sets) {
        declare(bench.store(), &helm_set(i)).await?;
    }
    bench.fetch().await?;
    bench
        .round(
            &format!(
                "incremental round: second commit, {} sets switched to Helm with per-cluster values",
                sizes.helm_sets.min(sizes.app_sets)
            ),
            sizes,
        )
        .await?;
    Ok(())
}
