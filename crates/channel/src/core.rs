//! The channel's only door to the core ledger: the [`CoreClient`] trait, its error,
//! and the in-process implementation over [`ledger::Ledger`].
//!
//! The channel never touches the core's tables; everything it knows about money
//! comes through these five calls. A `transfer` error never says whether the core
//! applied the transfer: callers treat every error there as "outcome unknown" and
//! ask [`CoreClient::outcome`] later, never send again.

use async_trait::async_trait;
use ledger::{Account, Entry, Ledger, TransferOutcome, TransferRequest, TransferResult};
use money::{AccountId, TransferId};

/// Why the core gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no answer from the core within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("could not reach the core: {0}")]
    Unreachable(String),
    /// The core answered with an error status and a stable code.
    #[error("the core answered {status} {code}: {message}")]
    Answered {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the core's answer could not be read: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
}

impl CoreError {
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Timeout { .. } => "core_timeout",
            CoreError::Unreachable(_) => "core_unreachable",
            CoreError::Answered { .. } => "core_error",
            CoreError::BadAnswer(_) => "core_bad_answer",
            CoreError::Ledger(error) => error.code(),
        }
    }
}

/// The core ledger as the channel sees it.
#[async_trait]
pub trait CoreClient: Send + Sync + 'static {
    /// Submits one transfer. An error means the outcome is unknown.
    async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, CoreError>;

    /// What the core knows about a transfer id.
    async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, CoreError>;

    /// Entries of `account` from `from_seq` on, at most `limit`, in seq order.
    async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, CoreError>;

    async fn account(&self, id: AccountId) -> Result<Option<Account>, CoreError>;

    /// The core's late window: a request older than this is never applied.
    async fn late_window_ms(&self) -> Result<i64, CoreError>;
}

/// The core in the same process: calls go straight to the ledger handle.
#[derive(Clone)]
pub struct InProcessCore {
    ledger: Ledger,
}

impl InProcessCore {
    pub fn new(ledger: Ledger) -> InProcessCore {
        InProcessCore { ledger }
    }
}

#[async_trait]
impl CoreClient for InProcessCore {
    async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, CoreError> {
        Ok(self.ledger.transfer(request).await?)
    }

    async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, CoreError> {
        Ok(self.ledger.outcome(id).await?)
    }

    async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, CoreError> {
        Ok(self.ledger.entries(account, from_seq, limit).await?)
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, CoreError> {
        Ok(self.ledger.lookup_accounts(&[id]).await?.pop())
    }

    async fn late_window_ms(&self) -> Result<i64, CoreError> {
        Ok(self.ledger.config().late_window_ms)
    }
}
