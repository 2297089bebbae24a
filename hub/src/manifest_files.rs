//! Reads directories of plain Kubernetes manifests from disk: `*.yaml`, `*.yml` (multi-document,
//! YAML 1.1 as Kubernetes reads it, so `0644` is octal) and `*.json`, recursively, in a stable
//! order, expanding `kind: List`. Hidden entries (`.git`) are skipped. It also checks whole
//! trees (a Helm chart, a Kustomize base) against the same limits before an external tool
//! reads them, and parses the multi-document YAML such tools print.
//!
//! Hard limits: no symlink may lead outside a boundary (the directory itself, or the
//! repository checkout it lies in), file size, total size and object count caps, and
//! serde-saphyr's parser budget against YAML bombs. Errors name the file. It must not
//! interpret the objects beyond "is this a JSON object".

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest total of all manifest files of one directory.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;
/// Most objects read from one directory.
pub const MAX_OBJECTS: usize = 50_000;

/// The size caps of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Largest total of all files read, in bytes.
    pub max_total_bytes: u64,
    /// Most objects.
    pub max_objects: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: MAX_FILE_BYTES,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_objects: MAX_OBJECTS,
        }
    }
}

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
    #[error("file {path}: symbolic link leads outside {boundary}")]
    LinkOutside { path: PathBuf, boundary: PathBuf },
    #[error("file {path}: {size} bytes, more than the limit of {limit}")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("manifest directory {path} is over its limits: {reason}")]
    TooLarge { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every manifest under `dir`, in path order, with the default limits; no symlink may
/// leave `dir`.
pub fn read_manifest_dir(dir: &Path) -> Result<Vec<Value>, ManifestError> {
    read_manifest_tree(dir, dir, &ManifestLimits::default())
}

/// Reads every manifest under `dir`, in path order. Symlinked files may point anywhere inside
/// `boundary` (a directory containing `dir`, e.g. the repository checkout), never out of it;
/// symlinked directories are not followed.
pub fn read_manifest_tree(
    dir: &Path,
    boundary: &Path,
    limits: &ManifestLimits,
) -> Result<Vec<Value>, ManifestError> {
    let root = dir.canonicalize().map_err(io_error(dir))?;
    let boundary = boundary.canonicalize().map_err(io_error(boundary))?;
    let mut files = Vec::new();
    collect_files(&boundary, &root, &mut files)?;
    files.sort();
    let mut total = 0u64;
    let mut objects = Vec::new();
    for file in files {
        let size = file.metadata().map_err(io_error(&file))?.len();
        if size > limits.max_file_bytes {
            return Err(ManifestError::FileTooLarge {
                path: file,
                size,
                limit: limits.max_file_bytes,
            });
        }
        total += size;
        if total > limits.max_total_bytes {
            return Err(ManifestError::TooLarge {
                path: dir.to_owned(),
                reason: format!("more than {} bytes of manifests", limits.max_total_bytes),
            });
        }
        let bytes = std::fs::read(&file).map_err(io_error(&file))?;
        let documents =
            parse_documents(&file, &bytes).map_err(|reason| ManifestError::Invalid {
                path: file.clone(),
                reason,
            })?;
        objects.extend(documents);
        if objects.len() > limits.max_objects {
            return Err(ManifestError::TooLarge {
                path: dir.to_owned(),
                reason: format!("more than {} objects", limits.max_objects),
            });
        }
    }
    Ok(objects)
}

/// What [`check_tree`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeSize {
    pub files: usize,
    pub bytes: u64,
}

/// Checks every file under `dir` (hidden ones too, except `.git`, since tools such as Helm
/// read them) before an external tool reads the tree: no symlink, to a file or a directory,
/// may lead outside `boundary`; no file may be over the file cap and all of them together
/// not over the total cap. Symlinked directories inside `boundary` are followed once.
pub fn check_tree(
    dir: &Path,
    boundary: &Path,
    limits: &ManifestLimits,
) -> Result<TreeSize, ManifestError> {
    let boundary = boundary.canonicalize().map_err(io_error(boundary))?;
    let root = dir.canonicalize().map_err(io_error(dir))?;
    if !root.starts_with(&boundary) {
        return Err(ManifestError::LinkOutside {
            path: dir.to_owned(),
            boundary,
        });
    }
    let mut size = TreeSize::default();
    let mut visited = HashSet::new();
    check_dir(&boundary, &root, limits, &mut visited, &mut size)?;
    Ok(size)
}

fn check_dir(
    boundary: &Path,
    dir: &Path,
    limits: &ManifestLimits,
    visited: &mut HashSet<PathBuf>,
    size: &mut TreeSize,
) -> Result<(), ManifestError> {
    if !visited.insert(dir.to_owned()) {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        entries.push(entry.map_err(io_error(dir))?.path());
    }
    entries.sort();
    for path in entries {
        if path.file_name().is_some_and(|name| name == ".git") {
            continue;
        }
        let link = path.symlink_metadata().map_err(io_error(&path))?;
        let target = if link.file_type().is_symlink() {
            let target = path.canonicalize().map_err(io_error(&path))?;
            if !target.starts_with(boundary) {
                return Err(ManifestError::LinkOutside {
                    path,
                    boundary: boundary.to_owned(),
                });
            }
            target
        } else {
            path.clone()
        };
        let metadata = target.metadata().map_err(io_error(&path))?;
        if metadata.is_dir() {
            check_dir(boundary, &target, limits, visited, size)?;
        } else if metadata.is_file() {
            let bytes = metadata.len();
            if bytes > limits.max_file_bytes {
                return Err(ManifestError::FileTooLarge {
                    path,
                    size: bytes,
                    limit: limits.max_file_bytes,
                });
            }
            size.files += 1;
            size.bytes += bytes;
            if size.bytes > limits.max_total_bytes {
                return Err(ManifestError::TooLarge {
                    path: dir.to_owned(),
                    reason: format!("more than {} bytes of files", limits.max_total_bytes),
                });
            }
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(boundary: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_symlink() {
            // A link may point within the boundary, never out of it, and never to a
            // directory (which could loop).
            let target = path.canonicalize().map_err(io_error(&path))?;
            if !target.starts_with(boundary) {
                return Err(ManifestError::LinkOutside {
                    path,
                    boundary: boundary.to_owned(),
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
            collect_files(boundary, &path, out)?;
        } else if file_type.is_file() && is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The objects of one file (or of a tool's output, named by `path`): each YAML document or,
/// for a `.json` path, the JSON value; `List`s expanded, empty documents skipped. YAML is read
/// as Kubernetes reads it (1.1 octals) within serde-saphyr's default budget.
pub fn parse_documents(path: &Path, bytes: &[u8]) -> Result<Vec<Value>, String> {
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
