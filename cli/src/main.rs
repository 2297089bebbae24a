//! `flotilla`: the user's command line over the hub's human API. Parses the arguments, runs
//! one command, prints its report and exits with the documented code (`args::EXIT_CODES`).

mod args;
mod client;
mod commands;
mod config;
mod output;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = args::Args::parse();
    match commands::run(args) {
        Ok(report) => {
            let _ignored = std::io::stderr().write_all(report.stderr.as_bytes());
            match std::io::stdout().write_all(report.stdout.as_bytes()) {
                // A closed pipe (`flotilla app list | head`) is the reader's choice.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: write standard output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("error: {}", flotilla_shared::error_chain::one_line(&error));
            if let Some(hint) = error.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}
