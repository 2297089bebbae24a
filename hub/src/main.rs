//! `flotilla-hub`: parses arguments and hands over to the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    flotilla_hub::telemetry::init();
    let args = flotilla_hub::cli::Args::parse();
    flotilla_hub::cli::run(args)
}
