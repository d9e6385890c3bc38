//! `settle`: the settlement platform's one binary. `main` stays thin: parse the
//! command line, start telemetry, run the chosen command.

mod bench;
mod commands;
mod progress;
#[cfg(test)]
mod readme;
mod scratch;
mod settings;
mod telemetry;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    // The demo injects faults on purpose; their warnings would bury its report.
    let quiet = matches!(cli.command, commands::Command::Demo(_));
    telemetry::init(cli.verbose, quiet, cli.log_format);
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => commands::report_error(&error),
    }
}
