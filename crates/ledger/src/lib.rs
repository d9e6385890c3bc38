//! The core ledger: double-entry accounts and transfers in one transactional
//! store, idempotent by client-chosen id, with holds, linked chains, late
//! rejection, and a gapless entry per balance change announced through the outbox.
//!
//! The ledger never calls a bank and never reads another crate's tables. All
//! balance changes go through the batching writer ([`writer`]); the pure rules live
//! in [`engine`], the SQL in [`db`].

mod account;
mod db;
mod engine;
mod entry;
mod error;
mod expiry;
mod transfer;
mod writer;

use std::sync::Arc;

use money::{AccountId, Clock, TransferId};
use store::Store;
use tokio::sync::{mpsc, oneshot};

pub use account::{Account, AccountFlags, CreateAccountResult, InvalidAccount, NewAccount};
pub use db::LedgerTotals;
pub use entry::{ENTRY_EVENT_KIND, Entry};
pub use error::LedgerError;
pub use expiry::{ExpiryWorker, Step as ExpiryStep};
pub use transfer::{
    InvalidTransfer, KindTag, PENDING_TIMEOUT_MS_MAX, PendingState,
    REQUESTED_AT_FUTURE_SKEW_MS_DEFAULT, Transfer, TransferInput, TransferKind, TransferOutcome,
    TransferRequest, TransferResult,
};

/// Limits and windows of one ledger.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// A request whose `requested_at` is older than this is rejected as `late`.
    pub late_window_ms: i64,
    /// Transfers per writer transaction.
    pub batch_transfers_max: usize,
    /// Transfers in one submission (one caller's call; a linked chain must fit).
    pub submission_transfers_max: usize,
    /// Submissions waiting for the writer before callers wait to enqueue.
    pub queue_submissions_max: usize,
    /// Ids per lookup call and entries per page.
    pub lookup_ids_max: usize,
    pub entries_page_max: usize,
    /// Accounts per create call.
    pub accounts_per_call_max: usize,
}

impl Default for LedgerConfig {
    fn default() -> LedgerConfig {
        LedgerConfig {
            late_window_ms: 60_000,
            batch_transfers_max: 4_096,
            submission_transfers_max: 8_190,
            queue_submissions_max: 4_096,
            lookup_ids_max: 8_190,
            entries_page_max: 1_000,
            accounts_per_call_max: 8_190,
        }
    }
}

/// A handle to the ledger. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
    jobs: mpsc::Sender<writer::Job>,
}

/// Every migration the ledger needs, including the outbox it writes to.
pub async fn migrate(store: &Store) -> Result<(), LedgerError> {
    store.migrate("events", events::migrations()).await?;
    store.migrate("ledger", db::MIGRATIONS).await?;
    Ok(())
}

impl Ledger {
    /// Migrates the store and starts the batching writer.
    pub async fn open(
        store: Store,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        migrate(&store).await?;
        let jobs = writer::spawn(store.clone(), clock.clone(), config.clone());
        Ok(Ledger {
            store,
            clock,
            config,
            jobs,
        })
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens accounts. An id that exists is compared, never changed.
    pub async fn create_accounts(
        &self,
        accounts: &[NewAccount],
    ) -> Result<Vec<CreateAccountResult>, LedgerError> {
        check_size(
            "accounts per call",
            accounts.len(),
            self.config.accounts_per_call_max,
        )?;
        db::create_accounts(&self.store, accounts, self.clock.now()).await
    }

    /// Submits transfers through the batching writer and waits for their results,
    /// one per request, in order.
    pub async fn submit(
        &self,
        requests: Vec<TransferRequest>,
    ) -> Result<Vec<TransferResult>, LedgerError> {
        check_size(
            "transfers per submission",
            requests.len(),
            self.config.submission_transfers_max,
        )?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Job::Transfers { requests, reply })
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Queues several submissions before waiting for any, so the writer can batch
    /// them; their results come back in order, exactly as if applied one by one.
    pub async fn submit_pipelined(
        &self,
        submissions: Vec<Vec<TransferRequest>>,
    ) -> Result<Vec<Vec<TransferResult>>, LedgerError> {
        let mut answers = Vec::with_capacity(submissions.len());
        for requests in submissions {
            check_size(
                "transfers per submission",
                requests.len(),
                self.config.submission_transfers_max,
            )?;
            let (reply, answer) = oneshot::channel();
            self.jobs
                .send(writer::Job::Transfers { requests, reply })
                .await
                .map_err(|_| LedgerError::WriterStopped)?;
            answers.push(answer);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.map_err(|_| LedgerError::WriterStopped)??);
        }
        Ok(results)
    }

    /// Submits one transfer.
    pub async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, LedgerError> {
        let mut results = self.submit(vec![request]).await?;
        results.pop().ok_or(LedgerError::WriterStopped)
    }

    /// The naive path, for benchmarks only: one transaction per submission, straight
    /// to the store with row locks, no batching.
    pub async fn submit_unbatched(
        &self,
        requests: &[TransferRequest],
    ) -> Result<Vec<TransferResult>, LedgerError> {
        check_size(
            "transfers per submission",
            requests.len(),
            self.config.submission_transfers_max,
        )?;
        let mut results = writer::apply(
            &self.store,
            self.clock.now(),
            self.config.late_window_ms,
            &[requests],
        )
        .await?;
        Ok(results.pop().unwrap_or_default())
    }

    /// Expires up to `limit` holds whose deadline has passed; returns how many.
    pub async fn expire_holds(&self, limit: i64) -> Result<usize, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Job::Expire { limit, reply })
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// The accounts that exist among `ids`, in no particular order.
    pub async fn lookup_accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, LedgerError> {
        check_size("ids per lookup", ids.len(), self.config.lookup_ids_max)?;
        db::lookup_accounts(&self.store, ids).await
    }

    /// The applied transfers among `ids`, in no particular order. Failed ones are
    /// not transfers; ask [`Ledger::outcome`] for those.
    pub async fn lookup_transfers(&self, ids: &[TransferId]) -> Result<Vec<Transfer>, LedgerError> {
        check_size("ids per lookup", ids.len(), self.config.lookup_ids_max)?;
        Ok(db::lookup_transfers(&self.store, ids).await?.0)
    }

    /// What happened to a transfer id: applied, failed (and why) or never seen.
    pub async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, LedgerError> {
        let (transfers, failures) = db::lookup_transfers(&self.store, &[id]).await?;
        if let Some(transfer) = transfers.into_iter().next() {
            return Ok(TransferOutcome::Applied { transfer });
        }
        if let Some(failure) = failures.into_iter().next() {
            return Ok(TransferOutcome::Failed {
                result: failure.result,
            });
        }
        Ok(TransferOutcome::NotFound)
    }

    /// Entries of `account` from `from_seq` on, at most `limit` (capped at
    /// `entries_page_max`), in seq order.
    pub async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, LedgerError> {
        let limit = limit.min(self.config.entries_page_max);
        db::entries(&self.store, account, from_seq.max(1), limit as i64).await
    }

    /// Sums and consistency counts over the whole ledger.
    pub async fn totals(&self) -> Result<LedgerTotals, LedgerError> {
        db::totals(&self.store).await
    }
}

impl LedgerTotals {
    /// Each of DESIGN.md's ledger invariants, by name, with whether it holds.
    pub fn invariants(&self) -> Vec<(&'static str, bool)> {
        vec![
            (
                "posted debits equal posted credits",
                self.debits_posted == self.credits_posted,
            ),
            (
                "pending debits equal pending credits",
                self.debits_pending == self.credits_pending,
            ),
            (
                "no account breaks its balance flags",
                self.accounts_breaking_flags == 0,
            ),
            (
                "every account's entries are seq 1..n without gaps and end at its balance",
                self.accounts_with_broken_entries == 0,
            ),
        ]
    }

    pub fn all_hold(&self) -> bool {
        self.invariants().iter().all(|(_, holds)| *holds)
    }
}

fn check_size(what: &'static str, count: usize, max: usize) -> Result<(), LedgerError> {
    if count > max {
        return Err(LedgerError::TooLarge { what, count, max });
    }
    Ok(())
}
