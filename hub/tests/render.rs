//! Rendering with the real, pinned `helm` and `kustomize` the e2e harness builds
//! (`e2e/cluster bin helm`): podinfo's Helm chart and Kustomize base, plain directories, a Helm
//! repository served from loopback, the render cache, and every refusal. Without the tools the
//! tests that need them are skipped loudly, unless FLOTILLA_REQUIRE_TOOLS is set.

mod support;

use support::{tool, workspace};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_hub::render::{
    ClusterInfo, HelmOptions, HelmParameter, Limits, RenderConfig, RenderError, RenderRequest,
    RenderSource, Rendered, Renderer,
};
use serde_json::{Value, json};

fn podinfo() -> PathBuf {
    workspace().join("../shared/testdata/real-world/podinfo")
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    Some((tool("helm")?, tool("kustomize")?))
}

fn renderer_with(helm: &Path, kustomize: &Path, limits: Limits) -> Renderer {
    Renderer::new(RenderConfig {
        helm: helm.to_owned(),
        kustomize: kustomize.to_owned(),
        limits,
        cache_entries: 64,
    })
    .expect("renderer")
}

fn renderer(helm: &Path, kustomize: &Path) -> Renderer {
    renderer_with(helm, kustomize, Limits::default())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// A temporary "repository checkout" with podinfo's chart and Kustomize base copied in.
fn podinfo_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &podinfo().join("charts/podinfo"),
        &repo.path().join("charts/podinfo"),
    );
    copy_dir(
        &podinfo().join("kustomize"),
        &repo.path().join("deploy/podinfo"),
    );
    repo
}

fn source(path: &str) -> RenderSource {
    RenderSource {
        repo_url: "https://git.example.com/fleet.git".to_owned(),
        path: path.to_owned(),
        target_revision: "main".to_owned(),
        ..RenderSource::default()
    }
}

fn cluster(version: &str) -> ClusterInfo {
    ClusterInfo {
        kube_version: Some(version.to_owned()),
        api_versions: Vec::new(),
    }
}

async fn render(
    renderer: &Renderer,
    app: &str,
    repo: &Path,
    source: &RenderSource,
    cluster: &ClusterInfo,
) -> Result<Rendered, RenderError> {
    renderer
        .render(&RenderRequest {
            app,
            repo_dir: repo,
            commit: "0123456789abcdef0123456789abcdef01234567",
            source,
            namespace: "shop",
            cluster,
        })
        .await
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn kinds_and_names(objects: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The error's message, after checking it names the application.
fn refusal(result: Result<Rendered, RenderError>, app: &str) -> String {
    let error = result.expect_err("refused");
    assert_eq!(error.app, app);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("render application {app}: ")),
        "{message}"
    );
    message
}

fn parameter(name: &str, value: &str) -> HelmParameter {
    HelmParameter {
        name: name.to_owned(),
        value: value.to_owned(),
        force_string: false,
    }
}

#[tokio::test]
async fn podinfo_chart_renders_per_cluster_values() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = podinfo_repo();
    let renderer = renderer(&helm, &kustomize);

    let mut east = source("charts/podinfo");
    east.helm.parameters = vec![parameter("replicaCount", "2")];
    let east = render(
        &renderer,
        "podinfo",
        repo.path(),
        &east,
        &cluster("v1.35.4"),
    )
    .await
    .expect("east renders");
    let deployment = find(&east, "Deployment", "podinfo").expect("podinfo Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["metadata"]["namespace"], "shop");
    assert!(find(&east, "Deployment", "podinfo-redis").is_none());
    assert!(find(&east, "HorizontalPodAutoscaler", "podinfo").is_none());

    let mut west = source("charts/podinfo");
    west.helm.value_files = vec!["values-prod.yaml".to_owned()];
    west.helm.parameters = vec![parameter("hpa.maxReplicas", "7")];
    west.helm.release_name = Some("web".to_owned());
    let west = render(
        &renderer,
        "podinfo",
        repo.path(),
        &west,
        &cluster("v1.34.0"),
    )
    .await
    .expect("west renders");
    let deployment = find(&west, "Deployment", "web-podinfo").expect("web-podinfo Deployment");
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa = find(&west, "HorizontalPodAutoscaler", "web-podinfo").expect("HPA");
    assert_eq!(hpa["spec"]["maxReplicas"], 7);
    assert!(find(&west, "Deployment", "web-podinfo-redis").is_some());
    assert_eq!(renderer.renders_executed(), 2);
    // No test hook of the chart survives (`--skip-tests`).
    assert!(
        west.iter()
            .chain(east.iter())
            .all(|o| o["kind"] != "Pod"
                && o.pointer("/metadata/annotations/helm.sh~1hook").is_none())
    );
}

#[tokio::test]
async fn podinfo_hooks_become_waves_and_the_kube_version_is_checked() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = podinfo_repo();
    let renderer = renderer(&helm, &kustomize);
    let mut with_hooks = source("charts/podinfo");
    with_hooks.helm.values_object = Some(json!({"hooks": {
        "preInstall": {"job": {"enabled": true}},
        "postUpgrade": {"job": {"enabled": true}},
        "preDelete": {"job": {"enabled": true}},
    }}));
    let objects = render(
        &renderer,
        "podinfo",
        repo.path(),
        &with_hooks,
        &cluster("v1.35.4"),
    )
    .await
    .expect("renders");
    let wave = |name: &str| {
        let job = find(&objects, "Job", name).unwrap_or_else(|| panic!("Job {name}"));
        let annotations = job["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        assert!(
            !annotations.keys().any(|k| k.starts_with("helm.sh/hook")),
            "{annotations:?}"
        );
        annotations["argocd.argoproj.io/sync-wave"].clone()
    };
    assert_eq!(wave("podinfo-pre-install"), "-1");
    assert_eq!(wave("podinfo-post-upgrade"), "1");
    assert!(find(&objects, "Job", "podinfo-pre-delete").is_none());
    let deployment = find(&objects, "Deployment", "podinfo").expect("Deployment");
    assert!(
        deployment
            .pointer("/metadata/annotations/argocd.argoproj.io~1sync-wave")
            .is_none()
    );

    // The cluster's version reaches Helm: podinfo requires Kubernetes 1.23 or later.
    let message = refusal(
        render(
            &renderer,
            "podinfo",
            repo.path(),
            &source("charts/podinfo"),
            &cluster("v1.20.0"),
        )
        .await,
        "podinfo",
    );
    assert!(message.contains("helm failed"), "{message}");
    assert!(message.contains("kubeVersion"), "{message}");
}

/// A chart that prints what it was told about the cluster.
fn capabilities_chart(repo: &Path) {
    write(
        repo,
        "charts/probe/Chart.yaml",
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    );
    write(repo, "charts/probe/values.yaml", "greeting: hello\n");
    write(
        repo,
        "charts/probe/templates/cm.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-probe
data:
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  monitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
  namespace: {{ .Release.Namespace | quote }}
  greeting: {{ .Values.greeting | quote }}
  mode: {{ .Values.mode | default "none" | quote }}
"#,
    );
}

#[tokio::test]
async fn helm_gets_the_cluster_versions_and_inline_values() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = tempfile::tempdir().expect("temp dir");
    capabilities_chart(repo.path());
    let renderer = renderer(&helm, &kustomize);
    let mut probe = source("charts/probe");
    probe.helm.values = Some("greeting: hi\nmode: 0644\n".to_owned());
    probe.helm.namespace = Some("monitoring".to_owned());
    let with_monitoring = ClusterInfo {
        kube_version: Some("v1.33.2".to_owned()),
        api_versions: vec!["monitoring.coreos.com/v1".to_owned()],
    };
    let objects = render(&renderer, "probe", repo.path(), &probe, &with_monitoring)
        .await
        .expect("renders");
    let data = &find(&objects, "ConfigMap", "probe-probe").expect("ConfigMap")["data"];
    assert_eq!(data["kube"], "v1.33.2");
    assert_eq!(data["monitoring"], "true");
    assert_eq!(data["namespace"], "monitoring");
    assert_eq!(data["greeting"], "hi");
    let objects = render(&renderer, "probe", repo.path(), &probe, &cluster("v1.31.0"))
        .await
        .expect("renders");
    let data = &find(&objects, "ConfigMap", "probe-probe").expect("ConfigMap")["data"];
    assert_eq!(data["kube"], "v1.31.0");
    assert_eq!(data["monitoring"], "false");

    // valuesObject wins over values, as in Argo CD.
    probe.helm.values_object = Some(json!({"greeting": "object"}));
    let objects = render(&renderer, "probe", repo.path(), &probe, &cluster("v1.31.0"))
        .await
        .expect("renders");
    let data = &find(&objects, "ConfigMap", "probe-probe").expect("ConfigMap")["data"];
    assert_eq!(data["greeting"], "object");
    assert_eq!(data["mode"], "none");
}

#[tokio::test]
async fn podinfo_kustomize_base_renders() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = podinfo_repo();
    let renderer = renderer(&helm, &kustomize);
    let objects = render(
        &renderer,
        "podinfo-kustomize",
        repo.path(),
        &source("deploy/podinfo"),
        &cluster("v1.35.4"),
    )
    .await
    .expect("renders");
    assert_eq!(
        kinds_and_names(&objects),
        [
            ("Deployment".to_owned(), "podinfo".to_owned()),
            ("HorizontalPodAutoscaler".to_owned(), "podinfo".to_owned()),
            ("Service".to_owned(), "podinfo".to_owned()),
        ]
    );

    // An overlay elsewhere in the repository may use the base.
    write(
        repo.path(),
        "overlays/prod/kustomization.yaml",
        "resources:\n- ../../deploy/podinfo\nnamePrefix: prod-\n",
    );
    let objects = render(
        &renderer,
        "podinfo-prod",
        repo.path(),
        &source("overlays/prod"),
        &cluster("v1.35.4"),
    )
    .await
    .expect("renders");
    assert!(find(&objects, "Deployment", "prod-podinfo").is_some());
}

#[tokio::test]
async fn plain_directories_render_recursively_in_order() {
    let repo = tempfile::tempdir().expect("temp dir");
    write(
        repo.path(),
        "apps/web/b/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {mode: 0644}\n---\n",
    );
    write(
        repo.path(),
        "apps/web/a.json",
        r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}]}"#,
    );
    write(repo.path(), "apps/web/.hidden.yaml", "kind: Secret\n");
    write(repo.path(), "apps/web/README.md", "# docs\n");
    // A directory source needs no tool at all.
    let renderer = renderer(
        Path::new("/nonexistent/helm"),
        Path::new("/nonexistent/kustomize"),
    );
    let objects = render(
        &renderer,
        "web",
        repo.path(),
        &source("./apps/web"),
        &ClusterInfo::default(),
    )
    .await
    .expect("renders");
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(objects[1]["data"]["mode"], 420, "YAML 1.1 octal");
}

/// Serves the files of `dir` over HTTP on 127.0.0.1 until the test ends; returns the base URL.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if header == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/");
            let file = dir.join(path.trim_start_matches('/'));
            let response = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{address}")
}

fn run_helm(helm: &Path, home: &Path, args: &[&str]) {
    let status = Command::new(helm)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_DATA_HOME", home.join("data"))
        .status()
        .expect("helm runs");
    assert!(status.success(), "helm {args:?}");
}

#[tokio::test]
async fn charts_from_a_helm_repository_render_and_are_verified() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let served = work.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    let chart = podinfo().join("charts/podinfo");
    let served_arg = served.to_str().expect("utf-8");
    run_helm(
        &helm,
        work.path(),
        &[
            "package",
            chart.to_str().expect("utf-8"),
            "--destination",
            served_arg,
        ],
    );
    run_helm(&helm, work.path(), &["repo", "index", served_arg]);
    let version = std::fs::read_to_string(chart.join("Chart.yaml"))
        .expect("Chart.yaml")
        .lines()
        .find_map(|l| l.strip_prefix("version: ").map(str::to_owned))
        .expect("a version");
    let url = serve(served.clone());

    let renderer = renderer(&helm, &kustomize);
    let mut from_repo = RenderSource {
        repo_url: url.clone(),
        chart: Some("podinfo".to_owned()),
        target_revision: version.clone(),
        helm: HelmOptions {
            parameters: vec![parameter("replicaCount", "4")],
            ..HelmOptions::default()
        },
        ..RenderSource::default()
    };
    let empty_checkout = tempfile::tempdir().expect("temp dir");
    let objects = render(
        &renderer,
        "podinfo-repo",
        empty_checkout.path(),
        &from_repo,
        &cluster("v1.35.4"),
    )
    .await
    .expect("renders");
    let deployment = find(&objects, "Deployment", "podinfo-repo").expect("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 4);

    from_repo.target_revision = "0.0.1".to_owned();
    let message = refusal(
        render(
            &renderer,
            "podinfo-repo",
            empty_checkout.path(),
            &from_repo,
            &cluster("v1.35.4"),
        )
        .await,
        "podinfo-repo",
    );
    assert!(message.contains("has no version 0.0.1"), "{message}");
    assert!(message.contains(&version), "{message}");

    // An archive that does not match the index's digest is refused.
    let index = std::fs::read_to_string(served.join("index.yaml")).expect("index");
    let digest = index
        .lines()
        .find_map(|l| l.trim().strip_prefix("digest: "))
        .expect("helm repo index writes digests")
        .to_owned();
    std::fs::write(
        served.join("index.yaml"),
        index.replace(&digest, &"0".repeat(64)),
    )
    .expect("tamper");
    from_repo.target_revision = version;
    from_repo.helm.parameters = vec![parameter("replicaCount", "5")];
    let message = refusal(
        render(
            &renderer,
            "podinfo-repo",
            empty_checkout.path(),
            &from_repo,
            &cluster("v1.35.4"),
        )
        .await,
        "podinfo-repo",
    );
    assert!(message.contains("does not match the index"), "{message}");
    assert!(
        message.contains(&format!("helm repository {url}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_hundred_clusters_with_the_same_parameters_render_once() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = podinfo_repo();
    let renderer = renderer(&helm, &kustomize);
    let mut chart = source("charts/podinfo");
    chart.helm.parameters = vec![parameter("replicaCount", "3")];
    let same = cluster("v1.35.4");
    for _ in 0..100 {
        let objects = render(&renderer, "podinfo", repo.path(), &chart, &same)
            .await
            .expect("renders");
        assert_eq!(
            find(&objects, "Deployment", "podinfo").expect("Deployment")["spec"]["replicas"],
            3
        );
    }
    assert_eq!(renderer.renders_executed(), 1);
    // Another Kubernetes version may change a chart's output: one more render.
    render(
        &renderer,
        "podinfo",
        repo.path(),
        &chart,
        &cluster("v1.34.1"),
    )
    .await
    .expect("renders");
    assert_eq!(renderer.renders_executed(), 2);
    // Directories and Kustomize do not depend on the cluster.
    for minor in 0..100 {
        let info = cluster(&format!("v1.{minor}.0"));
        render(
            &renderer,
            "kust",
            repo.path(),
            &source("deploy/podinfo"),
            &info,
        )
        .await
        .expect("renders");
    }
    assert_eq!(renderer.renders_executed(), 3);
}

// ---- refusals ----

#[tokio::test]
async fn source_paths_may_not_leave_the_repository() {
    let repo = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    write(
        outside.path(),
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
    );
    let renderer = renderer(Path::new("helm"), Path::new("kustomize"));
    let none = ClusterInfo::default();

    let message = refusal(
        render(
            &renderer,
            "climb",
            repo.path(),
            &source("../outside"),
            &none,
        )
        .await,
        "climb",
    );
    assert!(
        message.contains("source path \"../outside\" contains `..`"),
        "{message}"
    );

    let message = refusal(
        render(&renderer, "abs", repo.path(), &source("/etc"), &none).await,
        "abs",
    );
    assert!(
        message.contains("source path \"/etc\" is absolute"),
        "{message}"
    );

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), repo.path().join("linked")).expect("link");
        let message = refusal(
            render(&renderer, "dirlink", repo.path(), &source("linked"), &none).await,
            "dirlink",
        );
        assert!(
            message.contains("source path \"linked\" leads outside the repository"),
            "{message}"
        );

        write(
            repo.path(),
            "apps/web/ok.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
        );
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            repo.path().join("apps/web/stolen.yaml"),
        )
        .expect("link");
        let message = refusal(
            render(
                &renderer,
                "filelink",
                repo.path(),
                &source("apps/web"),
                &none,
            )
            .await,
            "filelink",
        );
        assert!(
            message.contains("stolen.yaml: symbolic link leads outside"),
            "{message}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_chart_with_a_symlink_out_of_the_repository_is_refused_before_helm_runs() {
    let repo = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    write(outside.path(), "passwd", "root:x:0:0\n");
    capabilities_chart(repo.path());
    std::os::unix::fs::symlink(
        outside.path().join("passwd"),
        repo.path().join("charts/probe/files.txt"),
    )
    .expect("link");
    // Helm is not even looked for: the check comes first.
    let renderer = renderer(Path::new("/nonexistent/helm"), Path::new("kustomize"));
    let message = refusal(
        render(
            &renderer,
            "probe",
            repo.path(),
            &source("charts/probe"),
            &ClusterInfo::default(),
        )
        .await,
        "probe",
    );
    assert!(
        message.contains("files.txt: symbolic link leads outside"),
        "{message}"
    );
}

#[tokio::test]
async fn size_and_count_caps_hold() {
    let repo = tempfile::tempdir().expect("temp dir");
    let config =
        |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n");
    write(
        repo.path(),
        "big/huge.yaml",
        &format!("{}# {}\n", config("huge"), "x".repeat(4096)),
    );
    for i in 0..5 {
        write(
            repo.path(),
            &format!("many/cm{i}.yaml"),
            &config(&format!("cm{i}")),
        );
        write(
            repo.path(),
            &format!("wide/cm{i}.yaml"),
            &format!("{}# {}\n", config(&format!("cm{i}")), "x".repeat(900)),
        );
    }
    let limits = Limits {
        max_file_bytes: 2048,
        max_total_bytes: 3000,
        max_objects: 3,
        ..Limits::default()
    };
    let renderer = renderer_with(Path::new("helm"), Path::new("kustomize"), limits);
    let none = ClusterInfo::default();

    let message = refusal(
        render(&renderer, "big", repo.path(), &source("big"), &none).await,
        "big",
    );
    assert!(message.contains("huge.yaml: "), "{message}");
    assert!(message.contains("more than the limit of 2048"), "{message}");

    let message = refusal(
        render(&renderer, "wide", repo.path(), &source("wide"), &none).await,
        "wide",
    );
    assert!(message.contains("more than 3000 bytes"), "{message}");

    let message = refusal(
        render(&renderer, "many", repo.path(), &source("many"), &none).await,
        "many",
    );
    assert!(message.contains("more than 3 objects"), "{message}");
}

#[tokio::test]
async fn tool_output_is_capped_by_object_count() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = podinfo_repo();
    let limits = Limits {
        max_objects: 1,
        ..Limits::default()
    };
    let renderer = renderer_with(&helm, &kustomize, limits);
    let message = refusal(
        render(
            &renderer,
            "podinfo",
            repo.path(),
            &source("charts/podinfo"),
            &cluster("v1.35.4"),
        )
        .await,
        "podinfo",
    );
    assert!(
        message.contains("objects, more than the limit of 1"),
        "{message}"
    );
}

#[tokio::test]
async fn yaml_bombs_are_refused() {
    let repo = tempfile::tempdir().expect("temp dir");
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let refs = vec![format!("*{previous}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    write(repo.path(), "bomb/lol.yaml", &bomb);
    let renderer = renderer(Path::new("helm"), Path::new("kustomize"));
    let message = refusal(
        render(
            &renderer,
            "lol",
            repo.path(),
            &source("bomb"),
            &ClusterInfo::default(),
        )
        .await,
        "lol",
    );
    assert!(message.contains("lol.yaml: invalid YAML"), "{message}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_render_past_its_deadline_is_killed() {
    use std::os::unix::fs::PermissionsExt;

    let repo = tempfile::tempdir().expect("temp dir");
    capabilities_chart(repo.path());
    let bin = tempfile::tempdir().expect("temp dir");
    let pid_file = bin.path().join("pid");
    let child_file = bin.path().join("child");
    let slow = bin.path().join("helm");
    // The tool starts a child of its own (as helm does with post-renderers): both must go.
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 30 &\necho $! > {}\necho $$ > {}\nexec sleep 30\n",
            child_file.display(),
            pid_file.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let renderer = renderer_with(&slow, Path::new("kustomize"), limits);
    let started = std::time::Instant::now();
    let message = refusal(
        render(
            &renderer,
            "slow",
            repo.path(),
            &source("charts/probe"),
            &ClusterInfo::default(),
        )
        .await,
        "slow",
    );
    assert!(
        message.contains("helm did not finish within 1s and was killed"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let pid = std::fs::read_to_string(&pid_file).expect("the tool started");
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "process {pid} still runs"
    );
    // The orphaned child is killed too; whoever adopted it may not have reaped it yet, so a
    // zombie counts as gone.
    let child = std::fs::read_to_string(&child_file).expect("the child started");
    let running = || {
        std::fs::read_to_string(format!("/proc/{}/stat", child.trim()))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().map(|rest| rest.trim().to_owned()))
            .is_some_and(|rest| !rest.starts_with('Z'))
    };
    for _ in 0..50 {
        if !running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!running(), "the tool's child {child} still runs");
}

#[tokio::test]
async fn helm_values_files_stay_inside_the_repository() {
    let repo = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    write(outside.path(), "values.yaml", "greeting: stolen\n");
    capabilities_chart(repo.path());
    let renderer = renderer(Path::new("helm"), Path::new("kustomize"));
    let none = ClusterInfo::default();
    let mut climbing = source("charts/probe");
    climbing.helm.value_files = vec!["../../../values.yaml".to_owned()];
    let message = refusal(
        render(&renderer, "probe", repo.path(), &climbing, &none).await,
        "probe",
    );
    assert!(
        message.contains("helm values file \"../../../values.yaml\" leads outside the repository"),
        "{message}"
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            outside.path().join("values.yaml"),
            repo.path().join("charts/probe/linked.yaml"),
        )
        .expect("link");
        let mut linked = source("charts/probe");
        linked.helm.value_files = vec!["linked.yaml".to_owned()];
        let message = refusal(
            render(&renderer, "probe", repo.path(), &linked, &none).await,
            "probe",
        );
        assert!(
            message.contains("helm values file \"linked.yaml\" leads outside the repository"),
            "{message}"
        );
    }
    let mut missing = source("charts/probe");
    missing.helm.value_files = vec!["values-nope.yaml".to_owned()];
    let message = refusal(
        render(&renderer, "probe", repo.path(), &missing, &none).await,
        "probe",
    );
    assert!(
        message.contains("does not exist in the repository"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_binary_fails_only_the_applications_that_need_it() {
    let repo = podinfo_repo();
    write(
        repo.path(),
        "plain/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n",
    );
    let renderer = renderer(
        Path::new("/nonexistent/bin/helm"),
        Path::new("no-such-kustomize-on-path"),
    );
    let none = cluster("v1.35.4");
    let message = refusal(
        render(
            &renderer,
            "chart",
            repo.path(),
            &source("charts/podinfo"),
            &none,
        )
        .await,
        "chart",
    );
    assert!(
        message.contains("helm binary not found at /nonexistent/bin/helm"),
        "{message}"
    );
    assert!(
        message.contains("--helm-path (FLOTILLA_HUB_HELM_PATH)"),
        "{message}"
    );
    let message = refusal(
        render(
            &renderer,
            "kust",
            repo.path(),
            &source("deploy/podinfo"),
            &none,
        )
        .await,
        "kust",
    );
    assert!(
        message.contains("kustomize binary not found at no-such-kustomize-on-path"),
        "{message}"
    );
    assert!(message.contains("--kustomize-path"), "{message}");
    let objects = render(&renderer, "plain", repo.path(), &source("plain"), &none)
        .await
        .expect("a directory needs no tool");
    assert_eq!(objects.len(), 1);
}

#[tokio::test]
async fn kustomize_plugins_and_escapes_are_refused_before_kustomize_runs() {
    let repo = tempfile::tempdir().expect("temp dir");
    let base = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: base}\n";
    write(repo.path(), "exec/cm.yaml", base);
    write(
        repo.path(),
        "exec/kustomization.yaml",
        "resources:\n- cm.yaml\ngenerators:\n- gen.yaml\n",
    );
    write(
        repo.path(),
        "exec/gen.yaml",
        "apiVersion: example.com/v1\nkind: Shell\nmetadata:\n  name: pwn\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: ./pwn.sh\n",
    );
    write(repo.path(), "external/cm.yaml", base);
    write(
        repo.path(),
        "external/kustomization.yaml",
        "resources:\n- cm.yaml\ntransformers:\n- |\n  apiVersion: someteam.example.com/v1\n  kind: SedTransformer\n  metadata:\n    name: sed\n",
    );
    write(
        repo.path(),
        "nested/overlay/kustomization.yaml",
        "resources:\n- ../../exec\n",
    );
    write(
        repo.path(),
        "remote/kustomization.yaml",
        "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n",
    );
    write(
        repo.path(),
        "climb/kustomization.yaml",
        "resources:\n- ../../outside\n",
    );
    // kustomize is deliberately missing: a refusal must come before any attempt to run it.
    let renderer = renderer(Path::new("helm"), Path::new("/nonexistent/kustomize"));
    let none = ClusterInfo::default();
    let cases = [
        (
            "exec",
            "gen.yaml: generators: Shell pwn is a KRM function plugin",
        ),
        (
            "external",
            "transformers: SedTransformer sed (someteam.example.com/v1) is an external exec or Go plugin",
        ),
        (
            "nested/overlay",
            "gen.yaml: generators: Shell pwn is a KRM function plugin",
        ),
        ("remote", "is remote; vendor it into the repository"),
        (
            "climb",
            "resources entry ../../outside leads outside the repository",
        ),
    ];
    for (path, expected) in cases {
        let message = refusal(
            render(&renderer, "kust", repo.path(), &source(path), &none).await,
            "kust",
        );
        assert!(message.contains(expected), "{path}: {message}");
        assert!(!message.contains("binary not found"), "{path}: {message}");
    }
}

#[tokio::test]
async fn a_chart_without_its_dependencies_is_a_clear_error() {
    let Some((helm, kustomize)) = tools() else {
        return;
    };
    let repo = tempfile::tempdir().expect("temp dir");
    capabilities_chart(repo.path());
    write(
        repo.path(),
        "charts/probe/Chart.yaml",
        "apiVersion: v2\nname: probe\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.0.0\n  repository: https://charts.example.com\n",
    );
    let renderer = renderer(&helm, &kustomize);
    let message = refusal(
        render(
            &renderer,
            "probe",
            repo.path(),
            &source("charts/probe"),
            &cluster("v1.35.4"),
        )
        .await,
        "probe",
    );
    assert!(
        message.contains("helm chart charts/probe needs redis, which is not vendored"),
        "{message}"
    );
}
