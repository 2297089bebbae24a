//! Real Git servers on 127.0.0.1 for the tests that fetch over the network, each started by
//! its test and stopped when dropped: `git http-backend` behind a test HTTPS gateway that
//! demands a token or basic auth, and OpenSSH's sshd with a key-only login. Also the
//! repositories they serve ([`Upstream`]) and the checks for the tools they need: a missing
//! tool skips its test loudly, unless `FLOTILLA_REQUIRE_TOOLS` is set, when it fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::git;

// ---------------------------------------------------------------------------------------------
// Tools

/// True (with a loud message) when `path` is neither a file nor on PATH; panics instead when
/// FLOTILLA_REQUIRE_TOOLS is set.
pub fn tool_missing(name: &str, path: &Path) -> bool {
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

pub fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

pub fn git_exec_path() -> Option<PathBuf> {
    let out = Command::new("git").arg("--exec-path").output().ok()?;
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

/// `git-http-backend`, or `None` (skipped loudly) when it or git is missing.
pub fn git_http_backend() -> Option<PathBuf> {
    if tool_missing("git", Path::new("git")) {
        return None;
    }
    let backend = git_exec_path()
        .map(|dir| dir.join("git-http-backend"))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/git-core/git-http-backend"));
    (!tool_missing("git-http-backend", &backend)).then_some(backend)
}

pub fn wait_for_port(addr: SocketAddr, deadline: Duration) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {deadline:?}")
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret appears in output: {secret:?} in\n{text}"
        );
    }
}

/// The base64 body of a private key, the part that must never be shown.
pub fn key_material(private_key: &str) -> String {
    private_key
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Repositories

/// A working copy `ROOT/NAME` with its files in one commit (tagged `v1`), pushed to the bare
/// `ROOT/NAME.git` that the servers serve.
pub struct Upstream {
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl Upstream {
    pub fn new(root: &Path, name: &str, files: &[(&str, &str)]) -> Result<Self> {
        let work = root.join(name);
        let bare = root.join(format!("{name}.git"));
        for (path, content) in files {
            super::write(&work, path, content);
        }
        git(root, &["init", "-q", name]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first"]);
        git(&work, &["tag", "-a", "v1", "-m", "release 1"]);
        git(
            root,
            &["init", "-q", "--bare", bare.to_str().context("utf-8 path")?],
        );
        let upstream = Self { work, bare };
        upstream.push()?;
        Ok(upstream)
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Writes `path`, commits and pushes; the new head.
    pub fn push_change(&self, path: &str, content: &str) -> Result<String> {
        super::write(&self.work, path, content);
        self.commit_and_push("change")
    }

    /// Deletes `path`, commits and pushes; the new head.
    pub fn push_removal(&self, path: &str) -> Result<String> {
        git(&self.work, &["rm", "-q", path]);
        self.commit_and_push("remove")
    }

    fn commit_and_push(&self, message: &str) -> Result<String> {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        self.push()?;
        Ok(self.head())
    }

    fn push(&self) -> Result<()> {
        let bare = self.bare.to_str().context("utf-8 path")?;
        git(&self.work, &["push", "-q", "--tags", bare, "main"]);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTPS: git http-backend behind a test-only TLS gateway that checks a token or basic auth

pub mod https {
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

    /// What the gateway accepts: `Authorization: Bearer TOKEN`, or basic auth with this pair.
    pub struct Auth {
        pub token: String,
        pub basic: Option<(String, String)>,
    }

    /// The gateway, serving every repository under its project root as
    /// `URL_BASE/NAME.git`; stopped when dropped.
    pub struct Server {
        pub url_base: String,
        /// Its self-signed certificate, the CA a client must trust.
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
        auth: Auth,
    }

    pub fn start(backend: PathBuf, project_root: PathBuf, auth: Auth) -> Result<Server> {
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
            auth,
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

    fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(body.into()));
        *response.status_mut() = status;
        response
    }

    impl Gateway {
        fn authorized(&self, request: &Request<Incoming>) -> bool {
            let Some(value) = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            else {
                return false;
            };
            if let Some(token) = value.strip_prefix("Bearer ") {
                return token == self.auth.token;
            }
            if let (Some(encoded), Some((user, password))) =
                (value.strip_prefix("Basic "), &self.auth.basic)
            {
                let expected = format!("{user}:{password}");
                return base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .is_ok_and(|pair| pair == expected.as_bytes());
            }
            false
        }

        async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
            if !self.authorized(&request) {
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

// ---------------------------------------------------------------------------------------------
// SSH: OpenSSH's sshd with its own host key and a key-only login

/// sshd on 127.0.0.1; killed when dropped.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub host_public_key: String,
    /// The private key whose public half is the only authorized key.
    pub client_private_key: String,
    /// A public key of another pair, for a host key that does not match.
    pub other_public_key: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

impl Sshd {
    /// The `ssh://` URL of the repository at the absolute path `repo`, as the current user.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            current_user(),
            self.port,
            repo.display()
        )
    }
}

pub fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Starts sshd with its keys and config in `dir`; `None` (skipped loudly) when a tool is
/// missing.
pub fn start_sshd(dir: &Path) -> Result<Option<Sshd>> {
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

pub fn known_hosts_line(port: u16, public_key: &str) -> String {
    let mut fields = public_key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let key = fields.next().unwrap_or_default();
    format!("[127.0.0.1]:{port} {kind} {key}\n")
}

pub fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|| "root".into())
}
