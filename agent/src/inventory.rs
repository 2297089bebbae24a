//! An app's inventory: the set of objects the agent applied for it, which is what prune may
//! ever consider deleting. Its compact, versioned JSON encoding (for a ConfigMap or Secret in
//! the agent's namespace) and the diff of an inventory against the objects now desired.
//!
//! It must not read or write the cluster (an adapter persists the encoding) nor decide what
//! is deleted (that is `prune`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::object::{ObjectRef, split_api_version};

/// The `apiVersion` of an encoded inventory.
pub const API_VERSION: &str = "flotilla.dev/v1";
/// The `kind` of an encoded inventory.
pub const KIND: &str = "Inventory";

/// The objects one app owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Document", into = "Document")]
pub struct Inventory {
    pub app: String,
    pub entries: BTreeSet<ObjectRef>,
}

/// Why an encoded inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("decode inventory: {0}")]
    Decode(#[source] serde_json::Error),
}

/// What has changed between the inventory of the last step and the objects desired now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Every desired object, sorted and without duplicates; all of them go to apply, which
    /// decides per object whether anything needs writing.
    pub to_apply: Vec<ObjectRef>,
    /// Desired objects the inventory does not have yet: candidates for conflicts with
    /// objects that already exist.
    pub added: Vec<ObjectRef>,
    /// Objects of the inventory that are no longer desired, with the version they were
    /// applied with: candidates for prune.
    pub stale: Vec<ObjectRef>,
}

impl Inventory {
    /// An inventory of `entries`; of two entries for the same object the first is kept.
    pub fn new(app: impl Into<String>, entries: impl IntoIterator<Item = ObjectRef>) -> Self {
        Self {
            app: app.into(),
            entries: entries.into_iter().collect(),
        }
    }

    /// An app the agent never applied.
    pub fn empty(app: impl Into<String>) -> Self {
        Self::new(app, [])
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The compact JSON encoding, e.g.
    /// `{"apiVersion":"flotilla.dev/v1","kind":"Inventory","app":"shop",
    /// "entries":[["v1","Namespace","","shop"],["apps/v1","Deployment","shop","web"]]}`:
    /// one `[apiVersion, kind, namespace, name]` array per object, `""` for no namespace,
    /// sorted by identity. Arrays rather than one joined string because Kubernetes names may
    /// contain almost any character (`system:controller:x`, underscores), so no separator is
    /// safe.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an inventory always serializes")
    }

    pub fn from_json(json: &[u8]) -> Result<Self, InventoryError> {
        serde_json::from_slice(json).map_err(InventoryError::Decode)
    }
}

/// The diff of `previous` against the objects desired now. Identity ignores versions, so an
/// object whose apiVersion moved on is neither stale nor added.
pub fn diff(previous: &Inventory, desired: &[ObjectRef]) -> Diff {
    let desired: BTreeSet<&ObjectRef> = desired.iter().collect();
    Diff {
        to_apply: desired.iter().map(|r| (*r).clone()).collect(),
        added: desired
            .iter()
            .filter(|r| !previous.entries.contains(r))
            .map(|r| (*r).clone())
            .collect(),
        stale: previous
            .entries
            .iter()
            .filter(|r| !desired.contains(r))
            .cloned()
            .collect(),
    }
}

/// The encoding: see `Inventory::to_json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    api_version: String,
    kind: String,
    app: String,
    entries: Vec<[String; 4]>,
}

impl From<Inventory> for Document {
    fn from(inventory: Inventory) -> Self {
        let entries = inventory
            .entries
            .into_iter()
            .map(|r| {
                [
                    r.api_version(),
                    r.kind,
                    r.namespace.unwrap_or_default(),
                    r.name,
                ]
            })
            .collect();
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            app: inventory.app,
            entries,
        }
    }
}

impl TryFrom<Document> for Inventory {
    type Error = String;

    fn try_from(doc: Document) -> Result<Self, Self::Error> {
        if doc.api_version != API_VERSION || doc.kind != KIND {
            return Err(format!(
                "inventory is {} {}, expected {API_VERSION} {KIND}",
                doc.api_version, doc.kind
            ));
        }
        let mut entries = BTreeSet::new();
        for [api_version, kind, namespace, name] in doc.entries {
            let (group, version) = split_api_version(&api_version).map_err(|e| e.to_string())?;
            if kind.is_empty() || name.is_empty() {
                return Err(format!(
                    "inventory entry {api_version} {kind:?} {name:?} is incomplete"
                ));
            }
            entries.insert(ObjectRef {
                group: group.to_owned(),
                version: version.to_owned(),
                kind,
                namespace: (!namespace.is_empty()).then_some(namespace),
                name,
            });
        }
        Ok(Self {
            app: doc.app,
            entries,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `"apps/v1 Deployment ns/name"` or `"v1 Namespace name"` as an `ObjectRef`.
    pub(crate) fn r(spec: &str) -> ObjectRef {
        let parts: Vec<&str> = spec.split(' ').collect();
        let [api_version, kind, id] = parts[..] else {
            panic!("bad test ref {spec}");
        };
        let (namespace, name) = match id.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, id),
        };
        ObjectRef::new(api_version, kind, namespace, name).expect("valid test ref")
    }

    fn refs(specs: &[&str]) -> Vec<ObjectRef> {
        specs.iter().map(|s| r(s)).collect()
    }

    fn check(previous: &[&str], desired: &[&str], added: &[&str], stale: &[&str]) {
        let got = diff(&Inventory::new("app", refs(previous)), &refs(desired));
        let mut want_apply = refs(desired);
        want_apply.sort();
        want_apply.dedup();
        assert_eq!(got.to_apply, want_apply);
        assert_eq!(got.added, refs(added), "added");
        assert_eq!(got.stale, refs(stale), "stale");
    }

    #[test]
    fn diffs() {
        check(&[], &[], &[], &[]);
        check(&[], &["v1 ConfigMap n/a"], &["v1 ConfigMap n/a"], &[]);
        check(&["v1 ConfigMap n/a"], &[], &[], &["v1 ConfigMap n/a"]);
        check(&["v1 ConfigMap n/a"], &["v1 ConfigMap n/a"], &[], &[]);
        check(
            &["v1 ConfigMap n/a", "v1 ConfigMap n/b"],
            &["v1 ConfigMap n/b", "v1 ConfigMap n/c", "v1 ConfigMap n/c"],
            &["v1 ConfigMap n/c"],
            &["v1 ConfigMap n/a"],
        );
        // Same name, other namespace or kind: a different object.
        check(
            &["v1 ConfigMap n/a"],
            &["v1 ConfigMap m/a", "v1 Secret n/a"],
            &["v1 ConfigMap m/a", "v1 Secret n/a"],
            &["v1 ConfigMap n/a"],
        );
        // A new apiVersion of the same object is not a change of identity.
        check(
            &["batch/v1beta1 CronJob n/c"],
            &["batch/v1 CronJob n/c"],
            &[],
            &[],
        );
    }

    #[test]
    fn stale_entries_keep_their_version() {
        let previous = Inventory::new(
            "app",
            refs(&["autoscaling/v2beta2 HorizontalPodAutoscaler n/h"]),
        );
        let got = diff(&previous, &[]);
        assert_eq!(got.stale[0].api_version(), "autoscaling/v2beta2");
    }

    #[test]
    fn encoding_is_compact_and_versioned() {
        let inventory = Inventory::new(
            "shop",
            refs(&["apps/v1 Deployment shop/web", "v1 Namespace shop"]),
        );
        let json = inventory.to_json();
        assert_eq!(
            json,
            r#"{"apiVersion":"flotilla.dev/v1","kind":"Inventory","app":"shop","entries":[["v1","Namespace","","shop"],["apps/v1","Deployment","shop","web"]]}"#
        );
        let back = Inventory::from_json(json.as_bytes()).expect("round trip");
        assert_eq!(back, inventory);
    }

    #[test]
    fn refuses_foreign_encodings() {
        let check = |json: &str, message: &str| {
            let err = Inventory::from_json(json.as_bytes()).expect_err(json);
            assert!(err.to_string().contains(message), "{json}: {err}");
        };
        check(
            r#"{"apiVersion":"flotilla.dev/v2","kind":"Inventory","app":"a","entries":[]}"#,
            "expected flotilla.dev/v1 Inventory",
        );
        check(
            r#"{"apiVersion":"flotilla.dev/v1","kind":"Inventory","app":"a","entries":[["a/b/c","X","","n"]]}"#,
            "apiVersion \"a/b/c\"",
        );
        check(
            r#"{"apiVersion":"flotilla.dev/v1","kind":"Inventory","app":"a","entries":[["v1","","","n"]]}"#,
            "incomplete",
        );
        check(
            r#"{"apiVersion":"flotilla.dev/v1","kind":"Inventory","app":"a","entries":[["v1","X"]]}"#,
            "decode inventory",
        );
    }

    fn arb_ref() -> impl Strategy<Value = ObjectRef> {
        let kinds = prop::sample::select(vec![
            ("v1", "ConfigMap"),
            ("apps/v1", "Deployment"),
            ("v1", "Namespace"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ]);
        (kinds, prop::option::of("[a-c]"), "[a-z:_. ]{1,6}").prop_map(
            |((api_version, kind), ns, name)| {
                ObjectRef::new(api_version, kind, ns.as_deref(), &name).expect("valid")
            },
        )
    }

    proptest! {
        #[test]
        fn encoding_round_trips(entries in prop::collection::vec(arb_ref(), 0..30)) {
            let inventory = Inventory::new("app", entries);
            let back = Inventory::from_json(inventory.to_json().as_bytes()).expect("round trip");
            // Identity ignores versions: compare them separately.
            let versions = |i: &Inventory| i.entries.iter().map(ObjectRef::api_version).collect::<Vec<_>>();
            prop_assert_eq!(versions(&back), versions(&inventory));
            prop_assert_eq!(back, inventory);
        }

        #[test]
        fn diff_partitions_both_sides(
            previous in prop::collection::vec(arb_ref(), 0..20),
            desired in prop::collection::vec(arb_ref(), 0..20),
        ) {
            let inventory = Inventory::new("app", previous);
            let got = diff(&inventory, &desired);
            let stale: BTreeSet<_> = got.stale.iter().cloned().collect();
            let apply: BTreeSet<_> = got.to_apply.iter().cloned().collect();
            let added: BTreeSet<_> = got.added.iter().cloned().collect();
            // stale = previous − desired; added = desired − previous.
            prop_assert!(stale.is_disjoint(&apply));
            prop_assert_eq!(
                stale.union(&apply).cloned().collect::<BTreeSet<_>>(),
                inventory.entries.union(&apply).cloned().collect::<BTreeSet<_>>()
            );
            prop_assert!(added.is_subset(&apply));
            prop_assert!(added.is_disjoint(&inventory.entries));
        }
    }
}
