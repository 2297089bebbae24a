//! `flotilla app list|get|create|rm`: applications as the hub's fleet view shows them (one
//! row per application; one row per cluster of one application, with why it is not synced
//! and healthy), the Application document `create` sends, and deletion. The document, the
//! query and the tables are pure functions of their inputs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{CommandError, Report};
use crate::args::{AppCreateArgs, AppListArgs};
use crate::client::Client;
use crate::output::{Format, Table, or_dash, short_revision};

/// The query of `GET /api/v1/applications` for the filters given, at `offset`.
fn list_query(args: &AppListArgs, offset: u64) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    let mut add = |key: &'static str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            query.push((key, value));
        }
    };
    add("project", args.project.clone());
    add("selector", args.selector.clone());
    add("cluster", args.cluster.clone());
    add("limit", args.limit.map(|n| n.to_string()));
    add("offset", (offset > 0).then(|| offset.to_string()));
    query
}

/// Where an application was declared: `api`, `config`, or `appset/SET` when generated.
fn origin(app: &Value) -> String {
    match app["generatedBy"].as_str() {
        Some(set) => format!("appset/{set}"),
        None => or_dash(&app["origin"]),
    }
}

fn count(value: &Value) -> String {
    value.as_u64().unwrap_or(0).to_string()
}

/// One row per application.
fn list_table(apps: &[Value]) -> Table {
    let mut table = Table::new(&["NAME", "PROJECT", "CLUSTERS", "SYNCED", "HEALTHY", "ORIGIN"]);
    for app in apps {
        let summary = &app["summary"];
        table.push(vec![
            or_dash(&app["name"]),
            or_dash(&app["project"]),
            count(&summary["clusters"]),
            count(&summary["synced"]),
            count(&summary["healthy"]),
            origin(app),
        ]);
    }
    table
}

/// Warnings about ApplicationSets whose generator failed.
fn set_notes(sets: &Value) -> Vec<String> {
    sets.as_array()
        .into_iter()
        .flatten()
        .filter_map(|set| {
            let error = set["generatorError"].as_str()?;
            Some(format!(
                "warning: ApplicationSet {}: {error}",
                or_dash(&set["name"])
            ))
        })
        .collect()
}

/// The pages fetched merged into one answer: every application, the first page's sets.
fn merge(pages: Vec<Value>) -> Value {
    let mut pages = pages.into_iter();
    let mut answer = pages.next().unwrap_or_else(|| json!({"applications": []}));
    let mut apps = answer["applications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut next = answer["nextOffset"].clone();
    for page in pages {
        apps.extend(page["applications"].as_array().cloned().unwrap_or_default());
        next = page["nextOffset"].clone();
    }
    answer["applications"] = Value::Array(apps);
    answer["nextOffset"] = next;
    answer
}

pub fn list(client: &Client, format: Format, args: &AppListArgs) -> Result<Report, CommandError> {
    let mut pages = vec![client.get_query(&["applications"], &list_query(args, 0))?];
    // --all follows nextOffset until the last page.
    while let Some(next) = pages
        .last()
        .filter(|_| args.all)
        .and_then(|last| last["nextOffset"].as_u64())
    {
        let page = client.get_query(&["applications"], &list_query(args, next))?;
        let empty = page["applications"].as_array().is_none_or(Vec::is_empty);
        pages.push(page);
        if empty {
            // A hub that keeps pointing further without answering more would loop forever.
            break;
        }
    }
    let answer = merge(pages);
    let apps = answer["applications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut report = Report::answer(format, &answer, || list_table(&apps).render());
    if format != Format::Table {
        return Ok(report);
    }
    if apps.is_empty() {
        report.stdout.clear();
        report.note(
            "no applications: declare one with flotilla app create or flotilla apply -f FILE",
        );
    }
    for note in set_notes(&answer["applicationSets"]) {
        report.note(note);
    }
    if let (Some(_), Some(total)) = (answer["nextOffset"].as_u64(), answer["total"].as_u64()) {
        report.note(format!(
            "showing {} of {total} applications: --all lists every one",
            apps.len()
        ));
    }
    Ok(report)
}

/// `app get`: a few lines about the application, then a row per cluster with notes.
fn get_text(answer: &Value) -> String {
    let name = or_dash(&answer["name"]);
    let declared = &answer["declared"];
    let mut out = format!("Name:         {name}\n");
    let generated_by: Vec<&str> = answer["generatedBy"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !declared.is_null() {
        out.push_str(&format!(
            "Project:      {}\n",
            or_dash(&declared["project"])
        ));
        out.push_str(&format!("Origin:       {}\n", or_dash(&declared["origin"])));
        let spec = &declared["spec"]["spec"];
        let source = &spec["source"];
        if source.is_object() {
            let what = match (source["path"].as_str(), source["chart"].as_str()) {
                (_, Some(chart)) => format!("chart {chart}"),
                (Some(path), None) => format!("path {path}"),
                (None, None) => "its root".to_owned(),
            };
            out.push_str(&format!(
                "Source:       {} ({what}) at {}\n",
                or_dash(&source["repoURL"]),
                source["targetRevision"].as_str().unwrap_or("HEAD"),
            ));
        }
        let destination = &spec["destination"];
        if destination.is_object() {
            let cluster = match destination["name"].as_str() {
                Some(name) => name.to_owned(),
                None => or_dash(&destination["server"]),
            };
            out.push_str(&format!(
                "Destination:  {cluster}, namespace {}\n",
                or_dash(&destination["namespace"])
            ));
        }
    }
    if !generated_by.is_empty() {
        out.push_str(&format!(
            "Generated by: ApplicationSet {}\n",
            generated_by.join(", ")
        ));
    }
    let cells = answer["clusters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if cells.is_empty() {
        out.push_str("\nNot served to any cluster yet.\n");
        return out;
    }
    let mut table = Table::new(&["CLUSTER", "REVISION", "SYNC", "HEALTH"]);
    for cell in cells {
        table.push(vec![
            or_dash(&cell["cluster"]),
            short_revision(&cell["revision"]),
            or_dash(&cell["sync"]),
            or_dash(&cell["health"]),
        ]);
        let why = cell["why"].as_str().filter(|w| !w.is_empty());
        if let Some(why) = why {
            table.note(&format!("why: {why}"));
        }
        // A sentence about the agent may hide the pin: it is said on its own then.
        let pinned = &cell["pinned"];
        if pinned.is_object() && !why.is_some_and(|w| w.contains("pinned")) {
            table.note(&format!(
                "pinned at revision {} by {}",
                short_revision(&pinned["revision"]),
                or_dash(&pinned["by"])
            ));
        }
    }
    out.push('\n');
    out.push_str(&table.render());
    out
}

pub fn get(client: &Client, format: Format, name: &str) -> Result<Report, CommandError> {
    let answer = client.get(&["applications", name])?;
    Ok(Report::answer(format, &answer, || get_text(&answer)))
}

/// The Application document of `app create`.
fn document(args: &AppCreateArgs) -> Result<Value, CommandError> {
    let mut source = json!({"repoURL": super::repo::checked_url(&args.repo)?});
    match (&args.path, &args.chart) {
        (_, Some(chart)) => {
            let version = args.revision.as_deref().ok_or_else(|| {
                CommandError::Usage(format!(
                    "--chart {chart} needs --revision VERSION, the chart's exact version"
                ))
            })?;
            source["chart"] = json!(chart);
            source["targetRevision"] = json!(version);
        }
        (Some(path), None) => {
            source["path"] = json!(path);
            source["targetRevision"] = json!(args.revision.as_deref().unwrap_or("HEAD"));
        }
        (None, None) => {
            return Err(CommandError::Usage(
                "app create needs --path DIR or --chart CHART".to_owned(),
            ));
        }
    }
    let mut destination = json!({"name": args.dest_cluster});
    if let Some(namespace) = &args.dest_namespace {
        destination["namespace"] = json!(namespace);
    }
    let mut spec = json!({"project": args.project, "source": source, "destination": destination});
    let mut policy = serde_json::Map::new();
    if args.auto_sync {
        policy.insert(
            "automated".to_owned(),
            json!({"prune": args.prune, "selfHeal": args.self_heal}),
        );
    }
    if args.create_namespace {
        policy.insert("syncOptions".to_owned(), json!(["CreateNamespace=true"]));
    }
    if !policy.is_empty() {
        spec["syncPolicy"] = Value::Object(policy);
    }
    let mut metadata = json!({"name": args.name});
    if !args.labels.is_empty() {
        let labels: BTreeMap<&str, &str> = args
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        metadata["labels"] = json!(labels);
    }
    Ok(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata,
        "spec": spec,
    }))
}

pub fn create(
    client: &Client,
    format: Format,
    args: &AppCreateArgs,
) -> Result<Report, CommandError> {
    let document = document(args)?;
    let query = if args.upsert {
        vec![("upsert", "true".to_owned())]
    } else {
        Vec::new()
    };
    let answer = client.post_query(&["applications"], &query, &document)?;
    let replaced = answer["created"] == json!(false);
    let mut report = Report::answer(format, &answer, || {
        format!(
            "application {} {}\n",
            args.name,
            if replaced { "replaced" } else { "created" }
        )
    });
    for warning in answer["warnings"].as_array().into_iter().flatten() {
        report.note(format!("warning: {}", or_dash(warning)));
    }
    Ok(report)
}

pub fn rm(client: &Client, format: Format, name: &str) -> Result<Report, CommandError> {
    let answer = client.delete(&["applications", name], &[])?;
    Ok(Report::answer(format, &answer, || {
        format!("application {name} deleted: it leaves every cluster it ran on\n")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{AppCommand, Args, Command};
    use clap::Parser as _;

    fn create_args(argv: &[&str]) -> AppCreateArgs {
        let args = Args::try_parse_from(["flotilla", "app", "create"].iter().chain(argv))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        match args.command {
            Command::App {
                command: AppCommand::Create(create),
            } => create,
            other => panic!("not app create: {other:?}"),
        }
    }

    #[test]
    fn documents_of_app_create() {
        let check = |argv: &[&str], expected: Value| {
            assert_eq!(document(&create_args(argv)).expect("builds"), expected);
        };
        check(
            &[
                "guestbook",
                "--repo",
                "https://git.example/fleet.git",
                "--path",
                "apps/guestbook",
                "--dest-cluster",
                "east",
            ],
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "guestbook"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": "https://git.example/fleet.git", "path": "apps/guestbook", "targetRevision": "HEAD"},
                    "destination": {"name": "east"}
                }
            }),
        );
        check(
            &[
                "web",
                "--repo",
                "https://charts.example",
                "--chart",
                "web",
                "--revision",
                "1.2.0",
                "--dest-cluster",
                "west",
                "--dest-namespace",
                "web",
                "--project",
                "shop",
                "--auto-sync",
                "--prune",
                "--create-namespace",
                "--label",
                "tier=web",
                "--label",
                "env=prod",
            ],
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "web", "labels": {"env": "prod", "tier": "web"}},
                "spec": {
                    "project": "shop",
                    "source": {"repoURL": "https://charts.example", "chart": "web", "targetRevision": "1.2.0"},
                    "destination": {"name": "west", "namespace": "web"},
                    "syncPolicy": {
                        "automated": {"prune": true, "selfHeal": false},
                        "syncOptions": ["CreateNamespace=true"]
                    }
                }
            }),
        );
        let chart_without_version = document(&create_args(&[
            "web",
            "--repo",
            "https://charts.example",
            "--chart",
            "web",
            "--dest-cluster",
            "west",
        ]))
        .expect_err("a chart needs its version");
        assert_eq!(chart_without_version.exit_code(), 2);
        assert!(
            chart_without_version.to_string().contains("--revision"),
            "{chart_without_version}"
        );
    }

    #[test]
    fn app_create_usage_errors() {
        for argv in [
            &["web", "--repo", "r", "--dest-cluster", "c"][..],
            &[
                "web",
                "--repo",
                "r",
                "--path",
                "p",
                "--chart",
                "c",
                "--dest-cluster",
                "c",
            ],
            &["web", "--repo", "r", "--path", "p"],
            &[
                "web",
                "--repo",
                "r",
                "--path",
                "p",
                "--dest-cluster",
                "c",
                "--prune",
            ],
            &[
                "web",
                "--repo",
                "r",
                "--path",
                "p",
                "--dest-cluster",
                "c",
                "--label",
                "x",
            ],
        ] {
            let error = Args::try_parse_from(["flotilla", "app", "create"].iter().chain(argv))
                .expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{argv:?}");
        }
    }

    fn cell(cluster: &str, sync: &str, health: &str, why: Option<&str>) -> Value {
        json!({"cluster": cluster, "generation": 3,
               "revision": "0123456789abcdef0123456789abcdef01234567", "blob": "sha256:00",
               "sync": sync, "health": health, "message": "", "why": why, "pinned": null})
    }

    fn pinned(mut cell: Value) -> Value {
        cell["pinned"] = json!({"revision": "v1.0.0", "by": "admin"});
        cell
    }

    #[test]
    fn one_row_per_application() {
        let apps = json!([
            {"name": "guestbook", "project": "default", "origin": "api", "generatedBy": null,
             "labels": {}, "clusters": [cell("east", "Synced", "Healthy", None)],
             "summary": {"clusters": 3, "synced": 2, "healthy": 1}},
            {"name": "web-east", "project": "shop", "origin": "generated",
             "generatedBy": "web", "labels": {}, "clusters": [],
             "summary": {"clusters": 0, "synced": 0, "healthy": 0}}
        ]);
        assert_eq!(
            list_table(apps.as_array().expect("array")).render(),
            "\
NAME        PROJECT   CLUSTERS   SYNCED   HEALTHY   ORIGIN
guestbook   default   3          2        1         api
web-east    shop      0          0        0         appset/web
"
        );
        assert_eq!(
            set_notes(&json!([{"name": "a", "generatorError": "missing key tier"},
                              {"name": "b", "generatorError": null}])),
            ["warning: ApplicationSet a: missing key tier"]
        );
    }

    #[test]
    fn list_queries_carry_only_the_filters_given() {
        let args = AppListArgs {
            project: Some("shop".to_owned()),
            selector: Some("env=prod,tier=web".to_owned()),
            cluster: None,
            limit: Some(2),
            all: true,
        };
        assert_eq!(
            list_query(&args, 0),
            [
                ("project", "shop".to_owned()),
                ("selector", "env=prod,tier=web".to_owned()),
                ("limit", "2".to_owned())
            ]
        );
        assert_eq!(
            list_query(&args, 4).last(),
            Some(&("offset", "4".to_owned()))
        );
    }

    #[test]
    fn pages_merge() {
        let merged = merge(vec![
            json!({"applications": [{"name": "a"}, {"name": "b"}], "total": 3, "nextOffset": 2,
                   "applicationSets": [{"name": "s"}]}),
            json!({"applications": [{"name": "c"}], "total": 3, "nextOffset": null,
                   "applicationSets": [{"name": "s"}]}),
        ]);
        assert_eq!(
            merged["applications"],
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])
        );
        assert_eq!(merged["nextOffset"], Value::Null);
        assert_eq!(merged["applicationSets"], json!([{"name": "s"}]));
    }

    #[test]
    fn one_application_with_why_under_each_cluster_not_done() {
        let answer = json!({
            "name": "guestbook",
            "declared": {"name": "guestbook", "project": "default", "origin": "api",
                         "spec": {"spec": {"source": {"repoURL": "https://git.example/fleet.git",
                                                      "path": "apps/guestbook", "targetRevision": "main"},
                                           "destination": {"name": "east", "namespace": "web"}}}},
            "generatedBy": [],
            "clusters": [
                cell("east", "Synced", "Healthy", None),
                cell("west", "Unknown", "Unknown", Some("the agent is offline since 2026-11-28 06:00:00 UTC")),
                pinned(cell("lab", "Synced", "Healthy", Some("pinned to revision v1.0.0 by admin"))),
                pinned(cell("dev", "Unknown", "Unknown", Some("no agent has registered for cluster dev yet"))),
            ],
            "pins": [], "history": []
        });
        assert_eq!(
            get_text(&answer),
            "\
Name:         guestbook
Project:      default
Origin:       api
Source:       https://git.example/fleet.git (path apps/guestbook) at main
Destination:  east, namespace web

CLUSTER   REVISION   SYNC      HEALTH
east      0123456    Synced    Healthy
west      0123456    Unknown   Unknown
  why: the agent is offline since 2026-11-28 06:00:00 UTC
lab       0123456    Synced    Healthy
  why: pinned to revision v1.0.0 by admin
dev       0123456    Unknown   Unknown
  why: no agent has registered for cluster dev yet
  pinned at revision v1.0.0 by admin
"
        );
        let generated = json!({"name": "web-east", "declared": null, "generatedBy": ["web"],
                               "clusters": [], "pins": [], "history": []});
        assert_eq!(
            get_text(&generated),
            "Name:         web-east\nGenerated by: ApplicationSet web\n\nNot served to any cluster yet.\n"
        );
    }
}
