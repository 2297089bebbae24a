//! The hard limits of one render: file size, total size, object count and time. Pure values
//! and checks; it reads no file and runs no process.
//!
//! Defaults, chosen so that real charts and bases (podinfo, cert-manager's CRDs, a large
//! operator bundle) fit with room to spare while one hostile repository cannot exhaust the hub:
//!
//! | limit | default | applies to |
//! | --- | --- | --- |
//! | `max_file_bytes` | 16 MiB | each file of the source tree, each values file |
//! | `max_total_bytes` | 64 MiB | the source tree, a tool's output, a downloaded `index.yaml` or chart |
//! | `max_objects` | 10,000 | objects one render yields |
//! | `timeout` | 60 s | one run of `helm` or `kustomize`, one HTTP download |

use std::time::Duration;

use crate::manifest_files::ManifestLimits;

/// Default largest file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;
/// Default largest total of a source tree, a tool's output or a download.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Default most objects of one render.
pub const DEFAULT_MAX_OBJECTS: usize = 10_000;
/// Default time one external tool run or download may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The hard limits of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file read, in bytes.
    pub max_file_bytes: u64,
    /// Largest source tree, tool output or download, in bytes.
    pub max_total_bytes: u64,
    /// Most objects one render may yield.
    pub max_objects: usize,
    /// Longest one external tool run or download may take; the tool is killed after it.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_objects: DEFAULT_MAX_OBJECTS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Limits {
    /// The caps the manifest reader applies.
    pub fn manifest(&self) -> ManifestLimits {
        ManifestLimits {
            max_file_bytes: self.max_file_bytes,
            max_total_bytes: self.max_total_bytes,
            max_objects: self.max_objects,
        }
    }

    /// `Err(limit)` when `count` objects are more than allowed.
    pub fn check_objects(&self, count: usize) -> Result<(), usize> {
        if count > self.max_objects {
            Err(self.max_objects)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_cap_is_inclusive() {
        let limits = Limits {
            max_objects: 2,
            ..Limits::default()
        };
        assert_eq!(limits.check_objects(2), Ok(()));
        assert_eq!(limits.check_objects(3), Err(2));
    }

    #[test]
    fn manifest_limits_follow() {
        let limits = Limits::default().manifest();
        assert_eq!(limits.max_file_bytes, DEFAULT_MAX_FILE_BYTES);
        assert_eq!(limits.max_total_bytes, DEFAULT_MAX_TOTAL_BYTES);
        assert_eq!(limits.max_objects, DEFAULT_MAX_OBJECTS);
    }
}
