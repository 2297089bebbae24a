//! Fixture builders for the tests of every crate: signed states, app blobs and bundle files
//! from deterministic keys, e.g.
//! `Bundle::test().with_app(TestApp::new("shop").object(..)).signed_by(&key(1))`.
//!
//! Compiled only for tests and with the `testing` feature; nothing in a release build may
//! sign with a fixture key.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::blob::AppBlob;
use crate::bundle::write_bundle;
use crate::envelope::{Envelope, STATE_PAYLOAD_TYPE};
use crate::keys::{SigningKey, TrustRoot};
use crate::state::{
    API_VERSION, App, BlobRef, ClusterState, STATE_KIND, Source, SyncPolicy, Tombstone,
};

/// The fixed "now" of fixtures: 2026-11-28T00:00:00Z.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_795_824_000).expect("a valid fixed time")
}

/// A deterministic test key; different `n`, different key.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

/// A trust root of the given keys' public halves.
pub fn trust(keys: &[&SigningKey]) -> TrustRoot {
    TrustRoot::new(keys.iter().map(|k| k.public_key().clone()))
}

/// A ConfigMap, the smallest object worth putting in a blob.
pub fn config_map(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace}, "data": {"key": name}})
}

/// One app of a fixture state with its objects.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub app: App,
    pub objects: Vec<Value>,
}

impl TestApp {
    /// An app in the namespace of its own name, with one ConfigMap.
    pub fn new(name: &str) -> Self {
        Self {
            app: App {
                name: name.to_owned(),
                namespace: name.to_owned(),
                source: Source {
                    repo_url: format!("https://git.example/{name}.git"),
                    path: "deploy".to_owned(),
                    revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                },
                sync_policy: SyncPolicy::default(),
                limits: None,
                ignore_differences: Vec::new(),
                blob: BlobRef::of(b""),
            },
            objects: vec![config_map(name, "config")],
        }
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.app.namespace = namespace.to_owned();
        self
    }

    /// Replaces the objects.
    pub fn objects(mut self, objects: Vec<Value>) -> Self {
        self.objects = objects;
        self
    }

    /// Adds one object.
    pub fn object(mut self, object: Value) -> Self {
        self.objects.push(object);
        self
    }

    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.app.sync_policy = policy;
        self
    }

    /// The canonical blob bytes of this app's objects.
    pub fn blob_bytes(&self) -> Vec<u8> {
        AppBlob::new(self.objects.clone())
            .expect("fixture objects form a valid blob")
            .to_canonical_json()
    }
}

/// A cluster state under construction; `signed_by` finishes it.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub state: ClusterState,
    pub payload_type: String,
    apps: Vec<TestApp>,
}

impl Bundle {
    /// Cluster `test`, generation = `now()` in Unix milliseconds, issued `now()`, valid 24 h,
    /// no apps.
    pub fn test() -> Self {
        let issued = now();
        Self {
            state: ClusterState {
                api_version: API_VERSION.to_owned(),
                kind: STATE_KIND.to_owned(),
                cluster: "test".to_owned(),
                generation: u64::try_from(issued.as_millisecond()).expect("after 1970"),
                issued_at: issued,
                expires_at: issued + SignedDuration::from_hours(24),
                allow_empty: false,
                apps: Vec::new(),
                removed: Vec::new(),
            },
            payload_type: STATE_PAYLOAD_TYPE.to_owned(),
            apps: Vec::new(),
        }
    }

    pub fn cluster(mut self, cluster: &str) -> Self {
        self.state.cluster = cluster.to_owned();
        self
    }

    pub fn generation(mut self, generation: u64) -> Self {
        self.state.generation = generation;
        self
    }

    pub fn issued_at(mut self, at: Timestamp) -> Self {
        self.state.issued_at = at;
        self
    }

    pub fn expires_at(mut self, at: Timestamp) -> Self {
        self.state.expires_at = at;
        self
    }

    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.state.allow_empty = allow;
        self
    }

    pub fn payload_type(mut self, payload_type: &str) -> Self {
        self.payload_type = payload_type.to_owned();
        self
    }

    pub fn with_app(mut self, app: TestApp) -> Self {
        self.apps.push(app);
        self
    }

    pub fn removed(mut self, name: &str, prune: bool) -> Self {
        self.state.removed.push(Tombstone {
            name: name.to_owned(),
            prune,
        });
        self
    }

    /// The state with each app's blob reference filled in, and the blobs.
    pub fn finish(&self) -> (ClusterState, Vec<(String, Vec<u8>)>) {
        let mut state = self.state.clone();
        let mut blobs = Vec::new();
        for app in &self.apps {
            let bytes = app.blob_bytes();
            let mut entry = app.app.clone();
            entry.blob = BlobRef::of(&bytes);
            state.apps.push(entry);
            blobs.push((app.app.name.clone(), bytes));
        }
        (state, blobs)
    }

    pub fn signed_by(self, key: &SigningKey) -> Signed {
        self.signed_by_all(&[key])
    }

    pub fn signed_by_all(self, keys: &[&SigningKey]) -> Signed {
        let (state, blobs) = self.finish();
        let payload = state.to_payload();
        let envelope = Envelope::sign_all(&self.payload_type, &payload, keys);
        Signed {
            state,
            payload,
            envelope,
            blobs,
        }
    }
}

/// A signed fixture: the state, its exact payload, the envelope and the blobs.
#[derive(Debug, Clone)]
pub struct Signed {
    pub state: ClusterState,
    pub payload: Vec<u8>,
    pub envelope: Envelope,
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Signed {
    pub fn envelope_bytes(&self) -> Vec<u8> {
        self.envelope.to_json()
    }

    /// The blob of one app.
    pub fn blob(&self, app: &str) -> &[u8] {
        self.blobs
            .iter()
            .find(|(name, _)| name == app)
            .map(|(_, bytes)| bytes.as_slice())
            .expect("the fixture has this app")
    }

    /// The bundle file (OCI layout tar) of this fixture.
    pub fn bundle_file(&self) -> Vec<u8> {
        let blobs: Vec<(&str, &[u8])> = self
            .blobs
            .iter()
            .map(|(app, bytes)| (app.as_str(), bytes.as_slice()))
            .collect();
        write_bundle(Vec::new(), &self.envelope_bytes(), &blobs).expect("writing to memory")
    }
}

/// An envelope over arbitrary payload bytes, for states no builder would make.
pub fn sign_raw(payload_type: &str, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    Envelope::sign(payload_type, payload, key).to_json()
}
