//! The bank simulator: the same [`BankApi`] in process ([`Simulator`]) and over
//! HTTP ([`serve`]), with durable state in its own database (component `banksim`),
//! knobs for latency, limits and faults ([`SimConfig`]), and admin operations for
//! tests and demos (open accounts, pay salaries, freeze, rename, statements).
//!
//! The simulator never moves money twice for one `bank_tran_id`: the id is the
//! primary key of its transfers table, checked and written in the same transaction
//! that changes balances. Faults and latency are drawn from a seeded RNG per key, so
//! a run does not depend on arrival order.

mod db;
pub mod faults;
mod history;
mod kftc_wire;
mod legacy_wire;
mod nh_wire;
mod server;
mod statement;
mod submissions;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use money::{Clock, Krw};
use serde::{Deserialize, Serialize};
use store::{Store, StoreError};

pub use db::Movement;
pub use faults::{FaultRates, FaultsInjected, PPM_ALWAYS};
pub use server::{
    AdminClient, ServerConfig, SimServer, StatementBody, StatsBody, router, serve, serve_simulator,
    serve_simulator_tls,
};
pub use submissions::{Repeat, SubmissionsReport};

use crate::types::{
    AccountNumber, AccountRequest, Balance, DepositLookup, DepositPage, DepositsRequest, Holder,
    HolderName, IssueVirtualAccount, TranDate, TransferInquiry, TransferKind, TransferOutcome,
    TransferReceipt, TransferRequest, VirtualAccount, VirtualDeposit,
};
use crate::{BankApi, BankError};
use db::{AccountChange, NewMovement, StoredTransfer, db_error};

/// How slow the simulated bank is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// A few milliseconds per call, for tests.
    Test,
    /// 2–3 seconds per call, like the real payout API.
    Realistic,
}

impl Profile {
    pub fn parse(text: &str) -> Option<Profile> {
        match text {
            "test" => Some(Profile::Test),
            "realistic" => Some(Profile::Realistic),
            _ => None,
        }
    }
}

/// A daily window (KST minutes since midnight, `start <= minute < end`) in which
/// every call is refused with [`BankError::Maintenance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub start_minute_kst: u32,
    pub end_minute_kst: u32,
}

/// Every knob of the simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub latency_ms_min: u64,
    pub latency_ms_max: u64,
    /// Largest single deposit transfer (the payout API's per-call limit).
    pub deposit_amount_max_krw: Krw,
    /// Largest single withdraw transfer.
    pub withdraw_amount_max_krw: Krw,
    /// Requests handled at once by the HTTP server; more are answered 429.
    pub concurrent_max: usize,
    /// Requests per second per client id (`x-client-id`, else the peer address);
    /// more are answered 429. `None`: unlimited.
    pub requests_per_s_per_client_max: Option<u32>,
    pub faults: FaultRates,
    pub maintenance: Option<MaintenanceWindow>,
    /// Every transfer is answered 429 (nothing processed) until this time, as from
    /// a bank that throttles for a while and then recovers.
    pub rate_limited_until_ms: Option<i64>,
    /// How long the server holds the answer of a timeout-after-commit fault; longer
    /// than any client's timeout.
    pub timeout_hold_ms: u64,
    /// Extra latency of a call the `slow_ppm` fault picked.
    pub slow_extra_ms: u64,
    /// Largest request body the server reads.
    pub body_bytes_max: usize,
    /// Largest page of deposits or statement lines one call returns.
    pub page_max: u32,
    /// Lifetime of an OAuth token from the KFTC token endpoint (90 days, as the
    /// open-banking centre issues them).
    pub token_ttl_s: u64,
}

impl SimConfig {
    pub fn for_profile(profile: Profile, seed: u64) -> SimConfig {
        let (latency_ms_min, latency_ms_max) = match profile {
            Profile::Test => (1, 5),
            Profile::Realistic => (2_000, 3_000),
        };
        SimConfig {
            seed,
            latency_ms_min,
            latency_ms_max,
            deposit_amount_max_krw: Krw::new(100_000),
            withdraw_amount_max_krw: Krw::new(10_000_000),
            concurrent_max: 64,
            requests_per_s_per_client_max: None,
            faults: FaultRates::default(),
            maintenance: None,
            rate_limited_until_ms: None,
            timeout_hold_ms: 30_000,
            slow_extra_ms: 250,
            body_bytes_max: 16 * 1024,
            page_max: 500,
            token_ttl_s: 90 * 24 * 60 * 60,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator database: {0}")]
    Store(#[from] StoreError),
    #[error("simulator server: {0}")]
    Io(#[from] std::io::Error),
}

/// What a transfer call produced, before the transport decides how to answer.
pub(crate) enum TransferAnswer {
    Done(Result<TransferReceipt, BankError>),
    /// Money moved, and the caller must see a timeout.
    CommittedThenTimeout(TransferReceipt),
}

/// The simulated bank. Cheap to clone; clones share the database and counters.
#[derive(Clone)]
pub struct Simulator {
    store: Store,
    config: Arc<SimConfig>,
    clock: Arc<dyn Clock>,
    /// Keys the RNG of calls that carry no `bank_tran_id`, so they too replay.
    call_counter: Arc<AtomicU64>,
    /// Counts calls per `bank_tran_id`, so a retried id draws a fresh 5xx roll.
    attempts: Arc<faults::Attempts>,
    /// How many faults this simulator injected, for reliability reports.
    injected: Arc<faults::InjectedCounters>,
    /// Transfer requests per `bank_tran_id`, for "no id was sent twice" checks.
    submissions: Arc<submissions::Submissions>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.config)
            .finish()
    }
}

/// Admin: open an account with an opening balance (money from outside the bank).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenAccount {
    pub account_number: AccountNumber,
    pub holder_name: HolderName,
    pub balance_krw: Krw,
}

/// Admin: money arriving from outside the bank (a salary) into an account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Salary {
    pub account_number: AccountNumber,
    pub amount_krw: Krw,
    pub depositor_name: String,
}

impl Simulator {
    /// Migrates the simulator's tables in `store` and returns a simulator on them.
    pub async fn open(
        store: Store,
        config: SimConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Simulator, SimError> {
        store.migrate(db::COMPONENT, db::MIGRATIONS).await?;
        Ok(Simulator {
            store,
            config: Arc::new(config),
            clock,
            call_counter: Arc::new(AtomicU64::new(0)),
            attempts: Arc::new(faults::Attempts::default()),
            injected: Arc::new(faults::InjectedCounters::default()),
            submissions: Arc::new(submissions::Submissions::default()),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Transfer requests per `bank_tran_id` so far (this simulator and its clones).
    pub fn submissions(&self) -> SubmissionsReport {
        self.submissions.report()
    }

    /// Counts a transfer request the server refused before the simulator saw it
    /// (429 at the door): the bank received it all the same.
    pub(crate) fn count_refused(&self, bank_tran_id: &str) {
        self.submissions.count(bank_tran_id);
    }

    /// The faults injected so far by this simulator (and its clones).
    pub fn faults_injected(&self) -> faults::FaultsInjected {
        self.injected.snapshot()
    }

    fn decide(&self, key: &str, attempt: u32) -> faults::Decision {
        faults::decide(
            self.config.seed,
            key,
            attempt,
            self.config.latency_ms_min,
            self.config.latency_ms_max,
            &self.config.faults,
        )
    }

    /// Latency and maintenance for calls without a `bank_tran_id`.
    async fn enter_plain_call(&self) -> Result<(), BankError> {
        let n = self.call_counter.fetch_add(1, Ordering::Relaxed);
        let decision = self.decide(&format!("call:{n}"), 0);
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
        self.check_maintenance()
    }

    fn check_maintenance(&self) -> Result<(), BankError> {
        if let Some(window) = self.config.maintenance {
            let minute = TranDate::kst_minute_of_day(self.clock.now());
            if (window.start_minute_kst..window.end_minute_kst).contains(&minute) {
                return Err(BankError::Maintenance);
            }
        }
        Ok(())
    }

    pub(crate) async fn transfer(
        &self,
        kind: TransferKind,
        request: &TransferRequest,
    ) -> TransferAnswer {
        // Counted as received now; a request cut off by its client's disconnect
        // before the decision (the server drops this future) rolled back and had
        // no effect, and is counted as cut off as well.
        let arrival = self.submissions.arrive(request.bank_tran_id.as_str());
        let answer = self.transfer_inner(kind, request).await;
        arrival.decided();
        let label = match &answer {
            TransferAnswer::Done(Ok(_)) => "ok",
            TransferAnswer::Done(Err(error)) => error.code(),
            TransferAnswer::CommittedThenTimeout(_) => "committed_then_timeout",
        };
        metrics::counter!("banksim_transfers_total", "kind" => kind.as_str(), "outcome" => label)
            .increment(1);
        tracing::debug!(bank_tran_id = %request.bank_tran_id, kind = kind.as_str(), outcome = label, "simulated transfer");
        answer
    }

    async fn transfer_inner(
        &self,
        kind: TransferKind,
        request: &TransferRequest,
    ) -> TransferAnswer {
        // Bad input is refused before anything is read or written.
        if !request.amount_krw.is_positive() {
            return TransferAnswer::Done(Err(BankError::BadAmount(format!(
                "amount_krw must be positive, got {}",
                request.amount_krw.get()
            ))));
        }
        if request.from_account == request.to_account {
            return TransferAnswer::Done(Err(BankError::InvalidRequest(
                "from_account and to_account are the same".into(),
            )));
        }
        let decision = self.decide(
            request.bank_tran_id.as_str(),
            self.attempts.next(request.bank_tran_id.as_str()),
        );
        let injected = &self.injected;
        let mut latency_ms = decision.latency_ms;
        if decision.slow {
            injected.count(&injected.slow);
            latency_ms = latency_ms.saturating_add(self.config.slow_extra_ms);
        }
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        if let Err(error) = self.check_maintenance() {
            injected.count(&injected.maintenance);
            return TransferAnswer::Done(Err(error));
        }
        if decision.maintenance {
            injected.count(&injected.maintenance);
            return TransferAnswer::Done(Err(BankError::Maintenance));
        }
        let throttled = self
            .config
            .rate_limited_until_ms
            .is_some_and(|until_ms| self.clock.now().unix_ms() < until_ms);
        if decision.rate_limited || throttled {
            injected.count(&injected.rate_limited);
            return TransferAnswer::Done(Err(BankError::RateLimited));
        }
        if decision.server_error_before_commit {
            injected.count(&injected.server_error_before_commit);
            return TransferAnswer::Done(Err(BankError::Server {
                status: 500,
                message: "simulated failure before commit".into(),
            }));
        }
        match self.commit_transfer(kind, request, &decision).await {
            Ok((stored, fresh)) => {
                let result = stored.result();
                if fresh {
                    match &stored.failure {
                        Some(BankError::AccountFrozen) if decision.frozen_account => {
                            injected.count(&injected.frozen_account);
                        }
                        Some(BankError::HolderNameMismatch) if decision.holder_name_changed => {
                            injected.count(&injected.holder_name_changed);
                        }
                        _ => {}
                    }
                }
                match result {
                    Ok(receipt) if fresh && decision.timeout_after_commit => {
                        injected.count(&injected.timeout_after_commit);
                        TransferAnswer::CommittedThenTimeout(receipt)
                    }
                    other => TransferAnswer::Done(other),
                }
            }
            Err(error) => TransferAnswer::Done(Err(error)),
        }
    }

    /// Decides and records a transfer in one transaction. Returns the stored
    /// transfer and whether this call created it (false: a replay of the same id).
    async fn commit_transfer(
        &self,
        kind: TransferKind,
        request: &TransferRequest,
        decision: &faults::Decision,
    ) -> Result<(StoredTransfer, bool), BankError> {
        let mut tx = self.store.begin().await.map_err(db_error)?;
        if let Some(stored) = db::find_transfer_tx(&mut tx, &request.bank_tran_id).await? {
            tx.rollback().await.map_err(db_error)?;
            return Ok((stored, false));
        }
        let now_ms = self.clock.now().unix_ms();
        let failure = self
            .check_and_move(&mut tx, kind, request, decision, now_ms)
            .await?;
        let stored = StoredTransfer {
            receipt: TransferReceipt {
                bank_tran_id: request.bank_tran_id.clone(),
                tran_date: request.tran_date,
                kind,
                from_account: request.from_account.clone(),
                to_account: request.to_account.clone(),
                amount_krw: request.amount_krw,
                processed_at_ms: now_ms,
            },
            failure,
        };
        if !db::insert_transfer(&mut tx, &stored).await? {
            // Another call with the same id committed between our read and insert
            // (possible on PostgreSQL): undo ours and answer with theirs.
            tx.rollback().await.map_err(db_error)?;
            return match db::find_transfer(&self.store, &request.bank_tran_id).await? {
                Some(theirs) => Ok((theirs, false)),
                None => Err(db_error("transfer vanished after a unique violation")),
            };
        }
        if stored.failure.is_none() {
            db::insert_movement(
                &mut tx,
                &NewMovement {
                    kind: match kind {
                        TransferKind::Deposit => "deposit_transfer",
                        TransferKind::Withdraw => "withdraw_transfer",
                    },
                    bank_tran_id: Some(request.bank_tran_id.as_str()),
                    from_account: Some(request.from_account.as_str()),
                    to_account: request.to_account.as_str(),
                    amount_krw: request.amount_krw,
                    depositor_name: "",
                    repayment_krw: Krw::ZERO,
                    suspended_krw: Krw::ZERO,
                    at_ms: now_ms,
                },
            )
            .await?;
        }
        match tx.commit().await {
            Ok(()) => Ok((stored, true)),
            Err(error) => {
                // Unique violations can surface at commit on PostgreSQL; anything
                // else leaves the outcome unknown.
                match db::find_transfer(&self.store, &request.bank_tran_id).await? {
                    Some(theirs) => Ok((theirs, false)),
                    None => Err(db_error(error)),
                }
            }
        }
    }

    /// Checks every refusal rule and, if none applies, moves the money. Returns the
    /// refusal to record, if any.
    async fn check_and_move(
        &self,
        tx: &mut store::Tx,
        kind: TransferKind,
        request: &TransferRequest,
        decision: &faults::Decision,
        now_ms: i64,
    ) -> Result<Option<BankError>, BankError> {
        let limit = match kind {
            TransferKind::Deposit => self.config.deposit_amount_max_krw,
            TransferKind::Withdraw => self.config.withdraw_amount_max_krw,
        };
        if request.amount_krw > limit {
            return Ok(Some(BankError::OverPerCallLimit {
                limit_krw: limit.get(),
            }));
        }
        // Lock in a fixed order so two opposite transfers cannot deadlock.
        let (first, second) = if request.from_account <= request.to_account {
            (&request.from_account, &request.to_account)
        } else {
            (&request.to_account, &request.from_account)
        };
        let first = db::lock_account(tx, first.as_str()).await?;
        let second = db::lock_account(tx, second.as_str()).await?;
        let (Some(first), Some(second)) = (first, second) else {
            return Ok(Some(BankError::AccountNotFound));
        };
        let (from, to) = if first.account_number == request.from_account.as_str() {
            (first, second)
        } else {
            (second, first)
        };
        if from.frozen || to.frozen || decision.frozen_account {
            return Ok(Some(BankError::AccountFrozen));
        }
        let counterparty = match kind {
            TransferKind::Deposit => &to,
            TransferKind::Withdraw => &from,
        };
        if counterparty.holder_name != request.holder_name.as_str() || decision.holder_name_changed
        {
            return Ok(Some(BankError::HolderNameMismatch));
        }
        if from.balance_krw < request.amount_krw {
            return Ok(Some(BankError::InsufficientFunds));
        }
        let overflow = |_| db_error("balance arithmetic overflowed");
        let from_after = from
            .balance_krw
            .checked_sub(request.amount_krw)
            .map_err(overflow)?;
        let to_after = to
            .balance_krw
            .checked_add(request.amount_krw)
            .map_err(overflow)?;
        // Money is conserved by every transfer; a mismatch here is a bug.
        let before = from
            .balance_krw
            .checked_add(to.balance_krw)
            .map_err(overflow)?;
        let after = from_after.checked_add(to_after).map_err(overflow)?;
        if before != after {
            return Err(db_error("transfer would not conserve money"));
        }
        db::set_balance(tx, &from.account_number, from_after).await?;
        db::set_balance(tx, &to.account_number, to_after).await?;
        tracing::debug!(at_ms = now_ms, "balances moved");
        Ok(None)
    }

    // ---- admin ----

    /// Opens an account with an opening balance (recorded as a movement from outside).
    pub async fn open_account(&self, open: &OpenAccount) -> Result<(), BankError> {
        if open.balance_krw.get() < 0 {
            return Err(BankError::BadAmount(
                "opening balance must not be negative".into(),
            ));
        }
        let mut tx = self.store.begin().await.map_err(db_error)?;
        if !db::insert_account(&mut tx, &open.account_number, &open.holder_name, None).await? {
            tx.rollback().await.map_err(db_error)?;
            return Err(BankError::InvalidRequest(format!(
                "account {} already exists",
                open.account_number
            )));
        }
        if open.balance_krw.is_positive() {
            db::set_balance(&mut tx, open.account_number.as_str(), open.balance_krw).await?;
            db::insert_movement(
                &mut tx,
                &NewMovement {
                    kind: "opening",
                    bank_tran_id: None,
                    from_account: None,
                    to_account: open.account_number.as_str(),
                    amount_krw: open.balance_krw,
                    depositor_name: "",
                    repayment_krw: Krw::ZERO,
                    suspended_krw: Krw::ZERO,
                    at_ms: self.clock.now().unix_ms(),
                },
            )
            .await?;
        }
        tx.commit().await.map_err(db_error)
    }

    /// Pays a salary into an account and records how the bank split it: all of it
    /// suspended if the account is frozen, else up to the repayment due swept.
    pub async fn pay_salary(&self, salary: &Salary) -> Result<VirtualDeposit, BankError> {
        if !salary.amount_krw.is_positive() {
            return Err(BankError::BadAmount("salary must be positive".into()));
        }
        let mut tx = self.store.begin().await.map_err(db_error)?;
        let Some(account) = db::lock_account(&mut tx, salary.account_number.as_str()).await? else {
            tx.rollback().await.map_err(db_error)?;
            return Err(BankError::AccountNotFound);
        };
        let overflow = |_| BankError::BadAmount("salary overflows the balance".into());
        let (repayment, suspended) = if account.frozen {
            (Krw::ZERO, salary.amount_krw)
        } else {
            (account.repayment_due_krw.min(salary.amount_krw), Krw::ZERO)
        };
        let balance = account
            .balance_krw
            .checked_add(salary.amount_krw)
            .map_err(overflow)?;
        let due = account
            .repayment_due_krw
            .checked_sub(repayment)
            .map_err(overflow)?;
        db::set_balance(&mut tx, &account.account_number, balance).await?;
        db::update_account(
            &mut tx,
            &account.account_number,
            AccountChange::RepaymentDue(due),
        )
        .await?;
        let at_ms = self.clock.now().unix_ms();
        let seq = db::insert_movement(
            &mut tx,
            &NewMovement {
                kind: "salary",
                bank_tran_id: None,
                from_account: None,
                to_account: &account.account_number,
                amount_krw: salary.amount_krw,
                depositor_name: &salary.depositor_name,
                repayment_krw: repayment,
                suspended_krw: suspended,
                at_ms,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(VirtualDeposit {
            deposit_id: crate::DepositId::from_sequence(seq)?,
            account_number: salary.account_number.clone(),
            depositor_name: salary.depositor_name.clone(),
            amount_krw: salary.amount_krw,
            repayment_krw: repayment,
            suspended_krw: suspended,
            cursor: seq,
            at_ms,
        })
    }

    pub async fn set_frozen(&self, account: &AccountNumber, frozen: bool) -> Result<(), BankError> {
        self.change_account(account, AccountChange::Frozen(frozen))
            .await
    }

    pub async fn rename_holder(
        &self,
        account: &AccountNumber,
        holder: &HolderName,
    ) -> Result<(), BankError> {
        self.change_account(account, AccountChange::Holder(holder.as_str()))
            .await
    }

    /// Sets how much of the next salaries the bank sweeps to repay the user's advance.
    pub async fn set_repayment_due(
        &self,
        account: &AccountNumber,
        due: Krw,
    ) -> Result<(), BankError> {
        if due.get() < 0 {
            return Err(BankError::BadAmount(
                "repayment due must not be negative".into(),
            ));
        }
        self.change_account(account, AccountChange::RepaymentDue(due))
            .await
    }

    async fn change_account(
        &self,
        account: &AccountNumber,
        change: AccountChange<'_>,
    ) -> Result<(), BankError> {
        let mut tx = self.store.begin().await.map_err(db_error)?;
        if db::update_account(&mut tx, account.as_str(), change).await? {
            tx.commit().await.map_err(db_error)
        } else {
            tx.rollback().await.map_err(db_error)?;
            Err(BankError::AccountNotFound)
        }
    }

    /// The holder's name of `account`, `None` when there is no such account. No
    /// latency, no faults: the wires use it to fill what their requests omit.
    pub(crate) async fn holder_of(
        &self,
        account: &AccountNumber,
    ) -> Result<Option<HolderName>, BankError> {
        match db::read_account(&self.store, account.as_str()).await? {
            Some(row) => Ok(Some(HolderName::new(&row.holder_name)?)),
            None => Ok(None),
        }
    }

    /// Every movement after `since_seq` (optionally touching one account), oldest
    /// first, at most `page_max`.
    pub async fn statement(
        &self,
        account: Option<&AccountNumber>,
        since_seq: i64,
    ) -> Result<Vec<Movement>, BankError> {
        db::movements(
            &self.store,
            account.map(AccountNumber::as_str),
            since_seq,
            i64::from(self.config.page_max),
        )
        .await
    }

    /// Checks that all balances add up to all money that entered from outside;
    /// returns that total. An error here is a simulator bug.
    pub async fn check_conservation(&self) -> Result<Krw, BankError> {
        let (balances, external) = db::totals(&self.store).await?;
        if balances != external {
            tracing::error!(%balances, %external, "simulator lost or invented money");
            return Err(db_error("balances do not add up"));
        }
        Ok(balances)
    }
}

/// A 14-digit virtual account number derived from the user id, so issuing is
/// idempotent and needs no counter.
fn virtual_account_number(user: crate::UserId) -> Result<AccountNumber, BankError> {
    let hash = faults::fnv1a64(user.as_uuid().as_bytes()) % 1_000_000_000_000;
    AccountNumber::new(&format!("79{hash:012}"))
}

#[async_trait]
impl BankApi for Simulator {
    async fn deposit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        match self.transfer(TransferKind::Deposit, request).await {
            TransferAnswer::Done(result) => result,
            TransferAnswer::CommittedThenTimeout(receipt) => {
                tracing::info!(bank_tran_id = %receipt.bank_tran_id, "fault: committed, answering with a timeout");
                Err(BankError::Timeout { timeout_ms: 0 })
            }
        }
    }

    async fn withdraw_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        match self.transfer(TransferKind::Withdraw, request).await {
            TransferAnswer::Done(result) => result,
            TransferAnswer::CommittedThenTimeout(receipt) => {
                tracing::info!(bank_tran_id = %receipt.bank_tran_id, "fault: committed, answering with a timeout");
                Err(BankError::Timeout { timeout_ms: 0 })
            }
        }
    }

    async fn transfer_result(
        &self,
        inquiry: &TransferInquiry,
    ) -> Result<TransferOutcome, BankError> {
        self.enter_plain_call().await?;
        match db::find_transfer(&self.store, &inquiry.bank_tran_id).await? {
            Some(stored) if stored.receipt.tran_date == inquiry.tran_date => Ok(stored.outcome()),
            _ => Err(BankError::TransferNotFound),
        }
    }

    async fn balance(&self, request: &AccountRequest) -> Result<Balance, BankError> {
        self.enter_plain_call().await?;
        let account = db::read_account(&self.store, request.account_number.as_str())
            .await?
            .ok_or(BankError::AccountNotFound)?;
        Ok(Balance {
            account_number: request.account_number.clone(),
            balance_krw: account.balance_krw,
        })
    }

    async fn account_holder(&self, request: &AccountRequest) -> Result<Holder, BankError> {
        self.enter_plain_call().await?;
        let account = db::read_account(&self.store, request.account_number.as_str())
            .await?
            .ok_or(BankError::AccountNotFound)?;
        if account.frozen {
            return Err(BankError::AccountFrozen);
        }
        Ok(Holder {
            account_number: request.account_number.clone(),
            holder_name: HolderName::new(&account.holder_name)?,
        })
    }

    async fn issue_virtual_account(
        &self,
        request: &IssueVirtualAccount,
    ) -> Result<VirtualAccount, BankError> {
        self.enter_plain_call().await?;
        let number = virtual_account_number(request.user_id)?;
        let mut tx = self.store.begin().await.map_err(db_error)?;
        db::insert_account(
            &mut tx,
            &number,
            &request.holder_name,
            Some(request.user_id),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        let (account_number, holder_name) = db::virtual_account_of(&self.store, request.user_id)
            .await?
            .ok_or_else(|| db_error("virtual account number collides with another account"))?;
        Ok(VirtualAccount {
            user_id: request.user_id,
            account_number: AccountNumber::new(&account_number)?,
            holder_name: HolderName::new(&holder_name)?,
        })
    }

    async fn virtual_deposits(&self, request: &DepositsRequest) -> Result<DepositPage, BankError> {
        self.enter_plain_call().await?;
        let limit = request.limit.clamp(1, self.config.page_max);
        let deposits = db::virtual_deposits(
            &self.store,
            request.account_number.as_ref().map(AccountNumber::as_str),
            request.since_cursor,
            i64::from(limit),
        )
        .await?;
        let next_cursor = deposits.last().map_or(request.since_cursor, |d| d.cursor);
        Ok(DepositPage {
            deposits,
            next_cursor,
        })
    }

    async fn virtual_deposit(&self, request: &DepositLookup) -> Result<VirtualDeposit, BankError> {
        self.enter_plain_call().await?;
        db::virtual_deposit(&self.store, &request.deposit_id)
            .await?
            .ok_or(BankError::DepositNotFound)
    }

    /// A transfer commits after its drawn latency (plus the slow fault's extra), so
    /// nothing can land later than that, with a second to spare.
    fn not_found_grace_ms(&self) -> u64 {
        self.config
            .latency_ms_max
            .saturating_add(self.config.slow_extra_ms)
            .saturating_add(1_000)
    }
}
