//! The suite's one error type: a run that could not be carried out. A run that
//! found a broken invariant is not an error; it is a report with violations.

/// Why a torture run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum TortureError {
    #[error("invalid torture plan: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Fees(#[from] fees::FeesError),
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    #[error(transparent)]
    Bank(#[from] bank::BankError),
    #[error("bank simulator: {0}")]
    Sim(#[from] bank::sim::SimError),
    #[error("child process: {0}")]
    Child(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl TortureError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TortureError::Invalid(_) => "torture_plan_invalid",
            TortureError::Store(error) => error.code(),
            TortureError::Db(_) => "database_error",
            TortureError::Ledger(_) => "ledger_error",
            TortureError::Fees(_) => "fees_error",
            TortureError::Channel(error) => error.code(),
            TortureError::Bank(error) => error.code(),
            TortureError::Sim(_) => "bank_sim_error",
            TortureError::Child(_) => "torture_child_failed",
            TortureError::Io(_) => "io_error",
        }
    }
}
