//! Command-line surface of `flotilla-agent`: one clap `Args`, one function per command.

use clap::{Parser, Subcommand};

use crate::verify::{self, Outcome, Report, VerifyArgs};

/// The Flotilla agent: applies signed desired state to its own cluster.
#[derive(Debug, Parser)]
#[command(name = "flotilla-agent", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version of this agent.
    Version,
    /// Verify a bundle file and make the cluster match it (the one-shot, air-gap mode);
    /// exit 0 only when everything applied (and, with --wait, became healthy).
    Apply(crate::oneshot::ApplyArgs),
    /// Verify a bundle file as the agent would before applying it; exit 0 only if it verifies.
    Verify(VerifyArgs),
}

/// Runs one command to completion. A refused bundle is an error (nonzero exit) whose
/// message says exactly why.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Version => {
            println!("flotilla-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // One thread: the work is waiting on the apiserver, and one allocator arena keeps
        // the agent's memory small.
        Command::Apply(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::oneshot::run(args)),
        Command::Verify(args) => match verify::verify(&args, jiff::Timestamp::now())? {
            Outcome::Verified(bundle) => {
                print!("{}", Report(&bundle));
                Ok(())
            }
            Outcome::Refused(reason) => {
                anyhow::bail!("{}: {reason}", args.source.bundle.display())
            }
        },
    }
}
