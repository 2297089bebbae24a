//! The dashboard as a browser uses it, against `flotilla-hub serve` as a child process: the
//! login form takes the admin token (and refuses another without echoing it), the session
//! cookie is HttpOnly and SameSite=Strict, pages send strangers to the login page, the
//! overview shows registered clusters and applied applications, labels are escaped, a form
//! without this session's CSRF token changes nothing, the buttons roll back, unpin and sync
//! through the same actions as the API, the event stream needs a session, and logout ends
//! it. Cookies are passed by hand (the client keeps none) and redirects are not followed.

mod support;

use std::path::Path;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use support::git;
use support::hub_process::{Serve, init, start};

const REPO: &str = "https://git.example/acme/fleet.git";
const WRONG_TOKEN: &str = "flt_wrong-token-do-not-echo-5d1e";

fn commit(repo: &Path, greeting: &str) -> String {
    support::write(
        repo,
        "apps/web/config.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web, namespace: web}}\ndata: {{greeting: {greeting}}}\n"
        ),
    );
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", greeting]);
    git(repo, &["rev-parse", "HEAD"])
}

const APPLICATION: &str = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web}
spec:
  project: default
  source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web}
  destination: {name: east, namespace: web}
  syncPolicy: {automated: {}}
";

struct Browser {
    client: reqwest::Client,
    base: String,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self.body.find(marker).expect("a form with a csrf field") + marker.len();
        let end = self.body[start..].find('"').expect("closing quote");
        self.body[start..start + end].to_owned()
    }
}

impl Browser {
    fn new(hub: &Serve) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
            base: hub.base.clone(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request.send().await.expect("the hub answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.send(request).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.send(request).await
    }

    /// Logs in with `token`; the `name=value` of the session cookie.
    async fn login(&self, token: &str) -> String {
        let page = self.post("/login", None, &[("token", token)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let cookie = page.set_cookie().expect("a session cookie");
        cookie.split(';').next().expect("name=value").to_owned()
    }
}

/// A hub with cluster east (a `<script>` in a label) and west, and Application web on east,
/// published.
async fn fleet(dir: &Path) -> Serve {
    let repo = dir.join("fleet");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    commit(&repo, "hello");
    let data_dir = dir.join("data");
    let token = init(&data_dir);
    let hub = start(
        dir,
        &data_dir,
        token,
        "whsec-dashboard-test",
        &[format!("--rewrite={REPO}={}", repo.display())],
    );
    for (name, labels) in [
        (
            "east",
            json!({"env": "prod", "team": "<script>alert('x')</script>"}),
        ),
        ("west", json!({"env": "dev"})),
    ] {
        let reply = hub
            .admin(
                "POST",
                "/api/v1/clusters",
                Some(json!({"name": name, "labels": labels}).to_string()),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let applied = hub
        .admin("POST", "/api/v1/apply", Some(APPLICATION.to_owned()))
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    hub.wait_for(&["east"], "web published to east", |g| g[0].is_some())
        .await;
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_and_security_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = fleet(dir.path()).await;
    let browser = Browser::new(&hub);

    // Strangers are sent to the login page, the event stream included.
    for path in [
        "/",
        "/apps/web",
        "/clusters/east",
        "/repositories",
        "/events",
    ] {
        let page = browser.get(path, None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/login", "{path}");
    }
    let stale = browser
        .get("/", Some("flotilla_session=0123456789abcdef"))
        .await;
    assert_eq!(stale.location(), "/login", "an unknown session is none");

    let login = browser.get("/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .body
            .contains(r#"<form id="login" method="post" action="/login">"#)
    );
    assert!(login.body.contains(r#"id="token""#) && login.body.contains(r#"<label for="token">"#));
    let header = |page: &Page, name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header(&login, "content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(header(&login, "x-content-type-options"), "nosniff");
    assert_eq!(header(&login, "referrer-policy"), "no-referrer");
    assert_eq!(header(&login, "cache-control"), "no-store");

    // A wrong token: 401, said so, never echoed, no cookie.
    let refused = browser
        .post("/login", None, &[("token", WRONG_TOKEN)])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("token was refused"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains(WRONG_TOKEN));
    assert!(refused.set_cookie().is_none());

    // The admin token: a session cookie only scripts cannot read and other sites cannot send.
    let accepted = browser.post("/login", None, &[("token", &hub.token)]).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER);
    assert_eq!(accepted.location(), "/");
    let set_cookie = accepted.set_cookie().expect("a cookie");
    assert!(set_cookie.starts_with("flotilla_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(!set_cookie.contains(&hub.token));
    let behind_tls = browser.send(
        browser
            .client
            .post(format!("{}/login", browser.base))
            .header("x-forwarded-proto", "https")
            .form(&[("token", hub.token.as_str())]),
    );
    let behind_tls = behind_tls.await.set_cookie().expect("a cookie");
    assert!(behind_tls.contains("; Secure"), "{behind_tls}");

    let cookie = browser.login(&hub.token).await;
    let overview = browser.get("/", Some(&cookie)).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains("<html lang=\"en\">"));

    // The event stream, with a session.
    let events = browser
        .client
        .get(format!("{}/events", browser.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(
        events
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    drop(events);

    // Unknown pages and methods.
    assert_eq!(
        browser.get("/no/such/page", Some(&cookie)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser
            .get("/apps/nothing-here", Some(&cookie))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let put = browser
        .send(browser.client.put(format!("{}/", browser.base)))
        .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    let script = browser.get("/static/app.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains("EventSource('/events')"));

    // Logout needs the session's CSRF token, then ends the session.
    let csrf = overview.csrf();
    let forged = browser
        .post("/logout", Some(&cookie), &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get("/", Some(&cookie)).await.status,
        StatusCode::OK,
        "a refused logout leaves the session"
    );
    let out = browser
        .post("/logout", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert!(out.set_cookie().is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(browser.get("/", Some(&cookie)).await.location(), "/login");
    assert_eq!(
        browser.get("/events", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );

    let log = hub.log();
    assert!(
        !log.contains(WRONG_TOKEN),
        "the refused token is in the log"
    );
    assert!(!log.contains(&hub.token), "the admin token is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_its_pages_and_buttons() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = fleet(dir.path()).await;
    let browser = Browser::new(&hub);
    let cookie = browser.login(&hub.token).await;

    // The overview: a row per registered cluster, a column per application.
    let overview = browser.get("/", Some(&cookie)).await;
    let body = &overview.body;
    assert!(body.contains(r#"<table id="matrix">"#), "{body}");
    assert!(body.contains(r#"<tr data-cluster="east">"#));
    assert!(body.contains(r#"<tr data-cluster="west">"#));
    assert!(body.contains(r#"<th scope="col" data-column="web""#));
    assert!(body.contains(r#"<a href="/apps/web">web</a>"#));
    assert!(body.contains(
        r#"<td class="cell" data-column="web" data-sync="Unknown" data-health="Unknown""#
    ));
    assert!(
        body.contains(r#"<td class="cell none" data-column="web"></td>"#),
        "web does not target west"
    );
    assert!(body.contains(r#"<section id="counts""#));
    assert!(body.contains(r#"<form id="filters" method="get""#));
    let filtered = browser.get("/?selector=env%3Ddev", Some(&cookie)).await;
    assert!(filtered.body.contains(r#"<tr data-cluster="west">"#));
    assert!(!filtered.body.contains(r#"<tr data-cluster="east">"#));

    // A label with a script is shown as text.
    let east = browser.get("/clusters/east", Some(&cookie)).await;
    assert_eq!(east.status, StatusCode::OK);
    assert!(
        east.body
            .contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
        "{}",
        east.body
    );
    assert!(!east.body.contains("<script>alert"));
    assert!(east.body.contains(r#"<tr data-app="web">"#));

    let repositories = browser.get("/repositories", Some(&cookie)).await;
    assert_eq!(repositories.status, StatusCode::OK);
    assert!(repositories.body.contains(REPO), "{}", repositories.body);

    // The application: its cluster, its history with a rollback button.
    let app = browser.get("/apps/web", Some(&cookie)).await;
    assert_eq!(app.status, StatusCode::OK);
    assert!(app.body.contains(r#"<table id="clusters">"#));
    assert!(
        app.body
            .contains(r#"<tr data-cluster="east" data-app="web">"#)
    );
    assert!(app.body.contains(r#"<table id="history">"#));
    let history = hub
        .admin("GET", "/api/v1/applications/web/history", None)
        .await;
    let revision = history.body["history"][0]["revision"]
        .as_str()
        .unwrap_or_else(|| panic!("a deployed revision: {}", history.body))
        .to_owned();
    assert!(
        app.body
            .contains(&format!("Roll back to {}", &revision[..7]))
    );
    assert!(
        app.body
            .contains(r#"<form class="rollback" method="post" action="/apps/web/rollback">"#)
    );
    let csrf = app.csrf();

    // A form without this session's CSRF token changes nothing.
    let rollback = |csrf: &'static str| {
        let revision = revision.clone();
        let browser = &browser;
        let cookie = cookie.clone();
        async move {
            let mut form = vec![
                ("app", "web"),
                ("revision", revision.as_str()),
                ("cluster", ""),
            ];
            if !csrf.is_empty() {
                form.push(("csrf", csrf));
            }
            browser
                .post("/apps/web/rollback", Some(&cookie), &form)
                .await
        }
    };
    assert_eq!(rollback("").await.status, StatusCode::FORBIDDEN);
    assert_eq!(rollback("forged-token").await.status, StatusCode::FORBIDDEN);
    let pins = || async {
        hub.admin("GET", "/api/v1/applications/web", None)
            .await
            .body["pins"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(pins().await, 0, "a refused form pinned nothing");
    let audit = hub.admin("GET", "/api/v1/audit", None).await;
    assert!(
        !audit.body.to_string().contains("\"rollback\""),
        "a refused form left an audit entry: {}",
        audit.body
    );

    // With it, the button rolls back and the page says so.
    let done = browser
        .post(
            "/apps/web/rollback",
            Some(&cookie),
            &[
                ("app", "web"),
                ("revision", &revision),
                ("cluster", ""),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/apps/web");
    assert_eq!(pins().await, 1);
    let after = browser.get("/apps/web", Some(&cookie)).await;
    assert!(after.body.contains(r#"role="status""#));
    assert!(after.body.contains("Rolled back web to"), "{}", after.body);
    assert!(after.body.contains(r#"action="/apps/web/unpin""#));
    let audit = hub.admin("GET", "/api/v1/audit", None).await;
    let entry = &audit.body["entries"][0];
    assert_eq!(entry["action"], "rollback", "{}", audit.body);
    assert_eq!(entry["source"], "dashboard");
    // The message is shown once.
    let again = browser.get("/apps/web", Some(&cookie)).await;
    assert!(!again.body.contains("Rolled back web to"));

    let unpinned = browser
        .post("/apps/web/unpin", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(unpinned.status, StatusCode::SEE_OTHER);
    assert_eq!(pins().await, 0);

    let synced = browser
        .post("/apps/web/sync", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(synced.status, StatusCode::SEE_OTHER);
    let page = browser.get("/apps/web", Some(&cookie)).await;
    assert!(page.body.contains("Sync of web requested"), "{}", page.body);

    // A rollback to a revision never deployed is refused with a message.
    let never = browser
        .post(
            "/apps/web/rollback",
            Some(&cookie),
            &[
                ("app", "web"),
                ("revision", "ffffffffffffffffffffffffffffffffffffffff"),
                ("cluster", ""),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(never.status, StatusCode::SEE_OTHER);
    let page = browser.get("/apps/web", Some(&cookie)).await;
    assert!(
        page.body
            .contains("revision fffffff was never deployed there"),
        "{}",
        page.body
    );
    assert_eq!(pins().await, 0);
}

/// An API token's session sees what its grants allow: a viewer of project `shop` sees its
/// application and none of `billing`'s, gets no button, is refused a crafted form, reads the
/// audit log of its project only; the session ends when the token is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_see_and_do_what_their_roles_allow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = fleet(dir.path()).await;
    let project = |name: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: {name}}}\n\
             spec: {{sourceRepos: ['*'], destinations: [{{name: '*', namespace: '*'}}]}}\n---\n\
             apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}-app}}\n\
             spec:\n  project: {name}\n  source: {{repoURL: '{REPO}', path: apps/web}}\n  \
             destination: {{name: east, namespace: {name}}}\n"
        )
    };
    for name in ["shop", "billing"] {
        let applied = hub
            .admin("POST", "/api/v1/apply", Some(project(name)))
            .await;
        assert_eq!(applied.status, 200, "{}", applied.body);
    }
    let made = hub
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(
                json!({"name": "shop-viewer", "grants": [{"role": "viewer", "project": "shop"}]})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.body["token"].as_str().expect("token").to_owned();
    let id = made.body["id"].as_str().expect("id").to_owned();
    hub.wait_for(&["east"], "both apps published", |_| true)
        .await;

    let browser = Browser::new(&hub);
    let cookie = browser.login(&token).await;
    let overview = browser.get("/", Some(&cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview
            .body
            .contains(r#"id="whoami" data-grants="viewer:shop""#),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("token:shop-viewer"));
    assert!(
        overview.body.contains(r#"data-column="shop-app""#),
        "{}",
        overview.body
    );
    assert!(!overview.body.contains("billing"), "{}", overview.body);
    assert!(
        !overview.body.contains(r#"data-column="web""#),
        "the default project is not the viewer's"
    );

    let app = browser.get("/apps/shop-app", Some(&cookie)).await;
    assert_eq!(app.status, StatusCode::OK);
    for form in [r#"class="sync""#, r#"class="rollback""#, r#"class="unpin""#] {
        assert!(!app.body.contains(form), "a viewer gets no {form} button");
    }
    let other = browser.get("/apps/billing-app", Some(&cookie)).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(!other.body.contains("billing-app"));

    // A crafted form is refused by the permissions table, not only hidden.
    let csrf = app.csrf();
    let sync = browser
        .post("/apps/shop-app/sync", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(sync.status, StatusCode::SEE_OTHER);
    let after = browser.get("/apps/shop-app", Some(&cookie)).await;
    assert!(
        after
            .body
            .contains("Refused: your roles (viewer:shop) do not allow you to sync shop-app"),
        "{}",
        after.body
    );
    let audit = browser.get("/audit", Some(&cookie)).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.body.contains("token:shop-viewer"),
        "its own login: {}",
        audit.body
    );
    assert!(!audit.body.contains("billing"), "{}", audit.body);
    let admin_audit = hub.admin("GET", "/api/v1/audit", None).await;
    assert!(
        !admin_audit.body.to_string().contains(r#""action":"sync""#),
        "the refused sync changed nothing"
    );
    let login = admin_audit.body["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "login")
        .expect("the login is audited")
        .clone();
    assert_eq!(login["who"], "token:shop-viewer");
    assert_eq!(login["source"], "dashboard");
    assert!(
        login["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );

    // Revoking the token ends its sessions.
    let revoked = hub
        .admin("DELETE", &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.status, 200);
    let gone = browser.get("/", Some(&cookie)).await;
    assert_eq!(gone.location(), "/login");
    let again = browser.post("/login", None, &[("token", &token)]).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.body.contains("was revoked at"), "{}", again.body);
    assert!(!again.body.contains(&token), "the token is never echoed");
}
