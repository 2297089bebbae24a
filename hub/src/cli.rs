//! Command-line surface of `flotilla-hub`: one clap `Args`, one function per command.

use clap::{Parser, Subcommand};

use crate::bundle_build::{self, BuildArgs};
use crate::keygen::{self, KeygenArgs};

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
    /// Create a signing key pair (signing.key, mode 0600, and signing.pub); print its key id.
    Keygen(KeygenArgs),
    /// Work with bundle files (signed cluster states for the air gap).
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Sign a bundle file from directories of plain manifests (YAML or JSON).
    Build(BuildArgs),
}

/// Runs one command to completion.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Version => {
            println!("flotilla-hub {}", env!("CARGO_PKG_VERSION"));
        }
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
    }
    Ok(())
}
