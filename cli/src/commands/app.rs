//! `flotilla app list`: `GET /api/v1/applications` as one row per application and cluster.
//! Generated applications take their project from their ApplicationSet's template; those no
//! served state carries yet get a row too. A set's generator error, and a set that generated
//! nothing, are noted on standard error.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{CommandError, Report};
use crate::client::Client;
use crate::output::{Format, Table, or_dash};

/// A 40- or 64-hex commit, cut to 12 characters as `git log --oneline` would.
fn short_revision(value: &Value) -> String {
    let revision = or_dash(value);
    let is_commit =
        matches!(revision.len(), 40 | 64) && revision.bytes().all(|b| b.is_ascii_hexdigit());
    if is_commit {
        revision[..12].to_owned()
    } else {
        revision
    }
}

fn push_app(table: &mut Table, name: &str, project: &str, clusters: Option<&Vec<Value>>) {
    let clusters = clusters.map(Vec::as_slice).unwrap_or_default();
    if clusters.is_empty() {
        table.push(vec![
            name.to_owned(),
            project.to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ]);
    }
    for cluster in clusters {
        table.push(vec![
            name.to_owned(),
            project.to_owned(),
            or_dash(&cluster["cluster"]),
            or_dash(&cluster["sync"]),
            or_dash(&cluster["health"]),
            short_revision(&cluster["revision"]),
        ]);
    }
}

/// The table, and the notes about application sets.
fn render(answer: &Value) -> (Table, Vec<String>) {
    let mut table = Table::new(&["NAME", "PROJECT", "CLUSTER", "SYNC", "HEALTH", "REVISION"]);
    let mut notes = Vec::new();
    let mut seen = BTreeSet::new();
    let sets: Vec<&Value> = answer["applicationSets"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    // A set's template project names its generated apps' project, unless it is a template.
    // The hub's `spec` is the whole document as applied.
    let set_project = |set: &str| {
        sets.iter()
            .find(|s| s["name"].as_str() == Some(set))
            .and_then(|s| s["spec"]["spec"]["template"]["spec"]["project"].as_str())
            .filter(|p| !p.contains("{{"))
            .unwrap_or("-")
            .to_owned()
    };
    for app in answer["applications"].as_array().into_iter().flatten() {
        let name = or_dash(&app["name"]);
        let project = match (or_dash(&app["project"]), app["generatedBy"].as_str()) {
            (project, Some(set)) if project == "-" => set_project(set),
            (project, _) => project,
        };
        push_app(&mut table, &name, &project, app["clusters"].as_array());
        seen.insert(name);
    }
    for set in &sets {
        let set_name = or_dash(&set["name"]);
        let generated: Vec<&str> = set["generated"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for name in &generated {
            if seen.insert((*name).to_owned()) {
                push_app(&mut table, name, &set_project(&set_name), None);
            }
        }
        if let Some(error) = set["generatorError"].as_str() {
            notes.push(format!("warning: ApplicationSet {set_name}: {error}"));
        } else if generated.is_empty() {
            notes.push(format!(
                "note: ApplicationSet {set_name} has generated no applications yet"
            ));
        }
    }
    (table, notes)
}

pub fn list(client: &Client, format: Format) -> Result<Report, CommandError> {
    let answer = client.get(&["applications"])?;
    let (table, notes) = render(&answer);
    let mut report = Report::answer(format, &answer, || table.render());
    if format == Format::Table {
        if table.is_empty() {
            report.stdout.clear();
            if notes.is_empty() {
                report.note("no applications: declare some with flotilla apply -f FILE");
            }
        }
        for note in notes {
            report.note(note);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_row_per_application_and_cluster() {
        let answer = json!({
            "applications": [
                {"name": "guestbook-staging", "project": "shop", "origin": "api", "spec": {},
                 "clusters": [
                    {"cluster": "staging", "sync": "Synced", "health": "Healthy",
                     "revision": "0123456789abcdef0123456789abcdef01234567", "generation": 5, "message": null},
                    {"cluster": "staging-2", "sync": "OutOfSync", "health": "Degraded",
                     "revision": "v1.2.0", "generation": 6, "message": "apply failed"}
                 ]},
                {"name": "web-lab", "project": "default", "spec": {}},
                {"name": "guestbook-west", "project": "", "origin": "generated",
                 "generatedBy": "guestbook-prod", "clusters": [
                    {"cluster": "west", "sync": "Unknown", "health": "Unknown",
                     "revision": "0123456789abcdef0123456789abcdef01234567", "generation": 5,
                     "message": "no report from the agent yet"}
                 ]}
            ],
            "applicationSets": [
                {"name": "guestbook-prod", "generated": ["guestbook-east", "guestbook-staging", "guestbook-west"],
                 "generatorError": null,
                 "spec": {"kind": "ApplicationSet", "spec": {"template": {"spec": {"project": "shop"}}}}},
                {"name": "templated", "generated": [], "generatorError": "missing key tier",
                 "spec": {"kind": "ApplicationSet", "spec": {"template": {"spec": {"project": "{{ .values.project }}"}}}}},
                {"name": "idle", "generated": [], "spec": {}}
            ]
        });
        let (table, notes) = render(&answer);
        assert_eq!(
            table.render(),
            "\
NAME                PROJECT   CLUSTER     SYNC        HEALTH     REVISION
guestbook-staging   shop      staging     Synced      Healthy    0123456789ab
guestbook-staging   shop      staging-2   OutOfSync   Degraded   v1.2.0
web-lab             default   -           -           -          -
guestbook-west      shop      west        Unknown     Unknown    0123456789ab
guestbook-east      shop      -           -           -          -
"
        );
        assert_eq!(
            notes,
            [
                "warning: ApplicationSet templated: missing key tier",
                "note: ApplicationSet idle has generated no applications yet"
            ]
        );
    }

    #[test]
    fn nothing_declared() {
        let (table, notes) = render(&json!({"applications": [], "applicationSets": []}));
        assert!(table.is_empty());
        assert!(notes.is_empty());
    }
}
