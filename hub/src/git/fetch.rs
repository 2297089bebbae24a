//! Fetches Git repositories into the hub's cache: one bare repository per fetched URL (named
//! by the SHA-256 of the URL after rewrites), updated with gix over HTTPS (reqwest with a
//! ring-based rustls config, the WebPKI roots plus configured extra CAs), SSH (the `ssh`
//! program with the repository's key and known_hosts, host keys checked strictly) and local
//! paths (`file://` or a plain path). It talks to the network, runs `ssh` and
//! `git-upload-pack`, and writes the cache directory; reading commits is [`super::tree`]'s job.
//!
//! Hard limits: a deadline per fetch (the fetch is interrupted and reported as
//! [`FetchError::Timeout`]) and a cap on the size of a cached repository, watched while the
//! pack arrives ([`FetchError::TooLarge`]).
//!
//! Invariant: no credential reaches an error, a log line or a URL handed to gix: URLs are
//! fetched and reported without userinfo, the HTTP `Authorization` header is marked sensitive,
//! and the SSH key is handed to `ssh` as a file that lives only for the fetch.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tracing::{debug, info, instrument, warn};

use super::credentials::{Credentials, has_password, redact_url};
use super::rewrite::Rewrites;
use super::tree::CachedRepository;

/// Default deadline of one fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Default largest cached repository (objects on disk).
pub const DEFAULT_MAX_REPOSITORY_BYTES: u64 = 2 << 30;
/// Default largest file read from a commit or written by a checkout.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;
/// Default largest checkout in bytes.
pub const DEFAULT_MAX_CHECKOUT_BYTES: u64 = 512 << 20;
/// Default most entries (files, links, directories) of one checkout or listing.
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;

/// How often a running fetch is checked against its deadline and size cap.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The hard limits of fetching and reading repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Longest one fetch may take, connection included.
    pub timeout: Duration,
    /// Largest cached repository, in bytes of its object database.
    pub max_repository_bytes: u64,
    /// Largest single file read or checked out.
    pub max_file_bytes: u64,
    /// Largest checkout, in bytes.
    pub max_checkout_bytes: u64,
    /// Most entries of one checkout or tree listing.
    pub max_entries: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_repository_bytes: DEFAULT_MAX_REPOSITORY_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_checkout_bytes: DEFAULT_MAX_CHECKOUT_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Where and how the fetcher works.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The directory of cached bare repositories.
    pub cache_dir: PathBuf,
    /// URL rewrites applied before anything else.
    pub rewrites: Rewrites,
    pub limits: FetchLimits,
    /// PEM certificates trusted for HTTPS besides the WebPKI roots (a private CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// The `ssh` program [default: `ssh` from PATH].
    pub ssh_program: PathBuf,
}

impl FetchOptions {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            rewrites: Rewrites::default(),
            limits: FetchLimits::default(),
            extra_ca_pem: None,
            ssh_program: PathBuf::from("ssh"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("repository URL {url} carries a password: give it as credentials instead")]
    PasswordInUrl { url: String },
    #[error("fetch {url}: {kind} credentials cannot be used with this URL")]
    CredentialsMismatch { url: String, kind: &'static str },
    #[error("fetch {url}: refusing to send credentials over plain http")]
    InsecureCredentials { url: String },
    #[error("fetch {url}: SSH needs known_hosts lines for strict host-key checking")]
    MissingKnownHosts { url: String },
    #[error("https trust: extra CA bundle: {reason}")]
    Tls { reason: String },
    #[error("prepare cache for {url}: {source}")]
    Cache {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("open cache for {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("repository {url} has not been fetched")]
    NotFetched { url: String },
    #[error("fetch {url}: authentication refused (HTTP 401/403)")]
    Unauthorized { url: String },
    #[error("fetch {url}: host key verification failed (not in known_hosts or mismatched)")]
    HostKey { url: String },
    #[error("fetch {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("fetch {url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("fetch {url}: repository exceeds {limit} bytes")]
    TooLarge { url: String, limit: u64 },
}

/// How `url` is reached, which decides the credentials it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Http,
    Ssh,
    Local,
}

impl Transport {
    /// The transport of `url` (`https://`, `http://`, `ssh://` or `user@host:path`, else a
    /// local path or `file://`).
    pub fn of(url: &str) -> Self {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            Transport::Https
        } else if lower.starts_with("http://") {
            Transport::Http
        } else if lower.starts_with("ssh://") || lower.starts_with("git+ssh://") {
            Transport::Ssh
        } else if lower.starts_with("file://") || url.starts_with('/') || url.starts_with('.') {
            Transport::Local
        } else if let Some((host, _)) = url.split_once(':')
            && !host.contains('/')
        {
            // Scp-like `git@host:org/repo`, as git reads it.
            Transport::Ssh
        } else {
            Transport::Local
        }
    }
}

/// Fetches repositories into the cache; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("cache_dir", &self.inner.options.cache_dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: FetchOptions,
    tls: Arc<rustls::ClientConfig>,
    /// One lock per cached repository, so two fetches of one URL never race on its refs.
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl Fetcher {
    /// A fetcher over `options.cache_dir`; fails only on an unusable extra CA bundle.
    pub fn new(options: FetchOptions) -> Result<Self, FetchError> {
        let tls = Arc::new(tls_config(options.extra_ca_pem.as_deref())?);
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                tls,
                locks: Mutex::default(),
            }),
        })
    }

    pub fn options(&self) -> &FetchOptions {
        &self.inner.options
    }

    /// The URL actually fetched for `url`: rewritten, and without userinfo for HTTP(S).
    pub fn effective_url(&self, url: &str) -> Result<String, FetchError> {
        let rewritten = self.inner.options.rewrites.apply(url);
        if has_password(&rewritten) {
            return Err(FetchError::PasswordInUrl {
                url: redact_url(&rewritten),
            });
        }
        Ok(match Transport::of(&rewritten) {
            Transport::Https | Transport::Http => redact_url(&rewritten),
            Transport::Ssh | Transport::Local => rewritten.into_owned(),
        })
    }

    /// The cache directory of `url` (after rewrites).
    pub fn cache_path(&self, url: &str) -> Result<PathBuf, FetchError> {
        let effective = self.effective_url(url)?;
        Ok(self.cache_path_of(&effective))
    }

    fn cache_path_of(&self, effective_url: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(effective_url.as_bytes()));
        self.inner
            .options
            .cache_dir
            .join(format!("{}.git", &digest[..32]))
    }

    /// The cached copy of `url` as last fetched, without touching the network.
    pub fn cached(&self, url: &str) -> Result<CachedRepository, FetchError> {
        let effective = self.effective_url(url)?;
        let path = self.cache_path_of(&effective);
        if !path.join("objects").is_dir() {
            return Err(FetchError::NotFetched {
                url: redact_url(&effective),
            });
        }
        let repo = gix::open_opts(&path, gix::open::Options::isolated()).map_err(|e| {
            FetchError::Open {
                url: redact_url(&effective),
                source: Box::new(e),
            }
        })?;
        Ok(CachedRepository::new(
            redact_url(&effective),
            repo.into_sync(),
            self.inner.options.limits,
        ))
    }

    /// Fetches all branches, tags and HEAD of `url` into its cache and returns the cached
    /// repository. Blocking: call it from a blocking thread. It returns at the deadline even
    /// when the transfer is still running; the transfer is interrupted then.
    #[instrument(skip_all, fields(url = %redact_url(url), credentials = credentials.kind()))]
    pub fn fetch(
        &self,
        url: &str,
        credentials: &Credentials,
    ) -> Result<CachedRepository, FetchError> {
        let effective = self.effective_url(url)?;
        let shown = redact_url(&effective);
        check_credentials(&effective, &shown, credentials)?;
        let path = self.cache_path_of(&effective);
        let limits = self.inner.options.limits;
        let started = Instant::now();

        let interrupt = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let worker = Worker {
            inner: self.inner.clone(),
            url: effective.clone(),
            shown: shown.clone(),
            path: path.clone(),
            credentials: credentials.clone(),
            interrupt: interrupt.clone(),
        };
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("git-fetch".into())
            .spawn(move || {
                let _entered = span.enter();
                let _ignored = done_tx.send(worker.run());
            })
            .map_err(|source| FetchError::Cache {
                url: shown.clone(),
                source,
            })?;

        loop {
            match done_rx.recv_timeout(WATCH_INTERVAL) {
                Ok(result) => {
                    result?;
                    let size = directory_bytes(&path.join("objects"));
                    if size > limits.max_repository_bytes {
                        return Err(FetchError::TooLarge {
                            url: shown,
                            limit: limits.max_repository_bytes,
                        });
                    }
                    info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        size, "fetched"
                    );
                    return self.cached(url);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(FetchError::Fetch {
                        url: shown,
                        source: "fetch worker stopped without an answer".into(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if started.elapsed() > limits.timeout {
                        interrupt.store(true, Ordering::SeqCst);
                        warn!(timeout = ?limits.timeout, "fetch timed out");
                        return Err(FetchError::Timeout {
                            url: shown,
                            timeout: limits.timeout,
                        });
                    }
                    if directory_bytes(&path.join("objects")) > limits.max_repository_bytes {
                        interrupt.store(true, Ordering::SeqCst);
                        warn!(limit = limits.max_repository_bytes, "repository too large");
                        return Err(FetchError::TooLarge {
                            url: shown,
                            limit: limits.max_repository_bytes,
                        });
                    }
                }
            }
        }
    }
}

fn check_credentials(url: &str, shown: &str, credentials: &Credentials) -> Result<(), FetchError> {
    let transport = Transport::of(url);
    let mismatch = || FetchError::CredentialsMismatch {
        url: shown.to_owned(),
        kind: credentials.kind(),
    };
    match credentials {
        Credentials::None => Ok(()),
        Credentials::HttpsToken { .. } | Credentials::HttpsBasic { .. } => match transport {
            Transport::Https => Ok(()),
            Transport::Http => Err(FetchError::InsecureCredentials {
                url: shown.to_owned(),
            }),
            Transport::Ssh | Transport::Local => Err(mismatch()),
        },
        Credentials::Ssh { known_hosts, .. } => match transport {
            Transport::Ssh if known_hosts.trim().is_empty() => Err(FetchError::MissingKnownHosts {
                url: shown.to_owned(),
            }),
            Transport::Ssh => Ok(()),
            _ => Err(mismatch()),
        },
    }
}

/// One fetch, run on its own thread so that the caller can keep the deadline.
struct Worker {
    inner: Arc<Inner>,
    url: String,
    shown: String,
    path: PathBuf,
    credentials: Credentials,
    interrupt: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) -> Result<(), FetchError> {
        let lock = {
            let mut locks = self
                .inner
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(self.path.clone()).or_default().clone()
        };
        let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| FetchError::Open {
            url: self.shown.clone(),
            source,
        };
        let mut repo = if self.path.join("objects").is_dir() {
            gix::open_opts(&self.path, gix::open::Options::isolated())
                .map_err(|e| open_error(Box::new(e)))?
        } else {
            std::fs::create_dir_all(&self.inner.options.cache_dir).map_err(|source| {
                FetchError::Cache {
                    url: self.shown.clone(),
                    source,
                }
            })?;
            debug!(path = %self.path.display(), "initialising cache");
            gix::ThreadSafeRepository::init_opts(
                &self.path,
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                gix::open::Options::isolated(),
            )
            .map_err(|e| open_error(Box::new(e)))?
            .to_thread_local()
        };

        // The key and known_hosts files live in a private directory for this fetch only.
        let ssh_files = match &self.credentials {
            Credentials::Ssh {
                private_key,
                known_hosts,
            } => Some(
                SshFiles::write(private_key.expose_secret(), known_hosts).map_err(|source| {
                    FetchError::Cache {
                        url: self.shown.clone(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        if let Some(files) = &ssh_files {
            let command = files.command(
                &self.inner.options.ssh_program,
                self.inner.options.limits.timeout,
            );
            let mut config = repo.config_snapshot_mut();
            config
                .set_value(&gix::config::tree::Core::SSH_COMMAND, command.as_str())
                .and_then(|_| config.set_value(&gix::config::tree::Ssh::VARIANT, "ssh"))
                .map_err(|e| open_error(Box::new(e)))?;
            config.commit().map_err(|e| open_error(Box::new(e)))?;
        }

        let asked_for_credentials = AtomicBool::new(false);
        let result = self.fetch_into(&repo, &asked_for_credentials);
        // What ssh said (with `-E`) is read for the error class only; it holds no secret.
        let ssh_log = ssh_files
            .as_ref()
            .and_then(|files| std::fs::read_to_string(files.log()).ok())
            .unwrap_or_default();
        drop(ssh_files);
        result.map_err(|source| {
            self.classify(
                source,
                asked_for_credentials.load(Ordering::SeqCst),
                &ssh_log,
            )
        })
    }

    fn fetch_into(
        &self,
        repo: &gix::Repository,
        asked_for_credentials: &AtomicBool,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let remote = repo
            .remote_at_without_url_rewrite(self.url.as_str())?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(
                [
                    "+HEAD:refs/flotilla/HEAD",
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                gix::remote::Direction::Fetch,
            )?;
        let mut connection = remote
            .connect(gix::remote::Direction::Fetch)?
            // Never ask a credential helper or a terminal: credentials come only from the hub.
            // gix asks only after the server refused the request.
            .with_credentials(|_action| {
                asked_for_credentials.store(true, Ordering::SeqCst);
                Ok(None)
            });
        if matches!(Transport::of(&self.url), Transport::Https | Transport::Http) {
            connection.set_transport_options(self.http_options(repo)?);
        }
        debug!("connecting");
        connection
            .prepare_fetch(gix::progress::Discard, Default::default())?
            .receive(gix::progress::Discard, &self.interrupt)?;
        Ok(())
    }

    /// gix's HTTP options from the repository's configuration, with our TLS config, deadline
    /// and `Authorization` header on the reqwest client.
    fn http_options(
        &self,
        repo: &gix::Repository,
    ) -> Result<Box<dyn std::any::Any>, Box<dyn std::error::Error + Send + Sync>> {
        use gix::protocol::transport::client::blocking_io::http;

        let mut options = repo
            .transport_options(self.url.as_str(), None)?
            .and_then(|boxed| boxed.downcast::<http::Options>().ok())
            .map(|boxed| *boxed)
            .unwrap_or_default();
        let tls = self.inner.tls.clone();
        let timeout = self.inner.options.limits.timeout;
        let authorization = match &self.credentials {
            Credentials::HttpsToken { token } => Some(format!("Bearer {}", token.expose_secret())),
            Credentials::HttpsBasic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", password.expose_secret());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            Credentials::None | Credentials::Ssh { .. } => None,
        };
        let header = authorization
            .map(|value| {
                let mut value = gix_reqwest::header::HeaderValue::try_from(value)
                    .map_err(|_| "credentials are not a valid HTTP header value")?;
                value.set_sensitive(true);
                Ok::<_, &'static str>(value)
            })
            .transpose()?;
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(builder
                    .tls_backend_preconfigured((*tls).clone())
                    .timeout(timeout))
            })),
            configure_request: Some(Box::new(move |request| {
                if let Some(value) = &header {
                    request
                        .headers_mut()
                        .insert(gix_reqwest::header::AUTHORIZATION, value.clone());
                }
                Ok(())
            })),
        };
        options.backend = Some(Arc::new(Mutex::new(backend)));
        options.connect_timeout = Some(timeout);
        Ok(Box::new(options))
    }

    /// A clearer error for the failures users must act on. Only the error text is inspected;
    /// neither it nor the URL contains a credential.
    fn classify(
        &self,
        source: Box<dyn std::error::Error + Send + Sync>,
        asked_for_credentials: bool,
        ssh_log: &str,
    ) -> FetchError {
        let mut chain = ssh_log.to_owned();
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(error) = next {
            chain.push_str(&error.to_string());
            chain.push('\n');
            next = error.source();
        }
        let url = self.shown.clone();
        if self.interrupt.load(Ordering::SeqCst) {
            return FetchError::Timeout {
                url,
                timeout: self.inner.options.limits.timeout,
            };
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("host key verification failed")
            || lower.contains("remote host identification has changed")
            || lower.contains("no matching host key")
        {
            FetchError::HostKey { url }
        } else if asked_for_credentials
            || lower.contains("permission denied (publickey")
            || lower.contains("401")
            || lower.contains("403")
            || lower.contains("authentication")
            || lower.contains("unauthorized")
        {
            FetchError::Unauthorized { url }
        } else {
            FetchError::Fetch { url, source }
        }
    }
}

/// The SSH key and known_hosts of one fetch, in a private temporary directory.
struct SshFiles {
    dir: tempfile::TempDir,
}

impl SshFiles {
    fn write(private_key: &str, known_hosts: &str) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("flotilla-ssh-").tempdir()?;
        write_private(&dir.path().join("key"), private_key)?;
        write_private(&dir.path().join("known_hosts"), known_hosts)?;
        Ok(Self { dir })
    }

    /// The `core.sshCommand`: only this key, only these host keys, strictly, never a prompt.
    fn log(&self) -> PathBuf {
        self.dir.path().join("ssh.log")
    }

    fn command(&self, program: &Path, timeout: Duration) -> String {
        let quote =
            |path: &Path| format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
        format!(
            "{} -F /dev/null -E {} -i {} -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout={}",
            quote(program),
            quote(&self.log()),
            quote(&self.dir.path().join("key")),
            quote(&self.dir.path().join("known_hosts")),
            timeout.as_secs().max(1),
        )
    }
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    // OpenSSH refuses a key whose last line has no newline.
    if !content.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    file.sync_all()
}

/// Bytes of the files under `dir` (0 when it does not exist).
fn directory_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, FetchError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| FetchError::Tls {
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| FetchError::Tls {
                reason: e.to_string(),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(FetchError::Tls {
                reason: "no PEM certificate found".into(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: Transport) {
        assert_eq!(Transport::of(url), expected, "{url}");
    }

    #[test]
    fn transports_are_told_apart_as_git_does() {
        check("https://example.com/a.git", Transport::Https);
        check("HTTPS://example.com/a.git", Transport::Https);
        check("http://example.com/a.git", Transport::Http);
        check("ssh://git@example.com:22/a.git", Transport::Ssh);
        check("git@example.com:org/a.git", Transport::Ssh);
        check("example.com:org/a.git", Transport::Ssh);
        check("/srv/git/a", Transport::Local);
        check("./a", Transport::Local);
        check("file:///srv/git/a", Transport::Local);
        check("dir/with:colon", Transport::Local);
    }

    fn fetcher(rewrites: Rewrites) -> Fetcher {
        let mut options = FetchOptions::new("/nonexistent");
        options.rewrites = rewrites;
        Fetcher::new(options).expect("default TLS config builds")
    }

    #[test]
    fn effective_urls_are_rewritten_and_lose_userinfo() {
        let f = fetcher(Rewrites::default().with("https://github.com/", "https://mirror/"));
        assert_eq!(
            f.effective_url("https://github.com/a/b").expect("ok"),
            "https://mirror/a/b"
        );
        assert_eq!(
            f.effective_url("https://me@host/a").expect("ok"),
            "https://host/a"
        );
        assert_eq!(
            f.effective_url("ssh://git@host/a").expect("ok"),
            "ssh://git@host/a"
        );
        let refused = f
            .effective_url("https://me:hunter2@host/a")
            .expect_err("refused");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        assert_ne!(
            f.cache_path("https://a/x").expect("ok"),
            f.cache_path("https://a/y").expect("ok")
        );
    }

    #[test]
    fn credentials_must_fit_the_transport() {
        let token = Credentials::HttpsToken {
            token: "secret-token".into(),
        };
        let ssh = Credentials::Ssh {
            private_key: "secret-key".into(),
            known_hosts: String::new(),
        };
        for (url, credentials, ok) in [
            ("https://h/a", &token, true),
            ("http://h/a", &token, false),
            ("ssh://git@h/a", &token, false),
            ("ssh://git@h/a", &ssh, false),
            ("https://h/a", &ssh, false),
            ("/srv/a", &Credentials::None, true),
        ] {
            let result = check_credentials(url, url, credentials);
            assert_eq!(result.is_ok(), ok, "{url} {}", credentials.kind());
            if let Err(error) = result {
                let shown = format!("{error} {error:?}");
                assert!(!shown.contains("secret"), "{shown}");
            }
        }
    }

    #[test]
    fn a_bad_extra_ca_is_refused() {
        assert!(matches!(
            tls_config(Some(b"not a certificate")),
            Err(FetchError::Tls { .. })
        ));
    }
}
