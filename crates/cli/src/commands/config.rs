//! `settle config check`: reads the configuration as `settle serve` would
//! (`--config FILE` or `SETTLE_CONFIG`, the `SETTLE_<SECTION>__<KEY>`
//! environment, the secrets' variables and files) and prints every problem,
//! one line each with its key path and code, exiting 2; or a short summary of
//! what the installation is, exiting 0. It never prints a secret.

use std::path::Path;

use clap::Subcommand;

use super::CliError;
use crate::settings::{Problems, Settings};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check the configuration `serve` would run with; every problem, or a summary.
    Check,
}

pub async fn run(command: ConfigCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check => check(file),
    }
}

fn check(file: Option<&Path>) -> anyhow::Result<()> {
    let problems = match Settings::check(file) {
        Ok(settings) => {
            println!("{}", summary(&settings));
            return Ok(());
        }
        Err(Problems(problems)) => problems,
    };
    for problem in &problems {
        println!("{problem}");
    }
    Err(CliError::new(
        "config_invalid",
        format!(
            "{} problem{} in the configuration",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ),
    )
    .into())
}

/// What the installation is, in a few lines; no secret appears.
fn summary(settings: &Settings) -> String {
    let file = settings
        .file
        .as_ref()
        .map_or("no file, environment only".to_owned(), |f| {
            f.display().to_string()
        });
    let mut lines = vec![format!("configuration ok ({file})")];
    lines.push(format!(
        "database: {}",
        store::redact(&settings.database.url)
    ));
    lines.push(match &settings.events.nats_url {
        Some(url) => format!("events: NATS {url} ({})", settings.events.nats_namespace),
        None => "events: embedded dispatchers".to_owned(),
    });
    let bank = &settings.bank;
    lines.push(format!(
        "bank: {} {}",
        bank.kind.map_or("none", |k| k.name()),
        bank.url.as_deref().unwrap_or("")
    ));
    if let Some(fees) = &settings.fees {
        lines.push(format!(
            "fees: institution {}, settlement {}, corporate {}",
            fees.institution_code, fees.settlement_account, fees.corporate_account
        ));
    }
    if let Some(payroll) = &settings.payroll {
        lines.push(format!("payroll: payout {}", payroll.payout_account));
    }
    let roles: Vec<String> = settings
        .serve
        .roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    lines.push(format!(
        "serve: {} on {}",
        roles.join(","),
        settings.api.listen
    ));
    lines.join("\n")
}
