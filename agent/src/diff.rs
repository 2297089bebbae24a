//! Whether server-side apply would change an object: the result of a server-side dry-run
//! apply (the live object with the desired fields merged in) compared with the live object,
//! ignoring what the server changes on every write and what `ignoreDifferences` says, plus
//! the paths that differ, for drift and change-set messages.
//!
//! Comparing against the live object (never against a stored hash) is what lets a new state
//! with unchanged content still restore a drifted object. Fields the manifest does not set
//! stay as the live object has them in the dry-run result, so fields owned by other
//! controllers (an HPA's `replicas`) never show up as a difference.
//!
//! It must not make requests; callers do the dry run and pass both objects in.

use std::fmt;

use serde_json::Value;

use crate::object::ObjectRef;

/// Fields the apiserver sets or bumps by itself; they never make an object Configured.
const SERVER_FIELDS: &[&str] = &[
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/managedFields",
    "/metadata/uid",
    "/metadata/creationTimestamp",
    "/metadata/selfLink",
    "/status",
];

/// An RFC 6901 JSON pointer from `ignoreDifferences` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ignoreDifferences pointer {pointer:?}: {reason}")]
pub struct PointerError {
    pub pointer: String,
    pub reason: &'static str,
}

/// A parsed RFC 6901 JSON pointer: its reference tokens with `~1` and `~0` decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses a pointer. The empty pointer (the whole document) is refused: ignoring every
    /// difference of an object would hide all drift of it.
    pub fn parse(pointer: &str) -> Result<Self, PointerError> {
        let error = |reason| PointerError {
            pointer: pointer.to_owned(),
            reason,
        };
        if pointer.is_empty() {
            return Err(error("the whole object cannot be ignored"));
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(error("a pointer starts with /"));
        };
        let tokens = rest
            .split('/')
            .map(|token| unescape(token).ok_or_else(|| error("~ must be followed by 0 or 1")))
            .collect::<Result<_, _>>()?;
        Ok(Self { tokens })
    }

    /// Makes `desired` hold what `live` holds at this pointer, or nothing when `live` has
    /// nothing there, so that applying `desired` leaves an ignored field as the cluster has
    /// it. A field `desired` does not set stays unset.
    pub fn keep_live(&self, desired: &mut Value, live: &Value) {
        let pointer = self.to_string();
        match live.pointer(&pointer) {
            None => self.remove_from(desired),
            Some(value) => {
                if let Some(slot) = desired.pointer_mut(&pointer) {
                    *slot = value.clone();
                }
            }
        }
    }

    /// Removes what the pointer names: an object member is removed; an array element is
    /// replaced by null, so that the positions of the other elements, which other pointers
    /// may name, do not move.
    fn remove_from(&self, value: &mut Value) {
        let Some((last, parents)) = self.tokens.split_last() else {
            return;
        };
        let mut node = value;
        for token in parents {
            let next = match node {
                Value::Object(map) => map.get_mut(token),
                Value::Array(items) => index(token).and_then(|i| items.get_mut(i)),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => return,
            }
        }
        match node {
            Value::Object(map) => {
                map.remove(last);
            }
            Value::Array(items) => {
                if let Some(item) = index(last).and_then(|i| items.get_mut(i)) {
                    *item = Value::Null;
                }
            }
            _ => {}
        }
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.tokens {
            write!(f, "/{}", escape(token))?;
        }
        Ok(())
    }
}

fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// An array index token: digits without a leading zero (RFC 6901).
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// What applying would do to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The live object already is what applying would make it: no write needed.
    Unchanged,
    /// Applying changes the object at these JSON pointers, sorted. Objects are compared
    /// member by member; an array that differs anywhere is reported as a whole.
    Configured { changed: Vec<String> },
}

/// Compares the result of a server-side dry-run apply with the live object.
pub fn compare(dry_run: &Value, live: &Value, ignore: &[Pointer]) -> Comparison {
    let (mut dry_run, mut live) = (dry_run.clone(), live.clone());
    let server = SERVER_FIELDS
        .iter()
        .map(|p| Pointer::parse(p).expect("server field pointers are valid"));
    for pointer in server.chain(ignore.iter().cloned()) {
        pointer.remove_from(&mut dry_run);
        pointer.remove_from(&mut live);
    }
    let mut changed = Vec::new();
    differences(&dry_run, &live, &mut String::new(), &mut changed);
    if changed.is_empty() {
        Comparison::Unchanged
    } else {
        changed.sort();
        Comparison::Configured { changed }
    }
}

fn differences(a: &Value, b: &Value, path: &mut String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(key));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(x, y, path, out),
                    _ => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(if path.is_empty() {
            "/".to_owned()
        } else {
            path.clone()
        }),
    }
}

/// Whether a server-side apply of `desired` (the body as it would be sent) would certainly
/// change nothing in `live`, decided without asking the apiserver: every field `desired`
/// sets already has exactly that value in `live`, and every field the `flotilla` manager
/// owns (its Apply entry in `metadata.managedFields`) is still in `desired`, so no field
/// would be removed. Fields under `ignore` are left out of the first check.
///
/// Conservative: anything it cannot judge exactly (a list of objects that the server
/// defaulted, a value the server normalizes, list ownership by key, no ownership entry)
/// answers `false`, and the caller falls back to a server-side dry run. Invariant: `true`
/// is only ever answered when the live object already holds the desired content.
pub fn apply_is_noop(desired: &Value, live: &Value, ignore: &[Pointer]) -> bool {
    let mut desired_view = desired.clone();
    let mut live_view = live.clone();
    for pointer in ignore {
        pointer.remove_from(&mut desired_view);
        pointer.remove_from(&mut live_view);
    }
    if !is_subset(&desired_view, &live_view) {
        return false;
    }
    let owned = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .and_then(|entries| {
            entries.iter().find(|e| {
                e.get("manager").and_then(Value::as_str) == Some("flotilla")
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
            })
        })
        .and_then(|entry| entry.get("fieldsV1"));
    match owned {
        Some(fields) => owned_fields_present(fields, desired),
        None => false,
    }
}

/// Every member of `desired` is in `live` with an equal value; arrays must be equal whole.
fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(key, value)| l.get(key).is_some_and(|live| is_subset(value, live))),
        (d, l) => d == l,
    }
}

/// Every field named in a `fieldsV1` set (`f:` members only) exists in `desired`. A list
/// member (`k:`, `v:`, `i:`) cannot be judged here and answers `false`.
fn owned_fields_present(fields: &Value, desired: &Value) -> bool {
    let Some(fields) = fields.as_object() else {
        return false;
    };
    fields.iter().all(|(key, children)| {
        if key == "." {
            return true;
        }
        let Some(name) = key.strip_prefix("f:") else {
            return false;
        };
        match desired.get(name) {
            None => false,
            Some(value) => {
                let leaf = children
                    .as_object()
                    .is_none_or(|c| c.keys().all(|k| k == "."));
                leaf || owned_fields_present(children, value)
            }
        }
    })
}

/// The pointers of `rules` (an app's signed `ignoreDifferences`) that apply to `object`:
/// rules whose group and kind match and whose name and namespace, when given, match too.
pub fn ignore_pointers(
    object: &ObjectRef,
    rules: &[flotilla_shared::state::IgnoreDifference],
) -> Result<Vec<Pointer>, PointerError> {
    rules
        .iter()
        .filter(|rule| {
            rule.group == object.group
                && rule.kind == object.kind
                && rule.name.as_ref().is_none_or(|name| *name == object.name)
                && rule
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| Some(ns) == object.namespace.as_ref())
        })
        .flat_map(|rule| rule.json_pointers.iter())
        .map(|p| Pointer::parse(p))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_noop_is_recognised_only_when_certain() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"flotilla.dev/app": "shop"},
                         "annotations": {"flotilla.dev/generation": "2"}},
            "data": {"k": "v"}});
        let owned = json!({"f:metadata": {"f:labels": {"f:flotilla.dev/app": {}},
            "f:annotations": {"f:flotilla.dev/generation": {}}}, "f:data": {"f:k": {}}});
        let live = |data: Value, owned: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "shop", "resourceVersion": "9",
                "labels": {"flotilla.dev/app": "shop"},
                "annotations": {"flotilla.dev/generation": "1"},
                "managedFields": [{"manager": "flotilla", "operation": "Apply", "fieldsV1": owned}]},
            "data": data})
        };
        let generation = [
            Pointer::parse("/metadata/annotations/flotilla.dev~1generation")
                .expect("valid pointer"),
        ];
        let check = |live: Value, expected: bool| {
            assert_eq!(
                apply_is_noop(&desired, &live, &generation),
                expected,
                "{live}"
            );
        };
        // Same content, older generation annotation: nothing to write.
        check(live(json!({"k": "v"}), owned.clone()), true);
        // A value differs.
        check(live(json!({"k": "edited"}), owned.clone()), false);
        // Extra live fields owned by others are fine.
        check(live(json!({"k": "v", "other": "x"}), owned.clone()), true);
        // A field flotilla owns but no longer sets would be removed.
        let more = json!({"f:data": {"f:k": {}, "f:gone": {}}, "f:metadata": {}});
        check(live(json!({"k": "v", "gone": "x"}), more), false);
        // List ownership cannot be judged locally.
        let list = json!({"f:data": {"k:{\"name\":\"x\"}": {}}});
        check(live(json!({"k": "v"}), list), false);
        // Without flotilla's Apply entry (adopted or created by others): ask the server.
        let mut unowned = live(json!({"k": "v"}), owned.clone());
        unowned["metadata"]["managedFields"] = json!([]);
        check(unowned, false);
        // Without ignoring the generation annotation, the new value is a change.
        assert!(!apply_is_noop(
            &desired,
            &live(json!({"k": "v"}), owned),
            &[]
        ));
    }

    use super::*;
    use flotilla_shared::state::IgnoreDifference;
    use serde_json::json;

    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "web", "resourceVersion": "7",
                         "generation": 3, "uid": "u-1",
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"flotilla.dev/app": "shop"},
                         "annotations": {"a/b": "1", "x~y": "2"},
                         "managedFields": [{"manager": "flotilla"}]},
            "spec": {"replicas": 3,
                     "template": {"spec": {"containers": [
                         {"name": "app", "image": "app:1"},
                         {"name": "sidecar", "image": "proxy:1"}]}}},
            "status": {"readyReplicas": 3}
        })
    }

    /// Compares `live()` changed by `edit` (as the dry-run result) with `live()`.
    fn check(edit: impl FnOnce(&mut Value), ignore: &[&str], expected: &[&str]) {
        let mut dry_run = live();
        edit(&mut dry_run);
        let ignore: Vec<Pointer> = ignore
            .iter()
            .map(|p| Pointer::parse(p).expect("valid test pointer"))
            .collect();
        let got = compare(&dry_run, &live(), &ignore);
        let want = if expected.is_empty() {
            Comparison::Unchanged
        } else {
            Comparison::Configured {
                changed: expected.iter().map(|s| (*s).to_owned()).collect(),
            }
        };
        assert_eq!(got, want);
    }

    #[test]
    fn identical_is_unchanged() {
        check(|_| {}, &[], &[]);
    }

    #[test]
    fn server_fields_are_not_changes() {
        check(
            |v| {
                v["metadata"]["resourceVersion"] = json!("8");
                v["metadata"]["generation"] = json!(4);
                v["metadata"]["managedFields"] = json!([{"manager": "flotilla", "time": "t"}]);
                v["metadata"]["uid"] = json!("u-2");
                v["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
                v["status"] = json!({"readyReplicas": 0});
            },
            &[],
            &[],
        );
    }

    #[test]
    fn reports_changed_paths() {
        check(
            |v| v["spec"]["replicas"] = json!(5),
            &[],
            &["/spec/replicas"],
        );
        check(
            |v| v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2"),
            &[],
            &["/spec/template/spec/containers"],
        );
        check(
            |v| {
                v["metadata"]["labels"]["team"] = json!("a");
                v["spec"]["paused"] = json!(true);
            },
            &[],
            &["/metadata/labels/team", "/spec/paused"],
        );
        // A member the dry run removed is a change too.
        check(
            |v| {
                v["metadata"]
                    .as_object_mut()
                    .expect("metadata is an object")
                    .remove("labels");
            },
            &[],
            &["/metadata/labels"],
        );
        check(|v| *v = json!([]), &[], &["/"]);
    }

    #[test]
    fn changed_paths_are_escaped() {
        check(
            |v| v["metadata"]["annotations"]["a/b"] = json!("2"),
            &[],
            &["/metadata/annotations/a~1b"],
        );
        check(
            |v| v["metadata"]["annotations"]["x~y"] = json!("3"),
            &[],
            &["/metadata/annotations/x~0y"],
        );
    }

    #[test]
    fn ignore_differences_hide_changes() {
        check(
            |v| v["spec"]["replicas"] = json!(5),
            &["/spec/replicas"],
            &[],
        );
        check(
            |v| v["metadata"]["annotations"]["a/b"] = json!("2"),
            &["/metadata/annotations/a~1b"],
            &[],
        );
        check(
            |v| v["metadata"]["annotations"]["x~y"] = json!("3"),
            &["/metadata/annotations/x~0y"],
            &[],
        );
        // Ignoring one container's image leaves the other container compared.
        check(
            |v| v["spec"]["template"]["spec"]["containers"][1]["image"] = json!("proxy:2"),
            &["/spec/template/spec/containers/1/image"],
            &[],
        );
        check(
            |v| v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2"),
            &["/spec/template/spec/containers/1/image"],
            &["/spec/template/spec/containers"],
        );
        // Ignoring an element keeps the positions of the others.
        check(
            |v| v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2"),
            &["/spec/template/spec/containers/0"],
            &[],
        );
        // Pointers to nothing, through scalars or past the end change nothing.
        check(
            |v| v["spec"]["replicas"] = json!(5),
            &[
                "/spec/nothing",
                "/spec/replicas/x",
                "/spec/template/spec/containers/9",
            ],
            &["/spec/replicas"],
        );
        check(
            |v| v["spec"]["replicas"] = json!(5),
            &[
                "/spec/template/spec/containers/01",
                "/spec/template/spec/containers/-",
            ],
            &["/spec/replicas"],
        );
    }

    #[test]
    fn pointers_parse_per_rfc_6901() {
        let check = |pointer: &str, expected: Result<&[&str], &str>| {
            let got = Pointer::parse(pointer);
            match expected {
                Ok(tokens) => {
                    let p = got.expect(pointer);
                    assert_eq!(p.tokens, tokens, "{pointer}");
                    assert_eq!(p.to_string(), pointer);
                }
                Err(message) => {
                    assert_eq!(got.expect_err(pointer).to_string(), message);
                }
            }
        };
        check("/spec/replicas", Ok(&["spec", "replicas"]));
        check("/a~1b/c~0d", Ok(&["a/b", "c~d"]));
        check("/~01", Ok(&["~1"]));
        check("/", Ok(&[""]));
        check(
            "",
            Err("ignoreDifferences pointer \"\": the whole object cannot be ignored"),
        );
        check(
            "spec/replicas",
            Err("ignoreDifferences pointer \"spec/replicas\": a pointer starts with /"),
        );
        check(
            "/a~2",
            Err("ignoreDifferences pointer \"/a~2\": ~ must be followed by 0 or 1"),
        );
        check(
            "/a~",
            Err("ignoreDifferences pointer \"/a~\": ~ must be followed by 0 or 1"),
        );
    }

    #[test]
    fn ignore_rules_match_group_kind_name_namespace() {
        let rule =
            |group: &str, kind: &str, name: Option<&str>, ns: Option<&str>| IgnoreDifference {
                group: group.into(),
                kind: kind.into(),
                name: name.map(Into::into),
                namespace: ns.map(Into::into),
                json_pointers: vec![format!("/{kind}/{}", name.unwrap_or("any"))],
            };
        let rules = [
            rule("apps", "Deployment", None, None),
            rule("apps", "Deployment", Some("api"), Some("web")),
            rule("apps", "Deployment", Some("other"), None),
            rule("apps", "Deployment", Some("api"), Some("elsewhere")),
            rule("", "Deployment", None, None),
            rule("apps", "StatefulSet", None, None),
        ];
        let object = ObjectRef::new("apps/v1", "Deployment", Some("web"), "api").expect("valid");
        let got: Vec<String> = ignore_pointers(&object, &rules)
            .expect("valid pointers")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["/Deployment/any", "/Deployment/api"]);
        let bad = [IgnoreDifference {
            json_pointers: vec!["spec".into()],
            ..rule("apps", "Deployment", None, None)
        }];
        assert!(ignore_pointers(&object, &bad).is_err());
    }
}
