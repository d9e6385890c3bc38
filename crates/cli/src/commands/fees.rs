//! `settle fees …`: the operator's handle on daily fee settlement — generate a
//! day's accruals, run Record / Pay / Verify / Withdraw by hand (or all four),
//! see per-day, per-stage status, and reconcile a day with the bank statement —
//! plus `settle bench payout`. Output is JSON on stdout; every rule is in `fees`.
//!
//! The accounts, the institution code and the bank come from the configuration
//! ([`crate::settings`]); the flags override it. With no bank configured every
//! command that needs one refuses (`bank_not_configured`); `bank.kind =
//! "simulator"` is an in-process simulator on its own SQLite file next to the
//! database, `"bank-sim"` or `"http"` the KFTC open-banking connector at
//! `bank.url` (`settle bank-sim` speaks it too).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bank::sim::{AdminClient, Profile, SimConfig, Simulator};
use bank::{BankApi, HttpBank, TransportConfig};
use clap::{Args, Subcommand};
use fees::report::{HttpStatement, Statement};
use fees::workload::BankAdmin;
use fees::{BusinessDay, Fees, Trigger};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, SystemClock};

use super::{ApprovalArgs, BankCaArgs, CliError, DatabaseArgs};
use crate::progress;
use crate::settings::{BankKind, Overrides, Settings};

#[derive(Subcommand, Debug)]
pub enum FeesCommand {
    /// Generate a realistic day of accruals and fund the loans' bank accounts.
    Generate(GenerateArgs),
    /// Collect a closed day's accruals into settlement items.
    Record(DayArgs),
    /// Pay a recorded day's items to the settlement account, in chunks.
    Pay(DayArgs),
    /// Settle unknown outcomes and confirm the day.
    Verify(DayArgs),
    /// Move a verified day's total to the corporate account.
    Withdraw(DayArgs),
    /// Record, Pay, Verify and Withdraw a day, once each.
    Run(DayArgs),
    /// Per-day, per-stage status (every day, or one with its latest runs).
    Status(StatusArgs),
    /// Ledger totals against the bank statement per fee kind; non-zero exit on mismatch.
    Report(DayArgs),
}

/// Each flag overrides its key of the configuration.
#[derive(Args, Debug)]
pub struct BankArgs {
    /// The bank's URL (`bank.kind` says which bank it is). Key `bank.url`.
    #[arg(long)]
    bank_url: Option<String>,
    /// Bank calls in flight at once. Key `bank.calls_in_flight_max` (default 50).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Bank calls started per second (default: no limit beyond the concurrency).
    /// Key `bank.calls_per_s_max`.
    #[arg(long)]
    requests_per_s_max: Option<u32>,
    /// A module's lock lease on SQLite (default 10 minutes): how long a crashed
    /// run's lock blocks the next one. Key `fees.lock_lease_ms`.
    #[arg(long)]
    lock_lease_ms: Option<i64>,
    /// How long after an outcome became unknown a "not found" from the result
    /// inquiry proves failure (default: the connector's own — 15 s over HTTP, the
    /// latency bound of the in-process simulator). Zero only when no request of a
    /// stopped run can still reach the bank. Key `bank.not_found_grace_ms`.
    #[arg(long)]
    not_found_grace_ms: Option<i64>,
    #[command(flatten)]
    bank_ca: BankCaArgs,
}

#[derive(Args, Debug)]
pub struct DayArgs {
    /// The business day, YYYY-MM-DD (Asia/Seoul).
    #[arg(long)]
    day: String,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    bank: BankArgs,
    #[command(flatten)]
    approval: ApprovalArgs,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long)]
    day: String,
    #[arg(long, default_value_t = 100)]
    loans: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    bank: BankArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    day: Option<String>,
    /// Runs shown for one day.
    #[arg(long, default_value_t = 20)]
    runs: i64,
    #[command(flatten)]
    db: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct PayoutBenchArgs {
    /// Items to pay (one per loan).
    #[arg(long, default_value_t = 2_000)]
    items: usize,
    /// The simulated bank's latency per call.
    #[arg(long, default_value_t = 250)]
    latency_ms: u64,
    /// Bank calls in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// One JSON line.
    #[arg(long)]
    json: bool,
}

/// Everything a fees command works with.
struct Setup {
    fees: Fees,
    statement: Box<dyn Statement>,
    admin: Box<dyn BankAdmin>,
}

fn parse_day(text: &str) -> anyhow::Result<BusinessDay> {
    BusinessDay::parse(text).map_err(|e| CliError::new("bad_business_day", e.to_string()).into())
}

/// The in-process simulator's database: beside a SQLite database, or in the data
/// directory for PostgreSQL.
fn simulator_url(database_url: &str) -> anyhow::Result<String> {
    if let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    {
        let path = std::path::Path::new(path);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("settle");
        let beside = path.with_file_name(format!("{stem}-banksim.db"));
        return Ok(format!("sqlite://{}", beside.display()));
    }
    Ok(store::default_database_url()?.replace("settle.db", "fees-banksim.db"))
}

/// The configuration with this command's flags over it.
fn settings(
    db: &DatabaseArgs,
    bank: Option<&BankArgs>,
    file: Option<&Path>,
) -> anyhow::Result<Settings> {
    let mut overrides = Overrides::default();
    overrides.set("database.url", db.database_url.clone());
    if let Some(bank) = bank {
        overrides
            .set("bank.url", bank.bank_url.clone())
            .set("bank.ca_file", bank.bank_ca.bank_ca.clone())
            .set("bank.calls_in_flight_max", bank.concurrency)
            .set("bank.calls_per_s_max", bank.requests_per_s_max)
            .set("bank.not_found_grace_ms", bank.not_found_grace_ms)
            .set("fees.lock_lease_ms", bank.lock_lease_ms);
    }
    Ok(Settings::load(file, &overrides)?)
}

async fn setup(
    db: &DatabaseArgs,
    bank_args: &BankArgs,
    file: Option<&Path>,
) -> anyhow::Result<Setup> {
    let settings = settings(db, Some(bank_args), file)?;
    let kind = settings.bank_kind()?;
    let config = settings.fees_config(settings.ids()?)?;
    let url = &settings.database.url;
    let store = store::Store::connect(url)
        .await
        .with_context(|| format!("opening {}", store::redact(url)))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(store, clock.clone(), LedgerConfig::default()).await?;
    let (bank, statement, admin): (Arc<dyn BankApi>, Box<dyn Statement>, Box<dyn BankAdmin>) =
        match kind {
            BankKind::BankSim | BankKind::Http => {
                let mut transport = settings.transport_config()?;
                transport.concurrent_max = Some(config.bank_calls_in_flight_max);
                transport.requests_per_s_max = config.bank_calls_per_s_max;
                transport.idle_connections_per_host_max = config.bank_calls_in_flight_max;
                let bank_url = transport.base_url.clone();
                let ca = settings.bank.ca.as_ref();
                (
                    bank::providers::next::bank_api::kftc_bank(bank::Transport::new(transport)?),
                    Box::new(HttpStatement::with_ca(&bank_url, ca)?),
                    Box::new(AdminClient::with_ca(&bank_url, ca)?),
                )
            }
            BankKind::Simulator => {
                let sim_url = simulator_url(url)?;
                let sim_store = store::Store::connect(&sim_url)
                    .await
                    .with_context(|| format!("opening the simulator at {sim_url}"))?;
                let sim = Simulator::open(
                    sim_store,
                    SimConfig::for_profile(Profile::Test, 42),
                    clock.clone(),
                )
                .await?;
                (Arc::new(sim.clone()), Box::new(sim.clone()), Box::new(sim))
            }
        };
    let fees = Fees::open(ledger, bank, clock, config).await?;
    Ok(Setup {
        fees,
        statement,
        admin,
    })
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(command: FeesCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        FeesCommand::Generate(args) => generate(args, file).await,
        FeesCommand::Record(args) => one(args, fees::Module::Record, file).await,
        FeesCommand::Pay(args) => one(args, fees::Module::Pay, file).await,
        FeesCommand::Verify(args) => one(args, fees::Module::Verify, file).await,
        FeesCommand::Withdraw(args) => one(args, fees::Module::Withdraw, file).await,
        FeesCommand::Run(args) => all(args, file).await,
        FeesCommand::Status(args) => status(args, file).await,
        FeesCommand::Report(args) => report(args, file).await,
    }
}

async fn generate(args: GenerateArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let day = parse_day(&args.day)?;
    let setup = setup(&args.db, &args.bank, file).await?;
    let workload = fees::workload::generate(day, args.loans, args.seed)?;
    setup.fees.register_loans(&workload.loans).await?;
    let summary = setup.fees.accrue(&workload.accruals).await?;
    fees::workload::provision_bank(setup.admin.as_ref(), setup.fees.config(), &workload).await?;
    print(&serde_json::json!({
        "day": day,
        "loans": workload.loans.len(),
        "accruals": workload.accruals.len(),
        "total_krw": workload.total()?,
        "applied": summary.applied,
        "already_applied": summary.already_applied,
        "refused": summary.refused,
    }))
}

async fn run_module(
    setup: &Setup,
    day: BusinessDay,
    module: fees::Module,
) -> anyhow::Result<fees::RunReport> {
    let fees = &setup.fees;
    let trigger = Trigger::Operator;
    Ok(match module {
        fees::Module::Record => fees.record(day, trigger).await?,
        fees::Module::Pay => {
            let bar = progress::bar(fees.chunks_to_send(day).await?, "paying chunks");
            let report = fees
                .pay_with_progress(day, trigger, &|done| bar.set_position(done))
                .await;
            bar.finish_and_clear();
            report?
        }
        fees::Module::Verify => fees.verify(day, trigger).await?,
        fees::Module::Withdraw => fees.withdraw(day, trigger).await?,
    })
}

/// Withdraw moves a day's total out: under maker-checker it runs only through an
/// approved API request.
fn check_withdraw(args: &DayArgs) -> Result<(), CliError> {
    args.approval.refuse_if_required(
        api::approvals::Guarded::FeesWithdraw,
        &format!("POST /v1/fees/days/{}/withdraw", args.day),
    )
}

async fn one(args: DayArgs, module: fees::Module, file: Option<&Path>) -> anyhow::Result<()> {
    if module == fees::Module::Withdraw {
        check_withdraw(&args)?;
    }
    let day = parse_day(&args.day)?;
    let setup = setup(&args.db, &args.bank, file).await?;
    print(&run_module(&setup, day, module).await?)
}

async fn all(args: DayArgs, file: Option<&Path>) -> anyhow::Result<()> {
    check_withdraw(&args)?;
    let day = parse_day(&args.day)?;
    let setup = setup(&args.db, &args.bank, file).await?;
    let mut reports = Vec::new();
    for module in fees::Module::ALL {
        reports.push(run_module(&setup, day, module).await?);
    }
    print(&reports)
}

async fn status(args: StatusArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let settings = settings(&args.db, None, file)?;
    let config = settings.fees_config(settings.ids()?)?;
    let url = &settings.database.url;
    let store = store::Store::connect(url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(store, clock.clone(), LedgerConfig::default()).await?;
    // Status reads fees' own tables only; a bank that is never called is enough.
    let bank = Arc::new(HttpBank::new(TransportConfig::new("http://127.0.0.1:9"))?);
    let fees = Fees::open(ledger, bank, clock, config).await?;
    match args.day {
        Some(day) => {
            let day = parse_day(&day)?;
            let status = fees.status(day).await?;
            let runs = fees.runs(day, args.runs).await?;
            print(&serde_json::json!({"day": day, "status": status, "runs": runs}))
        }
        None => {
            let mut days = Vec::new();
            for day in fees.days(true).await? {
                days.push(fees.status(day).await?);
            }
            let unrecorded = fees.unrecorded_days().await?;
            print(&serde_json::json!({"days": days, "unrecorded": unrecorded}))
        }
    }
}

async fn report(args: DayArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let day = parse_day(&args.day)?;
    let setup = setup(&args.db, &args.bank, file).await?;
    let report = setup.fees.report(day, setup.statement.as_ref()).await?;
    print(&report)?;
    if !report.books_agree {
        return Err(CliError::new(
            "report_mismatch",
            format!("the ledger and the bank statement disagree for {day}"),
        )
        .into());
    }
    if !report.unpaid.is_empty() {
        let named: Vec<String> = report
            .unpaid
            .iter()
            .take(20)
            .map(|item| {
                format!(
                    "loan {} {} unpaid {} ({})",
                    item.loan_id,
                    item.kind.name(),
                    item.unpaid_krw,
                    item.reason
                )
            })
            .collect();
        return Err(CliError::new(
            "items_unpaid",
            format!(
                "{} items of {day} are not paid: {}{}",
                report.unpaid.len(),
                named.join("; "),
                if report.unpaid.len() > named.len() {
                    "; …"
                } else {
                    ""
                }
            ),
        )
        .into());
    }
    Ok(())
}

pub async fn bench_payout(args: PayoutBenchArgs) -> anyhow::Result<()> {
    let params = fees::bench::PayoutParams {
        items: args.items,
        latency_ms: args.latency_ms,
        concurrency: args.concurrency,
        seed: args.seed,
    };
    let bar = progress::bar(0, "payout chunks");
    let report = fees::bench::payout(&params, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "payout bench: {} items, {} calls at {} ms with {} in flight: {:.2} s (ideal {:.2} s, \
             ratio {:.3}); one at a time would take {:.0} s",
            report.items,
            report.calls,
            report.latency_ms,
            report.concurrency,
            report.wall_s,
            report.ideal_s,
            report.ratio,
            report.sequential_estimate_s
        );
    }
    Ok(())
}
