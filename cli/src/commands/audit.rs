//! `flotilla audit`: the hub's audit log, newest first. The table is pure.

use serde_json::Value;

use super::{CommandError, Report};
use crate::args::AuditArgs;
use crate::client::Client;
use crate::output::{Format, Table, or_dash};

/// A detail object as `key=value` pairs, empty for `{}` and null.
fn detail(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn table(entries: &[Value]) -> Table {
    let mut table = Table::new(&["AT", "WHO", "SOURCE", "FROM", "ACTION", "SUBJECT", "DETAIL"]);
    for entry in entries {
        table.push(vec![
            or_dash(&entry["at"]),
            or_dash(&entry["who"]),
            or_dash(&entry["source"]),
            or_dash(&entry["address"]),
            or_dash(&entry["action"]),
            or_dash(&entry["subject"]),
            detail(&entry["detail"]),
        ]);
    }
    table
}

pub fn audit(client: &Client, format: Format, args: &AuditArgs) -> Result<Report, CommandError> {
    let query: Vec<(&str, String)> = args
        .limit
        .iter()
        .map(|n| ("limit", n.to_string()))
        .collect();
    let answer = client.get_query(&["audit"], &query)?;
    let entries = answer["entries"].as_array().cloned().unwrap_or_default();
    let mut report = Report::answer(format, &answer, || table(&entries).render());
    if format == Format::Table && entries.is_empty() {
        report.stdout.clear();
        report.note("the audit log is empty");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_rows() {
        let entries = json!([
            {"at": "2026-11-28T06:01:00Z", "who": "admin", "action": "rollback",
             "subject": "application web", "detail": {"revision": "abc", "cluster": null}, "source": "api",
             "address": "127.0.0.1:40000"},
            {"at": "2026-11-28T06:00:00Z", "who": "admin", "action": "approve cluster",
             "subject": "cluster east", "detail": {}, "source": "cli"}
        ]);
        assert_eq!(
            table(entries.as_array().expect("array")).render(),
            "\
AT                     WHO     SOURCE   FROM              ACTION            SUBJECT           DETAIL
2026-11-28T06:01:00Z   admin   api      127.0.0.1:40000   rollback          application web   revision=abc
2026-11-28T06:00:00Z   admin   cli      -                 approve cluster   cluster east
"
        );
    }
}
