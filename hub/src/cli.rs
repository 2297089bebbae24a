//! Command-line surface of `flotilla-hub`: one clap `Args`, one function per command.

use clap::{Parser, Subcommand};

use crate::bundle_build::{self, BuildArgs};
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
