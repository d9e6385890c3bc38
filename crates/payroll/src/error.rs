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
        }
    }
}
