//! The one error shape of the API, `{"code", "message", "details"}`, and the closed
//! catalogue of its codes. Every response that is not a success goes through
//! [`ApiError`], including axum's own rejections (see `limits::json_errors`), so a
//! client never sees plain text. A domain crate's own code travels in
//! `details.reason`; the top-level `code` is always one of [`CODES`].
//!
//! Internals never leak: a 5xx says what kind of thing failed, and the cause chain
//! goes to the log, once, here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every top-level error code: (code, HTTP status, what it means). The OpenAPI
/// document lists them; a test checks each code the API emits is here.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_json",
        400,
        "The body is not valid UTF-8 JSON of the expected shape.",
    ),
    (
        "invalid_input",
        400,
        "A field is missing, malformed or out of range; details.reason names the rule.",
    ),
    (
        "invalid_path",
        400,
        "A path parameter is malformed (e.g. not an id).",
    ),
    ("invalid_query", 400, "A query parameter is malformed."),
    (
        "invalid_idempotency_key",
        400,
        "The Idempotency-Key header is empty, too long or not printable ASCII.",
    ),
    (
        "unauthenticated",
        401,
        "No API key, or an unknown one (Authorization: Bearer <key>).",
    ),
    (
        "forbidden",
        403,
        "The key's role may not call this endpoint.",
    ),
    (
        "not_found",
        404,
        "No such resource, or not one this key may see.",
    ),
    ("route_not_found", 404, "No such endpoint."),
    (
        "method_not_allowed",
        405,
        "The endpoint exists but not with this method.",
    ),
    (
        "idempotency_in_progress",
        409,
        "A request with this Idempotency-Key is still running.",
    ),
    (
        "transfer_in_progress",
        409,
        "The customer already has a transfer in flight.",
    ),
    (
        "conflict",
        409,
        "The id is taken by a different request, or the resource is in a state that forbids the action; details.reason says which.",
    ),
    (
        "body_too_large",
        413,
        "The body exceeds the limit (64 KiB by default).",
    ),
    (
        "unsupported_media_type",
        415,
        "A body was sent without Content-Type: application/json.",
    ),
    (
        "idempotency_key_reused",
        422,
        "This Idempotency-Key was used before with a different request.",
    ),
    (
        "refused",
        422,
        "The ledger or a domain rule refused the request; details.reason is the result code.",
    ),
    (
        "rate_limited",
        429,
        "Too many requests for this key; see Retry-After (seconds).",
    ),
    (
        "internal_error",
        500,
        "Something failed inside; the cause is in the server log.",
    ),
    (
        "role_disabled",
        503,
        "This process does not run the role the endpoint needs.",
    ),
    (
        "unavailable",
        503,
        "A dependency (database, core, bank) did not answer.",
    ),
    (
        "timeout",
        504,
        "The request took longer than the server's limit.",
    ),
];

/// An error response. Build it with the constructors; they pick the status from
/// [`CODES`].
#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds, for `rate_limited`.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: Value::Null,
            retry_after_s: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    /// A domain refusal or invalid field: `details.reason` carries the domain code.
    pub fn reason(code: &'static str, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message).with_details(json!({ "reason": reason }))
    }

    pub fn invalid(reason: &str, message: impl Into<String>) -> ApiError {
        ApiError::reason("invalid_input", reason, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new("not_found", format!("no such {what}"))
    }

    pub fn forbidden() -> ApiError {
        ApiError::new("forbidden", "this key's role may not call this endpoint")
    }

    pub fn role_disabled(role: &str) -> ApiError {
        ApiError::new("role_disabled", format!("this process does not run {role}"))
    }

    /// A failure the client cannot fix: logged with its cause, answered without it.
    pub fn internal(code: &'static str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, code, "request failed inside");
        let status = status_of(code);
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "a dependency did not answer; try again"
        } else {
            "the request failed inside the server"
        };
        ApiError::new(code, message)
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// The status of a catalogued code; an uncatalogued one is a bug and answers 500.
pub fn status_of(code: &str) -> StatusCode {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .and_then(|(_, status, _)| StatusCode::from_u16(*status).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message, "details": self.details });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if self.code == "unauthenticated" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"settle\""),
            );
        }
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> ApiError {
        ApiError::internal("unavailable", &error)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> ApiError {
        ApiError::internal("unavailable", &error)
    }
}

impl From<ledger::LedgerError> for ApiError {
    fn from(error: ledger::LedgerError) -> ApiError {
        match &error {
            ledger::LedgerError::TooLarge { .. } => {
                ApiError::invalid(error.code(), error.to_string())
            }
            ledger::LedgerError::Corrupt(_) => ApiError::internal("internal_error", &error),
            _ => ApiError::internal("unavailable", &error),
        }
    }
}

impl From<channel::ChannelError> for ApiError {
    fn from(error: channel::ChannelError) -> ApiError {
        use channel::ChannelError as E;
        match &error {
            E::TransferInProgress { .. } => {
                ApiError::reason("transfer_in_progress", error.code(), error.to_string())
            }
            E::IdTaken(_) => ApiError::reason("conflict", error.code(), error.to_string()),
            E::Core(_) | E::Store(_) | E::Db(_) | E::StillBehind { .. } => {
                ApiError::internal("unavailable", &error)
            }
            _ => ApiError::internal("internal_error", &error),
        }
    }
}

impl From<fees::FeesError> for ApiError {
    fn from(error: fees::FeesError) -> ApiError {
        use fees::FeesError as E;
        match &error {
            E::Day(_) | E::Invalid(_) => ApiError::invalid(error.code(), error.to_string()),
            E::Store(_) | E::Db(_) | E::Bank(_) | E::Ledger(_) | E::LockLost(_) => {
                ApiError::internal("unavailable", &error)
            }
            _ => ApiError::internal("internal_error", &error),
        }
    }
}

impl From<payroll::PayrollError> for ApiError {
    fn from(error: payroll::PayrollError) -> ApiError {
        use payroll::PayrollError as E;
        match &error {
            E::UnknownDeposit(_) | E::UnknownUser(_) => {
                ApiError::reason("not_found", error.code(), error.to_string())
            }
            E::NotWaiting { .. } | E::IllegalTransition { .. } | E::Busy { .. } => {
                ApiError::reason("conflict", error.code(), error.to_string())
            }
            E::InvalidInput(_) | E::InvalidConfig(_) => {
                ApiError::reason("invalid_input", error.code(), error.to_string())
            }
            E::Store(_) | E::Db(_) | E::Bank(_) | E::OutcomeUnknown { .. } | E::Events(_) => {
                ApiError::internal("unavailable", &error)
            }
            _ => ApiError::internal("internal_error", &error),
        }
    }
}

impl From<events::EventsError> for ApiError {
    fn from(error: events::EventsError) -> ApiError {
        use events::EventsError as E;
        match &error {
            E::DeadLetterNotFound { .. } => {
                ApiError::reason("not_found", error.code(), error.to_string())
            }
            E::DeadLetterNotParked { .. } => {
                ApiError::reason("conflict", error.code(), error.to_string())
            }
            E::Store(_) | E::Db(_) | E::Nats(_) => ApiError::internal("unavailable", &error),
            _ => ApiError::internal("internal_error", &error),
        }
    }
}

impl From<bank::routing::RoutingError> for ApiError {
    fn from(error: bank::routing::RoutingError) -> ApiError {
        use bank::routing::RoutingError as E;
        match &error {
            E::BadPercent(_) => ApiError::invalid(error.code(), error.to_string()),
            E::Store(_) | E::Db(_) => ApiError::internal("unavailable", &error),
            E::CorruptProvider(_) => ApiError::internal("internal_error", &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_an_error_status() {
        let mut names: Vec<&str> = CODES.iter().map(|(c, _, _)| *c).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CODES.len());
        for (code, status, _) in CODES {
            assert!((400..600).contains(status), "{code}");
            assert_eq!(status_of(code).as_u16(), *status);
        }
    }

    #[test]
    fn an_uncatalogued_code_is_a_server_error() {
        assert_eq!(status_of("no_such_code"), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
