//! `flotilla-hub serve` against real Git servers on 127.0.0.1: `git http-backend` behind an
//! HTTPS gateway that demands a token, OpenSSH's sshd with a key-only login, and a local
//! path. The hub's configuration repository is the HTTPS one, read with the token registered
//! through the API. A push plus a signed webhook republishes exactly the clusters whose
//! applications come from the pushed repository; a bad signature changes nothing; removing an
//! ApplicationSet from the configuration repository turns its apps into tombstones. Neither
//! the hub's TRACE log nor any API answer ever shows the token, the SSH key or the webhook
//! secret.
//!
//! A missing tool (`git`, `git-http-backend`, `sshd`, `ssh`, `ssh-keygen`) skips the test
//! loudly, unless `FLOTILLA_REQUIRE_TOOLS` is set, when it fails.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::git_servers::{
    Sshd, Upstream, current_user, git_http_backend, https, key_material, known_hosts_line,
    start_sshd,
};
use support::hub_process::{DEADLINE, Serve, init, start, tail};

const TOKEN: &str = "tok-5d1e-fleet-never-log-me";
const WEBHOOK_SECRET: &str = "whsec-8c4b-fleet-never-log-me";
/// Long enough for a round that a webhook wrongly started to have published.
const SETTLE: Duration = Duration::from_millis(1500);

fn config_map(greeting: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web, namespace: web}}\n\
         data: {{greeting: {greeting}}}\n"
    )
}

/// An ApplicationSet deploying `apps/web` of `repo_url` to the clusters labelled `env`, one
/// app `PREFIX-CLUSTER` each.
fn app_set(name: &str, env: &str, prefix: &str, repo_url: &str, project: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: {name}}}
spec:
  generators: [{{clusters: {{selector: {{matchLabels: {{env: {env}}}}}}}}}]
  template:
    metadata: {{name: '{prefix}-{{{{name}}}}'}}
    spec:
      project: {project}
      source: {{repoURL: '{repo_url}', path: apps/web, targetRevision: main}}
      destination: {{name: '{{{{name}}}}', namespace: web}}
      syncPolicy: {{automated: {{}}}}
"
    )
}

const PROJECT: &str = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: web}
spec:
  sourceRepos: ['*']
  destinations: [{name: '*', namespace: web}]
";

/// A GitHub push event naming a repository by its clone (HTTPS) and SSH URLs.
fn push_event(clone_url: &str, ssh_url: &str, after: &str) -> String {
    json!({
        "ref": "refs/heads/main",
        "after": after,
        "repository": {"clone_url": clone_url, "ssh_url": ssh_url}
    })
    .to_string()
}

/// `name@revision from repoURL` of each live app of a state, and the names of its tombstones.
fn apps(state: &Value) -> (Vec<String>, Vec<String>) {
    let list = |key: &str| state["state"][key].as_array().cloned().unwrap_or_default();
    let live = list("apps")
        .iter()
        .map(|app| {
            format!(
                "{}@{} from {}",
                app["name"].as_str().unwrap_or("?"),
                app["source"]["revision"].as_str().unwrap_or("?"),
                app["source"]["repoURL"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let removed = list("removed")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    (live, removed)
}

/// Polls the state of `cluster` until its live apps are `expected`; the state.
async fn wait_for_apps(hub: &Serve, cluster: &str, expected: &[String]) -> Value {
    let start = Instant::now();
    loop {
        let state = hub.state(cluster).await;
        if let Some(state) = &state
            && apps(state).0 == expected
        {
            return state.clone();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{cluster} should run {expected:?}, has {:?} after {DEADLINE:?}; hub log tail:\n{}",
            state.as_ref().map(apps),
            tail(&hub.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the configuration repository's status until it applied `commit`; the status.
async fn wait_for_config(hub: &Serve, commit: &str) -> Value {
    let start = Instant::now();
    loop {
        let status = hub.admin("GET", "/api/v1/config-repository", None).await;
        assert_eq!(status.status, 200, "{}", status.body);
        if status.body["appliedCommit"] == commit {
            return status.body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the configuration repository should apply {commit}: {}; hub log tail:\n{}",
            status.body,
            tail(&hub.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn generations(hub: &Serve, clusters: &[&str]) -> Vec<Option<u64>> {
    hub.wait_for(clusters, "read generations", |_| true).await
}

/// The three served repositories and what the hub needs to reach them. The servers stop
/// before their directory goes.
struct Fleet {
    gateway: https::Server,
    sshd: Sshd,
    https_url: String,
    ssh_url: String,
    local_url: String,
    fleet_https: Upstream,
    fleet_ssh: Upstream,
    fleet_local: Upstream,
    root: tempfile::TempDir,
}

/// Starts the servers and makes the repositories, each with apps/web; the HTTPS one also
/// holds the configuration. `None` when a tool is missing.
fn fleet() -> Option<Fleet> {
    let backend = git_http_backend()?;
    let root = tempfile::tempdir().expect("temp dir");
    let sshd = start_sshd(&root.path().join("sshd")).expect("sshd starts")?;
    let https_root = root.path().join("https");
    std::fs::create_dir_all(&https_root).expect("mkdir");
    let auth = https::Auth {
        token: TOKEN.into(),
        basic: None,
    };
    // The gateway runs its own runtime, so it is started (and dropped) outside the test's.
    let gateway = https::start(backend, https_root.clone(), auth).expect("gateway starts");
    let https_url = format!("{}/fleet-https.git", gateway.url_base);
    let web_prod = app_set("web-prod", "prod", "web", &https_url, "web");
    let fleet_https = Upstream::new(
        &https_root,
        "fleet-https",
        &[
            ("apps/web/config.yaml", &config_map("https-1")),
            ("config/project.yaml", PROJECT),
            ("config/web-prod.yaml", &web_prod),
        ],
    )
    .expect("HTTPS repository");
    let fleet_ssh = Upstream::new(
        &root.path().join("ssh"),
        "fleet-ssh",
        &[("apps/web/config.yaml", &config_map("ssh-1"))],
    )
    .expect("SSH repository");
    let fleet_local = Upstream::new(
        &root.path().join("local"),
        "fleet-local",
        &[("apps/web/config.yaml", &config_map("local-1"))],
    )
    .expect("local repository");
    Some(Fleet {
        ssh_url: sshd.url(&fleet_ssh.bare),
        local_url: fleet_local.bare.display().to_string(),
        root,
        gateway,
        sshd,
        https_url,
        fleet_https,
        fleet_ssh,
        fleet_local,
    })
}

#[test]
fn pushes_over_https_ssh_and_local_paths_republish_exactly_their_clusters() {
    let Some(fleet) = fleet() else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario(&fleet));
}

async fn scenario(fleet: &Fleet) {
    let Fleet {
        root,
        gateway,
        sshd,
        https_url,
        ssh_url,
        local_url,
        fleet_https,
        fleet_ssh,
        fleet_local,
    } = fleet;
    let (https_url, ssh_url, local_url) =
        (https_url.as_str(), ssh_url.as_str(), local_url.as_str());

    let ca_file = root.path().join("git-ca.pem");
    std::fs::write(&ca_file, &gateway.ca_pem).expect("write CA");
    let data_dir = root.path().join("data");
    let admin_token = init(&data_dir);
    let hub = start(
        root.path(),
        &data_dir,
        admin_token.clone(),
        WEBHOOK_SECRET,
        &[
            "--git-ca-file".into(),
            ca_file.display().to_string(),
            "--config-repo".into(),
            https_url.to_owned(),
            "--config-revision".into(),
            "main".into(),
            "--config-path".into(),
            "config".into(),
        ],
    );

    // Without its token the configuration repository cannot be read: nothing is applied.
    let began = Instant::now();
    let unread = loop {
        let status = hub.admin("GET", "/api/v1/config-repository", None).await;
        if status.body["error"].is_string() {
            break status.body;
        }
        assert!(began.elapsed() < DEADLINE, "{}", status.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(unread["appliedCommit"], Value::Null, "{unread}");
    let why = unread["error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("fetch ") && why.contains("authentication refused"),
        "the status says the fetch was refused: {why}"
    );
    assert_eq!(unread["source"]["url"], https_url);

    // The token, registered through the API, is used for it from then on.
    let registered = hub
        .admin(
            "PUT",
            "/api/v1/repositories",
            Some(
                json!({"url": https_url, "credentials": {"type": "token", "token": TOKEN}})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert_eq!(registered.body["hasCredentials"], true);
    let config = wait_for_config(&hub, &fleet_https.head()).await;
    assert_eq!(
        config["documents"],
        json!(["AppProject/web", "ApplicationSet/web-prod"]),
        "{config}"
    );
    assert_eq!(config["error"], Value::Null, "{config}");

    let registered = hub
        .admin(
            "PUT",
            "/api/v1/repositories",
            Some(
                json!({
                    "url": ssh_url,
                    "credentials": {
                        "type": "ssh",
                        "privateKey": sshd.client_private_key,
                        "knownHosts": known_hosts_line(sshd.port, &sshd.host_public_key),
                    },
                    "pollInterval": "5m",
                })
                .to_string(),
            ),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert_eq!(registered.body["hasCredentials"], true);

    for (name, env) in [
        ("prod-1", "prod"),
        ("prod-2", "prod"),
        ("staging-1", "staging"),
        ("dev-1", "dev"),
    ] {
        let reply = hub
            .admin(
                "POST",
                "/api/v1/clusters",
                Some(json!({"name": name, "labels": {"env": env}}).to_string()),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let applied = hub
        .admin(
            "POST",
            "/api/v1/apply",
            Some(format!(
                "{}---\n{}",
                app_set("ssh-staging", "staging", "ssh", ssh_url, "default"),
                app_set("local-dev", "dev", "local", local_url, "default")
            )),
        )
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);

    // Each cluster runs the app of its environment, from its repository's head.
    let live = |name: &str, commit: String, url: &str| vec![format!("{name}@{commit} from {url}")];
    for cluster in ["prod-1", "prod-2"] {
        let state = wait_for_apps(
            &hub,
            cluster,
            &live(&format!("web-{cluster}"), fleet_https.head(), https_url),
        )
        .await;
        // The AppProject of the configuration repository limits the app to its namespace.
        assert_eq!(
            state["state"]["apps"][0]["limits"]["namespaces"],
            json!(["web"]),
            "{state}"
        );
    }
    wait_for_apps(
        &hub,
        "staging-1",
        &live("ssh-staging-1", fleet_ssh.head(), ssh_url),
    )
    .await;
    wait_for_apps(
        &hub,
        "dev-1",
        &live("local-dev-1", fleet_local.head(), local_url),
    )
    .await;
    let all = ["prod-1", "prod-2", "staging-1", "dev-1"];
    let before = generations(&hub, &all).await;

    // A push to the HTTPS repository, announced with a bad signature: refused, nothing moves.
    let https_event =
        |after: &str| push_event(https_url, "git@forge.invalid:acme/fleet-https.git", after);
    let https_2 = fleet_https
        .push_change("apps/web/config.yaml", &config_map("https-2"))
        .expect("push");
    let refused = hub.webhook(&https_event(&https_2), "not-the-secret").await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "invalid_signature");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        generations(&hub, &all).await,
        before,
        "a refused webhook changes nothing"
    );

    // Signed: the prod clusters get the new commit, the others keep their generation.
    let accepted = hub.webhook(&https_event(&https_2), WEBHOOK_SECRET).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["repositories"], 1, "{}", accepted.body);
    for cluster in ["prod-1", "prod-2"] {
        wait_for_apps(
            &hub,
            cluster,
            &live(&format!("web-{cluster}"), https_2.clone(), https_url),
        )
        .await;
    }
    tokio::time::sleep(SETTLE).await;
    let after_https = generations(&hub, &all).await;
    assert!(
        after_https[..2].iter().zip(&before).all(|(a, b)| a > b),
        "{before:?} -> {after_https:?}"
    );
    assert_eq!(after_https[2..], before[2..], "only prod changes");
    assert_eq!(
        wait_for_config(&hub, &https_2).await["documents"],
        json!(["AppProject/web", "ApplicationSet/web-prod"])
    );

    // A push to the SSH repository, named by its SSH URL: only staging changes.
    let ssh_2 = fleet_ssh
        .push_change("apps/web/config.yaml", &config_map("ssh-2"))
        .expect("push");
    let accepted = hub
        .webhook(
            &push_event("https://forge.invalid/acme/fleet-ssh.git", ssh_url, &ssh_2),
            WEBHOOK_SECRET,
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["repositories"], 1, "{}", accepted.body);
    wait_for_apps(&hub, "staging-1", &live("ssh-staging-1", ssh_2, ssh_url)).await;
    tokio::time::sleep(SETTLE).await;
    let after_ssh = generations(&hub, &all).await;
    assert!(after_ssh[2] > after_https[2], "{after_ssh:?}");
    for i in [0, 1, 3] {
        assert_eq!(
            after_ssh[i], after_https[i],
            "only staging changes: {all:?}"
        );
    }

    // The ApplicationSet leaves the configuration repository: its apps become tombstones.
    let https_3 = fleet_https
        .push_removal("config/web-prod.yaml")
        .expect("push");
    let accepted = hub.webhook(&https_event(&https_3), WEBHOOK_SECRET).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let config = wait_for_config(&hub, &https_3).await;
    assert_eq!(config["documents"], json!(["AppProject/web"]), "{config}");
    for cluster in ["prod-1", "prod-2"] {
        let state = wait_for_apps(&hub, cluster, &[]).await;
        assert_eq!(
            apps(&state).1,
            [format!("web-{cluster}")],
            "the removed app is a tombstone: {state}"
        );
    }
    tokio::time::sleep(SETTLE).await;
    let after_removal = generations(&hub, &all).await;
    assert_eq!(after_removal[2..], after_ssh[2..], "only prod changes");
    let listed = hub.admin("GET", "/api/v1/applications", None).await;
    assert!(
        !listed.body.to_string().contains("web-prod-1"),
        "{}",
        listed.body
    );

    // Both repositories are listed with credentials, never with them; URLs lose their user.
    let shown_ssh_url = ssh_url.replacen(&format!("{}@", current_user()), "", 1);
    let repositories = hub.admin("GET", "/api/v1/repositories", None).await;
    assert_eq!(repositories.status, 200);
    let listed: Vec<(&str, &Value)> = repositories.body["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| (r["url"].as_str().unwrap_or("?"), &r["hasCredentials"]))
        .collect();
    assert_eq!(
        listed,
        [
            (https_url, &json!(true)),
            (shown_ssh_url.as_str(), &json!(true))
        ]
    );

    // No secret in the hub's TRACE log or any answer, not even one line of the key.
    let log = hub.log();
    assert!(
        log.contains("TRACE") && log.contains("fetched"),
        "the log is at TRACE and saw the fetches"
    );
    let key = key_material(&sshd.client_private_key);
    let mut secrets = vec![TOKEN, WEBHOOK_SECRET, admin_token.as_str()];
    secrets.extend(key.lines().filter(|line| line.len() > 20));
    assert!(secrets.len() > 4, "the key has lines to look for");
    for (what, text) in [("hub log", log), ("API answers", hub.answers())] {
        for secret in &secrets {
            assert!(
                !text.contains(secret),
                "the {what} shows a secret ({}…)",
                &secret[..8]
            );
        }
    }
}
