//! Daily fee settlement. Six fee kinds accrue into each loan's fee account in the
//! ledger; for every business day four idempotent modules settle them:
//! [`Fees::record`] gathers the day's accruals into items, [`Fees::pay`] pays each
//! item to the settlement account through the bank in chunks under the per-call
//! limit, [`Fees::verify`] settles unknown outcomes and confirms the day, and
//! [`Fees::withdraw`] moves the day's total to the corporate account once. A
//! [`scheduler::Scheduler`] calls them in any order, as often as it likes.
//!
//! Every module takes a try-lock per (module, day) and answers `busy` at once when
//! it is held, checks its precondition (work already done is `already_done`), and
//! records its run. Only `fees::pay` creates payout chunks; a chunk is stored with
//! its `bank_tran_id` and held in the ledger before it is sent; an outcome the
//! bank left unknown is never sent again under a new id until the result inquiry
//! has proven it failed.

pub mod accrual;
pub mod bench;
mod breaker;
pub mod chunking;
mod config;
mod day;
mod db;
mod error;
pub mod import;
mod kind;
mod modules;
pub mod report;
pub mod scheduler;
mod sending;
pub mod workload;

use std::sync::Arc;

use bank::BankApi;
use ledger::Ledger;
use money::{Clock, Timestamp};
use store::Store;

pub use config::{FeesConfig, accounts};
pub use day::{BadDay, BusinessDay};
pub use error::FeesError;
pub use kind::FeeKind;
pub use modules::{
    BlockedItem, ChunkState, DayState, DayStatus, Module, Outcome, RunReport, Trigger,
};

/// A handle on fee settlement. Cheap to clone.
#[derive(Clone)]
pub struct Fees {
    store: Store,
    ledger: Ledger,
    bank: Arc<dyn BankApi>,
    clock: Arc<dyn Clock>,
    config: Arc<FeesConfig>,
    /// Pauses sending to this bank while it answers "not processed".
    breaker: Arc<breaker::Breaker>,
    /// Set once shutdown is asked: a payout or withdrawal sends no new window
    /// (the calls in flight finish and are recorded); the next run resumes.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Fees {
    /// Migrates `fees` tables and opens the ledger accounts fees needs (fee source,
    /// settlement, corporate). The ledger must be open on the same store.
    pub async fn open(
        ledger: Ledger,
        bank: Arc<dyn BankApi>,
        clock: Arc<dyn Clock>,
        config: FeesConfig,
    ) -> Result<Fees, FeesError> {
        config.check()?;
        let store = ledger.store().clone();
        store.migrate(db::COMPONENT, db::MIGRATIONS).await?;
        let fees = Fees {
            store,
            ledger,
            bank,
            clock,
            breaker: Arc::new(breaker::Breaker::new(
                config.breaker_transients_to_open,
                config.breaker_open_ms,
            )),
            config: Arc::new(config),
            stopping: Arc::default(),
        };
        accounts::open_house_accounts(&fees.ledger, &fees.config.ids).await?;
        Ok(fees)
    }

    pub fn config(&self) -> &FeesConfig {
        &self.config
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn bank(&self) -> &Arc<dyn BankApi> {
        &self.bank
    }

    /// How long a "not found" must wait before it proves a chunk failed: the
    /// configured override, else the bank connector's own.
    pub fn not_found_grace_ms(&self) -> i64 {
        self.config
            .not_found_grace_ms
            .unwrap_or_else(|| i64::try_from(self.bank.not_found_grace_ms()).unwrap_or(i64::MAX))
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Asks every run of this handle and its clones to stop after the window of
    /// bank calls in flight: nothing new is sent, what was sent is recorded, and
    /// the unsent chunks wait (held) for the next run. For a process shutting down.
    pub fn stop_after_window(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Fees::stop_after_window`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }
}
