//! Runs one pinned external binary (`helm`, `kustomize`) for a render: with a cleared
//! environment whose HOME and XDG directories point into a scratch directory, no standard
//! input, a cap on what it may print and a deadline after which it is killed. It knows
//! nothing of charts or kustomizations; callers build the arguments.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Most bytes of a failing tool's standard error kept for its error message.
const MAX_STDERR_BYTES: u64 = 8 << 10;

/// An external binary and where the hub's configuration says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// `helm` or `kustomize`.
    pub name: &'static str,
    /// The configured path: a bare name is looked up on the hub's PATH.
    pub path: PathBuf,
    /// How to configure the path, for the error when it is missing.
    pub setting: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} binary not found at {path}: install {tool} on the hub's PATH or set {setting}")]
    Missing {
        tool: &'static str,
        path: PathBuf,
        setting: &'static str,
    },
    #[error("start {tool} ({path}): {source}")]
    Spawn {
        tool: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{tool} did not finish within {timeout:?} and was killed")]
    Timeout {
        tool: &'static str,
        timeout: Duration,
    },
    #[error("{tool} printed more than {limit} bytes and was killed")]
    OutputTooLarge { tool: &'static str, limit: u64 },
    #[error("{tool}: read its output: {source}")]
    Output {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Tool {
    /// The absolute path of the binary, a bare name looked up on the hub's own PATH (the
    /// child's environment is cleared, so the lookup cannot be left to it).
    pub fn locate(&self) -> Result<PathBuf, ToolError> {
        let missing = || ToolError::Missing {
            tool: self.name,
            path: self.path.clone(),
            setting: self.setting,
        };
        if self.path.components().count() > 1 || self.path.is_absolute() {
            return if self.path.is_file() {
                Ok(self.path.clone())
            } else {
                Err(missing())
            };
        }
        // Reading PATH here is the lookup every shell does, not configuration.
        let search = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&search)
            .map(|dir| dir.join(&self.path))
            .find(|candidate| candidate.is_file())
            .ok_or_else(missing)
    }

    /// Runs the binary with `args` in `scratch` (also its HOME) and returns what it printed on
    /// standard output, at most `max_output` bytes, within `timeout`.
    pub async fn run(
        &self,
        args: &[OsString],
        scratch: &Path,
        max_output: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, ToolError> {
        let binary = self.locate()?;
        let mut command = Command::new(&binary);
        command
            .args(args)
            .current_dir(scratch)
            .env_clear()
            .env("HOME", scratch)
            .env("XDG_CONFIG_HOME", scratch.join("config"))
            .env("XDG_CACHE_HOME", scratch.join("cache"))
            .env("XDG_DATA_HOME", scratch.join("data"))
            .env("HELM_PLUGINS", scratch.join("plugins"))
            .env("TMPDIR", scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so the deadline kills what it started too (helm's
            // post-renderers, kustomize's git), not only the tool itself.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ToolError::Spawn {
            tool: self.name,
            path: binary.clone(),
            source,
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ToolError::Output {
                tool: self.name,
                source: std::io::Error::other("no pipes to the child"),
            });
        };
        // Standard error is drained by its own task so that a chatty tool never blocks on a
        // full pipe; only its beginning is kept.
        let stderr_task = tokio::spawn(drain_keeping(stderr, MAX_STDERR_BYTES));
        let work = async {
            let out = read_capped(stdout, max_output + 1).await?;
            if out.len() as u64 > max_output {
                return Ok(None);
            }
            let status = child.wait().await?;
            Ok::<_, std::io::Error>(Some((out, status)))
        };
        let outcome = tokio::time::timeout(timeout, work).await;
        let (stdout, status) = match outcome {
            Err(_) => {
                // Dropping `work` released the borrow; the child must not outlive the render.
                kill(&mut child).await;
                tracing::warn!(
                    tool = self.name,
                    ?timeout,
                    "render tool killed at its deadline"
                );
                return Err(ToolError::Timeout {
                    tool: self.name,
                    timeout,
                });
            }
            Ok(Err(source)) => {
                kill(&mut child).await;
                return Err(ToolError::Output {
                    tool: self.name,
                    source,
                });
            }
            Ok(Ok(None)) => {
                kill(&mut child).await;
                return Err(ToolError::OutputTooLarge {
                    tool: self.name,
                    limit: max_output,
                });
            }
            Ok(Ok(Some(done))) => done,
        };
        let stderr = stderr_task
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if !status.success() {
            return Err(ToolError::Failed {
                tool: self.name,
                status,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(stdout)
    }
}

/// Kills the tool's process group (its children with it), then reaps the tool.
async fn kill(child: &mut tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
        && let Err(error) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
    {
        tracing::debug!(%error, "kill render tool's process group");
    }
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "kill render tool");
    }
}

/// Reads at most `cap` bytes.
async fn read_capped(reader: impl AsyncRead + Unpin, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    reader.take(cap).read_to_end(&mut buffer).await?;
    Ok(buffer)
}

/// Reads to the end, keeping the first `keep` bytes.
async fn drain_keeping(mut reader: impl AsyncRead + Unpin, keep: u64) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    (&mut reader).take(keep).read_to_end(&mut kept).await?;
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    Ok(kept)
}
