//! What the browser tests share: the workspace, the tools they need (Chromium, Node and
//! `browser/node_modules`, or an error that says how to install them), and running one of
//! `browser/`'s scripts with a deadline, its output printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lies in the workspace")
        .to_owned()
}

/// Node, Chromium and the browser packages, or an error that says how to install them;
/// `test` names the test in the message.
pub fn browser_tools(test: &str) -> anyhow::Result<()> {
    let chromium = std::env::var_os("FLOTILLA_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    ensure!(
        chromium.is_file(),
        "the {test} test needs Chromium at {}: install it with `apt-get install -y chromium \
         chromium-driver` (.ci/run does), or set FLOTILLA_CHROMIUM to a Chromium binary",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    ensure!(
        node.is_ok_and(|o| o.status.success()),
        "the {test} test needs Node.js 20 or newer on PATH (apt-get install -y nodejs npm)"
    );
    let modules = workspace().join("browser/node_modules");
    for package in ["playwright-core", "axe-core"] {
        ensure!(
            modules.join(package).is_dir(),
            "the {test} test needs {}: run `npm ci --prefix browser` (make e2e does)",
            modules.join(package).display()
        );
    }
    Ok(())
}

/// Runs `browser/<script>` with `env`, its output in `dir/browser.out` and printed; killed
/// after `limit`. Whether it passed, and its output.
pub fn run_script(
    dir: &Path,
    script: &str,
    env: &[(&str, String)],
    limit: Duration,
) -> anyhow::Result<(bool, String)> {
    let out = dir.join("browser.out");
    let mut child = Command::new("node")
        .arg(workspace().join("browser").join(script))
        .current_dir(workspace().join("browser"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::options().append(true).open(&out)?)
        .spawn()
        .with_context(|| format!("run node browser/{script}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ignored = child.kill();
            let _ignored = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    println!("--- browser/{script}\n{output}---");
    match status {
        Some(status) => Ok((status.success(), output)),
        None => bail!("browser/{script} ran for more than {limit:?}"),
    }
}
