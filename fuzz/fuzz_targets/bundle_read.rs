//! Bundle-file reading must never panic, and never return anything unverified.
//!
//! The first byte picks the mode: even — the input is the whole file; odd — the input
//! overwrites part of a valid fixture bundle (at an offset from the next two bytes), so the
//! fuzzer explores deep inside a well-formed tar and OCI layout instead of the first header.

#![no_main]

use std::sync::OnceLock;

use flotilla_shared::testing::{Bundle, Signed, TestApp, key, now, trust};
use flotilla_shared::{Digest, read_bundle};
use libfuzzer_sys::fuzz_target;

fn fixture() -> &'static (Signed, Vec<u8>) {
    static FIXTURE: OnceLock<(Signed, Vec<u8>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signed = Bundle::test()
            .with_app(TestApp::new("shop"))
            .with_app(TestApp::new("web"))
            .removed("old", true)
            .signed_by(&key(1));
        let file = signed.bundle_file();
        (signed, file)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let (signed, valid) = fixture();
    let input = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let Some((offset, patch)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let mut file = valid.clone();
        let at = usize::from(u16::from_le_bytes(*offset)) % file.len();
        let end = (at + patch.len()).min(file.len());
        file[at..end].copy_from_slice(&patch[..end - at]);
        file
    };
    if let Ok(bundle) = read_bundle(input.as_slice(), &trust(&[&key(1)]), "test", None, now()) {
        // Only the signed content can come out: the envelope and blobs we signed.
        assert_eq!(bundle.envelope, signed.envelope_bytes());
        for blob in &bundle.blobs {
            assert_eq!(Digest::of(&blob.bytes), blob.digest);
            assert_eq!(blob.bytes.as_slice(), signed.blob(&blob.app));
        }
    }
});
