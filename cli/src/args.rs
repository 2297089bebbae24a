//! The command line's surface: one clap [`Args`], the global flags (each with an environment
//! variable), and the parsers of label, duration and URL arguments. Pure: it parses, and
//! reads no file and no network.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Token;
use crate::output::Format;

/// The exit codes, as the top-level `--help` and the README list them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the hub refused or failed the request (a conflict, a revision never deployed, an
     application declared in Git or generated), `app sync --wait` timed out, or a file or
     network error
  2  usage error: unknown command or flag, missing or malformed argument
  3  not logged in, or the hub refused the token (HTTP 401/403)
  4  not found: the hub does not know the cluster, application, repository or pin named
     (HTTP 404)";

const LOGIN_HELP: &str = "\
Checks the token with GET /api/v1/clusters, then stores the hub's URL and the token as a \
context of the config file and makes it the current context. The token is never printed.

The config file is --config or $FLOTILLA_CONFIG, else $XDG_CONFIG_HOME/flotilla/config.json, \
else ~/.config/flotilla/config.json; it is written with mode 0600 (its directory, when \
created, 0700). The context is named --context, else after the hub's host and port.

The token comes from --token-file FILE (`-` reads standard input), $FLOTILLA_TOKEN or \
--token; prefer the first two, since a flag shows in the process list. Without --hub or \
$FLOTILLA_HUB, the context's hub is kept and only its token replaced.";

/// Flotilla: GitOps continuous delivery for fleets of Kubernetes clusters.
///
/// Every command but `login` and `version` talks to the hub of the current context (see
/// `flotilla login --help`); --hub, --token and --context override it for one call.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, after_help = EXIT_CODES)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after its name.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// The hub's URL, e.g. https://flotilla.example.com (overrides the context's).
    #[arg(long, global = true, env = "FLOTILLA_HUB", value_name = "URL", value_parser = parse_hub_url)]
    pub hub: Option<String>,
    /// The hub's admin API token (overrides the context's); prefer --token-file or
    /// FLOTILLA_TOKEN, since a flag shows in the process list.
    #[arg(long, global = true, value_name = "TOKEN", value_parser = parse_token, conflicts_with = "token_file")]
    pub token: Option<Token>,
    /// Read the token from FILE (`-`: standard input); FLOTILLA_TOKEN_FILE, if set, is read
    /// after FLOTILLA_TOKEN.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The token from the environment: flags win over it, so it is an argument of its own.
    #[arg(
        long = "token-from-env",
        env = "FLOTILLA_TOKEN",
        hide = true,
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub token_env: Option<Token>,
    /// The token file from the environment, used when no other token is given.
    #[arg(long = "token-file-from-env", env = "FLOTILLA_TOKEN_FILE", hide = true)]
    pub token_file_env: Option<PathBuf>,
    /// The context of the config file to use (default: the current context); with `login`,
    /// the context to store.
    #[arg(long, global = true, env = "FLOTILLA_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// The config file (default: $XDG_CONFIG_HOME/flotilla/config.json, else
    /// ~/.config/flotilla/config.json).
    #[arg(long, global = true, env = "FLOTILLA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        global = true,
        env = "FLOTILLA_OUTPUT",
        value_enum,
        default_value_t = Format::Table
    )]
    pub output: Format,
    /// How long one request to the hub may take (like 30s or 5m).
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_timeout
    )]
    pub timeout: Duration,
    /// Where the XDG base directory specification puts config files.
    #[arg(long, env = "XDG_CONFIG_HOME", hide = true)]
    pub xdg_config_home: Option<PathBuf>,
    /// The user's home directory.
    #[arg(long, env = "HOME", hide = true)]
    pub home: Option<PathBuf>,
    /// Never colour diffs (they are coloured only when standard output is a terminal).
    #[arg(long, global = true, env = "NO_COLOR")]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a hub URL and admin token, and store them as the current context.
    #[command(long_about = LOGIN_HELP)]
    Login,
    /// Bootstrap tokens, approval, revocation and labels of clusters.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Store Applications, ApplicationSets and AppProjects (argoproj.io/v1alpha1) from YAML or
    /// JSON files in the hub.
    ///
    /// All files go to the hub in one request, in the order given (a directory's files sorted
    /// by name), and are stored all or nothing; when the hub names a failing "document N", N
    /// counts the YAML documents of that request from 0. Warnings (unsupported fields) go to
    /// standard error.
    Apply(ApplyArgs),
    /// Applications: declare, list, inspect, diff, sync, roll back and delete them.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// ApplicationSets: store them from files and list what they generated.
    #[command(name = "appset")]
    AppSet {
        #[command(subcommand)]
        command: AppSetCommand,
    },
    /// Git repositories the hub fetches, and the credentials it fetches them with.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// The hub's audit log: who changed what, when and from where, newest first.
    Audit(AuditArgs),
    /// Who the token of the current context stands for: its name, kind and grants.
    Whoami,
    /// API tokens: scoped by grants (ROLE or ROLE:PROJECT), expiring, revocable. Creating,
    /// listing and revoking them takes an admin.
    Token {
        #[command(subcommand)]
        command: ApiTokenCommand,
    },
    /// Bundle files: a cluster's signed state for the air gap.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Print a shell completion script to standard output.
    ///
    /// For example `flotilla completion bash > /etc/bash_completion.d/flotilla`, or
    /// `source <(flotilla completion zsh)` in ~/.zshrc.
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the version of this command line.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Bootstrap tokens, with which an agent registers its cluster.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// List registered clusters: status, labels, agent and Kubernetes versions, last contact,
    /// served generation and the last error.
    List,
    /// Approve a cluster that registered with a token requiring approval.
    Approve {
        /// The cluster's name.
        name: String,
    },
    /// Revoke a cluster: the hub refuses its certificate from now on.
    Revoke {
        /// The cluster's name.
        name: String,
    },
    /// Set labels (KEY=VALUE) and remove them (KEY-), like kubectl label.
    Label {
        /// The cluster's name.
        name: String,
        /// KEY=VALUE sets a label, KEY- removes it.
        #[arg(required = true, value_name = "KEY=VALUE|KEY-", value_parser = parse_label_change)]
        changes: Vec<LabelChange>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use bootstrap token for a cluster, and print it once with a ready
    /// `helm install` command for the agent.
    ///
    /// The command's hub-ca.crt and signing.pub are the hub's agent API CA certificate and
    /// trusted signing keys (GET /api/v1/agent-api); --write-files DIR writes them.
    Create(TokenCreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenCreateArgs {
    /// The cluster's name (a DNS label, like prod-east).
    pub name: String,
    /// A label the cluster gets when it registers (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// How long the token stays valid (like 30m, 24h or 72h).
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: String,
    /// The cluster waits for `flotilla cluster approve` after it registers.
    #[arg(long)]
    pub require_approval: bool,
    /// Write hub-ca.crt and signing.pub into DIR (created if missing) for the helm command.
    #[arg(long, value_name = "DIR")]
    pub write_files: Option<PathBuf>,
    /// The agent's Helm chart, as `helm install` takes it (a path or an oci:// reference).
    #[arg(
        long,
        env = "FLOTILLA_AGENT_CHART",
        default_value = "charts/flotilla-agent",
        value_name = "CHART"
    )]
    pub chart: String,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A YAML or JSON file of one or more documents, `-` for standard input, or a directory
    /// (its *.yaml, *.yml and *.json files, not recursive). Repeatable.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The largest page the hub serves.
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List applications: one row per application, with the number of clusters it runs on
    /// and how many of them are synced and healthy.
    ///
    /// Errors of ApplicationSet generators go to standard error. When the hub holds more
    /// applications than one page (--limit, else the hub's default), a note says so; --all
    /// fetches every page.
    List(AppListArgs),
    /// Show one application: where it comes from and, per cluster, the revision served, its
    /// sync and health status and, when it is not synced and healthy (or pinned), why.
    Get {
        /// The application's name.
        name: String,
    },
    /// Declare an Application (argoproj.io/v1alpha1) in the hub from flags.
    ///
    /// The source is a directory of a Git repository (--repo with --path) or a chart of a
    /// Helm repository (--repo with --chart and --revision, the chart's version). An
    /// application of that name is refused unless --upsert.
    Create(AppCreateArgs),
    /// Show what would change on each cluster: the rendered objects that differ between
    /// what the agent runs and what the hub serves (or --revision), then the drift the agent
    /// reported (objects changed in the cluster, and whether they were healed).
    ///
    /// Added and removed lines are coloured when standard output is a terminal. Unlike
    /// diff(1), the exit code is 0 whether or not there are differences.
    Diff(AppDiffArgs),
    /// Fetch the application's repositories and publish what changed now, instead of at the
    /// next poll; with --wait, wait until every cluster is synced and healthy.
    ///
    /// While waiting, the progress goes to standard error (one updating line on a terminal,
    /// a line per change otherwise). When the wait times out, the exit code is 1 and the
    /// error says why each cluster still waiting is not done.
    Sync(AppSyncArgs),
    /// The revisions deployed to each cluster, newest first.
    History(AppHistoryArgs),
    /// Pin the application at a revision it has been deployed at (see `app history`), on one
    /// cluster or on all; it stays there, ignoring new commits, until `app unpin`.
    Rollback(AppRollbackArgs),
    /// Lift a pin: the application follows its target revision in Git again.
    Unpin(AppUnpinArgs),
    /// Delete an application declared through the API: it leaves every cluster (its objects
    /// are removed where its sync policy prunes).
    ///
    /// Applications declared in the configuration repository or generated by an
    /// ApplicationSet are refused: change them where they are declared.
    Rm {
        /// The application's name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AppListArgs {
    /// Only applications of this project.
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Only applications whose labels match, like env=prod,tier!=db.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only applications served to this cluster.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// At most this many applications per page (1 to 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: Option<u32>,
    /// Fetch every page, not only the first.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct AppCreateArgs {
    /// The application's name (a DNS subdomain, like guestbook).
    pub name: String,
    /// The Git repository (or, with --chart, the Helm repository) to render from.
    #[arg(long, value_name = "URL")]
    pub repo: String,
    /// The directory of the Git repository to render (plain YAML, Kustomize or a Helm chart).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "chart",
        conflicts_with = "chart"
    )]
    pub path: Option<String>,
    /// The chart of the Helm repository --repo to render (needs --revision, its version).
    #[arg(long, value_name = "CHART")]
    pub chart: Option<String>,
    /// The Git branch, tag or commit to follow (default HEAD), or the chart's version.
    #[arg(long, value_name = "REVISION")]
    pub revision: Option<String>,
    /// The cluster to deploy to, as registered with the hub.
    #[arg(long, value_name = "NAME")]
    pub dest_cluster: String,
    /// The namespace of the objects that name none.
    #[arg(long, value_name = "NAMESPACE")]
    pub dest_namespace: Option<String>,
    /// The AppProject the application belongs to.
    #[arg(long, value_name = "PROJECT", default_value = "default")]
    pub project: String,
    /// Deploy new revisions automatically (syncPolicy.automated); without it, only
    /// `flotilla app sync` deploys.
    #[arg(long)]
    pub auto_sync: bool,
    /// Delete objects that left the source (needs --auto-sync).
    #[arg(long, requires = "auto_sync")]
    pub prune: bool,
    /// Undo changes made in the cluster (needs --auto-sync).
    #[arg(long, requires = "auto_sync")]
    pub self_heal: bool,
    /// Create the destination namespace when it is missing.
    #[arg(long)]
    pub create_namespace: bool,
    /// A label of the application (repeatable), for `app list --selector`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Replace an application of that name declared through the API.
    #[arg(long)]
    pub upsert: bool,
}

#[derive(Debug, clap::Args)]
pub struct AppDiffArgs {
    /// The application's name.
    pub name: String,
    /// Compare with this deployed revision (see `app history`) instead of what the hub
    /// serves now.
    #[arg(long, value_name = "REVISION")]
    pub revision: Option<String>,
    /// Only this cluster.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AppSyncArgs {
    /// The application's name.
    pub name: String,
    /// Wait until every cluster of the application is synced and healthy.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (like 90s, 5m or 1h); --timeout bounds each request instead.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        value_parser = parse_positive,
        requires = "wait"
    )]
    pub wait_timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct AppHistoryArgs {
    /// The application's name.
    pub name: String,
    /// Only this cluster's deployments.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// At most this many entries (1 to 1000; the hub's default is 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct AppRollbackArgs {
    /// The application's name.
    pub name: String,
    /// A revision the application was deployed at (a full commit, as `app history -o json`
    /// shows it, or a tag or chart version as declared).
    pub revision: String,
    /// Only on this cluster (default: on every cluster).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AppUnpinArgs {
    /// The application's name.
    pub name: String,
    /// The cluster whose pin to lift (default: the pin on every cluster).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AppSetCommand {
    /// Store ApplicationSets from YAML or JSON files in the hub, like `flotilla apply`, but
    /// refuse (before sending anything) a file with any other kind of document.
    Apply(ApplyArgs),
    /// List ApplicationSets: how many applications each generated, where it was declared,
    /// and its generator's error, if any.
    List,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Register a Git repository, or replace its credentials and poll interval.
    ///
    /// Secrets are read from files (`-`: standard input, for one of them), never from flags,
    /// and never printed: --git-token-file for an HTTPS bearer token; --username with
    /// --password-file for HTTPS basic authentication (GitHub: user x-access-token, GitLab:
    /// user oauth2, with a token as the password); --ssh-key-file with --known-hosts-file for
    /// SSH. Without any, the repository is fetched anonymously.
    Add(RepoAddArgs),
    /// List registered repositories: whether they have credentials and their poll interval.
    List,
    /// Unregister a repository and forget its credentials.
    Rm {
        /// The repository's URL, as `repo list` shows it.
        url: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RepoAddArgs {
    /// The repository's URL (https://, ssh:// or user@host:path); never with a password.
    pub url: String,
    /// A file holding an HTTPS access token for the repository.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["username", "ssh_key_file"]
    )]
    pub git_token_file: Option<PathBuf>,
    /// The user name of HTTPS basic authentication (with --password-file).
    #[arg(
        long,
        value_name = "USER",
        requires = "password_file",
        conflicts_with = "ssh_key_file"
    )]
    pub username: Option<String>,
    /// A file holding the password (or token) of HTTPS basic authentication.
    #[arg(long, value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,
    /// A file holding the SSH private key (OpenSSH or PEM), with --known-hosts-file.
    #[arg(long, value_name = "FILE", requires = "known_hosts_file")]
    pub ssh_key_file: Option<PathBuf>,
    /// A known_hosts file naming the server's host key (checked strictly).
    #[arg(long, value_name = "FILE", requires = "ssh_key_file")]
    pub known_hosts_file: Option<PathBuf>,
    /// How often the hub fetches it when no webhook tells it (like 5m; at least 10s; default:
    /// the hub's --poll-interval).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub poll_interval: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create an API token and print it once, alone on standard output (the hub keeps only
    /// its SHA-256). For example `flotilla token create ci-shop --grant maintainer:shop
    /// --expires-in 90d > ci-shop.token`.
    Create(ApiTokenCreateArgs),
    /// List the API tokens: id, name, grants, state (active, expired, revoked), expiry.
    List,
    /// Revoke an API token by its id: it is refused from the next request on.
    Revoke {
        /// The token's id (from `flotilla token list`).
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ApiTokenCreateArgs {
    /// A name for the token: 1 to 63 letters, digits, '-', '_' or '.'; the audit log calls
    /// its holder token:NAME.
    pub name: String,
    /// A grant: admin, maintainer:PROJECT, viewer:PROJECT, or maintainer/viewer of every
    /// project (repeatable).
    #[arg(long = "grant", value_name = "ROLE[:PROJECT]", required = true)]
    pub grants: Vec<String>,
    /// How long it works: 90m, 12h, 30d (the hub's default 30d, at most 366d).
    #[arg(long, value_name = "LIFETIME")]
    pub expires_in: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// At most this many entries (1 to 1000; the hub's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Download a cluster's signed state as a bundle file, verified against the hub's trusted
    /// keys, for `flotilla-agent apply --bundle FILE`.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The cluster whose state to export.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// The bundle file to write (atomically: a temporary file, then a rename).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// One argument of `cluster label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    Set(String, String),
    Remove(String),
}

/// A label key as the command line accepts it; the hub checks the Kubernetes syntax.
fn check_key(key: &str, arg: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("label {arg:?} has an empty key"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("label key {key:?} contains whitespace"));
    }
    Ok(())
}

/// `KEY=VALUE`.
pub fn parse_label(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("label {arg:?} is not KEY=VALUE"))?;
    check_key(key, arg)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// `KEY=VALUE` sets, `KEY-` removes.
pub fn parse_label_change(arg: &str) -> Result<LabelChange, String> {
    if arg.contains('=') {
        let (key, value) = parse_label(arg)?;
        return Ok(LabelChange::Set(key, value));
    }
    match arg.strip_suffix('-') {
        Some(key) => {
            check_key(key, arg)?;
            Ok(LabelChange::Remove(key.to_owned()))
        }
        None => Err(format!("{arg:?} is neither KEY=VALUE nor KEY-")),
    }
}

fn parse_positive(arg: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = arg
        .trim()
        .parse()
        .map_err(|_| format!("{arg:?} is not a duration (like 30s, 5m or 24h)"))?;
    Duration::try_from(parsed)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{arg:?} is not a positive duration"))
}

/// A token lifetime: checked here, sent to the hub as written.
pub fn parse_ttl(arg: &str) -> Result<String, String> {
    parse_positive(arg).map(|_| arg.trim().to_owned())
}

fn parse_timeout(arg: &str) -> Result<Duration, String> {
    parse_positive(arg)
}

/// A Git repository's URL as the hub takes it (a URL, `user@host:path` or a local path),
/// trimmed. One with a password is refused without echoing it: secrets come from files.
/// Commands call it, not clap, whose errors would echo the argument.
pub fn parse_repo_url(arg: &str) -> Result<String, String> {
    let url = arg.trim();
    if url.is_empty() {
        return Err("the repository URL is empty".to_owned());
    }
    if reqwest::Url::parse(url).is_ok_and(|u| u.password().is_some()) {
        return Err(
            "the repository URL must not carry a password: give it with --password-file".to_owned(),
        );
    }
    Ok(url.to_owned())
}

fn parse_token(arg: &str) -> Result<Token, String> {
    Token::new(arg).ok_or_else(|| "the token is empty".to_owned())
}

/// The hub's URL: http or https, a host, no user or password, no query; kept as given
/// without a trailing slash.
pub fn parse_hub_url(arg: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(arg.trim())
        .map_err(|e| format!("hub URL {arg:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("hub URL {arg:?} is not http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("hub URL {arg:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL: it carries a credential.
        return Err("the hub URL must not carry a user or password: use a token".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("hub URL {arg:?} must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn label_changes() {
        let check = |arg: &str, expected: Result<LabelChange, &str>| {
            let got = parse_label_change(arg);
            match (&got, &expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{arg}"),
                (Err(got), Err(expected)) => assert!(got.contains(expected), "{arg}: {got}"),
                _ => panic!("{arg}: got {got:?}, expected {expected:?}"),
            }
        };
        let set = |k: &str, v: &str| Ok(LabelChange::Set(k.to_owned(), v.to_owned()));
        let remove = |k: &str| Ok(LabelChange::Remove(k.to_owned()));
        check("env=prod", set("env", "prod"));
        check("env=", set("env", ""));
        check("a=b=c", set("a", "b=c"));
        check("a=b-", set("a", "b-"));
        check("example.com/tier=web", set("example.com/tier", "web"));
        check("env-", remove("env"));
        check("team-name-", remove("team-name"));
        check("env", Err("neither KEY=VALUE nor KEY-"));
        check("-", Err("empty key"));
        check("=prod", Err("empty key"));
        check("my env=prod", Err("whitespace"));
    }

    #[test]
    fn labels_of_new_clusters_only_set() {
        assert_eq!(parse_label("env=prod"), Ok(("env".into(), "prod".into())));
        assert!(parse_label("env-").is_err());
    }

    #[test]
    fn durations() {
        for good in ["24h", "30m", "1h30m", "90s", "PT2H", " 24h "] {
            assert_eq!(parse_ttl(good).as_deref(), Ok(good.trim()), "{good}");
        }
        for bad in ["", "0s", "-1h", "tomorrow", "24"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_timeout("5m"), Ok(Duration::from_secs(300)));
    }

    #[test]
    fn hub_urls() {
        let check = |arg: &str, expected: Result<&str, &str>| {
            let got = parse_hub_url(arg);
            match (&got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{arg}"),
                (Err(got), Err(expected)) => assert!(got.contains(expected), "{arg}: {got}"),
                _ => panic!("{arg}: got {got:?}, expected {expected:?}"),
            }
        };
        check("https://hub.example.com", Ok("https://hub.example.com"));
        check("https://hub.example.com/", Ok("https://hub.example.com"));
        check("http://127.0.0.1:8080", Ok("http://127.0.0.1:8080"));
        check(
            "https://example.com/flotilla/",
            Ok("https://example.com/flotilla"),
        );
        check("hub.example.com", Err("not a URL"));
        check("ftp://hub.example.com", Err("not http"));
        check(
            "https://admin:secret@hub.example.com",
            Err("user or password"),
        );
        check("https://hub.example.com/?x=1", Err("query"));
        assert!(
            !parse_hub_url("https://admin:secret@hub")
                .expect_err("refused")
                .contains("secret")
        );
    }

    #[test]
    fn global_flags_go_anywhere_and_tokens_stay_hidden() {
        let args = Args::try_parse_from([
            "flotilla",
            "cluster",
            "list",
            "-o",
            "json",
            "--hub",
            "http://127.0.0.1:1",
        ])
        .expect("parses");
        assert_eq!(args.global.output, Format::Json);
        assert_eq!(args.global.hub.as_deref(), Some("http://127.0.0.1:1"));
        let args = Args::try_parse_from(["flotilla", "--token", "flt_secret", "app", "list"])
            .expect("parses");
        assert!(!format!("{args:?}").contains("flt_secret"));
    }

    #[test]
    fn usage_errors() {
        for argv in [
            &["flotilla", "cluster", "label", "east"][..],
            &["flotilla", "cluster", "label", "east", "env"],
            &[
                "flotilla", "cluster", "token", "create", "east", "--ttl", "0s",
            ],
            &[
                "flotilla", "cluster", "token", "create", "east", "--label", "env",
            ],
            &["flotilla", "apply"],
            &["flotilla", "bundle", "export", "--cluster", "east"],
            &["flotilla", "--hub", "hub.example.com", "app", "list"],
            &[
                "flotilla",
                "--token",
                "t",
                "--token-file",
                "f",
                "app",
                "list",
            ],
        ] {
            let error = Args::try_parse_from(argv).expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{argv:?}: {error}");
        }
    }

    #[test]
    fn token_create_defaults() {
        let args = Args::try_parse_from([
            "flotilla", "cluster", "token", "create", "east", "--label", "env=prod", "--label",
            "tier=web",
        ])
        .expect("parses");
        let Command::Cluster {
            command:
                ClusterCommand::Token {
                    command: TokenCommand::Create(create),
                },
        } = args.command
        else {
            panic!("not token create: {:?}", args.command);
        };
        assert_eq!(create.ttl, "24h");
        assert!(!create.require_approval);
        assert_eq!(create.chart, "charts/flotilla-agent");
        assert_eq!(
            create.labels,
            [("env".into(), "prod".into()), ("tier".into(), "web".into())]
        );
    }
}
