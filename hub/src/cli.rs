//! Command-line surface of `flotilla-hub`: one clap `Args`, one function per command.

use clap::{Parser, Subcommand};

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
}

/// Runs one command to completion.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Version => {
            println!("flotilla-hub {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
