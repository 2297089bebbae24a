//! Command-line surface of `flotilla-hub`: one clap `Args`, one function per command.

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::bundle_build::{self, BuildArgs};
use crate::config::ServeArgs;
use crate::init::{self, InitArgs};
use crate::keygen::{self, KeygenArgs};
use crate::reconcile::preview::{self, PreviewArgs};

/// The Flotilla hub: renders Git into signed per-cluster desired state.
#[derive(Debug, Parser)]
#[command(name = "flotilla-hub", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version of this hub.
    Version,
    /// Create a data directory: database, signing key pair, hub CA, credentials key and an
    /// admin API token (printed once).
    Init(InitArgs),
    /// Run the hub: the human API, reconcile rounds on start, poll, webhook and API changes,
    /// re-signing and blob collection, until SIGTERM or Ctrl-C.
    Serve(Box<ServeArgs>),
    /// Create a signing key pair (signing.key, mode 0600, and signing.pub); print its key id.
    Keygen(KeygenArgs),
    /// Work with bundle files (signed cluster states for the air gap).
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Print what one cluster gets from a file of Applications and ApplicationSets, rendered
    /// from a local Git repository: each application and its objects as YAML, or why it
    /// cannot render.
    Render(Box<PreviewArgs>),
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Sign a bundle file from directories of plain manifests (YAML or JSON).
    Build(BuildArgs),
}

/// Parses the command line and the environment. For `serve` it also records which
/// arguments were given (by flag or environment), since those win over its config file.
pub fn parse() -> Args {
    let matches = Args::command().get_matches();
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    if let (Command::Serve(serve), Some(("serve", sub))) = (&mut args.command, matches.subcommand())
    {
        for id in sub.ids() {
            let id = id.as_str();
            if matches!(
                sub.value_source(id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            ) {
                serve.explicit.insert(id.to_owned());
            }
        }
    }
    args
}

/// Runs one command to completion.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Version => {
            println!("flotilla-hub {}", env!("CARGO_PKG_VERSION"));
        }
        Command::Init(args) if args.if_missing && init::initialized(&args.data_dir) => {
            println!(
                "hub data directory {} is already initialized; nothing to do",
                args.data_dir.display()
            );
        }
        Command::Init(args) => {
            let created = init::init(&args)?;
            print!("{}", created.report());
        }
        Command::Serve(args) => crate::serve::serve(&args)?,
        Command::Keygen(args) => {
            let keyid = keygen::keygen(&args.out)?;
            println!("{keyid}");
        }
        Command::Bundle {
            command: BundleCommand::Build(args),
        } => {
            let report = bundle_build::build(&args, jiff::Timestamp::now())?;
            print!("{report}");
        }
        Command::Render(args) => {
            let preview = preview::preview(&args)?;
            print!("{}", preview.yaml);
            for note in &preview.notes {
                eprintln!("{note}");
            }
            if !preview.failures.is_empty() {
                anyhow::bail!(
                    "cluster {} cannot get everything it should:\n  {}",
                    args.cluster,
                    preview.failures.join("\n  ")
                );
            }
        }
    }
    Ok(())
}
