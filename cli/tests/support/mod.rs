//! A real hub for the command line's tests: `flotilla-hub init` and `serve` as child processes
//! on loopback with a temp data directory, and the real `flotilla` binary run against it with
//! its own config file and an empty environment.
//!
//! The hub binary is `$FLOTILLA_HUB_BIN` when set, else `flotilla-hub` next to the `flotilla`
//! binary under test (`cargo test --workspace` builds both into the same `target/<profile>`);
//! when it is missing there, it is built once with `cargo build -p flotilla-hub`, bounded by
//! [`BUILD_DEADLINE`].

#![allow(dead_code)] // Each test file uses its own part.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any wait for the hub may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How long building a missing hub binary may take.
pub const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The `target/<profile>` directory the `flotilla` binary under test lies in.
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_flotilla"))
        .parent()
        .expect("the binary lies in a directory")
        .to_owned()
}

/// The `flotilla-hub` binary (see the module documentation).
pub fn hub_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FLOTILLA_HUB_BIN") {
            return PathBuf::from(bin);
        }
        let dir = profile_dir();
        let bin = dir.join(format!("flotilla-hub{}", std::env::consts::EXE_SUFFIX));
        if !bin.is_file() {
            build_hub(&dir);
        }
        assert!(bin.is_file(), "no hub binary at {}", bin.display());
        bin
    })
    .clone()
}

/// `cargo build -p flotilla-hub --bin flotilla-hub` into the target directory of `dir`.
fn build_hub(dir: &Path) {
    let target_dir = dir.parent().expect("target/<profile> has a parent");
    let mut command = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    command
        .args([
            "build",
            "--quiet",
            "-p",
            "flotilla-hub",
            "--bin",
            "flotilla-hub",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    eprintln!("building flotilla-hub into {}", target_dir.display());
    let mut child = command.spawn().expect("runs cargo build");
    let start = Instant::now();
    loop {
        match child.try_wait().expect("waits for cargo") {
            Some(status) => {
                assert!(status.success(), "cargo build -p flotilla-hub failed");
                return;
            }
            None if start.elapsed() > BUILD_DEADLINE => {
                let _ignored = child.kill();
                let _ignored = child.wait();
                panic!(
                    "cargo build -p flotilla-hub took longer than {BUILD_DEADLINE:?}; build it \
                     first or set FLOTILLA_HUB_BIN"
                );
            }
            None => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// A running hub; killed when dropped, so a failing test leaves nothing running.
pub struct Hub {
    child: Child,
    /// `http://127.0.0.1:PORT` of the human API.
    pub url: String,
    /// The admin token `init` printed.
    pub token: String,
    log: PathBuf,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

impl Hub {
    /// `init` a data directory under `dir`, then `serve` it on free loopback ports with
    /// `args`; returns once the human API listens.
    pub fn start(dir: &Path, args: &[String]) -> Self {
        let data_dir = dir.join("hub-data");
        let out = Command::new(hub_bin())
            .args(["init", "--data-dir"])
            .arg(&data_dir)
            .env_remove("RUST_LOG")
            .output()
            .expect("runs flotilla-hub init");
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        let token = stdout
            .lines()
            .find_map(|l| l.split_once("admin token").map(|(_, rest)| rest))
            .and_then(|rest| rest.rsplit(' ').next())
            .expect("init prints the admin token")
            .to_owned();
        assert!(token.starts_with("flt_"), "{stdout}");

        let log = dir.join("hub.log");
        let mut child = Command::new(hub_bin())
            .args(["serve", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--agent-listen",
                "127.0.0.1:0",
                "--poll-interval",
                "1h",
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starts flotilla-hub serve");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ignored = tx.send(addr.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(DEADLINE) {
            Ok(url) => url,
            Err(_) => {
                let _ignored = child.kill();
                let _ignored = child.wait();
                panic!("serve did not start; log:\n{}", tail(&log));
            }
        };
        Self {
            child,
            url,
            token,
            log,
        }
    }

    /// The end of the hub's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What one run of `flotilla` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the run exited with `code`; returns it for more checks.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// The `flotilla` command line with its own home and config file, and nothing else of the
/// test's environment. Every output is kept, so a test can search all of them for secrets.
pub struct Cli {
    pub home: PathBuf,
    pub config: PathBuf,
    outputs: std::sync::Mutex<Vec<String>>,
}

impl Cli {
    /// Its config file is `dir/config/flotilla/config.json`; nothing of it exists yet.
    pub fn new(dir: &Path) -> Self {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("home");
        Self {
            home,
            config: dir.join("config/flotilla/config.json"),
            outputs: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        command
            .env_clear()
            .env("HOME", &self.home)
            .env("FLOTILLA_CONFIG", &self.config)
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command().args(args), None)
    }

    /// Runs `command` (from [`Cli::command`]), writing `stdin` to it.
    pub fn run_with(&self, command: &mut Command, stdin: Option<&str>) -> Run {
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs flotilla");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("piped");
            pipe.write_all(text.as_bytes()).expect("writes stdin");
        }
        let out = child.wait_with_output().expect("flotilla finishes");
        let run = Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
        };
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{}\n{}", run.stdout, run.stderr));
        run
    }

    /// Logs in to `hub` with its admin token, from a token file.
    pub fn login(&self, hub: &Hub) {
        let token_file = self.home.join("admin.token");
        std::fs::write(&token_file, format!("{}\n", hub.token)).expect("token file");
        self.run(&[
            "login",
            "--hub",
            &hub.url,
            "--token-file",
            token_file.to_str().expect("UTF-8 path"),
        ])
        .ok();
    }

    /// Everything every run printed.
    pub fn outputs(&self) -> String {
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Runs `args` until `done` holds for the run, or fails at the deadline.
    pub fn wait_for(
        &self,
        args: &[&str],
        what: &str,
        hub: &Hub,
        done: impl Fn(&Run) -> bool,
    ) -> Run {
        let start = Instant::now();
        loop {
            let run = self.run(args);
            if done(&run) {
                return run;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: still {run:?} after {DEADLINE:?}; hub log:\n{}",
                hub.log_tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Runs git in `dir`, failing the test on an error; its trimmed output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
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
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
