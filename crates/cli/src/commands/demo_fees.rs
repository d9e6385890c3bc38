//! The demo's fee-settlement phase: one business day of accruals on `loans`
//! loans, settled by the four modules — first by concurrent callers in shuffled
//! order, then by the scheduler until the day is withdrawn — through an
//! the demo's bank, and reconciled against the bank's statement.

use std::sync::Arc;
use std::time::Instant;

use fees::{BusinessDay, DayState, Fees, Module, Outcome, Trigger};
use ledger::Ledger;
use money::Clock;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::demo_bank::DemoBank;
use super::demo_report::{Check, Part, Reconciliation};
use crate::progress;

/// Scheduler rounds the demo allows before it calls the day stuck.
const SCHEDULER_ROUNDS_MAX: usize = 50;
/// Callers per module in the concurrent round.
const CONCURRENT_CALLERS: usize = 3;

/// What the phase did and proved, read back from the fees tables, the ledger
/// and the bank's statement.
pub struct FeesOutcome {
    /// Kept open for `--serve`.
    pub fees: Fees,
    pub part: Part,
    pub checks: Vec<Check>,
    pub reconciliation: Vec<Reconciliation>,
}

pub async fn run(
    ledger: &Ledger,
    bank: &DemoBank,
    clock: Arc<dyn Clock>,
    loans: usize,
    seed: u64,
) -> anyhow::Result<FeesOutcome> {
    let phase = Instant::now();
    let fees = Fees::open(
        ledger.clone(),
        bank.api.clone(),
        clock.clone(),
        crate::settings::Settings::demo()?.fees_config(money::DerivedIds::for_tests())?,
    )
    .await?;
    let day = BusinessDay::from_kst(clock.now()).previous();
    let workload = fees::workload::generate(day, loans, seed)?;
    fees.register_loans(&workload.loans).await?;
    let accrued = fees.accrue(&workload.accruals).await?;
    fees::workload::provision_bank(bank.fees_admin(), fees.config(), &workload).await?;
    let total = workload.total()?;
    super::demo_report::note(&format!(
        "  fees for {day}: {} accruals on {loans} loans, {total} in all ({} applied)",
        workload.accruals.len(),
        accrued.applied
    ));

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
            let report = match module {
                Module::Record => fees.record(day, Trigger::Operator).await,
                Module::Pay => fees.pay(day, Trigger::Operator).await,
                Module::Verify => fees.verify(day, Trigger::Operator).await,
                Module::Withdraw => fees.withdraw(day, Trigger::Operator).await,
            };
            report.map(|r| (module, r.outcome))
        }));
    }
    let (mut busy, mut recorded, mut withdrawn) = (0, 0, 0);
    for task in tasks {
        let (module, outcome) = task.await??;
        match (module, outcome) {
            (_, Outcome::Busy) => busy += 1,
            (Module::Record, Outcome::Done) => recorded += 1,
            (Module::Withdraw, Outcome::Done) => withdrawn += 1,
            _ => {}
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
    let report = fees.report(day, bank.statement()).await?;
    let chunks: i64 = status
        .as_ref()
        .map(|s| s.chunks.values().sum())
        .unwrap_or(0);
    super::demo_report::note(&format!(
        "  fees settled in {:.2}s: {chunks} payout chunks, {busy} concurrent callers told busy, \
         {rounds} scheduler rounds, paid {} / withdrawn {}",
        phase.elapsed().as_secs_f64(),
        report.ledger_paid_krw,
        report.ledger_withdrawn_krw
    ));
    let status = status.ok_or_else(|| anyhow::anyhow!("fee day {day} has no status"))?;
    let group = "fee settlement (DESIGN: each item paid once, each day withdrawn at most once)";
    let checks = vec![
        Check::new(
            group,
            "the fee day is paid, verified and withdrawn",
            state == Some(DayState::Withdrawn) && status.items_blocked == 0,
            format!("{state:?}, {} items blocked", status.items_blocked),
        ),
        Check::new(
            group,
            "every fee item is paid to the settlement account exactly once (bank = ledger, per kind)",
            report.agrees
                && report.kinds.iter().all(|k| k.agrees)
                && report.unaccounted.is_empty()
                && status.items_paid == status.items,
            format!(
                "{} of {} items paid; {} ids the bank moved that fees does not count",
                status.items_paid,
                status.items,
                report.unaccounted.len()
            ),
        ),
        Check::new(
            group,
            "the day is withdrawn once: withdrawn = paid, on both sides",
            report.bank_withdrawn_krw == report.ledger_withdrawn_krw
                && report.ledger_withdrawn_krw == report.ledger_paid_krw
                && status.withdrawn_krw == status.paid_krw,
            format!(
                "bank {} / ledger {} withdrawn of {} paid",
                report.bank_withdrawn_krw, report.ledger_withdrawn_krw, report.ledger_paid_krw
            ),
        ),
        Check::new(
            group,
            "the bank statement shows no bank_tran_id twice",
            report.duplicates.is_empty(),
            format!("{} duplicates", report.duplicates.len()),
        ),
        Check::new(
            group,
            "modules called concurrently and out of order: the day was recorded and withdrawn by at most one caller",
            recorded <= 1 && withdrawn <= 1,
            format!("{recorded} callers recorded, {withdrawn} withdrew, {busy} were told busy"),
        ),
    ];
    let mut part = Part::new(
        &format!("fee settlement for {day}"),
        phase.elapsed().as_secs_f64(),
    )
    .count("loans", loans)
    .count("settlement items", status.items)
    .count("items paid", status.items_paid);
    for (state, count) in &status.chunks {
        part = part.count(&format!("bank chunks {state}"), *count);
    }
    part = part
        .count("concurrent callers told busy", busy)
        .count("scheduler rounds", rounds);
    for line in &report.kinds {
        part = part.amount(&format!("paid: {:?}", line.kind), line.ledger_krw.get());
    }
    part = part
        .amount(
            "paid to the settlement account",
            report.ledger_paid_krw.get(),
        )
        .amount(
            "withdrawn to the corporate account",
            report.ledger_withdrawn_krw.get(),
        );
    let reconciliation = vec![
        Reconciliation {
            what: format!("fee payouts {day}"),
            bank_krw: report.bank_paid_krw.get(),
            ledger_krw: report.ledger_paid_krw.get(),
            agrees: report.bank_paid_krw == report.ledger_paid_krw,
        },
        Reconciliation {
            what: format!("fee withdrawal {day}"),
            bank_krw: report.bank_withdrawn_krw.get(),
            ledger_krw: report.ledger_withdrawn_krw.get(),
            agrees: report.bank_withdrawn_krw == report.ledger_withdrawn_krw,
        },
    ];
    Ok(FeesOutcome {
        fees,
        part,
        checks,
        reconciliation,
    })
}
