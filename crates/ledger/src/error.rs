//! The ledger's errors: infrastructure failures. Business outcomes are never errors;
//! they are [`crate::TransferResult`]s.

/// Why the ledger could not answer. For a submission, any of these means nothing of
/// it was applied — except a commit that failed in flight, so the only safe reaction
/// is to resubmit with the same ids (which is always safe).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Events(#[from] events::EventsError),
    #[error("the batch this submission was part of failed and was rolled back: {0}")]
    BatchFailed(String),
    #[error("stored ledger data is corrupt: {0}")]
    Corrupt(String),
    #[error("the ledger writer has stopped")]
    WriterStopped,
    #[error("{what}: {count} is over the limit of {max}")]
    TooLarge {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Store(error) => error.code(),
            LedgerError::Db(_) | LedgerError::Events(_) | LedgerError::BatchFailed(_) => {
                "database_error"
            }
            LedgerError::Corrupt(_) => "ledger_corrupt",
            LedgerError::WriterStopped => "ledger_unavailable",
            LedgerError::TooLarge { .. } => "too_large",
        }
    }
}
