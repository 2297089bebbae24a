//! Flotilla's own declarative examples under `examples/declarative/` parse without a single
//! warning, and the ApplicationSet generates what its comment promises.

use std::path::{Path, PathBuf};

use flotilla_hub::declarative::git_tree::MemoryTree;
use flotilla_hub::declarative::{Cluster, Document, GeneratorInputs, generate, parse_documents};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/declarative")
}

fn parse(file: &str) -> Document {
    let text = std::fs::read_to_string(examples().join(file)).expect("reads the example");
    let mut parsed = parse_documents(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(parsed.len(), 1, "{file}: one document");
    let parsed = parsed.remove(0);
    assert!(
        parsed.warnings.is_empty(),
        "{file}: {:?}",
        parsed
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    parsed.value
}

#[test]
fn examples_parse_without_warnings() {
    let Document::AppProject(project) = parse("project.yaml") else {
        panic!("project.yaml is an AppProject")
    };
    assert!(project.allows_source("https://git.example.com/shop/deploy.git"));
    assert!(project.allows_destination("prod-eu", "https://eu:6443", "shop-guestbook"));
    assert!(!project.allows_cluster_resource("rbac.authorization.k8s.io", "ClusterRole"));

    let Document::Application(app) = parse("application.yaml") else {
        panic!("application.yaml is an Application")
    };
    assert!(!app.automated() && app.create_namespace());
    assert_eq!(app.project(), "shop");

    let Document::ApplicationSet(appset) = parse("appset-prod.yaml") else {
        panic!("appset-prod.yaml is an ApplicationSet")
    };
    let cluster = |name: &str, env: &str, tier: Option<&str>| Cluster {
        name: name.to_owned(),
        server: format!("https://{name}:6443"),
        labels: [("env", env)]
            .into_iter()
            .chain(tier.map(|t| ("tier", t)))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        annotations: Default::default(),
    };
    let clusters = [
        cluster("prod-eu", "prod", Some("gold")),
        cluster("staging", "staging", None),
        cluster("Prod_US", "prod", None),
    ];
    let tree = MemoryTree::new();
    let apps = generate(
        &appset,
        &GeneratorInputs {
            clusters: &clusters,
            git: &tree,
        },
    )
    .expect("generates");
    let got: Vec<(&str, &str, &str, bool)> = apps
        .iter()
        .map(|a| {
            (
                a.metadata.name.as_str(),
                a.spec.destination.name.as_deref().unwrap_or_default(),
                a.metadata.labels["tier"].as_str(),
                a.automated() && a.prune() && a.self_heal(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("guestbook-prod-eu", "prod-eu", "gold", true),
            ("guestbook-prod-us", "Prod_US", "standard", true),
        ]
    );
}
