//! The `settle` command line: one clap enum, one module per command group.
//! Every command that touches a store takes `--database-url`; every one that
//! touches NATS takes `--nats-url`.

use clap::{Parser, Subcommand};

mod approvals;
mod audit;
mod bank_sim;
mod bench;
mod channel;
mod config;
mod demo;
mod demo_bank;
mod demo_channel;
mod demo_events;
mod demo_fees;
mod demo_payroll;
mod demo_report;
mod demo_serve;
mod events;
mod fees;
pub mod house_accounts;
mod import;
mod keys;
mod ledger;
mod payroll;
mod serve;
mod torture;

#[derive(Parser, Debug)]
#[command(
    name = "settle",
    version,
    about = "Settlement platform: ledger, channel, events, fees, payroll"
)]
pub struct Cli {
    /// Log progress at info level to stderr (RUST_LOG overrides).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// How log lines are written to stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SETTLE_LOG_FORMAT"
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// The installation's settle.toml (flags override it; `SETTLE_<SECTION>__<KEY>`
    /// variables override the file).
    #[arg(long, global = true, env = crate::settings::ENV_CONFIG)]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Operate the core ledger: accounts, transfers, lookups, entries.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Event backbone operations: dead letters.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Run the platform end to end on scratch data and check that the money adds up.
    Demo(demo::DemoArgs),
    /// Benchmarks: ours against a baseline, measured side by side.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the bank simulator as an HTTP server (open-banking API, legacy API, admin).
    BankSim(bank_sim::BankSimArgs),
    /// Channel side: reconcile unknown transfers.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Daily fee settlement: generate, record, pay, verify, withdraw, status, report.
    #[command(subcommand)]
    Fees(fees::FeesCommand),
    /// Salary settlement: poll virtual accounts, status, retry or roll back a deposit.
    #[command(subcommand)]
    Payroll(payroll::PayrollCommand),
    /// Run the HTTP API, the console and the background roles in one process.
    Serve(serve::ServeArgs),
    /// Load a lender's loans, accruals or payroll users from CSV or NDJSON.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// API keys: create one (shown once, stored hashed), list, revoke, rotate.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Maker-checker: list, approve or reject pending approvals through the API.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// The API's audit log: verify its hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Reliability suite: kill and restart a workload, fault matrix, deterministic simulation.
    Torture(torture::TortureArgs),
    /// The installation's configuration: check it.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// Where a command keeps its data: `--database-url`, else `DATABASE_URL`, else the
/// embedded SQLite file in the user's data directory.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// sqlite:PATH or postgres://… (default: settle.db in the user's data directory).
    #[arg(long, env = "SETTLE_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    pub fn url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => Ok(store::default_database_url()?),
        }
    }
}

/// The actions this installation puts behind a second ops key: the same
/// `--require-approval` / `SETTLE_REQUIRE_APPROVAL` that `settle serve` reads. A
/// command that would do one of them by itself refuses (`approval_required`) and
/// points at the API's approval flow instead of acting unchecked.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ApprovalArgs {
    /// Actions a second ops key must approve, as `settle serve` takes them
    /// (comma-separated, or all); this command refuses those it would do alone.
    #[arg(long, env = "SETTLE_REQUIRE_APPROVAL", default_value = "", value_parser = serve::parse_guarded)]
    pub require_approval: std::collections::BTreeSet<api::approvals::Guarded>,
}

impl ApprovalArgs {
    /// Refuses `action` when this installation requires an approval for it; `via`
    /// is the API request that asks for one.
    pub fn refuse_if_required(
        &self,
        action: api::approvals::Guarded,
        via: &str,
    ) -> Result<(), CliError> {
        if !self.require_approval.contains(&action) {
            return Ok(());
        }
        Err(CliError::new(
            "approval_required",
            format!(
                "this installation requires a second ops key's approval for {}: ask for it \
                 with {via} (it answers 202 with a pending approval), then another ops key \
                 approves it with `settle approvals approve ID` or the console; the action \
                 runs then, once, and is audited",
                action.name()
            ),
        ))
    }
}

/// `--bank-ca PATH`: a CA the bank client trusts besides the web PKI roots.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BankCaArgs {
    /// PEM file of a CA to trust for the bank's HTTPS certificate (e.g. the one
    /// `settle bank-sim --tls --tls-ca-out PATH` writes).
    #[arg(long, env = "SETTLE_BANK_CA")]
    pub bank_ca: Option<std::path::PathBuf>,
}

impl BankCaArgs {
    /// Reads the CA file, if one is given; a bad file is a clear error.
    pub fn load(&self) -> anyhow::Result<Option<bank::BankCa>> {
        match &self.bank_ca {
            Some(path) => bank::BankCa::load(path)
                .map(Some)
                .map_err(|e| CliError::new(e.code(), e.to_string()).into()),
            None => Ok(None),
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Ledger(command) => ledger::run(command).await,
        Command::Events(command) => events::run(command).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(command) => bench::run(command).await,
        Command::BankSim(args) => bank_sim::run(args).await,
        Command::Channel(command) => channel::run(command).await,
        Command::Fees(command) => fees::run(command, file).await,
        Command::Payroll(command) => payroll::run(command, file).await,
        Command::Serve(args) => serve::run(args, file).await,
        Command::Import(command) => import::run(command, file).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Approvals(command) => approvals::run(command).await,
        Command::Audit(command) => audit::run(command).await,
        Command::Torture(args) => torture::run(args).await,
        Command::Config(command) => config::run(command, file).await,
    }
}

/// A command's failure on stderr as JSON `{"code", "message"}` (plus the cause chain
/// for operators), with a non-zero exit.
pub fn report_error(error: &anyhow::Error) -> std::process::ExitCode {
    if let Some(refused) = error.downcast_ref::<self::ledger::RefusedError>() {
        eprintln!(
            "{}",
            serde_json::json!({"code": refused.0.code(), "message": error.to_string()})
        );
        return std::process::ExitCode::from(3);
    }
    let code = error
        .downcast_ref::<CliError>()
        .map(|e| e.code.as_str())
        .or_else(|| {
            error
                .chain()
                .find_map(|cause| cause.downcast_ref::<store::StoreError>())
                .map(store::StoreError::code)
        })
        .unwrap_or("internal_error");
    let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
    let body = serde_json::json!({
        "code": code,
        "message": error.to_string(),
        "causes": causes,
    });
    eprintln!("{body}");
    std::process::ExitCode::from(if code == "internal_error" { 1 } else { 2 })
}

/// An error a user caused, with a stable code; exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: String,
    pub message: String,
}

impl CliError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> CliError {
        CliError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Every `settle …` line of the README parses, in every documented spelling.
#[cfg(test)]
mod readme_lines {
    use clap::Parser;

    use super::Cli;
    use crate::readme::{command_lines, split_words, variants};

    const README: &str = include_str!("../../../../README.md");

    #[test]
    fn every_command_line_of_the_readme_parses() {
        let lines = command_lines(README);
        assert!(lines.len() > 40, "the README's lines were found: {lines:?}");
        let mut refused = Vec::new();
        for line in &lines {
            let spellings: Vec<Vec<String>> = variants(&line.words)
                .into_iter()
                .map(|words| with_exports(words, &line.env))
                .collect();
            for words in &spellings {
                let Err(error) = Cli::try_parse_from(words) else {
                    continue;
                };
                // A trailing bare `…` needs only one of its two forms to parse.
                let twin_parses = spellings.iter().any(|other| {
                    other != words
                        && other.len().abs_diff(words.len()) == 1
                        && other.starts_with(&words[..words.len().min(other.len())])
                        && Cli::try_parse_from(other).is_ok()
                });
                if !twin_parses {
                    refused.push(format!("README line {}: {words:?}: {error}", line.line));
                }
            }
        }
        assert!(refused.is_empty(), "{}", refused.join("\n"));
    }

    /// The README's `export`s as the flags they stand for: a variable an
    /// argument of the command reads (`env = …`) is given as that argument.
    fn with_exports(mut words: Vec<String>, env: &[(String, String)]) -> Vec<String> {
        use clap::CommandFactory;
        let mut command = Cli::command();
        for word in words.iter().skip(1) {
            match command.find_subcommand(word) {
                Some(sub) => command = sub.clone(),
                None => break,
            }
        }
        for (name, value) in env {
            let flag = command.get_arguments().find(|arg| {
                arg.get_env().is_some_and(|e| e == name.as_str()) && arg.get_long().is_some()
            });
            if let Some(long) = flag.and_then(|arg| arg.get_long()) {
                words.extend([format!("--{long}"), value.clone()]);
            }
        }
        words
    }

    #[test]
    fn a_readme_command_that_no_longer_parses_is_caught() {
        let broken =
            split_words("settle ledger lookup --transfers 0192f1a8-7b2c-7d3e-8f40-000000000001");
        assert!(Cli::try_parse_from(&broken).is_err());
    }
}
