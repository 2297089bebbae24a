//! Compatibility with real Argo CD input: every ApplicationSet example Argo CD ships (read in
//! place from `../shared/testdata/real-world/argo-cd/applicationset-examples/`) is either
//! generated into the Applications Argo CD would create — names, destinations, namespaces,
//! sources, projects — or refused with a message naming the unsupported field or generator.
//!
//! The Git generators read the examples' own directories through a [`GitTree`] over the
//! local folder, mounted where it sits in Argo CD's repository (`applicationset/examples`).
//! The design-doc examples point at an imaginary `cluster-deployments` repository that their
//! comments describe; an in-memory tree holds that. The clusters are the two the examples
//! name; Argo CD's implicit local `in-cluster` has no Flotilla counterpart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flotilla_hub::declarative::git_tree::{GitTree, GitTreeError, MemoryTree};
use flotilla_hub::declarative::glob::{DoubleStar, path_matches};
use flotilla_hub::declarative::{
    Application, Cluster, Document, GeneratorInputs, generate, parse_documents,
};

const ARGO_REPO: &str = "https://github.com/argoproj/argo-cd.git";
const ARGO_MOUNT: &str = "applicationset/examples";
const DEPLOYMENTS_REPO: &str = "https://github.com/infra-team/cluster-deployments.git";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/real-world/argo-cd/applicationset-examples")
}

/// A real directory standing for one repository path: every revision sees the same files.
struct LocalTree {
    repo: String,
    mount: String,
    root: PathBuf,
}

impl LocalTree {
    fn entries(&self) -> Result<(Vec<String>, Vec<String>), GitTreeError> {
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        let mut pending = vec![(self.root.clone(), self.mount.clone())];
        while let Some((dir, relative)) = pending.pop() {
            let read = std::fs::read_dir(&dir).map_err(|e| self.error(e))?;
            for entry in read {
                let entry = entry.map_err(|e| self.error(e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let path = format!("{relative}/{name}");
                let file_type = entry.file_type().map_err(|e| self.error(e))?;
                if file_type.is_dir() {
                    dirs.push(path.clone());
                    pending.push((entry.path(), path));
                } else if file_type.is_file() {
                    files.push(path);
                }
            }
        }
        dirs.sort();
        files.sort();
        Ok((dirs, files))
    }

    fn error(&self, source: std::io::Error) -> GitTreeError {
        GitTreeError::Read {
            repo: self.repo.clone(),
            revision: "HEAD".to_owned(),
            source: Box::new(source),
        }
    }

    fn check_repo(&self, repo: &str) -> Result<(), GitTreeError> {
        if repo == self.repo {
            Ok(())
        } else {
            Err(GitTreeError::UnknownRepository {
                repo: repo.to_owned(),
            })
        }
    }
}

impl GitTree for LocalTree {
    fn list_dirs(&self, repo: &str, _: &str, pattern: &str) -> Result<Vec<String>, GitTreeError> {
        self.check_repo(repo)?;
        let (dirs, _) = self.entries()?;
        Ok(dirs
            .into_iter()
            .filter(|d| path_matches(pattern, d, DoubleStar::SameAsStar))
            .collect())
    }

    fn list_files(&self, repo: &str, _: &str, pattern: &str) -> Result<Vec<String>, GitTreeError> {
        self.check_repo(repo)?;
        let (_, files) = self.entries()?;
        Ok(files
            .into_iter()
            .filter(|f| path_matches(pattern, f, DoubleStar::AnySegments))
            .collect())
    }

    fn read_file(&self, repo: &str, _: &str, path: &str) -> Result<Vec<u8>, GitTreeError> {
        self.check_repo(repo)?;
        let relative = path
            .strip_prefix(&format!("{}/", self.mount))
            .ok_or_else(|| GitTreeError::NotFound {
                path: path.to_owned(),
            })?;
        std::fs::read(self.root.join(relative)).map_err(|_| GitTreeError::NotFound {
            path: path.to_owned(),
        })
    }
}

/// The local examples plus the `cluster-deployments` repository the design doc describes.
struct Trees {
    argo: LocalTree,
    deployments: MemoryTree,
}

impl GitTree for Trees {
    fn list_dirs(&self, repo: &str, rev: &str, pattern: &str) -> Result<Vec<String>, GitTreeError> {
        if repo == ARGO_REPO {
            self.argo.list_dirs(repo, rev, pattern)
        } else {
            self.deployments.list_dirs(repo, rev, pattern)
        }
    }

    fn list_files(
        &self,
        repo: &str,
        rev: &str,
        pattern: &str,
    ) -> Result<Vec<String>, GitTreeError> {
        if repo == ARGO_REPO {
            self.argo.list_files(repo, rev, pattern)
        } else {
            self.deployments.list_files(repo, rev, pattern)
        }
    }

    fn read_file(&self, repo: &str, rev: &str, path: &str) -> Result<Vec<u8>, GitTreeError> {
        if repo == ARGO_REPO {
            self.argo.read_file(repo, rev, path)
        } else {
            self.deployments.read_file(repo, rev, path)
        }
    }
}

fn trees() -> Trees {
    let config = |name: &str, address: &str| {
        format!(
            r#"{{"aws_account": "123456", "cluster": {{"owner": "ops@example.com", "name": "{name}", "address": "{address}"}}}}"#
        )
    };
    let clusters_json = r#"[
  {"account": "123456", "cluster": {"name": "engineering-dev", "address": "http://1.2.3.4"},
   "appVersions": {"prometheus-operator": "v0.38", "guestbook": "v2.0"}},
  {"account": "456789", "cluster": {"name": "engineering-prod", "address": "http://2.4.6.8"},
   "appVersions": {"prometheus-operator": "v0.38", "guestbook": "v1.0"}}
]"#;
    let r = DEPLOYMENTS_REPO;
    Trees {
        argo: LocalTree {
            repo: ARGO_REPO.to_owned(),
            mount: ARGO_MOUNT.to_owned(),
            root: examples_dir(),
        },
        deployments: MemoryTree::new()
            .with_file(r, "add-ons/argo-rollouts/all.yaml", "")
            .with_file(r, "add-ons/argo-rollouts/kustomization.yaml", "")
            .with_file(r, "add-ons/argo-workflows/install.yaml", "")
            .with_file(r, "add-ons/grafana/Chart.yaml", "")
            .with_file(r, "add-ons/prometheus-operator/Chart.yaml", "")
            .with_file(r, "apps/guestbook/install.yaml", "")
            .with_file(
                r,
                "cluster-config/engineering/dev/config.json",
                config("engineering-dev", "http://1.2.3.4"),
            )
            .with_file(
                r,
                "cluster-config/engineering/prod/config.json",
                config("engineering-prod", "http://2.4.6.8"),
            )
            .with_file(
                r,
                "cluster-config/finance/dev/config.json",
                config("finance-dev", "http://3.4.5.6"),
            )
            .with_file(
                r,
                "cluster-config/finance/prod/config.json",
                config("finance-prod", "http://4.5.6.7"),
            )
            .with_file(r, "config/clusters.json", clusters_json),
    }
}

fn clusters() -> Vec<Cluster> {
    let cluster = |name: &str, server: &str, environment: &str| Cluster {
        name: name.to_owned(),
        server: server.to_owned(),
        labels: [("environment".to_owned(), environment.to_owned())].into(),
        annotations: Default::default(),
    };
    vec![
        cluster("engineering-dev", "https://1.2.3.4", "dev"),
        cluster("engineering-prod", "https://2.4.6.8", "prod"),
    ]
}

/// What a test states about one generated Application.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    name: String,
    /// `server` or `name` of the destination.
    destination: String,
    namespace: String,
    /// `path`, or `chart:<chart>` for a Helm repository chart.
    source: String,
    project: String,
}

fn app(name: &str, destination: &str, namespace: &str, source: &str, project: &str) -> Expected {
    Expected {
        name: name.to_owned(),
        destination: destination.to_owned(),
        namespace: namespace.to_owned(),
        source: source.to_owned(),
        project: project.to_owned(),
    }
}

fn observed(app: &Application) -> Expected {
    let d = &app.spec.destination;
    let source = app.spec.source.as_ref();
    Expected {
        name: app.metadata.name.clone(),
        destination: d.server.clone().or(d.name.clone()).unwrap_or_default(),
        namespace: d.namespace.clone().unwrap_or_default(),
        source: source
            .and_then(|s| {
                s.chart
                    .as_ref()
                    .map(|c| format!("chart:{c}"))
                    .or(s.path.clone())
            })
            .unwrap_or_default(),
        project: app.project().to_owned(),
    }
}

enum Outcome {
    /// The Applications, and the warnings parsing gives.
    Generated(Vec<Expected>, Vec<&'static str>),
    /// Refused; the message must contain this.
    Refused(&'static str),
}

/// The outcome of one example file: parse, then generate every ApplicationSet in it.
fn run(file: &str) -> Result<(Vec<Application>, Vec<String>), String> {
    let text = std::fs::read_to_string(examples_dir().join(file)).map_err(|e| e.to_string())?;
    let parsed = parse_documents(&text).map_err(|e| e.to_string())?;
    let clusters = clusters();
    let trees = trees();
    let inputs = GeneratorInputs {
        clusters: &clusters,
        git: &trees,
    };
    let mut apps = Vec::new();
    let mut warnings = Vec::new();
    for document in parsed {
        warnings.extend(document.warnings.iter().map(ToString::to_string));
        match document.value {
            Document::ApplicationSet(appset) => {
                apps.extend(generate(&appset, &inputs).map_err(|e| e.to_string())?)
            }
            Document::Application(app) => apps.push(*app),
            Document::AppProject(_) => {}
        }
    }
    Ok((apps, warnings))
}

fn cases() -> Vec<(&'static str, Outcome)> {
    use Outcome::{Generated, Refused};
    let argo = |p: &str| format!("{ARGO_MOUNT}/{p}");
    let list_guestbook = |cluster: &str| argo(&format!("list-generator/guestbook/{cluster}"));
    let guestbook_pair = |dev: &str, prod: &str, path: &str, project: &str| {
        vec![
            app("engineering-dev-guestbook", dev, "guestbook", path, project),
            app(
                "engineering-prod-guestbook",
                prod,
                "guestbook",
                path,
                project,
            ),
        ]
    };
    let in_cluster = "https://kubernetes.default.svc";
    let list_pair = vec![
        app(
            "engineering-dev-guestbook",
            in_cluster,
            "guestbook",
            &list_guestbook("engineering-dev"),
            "default",
        ),
        app(
            "engineering-prod-guestbook",
            in_cluster,
            "guestbook",
            &list_guestbook("engineering-prod"),
            "default",
        ),
    ];
    let design_list = vec![
        app(
            "engineering-dev-guestbook",
            "https://1.2.3.4",
            "guestbook",
            "guestbook/engineering-dev",
            "dev",
        ),
        app(
            "engineering-prod-guestbook",
            "https://2.4.6.8",
            "guestbook",
            "guestbook/engineering-prod",
            "prod",
        ),
        app(
            "finance-preprod-guestbook",
            "https://9.8.7.6",
            "guestbook",
            "guestbook/finance-preprod",
            "preprod",
        ),
    ];
    let add_ons: Vec<Expected> = [
        "argo-rollouts",
        "argo-workflows",
        "grafana",
        "prometheus-operator",
    ]
    .iter()
    .map(|a| {
        app(
            a,
            "http://kubernetes.default.svc",
            a,
            &format!("add-ons/{a}"),
            "default",
        )
    })
    .collect();
    let design_files = vec![
        app(
            "engineering-dev-guestbook",
            "http://1.2.3.4",
            "guestbook",
            "apps/guestbook",
            "default",
        ),
        app(
            "engineering-prod-guestbook",
            "http://2.4.6.8",
            "guestbook",
            "apps/guestbook",
            "default",
        ),
        app(
            "finance-dev-guestbook",
            "http://3.4.5.6",
            "guestbook",
            "apps/guestbook",
            "default",
        ),
        app(
            "finance-prod-guestbook",
            "http://4.5.6.7",
            "guestbook",
            "apps/guestbook",
            "default",
        ),
    ];
    let design_literal = vec![
        app(
            "engineering-dev-guestbook",
            "http://kubernetes.default.svc",
            "guestbook",
            "apps/guestbook/v2.0",
            "default",
        ),
        app(
            "engineering-prod-guestbook",
            "http://kubernetes.default.svc",
            "guestbook",
            "apps/guestbook/v1.0",
            "default",
        ),
    ];
    let design_override = vec![
        app(
            "engineering-dev-guestbook",
            "https://1.2.3.4",
            "guestbook",
            "engineering-dev-override",
            "project",
        ),
        app(
            "engineering-prod-guestbook",
            "https://1.2.3.4",
            "guestbook",
            "engineering-prod-override2",
            "project2",
        ),
    ];
    let addons = |dir: &str| -> Vec<Expected> {
        ["argo-workflows", "prometheus-operator"]
            .iter()
            .map(|a| app(a, in_cluster, a, &argo(&format!("{dir}/{a}")), "my-project"))
            .collect()
    };
    let files_app = argo("git-generator-files-discovery/apps/guestbook");
    let override_path = argo("template-override/engineering-dev-override");
    let matrix = r#"generator "matrix" is not supported (spec.generators[0].matrix)"#;
    let merge = r#"generator "merge" is not supported (spec.generators[0].merge)"#;
    let scm = r#"generator "scmProvider" is not supported (spec.generators[0].scmProvider)"#;
    let pull = r#"generator "pullRequest" is not supported (spec.generators[0].pullRequest)"#;
    let decision = r#"generator "clusterDecisionResource" is not supported (spec.generators[0].clusterDecisionResource)"#;
    let apps_sync = vec!["spec.syncPolicy.applicationsSync is not supported"];
    vec![
        (
            "applications-sync-policies/create-only.yaml",
            Generated(list_pair.clone(), apps_sync.clone()),
        ),
        (
            "applications-sync-policies/create-update.yaml",
            Generated(list_pair.clone(), apps_sync),
        ),
        (
            "cluster/cluster-example.yaml",
            Generated(
                guestbook_pair("https://1.2.3.4", "https://2.4.6.8", "guestbook", "default"),
                vec![],
            ),
        ),
        (
            "cluster/cluster-example-fasttemplate.yaml",
            Generated(
                guestbook_pair("https://1.2.3.4", "https://2.4.6.8", "guestbook", "default"),
                vec![],
            ),
        ),
        (
            "clusterDecisionResource/ducktype-example.yaml",
            Refused(decision),
        ),
        (
            "clusterDecisionResource/ducktype-example-fasttemplate.yaml",
            Refused(decision),
        ),
        (
            "clusterDecisionResource/configMap.yaml",
            Refused("ConfigMap of apiVersion v1 is not read"),
        ),
        (
            "clusterDecisionResource/placementdecision.yaml",
            Refused(
                "PlacementDecision of apiVersion cluster.open-cluster-management.io/v1beta1 is not read",
            ),
        ),
        (
            "design-doc/applicationset.yaml",
            Generated(
                guestbook_pair(
                    "https://1.2.3.4",
                    "https://2.4.6.8",
                    "chart:guestbook",
                    "default",
                ),
                vec![],
            ),
        ),
        (
            "design-doc/applicationset-fasttemplate.yaml",
            Generated(
                guestbook_pair(
                    "https://1.2.3.4",
                    "https://2.4.6.8",
                    "chart:guestbook",
                    "default",
                ),
                vec![],
            ),
        ),
        // Not a goTemplate set, yet written with `{{.name}}`: Argo CD leaves the expression in
        // the name, which Kubernetes then rejects.
        (
            "design-doc/clusters.yaml",
            Refused(
                r#"application "{{.name}}-guestbook": metadata.name: "{{.name}}-guestbook" is not a valid name"#,
            ),
        ),
        (
            "design-doc/git-directory-discovery.yaml",
            Generated(add_ons.clone(), vec![]),
        ),
        (
            "design-doc/git-directory-discovery-fasttemplate.yaml",
            Generated(add_ons, vec![]),
        ),
        (
            "design-doc/git-files-discovery.yaml",
            Generated(design_files.clone(), vec![]),
        ),
        (
            "design-doc/git-files-discovery-fasttemplate.yaml",
            Generated(design_files, vec![]),
        ),
        (
            "design-doc/git-files-literal.yaml",
            Generated(design_literal.clone(), vec![]),
        ),
        (
            "design-doc/git-files-literal-fasttemplate.yaml",
            Generated(design_literal, vec![]),
        ),
        (
            "design-doc/list.yaml",
            Generated(design_list.clone(), vec![]),
        ),
        (
            "design-doc/list-fasttemplate.yaml",
            Generated(design_list, vec![]),
        ),
        // A proposal Argo CD never implemented.
        (
            "design-doc/proposal/filters.yaml",
            Refused("spec.generators[0].clusters.filters is not supported"),
        ),
        (
            "design-doc/template-override.yaml",
            Generated(design_override.clone(), vec![]),
        ),
        (
            "design-doc/template-override-fasttemplate.yaml",
            Generated(design_override, vec![]),
        ),
        // `{{.path}}` is an object with goTemplate; Argo CD would write `map[…]` into the path.
        (
            "git-generator-directory/excludes/git-directories-exclude-example.yaml",
            Refused(
                "render spec.template.spec.source.path: execute template \"{{.path}}\": the value is an object (keys basename, basenameNormalized, path, segments), not a string",
            ),
        ),
        (
            "git-generator-directory/excludes/git-directories-exclude-example-fasttemplate.yaml",
            Generated(
                addons("git-generator-directory/excludes/cluster-addons"),
                vec![],
            ),
        ),
        (
            "git-generator-directory/git-directories-example.yaml",
            Generated(addons("git-generator-directory/cluster-addons"), vec![]),
        ),
        (
            "git-generator-directory/git-directories-example-fasttemplate.yaml",
            Generated(addons("git-generator-directory/cluster-addons"), vec![]),
        ),
        (
            "git-generator-files-discovery/excludes/git-files-exclude-example.yaml",
            Generated(
                vec![app(
                    "engineering-prod-guestbook",
                    in_cluster,
                    "guestbook",
                    &files_app,
                    "default",
                )],
                vec![],
            ),
        ),
        (
            "git-generator-files-discovery/excludes/git-files-exclude-example-fasttemplate.yaml",
            Generated(
                vec![app(
                    "engineering-prod-guestbook",
                    in_cluster,
                    "guestbook",
                    &files_app,
                    "default",
                )],
                vec![],
            ),
        ),
        (
            "git-generator-files-discovery/git-generator-files.yaml",
            Generated(
                guestbook_pair(in_cluster, in_cluster, &files_app, "default"),
                vec![],
            ),
        ),
        (
            "git-generator-files-discovery/git-generator-files-fasttemplate.yaml",
            Generated(
                guestbook_pair(in_cluster, in_cluster, &files_app, "default"),
                vec![],
            ),
        ),
        (
            "list-generator/list-example.yaml",
            Generated(list_pair.clone(), vec![]),
        ),
        (
            "list-generator/list-example-fasttemplate.yaml",
            Generated(list_pair, vec![]),
        ),
        // The data file of Argo CD's `elementsYaml` example, not an object of its own.
        (
            "list-generator/list-elementsYaml-example.yaml",
            Refused("parse document 0: not a Kubernetes object: apiVersion and kind are required"),
        ),
        ("matrix/cluster-and-git.yaml", Refused(matrix)),
        ("matrix/cluster-and-git-fasttemplate.yaml", Refused(matrix)),
        ("matrix/list-and-git.yaml", Refused(matrix)),
        ("matrix/list-and-git-fasttemplate.yaml", Refused(matrix)),
        ("matrix/list-and-list.yaml", Refused(matrix)),
        ("matrix/list-and-list-fasttemplate.yaml", Refused(matrix)),
        ("matrix/matrix-and-union-in-matrix.yaml", Refused(matrix)),
        (
            "matrix/matrix-and-union-in-matrix-fasttemplate.yaml",
            Refused(matrix),
        ),
        ("merge/merge-clusters-and-list.yaml", Refused(merge)),
        (
            "merge/merge-clusters-and-list-fasttemplate.yaml",
            Refused(merge),
        ),
        ("merge/merge-two-matrixes.yaml", Refused(merge)),
        ("merge/merge-two-matrixes-fasttemplate.yaml", Refused(merge)),
        (
            "pull-request-generator/pull-request-example.yaml",
            Refused(pull),
        ),
        (
            "pull-request-generator/pull-request-example-fasttemplate.yaml",
            Refused(pull),
        ),
        (
            "scm-provider-generator/scm-provider-example.yaml",
            Refused(scm),
        ),
        (
            "scm-provider-generator/scm-provider-example-fasttemplate.yaml",
            Refused(scm),
        ),
        (
            "scm-provider-generator/scm-provider-example-fasttemplate-gitlab.yaml",
            Refused(scm),
        ),
        (
            "template-override/template-overrides-example.yaml",
            Generated(
                vec![app(
                    "engineering-dev-guestbook",
                    in_cluster,
                    "guestbook",
                    &override_path,
                    "default",
                )],
                vec![],
            ),
        ),
        (
            "template-override/template-overrides-example-fasttemplate.yaml",
            Generated(
                vec![app(
                    "engineering-dev-guestbook",
                    in_cluster,
                    "guestbook",
                    &override_path,
                    "default",
                )],
                vec![],
            ),
        ),
    ]
}

#[test]
fn every_example_is_generated_as_argo_cd_would_or_refused_by_name() {
    let mut failures = Vec::new();
    for (file, outcome) in cases() {
        match (run(file), outcome) {
            (Ok((apps, warnings)), Outcome::Generated(expected, expected_warnings)) => {
                let got: Vec<Expected> = apps.iter().map(observed).collect();
                if got != expected {
                    failures.push(format!(
                        "{file}: generated\n  {got:?}\nwanted\n  {expected:?}"
                    ));
                }
                if warnings != expected_warnings {
                    failures.push(format!(
                        "{file}: warnings {warnings:?}, wanted {expected_warnings:?}"
                    ));
                }
            }
            (Err(message), Outcome::Refused(expected)) => {
                if !message.contains(expected) {
                    failures.push(format!(
                        "{file}: refused with\n  {message}\nwanted\n  {expected}"
                    ));
                }
            }
            (Ok((apps, _)), Outcome::Refused(expected)) => failures.push(format!(
                "{file}: generated {:?}, wanted a refusal naming {expected}",
                apps.iter().map(|a| &a.metadata.name).collect::<Vec<_>>()
            )),
            (Err(message), Outcome::Generated(..)) => {
                failures.push(format!("{file}: refused: {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn generated_applications_carry_what_the_examples_set() {
    let (apps, _) = run("applications-sync-policies/create-only.yaml").expect("generates");
    let labels: Vec<&str> = apps
        .iter()
        .map(|a| a.metadata.labels["foo"].as_str())
        .collect();
    assert_eq!(labels, ["bar", "baz"]);

    let (apps, _) = run("git-generator-directory/git-directories-example.yaml").expect("generates");
    assert!(apps.iter().all(|a| a.create_namespace() && !a.automated()));
    assert!(
        apps.iter()
            .all(|a| a.metadata.namespace.as_deref() == Some("argocd"))
    );
    let source = apps[0].spec.source.as_ref().expect("a source");
    assert_eq!(source.repo_url, ARGO_REPO);
    assert_eq!(source.target_revision.as_deref(), Some("HEAD"));
}

/// Every example in the folder is in the table above, so a new one cannot slip through.
#[test]
fn the_table_covers_every_example() {
    let covered: BTreeSet<String> = cases().into_iter().map(|(f, _)| f.to_owned()).collect();
    let mut found = BTreeSet::new();
    let mut pending = vec![examples_dir()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("reads the examples") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let relative = path
                .strip_prefix(examples_dir())
                .expect("under the examples")
                .to_string_lossy()
                .into_owned();
            // ApplicationSets, and files next to them that are not manifests of an example
            // repository's applications.
            let fixture = text.contains("kind: ApplicationSet")
                || relative.starts_with("clusterDecisionResource/") && relative.ends_with(".yaml")
                || relative == "list-generator/list-elementsYaml-example.yaml";
            if fixture {
                found.insert(relative);
            }
        }
    }
    let missing: Vec<&String> = found.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "examples without a stated outcome: {missing:?}"
    );
    assert!(found.len() >= 50, "found only {} examples", found.len());
}
