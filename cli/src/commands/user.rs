//! `flotilla whoami` and `flotilla token create|list|revoke`: who the CLI's token stands
//! for, and the hub's API tokens — scoped by grants, expiring, revocable. A new token is
//! printed once (on standard output, alone, so it can be piped into a secret store); the hub
//! keeps only its SHA-256. The tables are pure.

use serde_json::{Value, json};

use super::{CommandError, Report};
use crate::args::ApiTokenCreateArgs;
use crate::client::Client;
use crate::output::{Format, Table, or_dash};

/// Grants as the hub writes them (`maintainer:shop`, `viewer`).
fn grants(value: &Value) -> String {
    let text: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| match g["project"].as_str() {
            None | Some("*") => or_dash(&g["role"]),
            Some(project) => format!("{}:{project}", or_dash(&g["role"])),
        })
        .collect();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.join(",")
    }
}

/// A grant from `ROLE[:PROJECT]`.
fn grant_json(text: &str) -> Result<Value, CommandError> {
    let (role, project) = text.split_once(':').unwrap_or((text, "*"));
    if !["admin", "maintainer", "viewer"].contains(&role) {
        return Err(CommandError::Usage(format!(
            "--grant {text:?}: the role is admin, maintainer or viewer"
        )));
    }
    if project.is_empty() {
        return Err(CommandError::Usage(format!(
            "--grant {text:?}: the project after ':' is empty"
        )));
    }
    Ok(json!({"role": role, "project": project}))
}

fn list_table(tokens: &[Value]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "GRANTS", "STATE", "EXPIRES", "CREATED-BY"]);
    for token in tokens {
        table.push(vec![
            or_dash(&token["id"]),
            or_dash(&token["name"]),
            grants(&token["grants"]),
            or_dash(&token["state"]),
            or_dash(&token["expiresAt"]),
            or_dash(&token["createdBy"]),
        ]);
    }
    table
}

pub fn whoami(client: &Client, format: Format) -> Result<Report, CommandError> {
    let answer = client.get(&["whoami"])?;
    Ok(Report::answer(format, &answer, || {
        format!(
            "{} ({}): {}{}\n",
            or_dash(&answer["name"]),
            or_dash(&answer["kind"]),
            grants(&answer["grants"]),
            answer["expiresAt"]
                .as_str()
                .map(|at| format!(", until {at}"))
                .unwrap_or_default()
        )
    }))
}

pub fn create(
    client: &Client,
    format: Format,
    args: &ApiTokenCreateArgs,
) -> Result<Report, CommandError> {
    let grants_json = args
        .grants
        .iter()
        .map(|g| grant_json(g))
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = json!({"name": args.name, "grants": grants_json});
    if let Some(lifetime) = &args.expires_in {
        body["expiresIn"] = json!(lifetime);
    }
    let answer = client.post(&["tokens"], &body)?;
    let mut report = Report::answer(format, &answer, || {
        format!("{}\n", answer["token"].as_str().unwrap_or_default())
    });
    if format == Format::Table {
        report.note(format!(
            "API token {} (id {}) for {}, until {}: shown only now",
            or_dash(&answer["name"]),
            or_dash(&answer["id"]),
            grants(&answer["grants"]),
            or_dash(&answer["expiresAt"]),
        ));
    }
    Ok(report)
}

pub fn list(client: &Client, format: Format) -> Result<Report, CommandError> {
    let answer = client.get(&["tokens"])?;
    let tokens = answer["tokens"].as_array().cloned().unwrap_or_default();
    let mut report = Report::answer(format, &answer, || list_table(&tokens).render());
    if format == Format::Table && tokens.is_empty() {
        report.stdout.clear();
        report.note(
            "no API tokens: create one with flotilla token create NAME --grant ROLE[:PROJECT]",
        );
    }
    Ok(report)
}

pub fn revoke(client: &Client, format: Format, id: &str) -> Result<Report, CommandError> {
    let answer = client.delete(&["tokens", id], &[])?;
    Ok(Report::answer(format, &answer, || {
        format!(
            "API token {} ({}) revoked: it is refused from now on\n",
            or_dash(&answer["name"]),
            or_dash(&answer["id"])
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_read_and_write() {
        assert_eq!(
            grant_json("maintainer:shop").expect("ok"),
            json!({"role": "maintainer", "project": "shop"})
        );
        assert_eq!(grant_json("viewer").expect("ok")["project"], "*");
        assert!(grant_json("root").is_err());
        assert!(grant_json("viewer:").is_err());
        assert_eq!(
            grants(
                &json!([{"role": "maintainer", "project": "shop"}, {"role": "viewer", "project": "*"}])
            ),
            "maintainer:shop,viewer"
        );
    }

    #[test]
    fn token_rows_never_hold_a_token() {
        let tokens = json!([{"id": "a1", "name": "ci", "grants": [{"role": "viewer", "project": "shop"}],
            "state": "active", "expiresAt": "2026-12-28T00:00:00Z", "createdBy": "admin",
            "token": "flt_should_not_be_listed"}]);
        let text = list_table(tokens.as_array().expect("array")).render();
        assert!(text.contains("ci") && text.contains("viewer:shop") && text.contains("active"));
        assert!(!text.contains("flt_"));
    }
}
