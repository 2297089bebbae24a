//! Git sources against real Git servers on 127.0.0.1, each started by its test and stopped at
//! its end: a local path, `git http-backend` behind a test HTTPS gateway (token and basic
//! auth), and OpenSSH's sshd with a key and strict host-key checking. Logs are captured at
//! TRACE and searched for every secret used.
//!
//! A missing tool (`git`, `git-http-backend`, `sshd`, `ssh`, `ssh-keygen`) skips its test
//! loudly, unless `FLOTILLA_REQUIRE_TOOLS` is set, when it fails.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_hub::declarative::git_tree::GitTree;
use flotilla_hub::git::{Credentials, FetchError, FetchOptions, Fetcher, Rewrites};

const TOKEN: &str = "tok-3b9f-never-log-me";
const BASIC_USER: &str = "deployer";
const BASIC_PASSWORD: &str = "pw-81c2-never-log-me";

// ---------------------------------------------------------------------------------------------
// Tools, logs, repositories

fn tool_missing(name: &str, path: &Path) -> bool {
    if path.exists() || which(path).is_some() {
        return false;
    }
    if std::env::var_os("FLOTILLA_REQUIRE_TOOLS").is_some() {
        panic!("required tool {name} ({}) is missing", path.display());
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {name} ({}) is missing; install it (Debian: git, openssh-server, \
         openssh-client) or set FLOTILLA_REQUIRE_TOOLS to fail instead !!!!!!!!\n",
        path.display()
    );
    true
}

fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

fn git_exec_path() -> Option<PathBuf> {
    let out = Command::new("git").arg("--exec-path").output().ok()?;
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary at TRACE, `log` records of dependencies included.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let _ignored = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        captured
    })
}

fn captured_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .with_context(|| format!("run git {args:?}"))?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A working copy with one commit, pushed to the bare `served.git` next to it.
struct Upstream {
    work: PathBuf,
    bare: PathBuf,
}

impl Upstream {
    fn new(root: &Path) -> Result<Self> {
        let work = root.join("work");
        let bare = root.join("served.git");
        std::fs::create_dir_all(work.join("apps/guestbook"))?;
        std::fs::create_dir_all(work.join("apps/podinfo"))?;
        std::fs::create_dir_all(work.join(".github"))?;
        std::fs::write(
            work.join("apps/guestbook/deploy.yaml"),
            "kind: Deployment\n",
        )?;
        std::fs::write(work.join("apps/podinfo/config.json"), "{\"replicas\": 2}\n")?;
        std::fs::write(work.join(".github/ci.yaml"), "on: push\n")?;
        git(root, &["init", "-q", "-b", "main", "work"])?;
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-q", "-m", "first"])?;
        git(&work, &["tag", "-a", "v1", "-m", "release 1"])?;
        git(root, &["init", "-q", "--bare", "-b", "main", "served.git"])?;
        git(
            &work,
            &[
                "push",
                "-q",
                "--tags",
                bare.to_str().context("utf-8 path")?,
                "main",
            ],
        )?;
        Ok(Self { work, bare })
    }

    fn head(&self) -> Result<String> {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push_change(&self, path: &str, content: &str) -> Result<String> {
        let file = self.work.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, content)?;
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-q", "-m", "change"])?;
        git(
            &self.work,
            &[
                "push",
                "-q",
                self.bare.to_str().context("utf-8 path")?,
                "main",
            ],
        )?;
        self.head()
    }
}

fn fetcher(cache: &Path, extra_ca: Option<Vec<u8>>) -> Fetcher {
    let mut options = FetchOptions::new(cache);
    options.extra_ca_pem = extra_ca;
    options.limits.timeout = Duration::from_secs(60);
    Fetcher::new(options).expect("fetcher builds")
}

fn wait_for_port(addr: SocketAddr, deadline: Duration) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {deadline:?}")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret appears in output: {secret:?} in\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Local paths

#[test]
fn local_path_fetch_sees_new_commits() -> Result<()> {
    if tool_missing("git", Path::new("git")) {
        return Ok(());
    }
    logs();
    let root = tempfile::tempdir()?;
    let upstream = Upstream::new(root.path())?;
    let fetcher = fetcher(&root.path().join("cache"), None);
    let url = upstream.bare.to_str().context("utf-8 path")?;

    let first = upstream.head()?;
    let repo = fetcher.fetch(url, &Credentials::None)?;
    assert_eq!(repo.resolve("HEAD")?.to_string(), first);
    assert_eq!(repo.resolve("main")?.to_string(), first);
    assert_eq!(
        repo.resolve("v1")?.to_string(),
        first,
        "annotated tag peels"
    );
    assert_eq!(repo.resolve(&first)?.to_string(), first);
    assert!(repo.resolve("no-such-branch").is_err());

    // The Git generators' view of the fetched commit.
    assert_eq!(
        fetcher.list_dirs(url, "main", "apps/*")?,
        ["apps/guestbook", "apps/podinfo"]
    );
    assert_eq!(
        fetcher.list_files(url, "HEAD", "**/*.json")?,
        ["apps/podinfo/config.json"]
    );
    assert_eq!(
        fetcher.list_files(url, "HEAD", "**/ci.yaml")?,
        Vec::<String>::new()
    );
    assert_eq!(
        fetcher.read_file(url, "HEAD", "apps/guestbook/deploy.yaml")?,
        b"kind: Deployment\n"
    );
    assert!(matches!(
        fetcher.read_file(url, "HEAD", "apps/nope.yaml"),
        Err(flotilla_hub::declarative::git_tree::GitTreeError::NotFound { .. })
    ));

    // A push, then a second fetch, sees the new commit; the old one stays readable.
    let second = upstream.push_change("apps/guestbook/service.yaml", "kind: Service\n")?;
    assert_ne!(first, second);
    let repo = fetcher.fetch(url, &Credentials::None)?;
    let head = repo.resolve("HEAD")?;
    assert_eq!(head.to_string(), second);
    assert_eq!(
        fetcher.list_files(url, "main", "apps/guestbook/*")?,
        ["apps/guestbook/deploy.yaml", "apps/guestbook/service.yaml"]
    );
    assert_eq!(
        fetcher.list_files(url, &first, "apps/guestbook/*")?.len(),
        1
    );

    // A checkout holds exactly the commit's files.
    let checkout = root.path().join("checkout");
    let stats = repo.checkout(head, &checkout)?;
    assert_eq!(stats.files, 4);
    assert_eq!(
        std::fs::read_to_string(checkout.join("apps/guestbook/service.yaml"))?,
        "kind: Service\n"
    );
    assert!(!checkout.join(".git").exists());

    // Limits: a file above the cap is refused by name.
    let mut options = FetchOptions::new(root.path().join("cache"));
    options.limits.max_file_bytes = 4;
    let small = Fetcher::new(options)?;
    let error = small
        .cached(url)?
        .read_file(head, "apps/guestbook/deploy.yaml")
        .expect_err("too large");
    assert!(
        error.to_string().contains("apps/guestbook/deploy.yaml"),
        "{error}"
    );

    // A rewrite points an unreachable URL at the local repository.
    let mut options = FetchOptions::new(root.path().join("cache2"));
    options.rewrites = Rewrites::default().with("https://git.invalid/acme/apps.git", url);
    let rewritten = Fetcher::new(options)?;
    let repo = rewritten.fetch("https://git.invalid/acme/apps.git", &Credentials::None)?;
    assert_eq!(repo.resolve("HEAD")?.to_string(), second);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTPS: git http-backend behind a test-only TLS gateway that checks a token or basic auth

mod https {
    use std::convert::Infallible;
    use std::path::PathBuf;
    use std::sync::Arc;

    use anyhow::{Context, Result};
    use base64::Engine as _;
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, StatusCode};
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls;

    pub struct Server {
        pub url_base: String,
        pub ca_pem: Vec<u8>,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            }
        }
    }

    struct Gateway {
        backend: PathBuf,
        project_root: PathBuf,
    }

    pub fn start(backend: PathBuf, project_root: PathBuf) -> Result<Server> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem().into_bytes();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let gateway = Arc::new(Gateway {
            backend,
            project_root,
        });
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let gateway = gateway.clone();
                        async move { Ok::<_, Infallible>(gateway.handle(request).await) }
                    });
                    let _ignored = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Server {
            url_base: format!("https://127.0.0.1:{}", addr.port()),
            ca_pem,
            runtime: Some(runtime),
        })
    }

    fn authorized(request: &Request<Incoming>) -> bool {
        let Some(value) = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            return token == super::TOKEN;
        }
        if let Some(encoded) = value.strip_prefix("Basic ") {
            let expected = format!("{}:{}", super::BASIC_USER, super::BASIC_PASSWORD);
            return base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .is_ok_and(|pair| pair == expected.as_bytes());
        }
        false
    }

    fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(body.into()));
        *response.status_mut() = status;
        response
    }

    impl Gateway {
        async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
            if !authorized(&request) {
                let mut response = respond(StatusCode::UNAUTHORIZED, "unauthorized\n");
                response.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
                );
                return response;
            }
            match self.cgi(request).await {
                Ok(response) => response,
                Err(error) => respond(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}\n")),
            }
        }

        /// Runs git-http-backend as a CGI script for one request.
        async fn cgi(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
            let (parts, body) = request.into_parts();
            let header = |name: hyper::header::HeaderName| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            let body = body.collect().await?.to_bytes();
            let mut child = tokio::process::Command::new(&self.backend)
                .env_clear()
                .env("GIT_PROJECT_ROOT", &self.project_root)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("REQUEST_METHOD", parts.method.as_str())
                .env("PATH_INFO", parts.uri.path())
                .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
                .env("CONTENT_TYPE", header(hyper::header::CONTENT_TYPE))
                .env("CONTENT_LENGTH", body.len().to_string())
                .env(
                    "HTTP_CONTENT_ENCODING",
                    header(hyper::header::CONTENT_ENCODING),
                )
                .env(
                    "GIT_PROTOCOL",
                    header(hyper::header::HeaderName::from_static("git-protocol")),
                )
                .env("REMOTE_USER", "test")
                .env("REMOTE_ADDR", "127.0.0.1")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("start git-http-backend")?;
            let mut stdin = child.stdin.take().context("stdin")?;
            let feed = tokio::spawn(async move {
                let _ignored = stdin.write_all(&body).await;
            });
            let out =
                tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                    .await
                    .context("git-http-backend timed out")??;
            let _ignored = feed.await;
            let split = out
                .stdout
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| (p, 4))
                .or_else(|| {
                    out.stdout
                        .windows(2)
                        .position(|w| w == b"\n\n")
                        .map(|p| (p, 2))
                })
                .context("CGI output has no header end")?;
            let head = String::from_utf8_lossy(&out.stdout[..split.0]).into_owned();
            let mut response = respond(StatusCode::OK, out.stdout[split.0 + split.1..].to_vec());
            for line in head.lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("status") {
                    let code = value.split_whitespace().next().unwrap_or("500");
                    *response.status_mut() = StatusCode::from_bytes(code.as_bytes())?;
                } else {
                    response.headers_mut().append(
                        hyper::header::HeaderName::from_bytes(name.trim().as_bytes())?,
                        hyper::header::HeaderValue::from_str(value)?,
                    );
                }
            }
            Ok(response)
        }
    }
}

fn https_setup(root: &Path) -> Result<Option<(Upstream, https::Server)>> {
    if tool_missing("git", Path::new("git")) {
        return Ok(None);
    }
    let backend = git_exec_path()
        .map(|dir| dir.join("git-http-backend"))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/git-core/git-http-backend"));
    if tool_missing("git-http-backend", &backend) {
        return Ok(None);
    }
    let upstream = Upstream::new(root)?;
    let server = https::start(backend, root.to_path_buf())?;
    Ok(Some((upstream, server)))
}

#[test]
fn https_with_token_or_basic_auth() -> Result<()> {
    logs();
    let root = tempfile::tempdir()?;
    let Some((upstream, server)) = https_setup(root.path())? else {
        return Ok(());
    };
    let url = format!("{}/served.git", server.url_base);
    let fetcher = fetcher(&root.path().join("cache"), Some(server.ca_pem.clone()));

    let token = Credentials::HttpsToken {
        token: TOKEN.into(),
    };
    let repo = fetcher.fetch(&url, &token)?;
    assert_eq!(repo.resolve("HEAD")?.to_string(), upstream.head()?);

    let second = upstream.push_change("apps/podinfo/values.yaml", "replicas: 3\n")?;
    let repo = fetcher.fetch(&url, &token)?;
    assert_eq!(repo.resolve("main")?.to_string(), second);

    let basic = Credentials::HttpsBasic {
        username: BASIC_USER.into(),
        password: BASIC_PASSWORD.into(),
    };
    let other = self::fetcher(
        &root.path().join("cache-basic"),
        Some(server.ca_pem.clone()),
    );
    assert_eq!(
        other.fetch(&url, &basic)?.resolve("HEAD")?.to_string(),
        second
    );

    // A wrong token is refused with a clear error that does not contain it.
    let wrong = Credentials::HttpsToken {
        token: "tok-wrong-never-log-me".into(),
    };
    let error = self::fetcher(
        &root.path().join("cache-wrong"),
        Some(server.ca_pem.clone()),
    )
    .fetch(&url, &wrong)
    .expect_err("wrong token is refused");
    assert!(
        matches!(error, FetchError::Unauthorized { .. }),
        "{error:?}"
    );
    let shown = format!("{error} / {error:?}");
    assert!(shown.contains("authentication refused"), "{shown}");
    assert_no_secret(&shown, &["tok-wrong-never-log-me", TOKEN]);

    // Without the test CA the server is not trusted.
    let error = self::fetcher(&root.path().join("cache-noca"), None)
        .fetch(&url, &token)
        .expect_err("untrusted certificate");
    assert_no_secret(&format!("{error} / {error:?}"), &[TOKEN]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SSH: OpenSSH's sshd with its own host key, a key-only login and strict host-key checking

struct Sshd {
    child: Child,
    port: u16,
    host_public_key: String,
    client_private_key: String,
    other_public_key: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn start_sshd(dir: &Path) -> Result<Option<Sshd>> {
    let sshd = Path::new("/usr/sbin/sshd");
    if tool_missing("git", Path::new("git"))
        || tool_missing("sshd", sshd)
        || tool_missing("ssh", Path::new("ssh"))
        || tool_missing("ssh-keygen", Path::new("ssh-keygen"))
    {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)?;
    for name in ["host_key", "client_key", "other_key"] {
        keygen(&dir.join(name))?;
    }
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
    // sshd wants its privilege separation directory even when it runs as one user.
    std::fs::create_dir_all("/run/sshd")?;
    let port = free_port()?;
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PidFile {dir}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
            dir = dir.display()
        ),
    )?;
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start sshd")?;
    let server = Sshd {
        child,
        port,
        host_public_key: std::fs::read_to_string(dir.join("host_key.pub"))?,
        client_private_key: std::fs::read_to_string(dir.join("client_key"))?,
        other_public_key: std::fs::read_to_string(dir.join("other_key.pub"))?,
    };
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )?;
    Ok(Some(server))
}

fn known_hosts_line(port: u16, public_key: &str) -> String {
    let mut fields = public_key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let key = fields.next().unwrap_or_default();
    format!("[127.0.0.1]:{port} {kind} {key}\n")
}

fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|| "root".into())
}

#[test]
fn ssh_with_key_and_strict_host_keys() -> Result<()> {
    logs();
    let root = tempfile::tempdir()?;
    let Some(sshd) = start_sshd(&root.path().join("sshd"))? else {
        return Ok(());
    };
    let upstream = Upstream::new(root.path())?;
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        current_user(),
        sshd.port,
        upstream.bare.display()
    );
    let credentials = Credentials::Ssh {
        private_key: sshd.client_private_key.clone().into(),
        known_hosts: known_hosts_line(sshd.port, &sshd.host_public_key),
    };
    let fetcher = fetcher(&root.path().join("cache"), None);
    let repo = fetcher.fetch(&url, &credentials)?;
    assert_eq!(repo.resolve("HEAD")?.to_string(), upstream.head()?);
    let second = upstream.push_change("apps/new/app.yaml", "kind: ConfigMap\n")?;
    let repo = fetcher.fetch(&url, &credentials)?;
    assert_eq!(repo.resolve("main")?.to_string(), second);

    // A known_hosts entry with another key for this host is a host key mismatch.
    let mismatched = Credentials::Ssh {
        private_key: sshd.client_private_key.clone().into(),
        known_hosts: known_hosts_line(sshd.port, &sshd.other_public_key),
    };
    let error = self::fetcher(&root.path().join("cache-mismatch"), None)
        .fetch(&url, &mismatched)
        .expect_err("host key mismatch is refused");
    assert!(matches!(error, FetchError::HostKey { .. }), "{error:?}");
    assert!(
        error.to_string().contains("host key verification failed"),
        "{error}"
    );
    let key_body = key_material(&sshd.client_private_key);
    assert_no_secret(&format!("{error} / {error:?}"), &[&key_body]);
    Ok(())
}

/// The base64 body of a private key, the part that must never be shown.
fn key_material(private_key: &str) -> String {
    private_key
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// No secret in any log line at TRACE

#[test]
fn credentials_never_appear_in_trace_logs_or_errors() -> Result<()> {
    logs();
    let root = tempfile::tempdir()?;
    let mut errors = Vec::new();
    let mut secrets = vec![TOKEN.to_owned(), BASIC_PASSWORD.to_owned()];

    if let Some((_upstream, server)) = https_setup(&root.path().join("https"))? {
        let url = format!("{}/served.git", server.url_base);
        for (i, credentials) in [
            Credentials::HttpsToken {
                token: TOKEN.into(),
            },
            Credentials::HttpsBasic {
                username: BASIC_USER.into(),
                password: BASIC_PASSWORD.into(),
            },
            Credentials::HttpsToken {
                token: format!("{TOKEN}-wrong").into(),
            },
        ]
        .iter()
        .enumerate()
        {
            let fetcher = fetcher(
                &root.path().join(format!("cache-https-{i}")),
                Some(server.ca_pem.clone()),
            );
            tracing::trace!(?credentials, "fetching with");
            match fetcher.fetch(&url, credentials) {
                Ok(repo) => tracing::trace!(?repo, "fetched"),
                Err(error) => errors.push(format!("{error} / {error:?}")),
            }
        }
        // A password inside the URL is refused, and not repeated.
        let inline = url.replacen(
            "https://",
            &format!("https://{BASIC_USER}:{BASIC_PASSWORD}@"),
            1,
        );
        let fetcher = fetcher(
            &root.path().join("cache-inline"),
            Some(server.ca_pem.clone()),
        );
        if let Err(error) = fetcher.fetch(&inline, &Credentials::None) {
            errors.push(format!("{error} / {error:?}"));
        }
    }

    if let Some(sshd) = start_sshd(&root.path().join("sshd"))? {
        let upstream = Upstream::new(&root.path().join("ssh"))?;
        let url = format!(
            "ssh://{}@127.0.0.1:{}{}",
            current_user(),
            sshd.port,
            upstream.bare.display()
        );
        secrets.push(key_material(&sshd.client_private_key));
        for (i, host_key) in [&sshd.host_public_key, &sshd.other_public_key]
            .into_iter()
            .enumerate()
        {
            let credentials = Credentials::Ssh {
                private_key: sshd.client_private_key.clone().into(),
                known_hosts: known_hosts_line(sshd.port, host_key),
            };
            tracing::trace!(?credentials, "fetching with");
            let fetcher = fetcher(&root.path().join(format!("cache-ssh-{i}")), None);
            match fetcher.fetch(&url, &credentials) {
                Ok(repo) => tracing::trace!(?repo, "fetched"),
                Err(error) => errors.push(format!("{error} / {error:?}")),
            }
        }
    }

    let logs = captured_text();
    if !errors.is_empty() {
        assert!(
            logs.contains("fetched") && logs.contains("TRACE"),
            "the capture saw the fetches at trace level"
        );
    }
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&logs, &secrets);
    for error in &errors {
        assert_no_secret(error, &secrets);
    }
    // The key's lines one by one, too: a partial leak is a leak.
    for line in secrets
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| l.len() > 20)
    {
        assert!(
            !logs.contains(line),
            "a private key line appears in the logs"
        );
    }
    Ok(())
}
