//! The core's ledger over HTTP, for a channel that lives on another server: a small
//! axum router in front of [`ledger::Ledger`] ([`router`]) and the [`HttpCore`]
//! client that speaks to it.
//!
//! The router only translates: it parses input with the ledger's own parsers and
//! answers JSON with stable codes; it never decides anything the ledger does not.
//! The client never retries a transfer: any failure after sending is "outcome
//! unknown" for the caller to reconcile.

use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger::{
    Account, Entry, Ledger, TransferInput, TransferKind, TransferOutcome, TransferRequest,
    TransferResult,
};
use money::{AccountId, Clock, TransferId};
use serde::{Deserialize, Serialize};

use crate::core::{CoreClient, CoreError};

/// Largest answer body the client reads: a full page of entries is far below it.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct TransferAnswer {
    result: TransferResult,
}

#[derive(Serialize, Deserialize)]
struct CoreInfo {
    late_window_ms: i64,
    entries_page_max: usize,
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct EntriesQuery {
    #[serde(default)]
    from_seq: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
}

fn error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    let body = ErrorBody {
        code: code.to_owned(),
        message: message.to_string(),
    };
    (status, Json(body)).into_response()
}

/// Logs the cause here, once; the caller sees only the stable code.
fn ledger_error(failure: ledger::LedgerError) -> Response {
    tracing::warn!(error = %failure, code = failure.code(), "core endpoint failed");
    let status = match failure {
        ledger::LedgerError::TooLarge { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, failure.code(), "the core could not answer")
}

/// The core's ledger endpoints:
/// `POST /v1/core/transfers`, `GET /v1/core/transfers/{id}`,
/// `GET /v1/core/accounts/{id}`, `GET /v1/core/accounts/{id}/entries?from_seq=&limit=`,
/// `GET /v1/core/info`.
pub fn router(ledger: Ledger) -> Router {
    Router::new()
        .route("/v1/core/transfers", post(submit))
        .route("/v1/core/transfers/{id}", get(outcome))
        .route("/v1/core/accounts/{id}", get(account))
        .route("/v1/core/accounts/{id}/entries", get(entries))
        .route("/v1/core/info", get(info))
        .with_state(ledger)
}

async fn submit(
    State(ledger): State<Ledger>,
    body: Result<Json<TransferInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(input) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "body_invalid",
                rejection.body_text(),
            );
        }
    };
    let request = match input.parse(ledger.clock().now()) {
        Ok(request) => request,
        Err(invalid) => return error(StatusCode::BAD_REQUEST, invalid.code(), invalid),
    };
    match ledger.transfer(request).await {
        Ok(result) => Json(TransferAnswer { result }).into_response(),
        Err(failure) => ledger_error(failure),
    }
}

async fn outcome(State(ledger): State<Ledger>, Path(id): Path<String>) -> Response {
    let id = match TransferId::parse(&id) {
        Ok(id) => id,
        Err(invalid) => return error(StatusCode::BAD_REQUEST, invalid.code(), invalid),
    };
    match ledger.outcome(id).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(failure) => ledger_error(failure),
    }
}

async fn account(State(ledger): State<Ledger>, Path(id): Path<String>) -> Response {
    let id = match AccountId::parse(&id) {
        Ok(id) => id,
        Err(invalid) => return error(StatusCode::BAD_REQUEST, invalid.code(), invalid),
    };
    match ledger.lookup_accounts(&[id]).await {
        Ok(mut found) => match found.pop() {
            Some(account) => Json(account).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "account_not_found",
                "no such account",
            ),
        },
        Err(failure) => ledger_error(failure),
    }
}

async fn entries(
    State(ledger): State<Ledger>,
    Path(id): Path<String>,
    Query(query): Query<EntriesQuery>,
) -> Response {
    let id = match AccountId::parse(&id) {
        Ok(id) => id,
        Err(invalid) => return error(StatusCode::BAD_REQUEST, invalid.code(), invalid),
    };
    let limit = query.limit.unwrap_or(ledger.config().entries_page_max);
    match ledger.entries(id, query.from_seq.unwrap_or(1), limit).await {
        Ok(entries) => Json(entries).into_response(),
        Err(failure) => ledger_error(failure),
    }
}

async fn info(State(ledger): State<Ledger>) -> Response {
    Json(CoreInfo {
        late_window_ms: ledger.config().late_window_ms,
        entries_page_max: ledger.config().entries_page_max,
    })
    .into_response()
}

/// The wire form of a request: the ledger's own input shape.
fn to_input(request: &TransferRequest) -> TransferInput {
    let mut input = TransferInput {
        id: request.id().to_string(),
        code: Some(request.code()),
        user_data: Some(request.user_data()),
        linked: Some(request.is_linked()),
        requested_at_ms: Some(request.requested_at().unix_ms()),
        ..TransferInput::default()
    };
    match *request.kind() {
        TransferKind::Single {
            debit_account_id,
            credit_account_id,
            amount,
        } => {
            input.kind = Some("single".into());
            input.debit_account_id = Some(debit_account_id.to_string());
            input.credit_account_id = Some(credit_account_id.to_string());
            input.amount = Some(amount.get());
        }
        TransferKind::Pending {
            debit_account_id,
            credit_account_id,
            amount,
            timeout_ms,
        } => {
            input.kind = Some("pending".into());
            input.debit_account_id = Some(debit_account_id.to_string());
            input.credit_account_id = Some(credit_account_id.to_string());
            input.amount = Some(amount.get());
            input.timeout_ms = Some(timeout_ms);
        }
        TransferKind::Post { pending_id, amount } => {
            input.kind = Some("post".into());
            input.pending_id = Some(pending_id.to_string());
            input.amount = amount.map(|a| a.get());
        }
        TransferKind::Void { pending_id } => {
            input.kind = Some("void".into());
            input.pending_id = Some(pending_id.to_string());
        }
    }
    input
}

/// Talks to a core's [`router`] over HTTP.
#[derive(Clone)]
pub struct HttpCore {
    base_url: String,
    client: reqwest::Client,
    timeout_ms: u64,
}

impl HttpCore {
    /// `base_url` like `http://127.0.0.1:8080`; every call gives up after
    /// `timeout_ms`.
    pub fn new(base_url: &str, timeout_ms: u64) -> Result<HttpCore, CoreError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .map_err(|e| CoreError::Unreachable(e.to_string()))?;
        Ok(HttpCore {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            timeout_ms,
        })
    }

    fn transport(&self, error: reqwest::Error) -> CoreError {
        if error.is_timeout() {
            CoreError::Timeout {
                timeout_ms: self.timeout_ms,
            }
        } else {
            CoreError::Unreachable(error.to_string())
        }
    }

    /// Reads an answer: the body (bounded) as `T` on success, `None` on 404 when
    /// `not_found_ok`, else the error body's code.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        not_found_ok: bool,
    ) -> Result<Option<T>, CoreError> {
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|len| len > RESPONSE_BYTES_MAX as u64)
        {
            return Err(CoreError::BadAnswer("answer too large".into()));
        }
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        if body.len() > RESPONSE_BYTES_MAX {
            return Err(CoreError::BadAnswer("answer too large".into()));
        }
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| CoreError::BadAnswer(e.to_string()));
        }
        if status == reqwest::StatusCode::NOT_FOUND && not_found_ok {
            return Ok(None);
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        Err(CoreError::Answered {
            status: status.as_u16(),
            code: parsed
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |b| b.code.clone()),
            message: parsed.map_or_else(String::new, |b| b.message),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        not_found_ok: bool,
    ) -> Result<Option<T>, CoreError> {
        let response = self
            .client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        self.read(response, not_found_ok).await
    }
}

fn missing() -> CoreError {
    CoreError::BadAnswer("empty answer".into())
}

#[async_trait]
impl CoreClient for HttpCore {
    async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, CoreError> {
        let response = self
            .client
            .post(format!("{}/v1/core/transfers", self.base_url))
            .json(&to_input(&request))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let answer: Option<TransferAnswer> = self.read(response, false).await?;
        answer.map(|a| a.result).ok_or_else(missing)
    }

    async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, CoreError> {
        self.get(&format!("/v1/core/transfers/{id}"), false)
            .await?
            .ok_or_else(missing)
    }

    async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, CoreError> {
        self.get(
            &format!("/v1/core/accounts/{account}/entries?from_seq={from_seq}&limit={limit}"),
            false,
        )
        .await?
        .ok_or_else(missing)
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, CoreError> {
        self.get(&format!("/v1/core/accounts/{id}"), true).await
    }

    async fn late_window_ms(&self) -> Result<i64, CoreError> {
        let info: CoreInfo = self
            .get("/v1/core/info", false)
            .await?
            .ok_or_else(missing)?;
        Ok(info.late_window_ms)
    }
}
