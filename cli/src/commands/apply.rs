//! `flotilla apply -f FILE…`: reads files, directories and standard input into one multi-
//! document YAML text and sends it to `POST /api/v1/apply`, where it is stored all or nothing.
//! Prints `Kind/name applied` per document and the hub's warnings on standard error.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{CommandError, Report};
use crate::client::Client;
use crate::output::Format;

/// The files `-f` names, in order: a directory stands for its `*.yaml`, `*.yml` and `*.json`
/// files sorted by name (not recursive), `-` for `stdin` (once).
fn expand(files: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    let mut expanded = Vec::new();
    let mut stdin_seen = false;
    for file in files {
        if file == Path::new("-") {
            if stdin_seen {
                return Err(CommandError::Usage(
                    "-f - (standard input) is given twice".to_owned(),
                ));
            }
            stdin_seen = true;
            expanded.push(file.clone());
            continue;
        }
        if !file.is_dir() {
            expanded.push(file.clone());
            continue;
        }
        let entries = std::fs::read_dir(file).map_err(CommandError::io(format!(
            "read directory {}",
            file.display()
        )))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(CommandError::io(format!(
                    "read directory {}",
                    file.display()
                )))?
                .path();
            let manifest = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            if manifest && path.is_file() {
                found.push(path);
            }
        }
        if found.is_empty() {
            return Err(CommandError::Usage(format!(
                "directory {} has no *.yaml, *.yml or *.json files",
                file.display()
            )));
        }
        found.sort();
        expanded.extend(found);
    }
    Ok(expanded)
}

/// Joins documents into one YAML stream; JSON documents are YAML already.
fn join(texts: &[String]) -> String {
    let mut stream = String::new();
    for text in texts {
        if !stream.is_empty() {
            stream.push_str("---\n");
        }
        stream.push_str(text);
        if !text.ends_with('\n') {
            stream.push('\n');
        }
    }
    stream
}

/// Reads every input into one YAML stream.
pub fn read_inputs(files: &[PathBuf], stdin: &mut impl Read) -> Result<String, CommandError> {
    let mut texts = Vec::new();
    for file in expand(files)? {
        let mut text = String::new();
        if file == Path::new("-") {
            stdin
                .read_to_string(&mut text)
                .map_err(CommandError::io("read standard input"))?;
        } else {
            text = std::fs::read_to_string(&file)
                .map_err(CommandError::io(format!("read {}", file.display())))?;
        }
        texts.push(text);
    }
    Ok(join(&texts))
}

/// `Kind/name applied` lines and the warnings.
fn render(answer: &Value) -> Report {
    let mut report = Report::default();
    for applied in answer["applied"].as_array().into_iter().flatten() {
        let kind = applied["kind"].as_str().unwrap_or("?");
        let name = applied["name"].as_str().unwrap_or("?");
        report.stdout.push_str(&format!("{kind}/{name} applied\n"));
    }
    report
}

fn warnings(answer: &Value) -> impl Iterator<Item = &str> {
    answer["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

pub fn apply(client: &Client, format: Format, text: String) -> Result<Report, CommandError> {
    let answer = client.post_yaml(&["apply"], text)?;
    let mut report = match format {
        Format::Table => render(&answer),
        _ => Report::out(crate::output::render(format, &answer, String::new)),
    };
    for warning in warnings(&answer) {
        report.note(format!("warning: {warning}"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_join_into_one_stream() {
        let check = |texts: &[&str], expected: &str| {
            let texts: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
            assert_eq!(join(&texts), expected);
        };
        check(&["a: 1"], "a: 1\n");
        check(&["a: 1\n", "b: 2"], "a: 1\n---\nb: 2\n");
        check(
            &["a: 1\n---\nb: 2\n", "{\"c\": 3}"],
            "a: 1\n---\nb: 2\n---\n{\"c\": 3}\n",
        );
    }

    #[test]
    fn files_directories_and_stdin() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::write(d.join("b.yaml"), "b: 1\n").expect("write");
        std::fs::write(d.join("a.json"), "{\"a\": 1}").expect("write");
        std::fs::write(d.join("c.yml"), "c: 1\n").expect("write");
        std::fs::write(d.join("README.md"), "not yaml").expect("write");
        std::fs::create_dir(d.join("nested.yaml")).expect("mkdir");
        let other = d.join("nested.yaml");
        std::fs::write(d.join("z.yaml"), "z: 1").expect("write");

        let text = read_inputs(
            &[PathBuf::from("-"), d.to_owned()],
            &mut "s: 1\n".as_bytes(),
        )
        .expect("reads");
        assert_eq!(
            text,
            "s: 1\n---\n{\"a\": 1}\n---\nb: 1\n---\nc: 1\n---\nz: 1\n"
        );

        let twice = read_inputs(
            &[PathBuf::from("-"), PathBuf::from("-")],
            &mut "".as_bytes(),
        );
        assert_eq!(twice.expect_err("usage").exit_code(), 2);
        let empty = read_inputs(std::slice::from_ref(&other), &mut "".as_bytes());
        assert_eq!(empty.expect_err("usage").exit_code(), 2);
        let missing = read_inputs(&[d.join("missing.yaml")], &mut "".as_bytes());
        let missing = missing.expect_err("I/O");
        assert_eq!(missing.exit_code(), 1);
        assert!(missing.to_string().contains("missing.yaml"), "{missing}");
    }

    #[test]
    fn applied_lines_and_warnings() {
        let answer = json!({
            "applied": [{"kind": "AppProject", "name": "shop"}, {"kind": "ApplicationSet", "name": "web"}],
            "warnings": ["document 1 (web): spec.strategy is not supported"]
        });
        let table = render(&answer);
        assert_eq!(
            table.stdout,
            "AppProject/shop applied\nApplicationSet/web applied\n"
        );
        assert_eq!(
            warnings(&answer).collect::<Vec<_>>(),
            ["document 1 (web): spec.strategy is not supported"]
        );
    }
}
