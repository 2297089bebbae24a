//! App blobs: the rendered objects of one app, sorted by (group, kind, namespace, name) and
//! serialized with the JSON Canonicalization Scheme (RFC 8785), so the same objects in any
//! order give the same bytes and the same digest.
//!
//! Invariant: the blob holds the objects exactly as given, apart from their order. In
//! particular it does not fill in namespaces: whether a kind is namespaced is only known to
//! the cluster's discovery, so the agent gives namespaced objects without a namespace the
//! app's namespace when it applies them. (An object with and one without an explicit
//! namespace are therefore different blobs, which is right: they are different renders.)
//!
//! A blob is content only: it does not name the app it belongs to, so identical renders are
//! one blob even for apps of different names (an ApplicationSet's `{{name}}-web` on a hundred
//! clusters), stored and served once. The signed state binds each app to its blob's digest.
//! The v1 format lets a blob carry an `app` field; a blob that does must name the app whose
//! state entry points to it (`verify` checks), and this module never writes one.
//!
//! It must not check digests against a signed state (that is `verify`) nor talk to anything.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::API_VERSION;

/// The `kind` of an app blob.
pub const BLOB_KIND: &str = "AppBlob";

/// The objects of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppBlob {
    pub api_version: String,
    pub kind: String,
    /// The app, when the blob names one (blobs written here do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub objects: Vec<Value>,
}

/// Why objects cannot make a blob, or bytes are not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("object {index} is not a Kubernetes object: {reason}")]
    NotAnObject { index: usize, reason: &'static str },
    #[error("object {0} appears twice")]
    Duplicate(ObjectRef),
    #[error("blob is not valid JSON: {0}")]
    Json(String),
    #[error(
        "blob has apiVersion {api_version:?} and kind {kind:?}, expected {API_VERSION:?} and {BLOB_KIND:?}"
    )]
    Kind { api_version: String, kind: String },
}

/// The identity of an object within a blob, in sort order: group (from `apiVersion`), kind,
/// namespace (empty when absent) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "" } else { "." };
        if self.namespace.is_empty() {
            write!(f, "{}{group}{} {}", self.kind, self.group, self.name)
        } else {
            write!(
                f,
                "{}{group}{} {}/{}",
                self.kind, self.group, self.namespace, self.name
            )
        }
    }
}

impl ObjectRef {
    /// The identity of a Kubernetes object: `apiVersion`, `kind` and `metadata.name` must be
    /// non-empty strings; `metadata.namespace` is optional.
    pub fn of(object: &Value, index: usize) -> Result<Self, BlobError> {
        let bad = |reason| BlobError::NotAnObject { index, reason };
        let map = object.as_object().ok_or(bad("not a JSON object"))?;
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(bad("apiVersion is missing"))?;
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(bad("kind is missing"))?;
        let metadata = map
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or(bad("metadata is missing"))?;
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(bad("metadata.name is missing"))?;
        let namespace = match metadata.get("namespace") {
            None | Some(Value::Null) => "",
            Some(Value::String(ns)) => ns,
            Some(_) => return Err(bad("metadata.namespace is not a string")),
        };
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Ok(Self {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl AppBlob {
    /// A blob of `objects`, in canonical order. Two objects with the same identity are
    /// refused: which one would win is exactly the ambiguity a blob must not have.
    pub fn new(objects: Vec<Value>) -> Result<Self, BlobError> {
        let mut keyed = objects
            .into_iter()
            .enumerate()
            .map(|(index, object)| ObjectRef::of(&object, index).map(|key| (key, object)))
            .collect::<Result<Vec<_>, _>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        for pair in keyed.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(BlobError::Duplicate(pair[0].0.clone()));
            }
        }
        Ok(Self {
            api_version: API_VERSION.to_owned(),
            kind: BLOB_KIND.to_owned(),
            app: None,
            objects: keyed.into_iter().map(|(_, object)| object).collect(),
        })
    }

    /// The canonical (RFC 8785) bytes; their SHA-256 is the blob's digest.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Invariant: a `serde_json::Value` holds no NaN or infinity, the only values JCS
        // cannot encode, and writing to a Vec cannot fail.
        serde_json_canonicalizer::to_vec(self).expect("JSON values always canonicalize")
    }

    /// Reads a blob whose bytes were already checked against their digest and size. Checks
    /// the document kind and that every object has an identity, none twice.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BlobError> {
        let blob: Self =
            serde_json::from_slice(bytes).map_err(|e| BlobError::Json(e.to_string()))?;
        if blob.api_version != API_VERSION || blob.kind != BLOB_KIND {
            return Err(BlobError::Kind {
                api_version: blob.api_version,
                kind: blob.kind,
            });
        }
        let mut seen = BTreeSet::new();
        for (index, object) in blob.objects.iter().enumerate() {
            let key = ObjectRef::of(object, index)?;
            if !seen.insert(key.clone()) {
                return Err(BlobError::Duplicate(key));
            }
        }
        Ok(blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
        let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = namespace {
            o["metadata"]["namespace"] = json!(ns);
        }
        o
    }

    #[test]
    fn sorts_by_group_kind_namespace_name() {
        let objects = vec![
            object("apps/v1", "Deployment", Some("shop"), "web"),
            object("v1", "Service", Some("shop"), "web"),
            object("v1", "ConfigMap", Some("shop"), "b"),
            object("v1", "ConfigMap", Some("a"), "z"),
            object("v1", "Namespace", None, "shop"),
            object("rbac.authorization.k8s.io/v1", "ClusterRole", None, "r"),
            object("apps/v1", "Deployment", Some("shop"), "api"),
        ];
        let blob = AppBlob::new(objects).expect("valid");
        let order: Vec<String> = blob
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| ObjectRef::of(o, i).expect("valid").to_string())
            .collect();
        assert_eq!(
            order,
            [
                "ConfigMap a/z",
                "ConfigMap shop/b",
                "Namespace shop",
                "Service shop/web",
                "Deployment.apps shop/api",
                "Deployment.apps shop/web",
                "ClusterRole.rbac.authorization.k8s.io r",
            ]
        );
    }

    #[test]
    fn canonical_bytes_are_jcs() {
        let blob = AppBlob::new(vec![json!({"kind": "ConfigMap", "apiVersion": "v1",
                        "metadata": {"name": "c"}, "data": {"b": "2", "a": 1.50}})])
        .expect("valid");
        assert_eq!(
            String::from_utf8(blob.to_canonical_json()).expect("utf-8"),
            r#"{"apiVersion":"flotilla.dev/v1","kind":"AppBlob","objects":[{"apiVersion":"v1","data":{"a":1.5,"b":"2"},"kind":"ConfigMap","metadata":{"name":"c"}}]}"#
        );
        let again = AppBlob::from_json(&blob.to_canonical_json()).expect("reads back");
        assert_eq!(again, blob);
    }

    #[test]
    fn refuses_non_objects_and_duplicates() {
        let check = |objects: Vec<Value>, expected: &str| {
            let err = AppBlob::new(objects).expect_err("refused");
            assert_eq!(err.to_string(), expected);
        };
        check(
            vec![json!([1])],
            "object 0 is not a Kubernetes object: not a JSON object",
        );
        check(
            vec![
                object("v1", "A", None, "x"),
                json!({"kind": "A", "metadata": {"name": "x"}}),
            ],
            "object 1 is not a Kubernetes object: apiVersion is missing",
        );
        check(
            vec![json!({"apiVersion": "v1", "kind": "A", "metadata": {}})],
            "object 0 is not a Kubernetes object: metadata.name is missing",
        );
        check(
            vec![
                json!({"apiVersion": "v1", "kind": "A", "metadata": {"name": "n", "namespace": 1}}),
            ],
            "object 0 is not a Kubernetes object: metadata.namespace is not a string",
        );
        // Two versions of one group/kind are one object.
        check(
            vec![
                object("apps/v1", "Deployment", Some("s"), "w"),
                object("apps/v1beta1", "Deployment", Some("s"), "w"),
            ],
            "object Deployment.apps s/w appears twice",
        );
    }

    #[test]
    fn from_json_refuses_other_documents() {
        assert!(matches!(AppBlob::from_json(b"{"), Err(BlobError::Json(_))));
        let other = br#"{"apiVersion":"v1","kind":"List","app":"a","objects":[]}"#;
        assert!(matches!(
            AppBlob::from_json(other),
            Err(BlobError::Kind { .. })
        ));
        let dup = br#"{"apiVersion":"flotilla.dev/v1","kind":"AppBlob","app":"a","objects":[
            {"apiVersion":"v1","kind":"A","metadata":{"name":"x"}},
            {"apiVersion":"v1","kind":"A","metadata":{"name":"x"}}]}"#;
        assert!(matches!(
            AppBlob::from_json(dup),
            Err(BlobError::Duplicate(_))
        ));
    }

    fn arbitrary_object() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["v1", "apps/v1", "batch/v1", "example.com/v1alpha1"]),
            prop::sample::select(vec!["ConfigMap", "Deployment", "Job", "Widget"]),
            prop::option::of("[a-z]{1,3}"),
            "[a-z]{1,4}",
            any::<i32>(),
            "\\PC{0,8}",
        )
            .prop_map(|(api_version, kind, namespace, name, number, text)| {
                let mut o = object(api_version, kind, namespace.as_deref(), &name);
                o["spec"] = json!({"n": number, "t": text, "f": f64::from(number) / 7.0});
                o
            })
    }

    /// Objects with pairwise distinct identities (a blob refuses duplicates).
    fn distinct_objects() -> impl Strategy<Value = Vec<Value>> {
        prop::collection::vec(arbitrary_object(), 0..12).prop_map(|objects| {
            let mut seen = BTreeSet::new();
            objects
                .into_iter()
                .enumerate()
                .filter(|(i, o)| seen.insert(ObjectRef::of(o, *i).expect("valid")))
                .map(|(_, o)| o)
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_order_gives_the_same_bytes_and_digest(
            (objects, shuffled) in distinct_objects().prop_flat_map(|objects| {
                let shuffled = Just(objects.clone()).prop_shuffle();
                (Just(objects), shuffled)
            })
        ) {
            let a = AppBlob::new(objects).expect("valid").to_canonical_json();
            let b = AppBlob::new(shuffled).expect("valid").to_canonical_json();
            prop_assert_eq!(crate::Digest::of(&a), crate::Digest::of(&b));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn canonical_bytes_are_a_fixed_point(objects in distinct_objects()) {
            // Reading canonical bytes and writing them again changes nothing, so a digest
            // computed by the hub is the digest the agent recomputes.
            let bytes = AppBlob::new(objects).expect("valid").to_canonical_json();
            let again = AppBlob::from_json(&bytes).expect("reads back");
            prop_assert_eq!(again.to_canonical_json(), bytes.clone());
            let value: Value = serde_json::from_slice(&bytes).expect("json");
            prop_assert_eq!(serde_json_canonicalizer::to_vec(&value).expect("jcs"), bytes);
        }
    }

    #[test]
    fn digest_of_a_known_blob_is_stable() {
        // Pinned (and cross-checked with `sha256sum` over the string below): if this
        // changes, every deployed blob address changes with it.
        let blob = AppBlob::new(vec![
            object("apps/v1", "Deployment", Some("shop"), "web"),
            object("v1", "Namespace", None, "shop"),
        ])
        .expect("valid");
        let bytes = blob.to_canonical_json();
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            r#"{"apiVersion":"flotilla.dev/v1","kind":"AppBlob","objects":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}},{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"}}]}"#
        );
        assert_eq!(crate::Digest::of(&bytes).to_string(), PINNED_DIGEST);
    }

    const PINNED_DIGEST: &str =
        "sha256:6c84169eafb94161ee51dd5fd419bdea8fcccb089b6c3e82df86a9262006779b";
}
