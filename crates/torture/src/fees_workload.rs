//! The fee-settlement workload. The parent opens business days one after another
//! (loans, accruals, money at the bank); the child settles them by calling
//! Record / Pay / Verify / Withdraw in a seeded random order, oldest open day
//! first, until every day is withdrawn. The check reconciles each day's ledger
//! with the simulator's statement, item by item.

use std::collections::BTreeMap;
use std::sync::Arc;

use bank::{BankApi, HttpBank, TransportConfig};
use fees::workload::{Workload, loan_bank_account};
use fees::{BusinessDay, DayState, Fees, FeesConfig, Module, Trigger};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, SystemClock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::TortureError;
use crate::bank_side::BankSide;
use crate::check::{Checks, ledger_invariants};
use crate::child::{ChildArgs, Out};

/// Loans per business day: a day takes a child a second or two to settle.
pub(crate) const LOANS_PER_DAY: usize = 24;
/// Days the parent keeps open ahead of the child, so a kill lands in work.
const OPEN_DAYS_MIN: usize = 2;
/// Days one run may open.
const DAYS_MAX: usize = 2_000;
/// The first business day settled (long closed by the time anyone runs this).
const FIRST_DAY: &str = "2026-01-05";
/// Module calls one child makes before it gives up; the final child must finish.
const CHILD_OPS_MAX: u64 = 200_000;

/// The same limits in the parent and every child. Short lock lease and grace:
/// a killed child's SQLite lease must not block the next one for minutes, and
/// no request of a dead child can still reach the simulator after 1.5 s (its
/// latency is a few ms, and a timed-out answer is held only after commit).
pub(crate) fn config() -> Result<FeesConfig, TortureError> {
    let mut config = crate::installation::fees_config()?;
    config.bank_calls_in_flight_max = 16;
    config.lock_lease_ms = 1_500;
    config.not_found_grace_ms = Some(1_500);
    // Transient answers wait and the breaker pauses sending, as in production,
    // but on the torture's clock: seconds, not hours.
    config.transient_backoff_ms_min = 20;
    config.transient_backoff_ms_max = 500;
    config.breaker_open_ms = 300;
    Ok(config)
}

/// Whether a Withdraw answer says the day's withdraw is blocked for an
/// operator (the bank refused it permanently, e.g. a frozen account).
pub(crate) fn is_withdraw_blocked(outcome: &fees::Outcome) -> bool {
    matches!(outcome, fees::Outcome::NotReady(reason) if reason.contains("is blocked"))
}

fn day(index: usize) -> Result<BusinessDay, TortureError> {
    let mut day = BusinessDay::parse(FIRST_DAY)
        .map_err(|e| TortureError::Invalid(format!("first day: {e}")))?;
    for _ in 0..index {
        day = day.next();
    }
    Ok(day)
}

/// Day `index`'s workload: its own loans (ids offset by the day), so no loan or
/// bank account is shared between days.
pub(crate) fn workload(index: usize, seed: u64) -> Result<Workload, TortureError> {
    let mut workload = fees::workload::generate(day(index)?, LOANS_PER_DAY, seed)?;
    let offset = (index * LOANS_PER_DAY) as u64;
    for loan in &mut workload.loans {
        loan.loan_id += offset;
        loan.bank_account = loan_bank_account(loan.loan_id)?;
    }
    for accrual in &mut workload.accruals {
        accrual.loan_id += offset;
    }
    Ok(workload)
}

/// The parent's side: opens days, and checks them at the end.
pub(crate) struct FeesParent {
    fees: Fees,
    bank: BankSide,
    seed: u64,
    workloads: Vec<Workload>,
}

impl FeesParent {
    /// `api` is how the parent's own `Fees` reaches the bank (the check asks
    /// Withdraw once more); `bank` is where it sets up days and reads statements.
    pub async fn open(
        url: &str,
        api: Arc<dyn BankApi>,
        bank: BankSide,
        seed: u64,
    ) -> Result<FeesParent, TortureError> {
        let store = crate::scratch::connect_small(url).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::open(store, clock.clone(), LedgerConfig::default()).await?;
        let fees = Fees::open(ledger, api, clock, config()?).await?;
        Ok(FeesParent {
            fees,
            bank,
            seed,
            workloads: Vec::new(),
        })
    }

    /// Opens days until at least two are waiting to be recorded or paid.
    pub async fn before_cycle(&mut self) -> Result<(), TortureError> {
        loop {
            let mut open = 0;
            for workload in &self.workloads {
                // A verified day only waits for its withdraw, which the bank
                // may refuse for good (an operator's matter): not open work.
                let state = self.fees.status(workload.day).await?.map(|s| s.state);
                if matches!(state, None | Some(DayState::Recorded)) {
                    open += 1;
                }
            }
            if open >= OPEN_DAYS_MIN || self.workloads.len() >= DAYS_MAX {
                return Ok(());
            }
            let index = self.workloads.len();
            let workload = workload(index, self.seed ^ index as u64)?;
            self.fees.register_loans(&workload.loans).await?;
            let summary = self.fees.accrue(&workload.accruals).await?;
            if summary.refused > 0 {
                return Err(TortureError::Invalid(format!(
                    "{} accruals of day {} were refused",
                    summary.refused, workload.day
                )));
            }
            fees::workload::provision_bank(self.bank.admin(), self.fees.config(), &workload)
                .await?;
            self.workloads.push(workload);
        }
    }

    pub fn days(&self) -> usize {
        self.workloads.len()
    }

    /// The days opened so far, as the API names them.
    pub fn day_names(&self) -> Vec<String> {
        self.workloads.iter().map(|w| w.day.to_string()).collect()
    }

    /// Days opened and not yet withdrawn.
    pub async fn unfinished_days(&self) -> Result<usize, TortureError> {
        let mut open = 0;
        for workload in &self.workloads {
            let state = self.fees.status(workload.day).await?.map(|s| s.state);
            if state != Some(DayState::Withdrawn) {
                open += 1;
            }
        }
        Ok(open)
    }

    /// Every fee invariant of every day, against the simulator's statement.
    pub async fn check(&self) -> Result<Checks, TortureError> {
        let mut checks = Checks::default();
        let statement = self.statement_into_settlement().await?;
        let mut days_not_withdrawn = Vec::new();
        let mut reports_disagreeing = Vec::new();
        let mut duplicates = Vec::new();
        let mut unaccounted = Vec::new();
        let mut withdrawn_wrong = Vec::new();
        let mut paid_wrong = Vec::new();
        let mut items = 0usize;
        let mut blocked = 0usize;
        let mut withdraws_blocked = 0usize;
        for workload in &self.workloads {
            let day = workload.day;
            let status = self.fees.status(day).await?;
            let Some(status) = status else {
                days_not_withdrawn.push(format!("{day}: never recorded"));
                continue;
            };
            let mut withdraw_blocked = false;
            if status.state != DayState::Withdrawn {
                // Asking Withdraw once more changes nothing when it is blocked.
                let answer = self.fees.withdraw(day, Trigger::Operator).await?;
                withdraw_blocked =
                    status.state == DayState::Verified && is_withdraw_blocked(&answer.outcome);
                if withdraw_blocked {
                    withdraws_blocked += 1;
                } else {
                    days_not_withdrawn.push(format!("{day}: {:?}", status.state));
                }
            }
            items += usize::try_from(status.items).unwrap_or(0);
            blocked += status.blocked.len();
            let report = self.fees.report(day, self.bank.statement()).await?;
            if !report.books_agree {
                reports_disagreeing.push(format!("{day}: {:?}", report.kinds));
            }
            duplicates.extend(report.duplicates.iter().map(|id| format!("{day}: {id}")));
            unaccounted.extend(report.unaccounted.iter().map(|id| format!("{day}: {id}")));
            let withdrawn_want = if withdraw_blocked {
                money::Krw::ZERO
            } else {
                report.ledger_paid_krw
            };
            if report.bank_withdrawn_krw != withdrawn_want
                || report.ledger_withdrawn_krw != withdrawn_want
                || report.bank_paid_krw != report.ledger_paid_krw
            {
                withdrawn_wrong.push(format!(
                    "{day}: paid ledger {} bank {}, withdrawn ledger {} bank {}",
                    report.ledger_paid_krw.get(),
                    report.bank_paid_krw.get(),
                    report.ledger_withdrawn_krw.get(),
                    report.bank_withdrawn_krw.get()
                ));
            }
            // Item by item (summed per loan account): what the bank moved from a
            // loan's account into the settlement account is what the loan owed,
            // less what is blocked for an operator — never more, never less.
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for (loan_id, owed) in workload.totals_by_loan()? {
                expected.insert(loan_bank_account(loan_id)?.as_str().to_owned(), owed.get());
            }
            for item in &status.blocked {
                let account = loan_bank_account(item.loan_id)?.as_str().to_owned();
                *expected.entry(account).or_default() -= item.unpaid_krw.get();
            }
            for (account, owed) in expected {
                let paid = statement.get(&account).copied().unwrap_or(0);
                if paid != owed {
                    paid_wrong.push(format!("{day} {account}: paid {paid}, owed {owed}"));
                }
            }
        }
        let list = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join("; ");
        checks.add(
            "fees: every day ends withdrawn, or verified with its withdraw blocked (no item lost)",
            days_not_withdrawn.is_empty(),
            format!(
                "{} days ({withdraws_blocked} with the withdraw blocked for an operator), \
                 {items} items ({blocked} blocked for an operator); {}",
                self.workloads.len(),
                list(&days_not_withdrawn)
            ),
        );
        checks.add(
            "fees: each item paid exactly once, bank side (statement per loan account)",
            paid_wrong.is_empty(),
            list(&paid_wrong),
        );
        checks.add(
            "fees: ledger and bank statement agree per fee kind",
            reports_disagreeing.is_empty(),
            list(&reports_disagreeing),
        );
        checks.add(
            "fees: no bank_tran_id moved money twice",
            duplicates.is_empty(),
            list(&duplicates),
        );
        checks.add(
            "fees: no money moved for a chunk fees counts as failed",
            unaccounted.is_empty(),
            list(&unaccounted),
        );
        checks.add(
            "fees: each day withdrawn once, exactly what was paid",
            withdrawn_wrong.is_empty(),
            list(&withdrawn_wrong),
        );
        ledger_invariants(self.fees.ledger(), &mut checks).await?;
        let conserved = self.bank.conservation().await;
        checks.add(
            "bank: the simulator's balances add up to the money paid in",
            conserved.is_ok(),
            format!("{conserved:?}"),
        );
        Ok(checks)
    }

    /// What the bank moved into the settlement account, per source account.
    async fn statement_into_settlement(&self) -> Result<BTreeMap<String, i64>, TortureError> {
        let settlement = &self.fees.config().settlement_account;
        let mut paid: BTreeMap<String, i64> = BTreeMap::new();
        for movement in self.bank.movements(Some(settlement)).await? {
            if movement.to_account != settlement.as_str() {
                continue;
            }
            if let Some(from) = movement.from_account {
                *paid.entry(from).or_default() += movement.amount_krw.get();
            }
        }
        Ok(paid)
    }
}

/// The child's side: settle open days until none is left.
pub(crate) async fn run_child(
    args: &ChildArgs,
    bank: Arc<dyn BankApi>,
    out: &mut Out,
) -> Result<(), TortureError> {
    let store = store::Store::connect(&args.database_url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(store, clock.clone(), LedgerConfig::default()).await?;
    let fees = Fees::open(ledger, bank, clock, config()?).await?;
    out.line("ready")?;
    let mut rng = SmallRng::seed_from_u64(args.seed ^ args.cycle.rotate_left(32));
    // Days whose withdraw the bank refused for good: an operator's matter.
    let mut blocked: Vec<BusinessDay> = Vec::new();
    for _ in 0..CHILD_OPS_MAX {
        let mut open = fees.unrecorded_days().await?;
        open.extend(fees.days(false).await?);
        open.sort();
        open.dedup();
        open.retain(|day| !blocked.contains(day));
        let Some(&oldest) = open.first() else {
            out.line("done")?;
            return Ok(());
        };
        // Mostly the oldest day; sometimes the next, so days interleave.
        let day = match open.get(1) {
            Some(&next) if rng.random_range(0..4) == 0 => next,
            _ => oldest,
        };
        let module = Module::ALL[rng.random_range(0..Module::ALL.len())];
        let trigger = Trigger::Scheduler;
        let report = match module {
            Module::Record => fees.record(day, trigger).await?,
            Module::Pay => fees.pay(day, trigger).await?,
            Module::Verify => fees.verify(day, trigger).await?,
            Module::Withdraw => fees.withdraw(day, trigger).await?,
        };
        out.op(module.name(), report.outcome.name())?;
        if is_withdraw_blocked(&report.outcome) {
            blocked.push(day);
        }
        let pause_ms = if report.outcome == fees::Outcome::Done {
            5
        } else {
            60
        };
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
    }
    Err(TortureError::Child(format!(
        "fees: still open days after {CHILD_OPS_MAX} module calls"
    )))
}

/// The HTTP bank a fees child talks to.
pub(crate) fn http_bank(bank_url: &str) -> Result<Arc<dyn BankApi>, TortureError> {
    let mut transport = TransportConfig::new(bank_url);
    transport.timeout_ms = 1_000;
    transport.concurrent_max = Some(16);
    transport.requests_per_s_max = None;
    transport.idle_connections_per_host_max = 16;
    Ok(Arc::new(HttpBank::new(transport)?))
}
