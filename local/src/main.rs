//! `sparklake`: the SparkPost events pipeline on one machine. Parses the command line and
//! hands over to [`sparklake::commands`].

use std::process::ExitCode;

use clap::Parser;
use sparklake::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    sparklake::logging::init_logging(&cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sparklake: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(sparklake::commands::run(cli.command));
    match result {
        Ok(code) => code,
        // The reader of stdout went away (`sparklake status | head`): it has what it wanted.
        Err(e) if sparklake::stdout::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sparklake: {e:#}");
            ExitCode::FAILURE
        }
    }
}
