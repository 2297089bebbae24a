//! What the hub's integration tests share: where the workspace is, the harness-built tools
//! (skipped loudly when absent, unless FLOTILLA_REQUIRE_TOOLS is set), and small file and
//! Git helpers for the repositories the tests build with the git CLI. `git_servers` serves
//! such repositories over HTTPS and SSH; `hub_process` runs `flotilla-hub serve`.
#![allow(dead_code)] // each test binary uses a different part of it

pub mod agent;
pub mod git_servers;
pub mod hub_process;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the hub crate lies in the workspace")
        .to_owned()
}

/// The path of a harness-built tool (`e2e/cluster bin NAME`), or `None` (with a loud
/// message) when it cannot be built here and FLOTILLA_REQUIRE_TOOLS is unset.
pub fn tool(name: &str) -> Option<PathBuf> {
    let output = Command::new(workspace().join("e2e/cluster"))
        .args(["bin", name])
        .output();
    let path = match &output {
        Ok(out) if out.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        _ => None,
    }
    .filter(|p| p.is_file());
    if path.is_none() {
        let why = match output {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            std::env::var_os("FLOTILLA_REQUIRE_TOOLS").is_none(),
            "FLOTILLA_REQUIRE_TOOLS is set but `e2e/cluster bin {name}` failed: {why}"
        );
        eprintln!(
            "\n!!!!! SKIPPED: no {name} from `e2e/cluster bin {name}` ({why}); set FLOTILLA_REQUIRE_TOOLS=1 to fail instead !!!!!\n"
        );
    }
    path
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

pub fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Runs git in `dir` with a fixed identity and no system or user configuration; returns
/// its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Flotilla Test",
            "-c",
            "user.email=test@flotilla.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("runs git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}
