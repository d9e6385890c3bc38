//! Deterministic simulation of fee settlement, in the spirit of TigerBeetle's
//! simulator: one process, a [`TestClock`], the in-process bank simulator with
//! seeded faults and no latency, and a seeded schedule of module calls and clock
//! moves. Everything a run does is folded into a trace hash: the same seed gives
//! the same hash, and a failing seed is replayed with `settle torture sim --seed`.
//!
//! The trace holds what must not depend on timing: each call's module, outcome
//! and counts, the day's status after it, and at the end the bank statement
//! sorted by `bank_tran_id`.

use std::sync::Arc;

use bank::sim::{Profile, SimConfig, Simulator};
use fees::{BusinessDay, DayState, Fees, Module, Trigger};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, TestClock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::TortureError;
use crate::check::{Check, Checks, ledger_invariants};
use crate::faults::{self, FaultKind};

/// Module calls one simulation makes at most.
pub const STEPS_MAX: u64 = 10_000;
const DAY: &str = "2026-11-23";

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimPlan {
    pub seed: u64,
    pub loans: usize,
    pub faults: Vec<FaultKind>,
    pub fault_rate_pct: u32,
    pub steps_max: u64,
}

impl SimPlan {
    pub fn new(seed: u64) -> SimPlan {
        SimPlan {
            seed,
            loans: 40,
            faults: vec![
                FaultKind::TimeoutAfterCommit,
                FaultKind::ServerError,
                FaultKind::RateLimited,
                FaultKind::Frozen,
                FaultKind::Maintenance,
            ],
            fault_rate_pct: 10,
            steps_max: 400,
        }
    }
}

/// One simulation's result.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub steps: u64,
    /// FNV-1a over the whole trace, hex.
    pub trace_hash: String,
    pub trace_lines: usize,
    pub final_state: String,
    pub checks: Vec<Check>,
    pub violations: usize,
    pub replay: String,
}

/// Runs one simulation on a fresh SQLite file in `dir`.
pub async fn run(plan: &SimPlan, dir: &std::path::Path) -> Result<SimReport, TortureError> {
    if plan.steps_max > STEPS_MAX {
        return Err(TortureError::Invalid(format!(
            "at most {STEPS_MAX} steps, not {}",
            plan.steps_max
        )));
    }
    std::fs::create_dir_all(dir)?;
    let day = BusinessDay::parse(DAY).map_err(|e| TortureError::Invalid(e.to_string()))?;
    let clock = TestClock::at(day.ends_at().plus_ms(9 * 3_600_000));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim_store =
        store::Store::connect(&format!("sqlite://{}", dir.join("banksim.db").display())).await?;
    let mut sim_config = SimConfig::for_profile(Profile::Test, plan.seed);
    sim_config.latency_ms_min = 0;
    sim_config.latency_ms_max = 0;
    sim_config.slow_extra_ms = 0;
    sim_config.faults = faults::rates(&plan.faults, plan.fault_rate_pct)?;
    let sim = Simulator::open(sim_store, sim_config, shared.clone()).await?;
    let store =
        store::Store::connect(&format!("sqlite://{}", dir.join("settle.db").display())).await?;
    let ledger = Ledger::open(store.clone(), shared.clone(), LedgerConfig::default()).await?;
    let mut config = crate::installation::fees_config()?;
    // One call at a time: the order of the bank's answers is then the order of
    // the calls, and the trace cannot depend on the scheduler of the runtime.
    config.bank_calls_in_flight_max = 1;
    let fees = Fees::open(ledger, Arc::new(sim.clone()), shared, config.clone()).await?;
    let workload = fees::workload::generate(day, plan.loans, plan.seed)?;
    fees.register_loans(&workload.loans).await?;
    fees.accrue(&workload.accruals).await?;
    fees::workload::provision_bank(&sim, &config, &workload).await?;

    let mut rng = SmallRng::seed_from_u64(plan.seed);
    let mut trace = Trace::default();
    let mut steps = 0;
    let mut state = None;
    let mut withdraw_blocked = false;
    while steps < plan.steps_max && state != Some(DayState::Withdrawn) && !withdraw_blocked {
        steps += 1;
        let module = Module::ALL[rng.random_range(0..Module::ALL.len())];
        let trigger = Trigger::Scheduler;
        let report = match module {
            Module::Record => fees.record(day, trigger).await?,
            Module::Pay => fees.pay(day, trigger).await?,
            Module::Verify => fees.verify(day, trigger).await?,
            Module::Withdraw => fees.withdraw(day, trigger).await?,
        };
        withdraw_blocked = crate::fees_workload::is_withdraw_blocked(&report.outcome);
        let status = fees.status(day).await?;
        state = status.as_ref().map(|s| s.state);
        trace.line(&format!(
            "{steps} {} {} {:?} {:?} {:?}",
            module.name(),
            report.outcome.name(),
            report.counts,
            state,
            status.map(|s| (s.paid_krw.get(), s.items_paid, s.items_blocked, s.chunks))
        ));
        // The scheduler's next tick: sometimes soon, sometimes past the grace
        // period that proves a not-found chunk failed.
        let advance_ms = match rng.random_range(0..4) {
            0 => fees.not_found_grace_ms() + 1_000,
            _ => rng.random_range(1_000..30_000),
        };
        clock.advance_ms(advance_ms);
    }
    let mut movements = Vec::new();
    let mut since = 0;
    for _ in 0..config.statement_pages_max {
        let page = sim.statement(None, since).await?;
        let Some(last) = page.last() else { break };
        since = last.seq;
        movements.extend(page);
    }
    let mut lines: Vec<String> = movements
        .iter()
        .map(|m| {
            format!(
                "{:?} {:?} {} {}",
                m.bank_tran_id,
                m.from_account,
                m.to_account,
                m.amount_krw.get()
            )
        })
        .collect();
    lines.sort();
    for line in &lines {
        trace.line(line);
    }

    let mut checks = Checks::default();
    // A permanent refusal of the withdraw (a frozen corporate account) is an
    // operator's matter: the day then ends verified, its withdraw blocked.
    checks.add(
        "simulation: the day ends withdrawn, or verified with its withdraw blocked",
        state == Some(DayState::Withdrawn)
            || (state == Some(DayState::Verified) && withdraw_blocked),
        format!("{state:?} after {steps} steps (withdraw blocked: {withdraw_blocked})"),
    );
    let report = fees.report(day, &sim).await?;
    checks.add(
        "simulation: ledger and bank agree, no id twice, nothing unaccounted",
        report.books_agree,
        format!(
            "paid ledger {} bank {}, duplicates {:?}, unaccounted {:?}",
            report.ledger_paid_krw.get(),
            report.bank_paid_krw.get(),
            report.duplicates,
            report.unaccounted
        ),
    );
    ledger_invariants(fees.ledger(), &mut checks).await?;
    store.close().await;
    Ok(SimReport {
        seed: plan.seed,
        steps,
        trace_hash: format!("{:016x}", trace.hash),
        trace_lines: trace.lines,
        final_state: if withdraw_blocked {
            "verified, withdraw blocked".to_owned()
        } else {
            format!("{state:?}")
        },
        violations: checks.violations(),
        checks: checks.0,
        replay: format!("settle torture sim --seed {}", plan.seed),
    })
}

/// An order-sensitive hash of everything a run did.
struct Trace {
    hash: u64,
    lines: usize,
}

impl Default for Trace {
    fn default() -> Trace {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            lines: 0,
        }
    }
}

impl Trace {
    fn line(&mut self, text: &str) {
        tracing::trace!(line = text, "simulation");
        for byte in text.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.lines += 1;
    }
}
