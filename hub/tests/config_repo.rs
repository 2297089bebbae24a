//! The configuration repository, read from a real Git repository (made with the git CLI,
//! fetched with gix) into a real SQLite store: each commit applies all or nothing, documents
//! that leave the repository are deleted, a Git document replaces an API one of the same
//! name, and a broken commit leaves the last good configuration in place.

mod support;

use std::path::Path;

use flotilla_hub::config_repo::{self, ConfigDocument, ConfigRepoError};
use flotilla_hub::failpoint::Failpoints;
use flotilla_hub::git::{Credentials, FetchOptions, Fetcher};
use flotilla_hub::manifest_files::ManifestLimits;
use flotilla_hub::store::{
    ApplicationRecord, CredentialKey, Origin, Retention, SqliteStore, Store as _,
};
use jiff::Timestamp;
use serde_json::json;
use support::{git, write};

const PROJECT: &str = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: shop}
spec:
  sourceRepos: ['*']
  destinations: [{name: '*', namespace: 'shop'}]
";

const APP_SET: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: shop
      source: {repoURL: 'https://git.example/shop.git', path: web}
      destination: {name: '{{name}}', namespace: shop}
";

fn application(name: &str, unsupported: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}}}
spec:
  project: shop
  source: {{repoURL: 'https://git.example/shop.git', path: {name}}}
  destination: {{name: east, namespace: shop}}
{unsupported}"
    )
}

fn commit(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "--allow-empty", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: std::path::PathBuf,
    fetcher: Fetcher,
    store: SqliteStore,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("config");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        let fetcher = Fetcher::new(FetchOptions::new(dir.path().join("cache"))).expect("fetcher");
        let store = SqliteStore::open(
            &dir.path().join("hub.db"),
            CredentialKey::from_bytes([3; 32]),
            Retention::default(),
            Failpoints::none(),
        )
        .await
        .expect("store");
        Self {
            _dir: dir,
            repo,
            fetcher,
            store,
        }
    }

    /// Fetches and reads the documents under `path` at the repository's HEAD.
    fn read(&self, path: &str) -> Result<Vec<ConfigDocument>, ConfigRepoError> {
        let url = self.repo.to_str().expect("UTF-8 path");
        let cached = self.fetcher.fetch(url, &Credentials::None).expect("fetch");
        let commit = cached.resolve("HEAD").expect("HEAD resolves");
        config_repo::read(&cached, commit, path, &ManifestLimits::default())
    }

    async fn names(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let apps = self.store.applications().await.expect("apps");
        let sets = self.store.app_sets().await.expect("sets");
        let projects = self.store.projects().await.expect("projects");
        (
            apps.into_iter().map(|a| a.name).collect(),
            sets.into_iter().map(|s| s.name).collect(),
            projects.into_iter().map(|p| p.name).collect(),
        )
    }
}

#[tokio::test]
async fn each_commit_applies_all_or_nothing() {
    let fx = Fixture::new().await;
    // An application applied through the API, which the repository will take over.
    fx.store
        .put_application(&ApplicationRecord {
            name: "api".to_owned(),
            project: "shop".to_owned(),
            spec: json!({"kind": "Application"}),
            origin: Origin::Api,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        })
        .await
        .expect("api app");

    write(&fx.repo, "fleet/project.yaml", PROJECT);
    write(&fx.repo, "fleet/sets/web.yaml", APP_SET);
    write(
        &fx.repo,
        "fleet/apps.yaml",
        &format!(
            "{}---\n{}",
            application("api", ""),
            application("admin", "  revisionHistoryLimit: 3\n")
        ),
    );
    write(&fx.repo, "fleet/README.md", "not a manifest: skipped\n");
    write(&fx.repo, "other/ignored.yaml", "kind: Nothing\n");
    commit(&fx.repo, "first");

    let documents = fx.read("fleet").expect("the configuration reads");
    let applied = config_repo::apply(&fx.store, &documents, Timestamp::now())
        .await
        .expect("applies");
    assert_eq!(
        applied.stored,
        [
            "Application/api",
            "Application/admin",
            "AppProject/shop",
            "ApplicationSet/web"
        ]
    );
    assert!(
        applied
            .warnings
            .iter()
            .any(|w| w.contains("fleet/apps.yaml") && w.contains("revisionHistoryLimit")),
        "an unsupported field is named: {:?}",
        applied.warnings
    );
    assert!(
        applied
            .warnings
            .iter()
            .any(|w| w.contains("Application api replaces the one applied through the API")),
        "{:?}",
        applied.warnings
    );
    let api = fx
        .store
        .application("api")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(api.origin, Origin::Config, "Git is the source of truth");
    assert_eq!(
        fx.names().await,
        (
            vec!["admin".to_owned(), "api".to_owned()],
            vec!["web".to_owned()],
            vec!["shop".to_owned()]
        )
    );

    // A commit with one broken document changes nothing, and says which file.
    std::fs::remove_file(fx.repo.join("fleet/sets/web.yaml")).expect("rm");
    write(
        &fx.repo,
        "fleet/broken.yaml",
        "kind: Application\nmetadata: [\n",
    );
    commit(&fx.repo, "broken");
    let error = fx.read("fleet").expect_err("refused").to_string();
    assert!(error.starts_with("fleet/broken.yaml: "), "{error}");
    assert_eq!(
        fx.names().await.1,
        ["web"],
        "the last good configuration stays"
    );

    // Two documents of the same kind and name are refused, naming both files.
    std::fs::remove_file(fx.repo.join("fleet/broken.yaml")).expect("rm");
    write(&fx.repo, "fleet/again.yaml", &application("admin", ""));
    commit(&fx.repo, "duplicate");
    let error = fx.read("fleet").expect_err("refused").to_string();
    assert_eq!(
        error,
        "Application admin is declared twice: in fleet/again.yaml and in fleet/apps.yaml"
    );

    // Fixed: what left the repository is deleted, what stayed is kept.
    std::fs::remove_file(fx.repo.join("fleet/again.yaml")).expect("rm");
    write(&fx.repo, "fleet/apps.yaml", &application("admin", ""));
    commit(&fx.repo, "fixed");
    let documents = fx.read("fleet").expect("reads");
    let applied = config_repo::apply(&fx.store, &documents, Timestamp::now())
        .await
        .expect("applies");
    assert_eq!(
        applied.deleted,
        ["Application/api", "ApplicationSet/web"],
        "documents that left the repository are deleted"
    );
    assert_eq!(
        fx.names().await,
        (vec!["admin".to_owned()], vec![], vec!["shop".to_owned()])
    );
    let admin = fx
        .store
        .application("admin")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(admin.project, "shop");

    // A directory that is not in the commit is an error, not an empty configuration (which
    // would delete every application).
    let error = fx.read("flet").expect_err("refused").to_string();
    assert_eq!(error, "no directory flet in the commit");
}
