//! The salary workload: the poller finds salaries in users' virtual accounts and
//! the stage consumers (compute → repay → suspend → pay out → complete) settle
//! them, in a child the parent SIGKILLs mid-stage. The parent pays more salaries
//! before every cycle, so each child finds stages to run. The check: no deposit
//! lost or invented, each stage of each deposit once, repaid + suspended + paid
//! out = deposited, the bank paid exactly what the ledger booked, to each user's
//! own account, and no `bank_tran_id` moved money twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::sim::{OpenAccount, Salary};
use bank::{AccountNumber, HolderName, Transport, TransportConfig, UserId};
use events::{Dispatcher, DispatcherConfig, RetryPolicy, Step, Wake};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, Krw, SystemClock};
use payroll::alerts::AlertConsumer;
use payroll::poller::Poller;
use payroll::{DepositState, NewUser, Payroll, PayrollConfig, StageConsumer};
use store::Store;
use uuid::Uuid;

use crate::TortureError;
use crate::bank_side::BankSide;
use crate::check::{Checks, ledger_invariants};
use crate::child::{ChildArgs, Out};
use crate::installation;

const USERS: u64 = 24;
/// Salaries the parent pays before each cycle.
const SALARIES_PER_CYCLE: u64 = 48;
/// Steps the child takes before it gives up on settling.
const CHILD_STEPS_MAX: u64 = 200_000;
const NAMESPACE: Uuid = Uuid::from_u128(0x5e77_1e00_5a1a_4000_8000_0000_0000_0031);

fn user(seed: u64, n: u64) -> Result<UserId, TortureError> {
    Ok(UserId::from_uuid(Uuid::new_v5(
        &NAMESPACE,
        format!("{seed}/user/{n}").as_bytes(),
    )))
}

fn payout_account(n: u64) -> Result<AccountNumber, TortureError> {
    Ok(AccountNumber::new(&format!("3333{n:010}"))?)
}

fn holder(n: u64) -> Result<HolderName, TortureError> {
    Ok(HolderName::new(&format!("직원{n}"))?)
}

/// User `n`: every third owes an advance, every fourth has 10 % held.
fn new_user(seed: u64, n: u64) -> Result<NewUser, TortureError> {
    Ok(NewUser {
        user_id: user(seed, n)?,
        holder_name: holder(n)?,
        payout_account: payout_account(n)?,
        payout_holder: holder(n)?,
        advance_krw: Krw::new(if n.is_multiple_of(3) { 150_000 } else { 0 }),
        suspend_percent: if n.is_multiple_of(4) { 10 } else { 0 },
    })
}

/// The ledger's store: its own file on SQLite (stages write the ledger inside
/// payroll's transaction, and a SQLite file has one writer), else payroll's.
pub(crate) fn ledger_url(database_url: &str) -> String {
    match database_url.strip_prefix("sqlite://") {
        Some(path) => format!(
            "sqlite://{}",
            std::path::Path::new(path)
                .with_file_name("ledger.db")
                .display()
        ),
        None => database_url.to_owned(),
    }
}

/// `small`: the parent's own small pool, not a worker's.
async fn open(database_url: &str, bank_url: &str, small: bool) -> Result<Payroll, TortureError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = if small {
        crate::scratch::connect_small(database_url).await?
    } else {
        Store::connect(database_url).await?
    };
    let ledger_store = if ledger_url(database_url) == database_url {
        store.clone()
    } else {
        Store::connect(&ledger_url(database_url)).await?
    };
    let ledger = Ledger::open(ledger_store, clock.clone(), LedgerConfig::default()).await?;
    let mut transport = TransportConfig::new(bank_url);
    transport.requests_per_s_max = None;
    transport.concurrent_max = Some(32);
    transport.timeout_ms = 5_000;
    let transport = Transport::new(transport)?;
    let routing = RoutingTable::open(store.clone(), clock.clone())
        .await
        .map_err(|e| TortureError::Child(format!("routing table: {e}")))?;
    let facade = Facade::connect(routing, &transport);
    let mut config = PayrollConfig::new(
        installation::payout_account()?,
        installation::payout_holder()?,
        installation::ids()?,
    );
    config.poll_requests_per_s_max = 10_000;
    config.poll_concurrent_max = 16;
    Payroll::open(store, ledger, facade, clock, config)
        .await
        .map_err(payroll_error)
}

fn payroll_error(error: payroll::PayrollError) -> TortureError {
    TortureError::Child(format!("payroll: {error}"))
}

/// The parent's side: users, salaries, and the check.
pub(crate) struct PayrollParent {
    payroll: Payroll,
    bank: BankSide,
    seed: u64,
    salaries: u64,
}

impl PayrollParent {
    pub async fn open(
        url: &str,
        bank_url: &str,
        bank: BankSide,
        seed: u64,
    ) -> Result<PayrollParent, TortureError> {
        bank.open_account(&OpenAccount {
            account_number: installation::payout_account()?,
            holder_name: installation::payout_holder()?,
            balance_krw: Krw::new(100_000_000_000),
        })
        .await?;
        let payroll = open(url, bank_url, true).await?;
        for n in 0..USERS {
            bank.open_account(&OpenAccount {
                account_number: payout_account(n)?,
                holder_name: holder(n)?,
                balance_krw: Krw::ZERO,
            })
            .await?;
            let account = payroll
                .enrol(&new_user(seed, n)?)
                .await
                .map_err(payroll_error)?;
            if n.is_multiple_of(5) {
                bank.set_repayment_due(&account, Krw::new(80_000)).await?;
            }
        }
        Ok(PayrollParent {
            payroll,
            bank,
            seed,
            salaries: 0,
        })
    }

    /// Pays the next few salaries into users' virtual accounts.
    pub async fn before_cycle(&mut self) -> Result<(), TortureError> {
        self.pay_salaries(SALARIES_PER_CYCLE).await
    }

    /// Pays the next `count` salaries, one user after another.
    pub async fn pay_salaries(&mut self, count: u64) -> Result<(), TortureError> {
        for _ in 0..count {
            let n = self.salaries % USERS;
            let account = self.virtual_account(n).await?;
            self.bank
                .pay_salary(&Salary {
                    account_number: account,
                    amount_krw: Krw::new(210_000 + (self.salaries as i64 % 7) * 33_330),
                    depositor_name: "(주)고용주".into(),
                })
                .await?;
            self.salaries += 1;
        }
        Ok(())
    }

    async fn virtual_account(&self, n: u64) -> Result<AccountNumber, TortureError> {
        // Enrolment is idempotent: it returns the virtual account already issued.
        self.payroll
            .enrol(&new_user(self.seed, n)?)
            .await
            .map_err(payroll_error)
    }

    pub fn salaries(&self) -> u64 {
        self.salaries
    }

    pub fn payroll(&self) -> &Payroll {
        &self.payroll
    }

    /// Deposits not yet completed or rolled back.
    pub async fn open_deposits(&self) -> Result<usize, TortureError> {
        Ok(self
            .payroll
            .deposits()
            .await
            .map_err(payroll_error)?
            .iter()
            .filter(|d| !d.state.is_terminal())
            .count())
    }

    pub async fn check(&self) -> Result<Checks, TortureError> {
        let mut checks = Checks::default();
        let deposits = self.payroll.deposits().await.map_err(payroll_error)?;
        checks.add(
            "payroll: every salary became one deposit (none lost or invented)",
            deposits.len() as u64 == self.salaries,
            format!(
                "{} salaries paid, {} deposits",
                self.salaries,
                deposits.len()
            ),
        );
        let not_completed: Vec<String> = deposits
            .iter()
            .filter(|d| d.state != DepositState::Completed)
            .take(10)
            .map(|d| format!("{}: {:?} {:?}", d.deposit_id, d.state, d.waiting_reason))
            .collect();
        checks.add(
            "payroll: every deposit completed",
            not_completed.is_empty(),
            not_completed.join("; "),
        );
        let log = self.payroll.stage_log().await.map_err(payroll_error)?;
        let mut seen: BTreeMap<(String, String), u32> = BTreeMap::new();
        for (deposit, _, stage) in &log {
            *seen.entry((deposit.clone(), stage.clone())).or_default() += 1;
        }
        let twice: Vec<String> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(10)
            .map(|((d, s), n)| format!("{d} {s} x{n}"))
            .collect();
        checks.add(
            "payroll: each stage of each deposit ran once to effect",
            twice.is_empty() && log.len() == deposits.len() * 5,
            format!(
                "{} stage runs for {} deposits; {}",
                log.len(),
                deposits.len(),
                twice.join("; ")
            ),
        );
        let split_wrong: Vec<String> = deposits
            .iter()
            .filter(|d| d.state == DepositState::Completed)
            .filter(|d| d.repayment_krw + d.suspend_krw + d.payout_krw != d.amount_krw)
            .take(10)
            .map(|d| d.deposit_id.clone())
            .collect();
        checks.add(
            "payroll: repaid + suspended + paid out = deposited, to the won",
            split_wrong.is_empty(),
            split_wrong.join("; "),
        );
        // The bank's side: every payout by id, once, to the user's own account.
        let mut by_id: BTreeMap<String, u32> = BTreeMap::new();
        let mut bank_per_account: BTreeMap<String, i64> = BTreeMap::new();
        for movement in self.bank.movements(None).await? {
            let Some(id) = movement.bank_tran_id.clone() else {
                continue;
            };
            if !id.starts_with("P2025") {
                continue;
            }
            *by_id.entry(id).or_default() += 1;
            *bank_per_account
                .entry(movement.to_account.clone())
                .or_default() += movement.amount_krw.get();
        }
        let doubled: Vec<String> = by_id
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(10)
            .map(|(id, n)| format!("{id} x{n}"))
            .collect();
        checks.add(
            "payroll: no bank_tran_id moved money twice",
            doubled.is_empty(),
            doubled.join("; "),
        );
        let mut ledger_per_user: BTreeMap<String, i64> = BTreeMap::new();
        for d in deposits
            .iter()
            .filter(|d| d.state == DepositState::Completed)
        {
            *ledger_per_user.entry(d.user_id.clone()).or_default() += d.payout_krw;
        }
        let mut wrong = Vec::new();
        let mut users_seen = BTreeSet::new();
        for n in 0..USERS {
            let id = user(self.seed, n)?.to_string();
            users_seen.insert(id.clone());
            let want = ledger_per_user.get(&id).copied().unwrap_or(0);
            let got = bank_per_account
                .get(payout_account(n)?.as_str())
                .copied()
                .unwrap_or(0);
            if want != got {
                wrong.push(format!("user {n}: bank paid {got}, booked {want}"));
            }
        }
        checks.add(
            "payroll: the bank paid each user exactly what the ledger booked",
            wrong.is_empty(),
            wrong.join("; "),
        );
        ledger_invariants(self.payroll.ledger(), &mut checks).await?;
        Ok(checks)
    }
}

fn dispatcher_config() -> DispatcherConfig {
    DispatcherConfig {
        poll_interval_ms: 5,
        retry: RetryPolicy::fast_for_tests(1_000),
        ..DispatcherConfig::default()
    }
}

/// The child's side: poll, step every stage, until nothing moves.
pub(crate) async fn run_child(args: &ChildArgs, out: &mut Out) -> Result<(), TortureError> {
    let bank_url = args
        .bank_url
        .as_deref()
        .ok_or_else(|| TortureError::Invalid("the payroll workload needs --bank-url".into()))?;
    let payroll = open(&args.database_url, bank_url, false).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = payroll.store().clone();
    let mut stages: Vec<Dispatcher<StageConsumer>> = Vec::new();
    for consumer in payroll.stage_consumers() {
        stages.push(
            Dispatcher::new(
                store.clone(),
                Arc::new(consumer),
                dispatcher_config(),
                clock.clone(),
                Wake::new(),
            )
            .await
            .map_err(|e| TortureError::Child(format!("events: {e}")))?,
        );
    }
    let mut alerts: Dispatcher<AlertConsumer> = Dispatcher::new(
        store.clone(),
        Arc::new(payroll.alert_consumer()),
        dispatcher_config(),
        clock.clone(),
        Wake::new(),
    )
    .await
    .map_err(|e| TortureError::Child(format!("events: {e}")))?;
    let poller = Poller::new(payroll.clone()).map_err(payroll_error)?;
    out.line("ready")?;
    let mut idle_rounds = 0u32;
    for step in 0..CHILD_STEPS_MAX {
        if step % 20 == 0 {
            poller.run_round().await.map_err(payroll_error)?;
            out.op("poll", "round")?;
        }
        let mut worked = false;
        for dispatcher in stages.iter_mut() {
            if dispatcher
                .run_once()
                .await
                .map_err(|e| TortureError::Child(format!("events: {e}")))?
                == Step::Done
            {
                worked = true;
                out.op("stage", "done")?;
            }
        }
        if alerts
            .run_once()
            .await
            .map_err(|e| TortureError::Child(format!("events: {e}")))?
            == Step::Done
        {
            worked = true;
        }
        if worked {
            idle_rounds = 0;
            continue;
        }
        let open = payroll
            .deposits()
            .await
            .map_err(payroll_error)?
            .iter()
            .filter(|d| !d.state.is_terminal() && d.state != DepositState::Waiting)
            .count();
        idle_rounds += 1;
        if open == 0 && idle_rounds > 3 {
            // One more round of polling finds nothing new: done.
            poller.run_round().await.map_err(payroll_error)?;
            if payroll
                .deposits()
                .await
                .map_err(payroll_error)?
                .iter()
                .all(|d| d.state.is_terminal() || d.state == DepositState::Waiting)
                && stages_idle(&mut stages).await?
            {
                out.line("done")?;
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(TortureError::Child(format!(
        "payroll: still open work after {CHILD_STEPS_MAX} steps"
    )))
}

async fn stages_idle(stages: &mut [Dispatcher<StageConsumer>]) -> Result<bool, TortureError> {
    for dispatcher in stages.iter_mut() {
        if dispatcher
            .run_once()
            .await
            .map_err(|e| TortureError::Child(format!("events: {e}")))?
            == Step::Done
        {
            return Ok(false);
        }
    }
    Ok(true)
}
