//! One helper that starts a whole fee-settlement system per test — a fresh
//! database (SQLite or PostgreSQL), the ledger, an in-process bank simulator on its
//! own SQLite file, a test clock on the morning after the business day — so each
//! test states only what is special about it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bank::types::{
    AccountRequest, Balance, DepositLookup, DepositPage, DepositsRequest, Holder,
    IssueVirtualAccount, TransferInquiry, TransferOutcome, TransferReceipt, TransferRequest,
    VirtualAccount, VirtualDeposit,
};
use bank::{BankApi, BankError};
use tokio::sync::Notify;

use bank::sim::{FaultRates, Profile, SimConfig, Simulator};
use fees::workload::{Workload, provision_bank};
use fees::{BusinessDay, FeeKind, Fees, FeesConfig};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, Krw, TestClock, Timestamp};
use store::testing::TestDb;

pub const DAY: &str = "2026-11-23";

pub struct System {
    pub tripwire: Arc<Tripwire>,
    pub db: TestDb,
    pub sim_db: TestDb,
    pub fees: Fees,
    pub sim: Simulator,
    pub clock: TestClock,
    pub day: BusinessDay,
}

pub struct Options {
    pub faults: FaultRates,
    pub latency_ms: (u64, u64),
    pub in_flight_max: usize,
    /// The bank answers 429 to every transfer for this long from the start.
    pub rate_limited_for_ms: Option<i64>,
    /// The bank's daily maintenance window (the clock starts at 09:00 KST).
    pub maintenance: Option<bank::sim::MaintenanceWindow>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            faults: FaultRates::default(),
            latency_ms: (0, 2),
            in_flight_max: 16,
            rate_limited_for_ms: None,
            maintenance: None,
        }
    }
}

pub fn day() -> BusinessDay {
    BusinessDay::parse(DAY).unwrap()
}

pub async fn system(db: TestDb, options: Options) -> System {
    let day = day();
    // 09:00 in Seoul on the next day: the business day is closed.
    let clock = TestClock::at(day.ends_at().plus_ms(9 * 3_600_000));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim_db = store::testing::sqlite().await;
    let mut sim_config = SimConfig::for_profile(Profile::Test, 7);
    sim_config.latency_ms_min = options.latency_ms.0;
    sim_config.latency_ms_max = options.latency_ms.1;
    sim_config.faults = options.faults;
    sim_config.maintenance = options.maintenance;
    sim_config.rate_limited_until_ms = options
        .rate_limited_for_ms
        .map(|ms| clock.now().unix_ms() + ms);
    let sim = Simulator::open(sim_db.store.clone(), sim_config, shared.clone())
        .await
        .unwrap();
    let ledger = Ledger::open(db.store.clone(), shared.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let mut config = fees::bench::bench_config().unwrap();
    config.bank_calls_in_flight_max = options.in_flight_max;
    let tripwire = Arc::new(Tripwire::new(sim.clone()));
    let fees = Fees::open(ledger, tripwire.clone(), shared, config)
        .await
        .unwrap();
    System {
        tripwire,
        db,
        sim_db,
        fees,
        sim,
        clock,
        day,
    }
}

impl System {
    pub fn config(&self) -> &FeesConfig {
        self.fees.config()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Registers, accrues and funds a workload at the bank.
    pub async fn load(&self, workload: &Workload) {
        self.fees.register_loans(&workload.loans).await.unwrap();
        let summary = self.fees.accrue(&workload.accruals).await.unwrap();
        assert_eq!(summary.refused, 0);
        provision_bank(&self.sim, self.config(), workload)
            .await
            .unwrap();
    }

    /// Every movement at the simulator touching the settlement account.
    pub async fn statement(&self) -> Vec<bank::sim::Movement> {
        let account = self.config().settlement_account.clone();
        let mut all = Vec::new();
        let mut since = 0;
        loop {
            let page = self.sim.statement(Some(&account), since).await.unwrap();
            let Some(last) = page.last() else { break };
            since = last.seq;
            all.extend(page);
        }
        all
    }

    /// Payout movements into the settlement account, by the paying account.
    pub async fn paid_by_account(&self) -> BTreeMap<String, Krw> {
        let settlement = self.config().settlement_account.to_string();
        let mut paid: BTreeMap<String, Krw> = BTreeMap::new();
        for movement in self.statement().await {
            if movement.to_account == settlement && movement.kind == "deposit_transfer" {
                let from = movement.from_account.clone().unwrap();
                let total = paid.entry(from).or_insert(Krw::ZERO);
                *total = total.checked_add(movement.amount_krw).unwrap();
            }
        }
        paid
    }

    /// Asserts no `bank_tran_id` appears twice on the statement.
    pub async fn assert_no_duplicate_ids(&self) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for movement in self.statement().await {
            if let Some(id) = movement.bank_tran_id {
                *seen.entry(id).or_default() += 1;
            }
        }
        let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            doubled.is_empty(),
            "ids on the statement twice: {doubled:?}"
        );
    }

    /// Asserts every ledger invariant over the whole database.
    pub async fn assert_ledger_balances(&self) {
        let totals = self.fees.ledger().totals().await.unwrap();
        for (name, holds) in totals.invariants() {
            assert!(holds, "ledger invariant broken: {name}: {totals:?}");
        }
    }
}

/// What each loan owes in total for the day.
pub fn owed_by_account(workload: &Workload) -> BTreeMap<String, Krw> {
    let totals = workload.totals_by_loan().unwrap();
    workload
        .loans
        .iter()
        .map(|loan| {
            (
                loan.bank_account.to_string(),
                totals.get(&loan.loan_id).copied().unwrap_or_default(),
            )
        })
        .filter(|(_, total)| total.is_positive())
        .collect()
}

pub fn one_tax(loan_id: u64, amount: i64) -> Workload {
    let day = day();
    Workload {
        day,
        loans: vec![fees::accrual::Loan {
            loan_id,
            bank_account: fees::workload::loan_bank_account(loan_id).unwrap(),
            holder_name: bank::HolderName::new("김민지").unwrap(),
        }],
        accruals: vec![fees::accrual::Accrual {
            id: money::TransferId::from_u128(0xacc0_0000_0000_0000_0000_0000_0000_0001).unwrap(),
            day,
            loan_id,
            kind: FeeKind::Tax,
            amount: Krw::new(amount),
        }],
    }
}

/// Runs one async scenario on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(store::testing::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = store::testing::postgres().await {
                    super::$scenario(db).await;
                }
            }
        }
    )*};
}

/// The simulator behind a tripwire: after the `n`-th money-moving call has been
/// answered by the bank, the caller never hears the answer — the moment a crash
/// hurts most. Tests arm it and drop the payout when it trips.
pub struct Tripwire {
    sim: Simulator,
    calls: AtomicU64,
    trip_at: AtomicU64,
    pub tripped: Notify,
    /// Bank calls still being processed, whether or not their caller still waits.
    gauge: Arc<Gauge>,
}

#[derive(Default)]
struct Gauge {
    in_bank: AtomicU64,
    idle: Notify,
}

impl Gauge {
    fn enter(&self) {
        self.in_bank.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        if self.in_bank.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Tripwire {
    fn new(sim: Simulator) -> Tripwire {
        Tripwire {
            sim,
            calls: AtomicU64::new(0),
            trip_at: AtomicU64::new(u64::MAX),
            tripped: Notify::new(),
            gauge: Arc::new(Gauge::default()),
        }
    }

    /// Trips on the `n`-th money-moving call from now (1 = the next one).
    pub fn arm(&self, n: u64) {
        let now = self.calls.load(Ordering::SeqCst);
        self.trip_at.store(now + n, Ordering::SeqCst);
    }

    /// Waits until the bank has finished every request it received: a real bank
    /// lands a request within the not-found grace period, and the test clock must
    /// not jump past that period while requests are still on their way.
    pub async fn bank_settled(&self) {
        loop {
            let idle = self.gauge.idle.notified();
            if self.gauge.in_bank.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    pub fn disarm(&self) {
        self.trip_at.store(u64::MAX, Ordering::SeqCst);
    }

    async fn after_call(&self) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.trip_at.load(Ordering::SeqCst) {
            self.tripped.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl BankApi for Tripwire {
    async fn deposit_transfer(&self, r: &TransferRequest) -> Result<TransferReceipt, BankError> {
        // The bank runs on its own: dropping the caller never cancels its work.
        let (sim, request, gauge) = (self.sim.clone(), r.clone(), self.gauge.clone());
        gauge.enter();
        let answer = tokio::spawn(async move {
            let answer = sim.deposit_transfer(&request).await;
            gauge.leave();
            answer
        })
        .await
        .unwrap();
        self.after_call().await;
        answer
    }
    async fn withdraw_transfer(&self, r: &TransferRequest) -> Result<TransferReceipt, BankError> {
        let (sim, request, gauge) = (self.sim.clone(), r.clone(), self.gauge.clone());
        gauge.enter();
        let answer = tokio::spawn(async move {
            let answer = sim.withdraw_transfer(&request).await;
            gauge.leave();
            answer
        })
        .await
        .unwrap();
        self.after_call().await;
        answer
    }
    async fn transfer_result(&self, i: &TransferInquiry) -> Result<TransferOutcome, BankError> {
        self.sim.transfer_result(i).await
    }
    async fn balance(&self, r: &AccountRequest) -> Result<Balance, BankError> {
        self.sim.balance(r).await
    }
    async fn account_holder(&self, r: &AccountRequest) -> Result<Holder, BankError> {
        self.sim.account_holder(r).await
    }
    async fn issue_virtual_account(
        &self,
        r: &IssueVirtualAccount,
    ) -> Result<VirtualAccount, BankError> {
        self.sim.issue_virtual_account(r).await
    }
    async fn virtual_deposits(&self, r: &DepositsRequest) -> Result<DepositPage, BankError> {
        self.sim.virtual_deposits(r).await
    }
    async fn virtual_deposit(&self, r: &DepositLookup) -> Result<VirtualDeposit, BankError> {
        self.sim.virtual_deposit(r).await
    }
    fn not_found_grace_ms(&self) -> u64 {
        self.sim.not_found_grace_ms()
    }
}
