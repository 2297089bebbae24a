//! The dashboard: server-rendered HTML pages of the fleet, served by the human API's
//! listener for every path outside `/api/` — the overview matrix, one page per matrix column
//! or application, per cluster, the repositories — with a little JavaScript
//! (`/static/app.js`) that follows the event stream and swaps `<main>` when the fleet
//! changes.
//!
//! People log in with a token (the admin token or an API token) or through single sign-on
//! (`/auth/sso` → the IdP → `/auth/callback`, [`crate::auth::oidc`]); a session
//! ([`session`]) is a random cookie (`HttpOnly`, `SameSite=Strict`) that carries the
//! principal, and every form carries the session's CSRF token. Each page and button is
//! checked against the permissions table's row of the API route it stands for, and pages
//! show only the projects the principal may see. What a button changes goes through
//! `api::actions`, as the JSON API's routes do: this module owns HTTP and pages only, and
//! reads the store through `fleet` and the `Store` trait.
//!
//! Pages are pure functions of what was read ([`overview`], [`application`], [`cluster`],
//! [`repositories`], [`layout`]); this file reads, acts and answers.

mod application;
mod cluster;
mod drift;
mod layout;
mod overview;
mod repositories;
pub mod session;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use jiff::Timestamp;
use maud::Markup;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::actions::{self, Actor};
use crate::api::{ApiState, Body};
use crate::auth::{self, Kind, Principal, Scope, tokens};
use crate::fleet::{Cell, Fleet, short_revision};
use crate::store::{Store as _, StoreError};
use layout::Chrome;
use session::{COOKIE, Flash, Session, Sessions};

/// Largest form body read (a login or a button's form is a few hundred bytes).
const FORM_LIMIT: usize = 16 * 1024;
/// History rows an application page shows.
const HISTORY_ROWS: u32 = 50;
/// Clusters whose objects and drift an application page reads; the rest are on their own
/// pages.
const OBJECT_CLUSTERS: usize = 20;
/// Audit entries the audit page reads (before filtering by project).
const AUDIT_ROWS: u32 = 200;
/// Status reports read per cluster for its drift events.
const DRIFT_REPORTS: u32 = 50;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Login,
    Logout,
    Overview,
    App(String),
    AppAction(String, Action),
    Cluster(String),
    Repositories,
    Audit,
    Events,
    SsoStart,
    SsoCallback,
    Asset(Asset),
    NotFound,
}

/// What a button of an application page asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Rollback,
    Unpin,
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asset {
    Css,
    Js,
    Icon,
}

/// The route of a path; names are percent-decoded (a name that is not UTF-8 leads nowhere).
fn route(path: &str) -> Route {
    let Some(segments) = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect::<Option<Vec<String>>>()
    else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        [""] => Route::Overview,
        ["login"] => Route::Login,
        ["logout"] => Route::Logout,
        ["repositories"] => Route::Repositories,
        ["audit"] => Route::Audit,
        ["auth", "sso"] => Route::SsoStart,
        ["auth", "callback"] => Route::SsoCallback,
        ["events"] => Route::Events,
        ["static", "app.css"] => Route::Asset(Asset::Css),
        ["static", "app.js"] => Route::Asset(Asset::Js),
        ["static", "icon.svg"] | ["favicon.ico"] => Route::Asset(Asset::Icon),
        ["apps", name] if !name.is_empty() => Route::App((*name).to_owned()),
        ["apps", name, action] if !name.is_empty() => match *action {
            "rollback" => Route::AppAction((*name).to_owned(), Action::Rollback),
            "unpin" => Route::AppAction((*name).to_owned(), Action::Unpin),
            "sync" => Route::AppAction((*name).to_owned(), Action::Sync),
            _ => Route::NotFound,
        },
        ["clusters", name] if !name.is_empty() => Route::Cluster((*name).to_owned()),
        _ => Route::NotFound,
    }
}

/// The methods a route answers.
fn methods(route: &Route) -> &'static [Method] {
    match route {
        Route::Login | Route::NotFound => &[Method::GET, Method::HEAD, Method::POST],
        Route::Logout | Route::AppAction(..) => &[Method::POST],
        _ => &[Method::GET, Method::HEAD],
    }
}

/// Answers a dashboard request.
pub(crate) async fn serve(
    state: &ApiState,
    request: Request<Incoming>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let mut response = respond(state, request, peer, shutdown).await;
    secure(response.headers_mut());
    response
}

/// Headers every answer carries: no framing, no inline script, no sniffing, no referrer.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn respond(
    state: &ApiState,
    request: Request<Incoming>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let route = route(request.uri().path());
    let method = request.method().clone();
    let allowed = methods(&route);
    if !allowed.contains(&method) {
        return method_not_allowed(allowed);
    }
    let session = current_session(state, request.headers()).await;
    match (&route, &method) {
        (Route::Asset(asset), _) => return asset_response(*asset),
        (Route::Login, &Method::POST) => return login(state, request, peer).await,
        (Route::Login, _) => {
            return match session {
                Some(_) => redirect("/"),
                None => html(StatusCode::OK, layout::login(None, state.sso.is_some())),
            };
        }
        (Route::SsoStart, _) => return sso_start(state, request.headers()).await,
        (Route::SsoCallback, _) => return sso_callback(state, &request, peer).await,
        _ => {}
    }
    let Some((token, session)) = session else {
        if route == Route::NotFound {
            return not_found(&Chrome::default());
        }
        return redirect("/login");
    };
    match route {
        Route::Events => crate::api::events::stream(state.hub.changes(), shutdown),
        Route::Logout => logout(state, request, &token, &session, peer).await,
        Route::AppAction(name, action) => {
            app_action(state, request, &token, &session, &name, action, peer).await
        }
        Route::NotFound if method == Method::POST => {
            let chrome = Chrome {
                csrf: Some(&session.csrf),
                flash: None,
                who: Some(&session.principal),
            };
            not_found(&chrome)
        }
        route => {
            let flash = Sessions::global().take_flash(&token);
            let chrome = Chrome {
                csrf: Some(&session.csrf),
                flash: flash.as_ref(),
                who: Some(&session.principal),
            };
            let query = request.uri().query();
            match page(state, &route, query, &session).await {
                Ok((title, main)) => html(StatusCode::OK, layout::page(&title, &chrome, &main)),
                Err(PageError::NotFound) => not_found(&chrome),
                Err(PageError::Forbidden) => html(
                    StatusCode::FORBIDDEN,
                    layout::message(
                        "Not allowed",
                        &format!(
                            "Your roles ({}) do not include this page.",
                            session.principal.grants_text()
                        ),
                        &chrome,
                    ),
                ),
                Err(PageError::Store(error)) => {
                    error!(%error, "dashboard page: store read failed");
                    html(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        layout::message(
                            "Something failed",
                            "The hub's store failed; see the hub's log.",
                            &chrome,
                        ),
                    )
                }
            }
        }
    }
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("not found")]
    NotFound,
    #[error("not allowed")]
    Forbidden,
    #[error("read the store: {0}")]
    Store(#[from] StoreError),
}

/// The session the request's cookie names, with the cookie's value. A session opened with an
/// API token ends as soon as the token is revoked or expires.
async fn current_session(state: &ApiState, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = session::cookie(headers, COOKIE)?;
    let session = Sessions::global().find(token, &state.admin_token_hash, Instant::now())?;
    if let Kind::Token(id) = &session.principal.kind {
        let live = match state.hub.store().api_token(id).await {
            Ok(found) => tokens::check(found.as_ref(), Timestamp::now()).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(reason) = live {
            info!(who = %session.principal.name, %reason, "dashboard session ended: its token no longer works");
            Sessions::global().end(token);
            return None;
        }
    }
    Some((token.to_owned(), session))
}

/// A whole HTML page as an answer; pages are never cached.
fn html(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut response = Response::new(crate::api::full(markup.into_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 303 See Other to `location` (a path of this site).
fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(crate::api::full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(value) => headers.insert(header::LOCATION, value),
        Err(_) => headers.insert(header::LOCATION, HeaderValue::from_static("/")),
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_found(chrome: &Chrome<'_>) -> Response<Body> {
    html(
        StatusCode::NOT_FOUND,
        layout::message("Not found", "There is no such page.", chrome),
    )
}

fn forbidden(chrome: &Chrome<'_>) -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        layout::message(
            "Refused",
            "The form did not carry this session's token, so nothing was changed. Reload the page and try again.",
            chrome,
        ),
    )
}

fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let mut response = html(
        StatusCode::METHOD_NOT_ALLOWED,
        layout::message(
            "Method not allowed",
            "This page does not answer that method.",
            &Chrome::default(),
        ),
    );
    let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

fn asset_response(asset: Asset) -> Response<Body> {
    let (body, kind) = match asset {
        Asset::Css => (CSS, "text/css; charset=utf-8"),
        Asset::Js => (JS, "text/javascript; charset=utf-8"),
        Asset::Icon => (ICON, "image/svg+xml"),
    };
    let mut response = Response::new(crate::api::full(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A form's fields, read within [`FORM_LIMIT`]; `None` when the body is too large or cannot
/// be read.
async fn read_form(request: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > FORM_LIMIT) {
        return None;
    }
    let body = Limited::new(request.into_body(), FORM_LIMIT)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(form_urlencoded::parse(&body).into_owned().collect())
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn too_large() -> Response<Body> {
    html(
        StatusCode::PAYLOAD_TOO_LARGE,
        layout::message(
            "Form too large",
            &format!("A form may carry at most {FORM_LIMIT} bytes."),
            &Chrome::default(),
        ),
    )
}

/// Whether a request came through a TLS-terminating proxy (its cookies are then `Secure`).
fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Opens a session for `principal` (audited as a login through `how`); its cookie.
async fn open_session(
    state: &ApiState,
    principal: Principal,
    https: bool,
    peer: SocketAddr,
    how: &str,
) -> Option<HeaderValue> {
    let left = principal.expires.map(|end| {
        let seconds = end.duration_since(Timestamp::now()).as_secs().max(0);
        std::time::Duration::from_secs(seconds.unsigned_abs())
    });
    let actor = Actor {
        who: principal.name.clone(),
        source: "dashboard",
        address: peer.to_string(),
    };
    let entry = actor.audit(
        "login",
        "dashboard",
        serde_json::json!({"method": how, "grants": principal.grants_text()}),
    );
    if let Err(error) = state.hub.store().record_audit(&entry).await {
        error!(%error, "dashboard login: audit entry not written; login refused");
        return None;
    }
    info!(who = %principal.name, grants = %principal.grants_text(), method = how, "dashboard login");
    let cookie = Sessions::global().create(state.admin_token_hash, principal, Instant::now(), left);
    let max_age = left.map_or(session::LIFETIME, |l| l.min(session::LIFETIME));
    HeaderValue::from_str(&format!(
        "{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        max_age.as_secs(),
        if https { "; Secure" } else { "" }
    ))
    .ok()
}

/// `POST /login`: the admin token or an API token opens a session.
async fn login(state: &ApiState, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let https = https(request.headers());
    let Some(form) = read_form(request).await else {
        return too_large();
    };
    let token = field(&form, "token").unwrap_or_default().trim();
    let principal = match crate::api::principal_of_token(state, token).await {
        Ok(principal) => principal,
        Err(error) => {
            warn!(reason = %error.message, "dashboard login refused");
            return html(
                StatusCode::UNAUTHORIZED,
                layout::login(
                    Some(&format!("The token was refused: {}.", error.message)),
                    state.sso.is_some(),
                ),
            );
        }
    };
    let Some(cookie) = open_session(state, principal, https, peer, "token").await else {
        return store_failed();
    };
    let mut response = redirect("/");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// The cookie that binds a single sign-on in flight to the browser that started it.
const SSO_COOKIE: &str = "flotilla_sso";

/// `GET /auth/sso`: off to the identity provider, with PKCE and a state bound to this
/// browser by a short-lived cookie.
async fn sso_start(state: &ApiState, headers: &HeaderMap) -> Response<Body> {
    let Some(sso) = &state.sso else {
        return not_found(&Chrome::default());
    };
    match sso.begin().await {
        Ok((url, login_state)) => {
            let mut response = redirect(&url);
            let cookie = format!(
                "{SSO_COOKIE}={login_state}; HttpOnly; SameSite=Lax; Path=/auth; Max-Age=600{}",
                if https(headers) { "; Secure" } else { "" }
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => {
            warn!(%error, "single sign-on could not start");
            html(
                StatusCode::BAD_GATEWAY,
                layout::login(
                    Some(&format!("Single sign-on is unavailable: {error}.")),
                    true,
                ),
            )
        }
    }
}

/// `GET /auth/callback?code=…&state=…`: the identity provider's answer. The state must be
/// the one this browser's cookie holds; the code is exchanged once.
async fn sso_callback(
    state: &ApiState,
    request: &Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let Some(sso) = &state.sso else {
        return not_found(&Chrome::default());
    };
    let refuse = |status: StatusCode, message: String| {
        let mut response = html(status, layout::login(Some(&message), true));
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "flotilla_sso=; HttpOnly; SameSite=Lax; Path=/auth; Max-Age=0",
            ),
        );
        response
    };
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if let Some(error) = field(&query, "error") {
        let description = field(&query, "error_description").unwrap_or_default();
        warn!(
            error,
            description, "single sign-on refused by the identity provider"
        );
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!("The identity provider refused the sign-in: {error} {description}"),
        );
    }
    let (Some(code), Some(given)) = (field(&query, "code"), field(&query, "state")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer carried no code or state; start again.".to_owned(),
        );
    };
    let bound = session::cookie(request.headers(), SSO_COOKIE)
        .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(given.as_bytes())));
    if !bound {
        warn!("single sign-on answer refused: its state is not this browser's");
        return refuse(
            StatusCode::BAD_REQUEST,
            "This sign-in did not start in this browser (or took over ten minutes); start again."
                .to_owned(),
        );
    }
    let principal = match sso.finish(given, code).await {
        Ok(principal) => principal,
        Err(error) => {
            warn!(%error, "single sign-on failed");
            return refuse(
                StatusCode::UNAUTHORIZED,
                format!("Single sign-on failed: {error}."),
            );
        }
    };
    let who = principal.name.clone();
    let Some(cookie) = open_session(state, principal, https(request.headers()), peer, "sso").await
    else {
        return store_failed();
    };
    let mut response = html(StatusCode::OK, layout::signed_in(&who));
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, cookie);
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_static("flotilla_sso=; HttpOnly; SameSite=Lax; Path=/auth; Max-Age=0"),
    );
    response
}

fn store_failed() -> Response<Body> {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        layout::message(
            "Something failed",
            "The hub's store failed; see the hub's log.",
            &Chrome::default(),
        ),
    )
}

/// `POST /logout`: ends the session (CSRF-checked).
async fn logout(
    state: &ApiState,
    request: Request<Incoming>,
    token: &str,
    session: &Session,
    peer: SocketAddr,
) -> Response<Body> {
    let chrome = Chrome {
        csrf: Some(&session.csrf),
        flash: None,
        who: Some(&session.principal),
    };
    let Some(form) = read_form(request).await else {
        return too_large();
    };
    if !session.csrf_matches(field(&form, "csrf").unwrap_or_default()) {
        return forbidden(&chrome);
    }
    Sessions::global().end(token);
    let actor = Actor {
        who: session.principal.name.clone(),
        source: "dashboard",
        address: peer.to_string(),
    };
    if let Err(error) = state
        .hub
        .store()
        .record_audit(&actor.audit("logout", "dashboard", serde_json::json!({})))
        .await
    {
        warn!(%error, "dashboard logout: audit entry not written");
    }
    info!(who = %session.principal.name, "dashboard logout");
    let mut response = redirect("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("flotilla_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

/// Reads the fleet as it is now.
async fn load_fleet(state: &ApiState) -> Result<Fleet, StoreError> {
    Fleet::load(
        &state.hub,
        state.agent.config.offline_after,
        Timestamp::now(),
    )
    .await
}

/// What `principal` may reach through the API route a page or button stands for (its row
/// of the permissions table), or a refusal.
fn scope(principal: &Principal, method: &Method, path: &str) -> Result<Scope, PageError> {
    auth::scope(principal, method, path).map_err(|_| PageError::Forbidden)
}

/// The fleet as `scope` lets its principal see it.
async fn visible_fleet(state: &ApiState, scope: &Scope) -> Result<Fleet, StoreError> {
    let fleet = load_fleet(state).await?;
    Ok(if scope.is_all() {
        fleet
    } else {
        fleet.only_projects(|project| scope.allows(project))
    })
}

/// The title and `<main>` of a page.
async fn page(
    state: &ApiState,
    route: &Route,
    query: Option<&str>,
    session: &Session,
) -> Result<(String, Markup), PageError> {
    let principal = &session.principal;
    match route {
        Route::Overview => {
            let scope = scope(principal, &Method::GET, "/api/v1/applications")?;
            let fleet = visible_fleet(state, &scope).await?;
            let query = overview::Query::parse(query);
            Ok(("Fleet".to_owned(), overview::render(&fleet, &query)))
        }
        Route::App(name) => app_page(state, name, session).await,
        Route::Cluster(name) => cluster_page(state, name, principal).await,
        Route::Audit => {
            let scope = scope(principal, &Method::GET, "/api/v1/audit")?;
            let store = state.hub.store();
            let subjects = crate::api::guard::audit_subjects(store, &scope).await?;
            let entries: Vec<_> = store
                .audit_log(AUDIT_ROWS)
                .await?
                .into_iter()
                .filter(|e| {
                    subjects.as_ref().is_none_or(|subjects| {
                        e.who == principal.name || subjects.contains(e.subject.as_str())
                    })
                })
                .collect();
            Ok(("Audit log".to_owned(), layout::audit(&entries)))
        }
        Route::Repositories => {
            let scope = scope(principal, &Method::GET, "/api/v1/repositories")?;
            let visible =
                crate::api::guard::RepositoryFilter::of(state.hub.store(), &scope).await?;
            let records = state.hub.store().repositories().await?;
            let mut urls = state.hub.known_repositories().await?;
            urls.extend(records.iter().map(|r| r.url.clone()));
            urls.retain(|url| visible.allows(url));
            let rows: Vec<repositories::Row<'_>> = urls
                .iter()
                .map(|url| repositories::Row {
                    url,
                    record: records.iter().find(|r| &r.url == url),
                    fetch_error: state.hub.fetch_error(url),
                })
                .collect();
            Ok((
                "Repositories".to_owned(),
                repositories::render(&rows, &state.hub.config_status()),
            ))
        }
        _ => Err(PageError::NotFound),
    }
}

/// What an application page or button stands for: a matrix column or one application.
#[derive(Debug)]
struct Target {
    kind: &'static str,
    project: String,
    apps: Vec<String>,
    generated_by: Option<String>,
    generator_error: Option<String>,
}

/// The column named `name`, else the application, else an ApplicationSet that generated
/// nothing yet.
async fn resolve(
    state: &ApiState,
    fleet: &Fleet,
    name: &str,
) -> Result<Option<Target>, StoreError> {
    let store = state.hub.store();
    if let Some(column) = fleet.columns.iter().find(|c| c.name == name) {
        let generator_error = if column.kind == "ApplicationSet" {
            store.app_set(name).await?.and_then(|s| s.generator_error)
        } else {
            None
        };
        return Ok(Some(Target {
            kind: column.kind,
            project: column.project.clone(),
            apps: column.apps.clone(),
            generated_by: None,
            generator_error,
        }));
    }
    if let Some(app) = fleet.app(name) {
        return Ok(Some(Target {
            kind: "Application",
            project: app.project.clone(),
            apps: vec![app.name.clone()],
            generated_by: app.generated_by.clone(),
            generator_error: None,
        }));
    }
    Ok(store.app_set(name).await?.map(|set| Target {
        kind: "ApplicationSet",
        project: set
            .spec
            .pointer("/spec/template/spec/project")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned(),
        apps: set.generated.clone(),
        generated_by: None,
        generator_error: set.generator_error.clone(),
    }))
}

/// The clusters whose objects a page shows: those with something wrong first.
fn object_clusters(cells: &[&Cell]) -> (Vec<String>, usize) {
    let mut troubled: Vec<&str> = cells
        .iter()
        .filter(|c| !c.is_fine())
        .map(|c| c.cluster.as_str())
        .collect();
    let fine = cells
        .iter()
        .filter(|c| c.is_fine())
        .map(|c| c.cluster.as_str());
    troubled.extend(fine);
    let mut seen = HashSet::new();
    let all: Vec<String> = troubled
        .into_iter()
        .filter(|c| seen.insert(*c))
        .map(str::to_owned)
        .collect();
    let left_out = all.len().saturating_sub(OBJECT_CLUSTERS);
    (all.into_iter().take(OBJECT_CLUSTERS).collect(), left_out)
}

async fn app_page(
    state: &ApiState,
    name: &str,
    session: &Session,
) -> Result<(String, Markup), PageError> {
    let principal = &session.principal;
    let scope = scope(principal, &Method::GET, "/api/v1/applications/{name}")?;
    let fleet = visible_fleet(state, &scope).await?;
    let target = resolve(state, &fleet, name)
        .await?
        .ok_or(PageError::NotFound)?;
    // An application of a project the principal may not see does not exist for them.
    if !scope.allows(&target.project) {
        return Err(PageError::NotFound);
    }
    let may = |method: Method, path: &str| auth::may(principal, &method, path, &target.project);
    let buttons = application::Buttons {
        sync: may(Method::POST, "/api/v1/applications/{name}/sync"),
        rollback: may(Method::POST, "/api/v1/applications/{name}/rollback"),
        unpin: may(Method::DELETE, "/api/v1/applications/{name}/pin"),
    };
    let store = state.hub.store();
    let apps: HashSet<&str> = target.apps.iter().map(String::as_str).collect();
    let mut cells: Vec<&Cell> = target
        .apps
        .iter()
        .flat_map(|app| fleet.cells_of_app(app))
        .collect();
    cells.sort_by(|a, b| (&a.cluster, &a.app).cmp(&(&b.cluster, &b.app)));

    let mut history = Vec::new();
    for app in &target.apps {
        history.extend(store.history(app, HISTORY_ROWS).await?);
    }
    history.sort_by(|a, b| {
        (b.deployed_at, b.generation, &a.cluster).cmp(&(a.deployed_at, a.generation, &b.cluster))
    });
    history.truncate(HISTORY_ROWS as usize);

    let pins: Vec<_> = store
        .pins()
        .await?
        .into_iter()
        .filter(|p| apps.contains(p.app.as_str()))
        .collect();

    let (shown, statuses_left_out) = object_clusters(&cells);
    let mut statuses = Vec::new();
    let mut drift = Vec::new();
    for cluster in &shown {
        statuses.extend(
            store
                .app_statuses(cluster)
                .await?
                .into_iter()
                .filter(|s| apps.contains(s.app.as_str()))
                .map(|s| (cluster.clone(), s)),
        );
        let reports = store.status_history(cluster, DRIFT_REPORTS).await?;
        drift.extend(drift::of_reports(cluster, &reports, |app| {
            apps.contains(app)
        }));
    }
    drift.sort_by(|a, b| b.at.cmp(&a.at));

    let main = application::render(&application::AppPage {
        name,
        kind: target.kind,
        project: &target.project,
        generated_by: target.generated_by.as_deref(),
        generator_error: target.generator_error.as_deref(),
        apps: &target.apps,
        cells,
        history: &history,
        pins: &pins,
        statuses: &statuses,
        statuses_left_out,
        drift: &drift,
        csrf: &session.csrf,
        buttons,
    });
    Ok((name.to_owned(), main))
}

async fn cluster_page(
    state: &ApiState,
    name: &str,
    principal: &Principal,
) -> Result<(String, Markup), PageError> {
    let scope = scope(principal, &Method::GET, "/api/v1/clusters/{name}")?;
    let fleet = visible_fleet(state, &scope).await?;
    let cluster = fleet.cluster(name).ok_or(PageError::NotFound)?;
    let cells: Vec<&Cell> = fleet.cells_of_cluster(name).collect();
    let visible: HashSet<&str> = fleet.apps.iter().map(|a| a.name.as_str()).collect();
    let store = state.hub.store();
    let statuses: Vec<_> = store
        .app_statuses(name)
        .await?
        .into_iter()
        .filter(|s| visible.contains(s.app.as_str()))
        .map(|s| (name.to_owned(), s))
        .collect();
    let reports = store.status_history(name, DRIFT_REPORTS).await?;
    let drift = drift::of_reports(name, &reports, |app| visible.contains(app));
    let main = cluster::render(&cluster::ClusterPage {
        cluster,
        cells,
        statuses: &statuses,
        drift: &drift,
    });
    Ok((format!("Cluster {name}"), main))
}

/// `POST /apps/NAME/{rollback,unpin,sync}`: CSRF-checked, done through `api::actions`, then
/// back to the page with a message.
async fn app_action(
    state: &ApiState,
    request: Request<Incoming>,
    token: &str,
    session: &Session,
    name: &str,
    action: Action,
    peer: SocketAddr,
) -> Response<Body> {
    let chrome = Chrome {
        csrf: Some(&session.csrf),
        flash: None,
        who: Some(&session.principal),
    };
    let Some(form) = read_form(request).await else {
        return too_large();
    };
    if !session.csrf_matches(field(&form, "csrf").unwrap_or_default()) {
        warn!(
            app = name,
            "dashboard form refused: CSRF token does not match"
        );
        return forbidden(&chrome);
    }
    let actor = Actor {
        who: session.principal.name.clone(),
        source: "dashboard",
        address: peer.to_string(),
    };
    let outcome = match act(state, name, action, &form, &session.principal, &actor).await {
        Ok(Some(flash)) => flash,
        Ok(None) => return not_found(&chrome),
        Err(error) => {
            error!(%error, app = name, "dashboard action: store read failed");
            Flash {
                message: "The hub's store failed; see the hub's log.".to_owned(),
                error: true,
            }
        }
    };
    Sessions::global().set_flash(token, outcome);
    redirect(&layout::app_href(name))
}

/// Does what the button asks; the message for the page, or `None` when `name` is unknown.
async fn act(
    state: &ApiState,
    name: &str,
    action: Action,
    form: &[(String, String)],
    principal: &Principal,
    actor: &Actor,
) -> Result<Option<Flash>, StoreError> {
    let read = scope(principal, &Method::GET, "/api/v1/applications/{name}")
        .unwrap_or_else(|_| Scope::Projects(Default::default()));
    let fleet = visible_fleet(state, &read).await?;
    let Some(target) = resolve(state, &fleet, name).await? else {
        return Ok(None);
    };
    if !read.allows(&target.project) {
        return Ok(None);
    }
    let (method, path, verb) = match action {
        Action::Sync => (Method::POST, "/api/v1/applications/{name}/sync", "sync"),
        Action::Rollback => (
            Method::POST,
            "/api/v1/applications/{name}/rollback",
            "roll back",
        ),
        Action::Unpin => (Method::DELETE, "/api/v1/applications/{name}/pin", "unpin"),
    };
    if !auth::may(principal, &method, path, &target.project) {
        warn!(who = %principal.name, app = name, action = verb, "dashboard action refused by the permissions table");
        return Ok(Some(Flash {
            message: format!(
                "Refused: your roles ({}) do not allow you to {verb} {name} (project {}).",
                principal.grants_text(),
                target.project
            ),
            error: true,
        }));
    }
    let hub = &state.hub;
    let refused = |message: String| {
        Ok(Some(Flash {
            message,
            error: true,
        }))
    };
    let done = |message: String| {
        Ok(Some(Flash {
            message,
            error: false,
        }))
    };
    match action {
        Action::Rollback => {
            let revision = field(form, "revision").unwrap_or_default().trim();
            if revision.is_empty() {
                return refused("The form named no revision.".to_owned());
            }
            if field(form, "app").is_some_and(|app| app != name) {
                return refused(format!("The form was for another application, not {name}."));
            }
            let cluster = field(form, "cluster").filter(|c| !c.is_empty());
            let short = short_revision(revision);
            let mut pinned = 0;
            let mut missing: Vec<String> = Vec::new();
            for app in &target.apps {
                match actions::rollback(hub, actor, app, cluster, revision).await {
                    Ok(_) => pinned += 1,
                    Err(error) if error.code == "revision_not_deployed" => {
                        let clusters: Vec<String> = fleet
                            .cells_of_app(app)
                            .map(|c| c.cluster.clone())
                            .filter(|c| cluster.is_none_or(|only| only == c))
                            .collect();
                        if clusters.is_empty() {
                            missing.push(app.clone());
                        } else {
                            missing.extend(clusters);
                        }
                    }
                    Err(error) => return refused(format!("Rollback failed: {}", error.message)),
                }
            }
            let mut message = if pinned > 0 {
                format!(
                    "Rolled back {name} to {short}: {pinned} application{} pinned.",
                    if pinned == 1 { "" } else { "s" }
                )
            } else {
                format!("{name} was not rolled back.")
            };
            if !missing.is_empty() {
                message.push_str(&format!(
                    " Refused on {}: revision {short} was never deployed there.",
                    missing.join(", ")
                ));
            }
            Ok(Some(Flash {
                message,
                error: pinned == 0 || !missing.is_empty(),
            }))
        }
        Action::Unpin => {
            let apps: HashSet<&str> = target.apps.iter().map(String::as_str).collect();
            let pins: Vec<_> = hub
                .store()
                .pins()
                .await?
                .into_iter()
                .filter(|p| apps.contains(p.app.as_str()))
                .collect();
            if pins.is_empty() {
                return refused(format!("{name} is not pinned."));
            }
            for pin in &pins {
                if let Err(error) =
                    actions::unpin(hub, actor, &pin.app, pin.cluster.as_deref()).await
                {
                    return refused(format!("Unpin failed: {}", error.message));
                }
            }
            done(format!(
                "Unpinned {name}: it follows Git again ({} pin{} lifted).",
                pins.len(),
                if pins.len() == 1 { "" } else { "s" }
            ))
        }
        Action::Sync => {
            let mut repos = BTreeSet::new();
            for app in &target.apps {
                let own = actions::repositories_for(hub, app).await;
                let result = match own {
                    Ok(own) => {
                        let own = own.unwrap_or_default();
                        repos.extend(own.iter().cloned());
                        actions::sync(hub, actor, app, own).await
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = result {
                    return refused(format!("Sync failed: {}", error.message));
                }
            }
            done(format!(
                "Sync of {name} requested: {} fetched, then published.",
                match repos.len() {
                    0 => "every repository is".to_owned(),
                    1 => "its repository is".to_owned(),
                    n => format!("its {n} repositories are"),
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lead_to_pages() {
        let check = |path: &str, expected: Route| assert_eq!(route(path), expected, "{path}");
        check("/", Route::Overview);
        check("/login", Route::Login);
        check("/logout", Route::Logout);
        check("/events", Route::Events);
        check("/repositories", Route::Repositories);
        check("/static/app.js", Route::Asset(Asset::Js));
        check("/apps/web", Route::App("web".into()));
        check("/apps/we%20b%3C", Route::App("we b<".into()));
        check(
            "/apps/web/rollback",
            Route::AppAction("web".into(), Action::Rollback),
        );
        check(
            "/apps/web/sync",
            Route::AppAction("web".into(), Action::Sync),
        );
        check("/apps/web/other", Route::NotFound);
        check("/apps/", Route::NotFound);
        check("/clusters/east", Route::Cluster("east".into()));
        check("/clusters/%FF", Route::NotFound);
        check("/nope", Route::NotFound);
        check("/static/other.js", Route::NotFound);
    }

    #[test]
    fn buttons_post_and_pages_get() {
        assert_eq!(methods(&Route::Logout), &[Method::POST]);
        assert!(!methods(&Route::Overview).contains(&Method::POST));
        assert!(methods(&Route::Login).contains(&Method::POST));
        assert!(!methods(&Route::Login).contains(&Method::DELETE));
    }

    #[test]
    fn objects_are_read_for_troubled_clusters_first() {
        let cell = |cluster: &str, sync: &str| Cell {
            app: "web".into(),
            cluster: cluster.into(),
            generation: 1,
            revision: String::new(),
            blob: String::new(),
            sync: sync.into(),
            health: "Healthy".into(),
            message: String::new(),
            why: None,
            pinned: None,
        };
        let cells: Vec<Cell> = (0..25)
            .map(|i| {
                cell(
                    &format!("c{i:02}"),
                    if i == 24 { "OutOfSync" } else { "Synced" },
                )
            })
            .collect();
        let refs: Vec<&Cell> = cells.iter().collect();
        let (shown, left_out) = object_clusters(&refs);
        assert_eq!(shown.len(), OBJECT_CLUSTERS);
        assert_eq!(shown[0], "c24");
        assert_eq!(left_out, 5);
    }
}
