//! `flotilla app diff`: per cluster, the objects that change between what the agent runs and
//! the target revision, each with its unified diff (coloured on a terminal), then the drift
//! the agent reported. The rendering is pure; the exit code is 0 either way.

use serde_json::Value;

use super::{CommandError, Report};
use crate::args::AppDiffArgs;
use crate::client::Client;
use crate::output::{self, Format, or_dash, short_revision};

/// `REVISION` of a `from`/`to` object, or what its absence means.
fn revision(side: &Value, absent: &str) -> String {
    if side.is_object() {
        short_revision(&side["revision"])
    } else {
        absent.to_owned()
    }
}

fn drift_line(event: &Value) -> String {
    let by: Vec<String> = event["changedBy"]
        .as_array()
        .into_iter()
        .flatten()
        .map(or_dash)
        .collect();
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" by {}", by.join(", "))
    };
    let healed = if event["healed"].as_bool() == Some(true) {
        ", healed"
    } else {
        ", not healed"
    };
    format!(
        "  {} changed{by} at {}{healed}\n",
        or_dash(&event["object"]),
        or_dash(&event["at"])
    )
}

/// The whole text: a header per cluster, its changed objects with their diffs, its drift.
fn render(answer: &Value, color: bool) -> String {
    let mut out = String::new();
    let clusters = answer["clusters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, cluster) in clusters.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let name = or_dash(&cluster["cluster"]);
        if let Some(error) = cluster["error"].as_str() {
            out.push_str(&format!("=== cluster {name}: {error}\n"));
            continue;
        }
        out.push_str(&format!(
            "=== cluster {name}: {} -> {}\n",
            revision(&cluster["from"], "nothing deployed"),
            revision(&cluster["to"], "-"),
        ));
        let objects = cluster["objects"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if objects.is_empty() {
            out.push_str("no differences\n");
        }
        for object in objects {
            out.push_str(&format!(
                "{} {}\n",
                or_dash(&object["object"]),
                or_dash(&object["change"])
            ));
            if let Some(diff) = object["diff"].as_str().filter(|d| !d.is_empty()) {
                out.push_str(&output::diff(diff, color));
            }
        }
        let drift = cluster["drift"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !drift.is_empty() {
            out.push_str("drift:\n");
            for event in drift {
                out.push_str(&drift_line(event));
            }
        }
    }
    out
}

pub fn diff(
    client: &Client,
    format: Format,
    color: bool,
    args: &AppDiffArgs,
) -> Result<Report, CommandError> {
    let mut query = Vec::new();
    if let Some(revision) = &args.revision {
        query.push(("revision", revision.clone()));
    }
    if let Some(cluster) = &args.cluster {
        query.push(("cluster", cluster.clone()));
    }
    let answer = client.get_query(&["applications", &args.name, "diff"], &query)?;
    Ok(Report::answer(format, &answer, || render(&answer, color)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OLD: &str = "0123456789abcdef0123456789abcdef01234567";
    const NEW: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn answer() -> Value {
        json!({
            "app": "guestbook",
            "clusters": [
                {"cluster": "east",
                 "from": {"revision": OLD, "blob": "sha256:00"},
                 "to": {"revision": NEW, "blob": "sha256:01"},
                 "objects": [
                    {"object": "ConfigMap web/web", "change": "changed",
                     "diff": "--- deployed/ConfigMap web/web\n+++ target/ConfigMap web/web\n@@ -1 +1 @@\n-greeting: hello\n+greeting: hi\n"},
                    {"object": "Service web/web", "change": "added", "diff": ""}
                 ],
                 "drift": [{"object": "ConfigMap web/web", "changedBy": ["kubectl-edit"],
                            "healed": true, "at": "2026-11-28T06:00:00Z"}]},
                {"cluster": "west", "from": null, "to": {"revision": NEW, "blob": "sha256:01"},
                 "objects": [], "drift": []},
                {"cluster": "lab", "error": "revision abc was never rendered for cluster lab"}
            ]
        })
    }

    #[test]
    fn clusters_objects_diffs_and_drift() {
        assert_eq!(
            render(&answer(), false),
            "\
=== cluster east: 0123456 -> 89abcde
ConfigMap web/web changed
--- deployed/ConfigMap web/web
+++ target/ConfigMap web/web
@@ -1 +1 @@
-greeting: hello
+greeting: hi
Service web/web added
drift:
  ConfigMap web/web changed by kubectl-edit at 2026-11-28T06:00:00Z, healed

=== cluster west: nothing deployed -> 89abcde
no differences

=== cluster lab: revision abc was never rendered for cluster lab
"
        );
    }

    #[test]
    fn colour_only_on_request() {
        let coloured = render(&answer(), true);
        assert!(
            coloured.contains("\x1b[32m+greeting: hi\x1b[0m"),
            "{coloured:?}"
        );
        assert!(!render(&answer(), false).contains('\x1b'));
    }
}
