//! `flotilla-agent`: parses arguments and hands over to the library.

use clap::Parser;

use std::process::ExitCode;

fn main() -> ExitCode {
    flotilla_agent::telemetry::init();
    let args = flotilla_agent::cli::Args::parse();
    match flotilla_agent::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "error: {}",
                flotilla_shared::error_chain::one_line(error.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
