//! `flotilla app history|rollback|unpin`: the revisions an application was deployed at, and
//! pins to one of them. A rollback is a pin: the hub keeps serving that revision, ignoring
//! new commits, until it is lifted. The table and the bodies are pure.

use serde_json::{Value, json};

use super::{CommandError, Report};
use crate::args::{AppHistoryArgs, AppRollbackArgs, AppUnpinArgs};
use crate::client::Client;
use crate::output::{Format, Table, or_dash, short_revision};

fn history_table(entries: &[Value]) -> Table {
    let mut table = Table::new(&[
        "CLUSTER",
        "REVISION",
        "GENERATION",
        "DEPLOYED-AT",
        "DEPLOYED-BY",
    ]);
    for entry in entries {
        table.push(vec![
            or_dash(&entry["cluster"]),
            short_revision(&entry["revision"]),
            or_dash(&entry["generation"]),
            or_dash(&entry["deployedAt"]),
            or_dash(&entry["deployedBy"]),
        ]);
    }
    table
}

pub fn history(
    client: &Client,
    format: Format,
    args: &AppHistoryArgs,
) -> Result<Report, CommandError> {
    let mut query = Vec::new();
    if let Some(cluster) = &args.cluster {
        query.push(("cluster", cluster.clone()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let answer = client.get_query(&["applications", &args.name, "history"], &query)?;
    let entries = answer["history"].as_array().cloned().unwrap_or_default();
    let mut report = Report::answer(format, &answer, || history_table(&entries).render());
    if format == Format::Table && entries.is_empty() {
        report.stdout.clear();
        report.note(format!(
            "application {} has not been deployed yet{}",
            args.name,
            args.cluster
                .as_ref()
                .map(|c| format!(" to cluster {c}"))
                .unwrap_or_default()
        ));
    }
    Ok(report)
}

fn rollback_body(args: &AppRollbackArgs) -> Value {
    let mut body = json!({"revision": args.revision});
    if let Some(cluster) = &args.cluster {
        body["cluster"] = json!(cluster);
    }
    body
}

/// `on cluster C` or `on every cluster`.
fn where_(cluster: Option<&str>) -> String {
    match cluster {
        Some(cluster) => format!("on cluster {cluster}"),
        None => "on every cluster".to_owned(),
    }
}

pub fn rollback(
    client: &Client,
    format: Format,
    args: &AppRollbackArgs,
) -> Result<Report, CommandError> {
    let answer = client.post(
        &["applications", &args.name, "rollback"],
        &rollback_body(args),
    )?;
    Ok(Report::answer(format, &answer, || {
        format!(
            "application {} pinned at revision {} {}: it ignores new commits until flotilla app unpin {}{}\n",
            args.name,
            short_revision(&answer["revision"]),
            where_(answer["cluster"].as_str()),
            args.name,
            args.cluster
                .as_ref()
                .map(|c| format!(" --cluster {c}"))
                .unwrap_or_default()
        )
    }))
}

pub fn unpin(client: &Client, format: Format, args: &AppUnpinArgs) -> Result<Report, CommandError> {
    let query: Vec<(&str, String)> = args
        .cluster
        .iter()
        .map(|c| ("cluster", c.clone()))
        .collect();
    let answer = client.delete(&["applications", &args.name, "pin"], &query)?;
    Ok(Report::answer(format, &answer, || {
        format!(
            "application {} unpinned {}: it follows Git again\n",
            args.name,
            where_(args.cluster.as_deref())
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rows() {
        let entries = json!([
            {"cluster": "east", "revision": "0123456789abcdef0123456789abcdef01234567", "generation": 4,
             "deployedAt": "2026-11-28T06:00:00Z", "deployedBy": "admin", "blob": "sha256:00"},
            {"cluster": "west", "revision": "v1.2.0", "generation": 2,
             "deployedAt": "2026-11-27T06:00:00Z", "deployedBy": null, "blob": "sha256:01"}
        ]);
        assert_eq!(
            history_table(entries.as_array().expect("array")).render(),
            "\
CLUSTER   REVISION   GENERATION   DEPLOYED-AT            DEPLOYED-BY
east      0123456    4            2026-11-28T06:00:00Z   admin
west      v1.2.0     2            2026-11-27T06:00:00Z   -
"
        );
    }

    #[test]
    fn rollback_bodies() {
        let args = |cluster: Option<&str>| AppRollbackArgs {
            name: "web".to_owned(),
            revision: "abc".to_owned(),
            cluster: cluster.map(str::to_owned),
        };
        assert_eq!(rollback_body(&args(None)), json!({"revision": "abc"}));
        assert_eq!(
            rollback_body(&args(Some("east"))),
            json!({"revision": "abc", "cluster": "east"})
        );
    }
}
