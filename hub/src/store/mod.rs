//! The hub's persistent state behind one async trait, [`Store`]: clusters, repositories
//! (credentials sealed at rest), applications and ApplicationSets as declared, pins,
//! content-addressed blobs, signed cluster states, deployed-revision history, publication
//! problems, agent status and the audit log.
//!
//! [`sqlite::SqliteStore`] is the default implementation. The trait speaks only in portable
//! values (strings, bytes, `Timestamp`, `Digest`, JSON values) so that a PostgreSQL
//! implementation is the same trait. Every method that writes more than one row does so in
//! one transaction: a crash leaves either all of it or none.
//!
//! It must not decide what to publish (that is `publish`) and never returns credentials
//! except through [`Store::repository_credentials`], the fetcher's door.

pub mod seal;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use flotilla_shared::Digest;
use flotilla_shared::state::App;
use jiff::Timestamp;
use serde_json::Value;

pub use seal::{CredentialKey, Credentials, SealError};
pub use sqlite::SqliteStore;

/// A store operation failed. Messages name what was being done and never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrate store: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("{operation}: {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{operation}: stored value {column} is invalid: {reason}")]
    Corrupt {
        operation: &'static str,
        column: &'static str,
        reason: String,
    },
    #[error(
        "store state of cluster {cluster}: generation {generation} is not above the latest stored generation {latest}"
    )]
    GenerationNotIncreasing {
        cluster: String,
        generation: u64,
        latest: u64,
    },
    #[error("store state of cluster {cluster}: blob {digest} of app {app} is not stored")]
    MissingBlob {
        cluster: String,
        app: String,
        digest: Digest,
    },
    #[error(
        "pin application {app}: revision {revision} was never deployed{}",
        cluster_suffix(.cluster)
    )]
    NotInHistory {
        app: String,
        cluster: Option<String>,
        revision: String,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
}

fn cluster_suffix(cluster: &Option<String>) -> String {
    cluster
        .as_ref()
        .map(|c| format!(" to cluster {c}"))
        .unwrap_or_default()
}

/// A member cluster as the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRecord {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The API server URL its agent reports (the `server` of a cluster generator).
    pub server_url: Option<String>,
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
    pub agent_version: Option<String>,
    pub last_seen: Option<Timestamp>,
    pub created_at: Timestamp,
    pub registration: Registration,
}

/// How a cluster's agent is admitted: approval, revocation and what was issued to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Its agent gets a certificate only once an administrator approved it.
    pub require_approval: bool,
    pub approved: bool,
    /// Revoked clusters are refused on every route from then on.
    pub revoked_at: Option<Timestamp>,
    /// SHA-256 (hex) of the registered agent key's SubjectPublicKeyInfo.
    pub key_fingerprint: Option<String>,
    /// Serials (hex) of the certificates the hub accepts, newest first: the current one and
    /// the one it replaced (still valid while a renewal's answer is on its way).
    pub cert_serials: Vec<String>,
    pub cert_not_after: Option<Timestamp>,
    pub registered_at: Option<Timestamp>,
    /// Why the agent was last refused, and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

/// A bootstrap token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// SHA-256 (hex) of the token.
    pub hash: String,
    pub cluster: String,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The key that claimed it.
    pub key_fingerprint: Option<String>,
    /// When a certificate was first issued with it.
    pub used_at: Option<Timestamp>,
}

impl ClusterRecord {
    pub fn new(name: &str, created_at: Timestamp) -> Self {
        Self {
            name: name.to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            server_url: None,
            kube_version: None,
            api_versions: Vec::new(),
            agent_version: None,
            last_seen: None,
            created_at,
            registration: Registration::default(),
        }
    }
}

/// A repository without its credentials: whether it has some is all a listing says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRecord {
    pub url: String,
    pub has_credentials: bool,
    /// How often it is fetched without a webhook; `None`: the hub's default.
    pub poll_interval: Option<std::time::Duration>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a declared object comes from: the watched configuration repository or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(Origin::Config),
            "api" => Some(Origin::Api),
            _ => None,
        }
    }
}

/// An Application as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationRecord {
    pub name: String,
    pub project: String,
    /// The document as declared (argoproj.io/v1alpha1 JSON).
    pub spec: Value,
    pub origin: Origin,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A declared AppProject.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    pub name: String,
    /// The AppProject as declared.
    pub spec: Value,
    pub origin: Origin,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An ApplicationSet as declared, with the outcome of its last generation.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSetRecord {
    pub name: String,
    pub spec: Value,
    pub origin: Origin,
    /// The application names its generators produced last time they succeeded.
    pub generated: Vec<String>,
    /// Why its generators failed last time, if they did.
    pub generator_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An application held at a revision of its history, on one cluster or (`cluster: None`)
/// on all of them. A per-cluster pin wins over an all-cluster pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub app: String,
    pub cluster: Option<String>,
    pub revision: String,
    pub pinned_by: String,
    pub pinned_at: Timestamp,
}

/// Blob bytes with their digest (computed by the caller, who already has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobBytes {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// A signed state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    pub cluster: String,
    pub generation: u64,
    /// The DSSE envelope's JSON bytes, exactly as served.
    pub envelope: Vec<u8>,
    pub payload_digest: Digest,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub published_by: String,
}

/// A state to store, with the blobs its apps name and the history it writes.
#[derive(Debug, Clone)]
pub struct NewState {
    pub state: StoredState,
    /// (app, digest) of every app of the state.
    pub blobs: Vec<(String, Digest)>,
    /// The app entries that deploy a new revision or new content with this state.
    pub deployed: Vec<App>,
}

/// One deployed revision of an application on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub app: String,
    pub cluster: String,
    pub revision: String,
    /// The app entry exactly as it was signed (source, blob digest and size included).
    pub entry: App,
    pub generation: u64,
    pub deployed_at: Timestamp,
    pub deployed_by: String,
}

/// Why an application's newest content is not what a cluster is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub app: String,
    pub message: String,
    /// The last good content is still served (false: the app is not deployed at all).
    pub kept: bool,
}

/// An agent's status report, as the agent API hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub cluster: String,
    /// Increases with every report of the agent: a lower or equal one is a duplicate.
    pub seq: u64,
    pub received_at: Timestamp,
    pub apps: Vec<AppStatus>,
    /// The report as received, kept in the bounded history.
    pub raw: Value,
}

/// The latest status of an app on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    pub app: String,
    pub generation: Option<u64>,
    pub revision: Option<String>,
    pub sync: String,
    pub health: String,
    pub message: String,
    pub objects: Vec<ObjectStatus>,
}

/// The latest status of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    /// `Kind.group namespace/name`.
    pub object: String,
    pub state: String,
    pub message: String,
}

/// One stored report of the bounded history.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusHistoryEntry {
    pub seq: u64,
    pub received_at: Timestamp,
    pub report: Value,
}

/// Who did what, when, from where. `detail` must never hold a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub who: String,
    pub action: String,
    pub subject: String,
    pub detail: Value,
    /// Through what: `api`, `dashboard`, `agent-api`, a configuration repository's URL.
    pub source: String,
    /// The client's address as the hub saw it (empty for the hub's own changes).
    pub address: String,
}

/// How much history the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Signed states kept per cluster (the newest is served; older ones are for audit).
    pub states_per_cluster: u32,
    /// Deployed revisions kept per application and cluster (pinned ones are always kept).
    pub history_per_app_cluster: u32,
    /// Status reports kept per cluster.
    pub status_reports_per_cluster: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            states_per_cluster: 5,
            history_per_app_cluster: 50,
            status_reports_per_cluster: 100,
        }
    }
}

type Res<T> = Result<T, StoreError>;

/// The hub's state. Implementations must be safe to share between tasks, must make each
/// method atomic, and must refuse a state whose generation does not increase.
pub trait Store: Send + Sync {
    // Clusters.
    /// Inserts or replaces a cluster (its `created_at` is kept when it exists).
    fn put_cluster(&self, cluster: &ClusterRecord) -> impl Future<Output = Res<()>> + Send;
    fn cluster(&self, name: &str) -> impl Future<Output = Res<Option<ClusterRecord>>> + Send;
    fn clusters(&self) -> impl Future<Output = Res<Vec<ClusterRecord>>> + Send;
    fn delete_cluster(&self, name: &str) -> impl Future<Output = Res<bool>> + Send;

    // API tokens (their hashes).
    /// Stores a new token with the audit entry of its creation.
    fn put_api_token(
        &self,
        token: &crate::auth::tokens::ApiToken,
        audit: &AuditEntry,
    ) -> impl Future<Output = Res<()>> + Send;
    fn api_token_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = Res<Option<crate::auth::tokens::ApiToken>>> + Send;
    fn api_token(
        &self,
        id: &str,
    ) -> impl Future<Output = Res<Option<crate::auth::tokens::ApiToken>>> + Send;
    /// Every token, newest first.
    fn api_tokens(&self) -> impl Future<Output = Res<Vec<crate::auth::tokens::ApiToken>>> + Send;
    /// Marks a token revoked (false when there is no live one by that id), with the audit entry.
    fn revoke_api_token(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        audit: &AuditEntry,
    ) -> impl Future<Output = Res<bool>> + Send;

    // Bootstrap tokens.
    fn put_bootstrap_token(&self, token: &BootstrapToken) -> impl Future<Output = Res<()>> + Send;
    fn bootstrap_token(
        &self,
        hash: &str,
    ) -> impl Future<Output = Res<Option<BootstrapToken>>> + Send;
    /// Claims a token for a key: true when it was unclaimed or claimed by the same key
    /// (atomic, so two keys racing for one token cannot both win). `used_at` is set on
    /// the first claim that issues a certificate.
    fn claim_bootstrap_token(
        &self,
        hash: &str,
        key_fingerprint: &str,
        issued_at: Option<Timestamp>,
    ) -> impl Future<Output = Res<bool>> + Send;

    // Repositories.
    /// Inserts or replaces a repository; `credentials` are sealed before they are written
    /// (`None` removes them).
    fn put_repository(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        poll_interval: Option<std::time::Duration>,
        at: Timestamp,
    ) -> impl Future<Output = Res<()>> + Send;
    fn repositories(&self) -> impl Future<Output = Res<Vec<RepositoryRecord>>> + Send;
    /// The repository's credentials in the clear: for the fetcher only, never for an API.
    fn repository_credentials(
        &self,
        url: &str,
    ) -> impl Future<Output = Res<Option<Credentials>>> + Send;
    fn delete_repository(&self, url: &str) -> impl Future<Output = Res<bool>> + Send;

    // Declared applications and ApplicationSets.
    fn put_application(&self, app: &ApplicationRecord) -> impl Future<Output = Res<()>> + Send;
    fn application(
        &self,
        name: &str,
    ) -> impl Future<Output = Res<Option<ApplicationRecord>>> + Send;
    fn applications(&self) -> impl Future<Output = Res<Vec<ApplicationRecord>>> + Send;
    fn delete_application(&self, name: &str) -> impl Future<Output = Res<bool>> + Send;
    /// Inserts or replaces an ApplicationSet's declaration, keeping its generation outcome.
    fn put_app_set(&self, set: &AppSetRecord) -> impl Future<Output = Res<()>> + Send;
    fn app_set(&self, name: &str) -> impl Future<Output = Res<Option<AppSetRecord>>> + Send;
    fn app_sets(&self) -> impl Future<Output = Res<Vec<AppSetRecord>>> + Send;
    fn delete_app_set(&self, name: &str) -> impl Future<Output = Res<bool>> + Send;
    /// Records a generation: on success the generated names replace the old ones and the
    /// error is cleared; on failure the old names stay (so their apps are kept) with the error.
    fn record_generation(
        &self,
        name: &str,
        outcome: Result<&[String], &str>,
        at: Timestamp,
    ) -> impl Future<Output = Res<()>> + Send;

    // AppProjects.
    /// Inserts or replaces a project's declaration (its `created_at` is kept when it exists).
    fn put_project(&self, project: &ProjectRecord) -> impl Future<Output = Res<()>> + Send;
    fn projects(&self) -> impl Future<Output = Res<Vec<ProjectRecord>>> + Send;
    fn delete_project(&self, name: &str) -> impl Future<Output = Res<bool>> + Send;

    // Pins.
    /// Pins an application; refused unless the revision is in its history (for that
    /// cluster, or for any cluster). Writes `audit` in the same transaction.
    fn pin(&self, pin: &Pin, audit: &AuditEntry) -> impl Future<Output = Res<()>> + Send;
    /// Lifts a pin; false when there was none.
    fn unpin(
        &self,
        app: &str,
        cluster: Option<&str>,
        audit: &AuditEntry,
    ) -> impl Future<Output = Res<bool>> + Send;
    fn pins(&self) -> impl Future<Output = Res<Vec<Pin>>> + Send;

    // Blobs and states.
    /// Stores blobs; a blob already stored is left as it is.
    fn put_blobs(&self, blobs: &[BlobBytes], at: Timestamp)
    -> impl Future<Output = Res<()>> + Send;
    fn blob(&self, digest: &Digest) -> impl Future<Output = Res<Option<Vec<u8>>>> + Send;
    /// A blob only if one of the cluster's retained states names it (the agent API's rule:
    /// a forbidden blob and a missing one look the same).
    fn cluster_blob(
        &self,
        cluster: &str,
        digest: &Digest,
    ) -> impl Future<Output = Res<Option<Vec<u8>>>> + Send;
    /// The newest state of a cluster: the one served.
    fn latest_state(&self, cluster: &str) -> impl Future<Output = Res<Option<StoredState>>> + Send;
    /// Every retained state of a cluster, newest first.
    fn cluster_states(&self, cluster: &str) -> impl Future<Output = Res<Vec<StoredState>>> + Send;
    /// The newest state of every cluster that has one.
    fn latest_states(&self) -> impl Future<Output = Res<Vec<StoredState>>> + Send;
    /// The newest generation of every cluster that has a state, as (cluster, generation):
    /// what a reader with a cache of decoded states needs to know what changed.
    fn latest_generations(&self) -> impl Future<Output = Res<Vec<(String, u64)>>> + Send;
    /// Stores a state, its blob references and its history entries in one transaction;
    /// refuses a generation that does not increase and a blob that is not stored. Trims old
    /// states and history to the retention.
    fn commit_state(&self, state: &NewState) -> impl Future<Output = Res<()>> + Send;
    /// Deletes blobs that no retained state or history entry names, if written before
    /// `written_before` (a younger unreferenced blob may belong to a publication under way);
    /// returns how many.
    fn collect_garbage(&self, written_before: Timestamp) -> impl Future<Output = Res<u64>> + Send;

    // History.
    /// The newest `limit` deployed revisions of an application, newest first.
    fn history(&self, app: &str, limit: u32)
    -> impl Future<Output = Res<Vec<HistoryEntry>>> + Send;
    /// The newest history entry of an application on a cluster at a revision.
    fn history_entry(
        &self,
        app: &str,
        cluster: &str,
        revision: &str,
    ) -> impl Future<Output = Res<Option<HistoryEntry>>> + Send;

    // Publication problems.
    /// Replaces the problems of a cluster (a problem that persists keeps its `since`).
    fn set_problems(
        &self,
        cluster: &str,
        problems: &[Problem],
        at: Timestamp,
    ) -> impl Future<Output = Res<()>> + Send;
    fn problems(&self, cluster: &str) -> impl Future<Output = Res<Vec<Problem>>> + Send;
    /// Every cluster's publication problems, as (cluster, problem).
    fn all_problems(&self) -> impl Future<Output = Res<Vec<(String, Problem)>>> + Send;

    // Agent status.
    /// Records a report: the latest status per app and object is replaced and the report is
    /// added to the bounded history. False (and nothing written) when its `seq` is not above
    /// the last recorded one: a duplicate.
    fn record_status(&self, report: &StatusReport) -> impl Future<Output = Res<bool>> + Send;
    fn app_statuses(&self, cluster: &str) -> impl Future<Output = Res<Vec<AppStatus>>> + Send;
    /// The latest status of every app on every cluster, as (cluster, status), without the
    /// objects: what a fleet overview needs in one read.
    fn fleet_statuses(&self) -> impl Future<Output = Res<Vec<(String, AppStatus)>>> + Send;
    /// The latest status of every app on one cluster, without the objects.
    fn cluster_statuses(&self, cluster: &str) -> impl Future<Output = Res<Vec<AppStatus>>> + Send;
    fn status_history(
        &self,
        cluster: &str,
        limit: u32,
    ) -> impl Future<Output = Res<Vec<StatusHistoryEntry>>> + Send;

    // Audit.
    fn record_audit(&self, entry: &AuditEntry) -> impl Future<Output = Res<()>> + Send;
    /// The newest `limit` entries, newest first.
    fn audit_log(&self, limit: u32) -> impl Future<Output = Res<Vec<AuditEntry>>> + Send;
}
