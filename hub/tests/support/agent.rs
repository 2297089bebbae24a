//! An agent as the hub's tests play it: a key, CSRs for a cluster, a TLS client that
//! presents the certificate the hub issued, and registration on the agent API.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use super::hub_process::Serve;

pub fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An agent's key and what it was issued.
pub struct Agent {
    pub key: rcgen::KeyPair,
    pub chain: Option<String>,
}

impl Agent {
    pub fn new() -> Self {
        Self {
            key: rcgen::KeyPair::generate().expect("key"),
            chain: None,
        }
    }

    pub fn csr(&self, cluster: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cluster);
        params.subject_alt_names = vec![rcgen::SanType::URI(
            flotilla_shared::identity::cluster_uri(cluster)
                .expect("uri")
                .try_into()
                .expect("ia5"),
        )];
        params
            .serialize_request(&self.key)
            .expect("CSR")
            .pem()
            .expect("PEM")
    }

    /// An HTTPS client trusting `ca_pem`, presenting this agent's certificate if it has one.
    pub fn client(&self, ca_pem: &str) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match &self.chain {
            Some(chain) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(chain.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("chain"),
                    PrivatePkcs8KeyDer::from(self.key.serialize_der()).into(),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }
}

pub struct Call {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Call {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Result<Call, String> {
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    Ok(Call {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.map_err(|e| e.to_string())?.to_vec(),
    })
}

pub async fn register(hub: &Serve, ca: &str, agent: &Agent, cluster: &str, token: &str) -> Call {
    let body = json!({"cluster": cluster, "token": token, "csr": agent.csr(cluster)});
    send(
        agent
            .client(ca)
            .post(format!("{}/v1/register", hub.agent_base))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
    .expect("the agent API answers")
}
