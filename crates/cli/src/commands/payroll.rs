//! `settle payroll …`: operator access to the salary pipeline — one poll round with a
//! progress bar, the workers (poller on a schedule plus the stage and alert
//! consumers, until Ctrl-C/SIGTERM or until idle), the status (counts per state,
//! stuck deposits, alerts), one deposit in detail (why it is where it is, who
//! holds it, what was done to it), and the operator's ways out of any state:
//! retry, rollback, resolve (with a reason), each recorded with who did it.
//! Enrolling a single user. Output is one JSON document on stdout. The work is in the `payroll` crate; this module only parses arguments
//! and wires stores, the bank connection and the ledger, from the configuration
//! ([`crate::settings`]) with the flags over it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::{AccountNumber, HolderName, Transport};
use clap::{Args, Subcommand};
use money::{Clock, SystemClock};
use payroll::{Payroll, PayrollConfig, Workers, WorkersConfig};

use super::{CliError, DatabaseArgs};
use crate::progress;
use crate::settings::{Overrides, Settings};

#[derive(Subcommand, Debug)]
pub enum PayrollCommand {
    /// Poll every virtual account's balance once (throttled) and detect deposits.
    Poll(PollArgs),
    /// Run the workers: a poll round on a schedule and every stage and alert
    /// consumer, until Ctrl-C (or, with --until-idle, until nothing is left).
    Work(WorkArgs),
    /// Deposits per state, stuck deposits and alerts.
    Status(StatusArgs),
    /// One deposit: why it is where it is, its claims, alerts and operator actions.
    Show(DepositArgs),
    /// Run the stage a deposit stands or waits at again (after fixing the cause);
    /// replays its dead-lettered event if there is one.
    Retry(ActionArgs),
    /// Roll a deposit back (any state before its payout reached the bank): the
    /// decision commits, then its ledger transfers are compensated; never settled again.
    Rollback(ActionArgs),
    /// Mark a deposit settled by hand (terminal), with the reason why.
    Resolve(ActionArgs),
    /// Enrol one user: issue their virtual account and open their wallet.
    Enrol(EnrolArgs),
}

#[derive(Args, Debug)]
pub struct Connection {
    /// The main database, as `serve` takes it: the ledger's.
    #[command(flatten)]
    db: DatabaseArgs,
    /// Payroll's database (its tables, the outbox and the provider routing table),
    /// as `serve` derives it: the main one on PostgreSQL, `<name>-payroll.db`
    /// beside a SQLite file (payroll calls the ledger inside its own
    /// transactions, and a SQLite file has one writer).
    #[arg(long, env = "SETTLE_PAYROLL_DATABASE_URL")]
    payroll_database_url: Option<String>,
    /// The bank's URL (`bank.kind` says which bank it is). Key `bank.url`.
    #[arg(long, env = "SETTLE_BANK_URL")]
    bank_url: Option<String>,
    #[command(flatten)]
    bank_ca: super::BankCaArgs,
    /// settle's operating account that pays users out, and its holder. No
    /// default: it must be named, and must not be a fee account. Keys
    /// `payroll.payout_account`, `payroll.payout_holder`. (The alert webhook is
    /// a secret: `SETTLE_PAYROLL_WEBHOOK_URL`, never a flag.)
    #[arg(long, env = "SETTLE_PAYOUT_ACCOUNT")]
    payout_account: Option<String>,
    #[arg(long, env = "SETTLE_PAYOUT_HOLDER")]
    payout_holder: Option<String>,
}

impl Connection {
    /// The configuration with these flags over it.
    fn settings(&self, file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut overrides = Overrides::default();
        overrides
            .set("database.url", self.db.database_url.clone())
            .set("database.payroll_url", self.payroll_database_url.clone())
            .set("bank.url", self.bank_url.clone())
            .set("bank.ca_file", self.bank_ca.bank_ca.clone())
            .set("payroll.payout_account", self.payout_account.clone())
            .set("payroll.payout_holder", self.payout_holder.clone());
        Ok(Settings::load(file, &overrides)?)
    }
}

#[derive(Args, Debug)]
pub struct PollArgs {
    #[command(flatten)]
    connection: Connection,
    /// Balance requests started per second, at most.
    #[arg(long, default_value_t = 200)]
    rps: u32,
    /// Balance requests in flight, at most.
    #[arg(long, default_value_t = 16)]
    concurrent: usize,
}

#[derive(Args, Debug)]
pub struct WorkArgs {
    #[command(flatten)]
    connection: Connection,
    /// Run one poll round, then the stages until every deposit is completed,
    /// rolled back or waiting for an operator, and exit.
    #[arg(long)]
    until_idle: bool,
    /// Time from the start of one poll round to the next (0: never poll).
    #[arg(long, default_value_t = 60_000)]
    poll_every_ms: u64,
    /// Balance requests started per second, at most.
    #[arg(long, default_value_t = 200)]
    rps: u32,
    /// Balance requests in flight, at most.
    #[arg(long, default_value_t = 16)]
    concurrent: usize,
    /// How long this process's claim on a (deposit, stage) holds unrenewed; a
    /// process that dies holding one delays that stage this long.
    #[arg(long, default_value_t = 30_000)]
    claim_lease_ms: i64,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    connection: Connection,
    /// A deposit untouched this long (and not finished) counts as stuck.
    #[arg(long, default_value_t = 300_000)]
    stuck_after_ms: i64,
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    approval: super::ApprovalArgs,
    /// The bank's deposit id, e.g. D000000000042.
    deposit: String,
    /// Why (required for resolve; recorded with the action).
    #[arg(long)]
    reason: Option<String>,
    /// Who acts (recorded with the action); default: $USER.
    #[arg(long, env = "USER", default_value = "cli")]
    by: String,
}

#[derive(Args, Debug)]
pub struct EnrolArgs {
    #[command(flatten)]
    connection: Connection,
    /// The user's id (UUID).
    #[arg(long)]
    user: String,
    /// The user's name as their virtual account shows it.
    #[arg(long)]
    holder: String,
    /// The user's own bank account that payouts go to, and its holder (default:
    /// the user's name).
    #[arg(long)]
    payout_to: String,
    #[arg(long)]
    payout_to_holder: Option<String>,
    /// Salary advance outstanding, in won.
    #[arg(long, default_value_t = 0)]
    advance_krw: i64,
    /// At least this share of what is left after repayment is held (0..=100).
    #[arg(long, default_value_t = 0)]
    suspend_percent: u8,
}

#[derive(Args, Debug)]
pub struct DepositArgs {
    #[command(flatten)]
    connection: Connection,
    /// The bank's deposit id, e.g. D000000000042.
    deposit: String,
}

pub async fn run(command: PayrollCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        PayrollCommand::Poll(args) => poll(args, file).await,
        PayrollCommand::Work(args) => work(args, file).await,
        PayrollCommand::Status(args) => {
            let payroll = open(&args.connection, file, |_| {}).await?;
            let status = payroll.status(args.stuck_after_ms).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
        PayrollCommand::Show(args) => {
            let payroll = open(&args.connection, file, |_| {}).await?;
            let detail = payroll.detail(&args.deposit).await.map_err(refused)?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
            Ok(())
        }
        PayrollCommand::Retry(args) => {
            args.approval.refuse_if_required(
                api::approvals::Guarded::PayrollRetry,
                &format!("POST /v1/payroll/deposits/{}/retry", args.deposit),
            )?;
            let payroll = open(&args.connection, file, |_| {}).await?;
            let view = payroll.retry_as(&args.deposit, &args.by).await;
            println!("{}", serde_json::to_string_pretty(&view.map_err(refused)?)?);
            Ok(())
        }
        PayrollCommand::Rollback(args) => {
            args.approval.refuse_if_required(
                api::approvals::Guarded::PayrollRollback,
                &format!("POST /v1/payroll/deposits/{}/rollback", args.deposit),
            )?;
            let payroll = open(&args.connection, file, |_| {}).await?;
            let reason = args.reason.as_deref();
            let view = payroll.rollback_as(&args.deposit, &args.by, reason).await;
            println!("{}", serde_json::to_string_pretty(&view.map_err(refused)?)?);
            Ok(())
        }
        PayrollCommand::Resolve(args) => {
            let payroll = open(&args.connection, file, |_| {}).await?;
            let reason = args.reason.as_deref().unwrap_or("");
            let view = payroll.resolve(&args.deposit, &args.by, reason).await;
            println!("{}", serde_json::to_string_pretty(&view.map_err(refused)?)?);
            Ok(())
        }
        PayrollCommand::Enrol(args) => enrol(args, file).await,
    }
}

/// Operator mistakes (unknown deposit, wrong state, busy, bad input) are exit 2
/// with their code.
fn refused(error: payroll::PayrollError) -> anyhow::Error {
    use payroll::PayrollError as E;
    match error {
        E::UnknownDeposit(_)
        | E::UnknownUser(_)
        | E::NotWaiting { .. }
        | E::IllegalTransition { .. }
        | E::Busy { .. }
        | E::InvalidInput(_)
        | E::InvalidConfig(_) => CliError::new(error.code(), error.to_string()).into(),
        other => other.into(),
    }
}

async fn enrol(args: EnrolArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let payroll = open(&args.connection, file, |_| {}).await?;
    let bad = |what: &'static str| {
        move |e: bank::BankError| CliError::new("invalid_input", format!("{what}: {e}"))
    };
    let user_id = bank::UserId::parse(&args.user)
        .map_err(|e| CliError::new("invalid_input", format!("--user: {e}")))?;
    let holder_name = HolderName::new(&args.holder).map_err(bad("--holder"))?;
    let payout_holder = match &args.payout_to_holder {
        Some(name) => HolderName::new(name).map_err(bad("--payout-to-holder"))?,
        None => holder_name.clone(),
    };
    let user = payroll::NewUser {
        user_id,
        holder_name,
        payout_account: AccountNumber::new(&args.payout_to).map_err(bad("--payout-to"))?,
        payout_holder,
        advance_krw: money::Krw::new(args.advance_krw),
        suspend_percent: args.suspend_percent,
    };
    let account = payroll.enrol(&user).await.map_err(refused)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "user": user.user_id.to_string(),
            "virtual_account": account.to_string(),
        }))?
    );
    Ok(())
}

async fn poll(args: PollArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let (rps, concurrent) = (args.rps, args.concurrent);
    let payroll = open(&args.connection, file, |config| {
        config.poll_requests_per_s_max = rps;
        config.poll_concurrent_max = concurrent;
    })
    .await?;
    let users = payroll.status(i64::MAX).await?.users;
    let poller = payroll::poller::Poller::new(payroll)?;
    let bar = progress::bar(u64::try_from(users).unwrap_or(0), "virtual accounts");
    let report = poller
        .run_round_observed(&|polled| bar.set_position(polled))
        .await;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}

async fn work(args: WorkArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let (rps, concurrent, lease_ms) = (args.rps, args.concurrent, args.claim_lease_ms);
    let payroll = open(&args.connection, file, |config| {
        config.poll_requests_per_s_max = rps;
        config.poll_concurrent_max = concurrent;
        config.claim_lease_ms = lease_ms;
    })
    .await?;
    let mut config = WorkersConfig::for_backend(payroll.store().backend());
    config.poll_every_ms = (args.poll_every_ms > 0).then_some(args.poll_every_ms);
    let mut workers = Workers::new(payroll.clone(), config).await?;
    if args.until_idle {
        let round = workers.poll_round().await?;
        workers.run_until_idle().await?;
        let status = payroll.status(i64::MAX).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "poll": round,
                "per_state": status.per_state,
                "alerts": status.alerts.len(),
            }))?
        );
        return Ok(());
    }
    tracing::info!("payroll workers running; Ctrl-C or SIGTERM stops them");
    workers.run(stop_signal()).await?;
    Ok(())
}

/// Ctrl-C or SIGTERM, whichever comes first (SIGTERM only where there is one).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn open(
    connection: &Connection,
    file: Option<&Path>,
    configure: impl FnOnce(&mut PayrollConfig),
) -> anyhow::Result<Payroll> {
    let settings = connection.settings(file)?;
    let accounts = settings.payroll()?;
    let ledger_url = &settings.database.url;
    let url = settings
        .database
        .payroll_url
        .clone()
        .unwrap_or_else(|| super::serve::beside(ledger_url, "payroll"));
    let store = store::Store::connect(&url)
        .await
        .with_context(|| format!("opening payroll's database {}", store::redact(&url)))?;
    let ledger_store = store::Store::connect(ledger_url).await.with_context(|| {
        format!(
            "opening the ledger's database {}",
            store::redact(ledger_url)
        )
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = ledger::Ledger::open(ledger_store, clock.clone(), ledger::LedgerConfig::default())
        .await
        .context("opening the ledger")?;
    let mut transport = settings.transport_config()?;
    // The poller throttles itself; the transport must not throttle below it.
    transport.requests_per_s_max = None;
    let transport = Transport::new(transport)?;
    let routing = RoutingTable::open(store.clone(), clock.clone()).await?;
    let facade = Facade::connect(routing, &transport);
    let mut config = PayrollConfig::new(
        accounts.payout_account.clone(),
        accounts.payout_holder.clone(),
        settings.ids()?,
    );
    config.webhook_url = settings.webhook_url()?.map(|url| url.expose().to_owned());
    configure(&mut config);
    Payroll::open(store, ledger, facade, clock, config)
        .await
        .context("opening payroll")
}

#[derive(Args, Debug)]
pub struct PollingBenchArgs {
    /// Virtual accounts to poll.
    #[arg(long, default_value_t = 4_000)]
    accounts: usize,
    /// The requests/s cap (the simulator enforces the same cap and counts refusals).
    #[arg(long, default_value_t = 200)]
    rps: u32,
    /// Balance requests in flight, at most.
    #[arg(long, default_value_t = 16)]
    concurrent: usize,
    /// One JSON line.
    #[arg(long)]
    json: bool,
}

pub async fn bench_polling(args: PollingBenchArgs) -> anyhow::Result<()> {
    let report = payroll::bench::polling(&payroll::bench::PollingParams {
        accounts: args.accounts,
        requests_per_s: args.rps,
        concurrent_max: args.concurrent,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "polling bench: {} accounts at {} req/s: {:.2} s (ideal {:.2} s, ratio {:.3}); \
             {} requests, {} refused for rate, {} in flight at most",
            report.accounts,
            report.rps,
            report.wall_s,
            report.ideal_s,
            report.ratio,
            report.bank_requests,
            report.rejected_rate_total,
            report.concurrent_max_observed
        );
    }
    Ok(())
}
