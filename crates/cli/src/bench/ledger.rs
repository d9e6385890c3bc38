//! The ledger benchmark: the batching writer (group commit) against a naive
//! baseline — one transaction per transfer with row locks — on the same backend,
//! the same workload and the same number of concurrent clients.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ledger::{AccountFlags, Ledger, LedgerConfig, NewAccount, TransferRequest, TransferResult};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::progress;
use crate::scratch::ScratchDb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Debit and credit accounts drawn uniformly from all accounts.
    Uniform,
    /// Every transfer credits one hot account.
    Hot,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub backend_url: Option<String>,
    pub backend: &'static str,
    pub accounts: usize,
    pub transfers: usize,
    pub baseline_transfers: usize,
    pub clients: usize,
    pub submission_transfers: usize,
    pub batch_transfers_max: usize,
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub backend: &'static str,
    pub scenario: Scenario,
    pub accounts: usize,
    pub transfers: usize,
    pub baseline_transfers: usize,
    pub clients: usize,
    pub batch_transfers_max: usize,
    pub ours_tps: f64,
    pub baseline_tps: f64,
    pub ratio: f64,
}

pub async fn run(params: &Params, scenario: Scenario) -> anyhow::Result<Report> {
    let ours_tps = measure(params, scenario, params.transfers, false).await?;
    let baseline_tps = measure(params, scenario, params.baseline_transfers, true).await?;
    Ok(Report {
        bench: "ledger",
        backend: params.backend,
        scenario,
        accounts: params.accounts,
        transfers: params.transfers,
        baseline_transfers: params.baseline_transfers,
        clients: params.clients,
        batch_transfers_max: params.batch_transfers_max,
        ours_tps: round(ours_tps),
        baseline_tps: round(baseline_tps),
        ratio: round(ours_tps / baseline_tps.max(f64::MIN_POSITIVE)),
    })
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Applies `count` transfers from `clients` concurrent callers on a fresh database
/// and returns transfers per second. Checks the ledger's invariants afterwards.
/// `naive`: the one-transaction-per-transfer baseline instead of the writer.
pub async fn measure(
    params: &Params,
    scenario: Scenario,
    count: usize,
    naive: bool,
) -> anyhow::Result<f64> {
    let scratch = ScratchDb::create(params.backend_url.as_deref(), "bench").await?;
    let config = LedgerConfig {
        batch_transfers_max: params.batch_transfers_max,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(scratch.store.clone(), Arc::new(SystemClock), config).await?;
    let accounts: Vec<AccountId> = (0..params.accounts)
        .map(|i| AccountId::from_u128(0xacc0_0000_0000 + i as u128 + 1))
        .collect::<Result<_, _>>()?;
    for chunk in accounts.chunks(ledger.config().accounts_per_call_max) {
        let news: Vec<NewAccount> = chunk
            .iter()
            .map(|id| NewAccount::new(*id, 1, AccountFlags::default()))
            .collect::<Result<_, _>>()?;
        ledger.create_accounts(&news).await?;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(params.seed);
    let now = SystemClock.now();
    let mut requests = Vec::with_capacity(count);
    let mut expected_total = 0i64;
    for i in 0..count {
        let credit = match scenario {
            Scenario::Uniform => rng.random_range(0..accounts.len()),
            Scenario::Hot => 0,
        };
        let mut debit = rng.random_range(0..accounts.len());
        if debit == credit {
            debit = (debit + 1) % accounts.len();
        }
        let amount = rng.random_range(1..=100_000);
        expected_total += amount;
        let id = TransferId::from_u128((params.seed as u128) << 64 | (i as u128 + 1))?;
        requests.push(TransferRequest::single(
            id,
            accounts[debit],
            accounts[credit],
            Krw::new(amount),
            now,
        )?);
    }
    let label = if naive {
        "baseline (1 tx each)"
    } else {
        "batching writer"
    };
    let bar = progress::bar(count as u64, &format!("{} {label}", params.backend));
    let per_client = count.div_ceil(params.clients.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for share in requests.chunks(per_client.max(1)) {
        let share = share.to_vec();
        let ledger = ledger.clone();
        let bar = bar.clone();
        let submission = params.submission_transfers.max(1);
        tasks.push(tokio::spawn(async move {
            for chunk in share.chunks(submission) {
                let results = if naive {
                    ledger.submit_unbatched(chunk).await?
                } else {
                    ledger.submit(chunk.to_vec()).await?
                };
                if let Some(bad) = results.iter().find(|r| **r != TransferResult::Ok) {
                    anyhow::bail!("benchmark transfer refused: {}", bad.code());
                }
                bar.inc(chunk.len() as u64);
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await.context("a benchmark client panicked")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let totals = ledger.totals().await?;
    anyhow::ensure!(
        totals.all_hold(),
        "an invariant broke during the benchmark: {totals:?}"
    );
    anyhow::ensure!(
        totals.debits_posted == i128::from(expected_total),
        "the ledger moved {} but the workload sent {expected_total}",
        totals.debits_posted
    );
    drop(ledger);
    scratch.finish(false).await?;
    Ok(count as f64 / elapsed.max(1e-9))
}
