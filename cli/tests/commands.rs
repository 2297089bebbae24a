//! The `flotilla` binary as a user runs it, against a real hub (`flotilla-hub init` + `serve`
//! on loopback): login and its config file, apply and app list, the cluster commands, bundle
//! export, exit codes, `-o json`, and that the admin token is never printed.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Cli, Hub, Run, git};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/declarative");

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|item| item["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {list}"))
}

#[test]
fn help_usage_errors_and_not_logged_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cli = Cli::new(dir.path());

    let help = cli.run(&["--help"]).ok();
    for line in [
        "Exit codes:",
        "2  usage error",
        "3  not logged in",
        "4  not found",
    ] {
        assert!(help.stdout.contains(line), "{line}: {}", help.stdout);
    }
    let login_help = cli.run(&["login", "--help"]).ok();
    assert!(
        login_help.stdout.contains("config.json"),
        "{}",
        login_help.stdout
    );
    assert!(cli.run(&["version"]).ok().stdout.starts_with("flotilla "));

    for args in [
        &["frobnicate"][..],
        &["cluster", "label", "east", "env"],
        &["cluster", "token", "create", "east", "--ttl", "soon"],
        &["apply"],
        &["app", "list", "-o", "xml"],
        &[
            "app",
            "create",
            "web",
            "--repo",
            "r",
            "--dest-cluster",
            "east",
        ],
        &["app", "sync", "web", "--wait-timeout", "1m"],
        &["app", "list", "--limit", "0"],
        &[
            "repo",
            "add",
            "https://git.example/x.git",
            "--username",
            "bot",
        ],
        &["completion", "tcsh"],
        &["bundle", "export", "--cluster", "east"],
        &["--hub", "hub.example.com", "cluster", "list"],
    ] {
        let run = cli.run(args).expect_code(2);
        assert!(run.stderr.contains("error:"), "{args:?}: {}", run.stderr);
    }

    let run = cli.run(&["cluster", "list"]).expect_code(3);
    assert!(
        run.stderr.starts_with("error: not logged in"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("flotilla login"), "{}", run.stderr);
    assert!(!cli.config.exists(), "nothing is written without a login");
}

#[test]
fn login_apply_and_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = Hub::start(dir.path(), &[]);
    let cli = Cli::new(dir.path());

    // A wrong token: exit 3, the hub's reason, and no config file.
    let wrong = cli
        .run(&["login", "--hub", &hub.url, "--token", "flt_wrong"])
        .expect_code(3);
    assert!(
        wrong
            .stderr
            .contains(&format!("the hub at {} refused the token", hub.url)),
        "{}",
        wrong.stderr
    );
    assert!(!cli.config.exists());
    // An unreachable hub is an error of its own (exit 1), naming the URL.
    let down = cli
        .run(&[
            "login",
            "--hub",
            "http://127.0.0.1:1",
            "--token",
            &hub.token,
        ])
        .expect_code(1);
    assert!(
        down.stderr.contains("http://127.0.0.1:1/api/v1/clusters"),
        "{}",
        down.stderr
    );

    // The right token, from standard input.
    let login = cli.run_with(
        cli.command().args([
            "login",
            "--hub",
            &hub.url,
            "--token-file",
            "-",
            "--context",
            "dev",
        ]),
        Some(&format!("{}\n", hub.token)),
    );
    let login = login.ok();
    assert!(
        login
            .stdout
            .contains(&format!("logged in to {} as context dev", hub.url)),
        "{}",
        login.stdout
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&cli.config).expect("config file"))
            .expect("JSON");
    assert_eq!(config["currentContext"], "dev");
    assert_eq!(config["contexts"]["dev"]["hub"], hub.url.as_str());
    assert_eq!(config["contexts"]["dev"]["token"], hub.token.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&cli.config), 0o600);
        assert_eq!(mode(cli.config.parent().expect("dir")), 0o700);
    }
    // The default context name is the hub's host and port.
    let json = cli
        .run_with(
            cli.command()
                .args(["login", "--hub", &hub.url, "-o", "json"])
                .env("FLOTILLA_TOKEN", &hub.token),
            None,
        )
        .ok()
        .json();
    let host = hub.url.trim_start_matches("http://");
    assert_eq!(json["context"], host);
    assert!(
        !cli.run(&["--context", "nope", "app", "list"])
            .expect_code(2)
            .stderr
            .is_empty()
    );

    // apply: files, a directory, standard input.
    let applied = cli
        .run(&[
            "apply",
            "-f",
            &format!("{EXAMPLES}/project.yaml"),
            "-f",
            &format!("{EXAMPLES}/appset-prod.yaml"),
        ])
        .ok();
    assert_eq!(
        applied.stdout,
        "AppProject/shop applied\nApplicationSet/guestbook-prod applied\n"
    );
    let all = cli
        .run(&["apply", "-f", EXAMPLES, "-o", "json"])
        .ok()
        .json();
    let kinds: Vec<&str> = all["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .map(|a| a["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["Application", "ApplicationSet", "AppProject"]);
    let from_stdin = cli.run_with(
        cli.command().args(["apply", "-f", "-"]),
        Some(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: lab-web}\n\
             spec:\n  project: default\n  source: {repoURL: 'https://git.example/x.git', path: web, targetRevision: main}\n  \
             destination: {name: lab, namespace: web}\n  bogusField: 1\n",
        ),
    );
    let from_stdin = from_stdin.ok();
    assert_eq!(from_stdin.stdout, "Application/lab-web applied\n");
    assert!(
        from_stdin.stderr.contains("warning: "),
        "{}",
        from_stdin.stderr
    );
    // The hub refuses what it cannot parse, and says why.
    let refused = cli.run_with(
        cli.command().args(["apply", "-f", "-"]),
        Some("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\n"),
    );
    let refused = refused.expect_code(1);
    assert!(refused.stderr.starts_with("error: "), "{}", refused.stderr);
    let missing = cli
        .run(&["apply", "-f", "/nonexistent/app.yaml"])
        .expect_code(1);
    assert!(
        missing.stderr.contains("/nonexistent/app.yaml"),
        "{}",
        missing.stderr
    );

    // app list: JSON and the table.
    let apps = cli.run(&["app", "list", "-o", "json"]).ok().json();
    assert_eq!(
        by_name(&apps["applicationSets"], "guestbook-prod")["name"],
        "guestbook-prod"
    );
    assert_eq!(
        by_name(&apps["applications"], "guestbook-staging")["project"],
        "shop"
    );
    let table = cli.run(&["app", "list"]).ok();
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PROJECT", "CLUSTERS", "SYNCED", "HEALTHY", "ORIGIN"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.contains(&vec!["guestbook-staging", "shop", "0", "0", "0", "api"]),
        "{rows:?}"
    );
    assert!(
        rows.contains(&vec!["lab-web", "default", "0", "0", "0", "api"]),
        "{rows:?}"
    );
    // YAML says the same as JSON.
    let yaml = cli.run(&["app", "list", "-o", "yaml"]).ok();
    assert!(yaml.stdout.contains("name: lab-web"), "{}", yaml.stdout);

    // cluster list: an empty list is still JSON.
    let clusters = cli.run(&["cluster", "list", "-o", "json"]).ok().json();
    assert_eq!(clusters["clusters"], serde_json::json!([]));
    let empty = cli.run(&["cluster", "list"]).ok();
    assert!(
        empty.stdout.is_empty() && empty.stderr.contains("no clusters"),
        "{empty:?}"
    );

    // The admin token never reaches any output.
    assert!(
        !cli.outputs().contains(&hub.token),
        "the admin token was printed"
    );
}

#[test]
fn cluster_tokens_approval_labels_and_revocation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = Hub::start(dir.path(), &[]);
    let cli = Cli::new(dir.path());
    cli.login(&hub);

    let files = dir.path().join("agent-files");
    let create = cli
        .run(&[
            "cluster",
            "token",
            "create",
            "east",
            "--label",
            "env=prod",
            "--ttl",
            "1h",
            "--require-approval",
            "--write-files",
            path(&files),
        ])
        .ok();
    let bootstrap = create
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("flt_"))
        .expect("the bootstrap token is printed");
    let helm = create
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("helm install"))
        .expect("a helm line");
    let ca = files.join("hub-ca.crt");
    let key = files.join("signing.pub");
    for part in [
        "helm install flotilla-agent charts/flotilla-agent --namespace flotilla-system --create-namespace",
        "--set cluster.name=east",
        "--set hub.url=https://",
        &format!("--set-file hub.ca={}", path(&ca)),
        &format!("--set-file 'trust.keys[0]={}'", path(&key)),
        &format!("--set bootstrap.token={bootstrap}"),
    ] {
        assert!(helm.contains(part), "{part}: {helm}");
    }
    assert!(
        std::fs::read_to_string(&ca)
            .expect("CA")
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        std::fs::read_to_string(&key)
            .expect("key")
            .contains("BEGIN PUBLIC KEY")
    );

    let json = cli
        .run(&["cluster", "token", "create", "west", "-o", "json"])
        .ok()
        .json();
    assert_eq!(json["cluster"], "west");
    assert!(json["token"].as_str().expect("token").starts_with("flt_"));
    assert!(json["expiresAt"].is_string());
    assert!(
        json["helmCommand"]
            .as_str()
            .expect("helm")
            .contains("--set-file hub.ca=hub-ca.crt")
    );
    let not_written = cli.run(&["cluster", "token", "create", "lab"]).ok();
    assert!(
        not_written.stdout.contains("GET /api/v1/agent-api"),
        "{}",
        not_written.stdout
    );

    // east waits for approval; the table says so.
    let list = cli.run(&["cluster", "list", "-o", "json"]).ok().json();
    let east = by_name(&list["clusters"], "east");
    assert_eq!(east["status"], "Pending");
    assert_eq!(east["labels"], serde_json::json!({"env": "prod"}));
    let table = cli.run(&["cluster", "list"]).ok();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "LABELS",
            "AGENT",
            "KUBERNETES",
            "LAST-SEEN",
            "GENERATION",
            "MESSAGE"
        ]
    );
    let east_row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("east "))
        .expect("east row");
    assert!(east_row.contains("Pending"), "{east_row}");
    assert!(
        east_row.contains("flotilla cluster approve east"),
        "{east_row}"
    );

    assert_eq!(
        cli.run(&["cluster", "approve", "east"]).ok().stdout,
        "cluster east approved\n"
    );
    let approved = cli
        .run(&["cluster", "approve", "east", "-o", "json"])
        .ok()
        .json();
    assert_eq!(approved["approved"], true);

    let labelled = cli
        .run(&["cluster", "label", "east", "tier=web", "env-"])
        .ok();
    assert_eq!(labelled.stdout, "cluster east labels: tier=web\n");
    let list = cli.run(&["cluster", "list", "-o", "json"]).ok().json();
    assert_eq!(
        by_name(&list["clusters"], "east")["labels"],
        serde_json::json!({"tier": "web"})
    );
    // Both set and removed: a usage error before the hub is asked.
    cli.run(&["cluster", "label", "east", "a=1", "a-"])
        .expect_code(2);
    // A key the hub refuses: its message, exit 1.
    let bad = cli
        .run(&["cluster", "label", "east", "bad-=x"])
        .expect_code(1);
    assert!(bad.stderr.contains("label key"), "{}", bad.stderr);

    // Not found: exit 4 with the hub's message.
    for args in [
        &["cluster", "approve", "nosuch"][..],
        &["cluster", "revoke", "nosuch"],
        &["cluster", "label", "nosuch", "a=b"],
        &["bundle", "export", "--cluster", "east", "--out", "east.tar"],
    ] {
        let run = cli.run(args).expect_code(4);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains('{'),
            "the message, not the JSON: {}",
            run.stderr
        );
    }

    let revoked = cli.run(&["cluster", "revoke", "east"]).ok();
    assert!(
        revoked.stdout.starts_with("cluster east revoked"),
        "{}",
        revoked.stdout
    );
    let list = cli.run(&["cluster", "list", "-o", "json"]).ok().json();
    assert_eq!(by_name(&list["clusters"], "east")["status"], "Revoked");
    let again = cli
        .run(&["cluster", "token", "create", "east"])
        .expect_code(1);
    assert!(again.stderr.contains("revoked"), "{}", again.stderr);

    // An unauthorized call (the token was replaced): exit 3 and a hint.
    let unauthorized = cli
        .run(&["--token", "flt_wrong", "cluster", "list"])
        .expect_code(3);
    assert!(
        unauthorized.stderr.contains("hint:"),
        "{}",
        unauthorized.stderr
    );

    assert!(
        !cli.outputs().contains(&hub.token),
        "the admin token was printed"
    );
}

const FLEET: &str = "https://git.example/acme/fleet.git";

#[test]
fn bundle_export_of_a_served_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(fleet.join("apps/web")).expect("mkdir");
    std::fs::write(
        fleet.join("apps/web/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: web}\ndata: {greeting: hello}\n",
    )
    .expect("write");
    git(&fleet, &["init", "-q"]);
    git(&fleet, &["add", "-A"]);
    git(&fleet, &["commit", "-q", "-m", "web"]);
    let commit = git(&fleet, &["rev-parse", "HEAD"]);

    let hub = Hub::start(
        dir.path(),
        &[
            "--rewrite".to_owned(),
            format!("{FLEET}={}", fleet.display()),
        ],
    );
    let cli = Cli::new(dir.path());
    cli.login(&hub);
    cli.run(&["cluster", "token", "create", "east", "--label", "env=prod"])
        .ok();
    let app_set = format!(
        "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: web}}
spec:
  generators: [{{clusters: {{selector: {{matchLabels: {{env: prod}}}}}}}}]
  template:
    metadata: {{name: 'web-{{{{name}}}}'}}
    spec:
      project: default
      source: {{repoURL: '{FLEET}', path: apps/web, targetRevision: main}}
      destination: {{name: '{{{{name}}}}', namespace: web}}
      syncPolicy: {{automated: {{}}}}
"
    );
    cli.run_with(cli.command().args(["apply", "-f", "-"]), Some(&app_set))
        .ok();

    // Until the first state is published, the hub has no bundle for east (exit 4).
    let out = dir.path().join("out/east.tar");
    std::fs::create_dir_all(out.parent().expect("dir")).expect("mkdir");
    let export = cli.wait_for(
        &["bundle", "export", "--cluster", "east", "--out", path(&out)],
        "a bundle for east",
        &hub,
        |run: &Run| run.code != 4,
    );
    let export = export.ok();
    assert!(
        export
            .stdout
            .starts_with(&format!("wrote {} (generation ", path(&out))),
        "{}",
        export.stdout
    );
    assert!(export.stdout.ends_with(", 1 apps)\n"), "{}", export.stdout);
    assert!(out.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file stays: {leftovers:?}");
    let json = cli
        .run(&[
            "bundle",
            "export",
            "--cluster",
            "east",
            "--out",
            path(&out),
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(json["apps"], 1);
    assert!(json["generation"].as_u64().expect("generation") > 0);

    // The application now runs on east (as far as the hub knows).
    let apps = cli.run(&["app", "list", "-o", "json"]).ok().json();
    let web_east = by_name(&apps["applications"], "web-east");
    assert_eq!(web_east["clusters"][0]["cluster"], "east");
    assert_eq!(web_east["clusters"][0]["revision"], commit.as_str());
    let table = cli.run(&["app", "list"]).ok();
    let row: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.starts_with("web-east "))
        .expect("a row for web-east")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["web-east", "default", "1", "0", "0", "appset/web"]);
    let get = cli.run(&["app", "get", "web-east"]).ok();
    let east: Vec<&str> = get
        .stdout
        .lines()
        .find(|l| l.starts_with("east "))
        .expect("a row for east")
        .split_whitespace()
        .collect();
    assert_eq!(east[..2], ["east", &commit[..7]]);
}

#[test]
fn api_tokens_whoami_and_roles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = Hub::start(dir.path(), &[]);
    let cli = Cli::new(dir.path());
    cli.login(&hub);

    let me = cli.run(&["whoami"]).ok();
    assert_eq!(me.stdout, "admin (local-admin): admin\n");

    // The token alone on standard output, what it is on standard error.
    let made = cli
        .run(&[
            "token",
            "create",
            "ci-shop",
            "--grant",
            "viewer:shop",
            "--expires-in",
            "2h",
        ])
        .ok();
    let token = made.stdout.trim().to_owned();
    assert!(
        token.starts_with("flt_") && !token.contains(' '),
        "{}",
        made.stdout
    );
    assert!(
        made.stderr.contains("API token ci-shop") && made.stderr.contains("viewer:shop"),
        "{}",
        made.stderr
    );

    let list = cli.run(&["token", "list"]).ok();
    assert!(list.stdout.starts_with("ID"), "{}", list.stdout);
    assert!(list.stdout.contains("ci-shop") && list.stdout.contains("active"));
    assert!(!list.stdout.contains(&token), "a token is shown once");
    let listed = cli.run(&["token", "list", "-o", "json"]).ok().json();
    let id = listed["tokens"][0]["id"].as_str().expect("id").to_owned();

    // Another context with the new token: a viewer may read, not change, and not list tokens.
    let viewer = Cli::new(&dir.path().join("viewer"));
    viewer
        .run_with(
            viewer
                .command()
                .args(["login", "--hub", &hub.url, "--token-file", "-"]),
            Some(&format!("{token}\n")),
        )
        .ok();
    let me = viewer.run(&["whoami"]).ok();
    assert!(
        me.stdout
            .starts_with("token:ci-shop (token): viewer:shop, until "),
        "{}",
        me.stdout
    );
    let refused = viewer.run(&["token", "list"]).expect_code(3);
    assert!(
        refused
            .stderr
            .contains("token:ci-shop (viewer:shop) may not GET /api/v1/tokens"),
        "{}",
        refused.stderr
    );
    let refused = viewer.run(&["cluster", "approve", "east"]).expect_code(3);
    assert!(
        refused.stderr.contains("may not POST"),
        "{}",
        refused.stderr
    );

    // Revoked: the viewer's context is refused from then on.
    let revoked = cli.run(&["token", "revoke", &id]).ok();
    assert!(
        revoked.stdout.contains("API token ci-shop"),
        "{}",
        revoked.stdout
    );
    let gone = viewer.run(&["whoami"]).expect_code(3);
    assert!(gone.stderr.contains("was revoked at"), "{}", gone.stderr);
    cli.run(&["token", "revoke", &id]).expect_code(1);
    cli.run(&["token", "create", "x", "--grant", "root"])
        .expect_code(2);

    // The audit log says who and from where.
    let audit = cli.run(&["audit"]).ok();
    assert!(audit.stdout.contains("FROM"), "{}", audit.stdout);
    assert!(audit.stdout.contains("revoke API token") && audit.stdout.contains("127.0.0.1:"));
    assert!(
        !cli.outputs().contains(&hub.token),
        "the admin token is never printed"
    );
}
