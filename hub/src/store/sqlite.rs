//! [`Store`] on SQLite, the default: one database file in the data directory, WAL journal,
//! `synchronous = FULL`, foreign keys on, migrations embedded from `hub/migrations/sqlite`.
//!
//! Every multi-row write is one `BEGIN IMMEDIATE` transaction (it takes the write lock up
//! front, so two writers queue on the busy timeout instead of failing to upgrade a read
//! lock). The SQL is kept portable (`$n` parameters, `ON CONFLICT … DO UPDATE`, no SQLite
//! functions) so a PostgreSQL store can share it. Talks to the disk; decides nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use flotilla_shared::Digest;
use jiff::Timestamp;
use serde_json::Value;
use sqlx::Row as _;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use tracing::instrument;

use super::{
    AppSetRecord, AppStatus, ApplicationRecord, AuditEntry, BlobBytes, BootstrapToken,
    ClusterRecord, CredentialKey, Credentials, HistoryEntry, NewState, ObjectStatus, Origin, Pin,
    Problem, ProjectRecord, Registration, RepositoryRecord, Retention, StatusHistoryEntry,
    StatusReport, Store, StoreError, StoredState,
};
use crate::auth::tokens::ApiToken;
use crate::failpoint::{self, Failpoints};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "flotilla.db";

/// The SQLite store. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    key: std::sync::Arc<CredentialKey>,
    retention: Retention,
    failpoints: Failpoints,
}

fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

fn corrupt(operation: &'static str, column: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        operation,
        column,
        reason: reason.to_string(),
    }
}

fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

fn from_ms(
    operation: &'static str,
    column: &'static str,
    ms: i64,
) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|e| corrupt(operation, column, e))
}

fn opt_ms(
    operation: &'static str,
    column: &'static str,
    ms: Option<i64>,
) -> Result<Option<Timestamp>, StoreError> {
    ms.map(|ms| from_ms(operation, column, ms)).transpose()
}

fn to_i64(operation: &'static str, column: &'static str, n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|e| corrupt(operation, column, e))
}

fn to_u64(operation: &'static str, column: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|e| corrupt(operation, column, e))
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps, lists and JSON values always serialize")
}

fn from_json<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    column: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(operation, column, e))
}

fn get<'r, T>(
    row: &'r SqliteRow,
    operation: &'static str,
    column: &'static str,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(query(operation))
}

fn digest(operation: &'static str, column: &'static str, text: &str) -> Result<Digest, StoreError> {
    Digest::from_str(text).map_err(|e| corrupt(operation, column, e))
}

fn origin(operation: &'static str, text: &str) -> Result<Origin, StoreError> {
    Origin::parse(text)
        .ok_or_else(|| corrupt(operation, "origin", format!("unknown origin {text:?}")))
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and applies pending migrations.
    pub async fn open(
        path: &Path,
        key: CredentialKey,
        retention: Retention,
        failpoints: Failpoints,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self {
            pool,
            key: std::sync::Arc::new(key),
            retention,
            failpoints,
        })
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(
        &self,
        operation: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(query(operation))
    }

    fn cluster_row(row: &SqliteRow) -> Result<ClusterRecord, StoreError> {
        const OP: &str = "read cluster";
        Ok(ClusterRecord {
            name: get(row, OP, "name")?,
            labels: from_json(OP, "labels", &get::<String>(row, OP, "labels")?)?,
            annotations: from_json(OP, "annotations", &get::<String>(row, OP, "annotations")?)?,
            server_url: get(row, OP, "server_url")?,
            kube_version: get(row, OP, "kube_version")?,
            api_versions: from_json(OP, "api_versions", &get::<String>(row, OP, "api_versions")?)?,
            agent_version: get(row, OP, "agent_version")?,
            last_seen: get::<Option<i64>>(row, OP, "last_seen")?
                .map(|t| from_ms(OP, "last_seen", t))
                .transpose()?,
            created_at: from_ms(OP, "created_at", get(row, OP, "created_at")?)?,
            registration: Registration {
                require_approval: get(row, OP, "require_approval")?,
                approved: get(row, OP, "approved")?,
                revoked_at: opt_ms(OP, "revoked_at", get(row, OP, "revoked_at")?)?,
                key_fingerprint: get(row, OP, "key_fingerprint")?,
                cert_serials: from_json(
                    OP,
                    "cert_serials",
                    &get::<String>(row, OP, "cert_serials")?,
                )?,
                cert_not_after: opt_ms(OP, "cert_not_after", get(row, OP, "cert_not_after")?)?,
                registered_at: opt_ms(OP, "registered_at", get(row, OP, "registered_at")?)?,
                last_error: get(row, OP, "last_error")?,
                last_error_at: opt_ms(OP, "last_error_at", get(row, OP, "last_error_at")?)?,
            },
        })
    }

    fn application_row(row: &SqliteRow) -> Result<ApplicationRecord, StoreError> {
        const OP: &str = "read application";
        Ok(ApplicationRecord {
            name: get(row, OP, "name")?,
            project: get(row, OP, "project")?,
            spec: from_json(OP, "spec", &get::<String>(row, OP, "spec")?)?,
            origin: origin(OP, &get::<String>(row, OP, "origin")?)?,
            created_at: from_ms(OP, "created_at", get(row, OP, "created_at")?)?,
            updated_at: from_ms(OP, "updated_at", get(row, OP, "updated_at")?)?,
        })
    }

    fn app_set_row(row: &SqliteRow) -> Result<AppSetRecord, StoreError> {
        const OP: &str = "read application set";
        Ok(AppSetRecord {
            name: get(row, OP, "name")?,
            spec: from_json(OP, "spec", &get::<String>(row, OP, "spec")?)?,
            origin: origin(OP, &get::<String>(row, OP, "origin")?)?,
            generated: from_json(OP, "generated", &get::<String>(row, OP, "generated")?)?,
            generator_error: get(row, OP, "generator_error")?,
            created_at: from_ms(OP, "created_at", get(row, OP, "created_at")?)?,
            updated_at: from_ms(OP, "updated_at", get(row, OP, "updated_at")?)?,
        })
    }

    fn state_row(row: &SqliteRow) -> Result<StoredState, StoreError> {
        const OP: &str = "read cluster state";
        Ok(StoredState {
            cluster: get(row, OP, "cluster")?,
            generation: to_u64(OP, "generation", get(row, OP, "generation")?)?,
            envelope: get(row, OP, "envelope")?,
            payload_digest: digest(
                OP,
                "payload_digest",
                &get::<String>(row, OP, "payload_digest")?,
            )?,
            issued_at: from_ms(OP, "issued_at", get(row, OP, "issued_at")?)?,
            expires_at: from_ms(OP, "expires_at", get(row, OP, "expires_at")?)?,
            published_by: get(row, OP, "published_by")?,
        })
    }

    fn problem_row(row: &SqliteRow) -> Result<Problem, StoreError> {
        const OP: &str = "read publication problems";
        Ok(Problem {
            app: get(row, OP, "app")?,
            message: get(row, OP, "message")?,
            kept: get(row, OP, "kept")?,
        })
    }

    fn app_status_row(
        row: &SqliteRow,
        objects: Vec<ObjectStatus>,
    ) -> Result<AppStatus, StoreError> {
        const OP: &str = "read status";
        Ok(AppStatus {
            app: get(row, OP, "app")?,
            generation: get::<Option<i64>>(row, OP, "generation")?
                .map(|g| to_u64(OP, "generation", g))
                .transpose()?,
            revision: get(row, OP, "revision")?,
            sync: get(row, OP, "sync")?,
            health: get(row, OP, "health")?,
            message: get(row, OP, "message")?,
            objects,
        })
    }

    fn history_row(row: &SqliteRow) -> Result<HistoryEntry, StoreError> {
        const OP: &str = "read history";
        Ok(HistoryEntry {
            app: get(row, OP, "app")?,
            cluster: get(row, OP, "cluster")?,
            revision: get(row, OP, "revision")?,
            entry: from_json(OP, "entry", &get::<String>(row, OP, "entry")?)?,
            generation: to_u64(OP, "generation", get(row, OP, "generation")?)?,
            deployed_at: from_ms(OP, "deployed_at", get(row, OP, "deployed_at")?)?,
            deployed_by: get(row, OP, "deployed_by")?,
        })
    }

    fn audit_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
        const OP: &str = "read audit log";
        Ok(AuditEntry {
            at: from_ms(OP, "at", get(row, OP, "at")?)?,
            who: get(row, OP, "who")?,
            action: get(row, OP, "action")?,
            subject: get(row, OP, "subject")?,
            detail: from_json(OP, "detail", &get::<String>(row, OP, "detail")?)?,
            source: get(row, OP, "source")?,
            address: get(row, OP, "address")?,
        })
    }

    /// The one token `select` (a query with one parameter) finds.
    async fn api_token_where(
        &self,
        select: &'static str,
        value: &str,
    ) -> Result<Option<ApiToken>, StoreError> {
        sqlx::query(select)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read API token"))?
            .as_ref()
            .map(Self::api_token_row)
            .transpose()
    }

    fn api_token_row(row: &SqliteRow) -> Result<ApiToken, StoreError> {
        const OP: &str = "read API token";
        let revoked_at = opt_ms(OP, "revoked_at", get(row, OP, "revoked_at")?)?;
        let revoked_by: Option<String> = get(row, OP, "revoked_by")?;
        Ok(ApiToken {
            id: get(row, OP, "id")?,
            name: get(row, OP, "name")?,
            hash: get(row, OP, "token_hash")?,
            grants: from_json(OP, "grants", &get::<String>(row, OP, "grants")?)?,
            created_at: from_ms(OP, "created_at", get(row, OP, "created_at")?)?,
            created_by: get(row, OP, "created_by")?,
            expires_at: from_ms(OP, "expires_at", get(row, OP, "expires_at")?)?,
            revoked: revoked_at.map(|at| (at, revoked_by.unwrap_or_default())),
        })
    }
}

async fn insert_audit(
    conn: &mut sqlx::SqliteConnection,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, who, action, subject, detail, source, address)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ms(entry.at))
    .bind(&entry.who)
    .bind(&entry.action)
    .bind(&entry.subject)
    .bind(json_text(&entry.detail))
    .bind(&entry.source)
    .bind(&entry.address)
    .execute(conn)
    .await
    .map_err(query("write audit entry"))?;
    Ok(())
}

impl Store for SqliteStore {
    async fn put_cluster(&self, c: &ClusterRecord) -> Result<(), StoreError> {
        let r = &c.registration;
        sqlx::query(
            "INSERT INTO clusters (name, labels, annotations, server_url, kube_version, api_versions,
                                   agent_version, last_seen, created_at, require_approval, approved,
                                   revoked_at, key_fingerprint, cert_serials, cert_not_after,
                                   registered_at, last_error, last_error_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (name) DO UPDATE SET labels = excluded.labels,
                 annotations = excluded.annotations, server_url = excluded.server_url,
                 kube_version = excluded.kube_version, api_versions = excluded.api_versions,
                 agent_version = excluded.agent_version, last_seen = excluded.last_seen,
                 require_approval = excluded.require_approval, approved = excluded.approved,
                 revoked_at = excluded.revoked_at, key_fingerprint = excluded.key_fingerprint,
                 cert_serials = excluded.cert_serials, cert_not_after = excluded.cert_not_after,
                 registered_at = excluded.registered_at, last_error = excluded.last_error,
                 last_error_at = excluded.last_error_at",
        )
        .bind(&c.name)
        .bind(json_text(&c.labels))
        .bind(json_text(&c.annotations))
        .bind(&c.server_url)
        .bind(&c.kube_version)
        .bind(json_text(&c.api_versions))
        .bind(&c.agent_version)
        .bind(c.last_seen.map(ms))
        .bind(ms(c.created_at))
        .bind(r.require_approval)
        .bind(r.approved)
        .bind(r.revoked_at.map(ms))
        .bind(&r.key_fingerprint)
        .bind(json_text(&r.cert_serials))
        .bind(r.cert_not_after.map(ms))
        .bind(r.registered_at.map(ms))
        .bind(&r.last_error)
        .bind(r.last_error_at.map(ms))
        .execute(&self.pool)
        .await
        .map_err(query("write cluster"))?;
        Ok(())
    }

    async fn cluster(&self, name: &str) -> Result<Option<ClusterRecord>, StoreError> {
        sqlx::query("SELECT * FROM clusters WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read cluster"))?
            .as_ref()
            .map(Self::cluster_row)
            .transpose()
    }

    async fn clusters(&self) -> Result<Vec<ClusterRecord>, StoreError> {
        sqlx::query("SELECT * FROM clusters ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(query("list clusters"))?
            .iter()
            .map(Self::cluster_row)
            .collect()
    }

    async fn delete_cluster(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM clusters WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("delete cluster"))?;
        Ok(done.rows_affected() > 0)
    }

    #[instrument(skip_all, fields(repository = url))]
    async fn put_repository(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        poll_interval: Option<std::time::Duration>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let sealed = credentials.map(|c| self.key.seal(url, c));
        let poll_seconds = poll_interval.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        sqlx::query(
            "INSERT INTO repositories (url, credentials, poll_interval_seconds, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (url) DO UPDATE SET credentials = excluded.credentials,
                 poll_interval_seconds = excluded.poll_interval_seconds,
                 updated_at = excluded.updated_at",
        )
        .bind(url)
        .bind(sealed)
        .bind(poll_seconds)
        .bind(ms(at))
        .execute(&self.pool)
        .await
        .map_err(query("write repository"))?;
        Ok(())
    }

    async fn repositories(&self) -> Result<Vec<RepositoryRecord>, StoreError> {
        const OP: &str = "list repositories";
        sqlx::query(
            "SELECT url, credentials IS NOT NULL AS has_credentials, poll_interval_seconds,
                 created_at, updated_at
             FROM repositories ORDER BY url",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query(OP))?
        .iter()
        .map(|row| {
            Ok(RepositoryRecord {
                url: get(row, OP, "url")?,
                has_credentials: get(row, OP, "has_credentials")?,
                poll_interval: get::<Option<i64>>(row, OP, "poll_interval_seconds")?
                    .map(|s| Duration::from_secs(s.max(0).unsigned_abs())),
                created_at: from_ms(OP, "created_at", get(row, OP, "created_at")?)?,
                updated_at: from_ms(OP, "updated_at", get(row, OP, "updated_at")?)?,
            })
        })
        .collect()
    }

    #[instrument(skip_all, fields(repository = url))]
    async fn repository_credentials(&self, url: &str) -> Result<Option<Credentials>, StoreError> {
        let sealed: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT credentials FROM repositories WHERE url = $1")
                .bind(url)
                .fetch_optional(&self.pool)
                .await
                .map_err(query("read repository credentials"))?;
        match sealed.flatten() {
            None => Ok(None),
            Some(sealed) => Ok(Some(self.key.open(url, &sealed)?)),
        }
    }

    async fn delete_repository(&self, url: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM repositories WHERE url = $1")
            .bind(url)
            .execute(&self.pool)
            .await
            .map_err(query("delete repository"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_application(&self, app: &ApplicationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO applications (name, project, spec, origin, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET project = excluded.project, spec = excluded.spec,
                 origin = excluded.origin, updated_at = excluded.updated_at",
        )
        .bind(&app.name)
        .bind(&app.project)
        .bind(json_text(&app.spec))
        .bind(app.origin.as_str())
        .bind(ms(app.created_at))
        .bind(ms(app.updated_at))
        .execute(&self.pool)
        .await
        .map_err(query("write application"))?;
        Ok(())
    }

    async fn application(&self, name: &str) -> Result<Option<ApplicationRecord>, StoreError> {
        sqlx::query("SELECT * FROM applications WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read application"))?
            .as_ref()
            .map(Self::application_row)
            .transpose()
    }

    async fn applications(&self) -> Result<Vec<ApplicationRecord>, StoreError> {
        sqlx::query("SELECT * FROM applications ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(query("list applications"))?
            .iter()
            .map(Self::application_row)
            .collect()
    }

    async fn delete_application(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM applications WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("delete application"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_api_token(&self, token: &ApiToken, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("begin"))?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, grants, created_at, created_by,
                                     expires_at, revoked_at, revoked_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.hash)
        .bind(json_text(&token.grants))
        .bind(ms(token.created_at))
        .bind(&token.created_by)
        .bind(ms(token.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(query("write API token"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(query("commit API token"))?;
        Ok(())
    }

    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        self.api_token_where("SELECT * FROM api_tokens WHERE token_hash = $1", hash)
            .await
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        self.api_token_where("SELECT * FROM api_tokens WHERE id = $1", id)
            .await
    }

    async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        sqlx::query("SELECT * FROM api_tokens ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await
            .map_err(query("read API tokens"))?
            .iter()
            .map(Self::api_token_row)
            .collect()
    }

    async fn revoke_api_token(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("begin"))?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2, revoked_by = $3
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(ms(at))
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(query("revoke API token"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(query("commit API token revocation"))?;
        Ok(true)
    }

    async fn put_bootstrap_token(&self, token: &BootstrapToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bootstrap_tokens (token_hash, cluster, expires_at, created_at, created_by,
                                           key_fingerprint, used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.hash)
        .bind(&token.cluster)
        .bind(ms(token.expires_at))
        .bind(ms(token.created_at))
        .bind(&token.created_by)
        .bind(&token.key_fingerprint)
        .bind(token.used_at.map(ms))
        .execute(&self.pool)
        .await
        .map_err(query("write bootstrap token"))?;
        Ok(())
    }

    async fn bootstrap_token(&self, hash: &str) -> Result<Option<BootstrapToken>, StoreError> {
        const OP: &str = "read bootstrap token";
        let Some(row) = sqlx::query("SELECT * FROM bootstrap_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(query(OP))?
        else {
            return Ok(None);
        };
        Ok(Some(BootstrapToken {
            hash: get(&row, OP, "token_hash")?,
            cluster: get(&row, OP, "cluster")?,
            expires_at: from_ms(OP, "expires_at", get(&row, OP, "expires_at")?)?,
            created_at: from_ms(OP, "created_at", get(&row, OP, "created_at")?)?,
            created_by: get(&row, OP, "created_by")?,
            key_fingerprint: get(&row, OP, "key_fingerprint")?,
            used_at: opt_ms(OP, "used_at", get(&row, OP, "used_at")?)?,
        }))
    }

    async fn claim_bootstrap_token(
        &self,
        hash: &str,
        key_fingerprint: &str,
        issued_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE bootstrap_tokens SET key_fingerprint = $2,
                 used_at = COALESCE(used_at, $3)
             WHERE token_hash = $1 AND (key_fingerprint IS NULL OR key_fingerprint = $2)",
        )
        .bind(hash)
        .bind(key_fingerprint)
        .bind(issued_at.map(ms))
        .execute(&self.pool)
        .await
        .map_err(query("claim bootstrap token"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_project(&self, project: &ProjectRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO projects (name, spec, origin, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, origin = excluded.origin,
                 updated_at = excluded.updated_at",
        )
        .bind(&project.name)
        .bind(json_text(&project.spec))
        .bind(project.origin.as_str())
        .bind(ms(project.created_at))
        .bind(ms(project.updated_at))
        .execute(&self.pool)
        .await
        .map_err(query("write project"))?;
        Ok(())
    }

    async fn projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        const OP: &str = "list projects";
        sqlx::query("SELECT * FROM projects ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| {
                Ok(ProjectRecord {
                    name: get(row, OP, "name")?,
                    spec: from_json(OP, "spec", &get::<String>(row, OP, "spec")?)?,
                    origin: origin(OP, &get::<String>(row, OP, "origin")?)?,
                    created_at: from_ms(OP, "created_at", get(row, OP, "created_at")?)?,
                    updated_at: from_ms(OP, "updated_at", get(row, OP, "updated_at")?)?,
                })
            })
            .collect()
    }

    async fn delete_project(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM projects WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("delete project"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_app_set(&self, set: &AppSetRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO app_sets (name, spec, origin, generated, generator_error, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, origin = excluded.origin,
                 updated_at = excluded.updated_at",
        )
        .bind(&set.name)
        .bind(json_text(&set.spec))
        .bind(set.origin.as_str())
        .bind(json_text(&set.generated))
        .bind(&set.generator_error)
        .bind(ms(set.created_at))
        .bind(ms(set.updated_at))
        .execute(&self.pool)
        .await
        .map_err(query("write application set"))?;
        Ok(())
    }

    async fn app_set(&self, name: &str) -> Result<Option<AppSetRecord>, StoreError> {
        sqlx::query("SELECT * FROM app_sets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read application set"))?
            .as_ref()
            .map(Self::app_set_row)
            .transpose()
    }

    async fn app_sets(&self) -> Result<Vec<AppSetRecord>, StoreError> {
        sqlx::query("SELECT * FROM app_sets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(query("list application sets"))?
            .iter()
            .map(Self::app_set_row)
            .collect()
    }

    async fn delete_app_set(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM app_sets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("delete application set"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_generation(
        &self,
        name: &str,
        outcome: Result<&[String], &str>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let done = match outcome {
            Ok(generated) => sqlx::query(
                "UPDATE app_sets SET generated = $2, generator_error = NULL, updated_at = $3
                 WHERE name = $1",
            )
            .bind(name)
            .bind(json_text(&generated))
            .bind(ms(at)),
            Err(error) => sqlx::query(
                "UPDATE app_sets SET generator_error = $2, updated_at = $3 WHERE name = $1",
            )
            .bind(name)
            .bind(error)
            .bind(ms(at)),
        }
        .execute(&self.pool)
        .await
        .map_err(query("record application set generation"))?;
        if done.rows_affected() == 0 {
            return Err(corrupt(
                "record application set generation",
                "name",
                format!("application set {name} is not stored"),
            ));
        }
        Ok(())
    }

    #[instrument(skip_all, fields(app = %pin.app, cluster = ?pin.cluster, revision = %pin.revision))]
    async fn pin(&self, pin: &Pin, audit: &AuditEntry) -> Result<(), StoreError> {
        const OP: &str = "pin application";
        let mut tx = self.begin(OP).await?;
        let cluster = pin.cluster.as_deref().unwrap_or("");
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM history WHERE app = $1 AND revision = $2 AND ($3 = '' OR cluster = $3)
             LIMIT 1",
        )
        .bind(&pin.app)
        .bind(&pin.revision)
        .bind(cluster)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query(OP))?;
        if known.is_none() {
            return Err(StoreError::NotInHistory {
                app: pin.app.clone(),
                cluster: pin.cluster.clone(),
                revision: pin.revision.clone(),
            });
        }
        sqlx::query(
            "INSERT INTO pins (app, cluster, revision, pinned_by, pinned_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (app, cluster) DO UPDATE SET revision = excluded.revision,
                 pinned_by = excluded.pinned_by, pinned_at = excluded.pinned_at",
        )
        .bind(&pin.app)
        .bind(cluster)
        .bind(&pin.revision)
        .bind(&pin.pinned_by)
        .bind(ms(pin.pinned_at))
        .execute(&mut *tx)
        .await
        .map_err(query(OP))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(query(OP))
    }

    async fn unpin(
        &self,
        app: &str,
        cluster: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        const OP: &str = "unpin application";
        let mut tx = self.begin(OP).await?;
        let done = sqlx::query("DELETE FROM pins WHERE app = $1 AND cluster = $2")
            .bind(app)
            .bind(cluster.unwrap_or(""))
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(query(OP))?;
        Ok(done.rows_affected() > 0)
    }

    async fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        const OP: &str = "list pins";
        sqlx::query("SELECT * FROM pins ORDER BY app, cluster")
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| {
                let cluster: String = get(row, OP, "cluster")?;
                Ok(Pin {
                    app: get(row, OP, "app")?,
                    cluster: (!cluster.is_empty()).then_some(cluster),
                    revision: get(row, OP, "revision")?,
                    pinned_by: get(row, OP, "pinned_by")?,
                    pinned_at: from_ms(OP, "pinned_at", get(row, OP, "pinned_at")?)?,
                })
            })
            .collect()
    }

    #[instrument(skip_all, fields(blobs = blobs.len()))]
    async fn put_blobs(&self, blobs: &[BlobBytes], at: Timestamp) -> Result<(), StoreError> {
        const OP: &str = "write blobs";
        let mut tx = self.begin(OP).await?;
        for blob in blobs {
            sqlx::query(
                "INSERT INTO blobs (digest, bytes, size, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(blob.digest.to_string())
            .bind(&blob.bytes)
            .bind(to_i64(OP, "size", blob.bytes.len() as u64)?)
            .bind(ms(at))
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        }
        tx.commit().await.map_err(query(OP))
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT bytes FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read blob"))
    }

    async fn cluster_blob(
        &self,
        cluster: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar(
            "SELECT b.bytes FROM blobs b
             WHERE b.digest = $2
               AND EXISTS (SELECT 1 FROM state_blobs s WHERE s.cluster = $1 AND s.digest = $2)",
        )
        .bind(cluster)
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read blob of cluster"))
    }

    async fn latest_state(&self, cluster: &str) -> Result<Option<StoredState>, StoreError> {
        sqlx::query(
            "SELECT * FROM cluster_states WHERE cluster = $1 ORDER BY generation DESC LIMIT 1",
        )
        .bind(cluster)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read cluster state"))?
        .as_ref()
        .map(Self::state_row)
        .transpose()
    }

    async fn cluster_states(&self, cluster: &str) -> Result<Vec<StoredState>, StoreError> {
        sqlx::query("SELECT * FROM cluster_states WHERE cluster = $1 ORDER BY generation DESC")
            .bind(cluster)
            .fetch_all(&self.pool)
            .await
            .map_err(query("list cluster states"))?
            .iter()
            .map(Self::state_row)
            .collect()
    }

    async fn latest_states(&self) -> Result<Vec<StoredState>, StoreError> {
        sqlx::query(
            "SELECT s.* FROM cluster_states s
             JOIN (SELECT cluster, MAX(generation) AS generation FROM cluster_states GROUP BY cluster) m
               ON s.cluster = m.cluster AND s.generation = m.generation
             ORDER BY s.cluster",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query("list cluster states"))?
        .iter()
        .map(Self::state_row)
        .collect()
    }

    async fn latest_generations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        const OP: &str = "list cluster generations";
        sqlx::query(
            "SELECT cluster, MAX(generation) AS generation FROM cluster_states
             GROUP BY cluster ORDER BY cluster",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query(OP))?
        .iter()
        .map(|row| {
            Ok((
                get(row, OP, "cluster")?,
                to_u64(OP, "generation", get(row, OP, "generation")?)?,
            ))
        })
        .collect()
    }

    #[instrument(skip_all, fields(cluster = %new.state.cluster, generation = new.state.generation))]
    async fn commit_state(&self, new: &NewState) -> Result<(), StoreError> {
        const OP: &str = "store cluster state";
        let state = &new.state;
        let generation = to_i64(OP, "generation", state.generation)?;
        let mut tx = self.begin(OP).await?;

        let latest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(generation) FROM cluster_states WHERE cluster = $1")
                .bind(&state.cluster)
                .fetch_one(&mut *tx)
                .await
                .map_err(query(OP))?;
        if let Some(latest) = latest
            && latest >= generation
        {
            return Err(StoreError::GenerationNotIncreasing {
                cluster: state.cluster.clone(),
                generation: state.generation,
                latest: to_u64(OP, "generation", latest)?,
            });
        }
        for (app, digest) in &new.blobs {
            let stored: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(query(OP))?;
            if stored.is_none() {
                return Err(StoreError::MissingBlob {
                    cluster: state.cluster.clone(),
                    app: app.clone(),
                    digest: *digest,
                });
            }
        }

        sqlx::query(
            "INSERT INTO cluster_states (cluster, generation, envelope, payload_digest, issued_at,
                                         expires_at, published_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&state.cluster)
        .bind(generation)
        .bind(&state.envelope)
        .bind(state.payload_digest.to_string())
        .bind(ms(state.issued_at))
        .bind(ms(state.expires_at))
        .bind(&state.published_by)
        .execute(&mut *tx)
        .await
        .map_err(query(OP))?;
        for (app, digest) in &new.blobs {
            sqlx::query(
                "INSERT INTO state_blobs (cluster, generation, app, digest) VALUES ($1, $2, $3, $4)",
            )
            .bind(&state.cluster)
            .bind(generation)
            .bind(app)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        }

        self.failpoints.hit(failpoint::MID_TRANSACTION);

        for entry in &new.deployed {
            sqlx::query(
                "INSERT INTO history (app, cluster, revision, digest, size, entry, generation,
                                      deployed_at, deployed_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&entry.name)
            .bind(&state.cluster)
            .bind(&entry.source.revision)
            .bind(entry.blob.digest.to_string())
            .bind(to_i64(OP, "size", entry.blob.size)?)
            .bind(json_text(entry))
            .bind(generation)
            .bind(ms(state.issued_at))
            .bind(&state.published_by)
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
            // Keep the newest entries, and every entry of a pinned revision.
            sqlx::query(
                "DELETE FROM history WHERE app = $1 AND cluster = $2
                   AND id NOT IN (SELECT id FROM history WHERE app = $1 AND cluster = $2
                                  ORDER BY id DESC LIMIT $3)
                   AND revision NOT IN (SELECT revision FROM pins
                                        WHERE app = $1 AND (cluster = $2 OR cluster = ''))",
            )
            .bind(&entry.name)
            .bind(&state.cluster)
            .bind(i64::from(self.retention.history_per_app_cluster))
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        }
        sqlx::query(
            "DELETE FROM cluster_states WHERE cluster = $1
               AND generation NOT IN (SELECT generation FROM cluster_states WHERE cluster = $1
                                      ORDER BY generation DESC LIMIT $2)",
        )
        .bind(&state.cluster)
        .bind(i64::from(self.retention.states_per_cluster.max(1)))
        .execute(&mut *tx)
        .await
        .map_err(query(OP))?;
        tx.commit().await.map_err(query(OP))
    }

    #[instrument(skip_all)]
    async fn collect_garbage(&self, written_before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM blobs WHERE created_at < $1
               AND NOT EXISTS (SELECT 1 FROM state_blobs s WHERE s.digest = blobs.digest)
               AND NOT EXISTS (SELECT 1 FROM history h WHERE h.digest = blobs.digest)",
        )
        .bind(ms(written_before))
        .execute(&self.pool)
        .await
        .map_err(query("collect unreferenced blobs"))?;
        Ok(done.rows_affected())
    }

    async fn history(&self, app: &str, limit: u32) -> Result<Vec<HistoryEntry>, StoreError> {
        sqlx::query("SELECT * FROM history WHERE app = $1 ORDER BY id DESC LIMIT $2")
            .bind(app)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query("read history"))?
            .iter()
            .map(Self::history_row)
            .collect()
    }

    async fn history_entry(
        &self,
        app: &str,
        cluster: &str,
        revision: &str,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        sqlx::query(
            "SELECT * FROM history WHERE app = $1 AND cluster = $2 AND revision = $3
             ORDER BY id DESC LIMIT 1",
        )
        .bind(app)
        .bind(cluster)
        .bind(revision)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read history"))?
        .as_ref()
        .map(Self::history_row)
        .transpose()
    }

    async fn set_problems(
        &self,
        cluster: &str,
        problems: &[Problem],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        const OP: &str = "record publication problems";
        let mut tx = self.begin(OP).await?;
        let since: BTreeMap<String, i64> =
            sqlx::query("SELECT app, since FROM publish_problems WHERE cluster = $1")
                .bind(cluster)
                .fetch_all(&mut *tx)
                .await
                .map_err(query(OP))?
                .iter()
                .map(|row| Ok((get(row, OP, "app")?, get(row, OP, "since")?)))
                .collect::<Result<_, StoreError>>()?;
        sqlx::query("DELETE FROM publish_problems WHERE cluster = $1")
            .bind(cluster)
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        for problem in problems {
            sqlx::query(
                "INSERT INTO publish_problems (cluster, app, message, kept, since)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(cluster)
            .bind(&problem.app)
            .bind(&problem.message)
            .bind(problem.kept)
            .bind(since.get(&problem.app).copied().unwrap_or(ms(at)))
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        }
        tx.commit().await.map_err(query(OP))
    }

    async fn problems(&self, cluster: &str) -> Result<Vec<Problem>, StoreError> {
        const OP: &str = "read publication problems";
        sqlx::query("SELECT * FROM publish_problems WHERE cluster = $1 ORDER BY app")
            .bind(cluster)
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(Self::problem_row)
            .collect()
    }

    async fn all_problems(&self) -> Result<Vec<(String, Problem)>, StoreError> {
        const OP: &str = "read publication problems";
        sqlx::query("SELECT * FROM publish_problems ORDER BY cluster, app")
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| Ok((get(row, OP, "cluster")?, Self::problem_row(row)?)))
            .collect()
    }

    #[instrument(skip_all, fields(cluster = %report.cluster, seq = report.seq))]
    async fn record_status(&self, report: &StatusReport) -> Result<bool, StoreError> {
        const OP: &str = "record status report";
        let seq = to_i64(OP, "seq", report.seq)?;
        let at = ms(report.received_at);
        let mut tx = self.begin(OP).await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM status_reports WHERE cluster = $1")
                .bind(&report.cluster)
                .fetch_one(&mut *tx)
                .await
                .map_err(query(OP))?;
        if last.is_some_and(|last| last >= seq) {
            return Ok(false);
        }
        for app in &report.apps {
            let generation = app
                .generation
                .map(|g| to_i64(OP, "generation", g))
                .transpose()?;
            sqlx::query(
                "INSERT INTO app_status (cluster, app, generation, revision, sync, health, message, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (cluster, app) DO UPDATE SET generation = excluded.generation,
                     revision = excluded.revision, sync = excluded.sync, health = excluded.health,
                     message = excluded.message, updated_at = excluded.updated_at",
            )
            .bind(&report.cluster)
            .bind(&app.app)
            .bind(generation)
            .bind(&app.revision)
            .bind(&app.sync)
            .bind(&app.health)
            .bind(&app.message)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
            sqlx::query("DELETE FROM object_status WHERE cluster = $1 AND app = $2")
                .bind(&report.cluster)
                .bind(&app.app)
                .execute(&mut *tx)
                .await
                .map_err(query(OP))?;
            for object in &app.objects {
                sqlx::query(
                    "INSERT INTO object_status (cluster, app, object, state, message, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (cluster, app, object) DO UPDATE SET state = excluded.state,
                         message = excluded.message",
                )
                .bind(&report.cluster)
                .bind(&app.app)
                .bind(&object.object)
                .bind(&object.state)
                .bind(&object.message)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(query(OP))?;
            }
        }
        sqlx::query("INSERT INTO status_reports (cluster, seq, received_at, report) VALUES ($1, $2, $3, $4)")
            .bind(&report.cluster)
            .bind(seq)
            .bind(at)
            .bind(json_text(&report.raw))
            .execute(&mut *tx)
            .await
            .map_err(query(OP))?;
        sqlx::query(
            "DELETE FROM status_reports WHERE cluster = $1
               AND seq NOT IN (SELECT seq FROM status_reports WHERE cluster = $1
                               ORDER BY seq DESC LIMIT $2)",
        )
        .bind(&report.cluster)
        .bind(i64::from(self.retention.status_reports_per_cluster.max(1)))
        .execute(&mut *tx)
        .await
        .map_err(query(OP))?;
        tx.commit().await.map_err(query(OP))?;
        Ok(true)
    }

    async fn cluster_statuses(&self, cluster: &str) -> Result<Vec<AppStatus>, StoreError> {
        const OP: &str = "read cluster status";
        sqlx::query("SELECT * FROM app_status WHERE cluster = $1 ORDER BY app")
            .bind(cluster)
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| Self::app_status_row(row, Vec::new()))
            .collect()
    }

    async fn fleet_statuses(&self) -> Result<Vec<(String, AppStatus)>, StoreError> {
        const OP: &str = "read fleet status";
        sqlx::query("SELECT * FROM app_status ORDER BY cluster, app")
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| {
                Ok((
                    get(row, OP, "cluster")?,
                    Self::app_status_row(row, Vec::new())?,
                ))
            })
            .collect()
    }

    async fn app_statuses(&self, cluster: &str) -> Result<Vec<AppStatus>, StoreError> {
        const OP: &str = "read status";
        let mut objects: BTreeMap<String, Vec<ObjectStatus>> = BTreeMap::new();
        for row in
            sqlx::query("SELECT * FROM object_status WHERE cluster = $1 ORDER BY app, object")
                .bind(cluster)
                .fetch_all(&self.pool)
                .await
                .map_err(query(OP))?
        {
            objects
                .entry(get(&row, OP, "app")?)
                .or_default()
                .push(ObjectStatus {
                    object: get(&row, OP, "object")?,
                    state: get(&row, OP, "state")?,
                    message: get(&row, OP, "message")?,
                });
        }
        sqlx::query("SELECT * FROM app_status WHERE cluster = $1 ORDER BY app")
            .bind(cluster)
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| {
                let app: String = get(row, OP, "app")?;
                let objects = objects.remove(&app).unwrap_or_default();
                Self::app_status_row(row, objects)
            })
            .collect()
    }

    async fn status_history(
        &self,
        cluster: &str,
        limit: u32,
    ) -> Result<Vec<StatusHistoryEntry>, StoreError> {
        const OP: &str = "read status history";
        sqlx::query("SELECT * FROM status_reports WHERE cluster = $1 ORDER BY seq DESC LIMIT $2")
            .bind(cluster)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query(OP))?
            .iter()
            .map(|row| {
                Ok(StatusHistoryEntry {
                    seq: to_u64(OP, "seq", get(row, OP, "seq")?)?,
                    received_at: from_ms(OP, "received_at", get(row, OP, "received_at")?)?,
                    report: from_json::<Value>(OP, "report", &get::<String>(row, OP, "report")?)?,
                })
            })
            .collect()
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(query("write audit entry"))?;
        insert_audit(&mut conn, entry).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query("read audit log"))?
            .iter()
            .map(Self::audit_row)
            .collect()
    }
}
