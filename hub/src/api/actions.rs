//! What a person can do to an application, whichever door they come through (the JSON API
//! or a dashboard button): roll back (pin), lift a pin, sync now. Each writes the store with
//! its audit entry and asks for a round; the caller says who acts and from where.

use std::collections::BTreeSet;

use http::StatusCode;
use jiff::Timestamp;
use serde_json::{Value, json};
use tracing::info;

use super::ApiError;
use crate::rounds::{Fetch, Hub};
use crate::store::{AuditEntry, Pin, Store as _, StoreError};

/// Who acts, through what (`api`, `dashboard`), and from which address.
#[derive(Debug, Clone)]
pub struct Actor {
    pub who: String,
    pub source: &'static str,
    pub address: String,
}

impl Actor {
    /// An audit entry of this actor, now.
    pub fn audit(&self, action: &str, subject: &str, detail: Value) -> AuditEntry {
        AuditEntry {
            at: Timestamp::now(),
            who: self.who.clone(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            detail,
            source: self.source.to_owned(),
            address: self.address.clone(),
        }
    }
}

/// Holds `app` (on `cluster`, or everywhere) at `revision`, which must be in its history.
pub async fn rollback(
    hub: &Hub,
    actor: &Actor,
    app: &str,
    cluster: Option<&str>,
    revision: &str,
) -> Result<Pin, ApiError> {
    let pin = Pin {
        app: app.to_owned(),
        cluster: cluster.map(str::to_owned),
        revision: revision.to_owned(),
        pinned_by: actor.who.clone(),
        pinned_at: Timestamp::now(),
    };
    let entry = actor.audit(
        "rollback",
        &format!("application {app}"),
        json!({"revision": revision, "cluster": cluster}),
    );
    match hub.store().pin(&pin, &entry).await {
        Ok(()) => {}
        Err(error @ StoreError::NotInHistory { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "revision_not_deployed",
                error.to_string(),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    info!(app, cluster, revision, who = %actor.who, "application pinned");
    hub.trigger(Fetch::Missing, "api");
    hub.changed();
    Ok(pin)
}

/// Lifts the pin of `app` on `cluster` (or its all-cluster pin): it follows Git again.
pub async fn unpin(
    hub: &Hub,
    actor: &Actor,
    app: &str,
    cluster: Option<&str>,
) -> Result<(), ApiError> {
    let entry = actor.audit(
        "unpin",
        &format!("application {app}"),
        json!({"cluster": cluster}),
    );
    if !hub.store().unpin(app, cluster, &entry).await? {
        return Err(ApiError::not_found(format!(
            "application {app} is not pinned{}",
            cluster
                .map(|c| format!(" on cluster {c}"))
                .unwrap_or_default()
        )));
    }
    info!(app, cluster, who = %actor.who, "application unpinned");
    hub.trigger(Fetch::Missing, "api");
    hub.changed();
    Ok(())
}

/// Fetches the repositories `app` renders from and publishes what changed, now; an app with
/// automated sync off renders its target revision this once. Returns the round's trigger
/// (see [`Hub::round_done`]).
pub async fn sync(
    hub: &Hub,
    actor: &Actor,
    app: &str,
    repos: BTreeSet<String>,
) -> Result<u64, ApiError> {
    hub.store()
        .record_audit(&actor.audit(
            "sync",
            &format!("application {app}"),
            json!({"repositories": repos.len()}),
        ))
        .await?;
    info!(app, repositories = repos.len(), who = %actor.who, "sync requested");
    hub.request_sync(app);
    Ok(hub.trigger(
        if repos.is_empty() {
            Fetch::All
        } else {
            Fetch::Repos(repos)
        },
        "api",
    ))
}

/// The repositories `app` renders from: its own spec's, or the template's of the
/// ApplicationSet that generated it. `None`: the app is not known; empty: fetch everything.
pub async fn repositories_for(hub: &Hub, app: &str) -> Result<Option<BTreeSet<String>>, ApiError> {
    let store = hub.store();
    let spec = match store.application(app).await? {
        Some(declared) => declared.spec.get("spec").cloned(),
        None => {
            let Some(set) = store
                .app_sets()
                .await?
                .into_iter()
                .find(|s| s.generated.iter().any(|g| g == app))
            else {
                return Ok(None);
            };
            set.spec.pointer("/spec/template/spec").cloned()
        }
    };
    Ok(Some(spec.as_ref().map(repositories_of).unwrap_or_default()))
}

/// The literal repository URLs of a source spec (`source` and `sources`); a templated one
/// makes the set empty, which fetches every repository.
pub fn repositories_of(spec: &Value) -> BTreeSet<String> {
    let mut urls = BTreeSet::new();
    let mut templated = false;
    let sources = spec.get("source").into_iter().chain(
        spec.get("sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    for source in sources {
        if let Some(url) = source.get("repoURL").and_then(Value::as_str) {
            if url.contains("{{") {
                templated = true;
            }
            if !url.is_empty() {
                urls.insert(url.to_owned());
            }
        }
    }
    if templated { BTreeSet::new() } else { urls }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templated_sources_fetch_everything() {
        let spec = json!({"source": {"repoURL": "https://git.example/a.git"},
                          "sources": [{"repoURL": "https://git.example/b.git"}]});
        assert_eq!(repositories_of(&spec).len(), 2);
        let templated = json!({"source": {"repoURL": "https://git.example/{{name}}.git"}});
        assert!(repositories_of(&templated).is_empty());
        assert!(repositories_of(&json!({})).is_empty());
        assert!(repositories_of(&json!({"source": {"repoURL": ""}})).is_empty());
    }
}
