//! The canonical JSON of app blobs against the test vectors of RFC 8785 (JSON
//! Canonicalization Scheme): the number serialization table of Appendix B, the worked
//! example of section 3.2.2 and the property sorting of section 3.2.3.

use flotilla_shared::AppBlob;

fn canonical(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).expect("valid JSON input");
    String::from_utf8(serde_json_canonicalizer::to_vec(&value).expect("canonicalizes"))
        .expect("UTF-8 output")
}

fn number(bits: u64) -> Result<String, serde_json::Error> {
    serde_json_canonicalizer::to_string(&f64::from_bits(bits))
}

#[test]
fn appendix_b_number_serialization() {
    let vectors: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, expected) in vectors {
        assert_eq!(
            number(*bits).expect("finite"),
            *expected,
            "bits {bits:#018x}"
        );
    }
    // NaN and Infinity have no JSON form and must be refused, not written.
    for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000] {
        assert!(number(bits).is_err(), "bits {bits:#018x}");
    }
}

#[test]
fn numbers_parsed_from_text_are_reformatted() {
    assert_eq!(
        canonical("[1E30, 4.50, 2e-3, 0.000000000000000000000000001]"),
        "[1e+30,4.5,0.002,1e-27]"
    );
    assert_eq!(
        canonical("[-0, 1.0, 100, 1e2, 123456789012345678]"),
        "[0,1,100,100,123456789012345680]"
    );
}

#[test]
fn section_3_2_2_worked_example() {
    let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
    assert_eq!(canonical(input), expected);
}

#[test]
fn section_3_2_3_properties_sort_by_utf16_code_units() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
    // U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16, after it in UTF-8.
    assert_eq!(
        canonical(input),
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
         \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
         \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
}

#[test]
fn string_escaping() {
    // Only `"`, `\` and control characters are escaped: the short forms where JSON has
    // them, lowercase `\u00xx` otherwise; everything else (DEL, U+2028, `/`) is raw UTF-8.
    assert_eq!(
        canonical(r#""\u0000\u0008\u0009\u000a\u000c\u000d\u001f\u007f\u2028\/\"\\é""#),
        "\"\\u0000\\b\\t\\n\\f\\r\\u001f\u{7f}\u{2028}/\\\"\\\\é\""
    );
}

#[test]
fn nesting_and_whitespace() {
    assert_eq!(
        canonical("{ \"b\" : [ { \"d\" : 1 , \"c\" : { } } , [ ] ] , \"a\" : \"\" }"),
        r#"{"a":"","b":[{"c":{},"d":1},[]]}"#
    );
}

#[test]
fn app_blobs_use_the_same_canonical_form() {
    let object = serde_json::json!({
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"},
        "data": {"\u{20ac}": "e", "\r": "r", "\u{1f600}": "g", "\u{fb33}": "h"},
        "spec": {"n": 1e30, "m": 4.50}
    });
    let blob = AppBlob::new(vec![object]).expect("valid");
    assert_eq!(
        String::from_utf8(blob.to_canonical_json()).expect("UTF-8"),
        "{\"apiVersion\":\"flotilla.dev/v1\",\"kind\":\"AppBlob\",\"objects\":[{\
         \"apiVersion\":\"v1\",\"data\":{\"\\r\":\"r\",\"\u{20ac}\":\"e\",\"\u{1f600}\":\"g\",\
         \"\u{fb33}\":\"h\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\"},\
         \"spec\":{\"m\":4.5,\"n\":1e+30}}]}"
    );
}
