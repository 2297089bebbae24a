//! How answers look on a terminal: aligned tables in the style of kubectl (with notes under
//! a row), indented JSON, YAML, short revisions, coloured diff lines and the age of a
//! timestamp. Pure: everything returns a string the caller prints.

use jiff::Timestamp;
use serde_json::Value;

/// `-o table` (the default), `-o json` or `-o yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The hub's JSON answer, indented, for programs.
    Json,
    /// The hub's answer as YAML.
    Yaml,
}

/// Columns and rows; cells are single lines (control characters become spaces). A row may
/// carry notes: lines printed under it, indented, that do not widen the columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    cells: Vec<String>,
    notes: Vec<String>,
}

/// Columns are this many spaces apart.
const GAP: usize = 3;

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len(), "a cell per column");
        self.rows.push(Row {
            cells: row.into_iter().map(|cell| one_line(&cell)).collect(),
            notes: Vec::new(),
        });
    }

    /// A line under the last row, indented by two spaces.
    pub fn note(&mut self, line: &str) {
        if let Some(row) = self.rows.last_mut() {
            row.notes.push(one_line(line));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line and one line per row, columns padded to their widest cell; no line
    /// ends in spaces.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(&row.cells) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let header = Row {
            cells: self.headers.iter().map(|h| (*h).to_owned()).collect(),
            notes: Vec::new(),
        };
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                line.push_str(cell);
                line.push_str(&" ".repeat(w - width(cell)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
            for note in &row.notes {
                out.push_str("  ");
                out.push_str(note.trim_end());
                out.push('\n');
            }
        }
        out
    }
}

fn one_line(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Indented JSON and a newline.
pub fn json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// The value as YAML (one document, no `---`).
pub fn yaml(value: &Value) -> String {
    let mut text = serde_saphyr::to_string(value).expect("a JSON value serializes to YAML");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The answer in `format`; `table` is called only for tables.
pub fn render(format: Format, value: &Value, table: impl FnOnce() -> String) -> String {
    match format {
        Format::Table => table(),
        Format::Json => json(value),
        Format::Yaml => yaml(value),
    }
}

/// A revision as people read it: a 40- or 64-hex commit cut to 7 characters, anything else
/// (a tag, a chart version) whole; `-` when absent.
pub fn short_revision(value: &Value) -> String {
    let revision = or_dash(value);
    let is_commit =
        matches!(revision.len(), 40 | 64) && revision.bytes().all(|b| b.is_ascii_hexdigit());
    if is_commit {
        revision[..7].to_owned()
    } else {
        revision
    }
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// A unified diff with added lines green and removed lines red when `color`; the `---` and
/// `+++` file headers are bold. Every line ends in a newline.
pub fn diff(text: &str, color: bool) -> String {
    let mut out = String::new();
    // Before the first hunk, `---` and `+++` name the files; inside one they are lines.
    let mut in_hunk = false;
    for line in text.lines() {
        in_hunk |= line.starts_with("@@");
        let style = match line {
            _ if !color => None,
            l if !in_hunk && (l.starts_with("+++") || l.starts_with("---")) => Some(BOLD),
            l if l.starts_with('+') => Some(GREEN),
            l if l.starts_with('-') => Some(RED),
            _ => None,
        };
        match style {
            Some(style) => out.push_str(&format!("{style}{line}{RESET}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// How long before `now` an RFC 3339 timestamp was, in its largest unit (`45s ago`, `3m ago`,
/// `5h ago`, `2d ago`); `never` when absent, the text itself when it does not parse.
pub fn age(at: Option<&str>, now: Timestamp) -> String {
    let Some(at) = at else {
        return "never".to_owned();
    };
    let Ok(then) = at.parse::<Timestamp>() else {
        return at.to_owned();
    };
    let seconds = now.duration_since(then).as_secs();
    match seconds {
        s if s < 0 => "just now".to_owned(),
        s if s < 120 => format!("{s}s ago"),
        s if s < 2 * 3600 => format!("{}m ago", s / 60),
        s if s < 2 * 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

/// A cell for an optional string: the string, or `-`.
pub fn or_dash(value: &Value) -> String {
    match value {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_never_end_lines_in_spaces() {
        let mut table = Table::new(&["NAME", "STATUS", "MESSAGE"]);
        table.push(vec!["prod-east".into(), "Ready".into(), String::new()]);
        table.push(vec!["lab".into(), "Pending".into(), "line\nbreak".into()]);
        assert_eq!(
            table.render(),
            "\
NAME        STATUS    MESSAGE
prod-east   Ready
lab         Pending   line break
"
        );
        assert!(!table.is_empty());
        assert_eq!(Table::new(&["A"]).render(), "A\n");
    }

    #[test]
    fn notes_go_under_their_row_and_do_not_widen_columns() {
        let mut table = Table::new(&["CLUSTER", "SYNC"]);
        table.push(vec!["east".into(), "Synced".into()]);
        table.push(vec!["west".into(), "OutOfSync".into()]);
        table.note("why: the agent is offline since 2026-11-28 06:00:00 UTC");
        assert_eq!(
            table.render(),
            "\
CLUSTER   SYNC
east      Synced
west      OutOfSync
  why: the agent is offline since 2026-11-28 06:00:00 UTC
"
        );
    }

    #[test]
    fn formats() {
        let value = json!({"name": "web", "clusters": [{"cluster": "east"}], "pinned": null});
        assert_eq!(render(Format::Table, &value, || "T\n".to_owned()), "T\n");
        let as_json: Value =
            serde_json::from_str(&render(Format::Json, &value, String::new)).expect("JSON");
        assert_eq!(as_json, value);
        let yaml = render(Format::Yaml, &value, String::new);
        assert!(yaml.contains("name: web\n"), "{yaml}");
        assert!(yaml.contains("cluster: east"), "{yaml}");
        assert!(!yaml.starts_with("---"), "{yaml}");
    }

    #[test]
    fn revisions() {
        let check = |value: Value, expected: &str| assert_eq!(short_revision(&value), expected);
        check(json!("0123456789abcdef0123456789abcdef01234567"), "0123456");
        check(json!("v1.2.0"), "v1.2.0");
        check(json!(null), "-");
        check(json!(""), "-");
    }

    #[test]
    fn diffs_are_coloured_only_when_asked() {
        let text = "--- deployed/x\n+++ target/x\n@@ -1 +1 @@\n-a: 1\n+a: 2\n same\n---x";
        assert_eq!(diff(text, false), format!("{text}\n"));
        let coloured = diff(text, true);
        assert!(coloured.contains("\x1b[31m-a: 1\x1b[0m\n"), "{coloured:?}");
        assert!(coloured.contains("\x1b[32m+a: 2\x1b[0m\n"), "{coloured:?}");
        assert!(
            coloured.contains("\x1b[1m--- deployed/x\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(coloured.contains("\n same\n"), "{coloured:?}");
        assert!(coloured.ends_with("\x1b[31m---x\x1b[0m\n"), "{coloured:?}");
    }

    #[test]
    fn ages() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().expect("time");
        let check = |at: Option<&str>, expected: &str| assert_eq!(age(at, now), expected);
        check(None, "never");
        check(Some("2026-11-28T11:59:15Z"), "45s ago");
        check(Some("2026-11-28T11:57:00Z"), "3m ago");
        check(Some("2026-11-28T07:00:00Z"), "5h ago");
        check(Some("2026-11-25T12:00:00Z"), "3d ago");
        check(Some("2026-11-28T12:00:05Z"), "just now");
        check(Some("yesterday"), "yesterday");
    }

    #[test]
    fn cells() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(or_dash(&json!(null)), "-");
        assert_eq!(or_dash(&json!("")), "-");
        assert_eq!(or_dash(&json!(42)), "42");
        assert_eq!(or_dash(&json!("v1.33.1")), "v1.33.1");
    }
}
