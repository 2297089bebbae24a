//! Configuration of `flotilla-hub serve`: flags and `FLOTILLA_HUB_*` environment variables
//! (clap), and an optional config file (TOML, or YAML/JSON by extension) for the same
//! settings. A flag or variable that was given wins over the file; the file wins over the
//! built-in defaults. The result is one [`ServeConfig`].
//!
//! Secrets (the webhook secret) are held as [`SecretString`] from the moment they are read
//! and never reach a `Debug`, an error or a log line. It reads the config file and nothing
//! else; it starts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use jiff::SignedDuration;

use crate::config_repo::ConfigSource;
use secrecy::SecretString;
use serde::Deserialize;

use crate::failpoint::FailpointArgs;
use crate::git::{Rewrite, Rewrites};
use crate::render::RenderArgs;

/// Default largest request body of the human API.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// A secret given on the command line or in the environment; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretArg(pub String);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(redacted)")
    }
}

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The data directory `flotilla-hub init` created.
    #[arg(long, env = "FLOTILLA_HUB_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A config file (TOML, or YAML/JSON by extension) with the settings below; flags and
    /// environment variables win over it.
    #[arg(long, env = "FLOTILLA_HUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the human API (plain HTTP; put TLS in front of it). Port 0 picks a free one.
    #[arg(long, env = "FLOTILLA_HUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the agent API (mutual TLS with the hub CA). Port 0 picks a free one.
    #[arg(
        long,
        env = "FLOTILLA_HUB_AGENT_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    pub agent_listen: SocketAddr,
    /// The URL agents reach the agent API at (for `flotilla cluster token create`'s install
    /// line) [default: https://localhost:PORT of --agent-listen].
    #[arg(long, env = "FLOTILLA_HUB_AGENT_URL")]
    pub agent_url: Option<String>,
    /// Extra DNS names and IP addresses of the agent API's server certificate, besides
    /// localhost, 127.0.0.1, ::1 and the host of --agent-url (repeatable).
    #[arg(
        long = "agent-hostname",
        env = "FLOTILLA_HUB_AGENT_HOSTNAMES",
        value_delimiter = ','
    )]
    pub agent_hostnames: Vec<String>,
    /// Lifetime of the client certificates agents get; they renew at two thirds of it.
    #[arg(
        long,
        env = "FLOTILLA_HUB_CLIENT_CERT_LIFETIME",
        default_value = "720h"
    )]
    pub client_cert_lifetime: SignedDuration,
    /// A cluster whose agent has not reported for this long is shown Offline.
    #[arg(long, env = "FLOTILLA_HUB_OFFLINE_AFTER", default_value = "90s")]
    pub offline_after: SignedDuration,
    /// Enable test-only hooks (the agent API serve override). Never in production.
    #[arg(long, env = "FLOTILLA_HUB_ENABLE_TEST_HOOKS", hide = true)]
    pub enable_test_hooks: bool,
    /// How often every repository is fetched when no webhook says it changed.
    #[arg(long, env = "FLOTILLA_HUB_POLL_INTERVAL", default_value = "3m")]
    pub poll_interval: SignedDuration,
    /// Largest random delay added to each poll, so repositories are not fetched in lockstep.
    #[arg(long, env = "FLOTILLA_HUB_POLL_JITTER", default_value = "30s")]
    pub poll_jitter: SignedDuration,
    /// How often states are checked for re-signing (at half their lifetime).
    #[arg(long, env = "FLOTILLA_HUB_RESIGN_CHECK_INTERVAL", default_value = "1m")]
    pub resign_check_interval: SignedDuration,
    /// How often unreferenced blobs are collected.
    #[arg(long, env = "FLOTILLA_HUB_GC_INTERVAL", default_value = "10m")]
    pub gc_interval: SignedDuration,
    /// How long in-flight requests may finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "FLOTILLA_HUB_SHUTDOWN_GRACE", default_value = "10s")]
    pub shutdown_grace: SignedDuration,
    /// Shared secret of push webhooks (HMAC key for GitHub and Gitea/Forgejo, token for
    /// GitLab). Without it the webhook endpoint refuses every delivery. Prefer the
    /// environment variable or the config file to the flag.
    #[arg(long, env = "FLOTILLA_HUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretArg>,
    /// Largest request body of the human API, in bytes.
    #[arg(long, env = "FLOTILLA_HUB_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest webhook body, in bytes.
    #[arg(long, env = "FLOTILLA_HUB_WEBHOOK_MAX_BODY_BYTES", default_value_t = crate::webhook::DEFAULT_MAX_BODY_BYTES)]
    pub webhook_max_body_bytes: usize,
    /// Repository URL rewrite `PREFIX=BASE` (git's `url.BASE.insteadOf PREFIX`); repeatable.
    #[arg(long = "rewrite", env = "FLOTILLA_HUB_REWRITES", value_delimiter = ',')]
    pub rewrites: Vec<String>,
    /// A Git repository whose YAML/JSON files declare Applications, ApplicationSets and
    /// AppProjects; the hub applies each new commit of it (and deletes what leaves it).
    /// Register its credentials like any repository's (`PUT /api/v1/repositories`).
    #[arg(long, env = "FLOTILLA_HUB_CONFIG_REPO")]
    pub config_repo: Option<String>,
    /// Branch, tag or commit of the configuration repository.
    #[arg(long, env = "FLOTILLA_HUB_CONFIG_REVISION", default_value = "HEAD")]
    pub config_revision: String,
    /// Directory of the configuration repository that holds the documents.
    #[arg(long, env = "FLOTILLA_HUB_CONFIG_PATH", default_value = ".")]
    pub config_path: String,
    /// PEM file of CA certificates trusted for HTTPS Git servers besides the WebPKI roots
    /// (a private CA).
    #[arg(long, env = "FLOTILLA_HUB_GIT_CA_FILE")]
    pub git_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub oidc: OidcArgs,
    #[command(flatten)]
    pub failpoints: FailpointArgs,
    /// Ids of the arguments given by flag or environment (they win over the config file);
    /// filled in by `cli::parse`.
    #[arg(skip)]
    pub explicit: BTreeSet<String>,
}

/// Single sign-on for the dashboard (OpenID Connect, authorization code with PKCE).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Single sign-on")]
pub struct OidcArgs {
    /// The OpenID Connect issuer (its discovery document is ISSUER/.well-known/openid-configuration).
    /// Without it the dashboard takes tokens only.
    #[arg(long, env = "FLOTILLA_HUB_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The client id registered at the issuer.
    #[arg(long, env = "FLOTILLA_HUB_OIDC_CLIENT_ID", default_value = "flotilla")]
    pub oidc_client_id: String,
    /// A file holding the client's secret (none: a public client, PKCE only).
    #[arg(long, env = "FLOTILLA_HUB_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// The dashboard's /auth/callback as browsers reach it, registered at the issuer
    /// [default: http://LISTEN/auth/callback].
    #[arg(long, env = "FLOTILLA_HUB_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// Maps a group of the ID token's `groups` claim to a role: GROUP=admin,
    /// GROUP=maintainer:PROJECT, GROUP=viewer (every project) — repeatable. People in no
    /// mapped group cannot sign in.
    #[arg(
        long = "oidc-group",
        env = "FLOTILLA_HUB_OIDC_GROUPS",
        value_delimiter = ','
    )]
    pub oidc_groups: Vec<String>,
}

/// The config file: the same settings as the flags, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<SocketAddr>,
    agent_listen: Option<SocketAddr>,
    agent_url: Option<String>,
    agent_hostnames: Option<Vec<String>>,
    client_cert_lifetime: Option<String>,
    offline_after: Option<String>,
    poll_interval: Option<String>,
    poll_jitter: Option<String>,
    resign_check_interval: Option<String>,
    gc_interval: Option<String>,
    shutdown_grace: Option<String>,
    webhook_secret: Option<String>,
    max_body_bytes: Option<usize>,
    webhook_max_body_bytes: Option<usize>,
    /// PREFIX → BASE.
    rewrites: Option<BTreeMap<String, String>>,
    config_repo: Option<String>,
    config_revision: Option<String>,
    config_path: Option<String>,
    git_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("config file {path}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("rewrite {0:?}: expected PREFIX=BASE")]
    Rewrite(String),
    #[error("{field}: must be positive")]
    NotPositive { field: &'static str },
}

/// Everything `serve` runs with.
#[derive(Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub agent_listen: SocketAddr,
    pub agent_url: Option<String>,
    pub agent_hostnames: Vec<String>,
    pub client_cert_lifetime: SignedDuration,
    pub offline_after: SignedDuration,
    pub enable_test_hooks: bool,
    pub poll_interval: SignedDuration,
    pub poll_jitter: SignedDuration,
    pub resign_check_interval: SignedDuration,
    pub gc_interval: SignedDuration,
    pub shutdown_grace: SignedDuration,
    pub webhook_secret: Option<SecretString>,
    pub max_body_bytes: usize,
    pub webhook_max_body_bytes: usize,
    pub rewrites: Rewrites,
    pub rewrite_rules: Vec<(String, String)>,
    pub config_source: Option<ConfigSource>,
    pub git_ca_file: Option<PathBuf>,
    /// Flags and environment only (not the config file).
    pub oidc: OidcArgs,
}

impl ServeConfig {
    /// Flags and environment, then the config file for what they left at its default.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let path = args.config.clone().unwrap_or_default();
        let given = |id: &str| args.explicit.contains(id);
        let duration = |id: &'static str,
                        flag: SignedDuration,
                        file: &Option<String>|
         -> Result<SignedDuration, ConfigError> {
            let value = match file {
                Some(text) if !given(id) => {
                    SignedDuration::from_str(text).map_err(|e| ConfigError::Invalid {
                        path: path.clone(),
                        field: id,
                        reason: e.to_string(),
                    })?
                }
                _ => flag,
            };
            if value.is_positive() {
                Ok(value)
            } else {
                Err(ConfigError::NotPositive { field: id })
            }
        };
        let mut rewrite_rules: Vec<(String, String)> = Vec::new();
        if given("rewrites") || file.rewrites.is_none() {
            for rule in &args.rewrites {
                let (prefix, base) = rule
                    .split_once('=')
                    .ok_or_else(|| ConfigError::Rewrite(rule.clone()))?;
                rewrite_rules.push((prefix.to_owned(), base.to_owned()));
            }
        } else if let Some(rules) = &file.rewrites {
            rewrite_rules.extend(rules.iter().map(|(p, b)| (p.clone(), b.clone())));
        }
        let poll_jitter = match &file.poll_jitter {
            Some(text) if !given("poll_jitter") => {
                SignedDuration::from_str(text).map_err(|e| ConfigError::Invalid {
                    path: path.clone(),
                    field: "poll_jitter",
                    reason: e.to_string(),
                })?
            }
            _ => args.poll_jitter,
        };
        let webhook_secret = match (&args.webhook_secret, file.webhook_secret) {
            (Some(secret), _) => Some(secret.0.clone()),
            (None, secret) => secret,
        }
        .filter(|s| !s.is_empty())
        .map(SecretString::from);
        Ok(Self {
            oidc: args.oidc.clone(),
            data_dir: args.data_dir.clone(),
            listen: pick(given("listen"), args.listen, file.listen),
            agent_listen: pick(given("agent_listen"), args.agent_listen, file.agent_listen),
            agent_url: pick(
                given("agent_url"),
                args.agent_url.clone(),
                file.agent_url.map(Some),
            ),
            agent_hostnames: pick(
                given("agent_hostnames"),
                args.agent_hostnames.clone(),
                file.agent_hostnames,
            ),
            client_cert_lifetime: duration(
                "client_cert_lifetime",
                args.client_cert_lifetime,
                &file.client_cert_lifetime,
            )?,
            offline_after: duration("offline_after", args.offline_after, &file.offline_after)?,
            enable_test_hooks: args.enable_test_hooks,
            poll_interval: duration("poll_interval", args.poll_interval, &file.poll_interval)?,
            poll_jitter: poll_jitter.abs(),
            resign_check_interval: duration(
                "resign_check_interval",
                args.resign_check_interval,
                &file.resign_check_interval,
            )?,
            gc_interval: duration("gc_interval", args.gc_interval, &file.gc_interval)?,
            shutdown_grace: duration("shutdown_grace", args.shutdown_grace, &file.shutdown_grace)?,
            webhook_secret,
            max_body_bytes: pick(
                given("max_body_bytes"),
                args.max_body_bytes,
                file.max_body_bytes,
            ),
            webhook_max_body_bytes: pick(
                given("webhook_max_body_bytes"),
                args.webhook_max_body_bytes,
                file.webhook_max_body_bytes,
            ),
            rewrites: Rewrites::new(rewrite_rules.iter().map(|(prefix, base)| Rewrite {
                instead_of: prefix.clone(),
                base: base.clone(),
            })),
            rewrite_rules,
            config_source: pick(
                given("config_repo"),
                args.config_repo.clone(),
                file.config_repo.map(Some),
            )
            .filter(|url| !url.is_empty())
            .map(|url| ConfigSource {
                url,
                revision: pick(
                    given("config_revision"),
                    args.config_revision.clone(),
                    file.config_revision,
                ),
                path: pick(
                    given("config_path"),
                    args.config_path.clone(),
                    file.config_path,
                ),
            }),
            git_ca_file: pick(
                given("git_ca_file"),
                args.git_ca_file.clone(),
                file.git_ca_file.map(Some),
            ),
        })
    }
}

fn pick<T>(given: bool, flag: T, file: Option<T>) -> T {
    match file {
        Some(value) if !given => value,
        _ => flag,
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse = |reason: String| ConfigError::Parse {
        path: path.to_owned(),
        reason,
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml" | "json") => {
            serde_saphyr::from_str(&text).map_err(|e| parse(e.to_string()))
        }
        _ => toml::from_str(&text).map_err(|e| parse(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn resolve(argv: &[&str], file: Option<(&str, &str)>) -> Result<ServeConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut full = vec!["hub", "--data-dir", "/d"];
        let path;
        if let Some((name, text)) = file {
            path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            full.extend(["--config", path.to_str().expect("UTF-8")]);
        }
        full.extend(argv);
        let mut args = Cli::try_parse_from(&full).expect("parses").serve;
        // What `cli::parse` records: the flags given on the command line.
        for flag in argv.iter().filter_map(|a| a.strip_prefix("--")) {
            args.explicit.insert(flag.replace('-', "_"));
        }
        ServeConfig::resolve(&args)
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let toml = "listen = '127.0.0.1:9000'\npoll_interval = '10s'\nwebhook_secret = 's'\n\
                    [rewrites]\n'https://git.example/' = '/srv/git/'\n";
        let config = resolve(&["--poll-interval", "20s"], Some(("hub.toml", toml))).expect("ok");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.poll_interval, SignedDuration::from_secs(20));
        assert!(config.webhook_secret.is_some());
        assert_eq!(
            config.rewrites.apply("https://git.example/fleet.git"),
            "/srv/git/fleet.git"
        );
        let yaml = "listen: 127.0.0.1:9001\nmax_body_bytes: 10\n";
        let config = resolve(&[], Some(("hub.yaml", yaml))).expect("ok");
        assert_eq!((config.listen.port(), config.max_body_bytes), (9001, 10));
        let config = resolve(&[], None).expect("ok");
        assert_eq!(config.listen.port(), 8080);
        assert!(config.webhook_secret.is_none());
    }

    #[test]
    fn the_configuration_repository_comes_from_flags_or_the_file() {
        let yaml = "config_repo: https://git.example/fleet.git\nconfig_path: clusters\n";
        let config = resolve(&["--config-revision", "v2"], Some(("hub.yaml", yaml))).expect("ok");
        assert_eq!(
            config.config_source,
            Some(ConfigSource {
                url: "https://git.example/fleet.git".to_owned(),
                revision: "v2".to_owned(),
                path: "clusters".to_owned(),
            })
        );
        let config = resolve(&["--config-repo", "/srv/fleet"], None).expect("ok");
        let source = config.config_source.expect("a source");
        assert_eq!(
            (source.revision.as_str(), source.path.as_str()),
            ("HEAD", ".")
        );
        assert_eq!(resolve(&[], None).expect("ok").config_source, None);
    }

    #[test]
    fn unknown_settings_and_bad_values_are_refused() {
        let err = resolve(&[], Some(("hub.toml", "lisen = 'x'\n"))).expect_err("unknown");
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = resolve(&[], Some(("hub.toml", "gc_interval = 'soon'\n"))).expect_err("bad");
        assert!(err.to_string().contains("gc_interval"), "{err}");
        let err = resolve(&["--rewrite", "nope"], None).expect_err("bad rewrite");
        assert!(err.to_string().contains("PREFIX=BASE"), "{err}");
    }
}
