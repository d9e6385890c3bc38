//! The simulator as an HTTP server (axum): the open-banking wire API, the legacy
//! provider's wire API, and admin endpoints. It owns the server-side limits — a
//! concurrency cap and a per-client requests/s limit, both answered with 429 before
//! any work is done — and the observed-concurrency gauge tests assert on.
//!
//! Handlers never touch state themselves; they parse, call the [`Simulator`], and
//! map its answer. A refused request (429, bad JSON, oversized body) changes nothing.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use money::SystemClock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{
    OpenAccount, Salary, SimConfig, SimError, Simulator, TransferAnswer, kftc_wire, legacy_wire,
};
use crate::tls::{BankCa, Peer, TlsListener};
use crate::types::{
    AccountNumber, AccountRequest, BankTranId, DepositLookup, DepositsRequest, HolderName,
    IssueVirtualAccount, TranDate, TransferInquiry, TransferKind, TransferRequest,
};
use crate::wire::{self, ErrorBody, HEADER_CLIENT_ID};
use crate::{BankApi, BankError};

/// What `settle bank-sim` needs to run a simulator.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub database_url: String,
    pub sim: SimConfig,
}

/// Opens the simulator's database and serves until the process ends.
pub async fn serve(config: ServerConfig, listener: TcpListener) -> Result<(), SimError> {
    let store = store::Store::connect(&config.database_url).await?;
    let sim = Simulator::open(store, config.sim, Arc::new(SystemClock)).await?;
    serve_simulator(sim, listener, std::future::pending()).await
}

/// Serves `sim` on `listener` until `shutdown` completes, then drains connections.
pub async fn serve_simulator(
    sim: Simulator,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let app = router(SimServer::new(sim));
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Serves `sim` over HTTPS on `listener` until `shutdown` completes.
pub async fn serve_simulator_tls(
    sim: Simulator,
    listener: TlsListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let app = router(SimServer::new(sim));
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Shared server state: the simulator plus the server-side limits and gauges.
#[derive(Clone)]
pub struct SimServer {
    pub(crate) sim: Simulator,
    /// Caps requests handled at once; a request that finds none free gets 429.
    permits: Arc<Semaphore>,
    /// Per-client requests/s; `None` when the config sets no limit.
    rate: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    stats: Arc<Stats>,
    /// OAuth tokens the KFTC wire issued, bounded by [`kftc_wire::TOKENS_MAX`].
    pub(crate) tokens: Arc<kftc_wire::Tokens>,
}

/// Gauges for tests and operators.
#[derive(Debug, Default)]
struct Stats {
    in_flight: AtomicU64,
    concurrent_max_observed: AtomicU64,
    rejected_concurrency_total: AtomicU64,
    rejected_rate_total: AtomicU64,
    tokens_issued_total: AtomicU64,
}

/// The answer of `GET /admin/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsBody {
    pub in_flight: u64,
    pub concurrent_max_observed: u64,
    pub rejected_concurrency_total: u64,
    pub rejected_rate_total: u64,
    /// OAuth tokens the KFTC token endpoint issued.
    #[serde(default)]
    pub tokens_issued_total: u64,
}

impl SimServer {
    pub fn new(sim: Simulator) -> SimServer {
        let config = sim.config();
        let rate = config
            .requests_per_s_per_client_max
            .and_then(NonZeroU32::new)
            .map(|per_s| Arc::new(RateLimiter::keyed(Quota::per_second(per_s))));
        SimServer {
            permits: Arc::new(Semaphore::new(config.concurrent_max)),
            rate,
            stats: Arc::new(Stats::default()),
            tokens: Arc::new(kftc_wire::Tokens::default()),
            sim,
        }
    }

    pub(crate) fn count_token(&self) {
        self.stats
            .tokens_issued_total
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The whole HTTP surface of the simulator.
pub fn router(server: SimServer) -> Router {
    let body_bytes_max = server.sim.config().body_bytes_max;
    let limited = Router::new()
        .route(wire::PATH_DEPOSIT_TRANSFER, post(deposit_transfer))
        .route(wire::PATH_WITHDRAW_TRANSFER, post(withdraw_transfer))
        .route(wire::PATH_TRANSFER_RESULT, post(transfer_result))
        .route(wire::PATH_BALANCE, post(balance))
        .route(wire::PATH_ACCOUNT_HOLDER, post(account_holder))
        .route(wire::PATH_VIRTUAL_ACCOUNT, post(issue_virtual_account))
        .route(wire::PATH_VIRTUAL_DEPOSITS, post(virtual_deposits))
        .route(wire::PATH_VIRTUAL_DEPOSIT, post(virtual_deposit))
        .merge(legacy_wire::routes())
        .merge(kftc_wire::routes())
        .layer(middleware::from_fn_with_state(
            server.clone(),
            limit_requests,
        ));
    Router::new()
        .merge(limited)
        .route("/admin/accounts", post(admin_open_account))
        .route("/admin/salary", post(admin_salary))
        .route("/admin/freeze", post(admin_freeze))
        .route("/admin/rename", post(admin_rename))
        .route("/admin/repayment_due", post(admin_repayment_due))
        .route("/admin/statement", get(admin_statement))
        .route("/admin/stats", get(admin_stats))
        .route("/admin/submissions", get(admin_submissions))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(server)
}

/// Refuses with 429 before any work when the server is full or the client is over
/// its rate; otherwise counts the request in flight while it runs.
async fn limit_requests(
    State(server): State<SimServer>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(rate) = &server.rate {
        let client = request
            .headers()
            .get(HEADER_CLIENT_ID)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| peer.ip().to_string(), str::to_owned);
        if rate.check_key(&client).is_err() {
            server
                .stats
                .rejected_rate_total
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("banksim_rejected_total", "reason" => "rate").increment(1);
            count_refused_transfer(&server, request).await;
            return ApiError::from(BankError::RateLimited).into_response();
        }
    }
    let Ok(_permit) = server.permits.try_acquire() else {
        server
            .stats
            .rejected_concurrency_total
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("banksim_rejected_total", "reason" => "concurrency").increment(1);
        count_refused_transfer(&server, request).await;
        return ApiError::from(BankError::RateLimited).into_response();
    };
    let now = server.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    server
        .stats
        .concurrent_max_observed
        .fetch_max(now, Ordering::SeqCst);
    let response = next.run(request).await;
    server.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

/// A transfer request refused at the door still reached the bank: counts it under
/// its id (read from the body, bounded by the body limit) in the submissions.
async fn count_refused_transfer(server: &SimServer, request: Request) {
    use crate::providers::legacy::nh;
    let path = request.uri().path();
    let field = if path == wire::PATH_DEPOSIT_TRANSFER || path == wire::PATH_WITHDRAW_TRANSFER {
        "/bank_tran_id"
    } else if [nh::DEPOSIT_NH, nh::DEPOSIT_OTHER, nh::WITHDRAW]
        .iter()
        .any(|call| call.path == path)
    {
        "/Header/IsTuno"
    } else {
        return;
    };
    let body_bytes_max = server.sim.config().body_bytes_max;
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), body_bytes_max).await else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return;
    };
    if let Some(id) = body.pointer(field).and_then(serde_json::Value::as_str) {
        server.sim.count_refused(id);
    }
}

/// Every error answer: a status and `{code, message}`.
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl From<BankError> for ApiError {
    fn from(error: BankError) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(wire::status_for(&error))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ErrorBody::from_error(&error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Reads a JSON body into `T`; a missing, oversized or malformed body is a clear
/// `invalid_request` (413 when too large) and nothing else happens.
pub(crate) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let mut error = ApiError::from(BankError::InvalidRequest(rejection.body_text()));
        error.status = status;
        error
    })?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::from(BankError::InvalidRequest(format!(
            "malformed JSON: {error}"
        )))
    })
}

/// A transfer as it arrives, before its fields are validated one by one so each
/// bad field gets its own code.
#[derive(Deserialize)]
struct RawTransfer {
    bank_tran_id: String,
    tran_date: String,
    from_account: String,
    to_account: String,
    holder_name: String,
    amount_krw: i64,
}

impl RawTransfer {
    fn parse(self) -> Result<TransferRequest, BankError> {
        Ok(TransferRequest {
            bank_tran_id: BankTranId::new(&self.bank_tran_id)?,
            tran_date: TranDate::parse(&self.tran_date)?,
            from_account: AccountNumber::new(&self.from_account)?,
            to_account: AccountNumber::new(&self.to_account)?,
            holder_name: HolderName::new(&self.holder_name)?,
            amount_krw: money::Krw::new(self.amount_krw),
        })
    }
}

/// Runs a transfer and answers it; a timeout-after-commit fault holds the answer
/// past any client's timeout, then answers 504.
///
/// The decision runs in a task of its own: a bank that received a whole request
/// processes it whether or not its client is still there to hear the answer (the
/// server drops a handler whose client hung up; a decision dropped with it would
/// roll back, and the client's inquiry would then find nothing and send the id a
/// second time — something no bank does to its clients).
pub(crate) async fn run_transfer(
    server: &SimServer,
    kind: TransferKind,
    request: &TransferRequest,
) -> Result<crate::types::TransferReceipt, BankError> {
    let (sim, owned) = (server.sim.clone(), request.clone());
    let decided = tokio::spawn(async move { sim.transfer(kind, &owned).await }).await;
    let answer = decided.map_err(|error| BankError::Server {
        status: 500,
        message: format!("the transfer task failed: {error}"),
    })?;
    match answer {
        TransferAnswer::Done(result) => result,
        TransferAnswer::CommittedThenTimeout(receipt) => {
            tracing::info!(bank_tran_id = %receipt.bank_tran_id, "fault: committed, answering with a timeout");
            tokio::time::sleep(Duration::from_millis(server.sim.config().timeout_hold_ms)).await;
            Err(BankError::Timeout {
                timeout_ms: server.sim.config().timeout_hold_ms,
            })
        }
    }
}

async fn transfer(
    server: SimServer,
    kind: TransferKind,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let raw: RawTransfer = match parse_body(body) {
        Ok(raw) => raw,
        Err(error) => return error.into_response(),
    };
    let request = match raw.parse() {
        Ok(request) => request,
        Err(error) => return ApiError::from(error).into_response(),
    };
    match run_transfer(&server, kind, &request).await {
        Ok(receipt) => Json(receipt).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn deposit_transfer(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    transfer(server, TransferKind::Deposit, body).await
}

async fn withdraw_transfer(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    transfer(server, TransferKind::Withdraw, body).await
}

/// Parses `T`, calls the simulator, and answers JSON.
async fn answer<T, R, F, Fut>(
    server: SimServer,
    body: Result<Bytes, BytesRejection>,
    call: F,
) -> Response
where
    T: DeserializeOwned,
    R: Serialize,
    F: FnOnce(Simulator, T) -> Fut,
    Fut: Future<Output = Result<R, BankError>>,
{
    let request: T = match parse_body(body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    match call(server.sim.clone(), request).await {
        Ok(value) => Json(value).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn transfer_result(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: TransferInquiry| async move {
        sim.transfer_result(&r).await
    })
    .await
}

async fn balance(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    answer(server, body, |sim, r: AccountRequest| async move {
        sim.balance(&r).await
    })
    .await
}

async fn account_holder(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: AccountRequest| async move {
        sim.account_holder(&r).await
    })
    .await
}

async fn issue_virtual_account(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: IssueVirtualAccount| async move {
        sim.issue_virtual_account(&r).await
    })
    .await
}

async fn virtual_deposits(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: DepositsRequest| async move {
        sim.virtual_deposits(&r).await
    })
    .await
}

async fn virtual_deposit(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: DepositLookup| async move {
        sim.virtual_deposit(&r).await
    })
    .await
}

// ---- admin ----

#[derive(Deserialize)]
struct FreezeRequest {
    account_number: AccountNumber,
    frozen: bool,
}

#[derive(Deserialize)]
struct RenameRequest {
    account_number: AccountNumber,
    holder_name: HolderName,
}

#[derive(Deserialize)]
struct RepaymentDueRequest {
    account_number: AccountNumber,
    amount_krw: money::Krw,
}

#[derive(Serialize)]
struct Done {
    ok: bool,
}

async fn admin_open_account(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: OpenAccount| async move {
        sim.open_account(&r).await.map(|()| Done { ok: true })
    })
    .await
}

async fn admin_salary(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: Salary| async move {
        sim.pay_salary(&r).await
    })
    .await
}

async fn admin_freeze(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: FreezeRequest| async move {
        sim.set_frozen(&r.account_number, r.frozen)
            .await
            .map(|()| Done { ok: true })
    })
    .await
}

async fn admin_rename(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: RenameRequest| async move {
        sim.rename_holder(&r.account_number, &r.holder_name)
            .await
            .map(|()| Done { ok: true })
    })
    .await
}

async fn admin_repayment_due(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(server, body, |sim, r: RepaymentDueRequest| async move {
        sim.set_repayment_due(&r.account_number, r.amount_krw)
            .await
            .map(|()| Done { ok: true })
    })
    .await
}

#[derive(Deserialize)]
struct StatementQuery {
    account: Option<String>,
    #[serde(default)]
    since_seq: i64,
}

/// The answer of `GET /admin/statement`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatementBody {
    pub movements: Vec<super::Movement>,
    /// All balances added up; always equal to all money that entered from outside.
    pub balances_total_krw: money::Krw,
}

async fn admin_statement(
    State(server): State<SimServer>,
    query: Query<StatementQuery>,
) -> Response {
    let account = match query.account.as_deref().map(AccountNumber::new).transpose() {
        Ok(account) => account,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let outcome = async {
        let movements = server
            .sim
            .statement(account.as_ref(), query.since_seq)
            .await?;
        let balances_total_krw = server.sim.check_conservation().await?;
        Ok::<_, BankError>(StatementBody {
            movements,
            balances_total_krw,
        })
    }
    .await;
    match outcome {
        Ok(body) => Json(body).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn admin_stats(State(server): State<SimServer>) -> Json<StatsBody> {
    let stats = &server.stats;
    Json(StatsBody {
        in_flight: stats.in_flight.load(Ordering::SeqCst),
        concurrent_max_observed: stats.concurrent_max_observed.load(Ordering::SeqCst),
        rejected_concurrency_total: stats.rejected_concurrency_total.load(Ordering::SeqCst),
        rejected_rate_total: stats.rejected_rate_total.load(Ordering::SeqCst),
        tokens_issued_total: stats.tokens_issued_total.load(Ordering::SeqCst),
    })
}

/// Transfer requests per `bank_tran_id`: totals and the ids sent more than once.
async fn admin_submissions(State(server): State<SimServer>) -> Json<super::SubmissionsReport> {
    Json(server.sim.submissions())
}

async fn not_found() -> Response {
    ApiError::from(BankError::InvalidRequest("no such endpoint".into()))
        .with_status(StatusCode::NOT_FOUND)
        .into_response()
}

impl ApiError {
    fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

/// A small client for the admin endpoints, for tests, demos and operators.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
}

impl AdminClient {
    pub fn new(base_url: &str) -> AdminClient {
        AdminClient {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// A client that also trusts `ca` (a simulator served with `--tls`).
    pub fn with_ca(base_url: &str, ca: Option<&BankCa>) -> Result<AdminClient, BankError> {
        let http = crate::tls::http_client(ca)
            .build()
            .map_err(|error| BankError::InvalidRequest(format!("HTTP client: {error}")))?;
        Ok(AdminClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, BankError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body)
            .send()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(wire::error_from_response(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|error| BankError::Unrecognized {
            status,
            code: error.to_string(),
        })
    }

    pub async fn open_account(&self, open: &OpenAccount) -> Result<(), BankError> {
        let _: serde_json::Value = self.post("/admin/accounts", open).await?;
        Ok(())
    }

    pub async fn pay_salary(
        &self,
        salary: &Salary,
    ) -> Result<crate::types::VirtualDeposit, BankError> {
        self.post("/admin/salary", salary).await
    }

    pub async fn set_frozen(&self, account: &AccountNumber, frozen: bool) -> Result<(), BankError> {
        let body = serde_json::json!({"account_number": account, "frozen": frozen});
        let _: serde_json::Value = self.post("/admin/freeze", &body).await?;
        Ok(())
    }

    pub async fn rename_holder(
        &self,
        account: &AccountNumber,
        holder: &HolderName,
    ) -> Result<(), BankError> {
        let body = serde_json::json!({"account_number": account, "holder_name": holder});
        let _: serde_json::Value = self.post("/admin/rename", &body).await?;
        Ok(())
    }

    /// Transfer requests per `bank_tran_id` the simulator has seen.
    pub async fn submissions(&self) -> Result<super::SubmissionsReport, BankError> {
        let response = self
            .http
            .get(format!("{}/admin/submissions", self.base_url))
            .send()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))?;
        response
            .json()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))
    }

    /// One page of the statement: `account`'s movements (or every movement) after
    /// `since_seq`.
    pub async fn statement_page(
        &self,
        account: Option<&AccountNumber>,
        since_seq: i64,
    ) -> Result<StatementBody, BankError> {
        let mut query = vec![("since_seq", since_seq.to_string())];
        if let Some(account) = account {
            query.push(("account", account.as_str().to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/admin/statement", self.base_url))
            .query(&query)
            .send()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))?;
        response
            .json()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))
    }

    pub async fn statement(&self) -> Result<StatementBody, BankError> {
        let response = self
            .http
            .get(format!("{}/admin/statement", self.base_url))
            .send()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))?;
        response
            .json()
            .await
            .map_err(|error| BankError::Connection(error.to_string()))
    }
}
