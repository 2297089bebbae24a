//! Our envelopes are real DSSE, not a look-alike: envelopes signed by independent
//! implementations (OpenSSL over a PAE built here by hand, and a Python DSSE implementation
//! on pyca/cryptography) verify with ours, and independent tools verify ours. Keys cross
//! over too: OpenSSL reads our PEM files and we read its.
//!
//! Needs `openssl` (3.x) and `python3` with `cryptography`. A missing tool skips its test
//! with a loud message, unless `FLOTILLA_REQUIRE_TOOLS` is set (as in CI), where it fails.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flotilla_shared::testing::{Bundle, TestApp, key, now};
use flotilla_shared::{PublicKey, STATE_PAYLOAD_TYPE, SigningKey, TrustRoot, verify};

fn tool_present(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("FLOTILLA_REQUIRE_TOOLS").is_some() {
            panic!(
                "{program} ({probe:?}) is required (FLOTILLA_REQUIRE_TOOLS is set) but unusable"
            );
        }
        eprintln!(
            "\n!!! SKIPPED: {program} {probe:?} is not usable; interoperability is NOT tested !!!\n"
        );
    }
    ok
}

fn openssl_present() -> bool {
    tool_present("openssl", &["version"])
}

fn python_present() -> bool {
    tool_present("python3", &["-c", "import cryptography"])
}

/// Runs a command, feeding `stdin`, and returns its stdout; panics with its stderr.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("writes stdin");
    let out = child.wait_with_output().expect("runs");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// PAE as the DSSE protocol document defines it, written out independently of the crate.
fn pae_by_hand(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn payload() -> Vec<u8> {
    Bundle::test()
        .with_app(TestApp::new("shop"))
        .signed_by(&key(1))
        .payload
}

#[test]
fn openssl_signed_envelope_verifies_with_ours() {
    if !openssl_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let key_pem = dir.path().join("key.pem");
    let pub_pem = dir.path().join("pub.pem");
    let pae_bin = dir.path().join("pae.bin");
    run(
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", path(&key_pem)],
        b"",
    );
    run(
        "openssl",
        &[
            "pkey",
            "-in",
            path(&key_pem),
            "-pubout",
            "-out",
            path(&pub_pem),
        ],
        b"",
    );
    let spki_der = run(
        "openssl",
        &["pkey", "-pubin", "-in", path(&pub_pem), "-outform", "DER"],
        b"",
    );
    let keyid =
        String::from_utf8(run("openssl", &["dgst", "-sha256", "-r"], &spki_der)).expect("hex");
    let keyid = keyid
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned();

    let payload = payload();
    std::fs::write(&pae_bin, pae_by_hand(STATE_PAYLOAD_TYPE, &payload)).expect("writes");
    let sig = run(
        "openssl",
        &[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            path(&key_pem),
            "-in",
            path(&pae_bin),
        ],
        b"",
    );
    assert_eq!(sig.len(), 64);
    let envelope = serde_json::json!({
        "payloadType": STATE_PAYLOAD_TYPE,
        "payload": STANDARD.encode(&payload),
        "signatures": [{"keyid": keyid, "sig": STANDARD.encode(&sig)}],
    });

    let public = PublicKey::from_spki_pem(&std::fs::read_to_string(&pub_pem).expect("reads"))
        .expect("we read OpenSSL's SPKI PEM");
    assert_eq!(
        public.keyid().as_str(),
        keyid,
        "keyid = sha256 of the SPKI DER, as OpenSSL computes it"
    );
    let private = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key_pem).expect("reads"))
        .expect("we read OpenSSL's PKCS#8 PEM");
    assert_eq!(private.keyid().as_str(), keyid);

    let verified = verify(
        &serde_json::to_vec(&envelope).expect("json"),
        &TrustRoot::new([public]),
        "test",
        None,
        now(),
    )
    .expect("an OpenSSL-signed DSSE envelope verifies");
    assert_eq!(verified.payload, payload);
    assert_eq!(verified.keyid.as_str(), keyid);
}

#[test]
fn openssl_verifies_our_envelope_and_reads_our_keys() {
    if !openssl_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = SigningKey::from_seed([42; 32]);
    let key_pem = dir.path().join("ours.key");
    let pub_pem = dir.path().join("ours.pub");
    std::fs::write(&key_pem, ours.to_pkcs8_pem().as_bytes()).expect("writes");
    std::fs::write(&pub_pem, ours.public_key().to_spki_pem()).expect("writes");
    // OpenSSL derives the same public key from our private key file.
    let derived = run("openssl", &["pkey", "-in", path(&key_pem), "-pubout"], b"");
    assert_eq!(
        String::from_utf8(derived).expect("PEM"),
        ours.public_key().to_spki_pem()
    );

    let signed = Bundle::test()
        .with_app(TestApp::new("shop"))
        .signed_by(&ours);
    // Read our envelope as generic JSON, as any DSSE consumer would.
    let envelope: serde_json::Value =
        serde_json::from_slice(&signed.envelope_bytes()).expect("json");
    let payload_type = envelope["payloadType"].as_str().expect("payloadType");
    let payload = STANDARD
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    let sig = STANDARD
        .decode(envelope["signatures"][0]["sig"].as_str().expect("sig"))
        .expect("base64");
    let pae_bin = dir.path().join("pae.bin");
    let sig_bin = dir.path().join("sig.bin");
    std::fs::write(&pae_bin, pae_by_hand(payload_type, &payload)).expect("writes");
    std::fs::write(&sig_bin, &sig).expect("writes");
    let out = run(
        "openssl",
        &[
            "pkeyutl",
            "-verify",
            "-rawin",
            "-pubin",
            "-inkey",
            path(&pub_pem),
            "-in",
            path(&pae_bin),
            "-sigfile",
            path(&sig_bin),
        ],
        b"",
    );
    assert!(String::from_utf8_lossy(&out).contains("Signature Verified Successfully"));

    // And OpenSSL refuses it once a byte of the payload changes.
    let mut altered = payload.clone();
    altered[0] ^= 1;
    std::fs::write(&pae_bin, pae_by_hand(payload_type, &altered)).expect("writes");
    let status = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-rawin",
            "-pubin",
            "-inkey",
            path(&pub_pem),
            "-in",
            path(&pae_bin),
            "-sigfile",
            path(&sig_bin),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runs");
    assert!(!status.success());
}

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/dsse_reference.py"
);

#[test]
fn python_reference_signed_envelope_verifies_with_ours() {
    if !python_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = SigningKey::from_seed([7; 32]);
    let key_pem = dir.path().join("key.pem");
    std::fs::write(&key_pem, signer.to_pkcs8_pem().as_bytes()).expect("writes");
    let payload = payload();
    let envelope = run(
        "python3",
        &[REFERENCE, "sign", path(&key_pem), STATE_PAYLOAD_TYPE],
        &payload,
    );
    let verified = verify(
        &envelope,
        &TrustRoot::new([signer.public_key().clone()]),
        "test",
        None,
        now(),
    )
    .expect("the reference envelope verifies");
    assert_eq!(verified.payload, payload);
    assert_eq!(
        &verified.keyid,
        signer.keyid(),
        "same keyid computed independently"
    );
}

#[test]
fn python_reference_verifies_our_envelope() {
    if !python_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = SigningKey::from_seed([8; 32]);
    let pub_pem = dir.path().join("pub.pem");
    std::fs::write(&pub_pem, signer.public_key().to_spki_pem()).expect("writes");
    let signed = Bundle::test()
        .with_app(TestApp::new("shop"))
        .signed_by(&signer);
    let payload = run(
        "python3",
        &[REFERENCE, "verify", path(&pub_pem), STATE_PAYLOAD_TYPE],
        &signed.envelope_bytes(),
    );
    assert_eq!(payload, signed.payload);
}
