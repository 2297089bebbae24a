//! `flotilla appset apply|list`: ApplicationSets. `apply` reads files like `flotilla apply`
//! and refuses, before sending anything, a document of another kind (naming its index, from
//! 0 over all files, and its kind); `list` shows what each set generated. Pure but for the
//! two requests.

use serde_json::Value;

use super::{CommandError, Report, apply};
use crate::client::Client;
use crate::output::{Format, Table, or_dash};

/// Every document of `text` is an ApplicationSet; otherwise a usage error naming the first
/// that is not.
fn only_app_sets(text: &str) -> Result<(), CommandError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| CommandError::Usage(format!("the files are not YAML or JSON: {e}")))?;
    let mut found = false;
    for (index, document) in documents.iter().enumerate() {
        if document.is_null() {
            continue;
        }
        match document["kind"].as_str() {
            Some("ApplicationSet") => found = true,
            kind => {
                let name = document["metadata"]["name"]
                    .as_str()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                return Err(CommandError::Usage(format!(
                    "document {index}{name} is {}, not an ApplicationSet: use flotilla apply -f for other kinds",
                    kind.map_or_else(
                        || "without a kind".to_owned(),
                        |k| {
                            let article = if k.starts_with(['A', 'E', 'I', 'O', 'U']) {
                                "an"
                            } else {
                                "a"
                            };
                            format!("{article} {k}")
                        }
                    )
                )));
            }
        }
    }
    if !found {
        return Err(CommandError::Usage(
            "the files hold no documents".to_owned(),
        ));
    }
    Ok(())
}

/// Checks, then stores, the ApplicationSets of `text`.
pub fn apply(client: &Client, format: Format, text: String) -> Result<Report, CommandError> {
    only_app_sets(&text)?;
    apply::apply(client, format, text)
}

fn list_table(sets: &[Value]) -> Table {
    let mut table = Table::new(&["NAME", "APPS", "ORIGIN", "ERROR"]);
    for set in sets {
        table.push(vec![
            or_dash(&set["name"]),
            set["generated"].as_array().map_or(0, Vec::len).to_string(),
            or_dash(&set["origin"]),
            or_dash(&set["generatorError"]),
        ]);
    }
    table
}

pub fn list(client: &Client, format: Format) -> Result<Report, CommandError> {
    let answer = client.get(&["applicationsets"])?;
    let sets = answer["applicationSets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut report = Report::answer(format, &answer, || list_table(&sets).render());
    if format == Format::Table && sets.is_empty() {
        report.stdout.clear();
        report.note("no ApplicationSets: store one with flotilla appset apply -f FILE");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_application_sets_are_sent() {
        let set = "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: web}\n";
        let check = |text: &str, expected: Result<(), &str>| match (only_app_sets(text), expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(expected)) => {
                assert_eq!(got.exit_code(), 2);
                assert!(got.to_string().contains(expected), "{got}");
            }
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        };
        check(set, Ok(()));
        check(&format!("{set}---\n{set}---\n"), Ok(()));
        check(
            &format!("{set}---\nkind: Application\nmetadata: {{name: guestbook}}\n"),
            Err("document 1 (guestbook) is an Application, not an ApplicationSet"),
        );
        check("a: 1\n", Err("document 0 is without a kind"));
        check("", Err("no documents"));
        check("kind: [\n", Err("not YAML or JSON"));
    }

    #[test]
    fn set_rows() {
        let sets = json!([
            {"name": "guestbook-prod", "origin": "api", "generated": ["guestbook-east", "guestbook-west"],
             "generatorError": null, "spec": {}, "updatedAt": "2026-11-28T06:00:00Z"},
            {"name": "templated", "origin": "config", "generated": [],
             "generatorError": "missing key tier", "spec": {}, "updatedAt": "2026-11-28T06:00:00Z"}
        ]);
        assert_eq!(
            list_table(sets.as_array().expect("array")).render(),
            "\
NAME             APPS   ORIGIN   ERROR
guestbook-prod   2      api      -
templated        0      config   missing key tier
"
        );
    }
}
