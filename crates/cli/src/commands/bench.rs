//! `settle bench …`: each benchmark measures ours and a baseline in the same run
//! and prints one JSON line per scenario (`--json`) or a readable summary.

use clap::{Args, Subcommand, ValueEnum};

use super::CliError;
use super::events::BenchEventsArgs;
use crate::bench::ledger::{Params, Scenario};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The ledger's batching writer against one transaction per transfer.
    Ledger(LedgerBenchArgs),
    /// Throughput and lag of the event backbone.
    Events(BenchEventsArgs),
    /// History page reads: keyset pagination against OFFSET at depth.
    History(super::channel::HistoryBenchArgs),
    /// Fee payouts through the bank simulator over HTTP against the ideal.
    Payout(super::fees::PayoutBenchArgs),
    /// Balance polling of virtual accounts under a requests/s cap against the ideal.
    Polling(super::payroll::PollingBenchArgs),
    /// Every benchmark, with plots; rewrites docs/benchmarks.md (generated blocks
    /// only) and docs/plots/*.svg.
    All(AllBenchArgs),
}

#[derive(Args, Debug)]
pub struct AllBenchArgs {
    /// Small sizes: a smoke test of every benchmark and plot (seconds, not minutes).
    #[arg(long)]
    quick: bool,
    /// The docs directory holding benchmarks.md and plots/.
    #[arg(long, default_value = "docs")]
    docs_dir: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScenarioArg {
    Uniform,
    Hot,
    All,
}

#[derive(Args, Debug)]
pub struct LedgerBenchArgs {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendArg,
    /// PostgreSQL server for `--backend postgres` (a scratch schema is created and
    /// dropped); default DATABASE_URL or postgres://root@127.0.0.1:5432/test.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    #[arg(long, default_value_t = 100_000)]
    transfers: usize,
    /// Transfers for the naive baseline (default: as many as ours).
    #[arg(long)]
    baseline_transfers: Option<usize>,
    #[arg(long, value_enum, default_value = "all")]
    scenario: ScenarioArg,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Transfers per call from one caller.
    #[arg(long, default_value_t = 1)]
    submission_transfers: usize,
    /// Transfers per writer transaction.
    #[arg(long, default_value_t = 4_096)]
    batch_transfers_max: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// One JSON line per scenario.
    #[arg(long)]
    json: bool,
}

/// Limits that keep a benchmark run bounded.
const BENCH_TRANSFERS_MAX: usize = 10_000_000;
const BENCH_ACCOUNTS_MAX: usize = 1_000_000;
const BENCH_CLIENTS_MAX: usize = 4_096;

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Events(args) => super::events::run_bench(args).await,
        BenchCommand::Ledger(args) => ledger(args).await,
        BenchCommand::History(args) => super::channel::run_bench(args).await,
        BenchCommand::Payout(args) => super::fees::bench_payout(args).await,
        BenchCommand::Polling(args) => super::payroll::bench_polling(args).await,
        BenchCommand::All(args) => {
            let path = crate::bench::all::run(&crate::bench::all::AllParams {
                quick: args.quick,
                docs_dir: args.docs_dir,
            })
            .await?;
            println!(
                "{}",
                serde_json::json!({"written": path.display().to_string()})
            );
            Ok(())
        }
    }
}

async fn ledger(args: LedgerBenchArgs) -> anyhow::Result<()> {
    if !(2..=BENCH_ACCOUNTS_MAX).contains(&args.accounts)
        || !(1..=BENCH_TRANSFERS_MAX).contains(&args.transfers)
        || !(1..=BENCH_CLIENTS_MAX).contains(&args.clients)
        || args.batch_transfers_max == 0
    {
        return Err(CliError::new(
            "bench_invalid",
            format!(
                "need 2..={BENCH_ACCOUNTS_MAX} accounts, 1..={BENCH_TRANSFERS_MAX} transfers, \
                 1..={BENCH_CLIENTS_MAX} clients and a positive batch size"
            ),
        )
        .into());
    }
    let (backend, backend_url) = match args.backend {
        BackendArg::Sqlite => ("sqlite", None),
        BackendArg::Postgres => (
            "postgres",
            Some(
                args.database_url
                    .or_else(|| {
                        std::env::var("DATABASE_URL")
                            .ok()
                            .filter(|u| u.starts_with("postgres"))
                    })
                    .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_owned()),
            ),
        ),
    };
    let params = Params {
        backend_url,
        backend,
        accounts: args.accounts,
        transfers: args.transfers,
        baseline_transfers: args
            .baseline_transfers
            .unwrap_or(args.transfers)
            .clamp(1, BENCH_TRANSFERS_MAX),
        clients: args.clients,
        submission_transfers: args.submission_transfers,
        batch_transfers_max: args.batch_transfers_max,
        seed: args.seed,
    };
    let scenarios = match args.scenario {
        ScenarioArg::Uniform => vec![Scenario::Uniform],
        ScenarioArg::Hot => vec![Scenario::Hot],
        ScenarioArg::All => vec![Scenario::Uniform, Scenario::Hot],
    };
    for scenario in scenarios {
        let report = crate::bench::ledger::run(&params, scenario).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "ledger bench ({backend}, {scenario:?}, {} accounts, {} clients): ours {:.0} transfers/s, \
                 baseline {:.0} transfers/s, ratio {:.1}x",
                report.accounts, report.clients, report.ours_tps, report.baseline_tps, report.ratio
            );
        }
    }
    Ok(())
}
