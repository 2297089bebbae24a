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
    /// Run the agent in its cluster: pull the signed state from the hub (or, with
    /// --watch-dir, from bundle files), apply it, heal drift and report, until SIGTERM.
    #[command(
        long_about = "Run the agent in its cluster until SIGTERM or Ctrl-C.\n\n\
        It pulls the cluster's signed state from the hub over mutual TLS (registering first \
        with a one-time bootstrap token, and keeping its key and certificate in a Secret), \
        verifies it as `verify` does, applies it, heals drift and reports status. While the hub \
        is unreachable it keeps enforcing the last accepted state, from the cache directory \
        after a restart. Several replicas may run: a Lease elects the one that acts.\n\n\
        With --watch-dir instead of --hub (the air gap), it applies each bundle file that \
        appears in a directory and never calls a hub."
    )]
    Run(Box<crate::run::RunArgs>),
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
        Command::Run(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::run::run(*args)),
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
