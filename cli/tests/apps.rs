//! The application, repository, ApplicationSet and audit commands as a user runs them,
//! against a real hub serving a local Git repository (no agent: clusters are registered by
//! their bootstrap token but never report, so nothing becomes synced). Every assertion is on
//! what the command prints and its exit code; no secret may appear in any output.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Cli, Hub, Run, git};

const FLEET: &str = "https://git.example/acme/fleet.git";
const PRIVATE: &str = "https://git.example/acme/private.git";
const GIT_PASSWORD: &str = "pw-5f1e-never-printed";
const GIT_TOKEN: &str = "ghp_tok-9c2d-never-printed";

fn commit(repo: &Path, greeting: &str) -> String {
    std::fs::create_dir_all(repo.join("apps/web")).expect("mkdir");
    std::fs::write(
        repo.join("apps/web/config.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web, namespace: web}}\ndata: {{greeting: {greeting}}}\n"
        ),
    )
    .expect("write");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", greeting]);
    git(repo, &["rev-parse", "HEAD"])
}

/// The whitespace-separated cells of the line starting with `first`.
fn row<'a>(stdout: &'a str, first: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{stdout}"))
        .split_whitespace()
        .collect()
}

fn served_revision(app: &Value, cluster: &str) -> String {
    app["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["cluster"] == cluster)
        .and_then(|c| c["revision"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn repositories_keep_their_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let hub = Hub::start(
        dir.path(),
        &[
            "--rewrite".to_owned(),
            format!("{PRIVATE}={}", missing.display()),
        ],
    );
    let cli = Cli::new(dir.path());
    cli.login(&hub);

    let empty = cli.run(&["repo", "list"]).ok();
    assert!(
        empty.stdout.is_empty() && empty.stderr.contains("no repositories"),
        "{empty:?}"
    );

    // Basic authentication, the password from standard input.
    let added = cli.run_with(
        cli.command().args([
            "repo",
            "add",
            PRIVATE,
            "--username",
            "bot",
            "--password-file",
            "-",
            "--poll-interval",
            "5m",
        ]),
        Some(&format!("{GIT_PASSWORD}\n")),
    );
    assert_eq!(
        added.ok().stdout,
        format!("repository {PRIVATE} stored (with credentials; poll interval 300s)\n")
    );
    // Replaced by a token from a file.
    let token_file = dir.path().join("git.token");
    std::fs::write(&token_file, format!("{GIT_TOKEN}\n")).expect("write");
    cli.run(&[
        "repo",
        "add",
        PRIVATE,
        "--git-token-file",
        token_file.to_str().expect("UTF-8"),
    ])
    .ok();

    let table = cli.run(&["repo", "list"]).ok();
    assert_eq!(
        row(&table.stdout, "URL"),
        ["URL", "CREDENTIALS", "POLL-INTERVAL", "UPDATED"]
    );
    assert_eq!(
        row(&table.stdout, PRIVATE)[..3],
        [PRIVATE, "yes", "default"]
    );
    let json = cli.run(&["repo", "list", "-o", "json"]).ok().json();
    assert_eq!(json["repositories"][0]["hasCredentials"], true);

    // Refused before anything is sent: a password in the URL (not echoed), stdin twice.
    let in_url = cli
        .run(&["repo", "add", "https://bot:hunter2@git.example/x.git"])
        .expect_code(2);
    assert!(!in_url.stderr.contains("hunter2"), "{}", in_url.stderr);
    assert!(
        in_url.stderr.contains("--password-file"),
        "{}",
        in_url.stderr
    );
    let twice = cli
        .run(&[
            "repo",
            "add",
            "git@git.example:x.git",
            "--ssh-key-file",
            "-",
            "--known-hosts-file",
            "-",
        ])
        .expect_code(2);
    assert!(twice.stderr.contains("standard input"), "{}", twice.stderr);
    // The hub refuses a poll interval below its minimum, and says why (exit 1).
    let short = cli
        .run(&["repo", "add", PRIVATE, "--poll-interval", "1s"])
        .expect_code(1);
    assert!(short.stderr.contains("pollInterval"), "{}", short.stderr);

    assert_eq!(
        cli.run(&["repo", "rm", PRIVATE]).ok().stdout,
        format!("repository {PRIVATE} removed\n")
    );
    let again = cli.run(&["repo", "rm", PRIVATE]).expect_code(4);
    assert!(again.stderr.contains("not registered"), "{}", again.stderr);

    let outputs = cli.outputs();
    for secret in [GIT_PASSWORD, GIT_TOKEN, hub.token.as_str()] {
        assert!(!outputs.contains(secret), "a secret was printed");
    }
}

#[test]
fn an_application_from_create_to_rm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet).expect("mkdir");
    git(&fleet, &["init", "-q"]);
    let first = commit(&fleet, "hello");
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

    // Create: refused a second time unless --upsert.
    let create = [
        "app",
        "create",
        "web",
        "--repo",
        FLEET,
        "--path",
        "apps/web",
        "--revision",
        "main",
        "--dest-cluster",
        "east",
        "--dest-namespace",
        "web",
        "--label",
        "team=shop",
        "--create-namespace",
    ];
    assert_eq!(cli.run(&create).ok().stdout, "application web created\n");
    let exists = cli.run(&create).expect_code(1);
    assert!(exists.stderr.contains("exists"), "{}", exists.stderr);
    let mut upsert = create.to_vec();
    upsert.push("--upsert");
    assert_eq!(cli.run(&upsert).ok().stdout, "application web replaced\n");

    // Without automated sync, a sync publishes it.
    cli.run(&["app", "sync", "web"]).ok();
    // Once the hub publishes, web runs on east (as far as the hub knows).
    cli.wait_for(
        &["app", "get", "web", "-o", "json"],
        "web served to east",
        &hub,
        |run: &Run| run.code == 0 && served_revision(&run.json(), "east") == first,
    );
    let list = cli.run(&["app", "list"]).ok();
    assert_eq!(
        row(&list.stdout, "NAME"),
        ["NAME", "PROJECT", "CLUSTERS", "SYNCED", "HEALTHY", "ORIGIN"]
    );
    assert_eq!(
        row(&list.stdout, "web"),
        ["web", "default", "1", "0", "0", "api"]
    );
    let selected = cli
        .run(&[
            "app",
            "list",
            "--selector",
            "team=shop",
            "--cluster",
            "east",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(selected["applications"][0]["name"], "web");
    let none = cli.run(&["app", "list", "--project", "nope"]).ok();
    assert!(
        none.stdout.is_empty() && none.stderr.contains("no applications"),
        "{none:?}"
    );

    // get: the source, and under the cluster why it is not synced.
    let get = cli.run(&["app", "get", "web"]).ok();
    assert!(
        get.stdout
            .contains(&format!("Source:       {FLEET} (path apps/web) at main\n")),
        "{}",
        get.stdout
    );
    assert_eq!(row(&get.stdout, "east")[..2], ["east", &first[..7]]);
    assert!(
        get.stdout.lines().any(|l| l.starts_with("  why: ")),
        "{}",
        get.stdout
    );
    let yaml = cli.run(&["app", "get", "web", "-o", "yaml"]).ok();
    assert!(yaml.stdout.contains("\nname: web\n"), "{}", yaml.stdout);

    // diff: nothing runs yet, so the ConfigMap is added; no colour into a pipe.
    let diff = cli.run(&["app", "diff", "web"]).ok();
    assert!(
        diff.stdout.starts_with(&format!(
            "=== cluster east: nothing deployed -> {}\n",
            &first[..7]
        )),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("ConfigMap web/web added\n"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .lines()
            .any(|l| l.starts_with('+') && l.contains("greeting: hello")),
        "{}",
        diff.stdout
    );
    assert!(!diff.stdout.contains('\x1b'), "{}", diff.stdout);
    let elsewhere = cli
        .run(&["app", "diff", "web", "--cluster", "west"])
        .expect_code(4);
    assert!(
        elsewhere.stderr.contains("not served to cluster west"),
        "{}",
        elsewhere.stderr
    );

    // A new commit, synced now: the history has both revisions.
    let second = commit(&fleet, "bonjour");
    let sync = cli.run(&["app", "sync", "web"]).ok();
    // The hub answers once it published: the new revision is already there.
    assert_eq!(
        sync.stdout,
        format!(
            "application web synced: fetched its repository, published revision {} to 1 cluster\n",
            &second[..7]
        )
    );
    cli.wait_for(
        &["app", "get", "web", "-o", "json"],
        "the second revision served",
        &hub,
        |run: &Run| run.code == 0 && served_revision(&run.json(), "east") == second,
    );
    let history = cli.run(&["app", "history", "web"]).ok();
    assert_eq!(
        row(&history.stdout, "CLUSTER"),
        [
            "CLUSTER",
            "REVISION",
            "GENERATION",
            "DEPLOYED-AT",
            "DEPLOYED-BY"
        ]
    );
    let revisions: Vec<&str> = history
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
        .collect();
    assert_eq!(revisions, [&second[..7], &first[..7]]);
    let one = cli
        .run(&[
            "app",
            "history",
            "web",
            "--cluster",
            "east",
            "--limit",
            "1",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(one["history"].as_array().map(Vec::len), Some(1));

    // Rollback: a revision never deployed is refused with the hub's reason (exit 1).
    let never = cli
        .run(&["app", "rollback", "web", "0000000"])
        .expect_code(1);
    assert!(never.stderr.contains("never deployed"), "{}", never.stderr);
    let pinned = cli
        .run(&["app", "rollback", "web", &first, "--cluster", "east"])
        .ok();
    assert_eq!(
        pinned.stdout,
        format!(
            "application web pinned at revision {} on cluster east: it ignores new commits until flotilla app unpin web --cluster east\n",
            &first[..7]
        )
    );
    cli.wait_for(
        &["app", "get", "web", "-o", "json"],
        "the pin served",
        &hub,
        |run: &Run| run.code == 0 && served_revision(&run.json(), "east") == first,
    );
    let get = cli.run(&["app", "get", "web"]).ok();
    assert!(
        get.stdout.contains(&format!(
            "\n  pinned at revision {} by admin\n",
            &first[..7]
        )),
        "{}",
        get.stdout
    );
    assert_eq!(
        cli.run(&["app", "unpin", "web", "--cluster", "east"])
            .ok()
            .stdout,
        "application web unpinned on cluster east: it follows Git again\n"
    );
    cli.run(&["app", "unpin", "web", "--cluster", "east"])
        .expect_code(4);

    // sync --wait: no agent ever reports, so it times out saying why (exit 1).
    let wait = cli
        .run(&["app", "sync", "web", "--wait", "--wait-timeout", "3s"])
        .expect_code(1);
    assert!(
        wait.stderr
            .contains("waiting: 0/1 clusters synced and healthy (east: "),
        "{}",
        wait.stderr
    );
    assert!(
        wait.stderr.contains(
            "error: application web: 0/1 clusters synced and healthy after 3s; still waiting:\n  east: "
        ),
        "{}",
        wait.stderr
    );

    // ApplicationSets: another kind in the files is refused before anything is sent.
    let set = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web-set}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'set-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web, targetRevision: main}
      destination: {name: '{{name}}', namespace: web}
";
    let app =
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: stray}\nspec: {}\n";
    let mixed = cli.run_with(
        cli.command().args(["appset", "apply", "-f", "-"]),
        Some(&format!("{set}---\n{app}")),
    );
    let mixed = mixed.expect_code(2);
    assert!(
        mixed
            .stderr
            .contains("document 1 (stray) is an Application, not an ApplicationSet"),
        "{}",
        mixed.stderr
    );
    let applied = cli.run_with(
        cli.command().args(["appset", "apply", "-f", "-"]),
        Some(set),
    );
    assert_eq!(applied.ok().stdout, "ApplicationSet/web-set applied\n");
    // A generated application without automated sync is served once synced.
    cli.wait_for(
        &["app", "sync", "set-east"],
        "set-east generated",
        &hub,
        |run: &Run| run.code == 0,
    );
    cli.wait_for(
        &["app", "list", "-o", "json"],
        "set-east served",
        &hub,
        |run: &Run| run.code == 0 && run.json()["total"] == 2,
    );
    let sets = cli.run(&["appset", "list"]).ok();
    assert_eq!(row(&sets.stdout, "web-set"), ["web-set", "1", "api", "-"]);
    let generated = cli.run(&["app", "rm", "set-east"]).expect_code(1);
    assert!(
        generated
            .stderr
            .contains("generated by ApplicationSet web-set"),
        "{}",
        generated.stderr
    );

    // Pages: one at a time says there is more; --all fetches them all.
    let page = cli.run(&["app", "list", "--limit", "1"]).ok();
    assert_eq!(page.stdout.lines().count(), 2, "{}", page.stdout);
    assert!(
        page.stderr.contains("showing 1 of 2 applications"),
        "{}",
        page.stderr
    );
    let all = cli
        .run(&["app", "list", "--limit", "1", "--all", "-o", "json"])
        .ok()
        .json();
    let names: Vec<&str> = all["applications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"web") && names.contains(&"set-east"),
        "{names:?}"
    );

    // rm, then it is gone (exit 4).
    assert_eq!(
        cli.run(&["app", "rm", "web"]).ok().stdout,
        "application web deleted: it leaves every cluster it ran on\n"
    );
    for args in [
        &["app", "rm", "web"][..],
        &["app", "history", "nosuch"],
        &["app", "sync", "nosuch"],
    ] {
        let gone = cli.run(args).expect_code(4);
        assert!(
            gone.stderr.contains("not known"),
            "{args:?}: {}",
            gone.stderr
        );
    }

    // The audit log names what was done, newest first.
    let audit = cli.run(&["audit", "--limit", "100"]).ok();
    assert_eq!(
        row(&audit.stdout, "AT"),
        ["AT", "WHO", "SOURCE", "FROM", "ACTION", "SUBJECT", "DETAIL"]
    );
    for action in [
        "create application",
        "rollback",
        "unpin",
        "sync",
        "delete application",
    ] {
        assert!(
            audit.stdout.contains(&format!("   {action}   ")),
            "{action}: {}",
            audit.stdout
        );
    }
    let entries = cli
        .run(&["audit", "--limit", "1", "-o", "json"])
        .ok()
        .json();
    assert_eq!(entries["entries"][0]["action"], "delete application");

    assert!(
        !cli.outputs().contains(&hub.token),
        "the admin token was printed"
    );
}

#[test]
fn completion_scripts_and_help() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cli = Cli::new(dir.path());
    let bash = cli.run(&["completion", "bash"]).ok();
    assert!(bash.stdout.contains("_flotilla()"), "{}", bash.stdout);
    assert!(bash.stdout.contains("appset"), "{}", bash.stdout);
    let fish = cli.run(&["completion", "fish"]).ok();
    assert!(
        fish.stdout.contains("complete -c flotilla"),
        "{}",
        fish.stdout
    );
    for shell in ["zsh", "powershell", "elvish"] {
        assert!(!cli.run(&["completion", shell]).ok().stdout.is_empty());
    }

    let help = cli.run(&["--help"]).ok();
    for command in ["app", "appset", "repo", "audit", "completion"] {
        assert!(
            help.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "{command}: {}",
            help.stdout
        );
    }
    // Help text wraps to the terminal: compare it with its whitespace collapsed.
    let help_of = |args: &[&str]| {
        let run = cli.run(args).ok();
        run.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let repo_add = help_of(&["repo", "add", "--help"]);
    for text in [
        "--git-token-file <FILE>",
        "--password-file <FILE>",
        "--known-hosts-file <FILE>",
        "never from flags, and never printed",
    ] {
        assert!(repo_add.contains(text), "{text}: {repo_add}");
    }
    let sync = help_of(&["app", "sync", "--help"]);
    for text in ["--wait ", "--wait-timeout <DURATION>", "synced and healthy"] {
        assert!(sync.contains(text), "{text}: {sync}");
    }
    let diff = help_of(&["app", "diff", "--help"]);
    assert!(diff.contains("the exit code is 0"), "{diff}");
}
