//! The hub CA on the agent API: it checks the CSRs agents register with, issues their client
//! certificates and the agent API's own server certificate, builds the mutual-TLS server
//! configuration, and reads the cluster a verified client certificate names.
//!
//! It reads the two CA files that `flotilla-hub init` wrote and nothing else; it does no
//! network I/O and keeps no state. Who may register (bootstrap tokens, approval) and which
//! certificates are revoked is decided by the callers, which store what this module returns.
//!
//! Invariant: every certificate issued here for a cluster carries the cluster's name both as
//! its common name and as its URI SAN (`flotilla_shared::identity::cluster_uri`), and
//! `peer_identity` accepts a certificate only when the two agree.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_shared::identity::{self, ClusterNameError};
use jiff::Timestamp;
use rand_core::{OsRng, RngCore as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest as _, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
use x509_parser::prelude::FromDer as _;
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::init::{CA_CERT_FILE, CA_KEY_FILE};

/// How long a client certificate is valid when nothing else is configured.
pub const DEFAULT_CLIENT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How far a certificate is backdated, so that an agent whose clock is a little behind the
/// hub's accepts it at once.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// How long the agent API's server certificate is valid; it is issued again at each start.
pub const DEFAULT_SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What a CSR's subject must be.
const ONE_CN: &str = "want one common name, the cluster name";

/// The ALPN protocols of the agent API, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hub CA key is not a PKCS#8 PEM key: {0}")]
    CaKey(#[source] rcgen::Error),
    #[error("hub CA certificate: {0}")]
    CaCert(String),
    #[error("hub CA expired at {0}; it can issue no more certificates")]
    CaExpired(Timestamp),
    #[error(transparent)]
    ClusterName(#[from] ClusterNameError),
    #[error("certificate signing request is not readable: {0}")]
    CsrParse(String),
    #[error("certificate signing request signature does not verify")]
    CsrSignature,
    #[error("certificate signing request {0}")]
    CsrSubject(String),
    #[error("certificate signing request is for cluster {requested:?}, not {expected:?}")]
    CsrCluster { expected: String, requested: String },
    #[error("certificate signing request key is {0}; the hub accepts ECDSA P-256 and Ed25519 keys")]
    CsrKey(String),
    #[error("time {0} cannot be written in a certificate")]
    Validity(Timestamp),
    #[error("server certificate needs at least one host name or IP address")]
    NoServerName,
    #[error("issue certificate: {0}")]
    Issue(#[source] rcgen::Error),
    #[error("build TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    #[error("build client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    #[error("client certificate {0}")]
    Peer(String),
}

/// The hub CA: its signing key and certificate.
#[derive(Debug)]
pub struct HubCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    not_after: Timestamp,
}

/// A CSR whose signature verified, whose key the hub accepts and whose subject is the
/// cluster it registers as. Invariant: only `Csr::parse` makes one.
#[derive(Debug, Clone)]
pub struct Csr {
    cluster: String,
    public_key: rcgen::SubjectPublicKeyInfo,
    key_fingerprint: String,
}

/// A client certificate issued to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate and then the hub CA's, PEM.
    pub chain_pem: String,
    /// The serial number, lowercase hex, as `PeerIdentity::serial_hex` reads it back.
    pub serial_hex: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// SHA-256 (hex) of the certificate's SubjectPublicKeyInfo, as `Csr::key_fingerprint`.
    pub key_fingerprint: String,
}

/// The agent API's server certificate and its key (which exists only in memory).
#[derive(Debug)]
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_after: Timestamp,
}

/// Who is on the other end of a verified mutual-TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub cluster: String,
    /// Lowercase hex, as `IssuedCert::serial_hex`; what revocation is checked against.
    pub serial_hex: String,
    pub not_after: Timestamp,
}

impl HubCa {
    /// Reads the CA that `flotilla-hub init` wrote into the data directory `dir`.
    pub fn load(dir: &Path) -> Result<HubCa, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PkiError::Read { path, source })
        };
        HubCa::from_pem(&read(CA_KEY_FILE)?, &read(CA_CERT_FILE)?)
    }

    /// The CA from its PKCS#8 PEM key and its PEM certificate, which must belong together.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<HubCa, PkiError> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(PkiError::CaKey)?;
        let mut certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes());
        let cert = match (certs.next(), certs.next()) {
            (Some(Ok(cert)), None) => cert,
            (Some(Err(e)), _) => return Err(PkiError::CaCert(format!("not PEM: {e}"))),
            (None, _) => return Err(PkiError::CaCert("no PEM certificate".to_owned())),
            (Some(Ok(_)), Some(_)) => {
                return Err(PkiError::CaCert("more than one certificate".to_owned()));
            }
        };
        let (_, parsed) = X509Certificate::from_der(&cert)
            .map_err(|e| PkiError::CaCert(format!("not a certificate: {e}")))?;
        if parsed.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(PkiError::CaCert(
                "does not belong to the hub CA key".to_owned(),
            ));
        }
        let not_after = timestamp(parsed.validity().not_after);
        let issuer = rcgen::Issuer::from_ca_cert_der(&cert, key)
            .map_err(|e| PkiError::CaCert(e.to_string()))?;
        Ok(HubCa {
            issuer,
            cert_pem: format!("{}\n", cert_pem.trim()),
            cert,
            not_after,
        })
    }

    /// The CA certificate (PEM), which agents trust for the agent API.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues the client certificate of `csr.cluster()`: valid from `now - skew` to
    /// `now + lifetime` (never past the CA's own expiry), for client authentication only.
    pub fn issue_client(
        &self,
        csr: &Csr,
        lifetime: Duration,
        skew: Duration,
        now: Timestamp,
    ) -> Result<IssuedCert, PkiError> {
        let (not_before, not_after) = self.validity(lifetime, skew, now)?;
        let serial = random_serial();
        let mut params = leaf_params(&serial, not_before, not_after)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, csr.cluster.as_str());
        let uri = rcgen::string::Ia5String::try_from(identity::cluster_uri(&csr.cluster)?)
            .map_err(PkiError::Issue)?;
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(PkiError::Issue)?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            serial_hex: hex::encode(serial),
            not_before,
            not_after,
            key_fingerprint: csr.key_fingerprint.clone(),
        })
    }

    /// Issues the agent API's server certificate for `names` (host names and IP addresses)
    /// with a new ECDSA P-256 key, backdated by `DEFAULT_CLOCK_SKEW`.
    pub fn issue_server(
        &self,
        names: &[String],
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<ServerCert, PkiError> {
        if names.is_empty() {
            return Err(PkiError::NoServerName);
        }
        let (not_before, not_after) = self.validity(lifetime, DEFAULT_CLOCK_SKEW, now)?;
        let mut params = leaf_params(&random_serial(), not_before, not_after)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flotilla hub agent API");
        params.subject_alt_names = rcgen::CertificateParams::new(names.to_vec())
            .map_err(PkiError::Issue)?
            .subject_alt_names;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::Issue)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Issue)?;
        Ok(ServerCert {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            not_after,
        })
    }

    /// The agent API's TLS configuration: `server` as its certificate, HTTP/2 and HTTP/1.1.
    /// A client certificate, when one is presented, must be issued by this CA (or the
    /// handshake fails); a connection without one is let through because registration is
    /// how an agent gets its first certificate: the agent API refuses every other route
    /// without a verified certificate. Uses the ring provider, whatever the process default is.
    ///
    /// `refused` hears of every client certificate the verifier refuses, with the cluster it
    /// claims to be (read unverified from its URI SAN, for the operator's eyes only) and why.
    pub fn server_config(
        &self,
        server: ServerCert,
        refused: Option<RefusedCertificates>,
    ) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).map_err(PkiError::Tls)?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(PkiError::Verifier)?;
        let verifier: Arc<dyn ClientCertVerifier> = match refused {
            Some(refused) => Arc::new(Observed { inner, refused }),
            None => inner,
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(PkiError::Tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(server.chain, server.key)
            .map_err(PkiError::Tls)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// `now - skew` and `now + lifetime`, in whole seconds as a certificate holds them, the
    /// end clamped to the CA's own.
    fn validity(
        &self,
        lifetime: Duration,
        skew: Duration,
        now: Timestamp,
    ) -> Result<(Timestamp, Timestamp), PkiError> {
        let now = Timestamp::from_second(now.as_second())
            .expect("the whole seconds of a timestamp are a timestamp");
        if now >= self.not_after {
            return Err(PkiError::CaExpired(self.not_after));
        }
        let not_before = now.checked_sub(skew).map_err(|_| PkiError::Validity(now))?;
        let not_after = now
            .checked_add(lifetime)
            .map_err(|_| PkiError::Validity(now))?
            .min(self.not_after);
        Ok((not_before, not_after))
    }
}

impl Csr {
    /// Parses a PEM CSR and checks it: its signature verifies, its key is ECDSA P-256 or
    /// Ed25519, its one common name is `cluster`, and a URI SAN, if it asks for one, names
    /// `cluster` too. Other requested extensions are ignored: the hub decides what a client
    /// certificate holds.
    pub fn parse(pem: &str, cluster: &str) -> Result<Csr, PkiError> {
        identity::validate_cluster_name(cluster)?;
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::CsrParse(format!("no PEM CERTIFICATE REQUEST: {e}")))?;
        let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| PkiError::CsrParse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::CsrParse("trailing bytes after it".to_owned()));
        }
        csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
        let info = &csr.certification_request_info;
        let public_key = accepted_key(&info.subject_pki)?;

        let names = info
            .subject
            .iter_common_name()
            .map(|cn| cn.as_str())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                PkiError::CsrSubject(format!("has a common name that is not text; {ONE_CN}"))
            })?;
        match names.as_slice() {
            [name] if *name == cluster => {}
            [name] => return Err(mismatch(cluster, name)),
            [] => {
                return Err(PkiError::CsrSubject(format!(
                    "has no common name; {ONE_CN}"
                )));
            }
            _ => {
                return Err(PkiError::CsrSubject(format!(
                    "has several common names; {ONE_CN}"
                )));
            }
        }
        for extension in csr.requested_extensions().into_iter().flatten() {
            let ParsedExtension::SubjectAlternativeName(san) = extension else {
                continue;
            };
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    match identity::cluster_from_uri(uri) {
                        Ok(named) if named == cluster => {}
                        Ok(named) => return Err(mismatch(cluster, named)),
                        Err(e) => return Err(PkiError::CsrSubject(format!("asks for a SAN: {e}"))),
                    }
                }
            }
        }
        Ok(Csr {
            cluster: cluster.to_owned(),
            public_key,
            key_fingerprint: hex::encode(Sha256::digest(info.subject_pki.raw)),
        })
    }

    /// The cluster the CSR registers as.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// SHA-256 (hex) of the CSR's SubjectPublicKeyInfo: the same for every CSR of one key,
    /// so a registration retried with the same key can be recognised.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }
}

/// Told of each refused client certificate: the cluster it claims (unverified) and why.
pub type RefusedCertificates = Arc<dyn Fn(Option<String>, String) + Send + Sync>;

/// A client verifier that reports what the inner one refuses.
struct Observed {
    inner: Arc<dyn ClientCertVerifier>,
    refused: RefusedCertificates,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

/// The cluster a certificate claims in its URI SAN, without checking anything else.
fn claimed_cluster(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => identity::cluster_from_uri(uri).ok().map(str::to_owned),
        _ => None,
    })
}

impl ClientCertVerifier for Observed {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| (self.refused)(claimed_cluster(end_entity), error.to_string()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The cluster that the first of `certs` (a client's chain, leaf first) names.
///
/// Invariant: `certs` come from a connection whose verifier (`HubCa::server_config`) accepted
/// them; this function checks names, not signatures.
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<PeerIdentity, PkiError> {
    let peer = |message: &str| PkiError::Peer(message.to_owned());
    let leaf = certs.first().ok_or_else(|| peer("is missing"))?;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| PkiError::Peer(format!("is not readable: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Peer(format!("has an unreadable subject alternative name: {e}")))?
        .ok_or_else(|| peer("has no subject alternative name"))?;
    let mut clusters = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => identity::cluster_from_uri(uri).ok(),
            _ => None,
        });
    let cluster = match (clusters.next(), clusters.next()) {
        (Some(cluster), None) => cluster,
        (None, _) => return Err(peer("names no cluster in a URI SAN")),
        (Some(_), Some(_)) => return Err(peer("names more than one cluster")),
    };
    let names = cert
        .subject()
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap_or_default())
        .collect::<Vec<_>>();
    if names != [cluster] {
        return Err(PkiError::Peer(format!(
            "names cluster {cluster:?} but has common name {:?}",
            names.join(", ")
        )));
    }
    Ok(PeerIdentity {
        cluster: cluster.to_owned(),
        serial_hex: hex::encode(cert.raw_serial()),
        not_after: timestamp(cert.validity().not_after),
    })
}

fn mismatch(expected: &str, requested: &str) -> PkiError {
    PkiError::CsrCluster {
        expected: expected.to_owned(),
        requested: requested.to_owned(),
    }
}

/// The CSR's key, when it is one the hub accepts, in the form rcgen signs.
fn accepted_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    let algorithm = &spki.algorithm;
    if algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        if curve != Some(OID_EC_P256) {
            let curve = curve.map_or_else(|| "unknown".to_owned(), |c| c.to_id_string());
            return Err(PkiError::CsrKey(format!("ECDSA on curve {curve}")));
        }
    } else if algorithm.algorithm != OID_SIG_ED25519 {
        return Err(PkiError::CsrKey(format!(
            "of algorithm {}",
            algorithm.algorithm.to_id_string()
        )));
    }
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| PkiError::CsrKey(e.to_string()))
}

/// 16 random bytes, the first in 0x40..=0x7f so that the DER integer is positive and keeps
/// all 16 bytes (126 random bits), and its hex reads back the same.
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

/// What every leaf has: its validity and serial, digital signature only, no CA, no subject
/// yet.
fn leaf_params(
    serial: &[u8],
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<rcgen::CertificateParams, PkiError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.not_before = asn1_time(not_before)?.to_datetime();
    params.not_after = asn1_time(not_after)?.to_datetime();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn asn1_time(time: Timestamp) -> Result<ASN1Time, PkiError> {
    ASN1Time::from_timestamp(time.as_second()).map_err(|_| PkiError::Validity(time))
}

fn timestamp(time: ASN1Time) -> Timestamp {
    Timestamp::from_second(time.timestamp())
        .expect("certificate times (years 0 to 9999) are within jiff's range")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use base64::Engine as _;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn at(time: &str) -> Timestamp {
        time.parse().expect("timestamp")
    }

    /// A CA made as `flotilla-hub init` makes one, valid from `not_before` to `not_after`.
    fn ca_between(name: &str, not_before: Timestamp, not_after: Timestamp) -> HubCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = asn1_time(not_before).expect("time").to_datetime();
        params.not_after = asn1_time(not_after).expect("time").to_datetime();
        let cert = params.self_signed(&key).expect("self-signed");
        HubCa::from_pem(&key.serialize_pem(), &cert.pem()).expect("CA")
    }

    fn ca(name: &str) -> HubCa {
        ca_between(name, at("2020-01-01T00:00:00Z"), at("2099-01-01T00:00:00Z"))
    }

    fn csr_pem(key: &rcgen::KeyPair, common_name: &str, uri: Option<&str>) -> String {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        if let Some(uri) = uri {
            let uri = rcgen::string::Ia5String::try_from(uri).expect("IA5");
            params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        }
        let csr = params.serialize_request(key).expect("CSR");
        csr.pem().expect("PEM")
    }

    fn agent_csr(key: &rcgen::KeyPair, cluster: &str) -> String {
        let uri = identity::cluster_uri(cluster).expect("uri");
        csr_pem(key, cluster, Some(&uri))
    }

    fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("PEM certificates")
    }

    fn refusal(pem: &str, cluster: &str) -> String {
        Csr::parse(pem, cluster).expect_err("refused").to_string()
    }

    #[test]
    fn a_client_certificate_names_the_cluster_and_chains_to_the_hub_ca() {
        let ca = ca("flotilla hub CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let csr = Csr::parse(&agent_csr(&key, "east"), "east").expect("CSR");
        let now = at("2026-03-01T12:00:00.750Z");
        let issued = ca
            .issue_client(&csr, DEFAULT_CLIENT_LIFETIME, DEFAULT_CLOCK_SKEW, now)
            .expect("issued");

        assert_eq!(issued.not_before, at("2026-03-01T11:55:00Z"));
        assert_eq!(issued.not_after, at("2026-03-31T12:00:00Z"));
        assert_eq!(issued.key_fingerprint, csr.key_fingerprint());
        assert_eq!(issued.serial_hex.len(), 32);

        let chain = pem_certs(&issued.chain_pem);
        assert_eq!(chain.len(), 2, "leaf and CA");
        assert_eq!(chain[1], pem_certs(ca.cert_pem())[0]);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).expect("leaf");
        let (_, root) = X509Certificate::from_der(&chain[1]).expect("CA");
        leaf.verify_signature(Some(root.public_key()))
            .expect("signed by the hub CA");
        assert_eq!(leaf.issuer(), root.subject());
        assert!(!leaf.is_ca());
        let eku = leaf
            .extended_key_usage()
            .expect("EKU")
            .expect("has EKU")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        let usage = leaf.key_usage().expect("KU").expect("has KU").value;
        assert!(usage.digital_signature() && !usage.key_cert_sign());
        assert_eq!(
            timestamp(leaf.validity().not_before),
            issued.not_before,
            "backdated by the clock skew"
        );
        assert_eq!(timestamp(leaf.validity().not_after), issued.not_after);
        assert_eq!(
            hex::encode(Sha256::digest(leaf.public_key().raw)),
            issued.key_fingerprint
        );

        let peer = peer_identity(&chain).expect("identity");
        assert_eq!(
            peer,
            PeerIdentity {
                cluster: "east".to_owned(),
                serial_hex: issued.serial_hex.clone(),
                not_after: issued.not_after,
            }
        );
    }

    #[test]
    fn loads_the_ca_that_init_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        crate::init::init(&crate::init::InitArgs {
            data_dir: data.clone(),
            if_missing: false,
        })
        .expect("init");
        let ca = HubCa::load(&data).expect("load");
        let key = rcgen::KeyPair::generate().expect("key");
        let csr = Csr::parse(&agent_csr(&key, "east"), "east").expect("CSR");
        let issued = ca
            .issue_client(
                &csr,
                DEFAULT_CLIENT_LIFETIME,
                DEFAULT_CLOCK_SKEW,
                Timestamp::now(),
            )
            .expect("issued");
        assert!(issued.chain_pem.ends_with(ca.cert_pem()));

        let missing = HubCa::load(&dir.path().join("nope"))
            .expect_err("no data dir")
            .to_string();
        assert!(
            missing.contains("nope") && missing.contains(CA_KEY_FILE),
            "{missing}"
        );
    }

    #[test]
    fn a_ca_whose_key_and_certificate_differ_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let other = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::default()
            .self_signed(&other)
            .expect("cert");
        let message = HubCa::from_pem(&key.serialize_pem(), &cert.pem())
            .expect_err("mismatch")
            .to_string();
        assert!(message.contains("does not belong"), "{message}");
    }

    #[test]
    fn a_certificate_never_outlives_the_ca() {
        let ca = ca_between(
            "short CA",
            at("2026-01-01T00:00:00Z"),
            at("2026-03-10T00:00:00Z"),
        );
        let key = rcgen::KeyPair::generate().expect("key");
        let csr = Csr::parse(&agent_csr(&key, "east"), "east").expect("CSR");
        let issued = ca
            .issue_client(
                &csr,
                DEFAULT_CLIENT_LIFETIME,
                DEFAULT_CLOCK_SKEW,
                at("2026-03-01T00:00:00Z"),
            )
            .expect("issued");
        assert_eq!(issued.not_after, at("2026-03-10T00:00:00Z"));
        let expired = ca
            .issue_client(
                &csr,
                DEFAULT_CLIENT_LIFETIME,
                DEFAULT_CLOCK_SKEW,
                at("2026-04-01T00:00:00Z"),
            )
            .expect_err("CA expired")
            .to_string();
        assert!(expired.contains("hub CA expired"), "{expired}");
    }

    #[test]
    fn a_csr_for_another_cluster_is_refused_naming_both() {
        let key = rcgen::KeyPair::generate().expect("key");
        let message = refusal(&agent_csr(&key, "west"), "east");
        assert!(
            message.contains("\"west\"") && message.contains("\"east\""),
            "{message}"
        );
        let uri = identity::cluster_uri("west").expect("uri");
        let message = refusal(&csr_pem(&key, "east", Some(&uri)), "east");
        assert!(
            message.contains("\"west\"") && message.contains("\"east\""),
            "{message}"
        );
        let message = refusal(
            &csr_pem(&key, "east", Some("spiffe://example.org/x")),
            "east",
        );
        assert!(message.contains("spiffe://example.org/x"), "{message}");
        // A CSR without the URI SAN is fine: the hub writes it.
        Csr::parse(&csr_pem(&key, "east", None), "east").expect("CN only");
    }

    #[test]
    fn a_csr_without_a_common_name_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let pem = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .expect("CSR");
        let message = refusal(&pem, "east");
        assert!(message.contains("no common name"), "{message}");
    }

    #[test]
    fn an_invalid_cluster_name_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let message = refusal(&csr_pem(&key, "East", None), "East");
        assert!(message.contains("DNS-1123"), "{message}");
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = agent_csr(&key, "east");
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .expect("DER")
            .as_ref()
            .to_vec();
        // The signature is the last field; its last byte is part of the ECDSA `s`.
        *der.last_mut().expect("not empty") ^= 0x01;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let message = refusal(&tampered, "east");
        assert!(message.contains("signature does not verify"), "{message}");
    }

    #[test]
    fn garbage_is_refused() {
        for garbage in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
            "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            let message = refusal(garbage, "east");
            assert!(message.contains("not readable"), "{garbage:?}: {message}");
        }
        let message = refusal(ca("a CA").cert_pem(), "east");
        assert!(message.contains("not readable"), "{message}");
    }

    #[test]
    fn the_fingerprint_follows_the_key_not_the_request() {
        let key = rcgen::KeyPair::generate().expect("key");
        let first = Csr::parse(&agent_csr(&key, "east"), "east").expect("first");
        let second = Csr::parse(&csr_pem(&key, "east", None), "east").expect("second");
        assert_eq!(first.key_fingerprint(), second.key_fingerprint());
        assert_eq!(first.key_fingerprint().len(), 64);

        let other = rcgen::KeyPair::generate().expect("key");
        let third = Csr::parse(&agent_csr(&other, "east"), "east").expect("third");
        assert_ne!(first.key_fingerprint(), third.key_fingerprint());
    }

    #[test]
    fn accepts_ed25519_and_refuses_other_keys() {
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let csr = Csr::parse(&agent_csr(&ed25519, "east"), "east").expect("Ed25519");
        ca("a CA")
            .issue_client(
                &csr,
                DEFAULT_CLIENT_LIFETIME,
                DEFAULT_CLOCK_SKEW,
                at("2026-03-01T00:00:00Z"),
            )
            .expect("issued");
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let message = refusal(&agent_csr(&p384, "east"), "east");
        assert!(
            message.contains("ECDSA on curve 1.3.132.0.34") && message.contains("P-256"),
            "{message}"
        );
    }

    #[test]
    fn peer_identity_requires_the_cluster_uri_and_a_matching_common_name() {
        let (key, issuer) = other_ca();
        let leaf = |common_name: &str, uri: Option<&str>| {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            if let Some(uri) = uri {
                let uri = rcgen::string::Ia5String::try_from(uri).expect("IA5");
                params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
            }
            let cert = params.signed_by(&key, &issuer).expect("leaf");
            peer_identity(&[cert.der().clone()])
                .expect_err("refused")
                .to_string()
        };
        let uri = identity::cluster_uri("east").expect("uri");
        let message = leaf("west", Some(&uri));
        assert!(
            message.contains("\"east\"") && message.contains("\"west\""),
            "{message}"
        );
        let message = leaf("east", None);
        assert!(message.contains("no subject alternative name"), "{message}");
        let message = leaf("east", Some("spiffe://example.org/east"));
        assert!(message.contains("names no cluster"), "{message}");
        let message = peer_identity(&[]).expect_err("none").to_string();
        assert!(message.contains("missing"), "{message}");
    }

    /// A CA that is not the hub's, and a key for a leaf it signs.
    fn other_ca() -> (rcgen::KeyPair, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        (leaf_key, rcgen::Issuer::new(params, key))
    }

    fn ring() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// What an agent presents: a client configuration trusting `trusted` (PEM), with the
    /// client certificate `chain_pem` of `key`, if any.
    fn client(
        trusted: &str,
        client_auth: Option<(&str, &rcgen::KeyPair)>,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in pem_certs(trusted) {
            roots.add(cert).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match client_auth {
            Some((chain_pem, key)) => builder
                .with_client_auth_cert(
                    pem_certs(chain_pem),
                    PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
                )
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    /// The hub's agent API configuration for 127.0.0.1 and localhost.
    fn server(ca: &HubCa) -> Arc<ServerConfig> {
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let cert = ca
            .issue_server(&names, DEFAULT_SERVER_LIFETIME, Timestamp::now())
            .expect("server cert");
        ca.server_config(cert, None).expect("server config")
    }

    /// One TLS connection over 127.0.0.1: what the server made of the client
    /// (`peer_identity` of its certificate) and what the client saw (the ALPN protocol).
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> (Result<PeerIdentity, String>, Result<Vec<u8>, String>) {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let certs = tls
                .get_ref()
                .1
                .peer_certificates()
                .unwrap_or_default()
                .to_vec();
            tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())?;
            peer_identity(&certs).map_err(|e| e.to_string())
        });
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let connected = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await?;
            let mut answer = Vec::new();
            tls.read_to_end(&mut answer).await?;
            assert_eq!(answer, b"ok");
            Ok::<_, std::io::Error>(tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec())
        }
        .await
        .map_err(|e| e.to_string());
        (served.await.expect("server task"), connected)
    }

    fn issued_to(ca: &HubCa, key: &rcgen::KeyPair, cluster: &str) -> IssuedCert {
        let csr = Csr::parse(&agent_csr(key, cluster), cluster).expect("CSR");
        ca.issue_client(
            &csr,
            DEFAULT_CLIENT_LIFETIME,
            DEFAULT_CLOCK_SKEW,
            Timestamp::now(),
        )
        .expect("issued")
    }

    #[tokio::test]
    async fn mtls_accepts_a_client_of_the_hub_ca_and_names_its_cluster() {
        let ca = ca("flotilla hub CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let issued = issued_to(&ca, &key, "east");
        for name in ["localhost", "127.0.0.1"] {
            let client = client(ca.cert_pem(), Some((&issued.chain_pem, &key)));
            let (served, connected) = handshake(server(&ca), client, name).await;
            let peer = served.expect("accepted");
            assert_eq!(peer.cluster, "east");
            assert_eq!(peer.serial_hex, issued.serial_hex);
            assert_eq!(connected.expect("connected"), b"h2");
        }
    }

    #[tokio::test]
    async fn mtls_refuses_a_client_of_another_ca() {
        let hub = ca("flotilla hub CA");
        // One impostor even copies the hub CA's name, the other does not.
        for impostor in [ca("flotilla hub CA"), ca("another CA")] {
            let key = rcgen::KeyPair::generate().expect("key");
            let issued = issued_to(&impostor, &key, "east");
            let client = client(hub.cert_pem(), Some((&issued.chain_pem, &key)));
            let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
            let observer: RefusedCertificates = {
                let heard = heard.clone();
                Arc::new(move |cluster, why| {
                    heard.lock().expect("lock").push((cluster, why));
                })
            };
            let names = ["localhost".to_owned()];
            let cert = hub
                .issue_server(&names, DEFAULT_SERVER_LIFETIME, Timestamp::now())
                .expect("server cert");
            let server = hub.server_config(cert, Some(observer)).expect("config");
            let (served, connected) = handshake(server, client, "localhost").await;
            let refused = served.expect_err("refused");
            assert!(refused.contains("invalid peer certificate"), "{refused}");
            assert!(connected.is_err());
            let heard = heard.lock().expect("lock").clone();
            assert_eq!(heard.len(), 1, "{heard:?}");
            assert_eq!(heard[0].0.as_deref(), Some("east"), "the claimed cluster");
            assert!(
                heard[0].1.contains("UnknownIssuer") || heard[0].1.contains("BadSignature"),
                "{heard:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_connects_with_no_identity() {
        // Registration needs it; every other route checks for an identity.
        let ca = ca("flotilla hub CA");
        let client = client(ca.cert_pem(), None);
        let (served, connected) = handshake(server(&ca), client, "localhost").await;
        assert!(connected.is_ok(), "{connected:?}");
        let no_identity = served.expect_err("no identity");
        assert!(no_identity.contains("is missing"), "{no_identity}");
    }

    #[tokio::test]
    async fn a_client_that_trusts_another_ca_refuses_the_hub() {
        let hub = ca("flotilla hub CA");
        let other = ca("another CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let issued = issued_to(&hub, &key, "east");
        let client = client(other.cert_pem(), Some((&issued.chain_pem, &key)));
        let (served, connected) = handshake(server(&hub), client, "localhost").await;
        assert!(served.is_err());
        let refused = connected.expect_err("refused");
        assert!(refused.contains("UnknownIssuer"), "{refused}");
    }
}
