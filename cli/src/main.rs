//! `flotilla`: the user's command line for the Flotilla hub.

use clap::{Parser, Subcommand};

/// Flotilla: GitOps continuous delivery for fleets of Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this command line.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Version => println!("flotilla {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
