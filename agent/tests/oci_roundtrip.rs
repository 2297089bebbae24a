//! A bundle file survives real OCI tooling: its layout is pushed with `crane` into a registry
//! on 127.0.0.1 (`crane registry serve`), pulled back as an OCI layout, re-tarred with the
//! system `tar`, and still verifies, with the envelope and every blob byte for byte the same.
//!
//! Needs `crane` (built by `e2e/cluster bin crane`) and `tar`. Without crane the test is
//! skipped with a loud message, unless `FLOTILLA_REQUIRE_TOOLS` is set (as in CI): then it
//! builds crane through the harness, and fails if that fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_shared::Digest;
use flotilla_shared::testing::{Bundle, TestApp, config_map, key, now, trust};

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/cluster")
}

/// Finds crane in the harness cache (never building it) or on PATH; builds it through the
/// harness only when the tools are required.
fn crane() -> Option<PathBuf> {
    let env = Command::new("bash").arg(harness()).arg("env").output().ok();
    let mut dirs: Vec<PathBuf> = env
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .and_then(|s| s.trim().strip_prefix("export PATH=").map(str::to_owned))
        .map(|path| path.split(':').map(PathBuf::from).collect())
        .unwrap_or_default();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    if let Some(found) = dirs.iter().map(|d| d.join("crane")).find(|c| c.is_file()) {
        return Some(found);
    }
    if std::env::var_os("FLOTILLA_REQUIRE_TOOLS").is_some() {
        let out = Command::new("bash")
            .arg(harness())
            .args(["bin", "crane"])
            .stderr(Stdio::inherit())
            .output()
            .expect("runs e2e/cluster bin crane");
        assert!(out.status.success(), "e2e/cluster bin crane failed");
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        assert!(
            path.is_file(),
            "crane is required but {} is missing",
            path.display()
        );
        return Some(path);
    }
    eprintln!(
        "\n!!! SKIPPED: crane not found (run `e2e/cluster build crane`); the OCI registry round trip is NOT tested !!!\n"
    );
    None
}

/// A `crane registry serve` on loopback, stopped when dropped.
struct Registry {
    child: Child,
    addr: SocketAddr,
}

impl Registry {
    fn start(crane: &Path) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let child = Command::new(crane)
            .args(["registry", "serve", "--address", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts crane registry serve");
        let registry = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &Path, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("spawns");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn bundle_round_trips_through_an_oci_registry() {
    let Some(crane) = crane() else {
        return;
    };
    let tar = Path::new("tar");
    let signed = Bundle::test()
        .cluster("east")
        .with_app(TestApp::new("shop").object(config_map("shop", "second")))
        .with_app(TestApp::new("web"))
        .removed("old", true)
        .signed_by(&key(1));
    let file = signed.bundle_file();
    let original =
        flotilla_shared::read_bundle(file.as_slice(), &trust(&[&key(1)]), "east", None, now())
            .expect("the original verifies");

    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = dir.path().join("east.tar");
    let layout = dir.path().join("layout");
    let pulled = dir.path().join("pulled");
    let again = dir.path().join("again.tar");
    std::fs::write(&bundle, &file).expect("writes");
    std::fs::create_dir(&layout).expect("mkdir");
    run(tar, &["-xf", p(&bundle), "-C", p(&layout)]);

    let registry = Registry::start(&crane);
    let reference = format!("{}/flotilla/east:bundle", registry.addr);
    run(&crane, &["push", p(&layout), &reference]);
    run(&crane, &["pull", "--format", "oci", &reference, p(&pulled)]);
    drop(registry);

    run(tar, &["-cf", p(&again), "-C", p(&pulled), "."]);
    let round_tripped = std::fs::read(&again).expect("reads");
    let verified = flotilla_shared::read_bundle(
        round_tripped.as_slice(),
        &trust(&[&key(1)]),
        "east",
        None,
        now(),
    )
    .expect("the pulled layout still verifies");

    assert_eq!(
        verified.envelope,
        signed.envelope_bytes(),
        "envelope byte for byte"
    );
    assert_eq!(verified.state, original.state);
    assert_eq!(
        verified.blobs, original.blobs,
        "every app blob byte for byte"
    );
    // Every blob the registry handed back is one we wrote, unchanged (same name, same bytes).
    let ours = dir.path().join("layout/blobs/sha256");
    for entry in std::fs::read_dir(pulled.join("blobs/sha256")).expect("blobs") {
        let entry = entry.expect("entry");
        let bytes = std::fs::read(entry.path()).expect("reads");
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(Digest::of(&bytes).hex(), name);
        assert_eq!(
            std::fs::read(ours.join(&name)).expect("we wrote this blob"),
            bytes
        );
    }
}
