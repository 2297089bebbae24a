//! `flotilla-hub`: parses arguments and hands over to the library.

fn main() -> anyhow::Result<()> {
    flotilla_hub::telemetry::init();
    let args = flotilla_hub::cli::parse();
    flotilla_hub::cli::run(args)
}
