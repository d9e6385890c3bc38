//! The simulator's native wire API (the typed shape [`crate::HttpBank`] speaks;
//! real banks speak KFTC, see [`crate::providers::next`]):
//! paths, the `{code, message}` error body, and the mapping between [`BankError`]
//! and HTTP statuses, shared by the client and the server so they cannot drift.
//!
//! This module never sends anything; it only names and maps.

use serde::{Deserialize, Serialize};

use crate::BankError;

// The native dialect's own calls live under `/native/` so they never share a path
// with the KFTC wire the simulator also serves (see `providers::next::kftc`).
pub const PATH_DEPOSIT_TRANSFER: &str = "/native/v1/transfer/deposit";
pub const PATH_WITHDRAW_TRANSFER: &str = "/native/v1/transfer/withdraw";
pub const PATH_TRANSFER_RESULT: &str = "/native/v1/transfer/result";
pub const PATH_BALANCE: &str = "/native/v1/account/balance";
pub const PATH_ACCOUNT_HOLDER: &str = "/native/v1/account/holder";
pub const PATH_VIRTUAL_ACCOUNT: &str = "/v2.0/virtual_account/issue";
pub const PATH_VIRTUAL_DEPOSITS: &str = "/v2.0/virtual_account/deposits";
pub const PATH_VIRTUAL_DEPOSIT: &str = "/v2.0/virtual_account/deposit";

/// The header a client names itself with, for the per-client requests/s limit.
pub const HEADER_CLIENT_ID: &str = "x-client-id";

/// Every non-2xx answer from the simulator carries this body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_krw: Option<i64>,
}

impl ErrorBody {
    pub fn from_error(error: &BankError) -> ErrorBody {
        ErrorBody {
            code: error.code().to_owned(),
            message: error.to_string(),
            limit_krw: error.limit_krw(),
        }
    }
}

/// The HTTP status the simulator answers an error with.
pub fn status_for(error: &BankError) -> u16 {
    match error {
        BankError::BadTranId(_) | BankError::BadAmount(_) | BankError::InvalidRequest(_) => 400,
        BankError::AccountNotFound | BankError::TransferNotFound | BankError::DepositNotFound => {
            404
        }
        BankError::AccountFrozen
        | BankError::HolderNameMismatch
        | BankError::OverPerCallLimit { .. }
        | BankError::InsufficientFunds => 422,
        BankError::RateLimited => 429,
        BankError::Maintenance | BankError::Busy | BankError::Processing => 503,
        BankError::AuthRejected | BankError::CredentialsRefused(_) => 401,
        BankError::NotSent(_) => 502,
        BankError::Timeout { .. } => 504,
        BankError::Connection(_) => 502,
        BankError::Server { status, .. } => *status,
        BankError::Unrecognized { status, .. } => *status,
    }
}

/// The error a client reports for a non-2xx answer. A body naming a definite
/// failure is trusted; anything else is outcome unknown unless the status alone
/// proves nothing was processed (429 without a body).
pub fn error_from_response(status: u16, body: &[u8]) -> BankError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    if let Some(body) = &parsed
        && let Some(error) =
            BankError::definite_from_code(&body.code, &body.message, body.limit_krw)
    {
        return error;
    }
    match (status, parsed) {
        (429, _) => BankError::RateLimited,
        (500..=599, parsed) => BankError::Server {
            status,
            message: parsed.map(|b| b.message).unwrap_or_default(),
        },
        (_, parsed) => BankError::Unrecognized {
            status,
            code: parsed.map(|b| b.code).unwrap_or_default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definite_body_is_trusted_and_a_bare_5xx_is_unknown() {
        let body = serde_json::to_vec(&ErrorBody::from_error(&BankError::OverPerCallLimit {
            limit_krw: 100_000,
        }))
        .unwrap();
        assert_eq!(
            error_from_response(422, &body),
            BankError::OverPerCallLimit { limit_krw: 100_000 }
        );
        assert!(error_from_response(502, b"<html>bad gateway</html>").is_outcome_unknown());
        assert!(error_from_response(418, b"{}").is_outcome_unknown());
        assert_eq!(error_from_response(429, b""), BankError::RateLimited);
        let maintenance =
            serde_json::to_vec(&ErrorBody::from_error(&BankError::Maintenance)).unwrap();
        assert_eq!(
            error_from_response(503, &maintenance),
            BankError::Maintenance
        );
    }
}
