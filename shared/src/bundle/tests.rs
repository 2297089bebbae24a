//! Bundle files: the layout we write, the round trip, and every way a file is refused.

use std::io::Read as _;

use tar::EntryType;

use super::*;
use crate::testing::{Bundle, Signed, TestApp, key, now, trust};

fn signed() -> Signed {
    Bundle::test()
        .with_app(TestApp::new("shop"))
        .with_app(TestApp::new("web").object(crate::testing::config_map("web", "second")))
        .removed("old", true)
        .signed_by(&key(1))
}

fn read(bytes: &[u8]) -> Result<VerifiedBundle, BundleError> {
    read_bundle(bytes, &trust(&[&key(1)]), "test", None, now())
}

/// The entries of a tar: name, type, content.
fn entries(bytes: &[u8]) -> Vec<(String, EntryType, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("a tar")
        .map(|entry| {
            let mut entry = entry.expect("an entry");
            let name = entry.path().expect("a path").to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("content");
            (name, kind, content)
        })
        .collect()
}

/// A tar with raw names (no checks, so `..`, `/` and links can be written).
fn tar_of(entries: &[(String, EntryType, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, content) in entries {
        let mut header = tar::Header::new_ustar();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        if matches!(kind, EntryType::Symlink | EntryType::Link) {
            header.set_link_name("index.json").expect("a link name");
        }
        header.set_cksum();
        builder
            .append(&header, content.as_slice())
            .expect("in memory");
    }
    builder.into_inner().expect("in memory")
}

fn refused(bytes: &[u8]) -> String {
    read(bytes).expect_err("refused").to_string()
}

#[test]
fn round_trip_returns_exactly_what_was_signed() {
    let signed = signed();
    let file = signed.bundle_file();
    let bundle = read(&file).expect("verifies");
    assert_eq!(bundle.envelope, signed.envelope_bytes());
    assert_eq!(bundle.state.state, signed.state);
    assert_eq!(bundle.blobs.len(), 2);
    for (verified, (app, bytes)) in bundle.blobs.iter().zip(&signed.blobs) {
        assert_eq!(&verified.app, app);
        assert_eq!(&verified.bytes, bytes);
        assert_eq!(verified.digest, Digest::of(bytes));
    }
    // Deterministic: the same input gives the same file.
    assert_eq!(signed.bundle_file(), file);
}

#[test]
fn the_file_is_the_oci_layout_of_the_design() {
    let signed = signed();
    let files = entries(&signed.bundle_file());
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["oci-layout", "index.json", "blobs/", "blobs/sha256/"]
    );
    assert_eq!(
        files.len(),
        4 + 5,
        "manifest, config, envelope and two app blobs"
    );
    assert_eq!(files[0].2, br#"{"imageLayoutVersion":"1.0.0"}"#);
    let blob = |digest: &serde_json::Value| -> Vec<u8> {
        let digest: Digest = digest.as_str().expect("a digest").parse().expect("valid");
        let name = format!("blobs/sha256/{}", digest.hex());
        files
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, c)| c.clone())
            .expect("blob present")
    };
    let index: serde_json::Value = serde_json::from_slice(&files[1].2).expect("json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"].as_array().expect("array").len(), 1);
    assert_eq!(index["manifests"][0]["mediaType"], MEDIA_TYPE_MANIFEST);
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).expect("json");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.flotilla.bundle.v1"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        manifest["config"]["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(manifest["config"]["size"], 2);
    assert_eq!(blob(&manifest["config"]["digest"]), b"{}");
    let layers = manifest["layers"].as_array().expect("array");
    assert_eq!(layers.len(), 3);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.flotilla.cluster-state.v1+dsse+json"
    );
    assert_eq!(
        layers[0]["annotations"][ANNOTATION_TITLE],
        "cluster-state.dsse.json"
    );
    assert_eq!(blob(&layers[0]["digest"]), signed.envelope_bytes());
    for (layer, app) in layers[1..].iter().zip(["shop", "web"]) {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.flotilla.app-blob.v1+json"
        );
        assert_eq!(
            layer["annotations"][ANNOTATION_TITLE],
            format!("{app}.app-blob.json")
        );
        assert_eq!(blob(&layer["digest"]), signed.blob(app));
        assert_eq!(layer["size"], signed.blob(app).len());
    }
}

#[test]
fn paths_as_tar_writes_them_are_accepted() {
    // `tar -C layout -cf bundle.tar .` writes `./`, `./oci-layout`, `./blobs/sha256/…`.
    let mut files = entries(&signed().bundle_file());
    for (name, _, _) in &mut files {
        *name = format!("./{name}");
    }
    files.insert(0, ("./".to_owned(), EntryType::Directory, Vec::new()));
    assert!(read(&tar_of(&files)).is_ok());
}

#[test]
fn truncated_files_are_refused() {
    let file = signed().bundle_file();
    // Every cut, at block boundaries (where tar readers see a clean end) and inside blocks.
    for cut in (0..file.len())
        .step_by(512)
        .chain((100..file.len()).step_by(997))
    {
        let err = read(&file[..cut]).expect_err("truncated");
        assert!(
            matches!(err, BundleError::Tar(_) | BundleError::Layout(_)),
            "cut at {cut}: {err}"
        );
    }
    // Cut inside the end-of-archive marker.
    let err = read(&file[..file.len() - 512]).expect_err("half a marker");
    assert!(
        err.to_string().contains("end-of-archive marker is missing"),
        "{err}"
    );
}

#[test]
fn trailing_data_is_refused() {
    let mut file = signed().bundle_file();
    file.extend_from_slice(b"hello");
    assert!(refused(&file).contains("end-of-archive marker"));
}

#[test]
fn oversized_files_and_entries_are_refused() {
    let file = signed().bundle_file();
    let policy = Policy {
        max_bundle_bytes: file.len() as u64 - 1,
        ..Policy::default()
    };
    let err = policy
        .read_bundle(file.as_slice(), &trust(&[&key(1)]), "test", None, now())
        .expect_err("too large");
    assert!(matches!(err, BundleError::TooLarge { .. }));

    let policy = Policy {
        max_bundle_entries: 5,
        ..Policy::default()
    };
    let err = policy
        .read_bundle(file.as_slice(), &trust(&[&key(1)]), "test", None, now())
        .expect_err("too many entries");
    assert_eq!(
        err.to_string(),
        "bundle file has more than the limit of 5 entries"
    );

    let policy = Policy {
        max_blob_bytes: 100,
        max_envelope_bytes: 100,
        ..Policy::default()
    };
    let err = policy
        .read_bundle(file.as_slice(), &trust(&[&key(1)]), "test", None, now())
        .expect_err("entry too large");
    assert!(matches!(err, BundleError::Entry { .. }), "{err}");
}

#[test]
fn unsafe_entries_are_refused() {
    let good = entries(&signed().bundle_file());
    let with = |extra: (&str, EntryType, &[u8])| {
        let mut files = good.clone();
        files.push((extra.0.to_owned(), extra.1, extra.2.to_vec()));
        refused(&tar_of(&files))
    };
    assert!(with(("../evil", EntryType::Regular, b"x")).contains("leaves the layout"));
    assert!(with(("blobs/../../evil", EntryType::Regular, b"x")).contains("leaves the layout"));
    assert!(with(("/etc/passwd", EntryType::Regular, b"x")).contains("absolute"));
    assert!(with(("link", EntryType::Symlink, b"")).contains("symbolic links"));
    assert!(with(("hard", EntryType::Link, b"")).contains("hard links"));
    assert!(with(("fifo", EntryType::Fifo, b"")).contains("only regular files"));
    assert!(with(("README", EntryType::Regular, b"x")).contains("not part of"));
    assert!(with(("blobs/sha256/ABC", EntryType::Regular, b"x")).contains("64 lowercase hex"));
    // An entry that appears twice, even under another spelling.
    let index = good[1].2.clone();
    assert!(with(("./index.json", EntryType::Regular, &index)).contains("appears twice"));
    // A stray blob that the manifest does not name.
    let stray = format!("blobs/sha256/{}", Digest::of(b"stray").hex());
    assert!(with((&stray, EntryType::Regular, b"stray")).contains("not referenced"));
}

#[test]
fn a_changed_blob_is_refused() {
    let signed = signed();
    let mut files = entries(&signed.bundle_file());
    let shop = Digest::of(signed.blob("shop")).hex();
    let (_, _, content) = files
        .iter_mut()
        .find(|(name, _, _)| name.ends_with(&shop))
        .expect("shop blob");
    content[5] ^= 0x01;
    let err = read(&tar_of(&files)).expect_err("altered blob");
    assert!(matches!(err, BundleError::CorruptBlob { .. }), "{err}");
}

#[test]
fn blobs_must_match_the_signed_state() {
    let signed = signed();
    let envelope = signed.envelope_bytes();
    // A consistent OCI layout whose app blob is not the one the state signed.
    let other = TestApp::new("shop")
        .object(crate::testing::config_map("shop", "x"))
        .blob_bytes();
    let file = write_bundle(
        Vec::new(),
        &envelope,
        &[("shop", &other), ("web", signed.blob("web"))],
    )
    .expect("in memory");
    let err = read(&file).expect_err("blob not signed");
    assert!(
        matches!(err, BundleError::MissingBlob { ref app, .. } if app == "shop"),
        "{err}"
    );

    // A blob left out.
    let file =
        write_bundle(Vec::new(), &envelope, &[("web", signed.blob("web"))]).expect("in memory");
    assert!(matches!(read(&file), Err(BundleError::MissingBlob { .. })));
}

#[test]
fn the_envelope_is_verified() {
    let signed = Bundle::test()
        .with_app(TestApp::new("shop"))
        .signed_by(&key(2));
    let err = read(&signed.bundle_file()).expect_err("untrusted");
    assert!(matches!(
        err,
        BundleError::Rejected(Rejection::UnknownKey { .. })
    ));
    assert!(
        err.to_string()
            .starts_with("bundle is rejected: envelope has no signature by a trusted key")
    );

    let wrong = Bundle::test()
        .cluster("east")
        .with_app(TestApp::new("shop"))
        .signed_by(&key(1));
    assert!(matches!(
        read(&wrong.bundle_file()),
        Err(BundleError::Rejected(Rejection::WrongCluster { .. }))
    ));
}

#[test]
fn not_a_tar_at_all() {
    assert!(read(b"").is_err());
    assert!(
        read(&[0u8; 1024]).is_err(),
        "an empty archive has no layout"
    );
    assert!(read(&[7u8; 2048]).is_err());
}
