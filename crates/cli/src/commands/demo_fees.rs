//! The demo's fee-settlement phase: one business day of accruals on `loans`
//! loans, settled by the four modules — first by concurrent callers in shuffled
//! order, then by the scheduler until the day is withdrawn — through an
//! in-process bank simulator, and reconciled against the simulator's statement.

use std::sync::Arc;
use std::time::Instant;

use bank::sim::{Profile, SimConfig, Simulator};
use fees::{BusinessDay, DayState, Fees, Module, Outcome, Trigger};
use ledger::Ledger;
use money::{Clock, SystemClock};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::progress;
use crate::scratch::ScratchDb;

/// Scheduler rounds the demo allows before it calls the day stuck.
const SCHEDULER_ROUNDS_MAX: usize = 50;
/// Callers per module in the concurrent round.
const CONCURRENT_CALLERS: usize = 3;

/// What the phase proved, as named checks.
pub struct FeesOutcome {
    pub checks: Vec<(String, bool)>,
}

pub async fn run(ledger: &Ledger, loans: usize, seed: u64) -> anyhow::Result<FeesOutcome> {
    let phase = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bank_db = ScratchDb::create(None, "demo-banksim").await?;
    let simulator = Simulator::open(
        bank_db.store.clone(),
        SimConfig::for_profile(Profile::Test, seed),
        clock.clone(),
    )
    .await?;
    let fees = Fees::open(
        ledger.clone(),
        Arc::new(simulator.clone()),
        clock.clone(),
        fees::bench::bench_config()?,
    )
    .await?;
    let day = BusinessDay::from_kst(clock.now()).previous();
    let workload = fees::workload::generate(day, loans, seed)?;
    fees.register_loans(&workload.loans).await?;
    let accrued = fees.accrue(&workload.accruals).await?;
    fees::workload::provision_bank(&simulator, fees.config(), &workload).await?;
    let total = workload.total()?;
    println!(
        "  fees for {day}: {} accruals on {loans} loans, {total} in all ({} applied)",
        workload.accruals.len(),
        accrued.applied
    );

    // Every module called by several callers at once, in shuffled order: exactly
    // one caller may work; the others must answer busy, already_done or not_ready.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut calls: Vec<Module> = Module::ALL
        .iter()
        .flat_map(|m| std::iter::repeat_n(*m, CONCURRENT_CALLERS))
        .collect();
    calls.shuffle(&mut rng);
    let mut tasks = Vec::new();
    for module in calls {
        let fees = fees.clone();
        tasks.push(tokio::spawn(async move {
            match module {
                Module::Record => fees.record(day, Trigger::Operator).await,
                Module::Pay => fees.pay(day, Trigger::Operator).await,
                Module::Verify => fees.verify(day, Trigger::Operator).await,
                Module::Withdraw => fees.withdraw(day, Trigger::Operator).await,
            }
        }));
    }
    let mut busy = 0;
    for task in tasks {
        if task.await??.outcome == Outcome::Busy {
            busy += 1;
        }
    }

    // The scheduler finishes the day, in its own order, as often as it must.
    let scheduler =
        fees::scheduler::Scheduler::new(fees.clone(), std::time::Duration::from_secs(1));
    let bar = progress::bar(SCHEDULER_ROUNDS_MAX as u64, "fee scheduler rounds");
    let mut rounds = 0;
    let mut state = fees.status(day).await?.map(|s| s.state);
    while state != Some(DayState::Withdrawn) && rounds < SCHEDULER_ROUNDS_MAX {
        scheduler.run_once().await?;
        rounds += 1;
        bar.inc(1);
        state = fees.status(day).await?.map(|s| s.state);
    }
    bar.finish_and_clear();
    let status = fees.status(day).await?;
    let report = fees.report(day, &simulator).await?;
    let chunks: i64 = status
        .as_ref()
        .map(|s| s.chunks.values().sum())
        .unwrap_or(0);
    println!(
        "  fees settled in {:.2}s: {chunks} payout chunks, {busy} concurrent callers told busy, \
         {rounds} scheduler rounds, paid {} / withdrawn {}",
        phase.elapsed().as_secs_f64(),
        report.ledger_paid_krw,
        report.ledger_withdrawn_krw
    );
    let checks = vec![
        (
            "the fee day is paid, verified and withdrawn once".to_owned(),
            state == Some(DayState::Withdrawn),
        ),
        (
            "every fee item is paid to the settlement account exactly once (bank = ledger)"
                .to_owned(),
            report.agrees && report.duplicates.is_empty() && report.unaccounted.is_empty(),
        ),
        (
            "the bank statement shows no duplicate bank_tran_id".to_owned(),
            report.duplicates.is_empty(),
        ),
    ];
    drop(fees);
    drop(simulator);
    bank_db.finish(false).await?;
    Ok(FeesOutcome { checks })
}
