//! The one error type of `payroll`. Callers branch on the variant or its stable
//! [`PayrollError::code`]; this module only describes, it never logs.

use bank::BankError;

/// Why a payroll call did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PayrollError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Events(#[from] events::EventsError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("the ledger refused {what}: {result}")]
    LedgerRefused { what: String, result: &'static str },
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Routing(#[from] bank::routing::RoutingError),
    #[error(transparent)]
    Money(#[from] money::MoneyError),
    #[error("no such user {0}")]
    UnknownUser(String),
    #[error("no such deposit {0}")]
    UnknownDeposit(String),
    #[error("deposit {deposit} is {state}; {action} needs a deposit waiting for an operator")]
    NotWaiting {
        deposit: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("illegal transition of deposit {deposit}: {from} cannot {step}")]
    IllegalTransition {
        deposit: String,
        from: &'static str,
        step: &'static str,
    },
    /// A stored row breaks an invariant (a bug or a hand edit).
    #[error("corrupt payroll data: {0}")]
    Corrupt(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("the bank left the outcome of {bank_tran_id} unknown; asking again later")]
    OutcomeUnknown { bank_tran_id: String },
    #[error("alert webhook: {0}")]
    Webhook(String),
    /// The stage's work outside its transaction is not at hand; the next attempt
    /// does it again (asking the bank before paying anything).
    #[error("stage {stage} of deposit {deposit} is not prepared; retrying")]
    NotPrepared {
        deposit: String,
        stage: &'static str,
    },
    /// Another process holds (deposit, stage) under a live claim; this one skips it.
    #[error("stage {stage} of deposit {deposit} is claimed by another process")]
    Claimed {
        deposit: String,
        stage: &'static str,
    },
    /// The claim this work ran under was taken over or overridden: its result is
    /// not recorded.
    #[error("claim {token} on stage {stage} of deposit {deposit} is no longer the newest")]
    StaleClaim {
        deposit: String,
        stage: &'static str,
        token: i64,
    },
    /// An operator action on a deposit a worker is working on right now.
    #[error(
        "deposit {deposit} is being worked on ({stage} by {owner} until {expires_at_ms}); try again after that"
    )]
    Busy {
        deposit: String,
        stage: String,
        owner: String,
        expires_at_ms: i64,
    },
    #[error("{0}")]
    InvalidInput(String),
}

impl PayrollError {
    /// A stable, machine-readable code for CLI and API output.
    pub fn code(&self) -> &'static str {
        match self {
            PayrollError::Store(error) => error.code(),
            PayrollError::Db(_) => "database_error",
            PayrollError::Events(error) => error.code(),
            PayrollError::Ledger(error) => error.code(),
            PayrollError::LedgerRefused { .. } => "ledger_refused",
            PayrollError::Bank(error) => error.code(),
            PayrollError::Routing(error) => error.code(),
            PayrollError::Money(error) => error.code(),
            PayrollError::UnknownUser(_) => "unknown_user",
            PayrollError::UnknownDeposit(_) => "unknown_deposit",
            PayrollError::NotWaiting { .. } => "deposit_not_waiting",
            PayrollError::IllegalTransition { .. } => "illegal_transition",
            PayrollError::Corrupt(_) => "payroll_corrupt",
            PayrollError::InvalidConfig(_) => "payroll_config_invalid",
            PayrollError::OutcomeUnknown { .. } => "bank_outcome_unknown",
            PayrollError::Webhook(_) => "webhook_failed",
            PayrollError::NotPrepared { .. } => "stage_not_prepared",
            PayrollError::Claimed { .. } => "stage_claimed",
            PayrollError::StaleClaim { .. } => "claim_stale",
            PayrollError::Busy { .. } => "deposit_busy",
            PayrollError::InvalidInput(_) => "invalid_input",
        }
    }

    /// A claim conflict between processes: not a failure of the work itself.
    pub fn is_claim_conflict(&self) -> bool {
        matches!(
            self,
            PayrollError::Claimed { .. } | PayrollError::StaleClaim { .. }
        )
    }
}
