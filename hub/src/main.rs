//! `flotilla-hub`: parses arguments and hands over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    flotilla_hub::telemetry::init();
    let args = flotilla_hub::cli::parse();
    match flotilla_hub::cli::run(args) {
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
