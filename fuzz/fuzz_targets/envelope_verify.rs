//! Envelope parsing and verification must never panic, whatever the bytes.
//!
//! The first byte picks the mode: even — the input is the envelope itself (JSON syntax,
//! base64, signatures); odd — the rest is a payload that a trusted key signs, so the fuzzer
//! gets past the signature into cluster-state parsing and every acceptance rule, and each
//! verified state's blobs are checked too.

#![no_main]

use flotilla_shared::testing::{key, now, sign_raw, trust};
use flotilla_shared::{STATE_PAYLOAD_TYPE, verify, verify_blob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let signer = key(1);
    let root = trust(&[&signer]);
    let envelope = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        sign_raw(STATE_PAYLOAD_TYPE, rest, &signer)
    };
    if let Ok(verified) = verify(&envelope, &root, "test", None, now()) {
        // A verified state always re-verifies as the same state.
        let again = verify(
            &envelope,
            &root,
            "test",
            Some(&verified.last_accepted()),
            now(),
        )
        .expect("an accepted state is accepted again");
        assert!(again.same_as_last);
        for app in &verified.state.apps {
            let _ = verify_blob(app, rest);
        }
    }
});
