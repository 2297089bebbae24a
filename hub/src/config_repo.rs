//! The configuration repository: a Git repository (and a path in it) whose YAML and JSON files
//! declare Applications, ApplicationSets and AppProjects. The hub fetches it like any other
//! repository; when its commit changes, [`read`] collects the documents under the path and
//! [`apply`] makes the store say the same: each document is stored with origin `config`, and
//! a `config` document that left the repository is deleted (its application then becomes a
//! tombstone in the next state, as the trust model wants for explicit removal).
//!
//! All or nothing: a commit with one unreadable document changes nothing in the store, and
//! its error is kept in [`ConfigStatus`] next to the last commit that applied. A document of
//! the configuration repository replaces one of the same kind and name that came from the API
//! (Git is the source of truth), with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::declarative::{self, Document};
use crate::git::{CachedRepository, TreeError, redact_url};
use crate::manifest_files::ManifestLimits;
use crate::store::{AppSetRecord, ApplicationRecord, Origin, ProjectRecord, Store, StoreError};

/// Where the configuration lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    pub url: String,
    /// A branch, tag or commit; `HEAD` for the remote's default branch.
    pub revision: String,
    /// The directory of the documents, relative to the repository root (`.` for all of it).
    pub path: String,
}

/// What the hub last did with the configuration repository, for the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigStatus {
    pub source: Option<ConfigSource>,
    /// The commit whose documents are in the store.
    pub applied_commit: Option<String>,
    pub applied_at: Option<Timestamp>,
    /// Documents stored from that commit, as `Kind/name`.
    pub documents: Vec<String>,
    /// Unsupported fields and replaced API documents of that commit.
    pub warnings: Vec<String>,
    /// Why the newest commit did not apply (the store keeps the last one that did).
    pub error: Option<String>,
    /// The commit the error is about.
    pub failed_commit: Option<String>,
}

impl ConfigStatus {
    pub fn to_json(&self) -> Value {
        let source = self
            .source
            .as_ref()
            .map(|s| json!({"url": redact_url(&s.url), "revision": s.revision, "path": s.path}));
        json!({
            "source": source,
            "appliedCommit": self.applied_commit,
            "appliedAt": self.applied_at.map(|t| t.to_string()),
            "documents": self.documents,
            "warnings": self.warnings,
            "error": self.error,
            "failedCommit": self.failed_commit,
        })
    }
}

/// Why a commit of the configuration repository was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigRepoError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: {source}")]
    Document {
        path: String,
        #[source]
        source: declarative::ParseError,
    },
    #[error("{kind} {name} is declared twice: in {first} and in {second}")]
    Duplicate {
        kind: &'static str,
        name: String,
        first: String,
        second: String,
    },
    #[error("more than {limit} bytes of configuration under {path}")]
    TooLarge { path: String, limit: u64 },
    #[error("no directory {path} in the commit")]
    NoPath { path: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// One document of the configuration, as declared.
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    pub kind: &'static str,
    pub name: String,
    /// The file it came from.
    pub file: String,
    pub spec: Value,
    /// The project of an Application.
    pub project: Option<String>,
    pub warnings: Vec<String>,
}

fn kind_and_name(document: &Document) -> (&'static str, String, Option<String>) {
    match document {
        Document::Application(app) => (
            "Application",
            app.metadata.name.clone(),
            Some(app.spec.project.clone()),
        ),
        Document::ApplicationSet(set) => ("ApplicationSet", set.metadata.name.clone(), None),
        Document::AppProject(project) => ("AppProject", project.metadata.name.clone(), None),
    }
}

/// The documents under `path` in `commit`: every `.yaml`, `.yml` and `.json` file, in path
/// order, each document checked; refused whole on the first unreadable one.
pub fn read(
    repo: &CachedRepository,
    commit: gix::ObjectId,
    path: &str,
    limits: &ManifestLimits,
) -> Result<Vec<ConfigDocument>, ConfigRepoError> {
    let prefix = match path.trim_matches('/') {
        "" | "." => String::new(),
        dir => format!("{dir}/"),
    };
    let files: Vec<String> = repo
        .list_files(commit)?
        .into_iter()
        .filter(|file| file.starts_with(&prefix))
        .filter(|file| {
            Path::new(file)
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    if files.is_empty()
        && !prefix.is_empty()
        && !repo
            .list_dirs(commit)?
            .iter()
            .any(|d| format!("{d}/") == prefix)
    {
        return Err(ConfigRepoError::NoPath {
            path: path.to_owned(),
        });
    }
    let mut total = 0u64;
    let mut documents: Vec<ConfigDocument> = Vec::new();
    let mut seen: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    for file in files {
        let bytes = repo.read_file(commit, &file)?;
        total += bytes.len() as u64;
        if total > limits.max_total_bytes {
            return Err(ConfigRepoError::TooLarge {
                path: path.to_owned(),
                limit: limits.max_total_bytes,
            });
        }
        let values =
            crate::manifest_files::parse_documents(Path::new(&file), &bytes).map_err(|reason| {
                ConfigRepoError::File {
                    path: file.clone(),
                    reason,
                }
            })?;
        for (index, value) in values.into_iter().enumerate() {
            let parsed = declarative::parse_document(index, value.clone()).map_err(|source| {
                ConfigRepoError::Document {
                    path: file.clone(),
                    source,
                }
            })?;
            let (kind, name, project) = kind_and_name(&parsed.value);
            if let Some(first) = seen.insert((kind, name.clone()), file.clone()) {
                return Err(ConfigRepoError::Duplicate {
                    kind,
                    name,
                    first,
                    second: file,
                });
            }
            documents.push(ConfigDocument {
                kind,
                name: name.clone(),
                file: file.clone(),
                spec: value,
                project,
                warnings: parsed
                    .warnings
                    .iter()
                    .map(|w| format!("{file}: {kind} {name}: {w}"))
                    .collect(),
            });
        }
    }
    Ok(documents)
}

/// What [`apply`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// `Kind/name` of every stored document.
    pub stored: Vec<String>,
    /// `Kind/name` of `config` documents deleted because they left the repository.
    pub deleted: Vec<String>,
    pub warnings: Vec<String>,
}

/// Makes the store hold exactly `documents` as its `config` declarations.
pub async fn apply<S: Store>(
    store: &S,
    documents: &[ConfigDocument],
    now: Timestamp,
) -> Result<Applied, ConfigRepoError> {
    let mut applied = Applied::default();
    let wanted: BTreeSet<(&str, &str)> = documents
        .iter()
        .map(|d| (d.kind, d.name.as_str()))
        .collect();
    let api_owned: BTreeSet<(&str, String)> = {
        let mut owned = BTreeSet::new();
        for app in store.applications().await? {
            if app.origin == Origin::Api {
                owned.insert(("Application", app.name));
            }
        }
        for set in store.app_sets().await? {
            if set.origin == Origin::Api {
                owned.insert(("ApplicationSet", set.name));
            }
        }
        for project in store.projects().await? {
            if project.origin == Origin::Api {
                owned.insert(("AppProject", project.name));
            }
        }
        owned
    };
    for document in documents {
        applied.warnings.extend(document.warnings.iter().cloned());
        if api_owned.contains(&(document.kind, document.name.clone())) {
            applied.warnings.push(format!(
                "{}: {} {} replaces the one applied through the API",
                document.file, document.kind, document.name
            ));
        }
        let spec = document.spec.clone();
        let name = document.name.clone();
        match document.kind {
            "Application" => {
                store
                    .put_application(&ApplicationRecord {
                        name,
                        project: document.project.clone().unwrap_or_default(),
                        spec,
                        origin: Origin::Config,
                        created_at: now,
                        updated_at: now,
                    })
                    .await?
            }
            "ApplicationSet" => {
                store
                    .put_app_set(&AppSetRecord {
                        name,
                        spec,
                        origin: Origin::Config,
                        generated: Vec::new(),
                        generator_error: None,
                        created_at: now,
                        updated_at: now,
                    })
                    .await?
            }
            _ => {
                store
                    .put_project(&ProjectRecord {
                        name,
                        spec,
                        origin: Origin::Config,
                        created_at: now,
                        updated_at: now,
                    })
                    .await?
            }
        }
        applied
            .stored
            .push(format!("{}/{}", document.kind, document.name));
    }
    let gone = |kind: &str, name: &str| !wanted.contains(&(kind, name));
    for app in store.applications().await? {
        if app.origin == Origin::Config && gone("Application", &app.name) {
            store.delete_application(&app.name).await?;
            applied.deleted.push(format!("Application/{}", app.name));
        }
    }
    for set in store.app_sets().await? {
        if set.origin == Origin::Config && gone("ApplicationSet", &set.name) {
            store.delete_app_set(&set.name).await?;
            applied.deleted.push(format!("ApplicationSet/{}", set.name));
        }
    }
    for project in store.projects().await? {
        if project.origin == Origin::Config && gone("AppProject", &project.name) {
            store.delete_project(&project.name).await?;
            applied.deleted.push(format!("AppProject/{}", project.name));
        }
    }
    Ok(applied)
}
