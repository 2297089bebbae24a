//! How answers look on a terminal: aligned tables in the style of kubectl, indented JSON, and
//! the age of a timestamp. Pure: everything returns a string the caller prints.

use jiff::Timestamp;
use serde_json::Value;

/// `-o table` (the default) or `-o json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The hub's JSON answer, indented, for programs.
    Json,
}

/// Columns and rows; cells are single lines (control characters become spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
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
        self.rows
            .push(row.into_iter().map(|cell| one_line(&cell)).collect());
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
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                line.push_str(cell);
                line.push_str(&" ".repeat(w - width(cell)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
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
