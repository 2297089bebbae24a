//! Git sources against real Git servers on 127.0.0.1, each started by its test and stopped at
//! its end: a local path, `git http-backend` behind a test HTTPS gateway (token and basic
//! auth), and OpenSSH's sshd with a key and strict host-key checking. Logs are captured at
//! TRACE and searched for every secret used.
//!
//! A missing tool (`git`, `git-http-backend`, `sshd`, `ssh`, `ssh-keygen`) skips its test
//! loudly, unless `FLOTILLA_REQUIRE_TOOLS` is set, when it fails.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::declarative::git_tree::GitTree;
use flotilla_hub::git::{Credentials, FetchError, FetchOptions, Fetcher, Rewrites};
use support::git_servers::{
    Upstream, assert_no_secret, git_http_backend, https, key_material, known_hosts_line,
    start_sshd, tool_missing,
};

const TOKEN: &str = "tok-3b9f-never-log-me";
const BASIC_USER: &str = "deployer";
const BASIC_PASSWORD: &str = "pw-81c2-never-log-me";

// ---------------------------------------------------------------------------------------------
// Logs, repositories

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

/// The repository every test serves as `ROOT/served.git`: two app directories and a CI file.
fn upstream(root: &Path) -> Result<Upstream> {
    Upstream::new(
        root,
        "served",
        &[
            ("apps/guestbook/deploy.yaml", "kind: Deployment\n"),
            ("apps/podinfo/config.json", "{\"replicas\": 2}\n"),
            (".github/ci.yaml", "on: push\n"),
        ],
    )
}

fn fetcher(cache: &Path, extra_ca: Option<Vec<u8>>) -> Fetcher {
    let mut options = FetchOptions::new(cache);
    options.extra_ca_pem = extra_ca;
    options.limits.timeout = Duration::from_secs(60);
    Fetcher::new(options).expect("fetcher builds")
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
    let upstream = upstream(root.path())?;
    let fetcher = fetcher(&root.path().join("cache"), None);
    let url = upstream.bare.to_str().context("utf-8 path")?;

    let first = upstream.head();
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

fn https_setup(root: &Path) -> Result<Option<(Upstream, https::Server)>> {
    let Some(backend) = git_http_backend() else {
        return Ok(None);
    };
    let upstream = upstream(root)?;
    let auth = https::Auth {
        token: TOKEN.into(),
        basic: Some((BASIC_USER.into(), BASIC_PASSWORD.into())),
    };
    let server = https::start(backend, root.to_path_buf(), auth)?;
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
    assert_eq!(repo.resolve("HEAD")?.to_string(), upstream.head());

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

#[test]
fn ssh_with_key_and_strict_host_keys() -> Result<()> {
    logs();
    let root = tempfile::tempdir()?;
    let Some(sshd) = start_sshd(&root.path().join("sshd"))? else {
        return Ok(());
    };
    let upstream = upstream(root.path())?;
    let url = sshd.url(&upstream.bare);
    let credentials = Credentials::Ssh {
        private_key: sshd.client_private_key.clone().into(),
        known_hosts: known_hosts_line(sshd.port, &sshd.host_public_key),
    };
    let fetcher = fetcher(&root.path().join("cache"), None);
    let repo = fetcher.fetch(&url, &credentials)?;
    assert_eq!(repo.resolve("HEAD")?.to_string(), upstream.head());
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
        let upstream = upstream(&root.path().join("ssh"))?;
        let url = sshd.url(&upstream.bare);
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
