//! The one error type of `fees`. Business outcomes (busy, already done, a frozen
//! account) are not errors; they are [`crate::Outcome`]s and chunk reasons.

/// Why a fee operation could not run to its end. Whatever was committed before
/// the error stays consistent: every step is idempotent and safe to run again.
#[derive(Debug, thiserror::Error)]
pub enum FeesError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Bank(#[from] bank::BankError),
    #[error(transparent)]
    Money(#[from] money::MoneyError),
    #[error(transparent)]
    Day(#[from] crate::BadDay),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("the ledger refused {what}: {result}")]
    LedgerRefused { what: String, result: &'static str },
    #[error("stored fee data is corrupt: {0}")]
    Corrupt(String),
    #[error("an invariant of fee settlement is broken: {0}")]
    Invariant(String),
    #[error("the lock {0} was taken over while this run held it")]
    LockLost(String),
    /// A derived id (keyed by the installation secret) already names another
    /// transfer: the secret leaked or was reused. Fee settlement stops until an
    /// operator looks; nothing is blocked or marked failed because of it.
    #[error(
        "derived id {id} of chunk {bank_tran_id} already names another transfer; fee settlement stops (was the id secret leaked or shared?)"
    )]
    DerivedIdTaken { id: String, bank_tran_id: String },
}

impl FeesError {
    pub fn code(&self) -> &'static str {
        match self {
            FeesError::Store(error) => error.code(),
            FeesError::Db(_) => "database_error",
            FeesError::Ledger(error) => error.code(),
            FeesError::Bank(error) => error.code(),
            FeesError::Money(error) => error.code(),
            FeesError::Day(_) => "bad_business_day",
            FeesError::Invalid(_) => "invalid_input",
            FeesError::LedgerRefused { .. } => "ledger_refused",
            FeesError::Corrupt(_) => "fees_corrupt",
            FeesError::Invariant(_) => "fees_invariant_broken",
            FeesError::LockLost(_) => "lock_lost",
            FeesError::DerivedIdTaken { .. } => "derived_id_taken",
        }
    }
}
