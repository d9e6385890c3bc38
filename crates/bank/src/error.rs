//! The one error type of the bank boundary. It owns the split every caller must
//! respect, as an [`ErrorClass`]:
//! - *refused*: the bank definitely refused the call, for a reason (frozen, holder
//!   mismatch, limit…); no money moved, and sending it again will not help;
//! - *transient*: the call was not processed (rate limit, maintenance, busy, or the
//!   connection was refused so nothing was sent): send the same `bank_tran_id`
//!   again later, it never blocks anything;
//! - *unknown*: the request may have reached the bank (timeout after sending, 5xx,
//!   an unreadable answer): money may have moved, never re-send blind — the caller
//!   asks the transfer result inquiry first.
//!
//! This module never guesses: a code or status it does not recognise is reported as
//! outcome unknown, because treating an unknown as "failed" is how money is doubled.

/// Why a bank call did not return a result. Each variant has a stable [`BankError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    // Definitely failed: the bank refused the call and no money moved.
    #[error("the account is frozen")]
    AccountFrozen,
    #[error("the account holder's name does not match")]
    HolderNameMismatch,
    #[error("the amount is over the per-call limit of {limit_krw} KRW")]
    OverPerCallLimit { limit_krw: i64 },
    #[error("insufficient funds in the paying account")]
    InsufficientFunds,
    #[error("no such account")]
    AccountNotFound,
    #[error("the bank is in its maintenance window")]
    Maintenance,
    #[error("too many requests; the call was not processed")]
    RateLimited,
    #[error("the bank is busy; the call was not processed")]
    Busy,
    /// The bank refused our access token (expired or revoked); the call was not
    /// processed. The connector drops its cached token, so the next call fetches one.
    #[error("the bank refused the access token; the call was not processed")]
    AuthRejected,
    /// The bank refused our credentials themselves (the OAuth client secret at the
    /// token endpoint, the NH `AccessToken`): a configuration error. Nothing was
    /// processed and nothing will be until an operator fixes the credentials; it
    /// never blocks an item, and it is logged as an error where it is seen.
    #[error("the bank refused settle's credentials (configuration): {0}")]
    CredentialsRefused(String),
    /// The connection was never made (refused, unreachable, TLS handshake failed),
    /// so no byte of the request reached the bank.
    #[error("nothing was sent: {0}")]
    NotSent(String),
    #[error("no transfer with that bank_tran_id on that date")]
    TransferNotFound,
    #[error("no such virtual-account deposit")]
    DepositNotFound,
    #[error("invalid bank_tran_id: {0}")]
    BadTranId(String),
    #[error("invalid amount: {0}")]
    BadAmount(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    // Outcome unknown: money may or may not have moved.
    #[error("the bank did not answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// The bank accepted the call but has no final result yet ("processing").
    #[error("the bank is still processing the call")]
    Processing,
    #[error("the connection to the bank failed: {0}")]
    Connection(String),
    #[error("the bank answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error("the bank answered with an unrecognised result (HTTP {status}, code {code:?})")]
    Unrecognized { status: u16, code: String },
}

/// What a caller may do after a bank error; see the module header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A definite refusal with its reason: no money moved; do not send it again.
    Refused,
    /// Not processed: send the same id again later; never blocks an item.
    Transient,
    /// May have moved money: ask the result inquiry; never re-send blind.
    Unknown,
    /// Not processed because settle is misconfigured (credentials refused): send
    /// the same id again once an operator fixed it; never blocks an item, and is
    /// loud (an error log, the `bank_credentials_refused` gauge) rather than quiet.
    Configuration,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Transient => "transient",
            ErrorClass::Unknown => "unknown",
            ErrorClass::Configuration => "configuration",
        }
    }
}

impl BankError {
    /// The class of this error: what the caller may do next.
    pub fn class(&self) -> ErrorClass {
        match self {
            BankError::Maintenance
            | BankError::RateLimited
            | BankError::Busy
            | BankError::AuthRejected
            | BankError::NotSent(_) => ErrorClass::Transient,
            BankError::CredentialsRefused(_) => ErrorClass::Configuration,
            BankError::Timeout { .. }
            | BankError::Processing
            | BankError::Connection(_)
            | BankError::Server { .. }
            | BankError::Unrecognized { .. } => ErrorClass::Unknown,
            BankError::AccountFrozen
            | BankError::HolderNameMismatch
            | BankError::OverPerCallLimit { .. }
            | BankError::InsufficientFunds
            | BankError::AccountNotFound
            | BankError::TransferNotFound
            | BankError::DepositNotFound
            | BankError::BadTranId(_)
            | BankError::BadAmount(_)
            | BankError::InvalidRequest(_) => ErrorClass::Refused,
        }
    }

    /// True when money may have moved: never retry such a call with a new id, and
    /// never treat it as failed; ask the transfer result inquiry instead.
    pub fn is_outcome_unknown(&self) -> bool {
        self.class() == ErrorClass::Unknown
    }

    /// True when the call was not processed and the same id may be sent again.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// True when settle's own configuration (its bank credentials) is wrong.
    pub fn is_configuration(&self) -> bool {
        self.class() == ErrorClass::Configuration
    }

    /// A stable, machine-readable code; also the `code` field on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            BankError::AccountFrozen => "account_frozen",
            BankError::HolderNameMismatch => "holder_name_mismatch",
            BankError::OverPerCallLimit { .. } => "over_per_call_limit",
            BankError::InsufficientFunds => "insufficient_funds",
            BankError::AccountNotFound => "account_not_found",
            BankError::Maintenance => "bank_maintenance",
            BankError::RateLimited => "rate_limited",
            BankError::Busy => "bank_busy",
            BankError::AuthRejected => "bank_auth_rejected",
            BankError::CredentialsRefused(_) => "bank_credentials_refused",
            BankError::Processing => "bank_processing",
            BankError::NotSent(_) => "bank_not_sent",
            BankError::TransferNotFound => "transfer_not_found",
            BankError::DepositNotFound => "deposit_not_found",
            BankError::BadTranId(_) => "bad_bank_tran_id",
            BankError::BadAmount(_) => "bad_amount",
            BankError::InvalidRequest(_) => "invalid_request",
            BankError::Timeout { .. } => "bank_timeout",
            BankError::Connection(_) => "bank_connection_failed",
            BankError::Server { .. } => "bank_server_error",
            BankError::Unrecognized { .. } => "bank_unrecognized_result",
        }
    }

    /// Rebuilds a definite failure from its wire code. `None` for codes that are not
    /// definite failures (the caller then reports [`BankError::Unrecognized`]).
    pub fn definite_from_code(
        code: &str,
        message: &str,
        limit_krw: Option<i64>,
    ) -> Option<BankError> {
        Some(match code {
            "account_frozen" => BankError::AccountFrozen,
            "holder_name_mismatch" => BankError::HolderNameMismatch,
            "over_per_call_limit" => BankError::OverPerCallLimit {
                limit_krw: limit_krw.unwrap_or(0),
            },
            "insufficient_funds" => BankError::InsufficientFunds,
            "account_not_found" => BankError::AccountNotFound,
            "bank_maintenance" => BankError::Maintenance,
            "rate_limited" => BankError::RateLimited,
            "bank_busy" => BankError::Busy,
            "bank_auth_rejected" => BankError::AuthRejected,
            "bank_credentials_refused" => BankError::CredentialsRefused(message.to_owned()),
            "transfer_not_found" => BankError::TransferNotFound,
            "deposit_not_found" => BankError::DepositNotFound,
            "bad_bank_tran_id" => BankError::BadTranId(message.to_owned()),
            "bad_amount" => BankError::BadAmount(message.to_owned()),
            "invalid_request" => BankError::InvalidRequest(message.to_owned()),
            _ => return None,
        })
    }

    /// The per-call limit carried by [`BankError::OverPerCallLimit`], for the wire.
    pub fn limit_krw(&self) -> Option<i64> {
        match self {
            BankError::OverPerCallLimit { limit_krw } => Some(*limit_krw),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definite_code_round_trips_and_unknowns_are_unknown() {
        let definite = [
            BankError::AccountFrozen,
            BankError::HolderNameMismatch,
            BankError::OverPerCallLimit { limit_krw: 100_000 },
            BankError::InsufficientFunds,
            BankError::AccountNotFound,
            BankError::Maintenance,
            BankError::RateLimited,
            BankError::Busy,
            BankError::AuthRejected,
            BankError::CredentialsRefused("x".into()),
            BankError::TransferNotFound,
            BankError::DepositNotFound,
            BankError::BadTranId("x".into()),
            BankError::BadAmount("x".into()),
            BankError::InvalidRequest("x".into()),
        ];
        for error in definite {
            assert!(!error.is_outcome_unknown(), "{error:?}");
            let back = BankError::definite_from_code(error.code(), "x", error.limit_krw());
            assert_eq!(back, Some(error));
        }
        let unknown = [
            BankError::Timeout { timeout_ms: 1 },
            BankError::Processing,
            BankError::Connection("reset".into()),
            BankError::Server {
                status: 502,
                message: "x".into(),
            },
            BankError::Unrecognized {
                status: 418,
                code: "teapot".into(),
            },
        ];
        for error in unknown {
            assert!(error.is_outcome_unknown(), "{error:?}");
            assert_eq!(BankError::definite_from_code(error.code(), "x", None), None);
        }
    }

    #[test]
    fn each_error_has_the_class_its_meaning_allows() {
        let transient = [
            BankError::RateLimited,
            BankError::Maintenance,
            BankError::Busy,
            BankError::NotSent("connection refused".into()),
        ];
        for error in transient {
            assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
            assert!(!error.is_outcome_unknown());
        }
        let refused = [
            BankError::AccountFrozen,
            BankError::HolderNameMismatch,
            BankError::InsufficientFunds,
            BankError::OverPerCallLimit { limit_krw: 1 },
        ];
        for error in refused {
            assert_eq!(error.class(), ErrorClass::Refused, "{error:?}");
        }
        let unknown = [
            BankError::Timeout { timeout_ms: 1 },
            BankError::Connection("reset after send".into()),
            BankError::Server {
                status: 500,
                message: String::new(),
            },
        ];
        for error in unknown {
            assert_eq!(error.class(), ErrorClass::Unknown, "{error:?}");
        }
        let misconfigured = BankError::CredentialsRefused("invalid_client".into());
        assert_eq!(misconfigured.class(), ErrorClass::Configuration);
        assert!(!misconfigured.is_transient() && !misconfigured.is_outcome_unknown());
        assert!(misconfigured.is_configuration());
    }
}
