//! `flotilla-agent run`, the real binary, against a real apiserver and a small agent API of
//! the test's own (the hub's is not part of this test binary): registration that waits for
//! approval, an identity kept across restarts, applying a served state, the long poll, a
//! refused rollback, self-heal while the hub is down (also after a restart, from the cache
//! directory), status sequence numbers without gaps, one active replica per cluster, and the
//! air-gap directory mode.
//!
//! The test hub speaks the agent API of `flotilla_shared::agent_api` over TLS (hyper, with a
//! CA made here by rcgen), holds long polls open, signs CSRs, and records status reports as
//! the hub does: a report is recorded when its seq is above every seq recorded before.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use flotilla_e2e::{eventually, shared, test_namespace};
use flotilla_shared::Digest;
use flotilla_shared::agent_api::{
    CertificateResponse, ErrorBody, RegisterRequest, RenewRequest, StatusAck, StatusReport,
};
use flotilla_shared::state::SyncPolicy;
use flotilla_shared::testing::{Bundle, Signed, TestApp, config_map, key};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// The cluster name of every state here.
const CLUSTER: &str = "e2e";
const TOKEN: &str = "bootstrap-0123456789abcdef";
/// How long anything a test waits for may take.
const WITHIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The test hub.

/// A state the hub serves.
struct Served {
    envelope: Vec<u8>,
    etag: String,
}

#[derive(Default)]
struct Books {
    /// Registrations still answered 202 before one is approved.
    pending_approvals: usize,
    /// The CSR of every registration request.
    registrations: Vec<String>,
    renewals: usize,
    served: Option<Served>,
    blobs: BTreeMap<String, Vec<u8>>,
    blob_fetches: usize,
    unchanged_polls: usize,
    /// Reports as recorded (seq above every earlier one).
    recorded: Vec<StatusReport>,
    /// Every report received, recorded or not.
    received: usize,
}

struct HubState {
    books: Mutex<Books>,
    /// Bumped whenever the served state changes, to end long polls.
    version: watch::Sender<u64>,
    down: AtomicBool,
    connections: Mutex<Vec<AbortHandle>>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    /// Lifetime of the certificates issued.
    lifetime: SignedDuration,
}

struct TestHub {
    addr: SocketAddr,
    state: Arc<HubState>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.accept.abort();
        for connection in self.state.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }
}

fn tls_config(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: &str,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, issuer).expect("server certificate");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("CA")).expect("root");
    }
    // Registration comes without a client certificate; every other route needs one.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl TestHub {
    /// A hub on 127.0.0.1 that answers `pending_approvals` registrations with 202 first.
    async fn start(pending_approvals: usize) -> anyhow::Result<TestHub> {
        TestHub::issuing(pending_approvals, SignedDuration::from_hours(24 * 30)).await
    }

    /// A hub whose certificates are valid for `lifetime` (and, as the hub's, from five
    /// minutes before they are issued).
    async fn issuing(
        pending_approvals: usize,
        lifetime: SignedDuration,
    ) -> anyhow::Result<TestHub> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test hub CA");
        let ca_pem = params.self_signed(&key)?.pem();
        let issuer = rcgen::Issuer::new(params, key);
        let tls = tokio_rustls::TlsAcceptor::from(tls_config(&issuer, &ca_pem));
        let state = Arc::new(HubState {
            books: Mutex::new(Books {
                pending_approvals,
                ..Books::default()
            }),
            version: watch::Sender::new(0),
            down: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            issuer,
            ca_pem,
            lifetime,
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let serving = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if serving.down.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let (tls, state) = (tls.clone(), serving.clone());
                let connection = tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let authenticated = stream.get_ref().1.peer_certificates().is_some();
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                state.answer(request, authenticated).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                let mut connections = serving.connections.lock().expect("lock");
                connections.retain(|c| !c.is_finished());
                connections.push(connection.abort_handle());
            }
        });
        Ok(TestHub {
            addr,
            state,
            accept,
        })
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// From now on the hub is unreachable: open connections break, new ones are closed.
    fn down(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        for connection in self.state.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    fn up(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Serves `signed` as the cluster's newest state.
    fn publish(&self, signed: &Signed) {
        let mut books = self.books();
        for (_, bytes) in &signed.blobs {
            books
                .blobs
                .insert(Digest::of(bytes).to_string(), bytes.clone());
        }
        books.served = Some(Served {
            envelope: signed.envelope_bytes(),
            etag: format!("\"{}\"", Digest::of(&signed.payload)),
        });
        drop(books);
        self.state.version.send_modify(|v| *v += 1);
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.state.books.lock().expect("lock")
    }

    fn recorded(&self) -> Vec<StatusReport> {
        self.books().recorded.clone()
    }

    /// The newest recorded report that `matches`.
    async fn report(
        &self,
        what: &str,
        matches: impl Fn(&StatusReport) -> bool,
    ) -> anyhow::Result<StatusReport> {
        eventually(what, WITHIN, || async {
            Ok(self.recorded().into_iter().rev().find(|r| matches(r)))
        })
        .await
    }

    /// The seqs recorded must be 1, 2, 3, …: strictly rising, no gap.
    fn check_seqs(&self) -> anyhow::Result<()> {
        let seqs: Vec<u64> = self.recorded().iter().map(|r| r.seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        ensure!(
            seqs == expected,
            "recorded seqs {seqs:?} are not 1..={}",
            seqs.len()
        );
        Ok(())
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        serde_json::to_vec(&ErrorBody::new(code, message)).expect("serializes"),
    )
}

fn ok_json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    reply(
        StatusCode::OK,
        serde_json::to_vec(value).expect("serializes"),
    )
}

impl HubState {
    async fn answer(
        &self,
        request: Request<Incoming>,
        authenticated: bool,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return error(StatusCode::BAD_REQUEST, "bad_request", "unreadable body"),
        };
        let path = parts.uri.path();
        if path == "/v1/register" && parts.method == hyper::Method::POST {
            return self.register(&body);
        }
        if !authenticated {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a client certificate is required",
            );
        }
        match (parts.method.as_str(), path) {
            ("POST", "/v1/renew") => {
                let Ok(request) = serde_json::from_slice::<RenewRequest>(&body) else {
                    return error(StatusCode::BAD_REQUEST, "bad_request", "not a renewal");
                };
                self.books.lock().expect("lock").renewals += 1;
                ok_json(&self.issue(&request.csr))
            }
            ("GET", "/v1/state") => {
                let wait = parts
                    .uri
                    .query()
                    .and_then(|q| q.strip_prefix("wait="))
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0);
                let seen = parts
                    .headers
                    .get("if-none-match")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                self.state(seen, Duration::from_secs(wait)).await
            }
            ("GET", blob) if blob.starts_with("/v1/blobs/") => {
                let digest = blob.trim_start_matches("/v1/blobs/");
                let mut books = self.books.lock().expect("lock");
                books.blob_fetches += 1;
                match books.blobs.get(digest) {
                    Some(bytes) => reply(StatusCode::OK, bytes.clone()),
                    None => error(StatusCode::NOT_FOUND, "not_found", "no such blob"),
                }
            }
            ("POST", "/v1/status") => {
                let Ok(report) = serde_json::from_slice::<StatusReport>(&body) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "not a status report",
                    );
                };
                let mut books = self.books.lock().expect("lock");
                books.received += 1;
                let last = books.recorded.last().map_or(0, |r| r.seq);
                let recorded = report.seq > last;
                if recorded {
                    books.recorded.push(report.clone());
                }
                ok_json(&StatusAck {
                    recorded,
                    last_seq: last.max(report.seq),
                })
            }
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
        }
    }

    fn register(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let Ok(request) = serde_json::from_slice::<RegisterRequest>(body) else {
            return error(StatusCode::BAD_REQUEST, "bad_request", "not a registration");
        };
        if request.token != TOKEN || request.cluster != CLUSTER {
            return error(
                StatusCode::UNAUTHORIZED,
                "token_invalid",
                "the bootstrap token is not valid",
            );
        }
        let mut books = self.books.lock().expect("lock");
        books.registrations.push(request.csr.clone());
        if books.pending_approvals > 0 {
            books.pending_approvals -= 1;
            return error(
                StatusCode::ACCEPTED,
                "pending_approval",
                "cluster e2e waits for an administrator's approval",
            );
        }
        drop(books);
        ok_json(&self.issue(&request.csr))
    }

    fn issue(&self, csr: &str) -> CertificateResponse {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr).expect("a CSR");
        let now = Timestamp::now();
        let time = |t: Timestamp| {
            rcgen::date_time_ymd(1970, 1, 1)
                + std::time::Duration::from_secs(u64::try_from(t.as_second()).expect("after 1970"))
        };
        csr.params.not_before = time(now - SignedDuration::from_mins(5));
        csr.params.not_after = time(now + self.lifetime);
        csr.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = csr.signed_by(&self.issuer).expect("signed");
        CertificateResponse {
            certificate: format!("{}{}", cert.pem(), self.ca_pem),
            ca_certificate: self.ca_pem.clone(),
            not_after: (now + self.lifetime).to_string(),
        }
    }

    async fn state(&self, seen: Option<String>, wait: Duration) -> Response<Full<Bytes>> {
        let mut changes = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut books = self.books.lock().expect("lock");
                match &books.served {
                    None => return error(StatusCode::NOT_FOUND, "no_state", "no state yet"),
                    Some(served) if seen.as_deref() != Some(served.etag.as_str()) => {
                        return Response::builder()
                            .status(StatusCode::OK)
                            .header("content-type", "application/json")
                            .header("etag", served.etag.clone())
                            .body(Full::new(Bytes::from(served.envelope.clone())))
                            .expect("a valid response");
                    }
                    Some(_) => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    books.unchanged_polls += 1;
                    return Response::builder()
                        .status(StatusCode::NOT_MODIFIED)
                        .body(Full::new(Bytes::new()))
                        .expect("a valid response");
                }
            }
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The agent processes.

/// What a test's agents share: a directory, the agent namespace, the keys.
struct Site {
    dir: tempfile::TempDir,
    namespace: String,
    apps: String,
    client: kube::Client,
    kubeconfig: PathBuf,
    key: flotilla_shared::SigningKey,
    generation: AtomicU64,
}

impl Site {
    async fn new(prefix: &str) -> anyhow::Result<Site> {
        let cluster = shared().await;
        let client = cluster.client().await?;
        let namespace = test_namespace(&client, &format!("{prefix}-agent")).await?;
        let apps = test_namespace(&client, &format!("{prefix}-apps")).await?;
        let dir = tempfile::tempdir()?;
        let key = key(7);
        std::fs::write(dir.path().join("trust.pem"), key.public_key().to_spki_pem())?;
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n"))?;
        let now = u64::try_from(Timestamp::now().as_millisecond())?;
        Ok(Site {
            dir,
            namespace,
            apps,
            client,
            kubeconfig: cluster.kubeconfig().to_owned(),
            key,
            generation: AtomicU64::new(now),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A state of app `web` (selfHeal on) with ConfigMaps `settings` (data `value`) and
    /// `other`, with a generation above every earlier one.
    fn state(&self, value: &str) -> Signed {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.state_at(generation, value)
    }

    fn state_at(&self, generation: u64, value: &str) -> Signed {
        let now = Timestamp::now();
        self.state_valid(generation, value, now, now + SignedDuration::from_hours(24))
    }

    fn state_valid(
        &self,
        generation: u64,
        value: &str,
        issued_at: Timestamp,
        expires_at: Timestamp,
    ) -> Signed {
        let mut settings = config_map(&self.apps, "settings");
        settings["data"] = json!({"value": value});
        Bundle::test()
            .cluster(CLUSTER)
            .issued_at(issued_at)
            .expires_at(expires_at)
            .generation(generation)
            .with_app(
                TestApp::new("web")
                    .namespace(&self.apps)
                    .objects(vec![settings, config_map(&self.apps, "other")])
                    .sync_policy(SyncPolicy {
                        prune: true,
                        self_heal: true,
                        ..SyncPolicy::default()
                    }),
            )
            .signed_by(&self.key)
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.apps)
    }

    /// The `value` of ConfigMap `settings`, once it is `expected`.
    async fn settings_become(&self, expected: &str) -> anyhow::Result<()> {
        let api = self.config_maps();
        eventually(&format!("settings to hold {expected}"), WITHIN, || async {
            let value = api
                .get_opt("settings")
                .await?
                .and_then(|cm| cm.data)
                .and_then(|mut d| d.remove("value"));
            Ok((value.as_deref() == Some(expected)).then_some(()))
        })
        .await
    }

    /// Deletes ConfigMap `settings` and waits until a new one (another uid) is there.
    async fn delete_and_see_healed(&self) -> anyhow::Result<()> {
        let api = self.config_maps();
        let old = api.get("settings").await?.metadata.uid;
        api.delete("settings", &DeleteParams::default()).await?;
        eventually("settings to be recreated", WITHIN, || async {
            let now = api
                .get_opt("settings")
                .await?
                .and_then(|cm| cm.metadata.uid);
            Ok((now.is_some() && now != old).then_some(()))
        })
        .await
    }

    /// Prints the agents' logs when `result` is an error.
    fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            for entry in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let log = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(80).collect();
                    eprintln!("--- {} (last 80 lines)", path.display());
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
        result
    }

    /// Every agent log, for checks over all of them.
    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "log") {
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }

    async fn lease_holder(&self) -> anyhow::Result<Option<String>> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(leases
            .get_opt("flotilla-agent")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }
}

/// One `flotilla-agent run` process.
struct Agent {
    child: tokio::process::Child,
    metrics: SocketAddr,
    holder: String,
}

impl Agent {
    /// Starts an agent named `holder` pulling from `hub`.
    async fn hub(site: &Site, hub: &TestHub, holder: &str) -> anyhow::Result<Agent> {
        std::fs::write(site.path("hub-ca.pem"), &hub.state.ca_pem)?;
        let args = vec![
            "--hub".to_owned(),
            hub.url(),
            "--hub-ca".to_owned(),
            site.path("hub-ca.pem").display().to_string(),
            "--bootstrap-token-file".to_owned(),
            site.path("token").display().to_string(),
            "--cache-dir".to_owned(),
            site.path("cache").display().to_string(),
            "--poll-wait".to_owned(),
            "1s".to_owned(),
        ];
        Agent::start(site, holder, args).await
    }

    /// Starts an agent named `holder` that applies bundle files from `dir`.
    async fn watching(site: &Site, dir: &Path, holder: &str) -> anyhow::Result<Agent> {
        let args = vec!["--watch-dir".to_owned(), dir.display().to_string()];
        Agent::start(site, holder, args).await
    }

    async fn start(site: &Site, holder: &str, mode: Vec<String>) -> anyhow::Result<Agent> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(site.path(&format!("agent-{holder}.log")))?;
        let mut child = tokio::process::Command::new(flotilla_e2e::binary("flotilla-agent")?)
            .arg("run")
            .args(mode)
            .args(["--trust-key", &site.path("trust.pem").display().to_string()])
            .args(["--cluster", CLUSTER])
            .args(["--kubeconfig", &site.kubeconfig.display().to_string()])
            .args(["--namespace", &site.namespace])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--holder", holder])
            .args(["--lease-duration", "6s"])
            .args(["--heartbeat", "2s"])
            .env("RUST_LOG", "info,flotilla_agent=debug")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("start flotilla-agent run")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WITHIN, lines.next_line())
            .await
            .context("the agent printed nothing")??
            .context("the agent ended before listening")?;
        let metrics = first
            .strip_prefix("metrics listening on http://")
            .with_context(|| format!("unexpected first line {first:?}"))?
            .parse()?;
        // Keep reading, so the agent never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Agent {
            child,
            metrics,
            holder: holder.to_owned(),
        })
    }

    /// `GET path` on the agent's own endpoints: the status and the body.
    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").as_bytes())
            .await?;
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await??;
        let status = answer
            .split_whitespace()
            .nth(1)
            .context("no status")?
            .parse()?;
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The value of a metric without labels.
    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, text) = self.get("/metrics").await?;
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .with_context(|| format!("no metric {name}"))?;
        Ok(line.rsplit(' ').next().context("no value")?.parse()?)
    }

    async fn leads(&self) -> anyhow::Result<bool> {
        Ok(self.metric("flotilla_agent_leader").await? == 1.0)
    }

    /// Waits until `/readyz` says 200 and its body contains `says`.
    async fn ready(&self, says: &str) -> anyhow::Result<String> {
        eventually(
            &format!("{} to be ready ({says})", self.holder),
            WITHIN,
            || async {
                let (status, body) = self.get("/readyz").await?;
                Ok((status == 200 && body.contains(says)).then_some(body))
            },
        )
        .await
    }

    /// SIGTERM, and the exit within the deadline.
    async fn terminate(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("the agent already exited")?;
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid)?).context("a pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let status = tokio::time::timeout(WITHIN, self.child.wait())
            .await
            .context("the agent did not stop on SIGTERM")??;
        ensure!(
            status.success(),
            "the agent exited with {status} on SIGTERM"
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn registers_once_applies_the_state_and_long_polls() -> anyhow::Result<()> {
    let site = Site::new("run-register").await?;
    let outcome = async {
        let hub = TestHub::start(1).await?;
        let state = site.state("one");
        hub.publish(&state);
        let agent = Agent::hub(&site, &hub, "first").await?;
        site.settings_become("one").await?;

        // Registration waited for approval and went on with the same key and CSR.
        let registrations = hub.books().registrations.clone();
        ensure!(
            registrations.len() == 2,
            "{} registrations",
            registrations.len()
        );
        ensure!(registrations[0] == registrations[1], "a new CSR after 202");
        let secrets: Api<Secret> = Api::namespaced(site.client.clone(), &site.namespace);
        let identity = secrets.get("flotilla-agent-identity").await?;
        ensure!(identity.type_.as_deref() == Some("Opaque"));
        let data = identity.data.unwrap_or_default();
        for key in ["tls.key", "tls.crt", "ca.crt"] {
            ensure!(data.contains_key(key), "the identity Secret has no {key}");
        }

        // The apply is reported, with who and where the agent is.
        let generation = state.state.generation;
        let applied = hub
            .report("an apply report", |r| {
                r.reason == "apply" && r.state.generation == generation
            })
            .await?;
        ensure!(applied.state.phase == "Applied", "{:?}", applied.state);
        let app = applied.apps.first().context("no app in the report")?;
        ensure!(
            (app.name.as_str(), app.sync.as_str(), app.generation) == ("web", "Synced", generation),
            "{app:?}"
        );
        ensure!(app.revision == state.state.apps[0].source.revision);
        ensure!(app.objects.len() == 2, "{:?}", app.objects);
        let info = &applied.agent;
        ensure!(info.kube_version.starts_with("v1."), "{info:?}");
        ensure!(info.api_versions.iter().any(|v| v == "apps/v1"), "{info:?}");
        ensure!(
            info.holder == "first" && info.server.starts_with("https://127.0.0.1"),
            "{info:?}"
        );
        ensure!(info.clock_offset_ms.abs() < 5_000, "{info:?}");
        ensure!(info.version == env!("CARGO_PKG_VERSION"), "{info:?}");
        let health = hub
            .report("the app reported healthy", |r| {
                r.apps.first().is_some_and(|a| a.health == "Healthy")
            })
            .await?;
        ensure!(health.apps[0].objects.iter().all(|o| o.state == "Current"));

        // Nothing changes: the agent long-polls and gets 304s, applying nothing again.
        let (polls, fetches) = {
            let books = hub.books();
            (books.unchanged_polls, books.blob_fetches)
        };
        eventually("three more unchanged polls", WITHIN, || async {
            Ok((hub.books().unchanged_polls >= polls + 3).then_some(()))
        })
        .await?;
        let applies = hub
            .recorded()
            .iter()
            .filter(|r| r.reason == "apply")
            .count();
        ensure!(applies == 1, "{applies} apply reports for one state");
        ensure!(hub.books().blob_fetches == fetches, "blobs fetched again");
        ensure!(agent.leads().await?);
        ensure!(agent.metric("flotilla_agent_generation").await? == generation as f64);
        agent.ready("enforcing generation").await?;

        // A restart keeps the identity: no new registration. SIGTERM gave the lease up.
        agent.terminate().await?;
        ensure!(
            site.lease_holder().await?.is_none(),
            "the lease was not released"
        );
        let again = Agent::hub(&site, &hub, "second").await?;
        hub.report("a start report from the new process", |r| {
            r.reason == "start" && r.agent.holder == "second"
        })
        .await?;
        again.ready("enforcing generation").await?;
        ensure!(
            hub.books().registrations.len() == 2,
            "registered again after a restart"
        );

        // A new state is applied by the restarted agent.
        let next = site.state("two");
        hub.publish(&next);
        site.settings_become("two").await?;
        hub.report("the new apply", |r| {
            r.reason == "apply" && r.state.generation == next.state.generation
        })
        .await?;
        again.terminate().await?;
        hub.check_seqs()?;

        // Secrets never reach a log line.
        let logs = site.logs();
        ensure!(!logs.contains(TOKEN), "the bootstrap token is in a log");
        ensure!(!logs.contains("PRIVATE KEY") && !logs.contains("BEGIN CERTIFICATE"));
        Ok(())
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn a_refused_registration_says_why_and_is_tried_again() -> anyhow::Result<()> {
    let site = Site::new("run-token").await?;
    let outcome = async {
        let hub = TestHub::start(0).await?;
        hub.publish(&site.state("one"));
        std::fs::write(site.path("token"), "not-the-token")?;
        let agent = Agent::hub(&site, &hub, "only").await?;
        eventually("the hub's reason on /readyz", WITHIN, || async {
            let (status, body) = agent.get("/readyz").await?;
            Ok((status == 503 && body.contains("the bootstrap token is not valid")).then_some(()))
        })
        .await?;
        ensure!(agent.metric("flotilla_agent_hub_errors_total").await? >= 1.0);
        // The operator fixes the token: the next attempt registers.
        std::fs::write(site.path("token"), TOKEN)?;
        site.settings_become("one").await?;
        ensure!(hub.books().registrations.len() == 1);
        agent.terminate().await?;
        ensure!(
            !site.logs().contains("not-the-token"),
            "a token is in a log"
        );
        hub.check_seqs()
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn a_refused_older_generation_changes_nothing_and_is_reported() -> anyhow::Result<()> {
    let site = Site::new("run-refuse").await?;
    let outcome = async {
        let hub = TestHub::start(0).await?;
        let current = site.state("current");
        hub.publish(&current);
        let agent = Agent::hub(&site, &hub, "only").await?;
        site.settings_become("current").await?;

        let older = site.state_at(current.state.generation - 1, "rolled-back");
        hub.publish(&older);
        let refused = hub.report("a refusal", |r| r.reason == "refused").await?;
        ensure!(refused.state.phase == "Refused", "{:?}", refused.state);
        ensure!(
            refused.state.refused_generation == Some(older.state.generation),
            "{:?}",
            refused.state
        );
        ensure!(refused.state.generation == current.state.generation);
        ensure!(
            refused.state.message.contains("rollback"),
            "{}",
            refused.state.message
        );
        ensure!(agent.metric("flotilla_agent_state_refusals_total").await? == 1.0);
        // The refused state is not asked for again and again.
        let polls = hub.books().unchanged_polls;
        eventually("unchanged polls after the refusal", WITHIN, || async {
            Ok((hub.books().unchanged_polls >= polls + 2).then_some(()))
        })
        .await?;
        let settings = site.config_maps().get("settings").await?;
        ensure!(
            settings
                .data
                .unwrap_or_default()
                .get("value")
                .map(String::as_str)
                == Some("current"),
            "the cluster changed after a refused state"
        );
        ensure!(
            hub.recorded()
                .iter()
                .filter(|r| r.reason == "refused")
                .count()
                == 1
        );

        let newer = site.state("newer");
        hub.publish(&newer);
        site.settings_become("newer").await?;
        hub.report("the newer state applied", |r| {
            r.reason == "apply"
                && r.state.phase == "Applied"
                && r.state.generation == newer.state.generation
        })
        .await?;
        agent.terminate().await?;
        hub.check_seqs()
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn heals_while_the_hub_is_down_also_after_a_restart_from_the_cache() -> anyhow::Result<()> {
    let site = Site::new("run-heal").await?;
    let outcome = async {
        let hub = TestHub::start(0).await?;
        let state = site.state("kept");
        hub.publish(&state);
        let agent = Agent::hub(&site, &hub, "before").await?;
        site.settings_become("kept").await?;
        hub.report("the apply", |r| r.reason == "apply").await?;

        hub.down();
        site.delete_and_see_healed().await?;
        agent.terminate().await?;

        // A new process, the hub still away: it enforces the cached state.
        let again = Agent::hub(&site, &hub, "after").await?;
        again.ready("enforcing generation").await?;
        site.delete_and_see_healed().await?;
        let errors = eventually("hub errors counted", WITHIN, || async {
            let errors = again.metric("flotilla_agent_hub_errors_total").await?;
            Ok((errors > 0.0).then_some(errors))
        })
        .await?;
        ensure!(errors > 0.0);

        // The hub comes back: the agent reports the drift it healed, no seq lost.
        hub.up();
        let drift = hub
            .report("the healed drift reported", |r| {
                r.agent.holder == "after"
                    && r.drift
                        .iter()
                        .any(|d| d.healed && d.object.ends_with("/settings"))
            })
            .await?;
        ensure!(drift.state.generation == state.state.generation);
        hub.report("a heartbeat after the hub came back", |r| {
            r.reason == "heartbeat" && r.agent.holder == "after"
        })
        .await?;
        ensure!(
            hub.books().blob_fetches == 1,
            "blobs fetched again after the restart"
        );
        again.terminate().await?;
        hub.check_seqs()
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn an_expired_state_is_still_enforced_and_reported_stale() -> anyhow::Result<()> {
    let site = Site::new("run-stale").await?;
    let outcome = async {
        let hub = TestHub::start(0).await?;
        // The binary first (its first build may take a while), then the clock starts.
        flotilla_e2e::binary("flotilla-agent")?;
        // Verification still accepts this state for 30 s (its expiry is within the clock
        // skew allowed); then it counts as expired.
        let now = Timestamp::now();
        let generation = site.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let expiring = site.state_valid(
            generation,
            "expiring",
            now - SignedDuration::from_mins(10),
            now - SignedDuration::from_mins(5) + SignedDuration::from_secs(30),
        );
        hub.publish(&expiring);
        let agent = Agent::hub(&site, &hub, "before").await?;
        site.settings_become("expiring").await?;
        let stale = hub
            .report("a stale report", |r| r.reason == "stale")
            .await?;
        ensure!(
            stale.state.phase == "Stale" && stale.state.generation == generation,
            "{:?}",
            stale.state
        );
        agent.ready("(Stale)").await?;

        // Still enforced: drift is healed, also after a restart while the hub is away.
        hub.down();
        site.delete_and_see_healed().await?;
        agent.terminate().await?;
        let again = Agent::hub(&site, &hub, "after").await?;
        again
            .ready(&format!("enforcing generation {generation} (Stale)"))
            .await?;
        site.delete_and_see_healed().await?;
        hub.up();
        hub.report("the restarted agent reports Stale", |r| {
            r.agent.holder == "after" && r.state.phase == "Stale"
        })
        .await?;

        // A fresh state ends it.
        let fresh = site.state("fresh");
        hub.publish(&fresh);
        site.settings_become("fresh").await?;
        hub.report("the fresh state applied", |r| {
            r.reason == "apply" && r.state.phase == "Applied"
        })
        .await?;
        again.ready("(Applied)").await?;
        again.terminate().await?;
        hub.check_seqs()
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn renews_its_certificate_and_keeps_the_new_one() -> anyhow::Result<()> {
    let site = Site::new("run-renew").await?;
    let outcome = async {
        // Certificates valid for 20 s more: the agent renews within about 10 s.
        let hub = TestHub::issuing(0, SignedDuration::from_secs(20)).await?;
        hub.publish(&site.state("one"));
        let agent = Agent::hub(&site, &hub, "only").await?;
        site.settings_become("one").await?;
        let secrets: Api<Secret> = Api::namespaced(site.client.clone(), &site.namespace);
        let certificate = || async {
            let secret = secrets.get("flotilla-agent-identity").await?;
            anyhow::Ok(secret.data.unwrap_or_default().remove("tls.crt"))
        };
        let first = certificate().await?.context("no certificate kept")?;
        eventually("a renewal", WITHIN, || async {
            Ok((hub.books().renewals >= 1).then_some(()))
        })
        .await?;
        eventually("the renewed certificate kept", WITHIN, || async {
            Ok(certificate().await?.filter(|c| *c != first))
        })
        .await?;
        // The new certificate works.
        let polls = hub.books().unchanged_polls;
        eventually("polls with the new certificate", WITHIN, || async {
            Ok((hub.books().unchanged_polls >= polls + 2).then_some(()))
        })
        .await?;
        ensure!(hub.books().registrations.len() == 1, "registered again");
        agent.terminate().await?;
        hub.check_seqs()
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn only_the_lease_holder_registers_applies_and_reports() -> anyhow::Result<()> {
    let site = Site::new("run-lease").await?;
    let outcome = async {
        let hub = TestHub::start(0).await?;
        let state = site.state("one");
        hub.publish(&state);
        let a = Agent::hub(&site, &hub, "a").await?;
        let b = Agent::hub(&site, &hub, "b").await?;
        site.settings_become("one").await?;
        let leader = eventually("one leader", WITHIN, || async {
            let holder = site.lease_holder().await?;
            Ok(holder.filter(|h| h == "a" || h == "b"))
        })
        .await?;
        let (active, standby) = if leader == "a" { (a, b) } else { (b, a) };
        ensure!(active.leads().await? && !standby.leads().await?);
        let (status, body) = standby.get("/readyz").await?;
        ensure!(
            status == 200 && body.contains("standing by"),
            "{status} {body}"
        );
        // Let a few heartbeats pass: the standby never calls the hub or applies.
        eventually("heartbeats", WITHIN, || async {
            Ok((hub
                .recorded()
                .iter()
                .filter(|r| r.reason == "heartbeat")
                .count()
                >= 2)
                .then_some(()))
        })
        .await?;
        ensure!(
            hub.books().registrations.len() == 1,
            "both replicas registered"
        );
        ensure!(hub.books().blob_fetches == 1, "blobs fetched twice");
        ensure!(
            hub.recorded()
                .iter()
                .all(|r| r.agent.holder == active.holder)
        );
        ensure!(standby.metric("flotilla_agent_generation").await? == 0.0);

        // The leader goes; the other takes over with the kept identity and reports.
        let successor = standby.holder.clone();
        active.terminate().await?;
        eventually("the standby to lead", WITHIN, || async {
            Ok(standby.leads().await?.then_some(()))
        })
        .await?;
        hub.report("a report from the new leader", |r| {
            r.agent.holder == successor
        })
        .await?;
        let next = site.state("two");
        hub.publish(&next);
        site.settings_become("two").await?;
        ensure!(
            hub.books().registrations.len() == 1,
            "the new leader registered again"
        );
        standby.terminate().await?;
        hub.check_seqs()
    }
    .await;
    site.explain(outcome)
}

#[tokio::test]
async fn the_air_gap_mode_applies_bundle_files_dropped_into_a_directory() -> anyhow::Result<()> {
    let site = Site::new("run-dir").await?;
    let outcome = async {
        let dir = site.path("bundles");
        std::fs::create_dir(&dir)?;
        let drop_file = |name: &str, signed: &Signed| -> anyhow::Result<()> {
            let partial = dir.join(format!(".{name}.partial"));
            std::fs::write(&partial, signed.bundle_file())?;
            std::fs::rename(&partial, dir.join(name))?;
            Ok(())
        };
        let agent = Agent::watching(&site, &dir, "offline").await?;
        eventually("the agent to wait for a bundle file", WITHIN, || async {
            let (status, body) = agent.get("/readyz").await?;
            Ok((status == 503 && body.contains("waiting for a bundle file")).then_some(()))
        })
        .await?;

        let first = site.state("first");
        drop_file("1.tar", &first)?;
        site.settings_become("first").await?;
        agent.ready("enforcing generation").await?;

        let older = site.state_at(first.state.generation - 1, "older");
        drop_file("0.tar", &older)?;
        eventually("the refusal counted", WITHIN, || async {
            Ok((agent.metric("flotilla_agent_state_refusals_total").await? == 1.0).then_some(()))
        })
        .await?;
        let settings = site.config_maps().get("settings").await?;
        ensure!(
            settings
                .data
                .unwrap_or_default()
                .get("value")
                .map(String::as_str)
                == Some("first")
        );

        let second = site.state("second");
        drop_file("2.tar", &second)?;
        site.settings_become("second").await?;
        site.delete_and_see_healed().await?;
        eventually("the drift counted", WITHIN, || async {
            Ok((agent.metric("flotilla_agent_drift_events_total").await? >= 1.0).then_some(()))
        })
        .await?;
        agent.terminate().await?;

        // A restart applies the newest file again (nothing to change) and enforces it.
        let again = Agent::watching(&site, &dir, "offline-again").await?;
        again
            .ready(&format!("enforcing generation {}", second.state.generation))
            .await?;
        site.delete_and_see_healed().await?;
        again.terminate().await?;
        Ok(())
    }
    .await;
    site.explain(outcome)
}
