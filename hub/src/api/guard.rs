//! The per-object half of authorization: the permissions table (checked before a handler
//! runs) says a route is open on some projects only ([`Call::scope`]); these checks find the
//! project of the application, ApplicationSet or document a request touches and refuse
//! what lies outside. They also hold a declared application to its AppProject
//! (`sourceRepos`, `destinations`) when it is created, as rendering does again later.

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;
use serde_json::Value;

use super::handlers::Declared;
use super::{ApiError, ApiState, Call};
use crate::auth::Scope;
use crate::declarative::Document;
use crate::declarative::application::DEFAULT_PROJECT;
use crate::declarative::project::AppProject;
use crate::store::{AppSetRecord, Store, StoreError};

/// The project of an ApplicationSet: its template's, when written without a template
/// expression (`None` otherwise: only principals on every project may manage those).
pub fn template_project(template: &Value) -> Option<String> {
    match template.pointer("/spec/project") {
        None | Some(Value::Null) => Some(DEFAULT_PROJECT.to_owned()),
        Some(Value::String(p)) if p.is_empty() => Some(DEFAULT_PROJECT.to_owned()),
        Some(Value::String(p)) if !p.contains("{{") => Some(p.clone()),
        Some(_) => None,
    }
}

/// The project of a stored ApplicationSet (see [`template_project`]).
pub fn app_set_project(set: &AppSetRecord) -> Option<String> {
    template_project(set.spec.pointer("/spec/template").unwrap_or(&Value::Null))
}

/// Whether `scope` reaches an ApplicationSet's project.
pub fn set_visible(scope: &Scope, set: &AppSetRecord) -> bool {
    scope.is_all() || app_set_project(set).is_some_and(|p| scope.allows(&p))
}

/// The audit subjects a scoped principal may read — its projects' applications and
/// ApplicationSets, as the audit log names them — or `None` when it may read everything.
pub async fn audit_subjects(
    store: &impl Store,
    scope: &Scope,
) -> Result<Option<BTreeSet<String>>, StoreError> {
    if scope.is_all() {
        return Ok(None);
    }
    let mut subjects = BTreeSet::new();
    for app in store.applications().await? {
        if scope.allows(&app.project) {
            subjects.insert(format!("application {}", app.name));
            subjects.insert(format!("Application {}", app.name));
        }
    }
    for set in store.app_sets().await? {
        if set_visible(scope, &set) {
            subjects.insert(format!("ApplicationSet {}", set.name));
        }
    }
    Ok(Some(subjects))
}

/// Which repositories a principal may see: all, or those its projects' `sourceRepos` allow
/// (every one when it is on the implicit `default` project, which allows any source).
#[derive(Debug)]
pub struct RepositoryFilter {
    all: bool,
    projects: Vec<AppProject>,
}

impl RepositoryFilter {
    pub async fn of(store: &impl Store, scope: &Scope) -> Result<Self, StoreError> {
        if scope.is_all() || scope.allows(DEFAULT_PROJECT) {
            return Ok(RepositoryFilter {
                all: true,
                projects: Vec::new(),
            });
        }
        let projects = store
            .projects()
            .await?
            .into_iter()
            .filter(|p| scope.allows(&p.name))
            .filter_map(|p| serde_json::from_value(p.spec).ok())
            .collect();
        Ok(RepositoryFilter {
            all: false,
            projects,
        })
    }

    pub fn allows(&self, url: &str) -> bool {
        self.all || self.projects.iter().any(|p| p.allows_source(url))
    }
}

/// Refuses `verb` on application `name` unless the call's scope reaches its project. An
/// unknown application passes: the handler answers 404.
pub(super) async fn app(
    state: &ApiState,
    call: &Call,
    name: &str,
    verb: &str,
) -> Result<(), ApiError> {
    if call.scope.is_all() {
        return Ok(());
    }
    match state.hub.store().application(name).await? {
        Some(app) => call.require_project(&app.project, &format!("{verb} application {name}")),
        None => Ok(()),
    }
}

/// Refuses `verb` on ApplicationSet `name` unless the call's scope reaches its project.
pub(super) async fn app_set(
    state: &ApiState,
    call: &Call,
    name: &str,
    verb: &str,
) -> Result<(), ApiError> {
    if call.scope.is_all() {
        return Ok(());
    }
    match state.hub.store().app_set(name).await? {
        Some(set) => templated(
            call,
            app_set_project(&set),
            &format!("{verb} ApplicationSet {name}"),
        ),
        None => Ok(()),
    }
}

fn templated(call: &Call, project: Option<String>, what: &str) -> Result<(), ApiError> {
    match project {
        Some(project) => call.require_project(&project, what),
        None => Err(ApiError::forbidden(format!(
            "{} ({}) may not {what}: its project is a template expression, which only \
             principals on every project may manage",
            call.principal.name,
            call.principal.grants_text()
        ))),
    }
}

/// Checks every document of a request before anything is stored: the principal may write
/// each one (its project, and the project of what it replaces), and each Application keeps
/// to its AppProject's source repositories and destinations.
pub(super) async fn declared(
    state: &ApiState,
    call: &Call,
    documents: &[Declared],
) -> Result<(), ApiError> {
    let store = state.hub.store();
    let mut projects: BTreeMap<String, AppProject> = store
        .projects()
        .await?
        .into_iter()
        .filter_map(|p| Some((p.name.clone(), serde_json::from_value(p.spec).ok()?)))
        .collect();
    // Projects declared in the same request count too.
    for declared in documents {
        if let Document::AppProject(project) = &declared.document {
            projects.insert(declared.name.clone(), project.clone());
        }
    }
    let clusters = store.clusters().await?;
    for declared in documents {
        let name = &declared.name;
        match &declared.document {
            Document::Application(app) => {
                let project = app.project();
                call.require_project(project, &format!("write application {name}"))?;
                self::app(state, call, name, "replace").await?;
                let source = app.spec.source.as_ref().map_or("", |s| s.repo_url.as_str());
                let destination = &app.spec.destination;
                let cluster = clusters.iter().find(|c| {
                    destination.name.as_deref() == Some(c.name.as_str())
                        || (destination.server.is_some() && destination.server == c.server_url)
                });
                let cluster_name = cluster
                    .map(|c| c.name.clone())
                    .or_else(|| destination.name.clone())
                    .unwrap_or_default();
                let server = cluster
                    .and_then(|c| c.server_url.clone())
                    .or_else(|| destination.server.clone())
                    .unwrap_or_default();
                let namespace = destination.namespace.as_deref().unwrap_or("");
                refused_by_project(
                    name,
                    project,
                    projects.get(project),
                    source,
                    &cluster_name,
                    &server,
                    namespace,
                )?;
            }
            Document::ApplicationSet(set) => {
                let what = format!("write ApplicationSet {name}");
                templated(call, template_project(&set.spec.template), &what)?;
                self::app_set(state, call, name, "replace").await?;
            }
            Document::AppProject(_) => {
                if !call.scope.is_all() {
                    return Err(ApiError::forbidden(format!(
                        "{} ({}) may not write AppProject {name}: projects are an admin's",
                        call.principal.name,
                        call.principal.grants_text()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Why `project` refuses an application with this source and destination, as a 422.
fn refused_by_project(
    app: &str,
    name: &str,
    project: Option<&AppProject>,
    source: &str,
    cluster: &str,
    server: &str,
    namespace: &str,
) -> Result<(), ApiError> {
    let refused = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused_by_project",
            message,
        )
    };
    let Some(project) = project else {
        if name == DEFAULT_PROJECT {
            return Ok(());
        }
        return Err(refused(format!(
            "application {app}: project {name} does not exist"
        )));
    };
    if !project.allows_source(source) {
        return Err(refused(format!(
            "application {app}: repository {source} is not permitted in project {name} (sourceRepos)"
        )));
    }
    if !project.allows_destination(cluster, server, namespace) {
        let at = if cluster.is_empty() { server } else { cluster };
        return Err(refused(format!(
            "application {app}: destination cluster {at} namespace {namespace} is not permitted in project {name} (destinations)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_projects() {
        assert_eq!(
            template_project(&json!({"spec": {"project": "shop"}})).as_deref(),
            Some("shop")
        );
        assert_eq!(
            template_project(&json!({"spec": {}})).as_deref(),
            Some("default")
        );
        assert_eq!(
            template_project(&json!({"spec": {"project": "{{team}}"}})),
            None
        );
    }

    #[test]
    fn projects_refuse_sources_and_destinations_by_name() {
        let project: AppProject = serde_json::from_value(json!({
            "metadata": {"name": "shop"},
            "spec": {"sourceRepos": ["https://git.example/shop/*"],
                     "destinations": [{"name": "east", "namespace": "shop"}]}
        }))
        .expect("project");
        let ok = refused_by_project(
            "web",
            "shop",
            Some(&project),
            "https://git.example/shop/web",
            "east",
            "",
            "shop",
        );
        assert!(ok.is_ok());
        let repo = refused_by_project(
            "web",
            "shop",
            Some(&project),
            "https://evil.example/x",
            "east",
            "",
            "shop",
        )
        .expect_err("repo");
        assert_eq!(repo.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(repo.message.contains("sourceRepos"), "{}", repo.message);
        let dest = refused_by_project(
            "web",
            "shop",
            Some(&project),
            "https://git.example/shop/web",
            "east",
            "",
            "kube-system",
        )
        .expect_err("namespace");
        assert!(
            dest.message.contains("namespace kube-system"),
            "{}",
            dest.message
        );
        let missing =
            refused_by_project("web", "nope", None, "", "east", "", "x").expect_err("missing");
        assert!(missing.message.contains("project nope does not exist"));
        assert!(refused_by_project("web", "default", None, "", "east", "", "x").is_ok());
    }
}
