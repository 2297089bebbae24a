//! Reconciliation end to end on the hub's side: a real Git repository built by the git CLI,
//! fetched by the hub's fetcher, ApplicationSets generated against clusters from the SQLite
//! store, rendered with the real, pinned helm (`e2e/cluster bin helm`), published, signed and
//! stored. Without helm the test is skipped loudly, unless FLOTILLA_REQUIRE_TOOLS is set.

mod support;

use support::{copy_dir, git, tool, workspace, write};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotilla_hub::failpoint::Failpoints;
use flotilla_hub::git::{Credentials, FetchOptions, Fetcher, Rewrites};
use flotilla_hub::keygen;
use flotilla_hub::publish::{PublishConfig, PublishReport, Publisher, stored_payload};
use flotilla_hub::reconcile::{
    ClusterTarget, DeclaredConfig, ReconcileRequest, Reconciler, Reconciliation, SyncRequests,
};
use flotilla_hub::render::{RenderConfig, Renderer};
use flotilla_hub::store::{
    AppSetRecord, ApplicationRecord, ClusterRecord, CredentialKey, Origin, Problem, ProjectRecord,
    Retention, SqliteStore, Store,
};
use flotilla_shared::state::ClusterState;
use flotilla_shared::{PublicKey, SigningKey, TrustRoot};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

fn commit(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

const FLEET: &str = "https://git.example/fleet.git";
const ADDONS: &str = "https://git.example/addons.git";

/// The fleet repository: a plain directory app, podinfo's chart and per-cluster values.
fn fleet_repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    write(
        dir,
        "apps/web/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: web}\ndata: {greeting: hello}\n",
    );
    write(
        dir,
        "apps/quota/quota.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: web}\nspec: {hard: {pods: '10'}}\n",
    );
    copy_dir(
        &workspace().join("../shared/testdata/real-world/podinfo/charts/podinfo"),
        &dir.join("charts/podinfo"),
    );
    write(dir, "values/prod-east.yaml", "replicaCount: 2\n");
    write(dir, "values/prod-west.yaml", "replicaCount: 3\n");
    commit(dir, "fleet");
}

/// The add-ons repository of the Git directory generator.
fn addons_repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    write(
        dir,
        "addons/metrics/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: metrics, namespace: addons}\ndata: {on: 'yes'}\n",
    );
    commit(dir, "addons");
}

const PROJECT: &str = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: fleet}
spec:
  sourceRepos: ['https://git.example/*']
  destinations: [{name: 'prod-*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '', kind: Namespace}]
  namespaceResourceBlacklist: [{group: '', kind: ResourceQuota}]
";

const WEB: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: fleet
      source: {repoURL: 'https://git.example/fleet.git', path: apps/web, targetRevision: main}
      destination: {name: '{{name}}', namespace: web}
      syncPolicy: {automated: {prune: true}, syncOptions: [CreateNamespace=true]}
";

const PODINFO: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: podinfo}
spec:
  goTemplate: true
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'podinfo-{{.name}}'}
    spec:
      project: fleet
      source:
        repoURL: 'https://git.example/fleet.git'
        path: charts/podinfo
        helm: {valueFiles: ['/values/{{.name}}.yaml']}
      destination: {server: '{{.server}}', namespace: podinfo}
      syncPolicy: {automated: {}}
      ignoreDifferences: [{group: apps, kind: Deployment, jsonPointers: [/spec/replicas]}]
";

fn addons_set(repo_url: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: addons}}
spec:
  generators: [{{git: {{repoURL: '{repo_url}', directories: [{{path: 'addons/*'}}]}}}}]
  template:
    metadata: {{name: 'addon-{{{{path.basename}}}}'}}
    spec:
      project: fleet
      source: {{repoURL: '{repo_url}', path: '{{{{path}}}}'}}
      destination: {{name: prod-west, namespace: addons}}
      syncPolicy: {{automated: {{}}}}
"
    )
}

fn application(name: &str, path: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}}}
spec:
  project: fleet
  source: {{repoURL: 'https://git.example/fleet.git', path: '{path}'}}
  destination: {{name: prod-east, namespace: web}}
  syncPolicy: {{automated: {{}}}}
"
    )
}

fn document(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).expect("a YAML document")
}

struct Hub {
    _dirs: tempfile::TempDir,
    fleet: PathBuf,
    fetcher: Fetcher,
    reconciler: Reconciler,
    renderer: Arc<Renderer>,
    publisher: Publisher<SqliteStore>,
    public_key: PublicKey,
}

impl Hub {
    async fn new(helm: PathBuf) -> Self {
        let dirs = tempfile::tempdir().expect("temp dir");
        let fleet = dirs.path().join("fleet");
        let addons = dirs.path().join("addons");
        fleet_repo(&fleet);
        addons_repo(&addons);

        let mut options = FetchOptions::new(dirs.path().join("cache"));
        options.rewrites = Rewrites::default()
            .with(FLEET, fleet.to_str().expect("UTF-8"))
            .with(ADDONS, addons.to_str().expect("UTF-8"));
        let fetcher = Fetcher::new(options).expect("fetcher");
        let renderer = Arc::new(
            Renderer::new(RenderConfig {
                helm,
                ..RenderConfig::default()
            })
            .expect("renderer"),
        );
        let reconciler = Reconciler::new(fetcher.clone(), renderer.clone(), Some(dirs.path()))
            .expect("reconciler");

        // The hub's key pair, as `flotilla-hub keygen` writes it.
        let keys = dirs.path().join("keys");
        std::fs::create_dir_all(&keys).expect("mkdir");
        let key = SigningKey::from_seed([42; 32]);
        keygen::write_key_pair(&keys, &key).expect("key pair");
        let public_key = PublicKey::from_spki_pem(
            &std::fs::read_to_string(keys.join(keygen::PUBLIC_KEY_FILE)).expect("public key"),
        )
        .expect("a public key");

        let store = SqliteStore::open(
            &dirs.path().join("flotilla.db"),
            CredentialKey::from_bytes([3; 32]),
            Retention::default(),
            Failpoints::none(),
        )
        .await
        .expect("store opens");
        for (name, env) in [("prod-east", "prod"), ("prod-west", "prod"), ("lab", "dev")] {
            let mut cluster = ClusterRecord::new(name, Timestamp::now());
            cluster.labels.insert("env".to_owned(), env.to_owned());
            cluster.server_url = Some(format!("https://{name}.example:6443"));
            cluster.kube_version = Some("v1.35.4".to_owned());
            store.put_cluster(&cluster).await.expect("cluster");
        }
        let project = document(PROJECT);
        store
            .put_project(&ProjectRecord {
                name: project["metadata"]["name"]
                    .as_str()
                    .expect("a name")
                    .to_owned(),
                spec: project,
                origin: Origin::Config,
                created_at: Timestamp::now(),
                updated_at: Timestamp::now(),
            })
            .await
            .expect("project stored");
        let publisher = Publisher::new(store, key, PublishConfig::default(), Failpoints::none());
        let hub = Hub {
            _dirs: dirs,
            fleet,
            fetcher,
            reconciler,
            renderer,
            publisher,
            public_key,
        };
        hub.fetch().await;
        hub
    }

    fn store(&self) -> &SqliteStore {
        self.publisher.store()
    }

    /// What the scheduler or a webhook does: fetch both repositories.
    async fn fetch(&self) {
        let fetcher = self.fetcher.clone();
        tokio::task::spawn_blocking(move || {
            for url in [FLEET, ADDONS] {
                fetcher.fetch(url, &Credentials::None).expect("fetch");
            }
        })
        .await
        .expect("fetch task");
    }

    async fn declare_set(&self, yaml: &str) {
        let spec = document(yaml);
        let name = spec["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        self.store()
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
            .expect("app set stored");
    }

    async fn declare_app(&self, yaml: &str) {
        let spec = document(yaml);
        self.store()
            .put_application(&ApplicationRecord {
                name: spec["metadata"]["name"]
                    .as_str()
                    .expect("a name")
                    .to_owned(),
                project: "fleet".to_owned(),
                spec,
                origin: Origin::Config,
                created_at: Timestamp::now(),
                updated_at: Timestamp::now(),
            })
            .await
            .expect("application stored");
    }

    /// One round of the hub: load, reconcile, record, publish.
    async fn round(&self, at: Timestamp) -> (Reconciliation, PublishReport) {
        let store = self.store();
        let config = DeclaredConfig::load(store)
            .await
            .expect("configuration loads");
        let clusters: Vec<ClusterTarget> = store
            .clusters()
            .await
            .expect("clusters")
            .iter()
            .map(ClusterTarget::from)
            .collect();
        let served: BTreeSet<String> = store
            .latest_states()
            .await
            .expect("states")
            .into_iter()
            .map(|s| s.cluster)
            .collect();
        let pins = store.pins().await.expect("pins");
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
        reconciliation.record(store, at).await.expect("recorded");
        let report = self
            .publisher
            .publish(reconciliation.inputs.clone(), "test", at)
            .await
            .expect("published");
        (reconciliation, report)
    }

    /// The served state of `cluster`, checked as an agent checks it.
    async fn served(&self, cluster: &str) -> Option<ClusterState> {
        let stored = self.store().latest_state(cluster).await.expect("read")?;
        let verified = flotilla_shared::verify(
            &stored.envelope,
            &TrustRoot::new([self.public_key.clone()]),
            cluster,
            None,
            Timestamp::now(),
        )
        .unwrap_or_else(|e| panic!("the state of {cluster} verifies: {e}"));
        assert_eq!(verified.state, stored_payload(&stored).expect("readable"));
        for app in &verified.state.apps {
            let blob = self
                .store()
                .cluster_blob(cluster, &app.blob.digest)
                .await
                .expect("read blob")
                .expect("the blob is stored");
            flotilla_shared::verify_blob(app, &blob).expect("the blob verifies");
        }
        Some(verified.state)
    }

    async fn objects(&self, state: &ClusterState, app: &str) -> Vec<Value> {
        let app = state.app(app).expect("the app");
        let blob = self
            .store()
            .blob(&app.blob.digest)
            .await
            .expect("read")
            .expect("stored");
        flotilla_shared::verify_blob(app, &blob)
            .expect("verifies")
            .objects
    }
}

fn app_names(state: &ClusterState) -> Vec<&str> {
    state.apps.iter().map(|a| a.name.as_str()).collect()
}

fn replicas(objects: &[Value]) -> Value {
    objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")["spec"]["replicas"]
        .clone()
}

fn problems_of(report: &PublishReport, cluster: &str) -> Vec<Problem> {
    report
        .clusters
        .iter()
        .find(|c| c.cluster == cluster)
        .map(|c| c.problems.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_reconciles_publishes_and_isolates_failures() {
    let Some(helm) = tool("helm") else {
        return;
    };
    let hub = Hub::new(helm).await;
    hub.declare_set(WEB).await;
    hub.declare_set(PODINFO).await;
    hub.declare_set(&addons_set(ADDONS)).await;

    // First round: the label selector picks the two prod clusters.
    let t1 = Timestamp::now();
    let (reconciliation, report) = hub.round(t1).await;
    assert!(
        reconciliation.problems.is_empty(),
        "{:?}",
        reconciliation.problems
    );
    let east = hub.served("prod-east").await.expect("prod-east is served");
    let west = hub.served("prod-west").await.expect("prod-west is served");
    assert!(hub.served("lab").await.is_none(), "lab is not env=prod");
    assert_eq!(app_names(&east), ["podinfo-prod-east", "web-prod-east"]);
    assert_eq!(
        app_names(&west),
        ["addon-metrics", "podinfo-prod-west", "web-prod-west"]
    );

    // Per-cluster Helm values, sync policy, limits and ignoreDifferences are carried.
    let east_podinfo = hub.objects(&east, "podinfo-prod-east").await;
    let west_podinfo = hub.objects(&west, "podinfo-prod-west").await;
    assert_eq!(replicas(&east_podinfo), 2);
    assert_eq!(replicas(&west_podinfo), 3);
    let web = east.app("web-prod-east").expect("web");
    assert!(web.sync_policy.automated && web.sync_policy.prune && web.sync_policy.create_namespace);
    let limits = web.limits.as_ref().expect("project limits");
    assert_eq!(limits.namespaces.as_deref(), Some(&["*".to_owned()][..]));
    assert_eq!(
        serde_json::to_string(&limits.cluster_resources).expect("json"),
        r#"[{"group":"","kind":"Namespace"}]"#
    );
    let podinfo = east.app("podinfo-prod-east").expect("podinfo");
    assert_eq!(
        podinfo.ignore_differences[0].json_pointers,
        ["/spec/replicas"]
    );
    assert_eq!(podinfo.source.repo_url, FLEET);
    assert_eq!(podinfo.source.revision.len(), 40, "a commit id");

    // Identical renders run once: web once for both clusters, podinfo once per cluster (its
    // values differ), the add-on once. A blob is content only, so web-prod-east and
    // web-prod-west, the same objects under two names, are one blob.
    assert_eq!(hub.renderer.renders_executed(), 4);
    assert_eq!(
        hub.objects(&east, "web-prod-east").await,
        hub.objects(&west, "web-prod-west").await
    );
    assert_eq!(
        east.app("web-prod-east").expect("app").blob,
        west.app("web-prod-west").expect("app").blob
    );
    assert_eq!(report.blobs_written, 4);
    let generated = hub
        .store()
        .app_set("addons")
        .await
        .expect("read")
        .expect("set");
    assert_eq!(generated.generated, ["addon-metrics"]);

    // A second commit changes prod-east's values: only prod-east gets a new generation.
    write(&hub.fleet, "values/prod-east.yaml", "replicaCount: 4\n");
    commit(&hub.fleet, "scale prod-east");
    hub.fetch().await;
    let t2 = t1 + SignedDuration::from_secs(60);
    let (_, report) = hub.round(t2).await;
    let east2 = hub.served("prod-east").await.expect("served");
    let west2 = hub.served("prod-west").await.expect("served");
    assert!(east2.generation > east.generation);
    assert_eq!(west2.generation, west.generation, "prod-west is untouched");
    assert_eq!(west2, west);
    assert_eq!(replicas(&hub.objects(&east2, "podinfo-prod-east").await), 4);
    assert_ne!(
        east2
            .app("podinfo-prod-east")
            .expect("podinfo")
            .source
            .revision,
        podinfo.source.revision
    );
    assert_eq!(east2.app("web-prod-east"), east.app("web-prod-east"));
    assert_eq!(report.blobs_written, 1);

    // A broken app and a refused one fail alone, naming themselves; the rest still publish.
    hub.declare_app(&application("broken", "../outside")).await;
    hub.declare_app(&application("quota", "apps/quota")).await;
    write(
        &hub.fleet,
        "apps/web/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: web}\ndata: {greeting: bonjour}\n",
    );
    commit(&hub.fleet, "greet in French");
    hub.fetch().await;
    let t3 = t2 + SignedDuration::from_secs(60);
    let (_, report) = hub.round(t3).await;
    let east3 = hub.served("prod-east").await.expect("served");
    assert_eq!(app_names(&east3), ["podinfo-prod-east", "web-prod-east"]);
    let greeting = hub.objects(&east3, "web-prod-east").await;
    assert_eq!(greeting[0]["data"]["greeting"], "bonjour");
    let problems = problems_of(&report, "prod-east");
    let broken = problems
        .iter()
        .find(|p| p.app == "broken")
        .expect("broken is reported");
    assert!(!broken.kept);
    assert!(
        broken
            .message
            .starts_with("render application broken: source path \"../outside\""),
        "{}",
        broken.message
    );
    let quota = problems
        .iter()
        .find(|p| p.app == "quota")
        .expect("quota is reported");
    assert_eq!(
        quota.message,
        "application quota: ResourceQuota web/q is of kind ResourceQuota, which project fleet does not allow (namespaceResourceBlacklist)"
    );
    assert_eq!(
        hub.store()
            .problems("prod-east")
            .await
            .expect("problems")
            .len(),
        2
    );

    // The add-ons set now points at a repository that does not exist: it keeps the app it
    // generated before, and says why.
    hub.declare_set(&addons_set("https://git.example/missing.git"))
        .await;
    let t4 = t3 + SignedDuration::from_secs(60);
    let (reconciliation, report) = hub.round(t4).await;
    let west4 = hub.served("prod-west").await.expect("served");
    assert_eq!(
        app_names(&west4),
        ["addon-metrics", "podinfo-prod-west", "web-prod-west"]
    );
    assert_eq!(west4.app("addon-metrics"), west.app("addon-metrics"));
    let failure = reconciliation
        .problems
        .iter()
        .find(|p| p.subject == "application set addons")
        .expect("the failing set is reported");
    assert!(
        failure
            .message
            .contains("repository https://git.example/missing.git"),
        "{}",
        failure.message
    );
    let kept = problems_of(&report, "prod-west");
    assert!(
        kept.iter().any(|p| p.app == "addon-metrics"
            && p.kept
            && p.message
                .contains("application set addons failed to generate")),
        "{kept:?}"
    );
    let set = hub
        .store()
        .app_set("addons")
        .await
        .expect("read")
        .expect("set");
    assert_eq!(set.generated, ["addon-metrics"]);
    assert!(
        set.generator_error
            .is_some_and(|e| e.contains("missing.git"))
    );
}
