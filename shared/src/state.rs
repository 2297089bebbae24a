//! The `ClusterState` payload (DESIGN.md "Wire formats (v1)"): its exact JSON fields, reading
//! it with a list of the fields a v1 agent does not know, and its structural rules.
//!
//! It must not check signatures, clocks or generations (that is `verify`), and it never sees
//! the objects of an app, only the digest and size of their blob.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The `apiVersion` of every v1 document.
pub const API_VERSION: &str = "flotilla.dev/v1";
/// The `kind` of a cluster state payload.
pub const STATE_KIND: &str = "ClusterState";
/// The prune limit (percent of an app's objects per step) when the state does not say.
pub const DEFAULT_PRUNE_LIMIT: u32 = 50;

/// The desired state of one cluster, as signed by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    pub api_version: String,
    pub kind: String,
    pub cluster: String,
    pub generation: u64,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub allow_empty: bool,
    #[serde(default)]
    pub apps: Vec<App>,
    #[serde(default)]
    pub removed: Vec<Tombstone>,
}

/// One app of a cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub name: String,
    pub namespace: String,
    pub source: Source,
    pub sync_policy: SyncPolicy,
    /// The app's project limits; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub ignore_differences: Vec<IgnoreDifference>,
    pub blob: BlobRef,
}

/// Where an app's objects were rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub path: String,
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    #[serde(default)]
    pub automated: bool,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub self_heal: bool,
    /// At most this percentage of the app's objects is pruned in one step.
    #[serde(default = "default_prune_limit")]
    pub prune_limit: u32,
    #[serde(default)]
    pub create_namespace: bool,
}

fn default_prune_limit() -> u32 {
    DEFAULT_PRUNE_LIMIT
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            automated: true,
            prune: false,
            self_heal: false,
            prune_limit: DEFAULT_PRUNE_LIMIT,
            create_namespace: false,
        }
    }
}

/// What an app's project allows. Each absent list means "no limit"; an empty list allows
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_resources: Option<Vec<GroupKind>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKind {
    #[serde(default)]
    pub group: String,
    pub kind: String,
}

/// Fields the agent must not treat as drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifference {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub json_pointers: Vec<String>,
}

/// The digest and size of an app's blob: the blob is checked against both before it is
/// parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

impl BlobRef {
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }
}

/// An explicit removal of an app from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub name: String,
    /// Whether the app's objects are deleted (true) or merely abandoned (false).
    #[serde(default)]
    pub prune: bool,
}

/// Why a payload is not a v1 cluster state, naming the field where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(String);

/// A payload that was read, with the paths (`apps.0.foo`) of the fields v1 does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedState {
    pub state: ClusterState,
    pub unknown_fields: Vec<String>,
}

impl ClusterState {
    /// Reads a payload. Unknown fields are not an error (a v1 agent ignores and reports them);
    /// missing or mistyped known fields and duplicate keys are.
    /// Errors name the field they are about (`apps[0].blob.digest: …`).
    pub fn from_payload(payload: &[u8]) -> Result<ParsedState, PayloadError> {
        let mut unknown_fields = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(payload);
        let mut record = |path: serde_ignored::Path<'_>| unknown_fields.push(path.to_string());
        let state: ClusterState = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(&mut de, &mut record),
        )
        .map_err(|e| {
            let path = e.path().to_string();
            PayloadError(if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            })
        })?;
        de.end().map_err(|e| PayloadError(e.to_string()))?;
        Ok(ParsedState {
            state,
            unknown_fields,
        })
    }

    /// The payload bytes to sign: compact JSON, fields in the order of DESIGN.md.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cluster state always serializes")
    }

    /// The app of this name, if the state has one.
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// Structural rules that no signature can make right: the document kind, names that are
    /// safe to use as Kubernetes names and file titles, no app listed twice or both present
    /// and removed, a prune limit that is a percentage, and a validity window that is not
    /// empty. Returns a lowercase reason.
    pub fn check_structure(&self) -> Result<(), String> {
        if self.api_version != API_VERSION {
            return Err(format!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                self.api_version
            ));
        }
        if self.kind != STATE_KIND {
            return Err(format!("kind is {:?}, expected {STATE_KIND:?}", self.kind));
        }
        if self.cluster.is_empty() {
            return Err("cluster is empty".to_owned());
        }
        if self.expires_at <= self.issued_at {
            return Err(format!(
                "expiresAt {} is not after issuedAt {}",
                self.expires_at, self.issued_at
            ));
        }
        let mut names = BTreeSet::new();
        for app in &self.apps {
            if !is_dns_subdomain(&app.name) {
                return Err(format!(
                    "app name {:?} is not a DNS-1123 subdomain",
                    app.name
                ));
            }
            if !names.insert(app.name.as_str()) {
                return Err(format!("app {} is listed twice", app.name));
            }
            if !is_dns_label(&app.namespace) {
                return Err(format!(
                    "namespace {:?} of app {} is not a DNS-1123 label",
                    app.namespace, app.name
                ));
            }
            if app.sync_policy.prune_limit > 100 {
                return Err(format!(
                    "pruneLimit {} of app {} is more than 100 percent",
                    app.sync_policy.prune_limit, app.name
                ));
            }
        }
        let mut removed = BTreeSet::new();
        for tombstone in &self.removed {
            if !is_dns_subdomain(&tombstone.name) {
                return Err(format!(
                    "removed app name {:?} is not a DNS-1123 subdomain",
                    tombstone.name
                ));
            }
            if names.contains(tombstone.name.as_str()) {
                return Err(format!("app {} is both listed and removed", tombstone.name));
            }
            if !removed.insert(tombstone.name.as_str()) {
                return Err(format!("app {} is removed twice", tombstone.name));
            }
        }
        Ok(())
    }
}

/// A Kubernetes DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A Kubernetes DNS-1123 subdomain: dot-separated labels, at most 253 bytes. It can never
/// contain `/` or `..`, so it is also safe as a file title.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"apiVersion": "flotilla.dev/v1", "kind": "ClusterState", "cluster": "east",
   "generation": 1764288000123, "issuedAt": "2026-11-28T00:00:00Z",
   "expiresAt": "2026-11-29T00:00:00Z", "allowEmpty": false,
   "apps": [{"name": "shop", "namespace": "shop",
             "source": {"repoURL": "https://git.example/shop.git", "path": "deploy", "revision": "0123abcd"},
             "syncPolicy": {"automated": true, "prune": true, "selfHeal": true,
                            "pruneLimit": 50, "createNamespace": true},
             "limits": {"namespaces": ["shop"],
                        "clusterResources": [{"group": "", "kind": "Namespace"}]},
             "ignoreDifferences": [{"group": "apps", "kind": "Deployment",
                                    "jsonPointers": ["/spec/replicas"]}],
             "blob": {"digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 1234}}],
   "removed": [{"name": "old-app", "prune": true}]}"#;

    #[test]
    fn reads_the_design_example() {
        let parsed = ClusterState::from_payload(EXAMPLE.as_bytes()).expect("valid");
        assert!(parsed.unknown_fields.is_empty());
        let state = parsed.state;
        assert_eq!(state.cluster, "east");
        assert_eq!(state.generation, 1_764_288_000_123);
        assert_eq!(state.issued_at.to_string(), "2026-11-28T00:00:00Z");
        let app = state.app("shop").expect("has shop");
        assert_eq!(app.source.repo_url, "https://git.example/shop.git");
        assert!(app.sync_policy.self_heal);
        assert_eq!(app.blob.size, 1234);
        let limits = app.limits.as_ref().expect("has limits");
        assert_eq!(limits.namespaces.as_deref(), Some(&["shop".to_owned()][..]));
        assert_eq!(app.ignore_differences[0].json_pointers, ["/spec/replicas"]);
        assert_eq!(state.removed[0].name, "old-app");
        assert_eq!(state.check_structure(), Ok(()));

        // What we write reads back to the same value, with the same field names.
        let written = state.to_payload();
        let again = ClusterState::from_payload(&written).expect("round trip");
        assert_eq!(again.state, state);
        let a: serde_json::Value = serde_json::from_str(EXAMPLE).expect("json");
        let b: serde_json::Value = serde_json::from_slice(&written).expect("json");
        assert_eq!(a, b);
    }

    #[test]
    fn unknown_fields_are_collected_not_refused() {
        let mut value: serde_json::Value = serde_json::from_str(EXAMPLE).expect("json");
        value["futureField"] = serde_json::json!(1);
        value["apps"][0]["blob"]["mediaType"] = serde_json::json!("x");
        value["apps"][0]["syncPolicy"]["retry"] = serde_json::json!({"limit": 3});
        let payload = serde_json::to_vec(&value).expect("json");
        let parsed = ClusterState::from_payload(&payload).expect("still valid v1");
        let mut unknown = parsed.unknown_fields;
        unknown.sort();
        assert_eq!(
            unknown,
            [
                "apps.0.blob.mediaType",
                "apps.0.syncPolicy.retry",
                "futureField"
            ]
        );
    }

    #[test]
    fn defaults_apply_to_optional_fields() {
        let payload = r#"{"apiVersion":"flotilla.dev/v1","kind":"ClusterState","cluster":"c",
          "generation":1,"issuedAt":"2026-11-28T00:00:00Z","expiresAt":"2026-11-29T00:00:00Z",
          "apps":[{"name":"a","namespace":"a","source":{"repoURL":"","path":"","revision":""},
          "syncPolicy":{},"blob":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}]}"#;
        let state = ClusterState::from_payload(payload.as_bytes())
            .expect("valid")
            .state;
        assert!(!state.allow_empty);
        assert!(state.removed.is_empty());
        assert_eq!(state.apps[0].sync_policy.prune_limit, 50);
        assert!(state.apps[0].limits.is_none());
    }

    fn refused(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut value: serde_json::Value = serde_json::from_str(EXAMPLE).expect("json");
        edit(&mut value);
        let payload = serde_json::to_vec(&value).expect("json");
        match ClusterState::from_payload(&payload) {
            Err(e) => e.to_string(),
            Ok(parsed) => parsed
                .state
                .check_structure()
                .expect_err("should be refused"),
        }
    }

    #[test]
    fn structural_rules() {
        use serde_json::json;
        assert!(refused(|v| v["generation"] = json!(-1)).contains("u64"));
        assert!(refused(|v| v["issuedAt"] = json!("yesterday")).contains("issuedAt"));
        assert!(refused(|v| v["apiVersion"] = json!("flotilla.dev/v2")).contains("apiVersion"));
        assert!(refused(|v| v["kind"] = json!("AppBlob")).contains("kind"));
        assert!(refused(|v| v["cluster"] = json!("")).contains("cluster"));
        assert!(refused(|v| v["expiresAt"] = v["issuedAt"].clone()).contains("expiresAt"));
        assert!(refused(|v| v["apps"][0]["name"] = json!("../etc")).contains("app name"));
        assert!(refused(|v| v["apps"][0]["namespace"] = json!("a.b")).contains("namespace"));
        assert!(
            refused(|v| v["apps"][0]["syncPolicy"]["pruneLimit"] = json!(101))
                .contains("pruneLimit")
        );
        assert!(refused(|v| v["removed"][0]["name"] = json!("shop")).contains("both"));
        assert!(
            refused(|v| {
                let app = v["apps"][0].clone();
                v["apps"].as_array_mut().expect("array").push(app);
            })
            .contains("twice")
        );
        assert!(
            refused(|v| v["apps"][0]["blob"]["digest"] = json!("sha256:00")).contains("digest")
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let payload = EXAMPLE.replacen(
            r#""cluster": "east","#,
            r#""cluster": "east", "cluster": "west","#,
            1,
        );
        let err = ClusterState::from_payload(payload.as_bytes()).expect_err("ambiguous");
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("shop-1"));
        assert!(!is_dns_label("-shop"));
        assert!(!is_dns_label("Shop"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("shop.eu-1"));
        assert!(!is_dns_subdomain("shop..eu"));
        assert!(!is_dns_subdomain("a/b"));
        assert!(!is_dns_subdomain(""));
    }
}
