//! Reads directories of plain Kubernetes manifests from disk: `*.yaml`, `*.yml` (multi-document,
//! YAML 1.1 as Kubernetes reads it, so `0644` is octal) and `*.json`, recursively, in a stable
//! order, expanding `kind: List`. Hidden entries (`.git`) are skipped.
//!
//! Hard limits: no symlink may lead outside the directory, file size, total size and object
//! count caps, and serde-saphyr's parser budget against YAML bombs. Errors name the file. It
//! must not interpret the objects beyond "is this a JSON object".

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest total of all manifest files of one directory.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;
/// Most objects read from one directory.
pub const MAX_OBJECTS: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("read manifest directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("manifest directory {path} is over its limits: {reason}")]
    TooLarge { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every manifest under `dir`, in path order.
pub fn read_manifest_dir(dir: &Path) -> Result<Vec<Value>, ManifestError> {
    let root = dir.canonicalize().map_err(io_error(dir))?;
    let mut files = Vec::new();
    collect_files(&root, &root, &mut files)?;
    files.sort();
    let mut total = 0u64;
    let mut objects = Vec::new();
    for file in files {
        let size = file.metadata().map_err(io_error(&file))?.len();
        if size > MAX_FILE_BYTES {
            return Err(ManifestError::Invalid {
                path: file,
                reason: format!("{size} bytes, more than the limit of {MAX_FILE_BYTES}"),
            });
        }
        total += size;
        if total > MAX_TOTAL_BYTES {
            return Err(ManifestError::TooLarge {
                path: dir.to_owned(),
                reason: format!("more than {MAX_TOTAL_BYTES} bytes of manifests"),
            });
        }
        let bytes = std::fs::read(&file).map_err(io_error(&file))?;
        let documents =
            parse_documents(&file, &bytes).map_err(|reason| ManifestError::Invalid {
                path: file.clone(),
                reason,
            })?;
        objects.extend(documents);
        if objects.len() > MAX_OBJECTS {
            return Err(ManifestError::TooLarge {
                path: dir.to_owned(),
                reason: format!("more than {MAX_OBJECTS} objects"),
            });
        }
    }
    Ok(objects)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_symlink() {
            // A link may point within the directory, never out of it, and never to a
            // directory (which could loop).
            let target = path.canonicalize().map_err(io_error(&path))?;
            if !target.starts_with(root) {
                return Err(ManifestError::Invalid {
                    path,
                    reason: "symbolic link leads outside the manifest directory".to_owned(),
                });
            }
            if target.is_dir() {
                return Err(ManifestError::Invalid {
                    path,
                    reason: "symbolic links to directories are not followed".to_owned(),
                });
            }
            if is_manifest(&path) {
                out.push(path);
            }
        } else if file_type.is_dir() {
            collect_files(root, &path, out)?;
        } else if file_type.is_file() && is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The objects of one file: each YAML document or the JSON value, `List`s expanded, empty
/// documents skipped.
fn parse_documents(path: &Path, bytes: &[u8]) -> Result<Vec<Value>, String> {
    let documents: Vec<Value> = if path.extension().is_some_and(|e| e == "json") {
        vec![serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?]
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let mut options = serde_saphyr::Options::default();
        // Kubernetes reads YAML 1.1: `0644` is an octal file mode.
        options.legacy_octal_numbers = true;
        serde_saphyr::from_multiple_with_options(text, options)
            .map_err(|e| format!("invalid YAML: {e}"))?
    };
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        match document {
            Value::Null => {}
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str) == Some("List")
                    && map.get("items").is_some_and(Value::is_array) =>
            {
                let Some(Value::Array(items)) = map.get("items") else {
                    continue;
                };
                for (item, value) in items.iter().enumerate() {
                    if !value.is_object() {
                        return Err(format!(
                            "document {index}, List item {item} is not an object"
                        ));
                    }
                    objects.push(value.clone());
                }
            }
            Value::Object(_) => objects.push(document),
            _ => return Err(format!("document {index} is not an object")),
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    #[test]
    fn reads_yaml_json_and_lists_recursively_in_path_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "b/deploy.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b1}\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b2}\ndata: {mode: 0644}\n",
        );
        write(
            dir.path(),
            "a.json",
            r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a1"}}]}"#,
        );
        write(dir.path(), "README.md", "# not a manifest");
        write(dir.path(), ".git/config.yaml", "not: read");
        let objects = read_manifest_dir(dir.path()).expect("reads");
        let names: Vec<&str> = objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(names, ["a1", "b1", "b2"]);
        assert_eq!(objects[2]["data"]["mode"], 420, "YAML 1.1 octal");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "bad.yaml", "a: [1, 2\n");
        let err = read_manifest_dir(dir.path()).expect_err("invalid");
        let message = err.to_string();
        assert!(message.starts_with("manifest file "), "{message}");
        assert!(message.contains("bad.yaml: invalid YAML"), "{message}");

        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "x.json", "[1]");
        let message = read_manifest_dir(dir.path())
            .expect_err("invalid")
            .to_string();
        assert!(
            message.contains("x.json: document 0 is not an object"),
            "{message}"
        );
    }

    #[test]
    fn yaml_bombs_are_stopped_by_the_budget() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!("{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        write(dir.path(), "bomb.yaml", &bomb);
        assert!(read_manifest_dir(dir.path()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_may_not_leave_the_directory() {
        let outside = tempfile::tempdir().expect("temp dir");
        write(
            outside.path(),
            "secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            dir.path().join("link.yaml"),
        )
        .expect("symlink");
        let message = read_manifest_dir(dir.path())
            .expect_err("refused")
            .to_string();
        assert!(message.contains("leads outside"), "{message}");
    }
}
