//! Every route of the human API against a real `flotilla-hub serve` process: a local Git
//! repository, three clusters (one with an agent played over the real agent API), an
//! ApplicationSet and an Application declared through the API. Listing with filters and
//! pages, the why-not-synced sentence, diff between deployed and target revisions with the
//! agent's drift, history, rollback and unpin, sync, create and delete, ApplicationSets, one
//! cluster, the audit log and the event stream. Then bad input on every route (no token,
//! unknown fields, unknown query parameters, huge bodies, invalid names), and no credential
//! in any answer. A test fails when a route exists that it did not call.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_hub::api::openapi::{ROUTES, match_path};
use serde_json::{Value, json};
use support::agent::{Agent, register, send};
use support::git;
use support::hub_process::{DEADLINE, Reply, Serve, init, start, tail};

const FLEET: &str = "https://git.example/acme/fleet.git";
const WEBHOOK_SECRET: &str = "whsec-api-test-0b5e7d";
const GIT_TOKEN: &str = "ghp_apiTestToken0123456789abcdef";
const GIT_PASSWORD: &str = "pw-api-test-do-not-show";

const APP_SET: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web, targetRevision: main}
      destination: {name: '{{name}}', namespace: web}
      syncPolicy: {automated: {}}
";

const TOOLS: &str = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: tools, labels: {team: platform}}
spec:
  project: ops
  source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/tools, targetRevision: main}
  destination: {name: dev, namespace: tools}
  syncPolicy: {automated: {}}
";

fn commit(repo: &std::path::Path, greeting: &str) -> String {
    support::write(
        repo,
        "apps/web/config.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web, namespace: web}}\ndata: {{greeting: {greeting}}}\n"
        ),
    );
    support::write(
        repo,
        "apps/tools/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tools, namespace: tools}\ndata: {a: b}\n",
    );
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", greeting]);
    git(repo, &["rev-parse", "HEAD"])
}

/// The hub, and every (method, path) called through it.
struct Api {
    hub: Serve,
    called: Mutex<BTreeSet<(String, String)>>,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<String>) -> Reply {
        self.note(method, path);
        self.hub.admin(method, path, body).await
    }

    fn note(&self, method: &str, path: &str) {
        let path = path.split('?').next().unwrap_or_default();
        if let Some(route) = ROUTES
            .iter()
            .find(|r| r.method.as_str() == method && match_path(r.path, path).is_some())
        {
            self.called
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((method.to_owned(), route.path.to_owned()));
        }
    }

    async fn ok(&self, method: &str, path: &str, body: Option<String>) -> Value {
        let reply = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    async fn error(&self, method: &str, path: &str, body: Option<String>, status: u16) -> String {
        let reply = self.call(method, path, body).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        assert!(
            reply.body["error"]["code"].is_string(),
            "{method} {path}: the error object: {}",
            reply.body
        );
        reply.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls `path` until `done` holds, or fails at the deadline.
    async fn until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let body = self.ok("GET", path, None).await;
            if done(&body) {
                return body;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: {body}\nhub log tail:\n{}",
                tail(&self.hub.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A Git repository with a first commit and a hub serving it (plus `args`): the API, the
/// repository and the commit.
fn setup(dir: &std::path::Path, args: &[String]) -> (Api, std::path::PathBuf, String) {
    let repo = dir.join("fleet");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    let first = commit(&repo, "hello");
    let data_dir = dir.join("data");
    let admin = init(&data_dir);
    let mut all = vec![format!("--rewrite={FLEET}={}", repo.display())];
    all.extend_from_slice(args);
    let api = Api {
        hub: start(dir, &data_dir, admin, WEBHOOK_SECRET, &all),
        called: Mutex::new(BTreeSet::new()),
    };
    (api, repo, first)
}

fn cell<'a>(app: &'a Value, cluster: &str) -> &'a Value {
    app["clusters"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["cluster"] == cluster))
        .unwrap_or(&Value::Null)
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

fn status_report(seq: u64, app: &str, revision: &str, drift: Value) -> String {
    json!({
        "seq": seq,
        "sentAt": "2026-11-28T00:00:00Z",
        "reason": "apply",
        "agent": {"version": env!("CARGO_PKG_VERSION"), "kubeVersion": "v1.35.4",
                  "apiVersions": ["v1"], "server": "https://east.example:6443"},
        "state": {"generation": 1, "phase": "Applied"},
        "apps": [{"name": app, "generation": 1, "revision": revision, "sync": "Synced",
                  "health": "Healthy", "objects": [{"object": "ConfigMap web/web", "state": "Current"}]}],
        "drift": drift,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_documented_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (api, repo, first) = setup(
        dir.path(),
        &[
            // Registered repositories that do not exist: their fetch fails at once.
            format!(
                "--rewrite=https://git.example/acme/private.git={}",
                dir.path().join("missing-1").display()
            ),
            format!(
                "--rewrite=https://git.example/acme/other.git={}",
                dir.path().join("missing-2").display()
            ),
            "--enable-test-hooks".to_owned(),
        ],
    );
    let admin = api.hub.token.clone();

    // Clusters: east gets an agent, west has none, dev runs the tools.
    let east_token = api
        .ok(
            "POST",
            "/api/v1/clusters/east/tokens",
            Some(json!({"labels": {"env": "prod", "region": "eu"}}).to_string()),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    api.ok(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "west", "labels": {"env": "prod"}}).to_string()),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "dev", "labels": {"env": "dev"}}).to_string()),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/clusters/dev/labels",
        Some(json!({"set": {"tier": "2"}}).to_string()),
    )
    .await;
    let agent_api = api.ok("GET", "/api/v1/agent-api", None).await;
    let ca = agent_api["caCertificate"].as_str().expect("CA").to_owned();
    let mut east = Agent::new();
    let issued = register(&api.hub, &ca, &east, "east", &east_token).await;
    assert_eq!(
        issued.status,
        200,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    east.chain = issued.json()["certificate"].as_str().map(str::to_owned);

    // A repository with credentials (never shown again), and the declarations.
    let repo_reply = api
        .ok(
            "PUT",
            "/api/v1/repositories",
            Some(
                json!({"url": "https://git.example/acme/private.git",
                       "credentials": {"type": "basic", "username": "bot", "password": GIT_PASSWORD},
                       "pollInterval": "5m"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(repo_reply["hasCredentials"], true);
    api.ok(
        "PUT",
        "/api/v1/repositories",
        Some(
            json!({"url": "https://git.example/acme/other.git",
                   "credentials": {"type": "token", "token": GIT_TOKEN}})
            .to_string(),
        ),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/apply",
        Some(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: ops}\nspec: {sourceRepos: ['*'], destinations: [{name: '*', namespace: '*'}]}\n"
                .to_owned(),
        ),
    )
    .await;
    let created = api
        .call("POST", "/api/v1/applicationsets", Some(APP_SET.to_owned()))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created = api
        .call("POST", "/api/v1/applications", Some(TOOLS.to_owned()))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        names(&api.ok("GET", "/api/v1/projects", None).await, "projects"),
        ["ops"]
    );

    let listed = api
        .until(
            "/api/v1/applications",
            "three applications served",
            |body| {
                body["total"] == 3
                    && ["web-east", "web-west", "tools"].iter().all(|n| {
                        body["applications"].as_array().is_some_and(|a| {
                            a.iter().any(|x| {
                                x["name"] == *n
                                    && !x["clusters"].as_array().is_some_and(Vec::is_empty)
                            })
                        })
                    })
            },
        )
        .await;
    let by_name = |name: &str| -> Value {
        listed["applications"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_name("web-east")["generatedBy"], "web");
    assert_eq!(by_name("tools")["origin"], "api");
    assert_eq!(
        cell(&by_name("web-west"), "west")["why"],
        "no agent has registered for cluster west yet"
    );
    assert_eq!(
        cell(&by_name("web-east"), "east")["why"],
        "the agent is registered but has not reported yet"
    );

    // Filters and pages.
    let page = api.ok("GET", "/api/v1/applications?limit=2", None).await;
    assert_eq!(
        (page["total"].clone(), page["nextOffset"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(names(&page, "applications").len(), 2);
    let rest = api
        .ok("GET", "/api/v1/applications?limit=2&offset=2", None)
        .await;
    assert_eq!(names(&rest, "applications").len(), 1);
    assert_eq!(rest["nextOffset"], Value::Null);
    assert_eq!(
        names(
            &api.ok("GET", "/api/v1/applications?project=ops", None)
                .await,
            "applications"
        ),
        ["tools"]
    );
    assert_eq!(
        names(
            &api.ok("GET", "/api/v1/applications?selector=team%3Dplatform", None)
                .await,
            "applications"
        ),
        ["tools"]
    );
    assert_eq!(
        names(
            &api.ok("GET", "/api/v1/applications?cluster=west", None)
                .await,
            "applications"
        ),
        ["web-west"]
    );
    assert_eq!(
        names(
            &api.ok("GET", "/api/v1/clusters?selector=env%3Dprod", None)
                .await,
            "clusters"
        ),
        ["east", "west"]
    );
    assert_eq!(
        names(
            &api.ok("GET", "/api/v1/clusters?selector=tier", None).await,
            "clusters"
        ),
        ["dev"]
    );
    assert_eq!(
        names(
            &api.ok("GET", "/api/v1/clusters?status=Unregistered", None)
                .await,
            "clusters"
        ),
        ["dev", "west"]
    );
    let one = api
        .ok("GET", "/api/v1/clusters?limit=1&offset=1", None)
        .await;
    assert_eq!(
        (names(&one, "clusters"), one["nextOffset"].clone()),
        (vec!["east".to_owned()], json!(2))
    );

    // The agent reports the first revision: synced and healthy, no sentence.
    let client = east.client(&ca);
    let post = |seq: u64, revision: &str, drift: Value| {
        send(
            client
                .post(format!("{}/v1/status", api.hub.agent_base))
                .header("content-type", "application/json")
                .body(status_report(seq, "web-east", revision, drift)),
        )
    };
    assert_eq!(
        post(1, &first, json!([])).await.expect("answer").status,
        200
    );
    let app = api.ok("GET", "/api/v1/applications/web-east", None).await;
    let east_cell = cell(&app, "east");
    assert_eq!(
        (east_cell["sync"].clone(), east_cell["health"].clone()),
        (json!("Synced"), json!("Healthy"))
    );
    assert_eq!(east_cell["why"], Value::Null, "{app}");
    let cluster = api.ok("GET", "/api/v1/clusters/east", None).await;
    assert_eq!(cluster["status"], "Online");
    assert_eq!(cluster["kubeVersion"], "v1.35.4");
    assert_eq!(cluster["applications"][0]["app"], "web-east");
    assert_eq!(cluster["summary"]["synced"], 1);

    // A second revision: the agent still runs the first one, and the diff says what changes.
    let second = commit(&repo, "bonjour");
    api.ok("POST", "/api/v1/refresh", None).await;
    let app = api
        .until(
            "/api/v1/applications/web-east",
            "the second revision served",
            |a| cell(a, "east")["revision"] == second.as_str(),
        )
        .await;
    assert_eq!(
        cell(&app, "east")["why"],
        format!(
            "the agent still runs revision {}; revision {} is served and not applied yet",
            &first[..7],
            &second[..7]
        )
    );
    assert_eq!(cell(&app, "east")["sync"], "OutOfSync");
    let drift = json!([{"app": "web-east", "object": "ConfigMap web/web", "changedBy": ["kubectl-edit"],
                        "healed": true, "at": "2026-11-28T00:00:01Z"}]);
    assert_eq!(post(2, &first, drift).await.expect("answer").status, 200);
    let diff = api
        .ok("GET", "/api/v1/applications/web-east/diff", None)
        .await;
    let east_diff = &diff["clusters"][0];
    assert_eq!(east_diff["cluster"], "east");
    assert_eq!(east_diff["from"]["revision"], first.as_str());
    assert_eq!(east_diff["to"]["revision"], second.as_str());
    assert_eq!(east_diff["objects"][0]["object"], "ConfigMap web/web");
    assert_eq!(east_diff["objects"][0]["change"], "changed");
    let text = east_diff["objects"][0]["diff"].as_str().unwrap_or_default();
    assert!(
        text.contains("-  greeting: hello") && text.contains("+  greeting: bonjour"),
        "{text}"
    );
    assert_eq!(east_diff["drift"][0]["changedBy"][0], "kubectl-edit");
    let same = api
        .ok(
            "GET",
            &format!("/api/v1/applications/web-east/diff?revision={first}"),
            None,
        )
        .await;
    assert_eq!(
        same["clusters"][0]["objects"],
        json!([]),
        "the agent runs that revision"
    );
    let unknown = api
        .ok(
            "GET",
            "/api/v1/applications/web-east/diff?revision=0000000000000000000000000000000000000000",
            None,
        )
        .await;
    assert!(
        unknown["clusters"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("never rendered"))
    );
    api.error(
        "GET",
        "/api/v1/applications/web-east/diff?cluster=west",
        None,
        404,
    )
    .await;

    // History, rollback (pin) and unpin.
    let history = api
        .ok(
            "GET",
            "/api/v1/applications/web-east/history?cluster=east",
            None,
        )
        .await;
    let revisions: Vec<&str> = history["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["revision"].as_str())
        .collect();
    assert_eq!(revisions, [second.as_str(), first.as_str()]);
    let conflict = api
        .error(
            "POST",
            "/api/v1/applications/web-east/rollback",
            Some(json!({"revision": "0000000"}).to_string()),
            409,
        )
        .await;
    assert!(conflict.contains("never deployed"), "{conflict}");
    api.ok(
        "POST",
        "/api/v1/applications/web-east/rollback",
        Some(json!({"revision": first, "cluster": "east"}).to_string()),
    )
    .await;
    let app = api
        .until("/api/v1/applications/web-east", "the pin served", |a| {
            cell(a, "east")["revision"] == first.as_str()
        })
        .await;
    assert_eq!(cell(&app, "east")["pinned"]["revision"], first.as_str());
    assert_eq!(
        cell(&app, "east")["why"],
        format!("pinned to revision {} by admin", &first[..7])
    );
    api.ok(
        "DELETE",
        "/api/v1/applications/web-east/pin?cluster=east",
        None,
    )
    .await;
    api.error(
        "DELETE",
        "/api/v1/applications/web-east/pin?cluster=east",
        None,
        404,
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/applications/web-east/pin",
        Some(json!({"revision": first}).to_string()),
    )
    .await;
    api.ok("DELETE", "/api/v1/applications/web-east/pin", None)
        .await;

    // Sync now.
    let synced = api
        .call("POST", "/api/v1/applications/tools/sync", None)
        .await;
    assert_eq!(
        (
            synced.status,
            synced.body["repositories"].clone(),
            synced.body["published"].clone()
        ),
        (200, json!(1), json!(true)),
        "{}",
        synced.body
    );
    assert_eq!(
        cell(&synced.body, "dev")["cluster"],
        "dev",
        "{}",
        synced.body
    );
    api.ok(
        "POST",
        "/api/v1/applications/web-west/sync",
        Some("{}".to_owned()),
    )
    .await;
    api.error("POST", "/api/v1/applications/nope/sync", None, 404)
        .await;

    // Create and delete.
    let exists = api
        .error("POST", "/api/v1/applications", Some(TOOLS.to_owned()), 409)
        .await;
    assert!(exists.contains("upsert"), "{exists}");
    let replaced = api
        .call(
            "POST",
            "/api/v1/applications?upsert=true",
            Some(TOOLS.to_owned()),
        )
        .await;
    assert_eq!(
        (replaced.status, replaced.body["created"].clone()),
        (200, json!(false))
    );
    let generated = api
        .error("DELETE", "/api/v1/applications/web-west", None, 409)
        .await;
    assert!(generated.contains("ApplicationSet web"), "{generated}");
    let wrong_kind = api
        .error(
            "POST",
            "/api/v1/applications",
            Some(APP_SET.to_owned()),
            400,
        )
        .await;
    assert!(
        wrong_kind.contains("expected an Application"),
        "{wrong_kind}"
    );
    let bad_name = api
        .error(
            "POST",
            "/api/v1/applications",
            Some(TOOLS.replace("name: tools", "name: Tools_1")),
            400,
        )
        .await;
    assert!(bad_name.contains("metadata.name"), "{bad_name}");
    api.ok("DELETE", "/api/v1/applications/tools", None).await;
    api.error("DELETE", "/api/v1/applications/tools", None, 404)
        .await;

    // ApplicationSets.
    let sets = api.ok("GET", "/api/v1/applicationsets", None).await;
    assert_eq!(names(&sets, "applicationSets"), ["web"]);
    let set = api.ok("GET", "/api/v1/applicationsets/web", None).await;
    assert_eq!(set["generated"], json!(["web-east", "web-west"]));
    assert_eq!(set["clusters"].as_array().map(Vec::len), Some(2));
    let replaced = api
        .call("POST", "/api/v1/applicationsets", Some(APP_SET.to_owned()))
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    api.ok("DELETE", "/api/v1/applicationsets/web", None).await;
    api.error("GET", "/api/v1/applicationsets/web", None, 404)
        .await;
    api.error("DELETE", "/api/v1/applicationsets/web", None, 404)
        .await;

    // The rest of the cluster routes.
    api.ok("GET", "/api/v1/clusters/east/state", None).await;
    let status = api
        .ok("GET", "/api/v1/clusters/east/status?limit=5", None)
        .await;
    assert_eq!(status["reports"][0]["seq"], 2);
    let bundle = api.call("GET", "/api/v1/clusters/east/bundle", None).await;
    assert_eq!(bundle.status, 200);
    api.ok(
        "POST",
        "/api/v1/clusters/west/tokens",
        Some(json!({"requireApproval": true, "ttl": "1h"}).to_string()),
    )
    .await;
    api.ok("POST", "/api/v1/clusters/west/approve", None).await;
    api.ok("POST", "/api/v1/clusters/west/revoke", None).await;
    api.error("GET", "/api/v1/clusters/nope", None, 404).await;
    api.ok("GET", "/api/v1/config-repository", None).await;
    api.ok("GET", "/api/v1/repositories", None).await;
    api.ok(
        "DELETE",
        "/api/v1/repositories?url=https%3A%2F%2Fgit.example%2Facme%2Fother.git",
        None,
    )
    .await;
    api.ok("PUT", "/api/v1/test/serve-override", Some("{}".to_owned()))
        .await;
    api.ok("GET", "/api/v1/openapi.json", None).await;
    let hook = api
        .hub
        .webhook(
            &json!({"ref": "refs/heads/main", "repository": {"clone_url": FLEET}}).to_string(),
            WEBHOOK_SECRET,
        )
        .await;
    assert_eq!(hook.status, 202, "{}", hook.body);
    api.note("POST", "/api/v1/webhook/github");
    assert_eq!(
        api.hub.call("GET", "/healthz", None, None).await.status,
        200
    );
    api.note("GET", "/healthz");

    // The audit log names who did what.
    let audit = api.ok("GET", "/api/v1/audit?limit=200", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "rollback",
        "unpin",
        "sync",
        "create application",
        "delete application",
        "delete ApplicationSet",
        "revoke cluster",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} is not in the audit log: {actions:?}"
        );
    }
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .filter(|e| e["source"] == "api")
            .all(|e| e["who"] == "admin" && e["at"].is_string()),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "rollback"
            && e["subject"] == "application web-east"
            && e["detail"]["cluster"] == "east"),
        "{audit}"
    );

    // The event stream: a hello, then an event after a change.
    let client = reqwest::Client::new();
    let mut events = client
        .get(format!("{}/api/v1/events", api.hub.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("stream");
    api.note("GET", "/api/v1/events");
    assert_eq!(
        events.headers()["content-type"]
            .to_str()
            .unwrap_or_default(),
        "text/event-stream"
    );
    let hello = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .expect("hello in time")
        .expect("chunk")
        .expect("not ended");
    assert!(String::from_utf8_lossy(&hello).contains("event: hello"));
    api.ok(
        "POST",
        "/api/v1/clusters/dev/labels",
        Some(json!({"set": {"tier": "3"}}).to_string()),
    )
    .await;
    api.ok("POST", "/api/v1/refresh", None).await;
    let change = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .expect("an event in time")
        .expect("chunk")
        .expect("not ended");
    assert!(
        String::from_utf8_lossy(&change).contains("event: fleet"),
        "{change:?}"
    );
    drop(events);

    tokens(&api).await;
    bad_input(&api).await;

    // Every route was called.
    let called = api.called.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let missing: Vec<String> = ROUTES
        .iter()
        .filter(|r| !called.contains(&(r.method.as_str().to_owned(), r.path.to_owned())))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        missing.is_empty(),
        "routes this test never called: {missing:?}"
    );

    // No credential in any answer: Git credentials, the webhook secret and the admin token
    // never; a bootstrap token only in the answer that made it.
    let answers = api.hub.answers();
    for secret in [GIT_TOKEN, GIT_PASSWORD, WEBHOOK_SECRET, admin.as_str()] {
        assert!(!answers.contains(secret), "an answer carries a secret");
    }
    assert_eq!(
        answers.matches(east_token.as_str()).count(),
        1,
        "the bootstrap token is shown once"
    );
}

/// API tokens: created with grants and a lifetime (the token shown once), listed without
/// it, standing for their grants, refused once expired or revoked, each refusal naming why.
async fn tokens(api: &Api) {
    let me = api.ok("GET", "/api/v1/whoami", None).await;
    assert_eq!(me["name"], "admin");
    assert_eq!(me["kind"], "local-admin");

    let created = api
        .ok(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "ci", "grants": [{"role": "viewer", "project": "ops"}], "expiresIn": "2h"}).to_string()),
        )
        .await;
    let token = created["token"]
        .as_str()
        .expect("the token, once")
        .to_owned();
    assert!(token.starts_with("flt_"), "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["state"], "active");
    let as_token = api
        .hub
        .call("GET", "/api/v1/whoami", Some(&token), None)
        .await;
    assert_eq!(as_token.status, 200, "{}", as_token.body);
    assert_eq!(as_token.body["name"], "token:ci");
    assert_eq!(
        as_token.body["grants"],
        json!([{"role": "viewer", "project": "ops"}])
    );
    assert!(as_token.body["expiresAt"].is_string());

    let listed = api.ok("GET", "/api/v1/tokens", None).await;
    assert!(
        !listed.to_string().contains(&token),
        "the list never shows a token"
    );
    assert_eq!(listed["tokens"][0]["name"], "ci");

    // Expired: a token of one second, a second and a half later.
    let short = api
        .ok(
            "POST",
            "/api/v1/tokens",
            Some(
                json!({"name": "short", "grants": [{"role": "admin"}], "expiresIn": "1s"})
                    .to_string(),
            ),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = api
        .hub
        .call("GET", "/api/v1/whoami", short["token"].as_str(), None)
        .await;
    assert_eq!(expired.status, 401, "{}", expired.body);
    let message = expired.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("\"short\" expired at"), "{message}");

    // Revoked: refused at once, and revoking twice is a conflict.
    let revoked = api
        .ok("DELETE", &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revokedBy"], "admin");
    let refused = api
        .hub
        .call("GET", "/api/v1/whoami", Some(&token), None)
        .await;
    assert_eq!(refused.status, 401);
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("\"ci\" was revoked at") && message.contains("by admin"),
        "{message}"
    );
    api.error("DELETE", &format!("/api/v1/tokens/{id}"), None, 409)
        .await;
    api.error("DELETE", "/api/v1/tokens/nope", None, 404).await;
    let unknown = api
        .hub
        .call("GET", "/api/v1/whoami", Some("flt_not-a-token"), None)
        .await;
    assert_eq!(unknown.status, 401);

    // Bad requests name what is wrong.
    for (body, expected) in [
        (json!({"name": "x", "grants": []}), "at least one grant"),
        (json!({"name": "x", "grants": [{"role": "owner"}]}), "owner"),
        (
            json!({"name": "x", "grants": [{"role": "admin", "project": "ops"}]}),
            "every project",
        ),
        (
            json!({"name": "x", "grants": [{"role": "viewer"}], "expiresIn": "400d"}),
            "366d",
        ),
        (
            json!({"name": "x", "grants": [{"role": "viewer"}], "expiresIn": "soon"}),
            "soon",
        ),
        (
            json!({"name": "bad name", "grants": [{"role": "viewer"}]}),
            "letters",
        ),
        (
            json!({"name": "x", "grants": [{"role": "viewer"}], "scope": "all"}),
            "scope",
        ),
    ] {
        let message = api
            .error("POST", "/api/v1/tokens", Some(body.to_string()), 400)
            .await;
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let audit = api.ok("GET", "/api/v1/audit?limit=50", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"create API token") && actions.contains(&"revoke API token"));
    assert!(
        audit["entries"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "the audit log says where a change came from: {}",
        audit["entries"][0]
    );
    assert!(
        !audit.to_string().contains(&token),
        "no token in the audit log"
    );
}

/// Bad input on every route: no token, unknown fields and query parameters, huge bodies,
/// invalid names and values. Each is refused with the error object and changes nothing.
async fn bad_input(api: &Api) {
    let before = api.ok("GET", "/api/v1/clusters", None).await;
    for route in ROUTES.iter().filter(|r| r.bearer) {
        let path = route
            .path
            .replace("{name}", "east")
            .replace("{provider}", "github");
        let reply = api
            .hub
            .call(route.method.as_str(), &path, None, Some("{}".to_owned()))
            .await;
        assert_eq!(reply.status, 401, "{} {path} without a token", route.method);
        assert_eq!(reply.body["error"]["code"], "unauthorized");
        let wrong = api
            .hub
            .call(
                route.method.as_str(),
                &path,
                Some("flt_not_the_token"),
                None,
            )
            .await;
        assert_eq!(
            wrong.status, 401,
            "{} {path} with a wrong token",
            route.method
        );
        if matches!(route.method.as_str(), "POST" | "PUT") {
            let (status, body) =
                declared_too_large(&api.hub.base, route.method.as_str(), &path, &api.hub.token)
                    .await;
            assert_eq!(
                status, 413,
                "{} {path} declaring 2 MiB: {body}",
                route.method
            );
            assert!(body.contains("body_too_large"), "{body}");
        }
    }
    // Unknown fields in each JSON body, named in the message.
    for (method, path) in [
        ("POST", "/api/v1/clusters"),
        ("POST", "/api/v1/clusters/east/tokens"),
        ("POST", "/api/v1/clusters/east/labels"),
        ("PUT", "/api/v1/repositories"),
        ("POST", "/api/v1/applications/web-east/pin"),
        ("POST", "/api/v1/applications/web-east/rollback"),
        ("POST", "/api/v1/applications/web-east/sync"),
        ("PUT", "/api/v1/test/serve-override"),
    ] {
        let message = api
            .error(method, path, Some(r#"{"surprise": 1}"#.to_owned()), 400)
            .await;
        assert!(message.contains("surprise"), "{method} {path}: {message}");
    }
    // Argo CD documents keep working with fields Flotilla does not support: each is named in
    // a warning instead.
    let warned = api
        .call(
            "POST",
            "/api/v1/applications",
            Some(TOOLS.replace("  project: ops", "  project: ops\n  surprise: 1")),
        )
        .await;
    assert_eq!(warned.status, 201, "{}", warned.body);
    assert!(
        warned.body["warnings"].to_string().contains("surprise"),
        "{}",
        warned.body
    );
    // Unknown and malformed query parameters.
    for path in [
        "/api/v1/applications?colour=blue",
        "/api/v1/applications?limit=0",
        "/api/v1/applications?limit=5000",
        "/api/v1/applications?offset=-1",
        "/api/v1/applications?selector=bad%20key",
        "/api/v1/clusters?limit=x",
        "/api/v1/clusters/east/status?limit=0",
        "/api/v1/applications/web-east/history?limit=abc",
        "/api/v1/applications/web-east/diff?colour=1",
        "/api/v1/audit?limit=100000",
    ] {
        api.error("GET", path, None, 400).await;
    }
    // Invalid names.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/clusters",
            json!({"name": "Not_A_Name"}).to_string(),
        ),
        ("POST", "/api/v1/clusters/-bad-/tokens", "{}".to_owned()),
        (
            "POST",
            "/api/v1/clusters/east/labels",
            json!({"set": {"bad key!": "x"}}).to_string(),
        ),
        (
            "PUT",
            "/api/v1/repositories",
            json!({"url": ""}).to_string(),
        ),
        (
            "PUT",
            "/api/v1/repositories",
            json!({"url": "https://u:p@git.example/x.git"}).to_string(),
        ),
        (
            "PUT",
            "/api/v1/repositories",
            json!({"url": "https://git.example/x.git", "pollInterval": "1s"}).to_string(),
        ),
    ] {
        api.error(method, path, Some(body), 400).await;
    }
    api.error(
        "POST",
        "/api/v1/apply",
        Some("kind: [unclosed".to_owned()),
        400,
    )
    .await;
    api.error("POST", "/api/v1/applicationsets", Some("".to_owned()), 400)
        .await;
    api.error("GET", "/api/v1/applications/nope", None, 404)
        .await;
    api.error("GET", "/api/v2/anything", None, 404).await;
    api.error("PATCH", "/api/v1/clusters", None, 405).await;
    let after = api.ok("GET", "/api/v1/clusters", None).await;
    assert_eq!(
        names(&before, "clusters"),
        names(&after, "clusters"),
        "bad input changed nothing"
    );
}

/// Sends only the head of a request that declares a 2 MiB body, and reads the answer: the
/// hub must refuse before reading the body. (Sending the body too races the hub's early
/// answer and close against the client's writes.)
async fn declared_too_large(base: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        2 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Argo CD's manual sync: an application without `syncPolicy.automated` is not deployed
/// and does not follow new commits until `POST …/sync` asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_without_automated_sync_moves_only_when_synced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (api, repo, first) = setup(dir.path(), &[]);
    api.ok(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "dev"}).to_string()),
    )
    .await;
    let manual = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: manual}
spec:
  project: default
  source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web, targetRevision: main}
  destination: {name: dev, namespace: web}
";
    // An automated twin shows when a round has run.
    let twin = manual.replace("name: manual", "name: twin") + "  syncPolicy: {automated: {}}\n";
    let created = api
        .call(
            "POST",
            "/api/v1/apply",
            Some(format!("{manual}---\n{twin}")),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    api.until(
        "/api/v1/applications/twin",
        "the automated twin deployed",
        |a| cell(a, "dev")["revision"] == first.as_str(),
    )
    .await;
    let app = api.ok("GET", "/api/v1/applications/manual", None).await;
    assert_eq!(
        app["clusters"],
        json!([]),
        "not deployed before a sync: {app}"
    );

    // The answer comes once the round published: it already shows the new target.
    let synced = api
        .ok("POST", "/api/v1/applications/manual/sync", None)
        .await;
    assert_eq!(cell(&synced, "dev")["revision"], first.as_str(), "{synced}");

    let second = commit(&repo, "bonjour");
    api.ok("POST", "/api/v1/refresh", None).await;
    api.until(
        "/api/v1/applications/twin",
        "the twin follows the new commit",
        |a| cell(a, "dev")["revision"] == second.as_str(),
    )
    .await;
    let app = api.ok("GET", "/api/v1/applications/manual", None).await;
    assert_eq!(
        cell(&app, "dev")["revision"],
        first.as_str(),
        "a new commit waits for a sync"
    );
    let synced = api
        .ok("POST", "/api/v1/applications/manual/sync", None)
        .await;
    assert_eq!(
        cell(&synced, "dev")["revision"],
        second.as_str(),
        "{synced}"
    );
}
