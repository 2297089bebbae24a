//! What the agent's end-to-end tests share: an `Agent` — an engine with a state namespace
//! of its own, a fixture signing key, and states with ever higher generations — so each
//! test area says only what it checks.

use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_agent::engine::{Engine, Settings};
use flotilla_agent::oneshot::{self, Applied, OneshotError};
use flotilla_agent::policy::LocalPolicy;
use flotilla_agent::store::Store;
use flotilla_e2e::{shared, test_namespace};
use flotilla_shared::testing::{Bundle, key};
use flotilla_shared::{SigningKey, TrustRoot};
use jiff::{SignedDuration, Timestamp};

/// The cluster name every fixture state is signed for.
pub const CLUSTER: &str = "e2e";

/// One agent for one cluster, signing with a fixture key.
pub struct Agent {
    pub client: kube::Client,
    pub engine: Engine,
    pub key: SigningKey,
    pub trust: TrustRoot,
    /// The agent's own namespace (its state store; off limits to the states it applies).
    pub namespace: String,
    generation: AtomicU64,
}

impl Agent {
    /// An admin agent on the shared cluster, in a fresh namespace of its own.
    pub async fn new() -> anyhow::Result<Agent> {
        let client = shared().await.client().await?;
        let namespace = test_namespace(&client, "agent").await?;
        Ok(Agent::with_client(client, &namespace, 16))
    }

    /// An agent acting with `client`'s identity, keeping its state in `namespace`.
    pub fn with_client(client: kube::Client, namespace: &str, concurrency: usize) -> Agent {
        let settings = Settings {
            policy: LocalPolicy {
                agent_namespace: Some(namespace.to_owned()),
                ..LocalPolicy::default()
            },
            concurrency,
        };
        let engine = Engine::new(
            client.clone(),
            Store::new(client.clone(), namespace),
            settings,
        );
        let key = key(7);
        let trust = TrustRoot::new([key.public_key().clone()]);
        let now = u64::try_from(Timestamp::now().as_millisecond()).expect("after 1970");
        Agent {
            client,
            engine,
            key,
            trust,
            namespace: namespace.to_owned(),
            generation: AtomicU64::new(now),
        }
    }

    /// A state for this cluster, valid now, with a generation above every earlier one.
    pub fn state(&self) -> Bundle {
        let now = Timestamp::now();
        Bundle::test()
            .cluster(CLUSTER)
            .issued_at(now)
            .expires_at(now + SignedDuration::from_hours(24))
            .generation(self.generation.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Signs `bundle` and applies it as `flotilla-agent apply` would.
    pub async fn apply(&self, bundle: Bundle) -> Result<Applied, OneshotError> {
        let signed = bundle.signed_by(&self.key);
        self.apply_file(&signed.bundle_file()).await
    }

    /// Applies the bytes of a bundle file.
    pub async fn apply_file(&self, file: &[u8]) -> Result<Applied, OneshotError> {
        oneshot::apply_bundle(
            &self.engine,
            file.to_vec(),
            &self.trust,
            CLUSTER,
            Timestamp::now(),
        )
        .await
    }
}
