//! One module per command; [`run`] picks one. A command returns what to print as a
//! [`Report`] (so nothing is half printed when it fails) or a [`CommandError`], which knows
//! its exit code.

mod app;
mod apply;
mod appset;
mod audit;
mod bundle;
mod cluster;
mod diff;
mod history;
mod login;
mod repo;
mod sync;
mod user;

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use reqwest::StatusCode;

use crate::args::{
    ApiTokenCommand, AppCommand, AppSetCommand, Args, BundleCommand, ClusterCommand, Command,
    Global, RepoCommand, TokenCommand,
};
use crate::client::{Client, ClientError};
use crate::config::{self, ConfigError, Target, Token};
use crate::output::{self, Format};

/// What a command prints: `stdout` is its result, `stderr` warnings and notes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub stdout: String,
    pub stderr: String,
}

impl Report {
    fn out(stdout: String) -> Self {
        Self {
            stdout,
            stderr: String::new(),
        }
    }

    /// The hub's answer as JSON or YAML, or `table` for people.
    fn answer(format: Format, value: &serde_json::Value, table: impl FnOnce() -> String) -> Self {
        Self::out(output::render(format, value, table))
    }

    fn note(&mut self, line: impl AsRef<str>) {
        self.stderr.push_str(line.as_ref());
        self.stderr.push('\n');
    }
}

/// Why a command failed. See [`CommandError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the hub at {hub} refused the token")]
    Login {
        hub: String,
        #[source]
        source: ClientError,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Answer(String),
    /// `app sync --wait` ran out of time; the message says why each cluster is not done.
    #[error("{0}")]
    Wait(String),
    #[error("the bundle of cluster {cluster} does not verify against the hub's trusted keys")]
    Bundle {
        cluster: String,
        #[source]
        source: flotilla_shared::bundle::BundleError,
    },
}

impl CommandError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// 0 ok, 1 hub or I/O error, 2 usage error, 3 not logged in or unauthorized, 4 not found
    /// (the table in `args::EXIT_CODES`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Config(ConfigError::UnknownContext { .. }) => 2,
            Self::Config(ConfigError::NotLoggedIn | ConfigError::NoToken { .. })
            | Self::Login { .. } => 3,
            Self::Client(ClientError::HubUrl { .. } | ClientError::Name { .. }) => 2,
            Self::Client(error) => match error.status() {
                Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => 3,
                Some(StatusCode::NOT_FOUND) => 4,
                _ => 1,
            },
            Self::Config(_)
            | Self::Io { .. }
            | Self::Answer(_)
            | Self::Wait(_)
            | Self::Bundle { .. } => 1,
        }
    }

    /// A second line for errors with an obvious next step.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Client(error) if error.status() == Some(StatusCode::UNAUTHORIZED) => Some(
                "the token is wrong or was replaced: log in again with flotilla login --token-file FILE",
            ),
            _ => None,
        }
    }
}

/// Runs one command.
pub fn run(args: Args) -> Result<Report, CommandError> {
    let global = &args.global;
    match args.command {
        Command::Version => Ok(Report::out(format!(
            "flotilla {}\n",
            env!("CARGO_PKG_VERSION")
        ))),
        Command::Login => login::login(global),
        Command::Cluster { command } => {
            let client = connect(global)?;
            match command {
                ClusterCommand::Token {
                    command: TokenCommand::Create(create),
                } => cluster::token_create(&client, global.output, &create),
                ClusterCommand::List => cluster::list(&client, global.output),
                ClusterCommand::Approve { name } => cluster::approve(&client, global.output, &name),
                ClusterCommand::Revoke { name } => cluster::revoke(&client, global.output, &name),
                ClusterCommand::Label { name, changes } => {
                    cluster::label(&client, global.output, &name, &changes)
                }
            }
        }
        Command::Apply(apply) => {
            // Files are read before the hub is asked anything.
            let text = apply::read_inputs(&apply.files, &mut std::io::stdin().lock())?;
            apply::apply(&connect(global)?, global.output, text)
        }
        Command::App { command } => run_app(global, command),
        Command::AppSet { command } => match command {
            AppSetCommand::Apply(apply) => {
                let text = apply::read_inputs(&apply.files, &mut std::io::stdin().lock())?;
                appset::apply(&connect(global)?, global.output, text)
            }
            AppSetCommand::List => appset::list(&connect(global)?, global.output),
        },
        Command::Repo { command } => match command {
            RepoCommand::Add(add) => repo::add(
                &connect(global)?,
                global.output,
                &add,
                &mut std::io::stdin().lock(),
            ),
            RepoCommand::List => repo::list(&connect(global)?, global.output),
            RepoCommand::Rm { url } => repo::rm(&connect(global)?, global.output, &url),
        },
        Command::Audit(audit) => audit::audit(&connect(global)?, global.output, &audit),
        Command::Whoami => user::whoami(&connect(global)?, global.output),
        Command::Token { command } => match command {
            ApiTokenCommand::Create(create) => {
                user::create(&connect(global)?, global.output, &create)
            }
            ApiTokenCommand::List => user::list(&connect(global)?, global.output),
            ApiTokenCommand::Revoke { id } => user::revoke(&connect(global)?, global.output, &id),
        },
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "flotilla", &mut script);
            Ok(Report::out(String::from_utf8_lossy(&script).into_owned()))
        }
        Command::Bundle {
            command: BundleCommand::Export(export),
        } => bundle::export(&connect(global)?, global.output, &export),
    }
}

fn run_app(global: &Global, command: AppCommand) -> Result<Report, CommandError> {
    let client = connect(global)?;
    let format = global.output;
    match command {
        AppCommand::List(list) => app::list(&client, format, &list),
        AppCommand::Get { name } => app::get(&client, format, &name),
        AppCommand::Create(create) => app::create(&client, format, &create),
        AppCommand::Diff(args) => {
            let color = !global.no_color && std::io::stdout().is_terminal();
            diff::diff(&client, format, color, &args)
        }
        AppCommand::Sync(args) => sync::sync(&client, format, &args),
        AppCommand::History(args) => history::history(&client, format, &args),
        AppCommand::Rollback(args) => history::rollback(&client, format, &args),
        AppCommand::Unpin(args) => history::unpin(&client, format, &args),
        AppCommand::Rm { name } => app::rm(&client, format, &name),
    }
}

fn config_path(global: &Global) -> Result<PathBuf, ConfigError> {
    config::path(
        global.config.as_deref(),
        global.xdg_config_home.as_deref(),
        global.home.as_deref(),
    )
}

/// The token of `--token`, else `--token-file`, else `FLOTILLA_TOKEN`, else
/// `FLOTILLA_TOKEN_FILE`, if any: a flag wins over the environment.
fn flag_token(global: &Global) -> Result<Option<Token>, CommandError> {
    let file = match (
        &global.token,
        &global.token_file,
        &global.token_env,
        &global.token_file_env,
    ) {
        (Some(token), _, _, _) => return Ok(Some(token.clone())),
        (None, Some(file), _, _) => file,
        (None, None, Some(token), _) => return Ok(Some(token.clone())),
        (None, None, None, Some(file)) => file,
        (None, None, None, None) => return Ok(None),
    };
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(CommandError::io("read the token from standard input"))?;
    } else {
        text = std::fs::read_to_string(file).map_err(CommandError::io(format!(
            "read token file {}",
            file.display()
        )))?;
    }
    Token::new(&text)
        .map(Some)
        .ok_or_else(|| CommandError::Usage(format!("token file {} is empty", file.display())))
}

/// The client for the hub and token the flags and the config file name.
fn connect(global: &Global) -> Result<Client, CommandError> {
    let Target { hub, token, .. } = target(global)?;
    Ok(Client::new(&hub, token, global.timeout)?)
}

fn target(global: &Global) -> Result<Target, CommandError> {
    let path = config_path(global);
    let token = flag_token(global)?;
    // Flags alone need no config file (and no HOME).
    if let (Some(hub), Some(token), None) = (&global.hub, &token, &global.context) {
        return Ok(Target {
            context: None,
            hub: hub.clone(),
            token: token.clone(),
        });
    }
    let path = path?;
    let config = config::load(&path)?;
    Ok(config.target(
        global.context.as_deref(),
        global.hub.as_deref(),
        token,
        &path,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: StatusCode) -> CommandError {
        CommandError::Client(ClientError::Api {
            status,
            code: "x".to_owned(),
            message: "m".to_owned(),
        })
    }

    #[test]
    fn exit_codes() {
        let check = |error: CommandError, code: u8| {
            assert_eq!(error.exit_code(), code, "{error}");
        };
        check(api(StatusCode::BAD_REQUEST), 1);
        check(api(StatusCode::CONFLICT), 1);
        check(api(StatusCode::INTERNAL_SERVER_ERROR), 1);
        check(api(StatusCode::UNAUTHORIZED), 3);
        check(api(StatusCode::FORBIDDEN), 3);
        check(api(StatusCode::NOT_FOUND), 4);
        check(CommandError::Usage("u".to_owned()), 2);
        check(CommandError::Config(ConfigError::NotLoggedIn), 3);
        check(
            CommandError::Config(ConfigError::NoToken {
                hub: "h".to_owned(),
            }),
            3,
        );
        check(
            CommandError::Config(ConfigError::UnknownContext {
                name: "n".to_owned(),
                path: PathBuf::from("/c"),
                known: "none".to_owned(),
            }),
            2,
        );
        check(CommandError::Config(ConfigError::NoLocation), 1);
        check(
            CommandError::Client(ClientError::NoRoute {
                hub: "h".to_owned(),
                method: reqwest::Method::POST,
                path: "/p".to_owned(),
            }),
            1,
        );
        check(
            CommandError::Io {
                what: "w".to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            },
            1,
        );
        check(CommandError::Wait("w".to_owned()), 1);
    }

    #[test]
    fn the_hubs_message_is_the_error() {
        assert_eq!(api(StatusCode::NOT_FOUND).to_string(), "m");
        assert!(api(StatusCode::UNAUTHORIZED).hint().is_some());
    }
}
