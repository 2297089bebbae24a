//! The identity of a Kubernetes object as the apply engine, the inventory and prune see it:
//! `ObjectRef` (group, kind, namespace, name, plus the version to address it with), read
//! from an object's JSON, and `Desired`, one parsed object of an app.
//!
//! It must not resolve kinds (that needs discovery) nor default namespaces (that needs to
//! know whether a kind is namespaced); it only reads what the object says.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde_json::Value;

/// The label that marks an object as applied by Flotilla for one app (DESIGN.md
/// "Ownership"): `flotilla.dev/app: <app>`.
pub const APP_LABEL: &str = "flotilla.dev/app";

/// Why an object's JSON does not name an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("object has no {0}")]
    Missing(&'static str),
    #[error("object {field} is not a string")]
    NotAString { field: &'static str },
    #[error("apiVersion {0:?} is not `version` or `group/version`")]
    ApiVersion(String),
}

/// Which object: group, kind, namespace and name, plus the version used to address it.
///
/// Invariant: identity (`Eq`, `Ord`, `Hash`) is (group, kind, namespace, name) and leaves
/// `version` out, so an object whose manifest moves from `v1beta1` to `v1` is the same
/// object, neither pruned nor created anew. Ordering follows the app blob's sort order
/// (group, kind, namespace, name), cluster-scoped (`None`) before namespaced.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    /// The API group; empty for the core group.
    pub group: String,
    /// The API version without the group (`v1`); addresses the object, not part of identity.
    pub version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects (and for namespaced ones not yet defaulted).
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Self, ObjectError> {
        let (group, version) = split_api_version(api_version)?;
        Ok(Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// Reads `apiVersion`, `kind`, `metadata.namespace` and `metadata.name` of an object.
    /// An empty namespace counts as none.
    pub fn from_object(object: &Value) -> Result<Self, ObjectError> {
        let api_version = required_str(object, "apiVersion", &["apiVersion"])?;
        let kind = required_str(object, "kind", &["kind"])?;
        let name = required_str(object, "metadata.name", &["metadata", "name"])?;
        let namespace = match object.pointer("/metadata/namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(ns)) if ns.is_empty() => None,
            Some(Value::String(ns)) => Some(ns.as_str()),
            Some(_) => {
                return Err(ObjectError::NotAString {
                    field: "metadata.namespace",
                });
            }
        };
        Self::new(api_version, kind, namespace, name)
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this is the object `group`/`kind` (any version).
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }

    fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }
}

impl PartialEq for ObjectRef {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for ObjectRef {}

impl PartialOrd for ObjectRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ObjectRef {
    fn cmp(&self, other: &Self) -> Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl Hash for ObjectRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// `Deployment web/api`, or `Namespace web` for a cluster-scoped object: the form error
/// messages and reports use.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> Result<(&str, &str), ObjectError> {
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    let bad = version.is_empty()
        || version.contains('/')
        || (api_version.contains('/') && group.is_empty());
    if bad {
        return Err(ObjectError::ApiVersion(api_version.to_owned()));
    }
    Ok((group, version))
}

fn required_str<'a>(
    object: &'a Value,
    field: &'static str,
    path: &[&str],
) -> Result<&'a str, ObjectError> {
    let mut value = object;
    for key in path {
        value = value.get(key).ok_or(ObjectError::Missing(field))?;
    }
    match value {
        Value::String(s) if !s.is_empty() => Ok(s),
        Value::String(_) | Value::Null => Err(ObjectError::Missing(field)),
        _ => Err(ObjectError::NotAString { field }),
    }
}

/// One object of an app as rendered: its identity and its full JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub object_ref: ObjectRef,
    pub object: Value,
}

impl Desired {
    pub fn from_object(object: Value) -> Result<Self, ObjectError> {
        Ok(Self {
            object_ref: ObjectRef::from_object(&object)?,
            object,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(object: Value, expected: Result<(&str, &str, &str, Option<&str>, &str), &str>) {
        let got = ObjectRef::from_object(&object);
        match (got, expected) {
            (Ok(r), Ok((group, version, kind, namespace, name))) => {
                assert_eq!(
                    (
                        r.group.as_str(),
                        r.version.as_str(),
                        r.kind.as_str(),
                        r.namespace.as_deref(),
                        r.name.as_str()
                    ),
                    (group, version, kind, namespace, name),
                    "{object}"
                );
            }
            (Err(e), Err(message)) => assert_eq!(e.to_string(), message, "{object}"),
            (got, expected) => panic!("{object}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn reads_identity() {
        check(
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "api", "namespace": "web"}}),
            Ok(("apps", "v1", "Deployment", Some("web"), "api")),
        );
        check(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
            Ok(("", "v1", "Namespace", None, "web")),
        );
        check(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": ""}}),
            Ok(("", "v1", "ConfigMap", None, "c")),
        );
        check(
            json!({"apiVersion": "example.com/v1alpha1", "kind": "Widget",
                   "metadata": {"name": "w", "namespace": null}}),
            Ok(("example.com", "v1alpha1", "Widget", None, "w")),
        );
    }

    #[test]
    fn refuses_what_names_no_object() {
        check(
            json!({"kind": "ConfigMap", "metadata": {"name": "c"}}),
            Err("object has no apiVersion"),
        );
        check(
            json!({"apiVersion": "v1", "metadata": {"name": "c"}}),
            Err("object has no kind"),
        );
        check(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            Err("object has no metadata.name"),
        );
        check(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}}),
            Err("object has no metadata.name"),
        );
        check(
            json!({"apiVersion": 1, "kind": "ConfigMap", "metadata": {"name": "c"}}),
            Err("object apiVersion is not a string"),
        );
        check(
            json!({"apiVersion": "a/b/c", "kind": "X", "metadata": {"name": "c"}}),
            Err("apiVersion \"a/b/c\" is not `version` or `group/version`"),
        );
        check(
            json!({"apiVersion": "/v1", "kind": "X", "metadata": {"name": "c"}}),
            Err("apiVersion \"/v1\" is not `version` or `group/version`"),
        );
        check(
            json!({"apiVersion": "apps/", "kind": "X", "metadata": {"name": "c"}}),
            Err("apiVersion \"apps/\" is not `version` or `group/version`"),
        );
        check(
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "c", "namespace": 3}}),
            Err("object metadata.namespace is not a string"),
        );
    }

    #[test]
    fn version_is_not_identity() {
        let beta = ObjectRef::new("batch/v1beta1", "CronJob", Some("ns"), "c").expect("valid");
        let v1 = ObjectRef::new("batch/v1", "CronJob", Some("ns"), "c").expect("valid");
        assert_eq!(beta, v1);
        assert_eq!(v1.api_version(), "batch/v1");
        assert_eq!(v1.to_string(), "CronJob ns/c");
    }
}
