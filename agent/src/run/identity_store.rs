//! Where the agent keeps its identity: its key, the certificate chain the hub issued and the
//! hub CA, in a Secret of its namespace (`--identity-secret`, type Opaque, keys `tls.key`,
//! `tls.crt`, `ca.crt`), so that a restart does not register again; and where it reads the
//! one-time bootstrap token from (a file, or key `token` of a Secret). Talks to the apiserver
//! and the disk.
//!
//! Invariant: the key, the certificates and the token appear in no error and no log line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use secrecy::SecretString;

use crate::identity::AgentKey;
use crate::store::FIELD_MANAGER;

const KEY: &str = "tls.key";
const CHAIN: &str = "tls.crt";
const CA: &str = "ca.crt";
const TOKEN: &str = "token";

#[derive(Debug, thiserror::Error)]
pub enum IdentityStoreError {
    #[error("read Secret {namespace}/{name}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("write Secret {namespace}/{name}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} has an unusable {key}: {reason}")]
    Corrupt {
        namespace: String,
        name: String,
        key: &'static str,
        reason: String,
    },
    #[error("read the bootstrap token file {path}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bootstrap token ({origin}) is empty")]
    EmptyToken { origin: String },
    #[error("no bootstrap token: give --bootstrap-token-file or --bootstrap-secret")]
    NoTokenSource,
}

/// A certificate the hub issued, as kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// PEM: the leaf, then the hub CA.
    pub chain_pem: String,
    /// PEM of the CA the hub named.
    pub ca_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// What the Secret holds: always the key (kept before registering, so that a restart while
/// the hub waits for approval registers the same CSR again), and the certificate once issued.
#[derive(Debug)]
pub struct StoredIdentity {
    pub key: AgentKey,
    pub issued: Option<Issued>,
}

/// The identity Secret of one agent.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    api: Api<Secret>,
    namespace: String,
    name: String,
}

impl IdentityStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn corrupt(&self, key: &'static str, reason: impl ToString) -> IdentityStoreError {
        IdentityStoreError::Corrupt {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            key,
            reason: reason.to_string(),
        }
    }

    /// The identity kept so far; `None` when the Secret or its key is missing.
    pub async fn load(&self) -> Result<Option<StoredIdentity>, IdentityStoreError> {
        let secret =
            self.api
                .get_opt(&self.name)
                .await
                .map_err(|source| IdentityStoreError::Read {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    source,
                })?;
        let mut data = secret.and_then(|s| s.data).unwrap_or_default();
        let mut text = |key: &'static str| -> Result<Option<String>, IdentityStoreError> {
            data.remove(key)
                .map(|bytes| String::from_utf8(bytes.0).map_err(|_| self.corrupt(key, "not UTF-8")))
                .transpose()
        };
        let Some(key_pem) = text(KEY)? else {
            return Ok(None);
        };
        let key = AgentKey::from_pem(&key_pem).map_err(|e| self.corrupt(KEY, e))?;
        let issued = match (text(CHAIN)?, text(CA)?) {
            (Some(chain_pem), Some(ca_pem)) => Some(Issued { chain_pem, ca_pem }),
            _ => None,
        };
        Ok(Some(StoredIdentity { key, issued }))
    }

    /// Keeps `key` and, once there is one, its certificate.
    pub async fn save(
        &self,
        key: &AgentKey,
        issued: Option<&Issued>,
    ) -> Result<(), IdentityStoreError> {
        let mut data = BTreeMap::from([(KEY.to_owned(), ByteString(key.to_pem().into_bytes()))]);
        if let Some(issued) = issued {
            data.insert(
                CHAIN.to_owned(),
                ByteString(issued.chain_pem.clone().into_bytes()),
            );
            data.insert(
                CA.to_owned(),
                ByteString(issued.ca_pem.clone().into_bytes()),
            );
        }
        let mut secret = Secret {
            data: Some(data),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        };
        secret.metadata.name = Some(self.name.clone());
        secret.metadata.labels = Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "flotilla".to_owned(),
        )]));
        let mut body = serde_json::to_value(secret).expect("a Secret serializes");
        body["apiVersion"] = "v1".into();
        body["kind"] = "Secret".into();
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|source| IdentityStoreError::Write {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                source,
            })?;
        Ok(())
    }
}

/// Where the one-time bootstrap token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    File(PathBuf),
    /// Key `token` of this Secret in the agent's namespace.
    Secret(String),
}

/// Reads the bootstrap token (surrounding whitespace removed).
pub async fn bootstrap_token(
    client: &kube::Client,
    namespace: &str,
    source: Option<&TokenSource>,
) -> Result<SecretString, IdentityStoreError> {
    let (text, described) = match source.ok_or(IdentityStoreError::NoTokenSource)? {
        TokenSource::File(path) => {
            let bytes =
                tokio::fs::read(path)
                    .await
                    .map_err(|source| IdentityStoreError::TokenFile {
                        path: path.clone(),
                        source,
                    })?;
            (
                String::from_utf8_lossy(&bytes).into_owned(),
                format!("file {}", path.display()),
            )
        }
        TokenSource::Secret(name) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = api
                .get_opt(name)
                .await
                .map_err(|source| IdentityStoreError::Read {
                    namespace: namespace.to_owned(),
                    name: name.clone(),
                    source,
                })?;
            let bytes = secret
                .and_then(|s| s.data)
                .and_then(|mut d| d.remove(TOKEN))
                .map(|b| b.0)
                .unwrap_or_default();
            (
                String::from_utf8_lossy(&bytes).into_owned(),
                format!("key {TOKEN} of Secret {namespace}/{name}"),
            )
        }
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(IdentityStoreError::EmptyToken { origin: described });
    }
    Ok(SecretString::from(token.to_owned()))
}
