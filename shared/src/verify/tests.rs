//! One test per acceptance rule and rejection reason, plus property tests of sign/verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::SignedDuration;
use proptest::prelude::*;

use super::*;
use crate::envelope::Signature;
use crate::testing::{Bundle, TestApp, key, now, sign_raw, trust};

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

/// Verifies as cluster `test` at the fixture's `now`, trusting key 1.
fn check(envelope: &[u8], last: Option<&LastAccepted>) -> Result<VerifiedState, Rejection> {
    verify(envelope, &trust(&[&key(1)]), "test", last, now())
}

fn one_app() -> Bundle {
    Bundle::test().with_app(TestApp::new("shop"))
}

#[test]
fn accepts_a_well_formed_state() {
    let signed = one_app().removed("old", true).signed_by(&key(1));
    let verified = check(&signed.envelope_bytes(), None).expect("accepted");
    assert_eq!(verified.state, signed.state);
    assert_eq!(verified.payload, signed.payload);
    assert_eq!(verified.payload_digest, Digest::of(&signed.payload));
    assert_eq!(&verified.keyid, key(1).keyid());
    assert!(verified.unknown_fields.is_empty());
    assert!(!verified.same_as_last);
    let blob = verify_blob(&verified.state.apps[0], signed.blob("shop")).expect("blob matches");
    assert_eq!(blob.app, None, "blobs are content only");
    assert_eq!(blob.objects.len(), 1);
}

#[test]
fn any_trusted_key_suffices() {
    let signed = one_app().signed_by(&key(2));
    let root = trust(&[&key(1), &key(2)]);
    let verified =
        verify(&signed.envelope_bytes(), &root, "test", None, now()).expect("key 2 is trusted");
    assert_eq!(&verified.keyid, key(2).keyid());

    // An extra signature by an unknown key does not get in the way.
    let signed = one_app().signed_by_all(&[&key(3), &key(1)]);
    assert!(check(&signed.envelope_bytes(), None).is_ok());

    // An empty keyid (allowed by DSSE) is tried against every trusted key.
    let mut signed = one_app().signed_by(&key(1));
    signed.envelope.signatures[0].keyid.clear();
    assert!(check(&signed.envelope_bytes(), None).is_ok());
}

#[test]
fn unknown_key() {
    let signed = one_app().signed_by(&key(2));
    let err = check(&signed.envelope_bytes(), None).expect_err("key 2 is not trusted");
    assert_eq!(
        err,
        Rejection::UnknownKey {
            keyids: vec![key(2).keyid().to_string()]
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "envelope has no signature by a trusted key (signed by {})",
            key(2).keyid()
        )
    );
    let mut unsigned = signed;
    unsigned.envelope.signatures.clear();
    assert_eq!(
        check(&unsigned.envelope_bytes(), None),
        Err(Rejection::UnknownKey { keyids: vec![] })
    );
}

fn bad_signature(envelope: &Envelope) {
    let err = check(&envelope.to_json(), None).expect_err("altered");
    assert_eq!(
        err,
        Rejection::BadSignature {
            keyid: key(1).keyid().to_string()
        }
    );
}

#[test]
fn one_byte_change_of_the_payload_breaks_the_signature() {
    let signed = one_app().signed_by(&key(1));
    let mut payload = signed.payload.clone();
    // `"generation":1795…` → change one digit of the generation.
    let at = payload
        .windows(13)
        .position(|w| w == b"\"generation\":")
        .expect("has a generation")
        + 13;
    payload[at] = if payload[at] == b'9' { b'8' } else { b'9' };
    let mut envelope = signed.envelope.clone();
    envelope.payload = STANDARD.encode(&payload);
    bad_signature(&envelope);
}

#[test]
fn one_byte_change_of_the_signature_breaks_it() {
    let signed = one_app().signed_by(&key(1));
    let mut sig = STANDARD
        .decode(&signed.envelope.signatures[0].sig)
        .expect("base64");
    sig[10] ^= 0x01;
    let mut envelope = signed.envelope.clone();
    envelope.signatures[0].sig = STANDARD.encode(&sig);
    bad_signature(&envelope);

    // Truncated, and not base64 at all.
    envelope.signatures[0].sig = STANDARD.encode(&sig[..63]);
    bad_signature(&envelope);
    envelope.signatures[0].sig = "!!".to_owned();
    bad_signature(&envelope);
}

#[test]
fn a_signature_by_another_key_under_a_trusted_keyid_is_bad() {
    let honest = one_app().signed_by(&key(1));
    let forged = one_app().generation(u64::MAX / 4).signed_by(&key(2));
    let envelope = Envelope {
        signatures: vec![Signature {
            keyid: key(1).keyid().to_string(),
            sig: forged.envelope.signatures[0].sig.clone(),
        }],
        ..honest.envelope
    };
    bad_signature(&envelope);
}

#[test]
fn the_signature_covers_the_payload_type() {
    // Swapping in another payload type invalidates the PAE, so it is a bad signature...
    let mut signed = one_app().signed_by(&key(1));
    signed.envelope.payload_type = "application/json".to_owned();
    bad_signature(&signed.envelope);
    // ...while a validly signed other type is refused as such.
    let other = one_app()
        .payload_type("application/vnd.in-toto+json")
        .signed_by(&key(1));
    assert_eq!(
        check(&other.envelope_bytes(), None),
        Err(Rejection::WrongPayloadType {
            got: "application/vnd.in-toto+json".to_owned()
        })
    );
}

#[test]
fn wrong_cluster() {
    let signed = one_app().cluster("west").signed_by(&key(1));
    let err = check(&signed.envelope_bytes(), None).expect_err("not ours");
    assert_eq!(
        err.to_string(),
        "state is for cluster \"west\", but this is cluster \"test\""
    );
}

#[test]
fn generations_only_move_forward() {
    let first = one_app()
        .generation(100)
        .issued_at(now())
        .signed_by(&key(1));
    let accepted = check(&first.envelope_bytes(), None).expect("first");
    let last = accepted.last_accepted();
    assert_eq!(last.generation, 100);

    // The same bytes again: an idempotent re-fetch.
    let again = check(&first.envelope_bytes(), Some(&last)).expect("re-fetch");
    assert!(again.same_as_last);

    // Higher is fine.
    let next = one_app().generation(101).signed_by(&key(1));
    assert!(
        !check(&next.envelope_bytes(), Some(&last))
            .expect("newer")
            .same_as_last
    );

    // Lower is a rollback.
    let older = one_app().generation(99).signed_by(&key(1));
    let err = check(&older.envelope_bytes(), Some(&last)).expect_err("rollback");
    assert_eq!(err, Rejection::RolledBack { got: 99, last: 100 });
    assert_eq!(
        err.to_string(),
        "generation 99 is older than the last accepted generation 100 (rollback)"
    );

    // The same generation with other content is not a re-fetch.
    let forked = one_app()
        .generation(100)
        .with_app(TestApp::new("extra"))
        .signed_by(&key(1));
    assert_eq!(
        check(&forked.envelope_bytes(), Some(&last)),
        Err(Rejection::GenerationReused { generation: 100 })
    );
}

#[test]
fn generation_ceiling_is_issued_at_plus_24_hours() {
    let ceiling = u64::try_from(now().as_millisecond()).expect("positive") + 24 * 3600 * 1000;
    let at_ceiling = one_app().generation(ceiling).signed_by(&key(1));
    assert!(check(&at_ceiling.envelope_bytes(), None).is_ok());
    let beyond = one_app().generation(ceiling + 1).signed_by(&key(1));
    let err = check(&beyond.envelope_bytes(), None).expect_err("too far ahead");
    assert!(
        matches!(err, Rejection::GenerationTooFarAhead { generation, .. } if generation == ceiling + 1)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "generation {} is implausibly far ahead: more than 24h after issuedAt 2026-11-28T00:00:00Z (at most {ceiling})",
            ceiling + 1
        )
    );
    // A hub clock in 2099 cannot lock the agent out: the 2099 generation is refused.
    let typo = one_app().generation(4_070_908_800_000).signed_by(&key(1));
    assert!(matches!(
        check(&typo.envelope_bytes(), None),
        Err(Rejection::GenerationTooFarAhead { .. })
    ));
}

#[test]
fn not_yet_valid_beyond_the_skew() {
    let within = one_app().issued_at(now() + minutes(5)).signed_by(&key(1));
    assert!(check(&within.envelope_bytes(), None).is_ok());
    let future = now() + minutes(5) + SignedDuration::from_millis(1);
    let beyond = one_app().issued_at(future).signed_by(&key(1));
    let err = check(&beyond.envelope_bytes(), None).expect_err("from the future");
    assert_eq!(
        err,
        Rejection::NotYetValid {
            issued_at: future,
            now: now(),
            skew: minutes(5)
        }
    );
    assert_eq!(
        err.to_string(),
        "state is not yet valid: issued at 2026-11-28T00:05:00.001Z, now is 2026-11-28T00:00:00Z (clock skew allowed: 5m)"
    );
}

#[test]
fn expired_beyond_the_skew() {
    let issued = now() - SignedDuration::from_hours(24);
    let state = |expires| {
        one_app()
            .generation(1)
            .issued_at(issued)
            .expires_at(expires)
            .signed_by(&key(1))
            .envelope_bytes()
    };
    let barely = now() - minutes(5) + SignedDuration::from_millis(1);
    assert!(check(&state(barely), None).is_ok());
    let at = now() - minutes(5);
    let err = check(&state(at), None).expect_err("expired");
    assert_eq!(err, Rejection::Expired { at, now: now() });
    assert_eq!(
        err.to_string(),
        "state expired at 2026-11-27T23:55:00Z (now is 2026-11-28T00:00:00Z)"
    );
}

#[test]
fn the_skew_is_configurable() {
    let policy = Policy {
        skew: SignedDuration::ZERO,
        ..Policy::default()
    };
    let signed = one_app()
        .issued_at(now() + SignedDuration::from_secs(1))
        .signed_by(&key(1));
    let root = trust(&[&key(1)]);
    assert!(matches!(
        policy.verify(&signed.envelope_bytes(), &root, "test", None, now()),
        Err(Rejection::NotYetValid { .. })
    ));
    assert!(check(&signed.envelope_bytes(), None).is_ok());
}

#[test]
fn an_empty_state_needs_allow_empty() {
    let empty = Bundle::test().signed_by(&key(1));
    let err = check(&empty.envelope_bytes(), None).expect_err("empty");
    assert_eq!(err, Rejection::Empty);
    assert_eq!(
        err.to_string(),
        "state has no apps and does not set allowEmpty"
    );
    // Tombstones alone do not make a state non-empty.
    let only_removals = Bundle::test().removed("old", true).signed_by(&key(1));
    assert_eq!(
        check(&only_removals.envelope_bytes(), None),
        Err(Rejection::Empty)
    );
    let allowed = Bundle::test().allow_empty(true).signed_by(&key(1));
    assert!(check(&allowed.envelope_bytes(), None).is_ok());
}

fn malformed_what(result: Result<VerifiedState, Rejection>) -> String {
    match result {
        Err(Rejection::Malformed { what, reason }) => format!("{what}: {reason}"),
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn malformed_envelopes_and_payloads() {
    assert!(malformed_what(check(b"", None)).starts_with("envelope: "));
    assert!(malformed_what(check(b"{\"payloadType\":1}", None)).starts_with("envelope: "));
    let mut signed = one_app().signed_by(&key(1));
    signed.envelope.payload = "not base64!".to_owned();
    assert!(malformed_what(check(&signed.envelope_bytes(), None)).contains("base64"));

    // Validly signed, but not a cluster state.
    let raw = |payload: &[u8]| sign_raw(STATE_PAYLOAD_TYPE, payload, &key(1));
    assert!(malformed_what(check(&raw(b"[]"), None)).starts_with("cluster state: "));
    assert!(malformed_what(check(&raw(b"\xff"), None)).starts_with("cluster state: "));
    let mut value: serde_json::Value =
        serde_json::from_slice(&one_app().signed_by(&key(1)).payload).expect("json");
    value["apiVersion"] = "flotilla.dev/v2".into();
    let reason = malformed_what(check(
        &raw(&serde_json::to_vec(&value).expect("json")),
        None,
    ));
    assert_eq!(
        reason,
        "cluster state: apiVersion is \"flotilla.dev/v2\", expected \"flotilla.dev/v1\""
    );
    // Trailing data after the JSON document.
    let mut payload = one_app().signed_by(&key(1)).payload;
    payload.extend_from_slice(b" {}");
    assert!(malformed_what(check(&raw(&payload), None)).starts_with("cluster state: "));

    let too_many = Envelope {
        signatures: vec![signed.envelope.signatures[0].clone(); 17],
        ..one_app().signed_by(&key(1)).envelope
    };
    assert!(malformed_what(check(&too_many.to_json(), None)).contains("17 signatures"));
}

#[test]
fn unknown_fields_are_reported_not_refused() {
    let mut value: serde_json::Value =
        serde_json::from_slice(&one_app().signed_by(&key(1)).payload).expect("json");
    value["rolloutGroup"] = "canary".into();
    let envelope = sign_raw(
        STATE_PAYLOAD_TYPE,
        &serde_json::to_vec(&value).expect("json"),
        &key(1),
    );
    let verified = check(&envelope, None).expect("v1 ignores unknown fields");
    assert_eq!(verified.unknown_fields, ["rolloutGroup"]);
}

#[test]
fn envelopes_over_the_size_cap_are_refused_before_parsing() {
    let policy = Policy {
        max_envelope_bytes: 100,
        ..Policy::default()
    };
    let garbage = vec![b'{'; 101];
    assert_eq!(
        policy.verify(&garbage, &trust(&[&key(1)]), "test", None, now()),
        Err(Rejection::TooLarge {
            what: "envelope".to_owned(),
            size: 101,
            limit: 100
        })
    );
}

#[test]
fn blobs_are_checked_against_size_and_digest_before_parsing() {
    let signed = one_app().signed_by(&key(1));
    let app = &signed.state.apps[0];
    let blob = signed.blob("shop");

    // One byte changed: same size, other digest.
    let mut changed = blob.to_vec();
    let at = changed.len() / 2;
    changed[at] ^= 0x20;
    let err = verify_blob(app, &changed).expect_err("altered blob");
    assert!(matches!(err, Rejection::BlobDigestMismatch { ref app, .. } if app == "shop"));
    assert!(
        err.to_string()
            .starts_with("blob of app shop has digest sha256:")
    );

    // One byte more: refused by size without hashing or parsing.
    let mut longer = blob.to_vec();
    longer.push(b' ');
    assert_eq!(
        verify_blob(app, &longer),
        Err(Rejection::BlobSizeMismatch {
            app: "shop".to_owned(),
            expected: blob.len() as u64,
            got: blob.len() as u64 + 1
        })
    );

    // Over the hard cap.
    let policy = Policy {
        max_blob_bytes: 10,
        ..Policy::default()
    };
    assert!(matches!(
        policy.verify_blob(app, blob),
        Err(Rejection::TooLarge { .. })
    ));
}

#[test]
fn a_blob_that_matches_its_digest_must_still_be_a_blob_of_this_app() {
    let mut signed = one_app().signed_by(&key(1));
    let garbage = b"not json";
    signed.state.apps[0].blob = crate::state::BlobRef::of(garbage);
    let err = verify_blob(&signed.state.apps[0], garbage).expect_err("not a blob");
    assert!(err.to_string().starts_with("malformed blob of app shop: "));

    // A blob that names an app must name this one.
    let mut named = crate::blob::AppBlob::new(vec![]).expect("empty blob");
    named.app = Some("other".to_owned());
    let other = named.to_canonical_json();
    signed.state.apps[0].blob = crate::state::BlobRef::of(&other);
    let err = verify_blob(&signed.state.apps[0], &other).expect_err("wrong app");
    assert_eq!(
        err.to_string(),
        "malformed blob of app shop: it is the blob of app \"other\""
    );
    named.app = Some("shop".to_owned());
    let own = named.to_canonical_json();
    signed.state.apps[0].blob = crate::state::BlobRef::of(&own);
    assert!(verify_blob(&signed.state.apps[0], &own).is_ok());
}

#[test]
fn apps_with_identical_objects_share_one_blob() {
    let objects = vec![crate::testing::config_map("web", "settings")];
    let a = TestApp::new("web-east").objects(objects.clone());
    let b = TestApp::new("web-west").objects(objects);
    assert_eq!(
        a.blob_bytes(),
        b.blob_bytes(),
        "a blob does not name its app"
    );
    let bytes = a.blob_bytes();
    let signed = Bundle::test().with_app(a).with_app(b).signed_by(&key(1));
    for app in &signed.state.apps {
        assert!(verify_blob(app, &bytes).is_ok(), "{}", app.name);
    }
}

#[test]
fn rejection_messages_are_lowercase_without_trailing_period() {
    let samples = [
        Rejection::Empty,
        Rejection::RolledBack { got: 1, last: 2 },
        Rejection::GenerationReused { generation: 1 },
        Rejection::BadSignature { keyid: "k".into() },
        Rejection::UnknownKey { keyids: vec![] },
        Rejection::WrongPayloadType { got: "x".into() },
        Rejection::Expired {
            at: now(),
            now: now(),
        },
    ];
    for rejection in samples {
        let message = rejection.to_string();
        assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

fn app_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_then_verify_round_trips(
        cluster in "[a-z][a-z0-9-]{0,20}",
        lead_ms in 0u64..=24 * 3600 * 1000,
        names in proptest::collection::btree_set(app_name(), 1..4),
        key_seed in 1u8..=255,
    ) {
        let signing = key(key_seed);
        let generation = u64::try_from(now().as_millisecond()).expect("positive") + lead_ms;
        let mut bundle = Bundle::test().cluster(&cluster).generation(generation);
        for name in &names {
            bundle = bundle.with_app(TestApp::new(name));
        }
        let signed = bundle.signed_by(&signing);
        let root = trust(&[&signing]);
        let verified = verify(&signed.envelope_bytes(), &root, &cluster, None, now())
            .expect("a fresh, well-formed state verifies");
        prop_assert_eq!(&verified.state, &signed.state);
        for app in &verified.state.apps {
            prop_assert!(verify_blob(app, signed.blob(&app.name)).is_ok());
        }
        // Accepting it again is idempotent; anything older is a rollback.
        let last = verified.last_accepted();
        prop_assert!(verify(&signed.envelope_bytes(), &root, &cluster, Some(&last), now())
            .expect("re-fetch").same_as_last);
    }

    #[test]
    fn any_flipped_payload_bit_is_rejected(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let signed = one_app().signed_by(&key(1));
        let mut payload = signed.payload.clone();
        let at = index.index(payload.len());
        payload[at] ^= 1 << bit;
        let mut envelope = signed.envelope.clone();
        envelope.payload = STANDARD.encode(&payload);
        prop_assert_eq!(
            check(&envelope.to_json(), None),
            Err(Rejection::BadSignature { keyid: key(1).keyid().to_string() })
        );
    }

    #[test]
    fn any_flipped_signature_bit_is_rejected(at in 0usize..64, bit in 0u8..8) {
        let signed = one_app().signed_by(&key(1));
        let mut sig = STANDARD.decode(&signed.envelope.signatures[0].sig).expect("base64");
        sig[at] ^= 1 << bit;
        let mut envelope = signed.envelope.clone();
        envelope.signatures[0].sig = STANDARD.encode(&sig);
        prop_assert_eq!(
            check(&envelope.to_json(), None),
            Err(Rejection::BadSignature { keyid: key(1).keyid().to_string() })
        );
    }

    #[test]
    fn any_envelope_byte_change_is_never_accepted_as_different_content(
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let signed = one_app().signed_by(&key(1));
        let mut bytes = signed.envelope_bytes();
        let at = index.index(bytes.len());
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        // Either refused, or (a change to an unauthenticated hint such as the keyid field's
        // name) accepted with exactly the signed payload.
        if let Ok(verified) = check(&bytes, None) {
            prop_assert_eq!(verified.payload, signed.payload);
        }
    }
}
