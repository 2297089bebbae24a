//! `flotilla-agent verify` as an operator runs it: exit 0 and a summary for a good bundle,
//! nonzero and the precise reason for every refused one.

use std::path::Path;
use std::process::{Command, Output};

use flotilla_shared::testing::{Bundle, TestApp, config_map, key};
use jiff::{SignedDuration, Timestamp};

fn fresh() -> Bundle {
    let now = Timestamp::now();
    Bundle::test()
        .cluster("east")
        .issued_at(now)
        .expires_at(now + SignedDuration::from_hours(1))
        .generation(u64::try_from(now.as_millisecond()).expect("after 1970"))
        .with_app(
            TestApp::new("shop")
                .object(config_map("shop", "second"))
                .object(config_map("shop", "third")),
        )
        .removed("old", true)
}

fn agent(bundle: &Path, trust: &[&Path], cluster: &str, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla-agent"));
    command.arg("verify").arg("--bundle").arg(bundle);
    for key in trust {
        command.arg("--trust-key").arg(key);
    }
    command
        .args(["--cluster", cluster])
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("runs flotilla-agent")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for n in [1u8, 2] {
            std::fs::write(
                dir.path().join(format!("key{n}.pub")),
                key(n).public_key().to_spki_pem(),
            )
            .expect("write key");
        }
        Self { dir }
    }

    fn key(&self, n: u8) -> std::path::PathBuf {
        self.dir.path().join(format!("key{n}.pub"))
    }

    fn bundle(&self, bytes: &[u8]) -> std::path::PathBuf {
        let path = self.dir.path().join("bundle.tar");
        std::fs::write(&path, bytes).expect("write bundle");
        path
    }
}

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should be refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_good_bundle_verifies_and_is_summarised() {
    let fixture = Fixture::new();
    let signed = fresh().signed_by(&key(1));
    let bundle = fixture.bundle(&signed.bundle_file());
    let out = agent(&bundle, &[&fixture.key(2), &fixture.key(1)], "east", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(report.contains("verified: cluster east"), "{report}");
    assert!(
        report.contains(&format!("generation: {}", signed.state.generation)),
        "{report}"
    );
    assert!(
        report.contains(&format!("expires: {}", signed.state.expires_at)),
        "{report}"
    );
    assert!(
        report.contains(&format!("signed by: {}", key(1).keyid())),
        "{report}"
    );
    let app = &signed.state.apps[0];
    assert!(
        report.contains(&format!(
            "shop namespace=shop objects=3 blob={}",
            app.blob.digest
        )),
        "{report}"
    );
    assert!(report.contains("old prune=true"), "{report}");

    // An older last generation is fine; a newer one makes this a rollback.
    let older = (signed.state.generation - 1).to_string();
    let out = agent(
        &bundle,
        &[&fixture.key(1)],
        "east",
        &["--last-generation", &older],
    );
    assert!(out.status.success());
    let newer = (signed.state.generation + 1).to_string();
    let stderr = refused(&agent(
        &bundle,
        &[&fixture.key(1)],
        "east",
        &["--last-generation", &newer],
    ));
    assert!(
        stderr.contains("is older than the last accepted generation"),
        "{stderr}"
    );
}

#[test]
fn every_refusal_says_why() {
    let fixture = Fixture::new();
    let good = fresh().signed_by(&key(1));

    let bundle = fixture.bundle(&good.bundle_file());
    let stderr = refused(&agent(&bundle, &[&fixture.key(1)], "west", &[]));
    assert!(
        stderr.contains("state is for cluster \"east\", but this is cluster \"west\""),
        "{stderr}"
    );

    let stderr = refused(&agent(&bundle, &[&fixture.key(2)], "east", &[]));
    assert!(stderr.contains("no signature by a trusted key"), "{stderr}");

    let expired = fresh()
        .issued_at(Timestamp::now() - SignedDuration::from_hours(3))
        .expires_at(Timestamp::now() - SignedDuration::from_hours(1))
        .generation(1)
        .signed_by(&key(1));
    let stderr = refused(&agent(
        &fixture.bundle(&expired.bundle_file()),
        &[&fixture.key(1)],
        "east",
        &[],
    ));
    assert!(stderr.contains("state expired at"), "{stderr}");

    // One byte of an app blob changed inside the file.
    let mut file = good.bundle_file();
    let blob = good.blob("shop");
    let at = file
        .windows(blob.len())
        .position(|w| w == blob)
        .expect("blob stored verbatim")
        + blob.len() / 2;
    file[at] ^= 0x01;
    let stderr = refused(&agent(
        &fixture.bundle(&file),
        &[&fixture.key(1)],
        "east",
        &[],
    ));
    assert!(stderr.contains("does not match its digest"), "{stderr}");

    let stderr = refused(&agent(
        &fixture.bundle(&good.bundle_file()[..700]),
        &[&fixture.key(1)],
        "east",
        &[],
    ));
    assert!(stderr.contains("not a complete tar archive"), "{stderr}");

    // Missing files are errors too, naming the file.
    let stderr = refused(&agent(
        &fixture.dir.path().join("nope.tar"),
        &[&fixture.key(1)],
        "east",
        &[],
    ));
    assert!(stderr.contains("nope.tar"), "{stderr}");
}
