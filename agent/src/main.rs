//! `flotilla-agent`: parses arguments and hands over to the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    flotilla_agent::telemetry::init();
    let args = flotilla_agent::cli::Args::parse();
    flotilla_agent::cli::run(args)
}
