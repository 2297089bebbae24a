//! `flotilla-hub keygen` and `flotilla-hub bundle build` as a person runs them: the binary
//! writes files, and the bundle it signs verifies with the public key it wrote.

use std::path::Path;
use std::process::{Command, Output};

use flotilla_shared::{PublicKey, TrustRoot, read_bundle};
use jiff::Timestamp;

fn hub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("runs flotilla-hub")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn keygen_then_build_then_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    let keyid = stdout(&hub(&["keygen", "--out", p(&keys)]))
        .trim()
        .to_owned();
    assert_eq!(keyid.len(), 64);
    let public = PublicKey::from_spki_pem(
        &std::fs::read_to_string(keys.join("signing.pub")).expect("public key"),
    )
    .expect("SPKI PEM");
    assert_eq!(public.keyid().as_str(), keyid);

    // Refuses to overwrite, and says so.
    let again = hub(&["keygen", "--out", p(&keys)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let shop = dir.path().join("shop");
    write(
        &shop,
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n",
    );
    write(
        &shop,
        "extra/cm.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"}}"#,
    );
    let web = dir.path().join("web");
    write(
        &web,
        "cm.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w}\n",
    );
    let out = dir.path().join("east.tar");
    let before = Timestamp::now();
    let report = stdout(&hub(&[
        "bundle",
        "build",
        "--cluster",
        "east",
        "--key",
        p(&keys.join("signing.key")),
        "--app",
        &format!("shop={},prune=true,selfHeal=true", p(&shop)),
        "--app",
        &format!("web={},namespace=web-ns,createNamespace=true", p(&web)),
        "--remove",
        "old",
        "--remove",
        "older,prune=false",
        "--expires",
        "2h",
        "--out",
        p(&out),
    ]));
    assert!(report.contains("app shop: 3 objects"), "{report}");
    assert!(report.contains(&keyid), "{report}");

    let file = std::fs::File::open(&out).expect("bundle written");
    let bundle = read_bundle(
        file,
        &TrustRoot::new([public]),
        "east",
        None,
        Timestamp::now(),
    )
    .expect("the bundle verifies with the key keygen wrote");
    let state = &bundle.state.state;
    // --generation defaults to the Unix milliseconds of now.
    let generation = i64::try_from(state.generation).expect("fits");
    assert!(
        generation >= before.as_millisecond() && generation <= Timestamp::now().as_millisecond()
    );
    assert_eq!(
        state.expires_at.duration_since(state.issued_at).as_secs(),
        2 * 3600,
        "--expires 2h"
    );
    let shop_app = state.app("shop").expect("shop");
    assert_eq!(shop_app.namespace, "shop");
    assert!(shop_app.sync_policy.prune && shop_app.sync_policy.self_heal);
    let web_app = state.app("web").expect("web");
    assert_eq!(web_app.namespace, "web-ns");
    assert!(web_app.sync_policy.create_namespace && !web_app.sync_policy.prune);
    assert_eq!(bundle.blobs[0].blob.objects.len(), 3);
    assert_eq!(bundle.blobs[1].blob.objects.len(), 1);
    let removed: Vec<(&str, bool)> = state
        .removed
        .iter()
        .map(|t| (t.name.as_str(), t.prune))
        .collect();
    assert_eq!(removed, [("old", true), ("older", false)]);

    // An explicit generation, and an empty state only with --allow-empty.
    let empty = dir.path().join("empty.tar");
    let key = keys.join("signing.key");
    let refused = hub(&[
        "bundle",
        "build",
        "--cluster",
        "east",
        "--key",
        p(&key),
        "--out",
        p(&empty),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-empty"));
    stdout(&hub(&[
        "bundle",
        "build",
        "--cluster",
        "east",
        "--key",
        p(&key),
        "--generation",
        "7",
        "--allow-empty",
        "--out",
        p(&empty),
    ]));
    let public = PublicKey::from_spki_pem(
        &std::fs::read_to_string(keys.join("signing.pub")).expect("public key"),
    )
    .expect("SPKI PEM");
    let bundle = read_bundle(
        std::fs::File::open(&empty).expect("written"),
        &TrustRoot::new([public]),
        "east",
        None,
        Timestamp::now(),
    )
    .expect("verifies");
    assert_eq!(bundle.state.state.generation, 7);
    assert!(bundle.state.state.allow_empty);
}

#[test]
fn malformed_manifests_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    stdout(&hub(&["keygen", "--out", p(&keys)]));
    let app = dir.path().join("app");
    write(
        &app,
        "good.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    write(&app, "nested/broken.yaml", "apiVersion: v1\nkind: [\n");
    let out = hub(&[
        "bundle",
        "build",
        "--cluster",
        "east",
        "--key",
        p(&keys.join("signing.key")),
        "--app",
        &format!("app={}", p(&app)),
        "--out",
        p(&dir.path().join("x.tar")),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nested/broken.yaml: invalid YAML"),
        "{stderr}"
    );
    assert!(!dir.path().join("x.tar").exists());

    // A generation the agents would refuse as too far ahead is refused at once.
    std::fs::remove_file(app.join("nested/broken.yaml")).expect("rm");
    let out = hub(&[
        "bundle",
        "build",
        "--cluster",
        "east",
        "--key",
        p(&keys.join("signing.key")),
        "--app",
        &format!("app={}", p(&app)),
        "--generation",
        "99999999999999",
        "--out",
        p(&dir.path().join("x.tar")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 24h ahead"));

    // The private key is never echoed, even when it is the wrong kind of file.
    let out = hub(&[
        "bundle",
        "build",
        "--cluster",
        "east",
        "--key",
        p(&keys.join("signing.pub")),
        "--app",
        &format!("app={}", p(&app)),
        "--out",
        p(&dir.path().join("x.tar")),
    ]);
    assert!(!out.status.success());
    let private = std::fs::read_to_string(keys.join("signing.key")).expect("reads");
    let body = private.lines().nth(1).expect("a base64 line");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(body));
}
