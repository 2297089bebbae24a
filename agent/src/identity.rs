//! The agent's identity on the hub's agent API: its key pair (made in the cluster; only its
//! public half ever leaves), the CSR it registers with, the certificate the hub issued and
//! when to renew it, and the mutual-TLS client configuration for talking to the hub.
//!
//! Pure: no I/O. Where the key is kept (a Secret), and registering and renewing over HTTP,
//! belong to the callers. The key's PEM is a secret: it is in no error and no `Debug` output.

use std::fmt;
use std::sync::Arc;

use flotilla_shared::identity::{self, ClusterNameError};
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

/// The ALPN protocols the agent offers, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("generate agent key pair: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("agent key is not a PKCS#8 PEM key: {0}")]
    Key(#[source] rcgen::Error),
    #[error("agent key is {0}; the hub accepts ECDSA P-256 and Ed25519 keys")]
    KeyAlgorithm(String),
    #[error(transparent)]
    ClusterName(#[from] ClusterNameError),
    #[error("create certificate signing request: {0}")]
    Csr(#[source] rcgen::Error),
    #[error("{what} is not readable: {reason}")]
    Certificate { what: &'static str, reason: String },
    #[error("build TLS client configuration: {0}")]
    Tls(#[source] rustls::Error),
}

/// The agent's private key.
pub struct AgentKey {
    key: rcgen::KeyPair,
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("algorithm", self.key.algorithm())
            .finish_non_exhaustive()
    }
}

impl AgentKey {
    /// A new ECDSA P-256 key.
    pub fn generate() -> Result<AgentKey, IdentityError> {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|key| AgentKey { key })
            .map_err(IdentityError::Generate)
    }

    /// The key as PKCS#8 PEM, to keep. A secret.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A key kept with `to_pem`; ECDSA P-256 or Ed25519, as the hub accepts.
    pub fn from_pem(pem: &str) -> Result<AgentKey, IdentityError> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(IdentityError::Key)?;
        let algorithm = key.algorithm();
        if algorithm != &rcgen::PKCS_ECDSA_P256_SHA256 && algorithm != &rcgen::PKCS_ED25519 {
            return Err(IdentityError::KeyAlgorithm(format!("{algorithm:?}")));
        }
        Ok(AgentKey { key })
    }

    /// A CSR (PEM) for `cluster`: the cluster as common name and as URI SAN.
    pub fn csr_pem(&self, cluster: &str) -> Result<String, IdentityError> {
        let uri = identity::cluster_uri(cluster)?;
        let uri = rcgen::string::Ia5String::try_from(uri).map_err(IdentityError::Csr)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cluster);
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(IdentityError::Csr)
    }

    fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }
}

/// What the agent needs to know of the certificate the hub issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Lowercase hex, as the hub reports it.
    pub serial_hex: String,
}

impl Certificate {
    /// The first certificate of a PEM chain (leaf first, as the hub sends it).
    pub fn parse(chain_pem: &str) -> Result<Certificate, IdentityError> {
        let chain = pem_certificates(chain_pem, "certificate chain")?;
        let leaf = chain.first().ok_or_else(|| IdentityError::Certificate {
            what: "certificate chain",
            reason: "it holds no certificate".to_owned(),
        })?;
        let (_, cert) =
            X509Certificate::from_der(leaf).map_err(|e| IdentityError::Certificate {
                what: "certificate chain",
                reason: e.to_string(),
            })?;
        let validity = cert.validity();
        Ok(Certificate {
            not_before: timestamp(validity.not_before.timestamp()),
            not_after: timestamp(validity.not_after.timestamp()),
            serial_hex: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
    }

    /// When to renew: two thirds into the lifetime, so that a third of it is left to retry.
    pub fn renew_at(&self) -> Timestamp {
        let (start, end) = (self.not_before.as_second(), self.not_after.as_second());
        timestamp(start + (end - start) * 2 / 3)
    }

    /// When to renew, as of `now`: at [`Certificate::renew_at`], but no sooner than a short
    /// pause from `now` (a minute, or half of what is left of the lifetime if that is less),
    /// so that a certificate that is already due, or a hub that issues very short-lived ones,
    /// does not make the agent ask again and again at once.
    pub fn renew_after(&self, now: Timestamp) -> Timestamp {
        let left = (self.not_after.as_second() - now.as_second()).max(0);
        let pause = (left / 2).min(60);
        self.renew_at().max(timestamp(now.as_second() + pause))
    }

    /// Whether the certificate is no longer valid at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now > self.not_after
    }
}

/// The TLS client configuration for the agent API: trusts the hub CA (`hub_ca_pem`) alone and
/// presents `chain_pem`, which must be the certificate of `key`. HTTP/2 and HTTP/1.1, the
/// ring provider whatever the process default is.
pub fn client_config(
    key: &AgentKey,
    chain_pem: &str,
    hub_ca_pem: &str,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let chain = pem_certificates(chain_pem, "certificate chain")?;
    let mut config = config_builder(hub_ca_pem)?
        .with_client_auth_cert(chain, key.private_key_der())
        .map_err(IdentityError::Tls)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The TLS client configuration for registering: trusts the hub CA (`hub_ca_pem`) alone and
/// presents no certificate (the agent has none yet; the bootstrap token vouches for it).
pub fn registration_config(hub_ca_pem: &str) -> Result<Arc<ClientConfig>, IdentityError> {
    let mut config = config_builder(hub_ca_pem)?.with_no_client_auth();
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn config_builder(
    hub_ca_pem: &str,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, IdentityError> {
    let mut roots = RootCertStore::empty();
    let cas = pem_certificates(hub_ca_pem, "hub CA")?;
    if cas.is_empty() {
        return Err(IdentityError::Certificate {
            what: "hub CA",
            reason: "it holds no certificate".to_owned(),
        });
    }
    for ca in cas {
        roots.add(ca).map_err(IdentityError::Tls)?;
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(IdentityError::Tls)?
            .with_root_certificates(roots),
    )
}

fn pem_certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| IdentityError::Certificate {
            what,
            reason: e.to_string(),
        })
}

fn timestamp(second: i64) -> Timestamp {
    Timestamp::from_second(second)
        .expect("certificate times (years 0 to 9999) are within jiff's range")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rcgen::PublicKeyData as _;
    use rustls::ServerConfig;
    use rustls::pki_types::ServerName;
    use rustls::server::WebPkiClientVerifier;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};

    use super::*;

    fn at(time: &str) -> Timestamp {
        time.parse().expect("timestamp")
    }

    fn time(time: Timestamp) -> x509_parser::time::ASN1Time {
        x509_parser::time::ASN1Time::from_timestamp(time.as_second()).expect("time")
    }

    #[test]
    fn the_csr_names_the_cluster_and_is_signed_by_the_key() {
        let key = AgentKey::generate().expect("key");
        let pem = key.csr_pem("east").expect("CSR");
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .expect("PEM");
        let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).expect("CSR");
        csr.verify_signature().expect("self-signed");
        let info = &csr.certification_request_info;
        let names: Vec<_> = info
            .subject
            .iter_common_name()
            .map(|cn| cn.as_str().expect("text"))
            .collect();
        assert_eq!(names, ["east"]);
        let uris: Vec<_> = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|extension| match extension {
                ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
                _ => None,
            })
            .flatten()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect();
        assert_eq!(uris, ["spiffe://flotilla.dev/cluster/east"]);
        assert_eq!(info.subject_pki.raw, key.key.subject_public_key_info());
    }

    #[test]
    fn an_invalid_cluster_name_gets_no_csr() {
        let key = AgentKey::generate().expect("key");
        let message = key.csr_pem("East").expect_err("refused").to_string();
        assert!(message.contains("DNS-1123"), "{message}");
    }

    #[test]
    fn the_key_survives_a_pem_round_trip_and_is_never_printed() {
        let key = AgentKey::generate().expect("key");
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        let again = AgentKey::from_pem(&pem).expect("read back");
        assert_eq!(
            again.key.subject_public_key_info(),
            key.key.subject_public_key_info()
        );
        let debug = format!("{key:?}");
        assert!(
            !debug.contains(pem.lines().nth(1).expect("body")),
            "{debug}"
        );

        assert!(AgentKey::from_pem("hello").is_err());
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let message = AgentKey::from_pem(&p384.serialize_pem())
            .expect_err("P-384")
            .to_string();
        assert!(message.contains("P-256"), "{message}");
    }

    /// A test hub: its CA, and a certificate of `key` for the cluster the CSR names.
    struct Hub {
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_pem: String,
    }

    impl Hub {
        fn new() -> Hub {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::default();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            let ca_pem = params.self_signed(&key).expect("CA").pem();
            Hub {
                issuer: rcgen::Issuer::new(params, key),
                ca_pem,
            }
        }

        /// Signs the CSR as it asks, for client authentication.
        fn sign(&self, csr_pem: &str, not_before: Timestamp, not_after: Timestamp) -> String {
            let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("CSR");
            csr.params.not_before = time(not_before).to_datetime();
            csr.params.not_after = time(not_after).to_datetime();
            csr.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let cert = csr.signed_by(&self.issuer).expect("signed");
            format!("{}{}", cert.pem(), self.ca_pem)
        }

        fn server_config(&self) -> Arc<ServerConfig> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &self.issuer).expect("server cert");
            let mut roots = RootCertStore::empty();
            for ca in pem_certificates(&self.ca_pem, "CA").expect("CA") {
                roots.add(ca).expect("root");
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .expect("verifier");
            let mut config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![cert.der().clone()],
                    PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
                )
                .expect("server config");
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        }
    }

    #[test]
    fn renews_two_thirds_into_the_lifetime() {
        let hub = Hub::new();
        let key = AgentKey::generate().expect("key");
        let chain = hub.sign(
            &key.csr_pem("east").expect("CSR"),
            at("2026-03-01T00:00:00Z"),
            at("2026-03-31T00:00:00Z"),
        );
        let cert = Certificate::parse(&chain).expect("certificate");
        assert_eq!(cert.not_before, at("2026-03-01T00:00:00Z"));
        assert_eq!(cert.not_after, at("2026-03-31T00:00:00Z"));
        assert_eq!(cert.renew_at(), at("2026-03-21T00:00:00Z"));
        assert!(!cert.expired(at("2026-03-31T00:00:00Z")));
        assert!(cert.expired(at("2026-03-31T00:00:01Z")));
        assert_eq!(cert.serial_hex.len() % 2, 0);
    }

    #[test]
    fn a_certificate_already_due_is_renewed_after_a_pause() {
        let hub = Hub::new();
        let key = AgentKey::generate().expect("key");
        let issued = |from, to| {
            Certificate::parse(&hub.sign(&key.csr_pem("east").expect("CSR"), at(from), at(to)))
                .expect("certificate")
        };
        let month = issued("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z");
        // Before the two-thirds point: that point.
        assert_eq!(
            month.renew_after(at("2026-03-02T00:00:00Z")),
            at("2026-03-21T00:00:00Z")
        );
        // Past it (an agent that was away): a minute from now.
        assert_eq!(
            month.renew_after(at("2026-03-25T00:00:00Z")),
            at("2026-03-25T00:01:00Z")
        );
        // A short-lived certificate: half of what is left.
        let short = issued("2026-03-01T00:00:00Z", "2026-03-01T00:05:20Z");
        assert_eq!(
            short.renew_after(at("2026-03-01T00:05:00Z")),
            at("2026-03-01T00:05:10Z")
        );
        // An expired one: now.
        assert_eq!(
            short.renew_after(at("2026-03-02T00:00:00Z")),
            at("2026-03-02T00:00:00Z")
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        for garbage in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        ] {
            let message = Certificate::parse(garbage)
                .expect_err("refused")
                .to_string();
            assert!(
                message.contains("certificate chain is not readable"),
                "{garbage:?}: {message}"
            );
        }
    }

    /// One connection over 127.0.0.1 to `server` as "localhost": the cluster URIs of the
    /// client certificate the server saw, or why the client gave up.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<(Vec<String>, Vec<u8>), String> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(tcp).await.ok()?;
            let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
            tls.write_all(b"ok").await.ok()?;
            tls.shutdown().await.ok()?;
            let (_, cert) = X509Certificate::from_der(&leaf).ok()?;
            let san = cert.subject_alternative_name().ok()??;
            Some(
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::URI(uri) => Some((*uri).to_owned()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )
        });
        let connected = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await?;
            let mut answer = Vec::new();
            tls.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec())
        }
        .await
        .map_err(|e| e.to_string());
        let uris = served.await.expect("server task");
        connected.map(|alpn| (uris.unwrap_or_default(), alpn))
    }

    #[tokio::test]
    async fn the_client_trusts_its_hub_and_presents_the_issued_certificate() {
        let hub = Hub::new();
        let key = AgentKey::generate().expect("key");
        let now = Timestamp::now();
        let chain = hub.sign(
            &key.csr_pem("east").expect("CSR"),
            now - jiff::SignedDuration::from_mins(5),
            now + jiff::SignedDuration::from_hours(24),
        );
        let client = client_config(&key, &chain, &hub.ca_pem).expect("client config");
        let (uris, alpn) = handshake(hub.server_config(), client)
            .await
            .expect("connected");
        assert_eq!(uris, ["spiffe://flotilla.dev/cluster/east"]);
        assert_eq!(alpn, b"h2");
    }

    #[tokio::test]
    async fn registration_trusts_the_hub_and_presents_no_certificate() {
        let hub = Hub::new();
        let client = registration_config(&hub.ca_pem).expect("client config");
        // The test hub requires a client certificate, so the handshake fails on its side
        // (the client got as far as trusting the hub).
        let refused = handshake(hub.server_config(), client)
            .await
            .expect_err("no certificate");
        assert!(!refused.contains("invalid peer certificate"), "{refused}");
        let impostor = Hub::new();
        let client = registration_config(&hub.ca_pem).expect("client config");
        let refused = handshake(impostor.server_config(), client)
            .await
            .expect_err("refused");
        assert!(refused.contains("invalid peer certificate"), "{refused}");
    }

    #[tokio::test]
    async fn the_client_refuses_a_hub_of_another_ca() {
        let hub = Hub::new();
        let impostor = Hub::new();
        let key = AgentKey::generate().expect("key");
        let now = Timestamp::now();
        let chain = hub.sign(
            &key.csr_pem("east").expect("CSR"),
            now,
            now + jiff::SignedDuration::from_hours(24),
        );
        let client = client_config(&key, &chain, &hub.ca_pem).expect("client config");
        let refused = handshake(impostor.server_config(), client)
            .await
            .expect_err("refused");
        assert!(refused.contains("invalid peer certificate"), "{refused}");
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let hub = Hub::new();
        let key = AgentKey::generate().expect("key");
        let other = AgentKey::generate().expect("key");
        let now = Timestamp::now();
        let chain = hub.sign(
            &other.csr_pem("east").expect("CSR"),
            now,
            now + jiff::SignedDuration::from_hours(24),
        );
        let message = client_config(&key, &chain, &hub.ca_pem)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("TLS client configuration"), "{message}");
        let message = client_config(&key, &chain, "")
            .expect_err("no CA")
            .to_string();
        assert!(message.contains("hub CA"), "{message}");
    }
}
