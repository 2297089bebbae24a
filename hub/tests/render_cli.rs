//! `flotilla-hub render` as a person runs it, on a real Git repository built by the git CLI
//! and with the real, pinned helm (`e2e/cluster bin helm`): what one cluster gets, as YAML,
//! or why it cannot get it. Without helm the tests are skipped loudly, unless
//! FLOTILLA_REQUIRE_TOOLS is set.

mod support;

use support::{copy_dir, git, tool, workspace, write};

use std::path::Path;
use std::process::{Command, Output};

/// A repository with a plain directory app, podinfo's chart and per-cluster values.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    write(
        dir,
        "apps/web/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: web}\ndata: {mode: 0644}\n",
    );
    copy_dir(
        &workspace().join("../shared/testdata/real-world/podinfo/charts/podinfo"),
        &dir.join("charts/podinfo"),
    );
    write(dir, "values/prod-east.yaml", "replicaCount: 2\n");
    write(dir, "values/prod-west.yaml", "replicaCount: 3\n");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fleet"]);
}

const FLEET: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: fleet}
spec:
  goTemplate: true
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{.name}}'}
    spec:
      source: {repoURL: 'https://git.example/fleet.git', path: apps/web}
      destination: {name: '{{.name}}', namespace: web}
      syncPolicy: {automated: {}}
---
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: podinfo}
spec:
  goTemplate: true
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'podinfo-{{.name}}'}
    spec:
      source:
        repoURL: 'https://git.example/fleet.git'
        path: charts/podinfo
        helm: {valueFiles: ['/values/{{.name}}.yaml']}
      destination: {name: '{{.name}}', namespace: podinfo}
";

const BROKEN: &str = "
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: broken}
spec:
  source: {repoURL: 'https://git.example/fleet.git', path: ../outside}
  destination: {name: prod-east, namespace: web}
";

fn render(repo: &Path, file: &Path, helm: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
        .arg("render")
        .args(["--repo", repo.to_str().expect("UTF-8")])
        .args(["--file", file.to_str().expect("UTF-8")])
        .args(["--helm-path", helm.to_str().expect("UTF-8")])
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "off")
        .output()
        .expect("runs flotilla-hub")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn render_prints_what_a_cluster_gets() {
    let Some(helm) = tool("helm") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet");
    repo(&fleet);
    let file = dir.path().join("fleet.yaml");
    write(dir.path(), "fleet.yaml", FLEET);

    let out = render(
        &fleet,
        &file,
        &helm,
        &[
            "--cluster",
            "prod-east",
            "--label",
            "env=prod",
            "--kube-version",
            "v1.35.4",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "failed: {}", text(&out.stderr));
    assert!(
        stdout.contains("# application: web-prod-east\n"),
        "{stdout}"
    );
    assert!(stdout.contains("# destination: cluster prod-east, namespace web\n"));
    assert!(stdout.contains("# source: https://git.example/fleet.git path apps/web\n"));
    assert!(stdout.contains("# application: podinfo-prod-east\n"));
    assert!(
        stdout.contains("# sync: automated sync is off"),
        "podinfo has no automated sync"
    );
    assert!(stdout.contains("# revision: "));
    // The objects, as YAML documents (YAML 1.1 read: 0644 is 420).
    assert!(stdout.contains("kind: ConfigMap"));
    assert!(stdout.contains("mode: 420"), "{stdout}");
    assert!(stdout.contains("kind: Deployment"));
    assert!(stdout.contains("replicas: 2"), "prod-east's values");
    assert!(!stdout.contains("prod-west"));
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&stdout).expect("stdout is a YAML stream");
    assert!(documents.iter().any(|d| d["kind"] == "Service"));

    // A cluster no selector picks gets nothing, and says so.
    let out = render(
        &fleet,
        &file,
        &helm,
        &["--cluster", "lab", "--label", "env=dev"],
    );
    assert!(out.status.success(), "failed: {}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("no application targets cluster lab"));
}

#[test]
fn render_refuses_with_the_application_named() {
    let Some(helm) = tool("helm") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet");
    repo(&fleet);
    let file = dir.path().join("fleet.yaml");
    write(dir.path(), "fleet.yaml", &format!("{FLEET}{BROKEN}"));

    let out = render(
        &fleet,
        &file,
        &helm,
        &["--cluster", "prod-east", "--label", "env=prod"],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a broken app fails the command");
    assert!(
        stderr.contains("cluster prod-east cannot get everything it should"),
        "{stderr}"
    );
    assert!(
        stderr.contains("render application broken: source path \"../outside\""),
        "{stderr}"
    );
    // The other applications still print.
    assert!(text(&out.stdout).contains("# application: web-prod-east\n"));

    // A file that is not declarative configuration is refused as a whole.
    write(dir.path(), "bad.yaml", "apiVersion: v1\nkind: ConfigMap\n");
    let out = render(
        &fleet,
        &dir.path().join("bad.yaml"),
        &helm,
        &["--cluster", "prod-east"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("parse document 0: ConfigMap of apiVersion v1 is not read"),
        "{}",
        text(&out.stderr)
    );
}
