//! The permissions table (`hub/permissions.md`) against a real `flotilla-hub serve`: every
//! route of the human API must have a row, and every row is called as each role — the local
//! admin, a maintainer of project `shop` and a viewer of `shop`, each an API token — on an
//! object of `shop` and on one of project `billing`, and the answer must be what the row
//! says: refused with 403 where it says `no` (and for `project` on the other project's
//! object), allowed otherwise, and without anything of `billing` where it says `filtered`.
//! Then what people notice: a viewer cannot sync, a maintainer of `shop` can change nothing
//! of `billing` and never sees a repository credential, an application its project does not
//! permit is refused when it is created, and expired or revoked tokens are refused.

mod support;

use std::collections::BTreeSet;

use flotilla_hub::api::openapi::ROUTES;
use flotilla_hub::auth::{Access, PERMISSIONS, Role, Rule};
use serde_json::{Value, json};
use support::git;
use support::hub_process::{Reply, Serve, init, start};

const FLEET: &str = "https://git.example/acme/fleet.git";
const WEBHOOK_SECRET: &str = "whsec-permissions-4c1d";
const GIT_TOKEN: &str = "ghp_permissionsTestToken0123456789";

/// The project a call's object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Other,
}

impl Target {
    fn project(self) -> &'static str {
        match self {
            Target::Own => "shop",
            Target::Other => "billing",
        }
    }
}

fn projects_yaml() -> String {
    let project = |name: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: {name}}}\n\
             spec:\n  sourceRepos: ['https://git.example/{name}/*', '{FLEET}']\n  \
             destinations: [{{name: '*', namespace: '{name}-*'}}]\n"
        )
    };
    format!("{}---\n{}", project("shop"), project("billing"))
}

fn app_yaml(name: &str, project: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}}}\n\
         spec:\n  project: {project}\n  \
         source: {{repoURL: '{FLEET}', path: apps/web, targetRevision: main}}\n  \
         destination: {{name: east, namespace: {project}-web}}\n"
    )
}

fn app_set_yaml(name: &str, project: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: {name}}}\n\
         spec:\n  generators: [{{list: {{elements: [{{cluster: east}}]}}}}]\n  template:\n    \
         metadata: {{name: '{name}-{{{{cluster}}}}'}}\n    spec:\n      project: {project}\n      \
         source: {{repoURL: '{FLEET}', path: apps/web, targetRevision: main}}\n      \
         destination: {{name: '{{{{cluster}}}}', namespace: {project}-web}}\n"
    )
}

struct Fixture {
    hub: Serve,
    /// Role → its API token.
    tokens: Vec<(Role, String)>,
    /// A counter for names of objects made for one call.
    made: std::sync::atomic::AtomicU32,
}

impl Fixture {
    fn token(&self, role: Role) -> &str {
        self.tokens
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.as_str())
            .expect("a token per role")
    }

    async fn admin_ok(&self, method: &str, path: &str, body: Option<String>) -> Value {
        let reply = self.hub.admin(method, path, body).await;
        assert!(
            (200..300).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    fn fresh(&self, prefix: &str) -> String {
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-x{n}")
    }

    /// The path and body that call `rule`'s route on an object of `target`, making what the
    /// call may consume (an application to delete, a token to revoke) first.
    async fn request(&self, rule: &Rule, target: Target) -> (String, Option<String>) {
        let project = target.project();
        let app = format!("{project}-web");
        let set = format!("{project}-set");
        let path = rule.path.as_str();
        let m = rule.method.as_str();
        match (m, path) {
            ("DELETE", "/api/v1/applications/{name}") => {
                let name = self.fresh(&format!("{project}-gone"));
                self.admin_ok("POST", "/api/v1/applications", Some(app_yaml(&name, project)))
                    .await;
                (format!("/api/v1/applications/{name}"), None)
            }
            ("DELETE", "/api/v1/applicationsets/{name}") => {
                let name = self.fresh(&format!("{project}-gone"));
                self.admin_ok("POST", "/api/v1/applicationsets", Some(app_set_yaml(&name, project)))
                    .await;
                (format!("/api/v1/applicationsets/{name}"), None)
            }
            ("POST", "/api/v1/applications") => {
                (path.to_owned(), Some(app_yaml(&self.fresh(&format!("{project}-new")), project)))
            }
            ("POST", "/api/v1/applicationsets") => (
                path.to_owned(),
                Some(app_set_yaml(&self.fresh(&format!("{project}-new")), project)),
            ),
            ("POST", "/api/v1/apply") => (
                path.to_owned(),
                Some(app_yaml(&self.fresh(&format!("{project}-applied")), project)),
            ),
            ("POST", "/api/v1/applications/{name}/rollback")
            | ("POST", "/api/v1/applications/{name}/pin") => (
                path.replace("{name}", &app),
                Some(json!({"revision": "0123456789abcdef0123456789abcdef01234567"}).to_string()),
            ),
            (_, p) if p.starts_with("/api/v1/applications/{name}") => {
                (p.replace("{name}", &app), None)
            }
            (_, "/api/v1/applicationsets/{name}") => (path.replace("{name}", &set), None),
            ("POST", "/api/v1/clusters") => (
                path.to_owned(),
                Some(json!({"name": self.fresh("spare"), "labels": {"env": "dev"}}).to_string()),
            ),
            ("POST", "/api/v1/clusters/{name}/labels") => (
                "/api/v1/clusters/spare/labels".to_owned(),
                Some(json!({"set": {"tier": "2"}}).to_string()),
            ),
            ("POST", "/api/v1/clusters/{name}/tokens") => (
                "/api/v1/clusters/spare/tokens".to_owned(),
                Some(json!({}).to_string()),
            ),
            ("POST", "/api/v1/clusters/{name}/approve" | "/api/v1/clusters/{name}/revoke") => {
                (path.replace("{name}", "spare"), None)
            }
            (_, p) if p.starts_with("/api/v1/clusters/{name}") => (p.replace("{name}", "east"), None),
            ("PUT", "/api/v1/repositories") => (
                path.to_owned(),
                Some(json!({"url": format!("https://git.example/{project}/{}.git", self.fresh("r"))}).to_string()),
            ),
            ("DELETE", "/api/v1/repositories") => {
                let url = format!("https://git.example/{project}/{}.git", self.fresh("gone"));
                self.admin_ok("PUT", "/api/v1/repositories", Some(json!({"url": url}).to_string()))
                    .await;
                (format!("{path}?url={}", urlencode(&url)), None)
            }
            ("PUT", "/api/v1/test/serve-override") => (path.to_owned(), Some("{}".to_owned())),
            ("POST", "/api/v1/tokens") => (
                path.to_owned(),
                Some(json!({"name": self.fresh("t"), "grants": [{"role": "viewer", "project": project}]}).to_string()),
            ),
            ("DELETE", "/api/v1/tokens/{id}") => {
                let made = self
                    .admin_ok(
                        "POST",
                        "/api/v1/tokens",
                        Some(json!({"name": self.fresh("doomed"), "grants": [{"role": "viewer"}]}).to_string()),
                    )
                    .await;
                (format!("/api/v1/tokens/{}", made["id"].as_str().expect("id")), None)
            }
            ("POST", "/api/v1/webhook/{provider}") => {
                ("/api/v1/webhook/github".to_owned(), Some("{}".to_owned()))
            }
            ("GET", "/api/v1/events") => (path.to_owned(), None),
            _ => (path.to_owned(), None),
        }
    }

    async fn call(
        &self,
        role: Option<Role>,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Reply {
        if path == "/api/v1/events" {
            // A stream: only its status matters here.
            let status = self
                .hub
                .status(method, path, role.map(|r| self.token(r)))
                .await;
            return Reply {
                status,
                body: Value::Null,
            };
        }
        self.hub
            .call(method, path, role.map(|r| self.token(r)), body)
            .await
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn setup(dir: &std::path::Path) -> Fixture {
    let repo = dir.join("fleet");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    support::write(
        &repo,
        "apps/web/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
    );
    support::write(
        &repo,
        "apps/rbac/binding.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: everyone-admin}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
         subjects: [{kind: Group, name: 'system:authenticated', apiGroup: rbac.authorization.k8s.io}]\n",
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "web"]);
    let data_dir = dir.join("data");
    let admin = init(&data_dir);
    let hub = start(
        dir,
        &data_dir,
        admin,
        WEBHOOK_SECRET,
        &[format!("--rewrite={FLEET}={}", repo.display())],
    );
    let fixture = Fixture {
        hub,
        tokens: Vec::new(),
        made: std::sync::atomic::AtomicU32::new(0),
    };
    fixture
        .admin_ok("POST", "/api/v1/apply", Some(projects_yaml()))
        .await;
    for cluster in ["east", "spare"] {
        fixture
            .admin_ok(
                "POST",
                "/api/v1/clusters",
                Some(json!({"name": cluster, "labels": {"env": "prod"}}).to_string()),
            )
            .await;
    }
    for project in ["shop", "billing"] {
        fixture
            .admin_ok(
                "POST",
                "/api/v1/applications",
                Some(app_yaml(&format!("{project}-web"), project)),
            )
            .await;
        fixture
            .admin_ok(
                "POST",
                "/api/v1/applicationsets",
                Some(app_set_yaml(&format!("{project}-set"), project)),
            )
            .await;
        fixture
            .admin_ok(
                "PUT",
                "/api/v1/repositories",
                Some(
                    json!({"url": format!("https://git.example/{project}/app.git"),
                           "credentials": {"type": "token", "token": GIT_TOKEN}})
                    .to_string(),
                ),
            )
            .await;
    }
    let mut tokens = vec![(Role::Admin, fixture.hub.token.clone())];
    for (role, grant) in [
        (
            Role::Maintainer,
            json!({"role": "maintainer", "project": "shop"}),
        ),
        (Role::Viewer, json!({"role": "viewer", "project": "shop"})),
    ] {
        let made = fixture
            .admin_ok(
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": role.as_str(), "grants": [grant]}).to_string()),
            )
            .await;
        tokens.push((role, made["token"].as_str().expect("token").to_owned()));
    }
    Fixture { tokens, ..fixture }
}

fn refused(reply: &Reply) -> bool {
    reply.status == 403 && reply.body["error"]["code"] == "forbidden"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_table_and_every_role_gets_what_its_row_says() {
    let rules = PERMISSIONS.as_ref().expect("the permissions table parses");
    // Every route has a row, and every row is a route.
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let rows: BTreeSet<(String, String)> = rules
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    let uncovered: Vec<_> = routes.difference(&rows).collect();
    assert!(
        uncovered.is_empty(),
        "routes missing from hub/permissions.md: {uncovered:?}"
    );
    let stale: Vec<_> = rows.difference(&routes).collect();
    assert!(
        stale.is_empty(),
        "rows of hub/permissions.md that are no route: {stale:?}"
    );
    for route in ROUTES {
        let rule = rules
            .iter()
            .find(|r| r.method == route.method && r.path == route.path)
            .expect("checked above");
        assert_eq!(
            rule.access(Role::Admin) == Access::Public,
            !route.bearer,
            "{} {}: public in the table exactly when the route takes no token",
            route.method,
            route.path
        );
    }

    // The table is the policy, so what it may say is held here too: a viewer only reads,
    // and only an admin changes clusters, repositories, projects and tokens.
    for rule in rules {
        let admin_only = [
            "/api/v1/clusters",
            "/api/v1/repositories",
            "/api/v1/tokens",
            "/api/v1/test",
        ]
        .iter()
        .any(|prefix| rule.path.starts_with(prefix));
        if rule.method != http::Method::GET && rule.access(Role::Admin) != Access::Public {
            assert_eq!(
                rule.access(Role::Viewer),
                Access::No,
                "viewers only read: {} {}",
                rule.method,
                rule.path
            );
            if admin_only {
                assert_eq!(
                    rule.access(Role::Maintainer),
                    Access::No,
                    "admins only: {} {}",
                    rule.method,
                    rule.path
                );
            }
        }
        for role in [Role::Maintainer, Role::Viewer] {
            if rule.path.ends_with("/state")
                || rule.path.ends_with("/bundle")
                || rule.path == "/api/v1/tokens"
            {
                assert_eq!(
                    rule.access(role),
                    Access::No,
                    "every project's manifests or tokens: {} {}",
                    rule.method,
                    rule.path
                );
            }
        }
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let fx = setup(dir.path()).await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for rule in rules {
        for role in Role::ALL {
            let access = rule.access(role);
            let targets: &[Target] = match access {
                Access::Project => &[Target::Own, Target::Other],
                _ => &[Target::Own],
            };
            for &target in targets {
                let (path, body) = fx.request(rule, target).await;
                let caller = (access != Access::Public).then_some(role);
                let reply = fx.call(caller, rule.method.as_str(), &path, body).await;
                checked += 1;
                let what = format!(
                    "{} {} as {} on {} ({}): {} {}",
                    rule.method,
                    rule.path,
                    role.as_str(),
                    target.project(),
                    access.as_str(),
                    reply.status,
                    reply.body
                );
                let expect_refused = match access {
                    Access::No => true,
                    Access::Project => role != Role::Admin && target == Target::Other,
                    Access::Public | Access::Yes | Access::Filtered => false,
                };
                // A public route may still refuse a caller for its own reasons (the webhook's
                // signature), never for want of a bearer token.
                let unauthorized = reply.status == 401 && access != Access::Public;
                if expect_refused != refused(&reply) || unauthorized || reply.status >= 500 {
                    failures.push(what);
                    continue;
                }
                if access == Access::Filtered
                    && role != Role::Admin
                    && reply.body.to_string().contains("billing")
                {
                    failures.push(format!("{what}: a filtered answer shows project billing"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} calls differ from the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 130, "{checked} calls");
    println!("{checked} calls answered as hub/permissions.md says");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_keep_to_their_projects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = setup(dir.path()).await;
    let as_ = |role: Role, method: &'static str, path: String, body: Option<String>| {
        let fx = &fx;
        async move { fx.call(Some(role), method, &path, body).await }
    };

    // A viewer reads but cannot sync, roll back or delete.
    let read = as_(
        Role::Viewer,
        "GET",
        "/api/v1/applications/shop-web".into(),
        None,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let sync = as_(
        Role::Viewer,
        "POST",
        "/api/v1/applications/shop-web/sync".into(),
        None,
    )
    .await;
    assert!(refused(&sync), "{}", sync.body);
    let message = sync.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("token:viewer (viewer:shop) may not POST"),
        "{message}"
    );

    // A maintainer of shop syncs shop, and can change nothing of billing.
    let sync = as_(
        Role::Maintainer,
        "POST",
        "/api/v1/applications/shop-web/sync".into(),
        None,
    )
    .await;
    assert!(sync.status == 200 || sync.status == 202, "{}", sync.body);
    for (method, path, body) in [
        ("POST", "/api/v1/applications/billing-web/sync", None),
        ("DELETE", "/api/v1/applications/billing-web", None),
        ("DELETE", "/api/v1/applicationsets/billing-set", None),
        (
            "POST",
            "/api/v1/applications",
            Some(app_yaml("sneaky", "billing")),
        ),
        ("POST", "/api/v1/apply", Some(app_yaml("sneaky", "billing"))),
        ("POST", "/api/v1/apply", Some(projects_yaml())),
    ] {
        let reply = as_(Role::Maintainer, method, path.into(), body).await;
        assert!(
            refused(&reply),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
    // Nor move billing's application into shop by replacing it.
    let hijack = as_(
        Role::Maintainer,
        "POST",
        "/api/v1/applications?upsert=true".into(),
        Some(app_yaml("billing-web", "shop")),
    )
    .await;
    assert!(refused(&hijack), "{}", hijack.body);
    let still = fx
        .admin_ok("GET", "/api/v1/applications/billing-web", None)
        .await;
    assert_eq!(
        still["declared"]["project"], "billing",
        "billing's application is unchanged"
    );

    // It sees shop's applications only, and never a credential.
    let list = as_(Role::Maintainer, "GET", "/api/v1/applications".into(), None).await;
    let names: Vec<&str> = list.body["applications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(
        names.contains(&"shop-web") && !names.contains(&"billing-web"),
        "{names:?}"
    );
    let repos = as_(Role::Maintainer, "GET", "/api/v1/repositories".into(), None).await;
    assert_eq!(repos.status, 200);
    let text = repos.body.to_string();
    assert!(text.contains("https://git.example/shop/app.git"), "{text}");
    assert!(
        !text.contains("billing") && !text.contains(GIT_TOKEN),
        "{text}"
    );
    assert!(
        !fx.hub.answers().contains(GIT_TOKEN),
        "no answer carries the Git token"
    );

    // An application its project does not permit is refused when it is created.
    let outside =
        app_yaml("shop-outside", "shop").replace("namespace: shop-web", "namespace: kube-system");
    let reply = as_(
        Role::Maintainer,
        "POST",
        "/api/v1/applications".into(),
        Some(outside),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("namespace kube-system is not permitted in project shop (destinations)"),
        "{message}"
    );
    let foreign = app_yaml("shop-foreign", "shop").replace(FLEET, "https://evil.example/x.git");
    let reply = as_(
        Role::Admin,
        "POST",
        "/api/v1/applications".into(),
        Some(foreign),
    )
    .await;
    assert_eq!(reply.status, 422, "even for an admin: {}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("(sourceRepos)")
    );

    // A maintainer cannot ship a ClusterRoleBinding its project does not allow: the
    // application is declared, but refused when rendered, and never reaches the cluster.
    let binding = app_yaml("shop-rbac", "shop").replace("path: apps/web", "path: apps/rbac")
        + "  syncPolicy: {automated: {}}\n";
    let reply = as_(
        Role::Maintainer,
        "POST",
        "/api/v1/applications".into(),
        Some(binding),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let why = loop {
        let app = fx
            .admin_ok("GET", "/api/v1/applications/shop-rbac", None)
            .await;
        if let Some(why) = app["clusters"][0]["why"].as_str()
            && why.contains("clusterResourceWhitelist")
        {
            break why.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal in time: {app}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(why.contains("ClusterRoleBinding everyone-admin"), "{why}");
    let state = fx.hub.state("east").await.expect("east is served a state");
    assert!(
        !state.to_string().contains("everyone-admin"),
        "the binding is in no signed state"
    );

    // The audit log records who did what from where, and a maintainer reads only its part.
    let audit = as_(Role::Maintainer, "GET", "/api/v1/audit".into(), None).await;
    let text = audit.body.to_string();
    assert!(!text.contains("billing"), "{text}");
    let entries = fx.admin_ok("GET", "/api/v1/audit", None).await;
    let sync = entries["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["who"] == "token:maintainer" && e["action"] == "sync")
        .unwrap_or_else(|| panic!("the maintainer's sync is audited: {entries}"));
    assert_eq!(sync["source"], "api");
    assert!(
        sync["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{sync}"
    );

    // A revoked token is refused at once.
    let tokens = fx.admin_ok("GET", "/api/v1/tokens", None).await;
    let id = tokens["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "maintainer")
        .and_then(|t| t["id"].as_str())
        .expect("the maintainer's token")
        .to_owned();
    fx.admin_ok("DELETE", &format!("/api/v1/tokens/{id}"), None)
        .await;
    let after = as_(Role::Maintainer, "GET", "/api/v1/applications".into(), None).await;
    assert_eq!(after.status, 401, "{}", after.body);
}
