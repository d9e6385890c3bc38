//! The cluster's load, through the HTTP API only: real keys (`settle keys
//! create` for the first ops and service keys, `POST /v1/keys` for customers'
//! keys), accounts opened with `POST /v1/accounts`, ledger transfers from
//! several concurrent clients, channel transfers from customers' own keys, and
//! an operator calling the fee modules for open days.
//!
//! A client retries a request whose answer it did not get (the API process was
//! killed, or answered 5xx/429) with the same transfer id, so each transfer is
//! asked for until the API gives a definite answer; ids the API confirmed are
//! kept for the check. Nothing here reads a table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::TortureError;

/// How long one request is retried before the client gives up on it.
const REQUEST_DEADLINE_MS: u64 = 120_000;
/// Pause between retries of one request.
const RETRY_PAUSE_MS: u64 = 200;
/// Per-request timeout (the API's own is 10 s).
const REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Ids kept per client at most (a long run keeps counting, not listing).
const IDS_KEPT_MAX: usize = 1_000_000;

/// What the load did, counted by the clients.
#[derive(Default, serde::Serialize)]
pub(crate) struct LoadCounters {
    pub ledger_transfers_ok: AtomicU64,
    pub ledger_transfers_refused: AtomicU64,
    pub channel_transfers_accepted: AtomicU64,
    pub channel_transfers_busy: AtomicU64,
    pub channel_transfers_refused: AtomicU64,
    pub fee_module_calls: AtomicU64,
    /// Attempts that got no answer or a 5xx/429 and were retried.
    pub retried_attempts: AtomicU64,
    /// Requests given up after the deadline (their outcome is unknown to the client).
    pub requests_given_up: AtomicU64,
}

/// Transfer ids the API confirmed.
#[derive(Default)]
pub(crate) struct Confirmed {
    pub ledger: Mutex<Vec<String>>,
    pub channel: Mutex<Vec<String>>,
}

/// A key and where the API is.
#[derive(Clone)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    key: String,
}

impl ApiClient {
    pub fn new(base_url: &str, key: &str) -> Result<ApiClient, TortureError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .build()
            .map_err(|e| TortureError::Invalid(format!("HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    /// POSTs `body` until the API gives a definite answer (2xx or 4xx other
    /// than 429); None when the deadline passed first.
    async fn post(
        &self,
        path: &str,
        body: &Value,
        counters: &LoadCounters,
    ) -> Option<(u16, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(REQUEST_DEADLINE_MS);
        while tokio::time::Instant::now() < deadline {
            let answer = self
                .http
                .post(format!("{}{path}", self.base_url))
                .bearer_auth(&self.key)
                .json(body)
                .send()
                .await;
            if let Ok(response) = answer {
                let status = response.status().as_u16();
                if status < 500 && status != 429 {
                    let value = response.json::<Value>().await.unwrap_or(Value::Null);
                    return Some((status, value));
                }
            }
            counters.retried_attempts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
        counters.requests_given_up.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Creates a customer's key through the API.
    pub async fn customer_key(
        &self,
        customer_id: &str,
        counters: &LoadCounters,
    ) -> Result<String, TortureError> {
        let body = json!({"role": "customer", "customer_id": customer_id});
        match self.post("/v1/keys", &body, counters).await {
            Some((201, answer)) => answer["key"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| TortureError::Child(format!("POST /v1/keys said {answer}"))),
            other => Err(TortureError::Child(format!(
                "POST /v1/keys for a customer: {other:?}"
            ))),
        }
    }

    /// Opens a ledger account (owned by `customer_id` if given).
    pub async fn open_account(
        &self,
        customer_id: Option<&str>,
        counters: &LoadCounters,
    ) -> Result<String, TortureError> {
        let id = Uuid::now_v7().to_string();
        let mut body = json!({"id": id});
        if let Some(customer) = customer_id {
            body["customer_id"] = json!(customer);
        }
        match self.post("/v1/accounts", &body, counters).await {
            Some((200 | 201, _)) => Ok(id),
            other => Err(TortureError::Child(format!("POST /v1/accounts: {other:?}"))),
        }
    }
}

/// The key `settle keys create --role <role>` prints, made by the real CLI (a
/// service key with `--grant-house-accounts`).
pub(crate) async fn cli_key(
    program: &std::path::Path,
    database_url: &str,
    role: &str,
) -> Result<String, TortureError> {
    let mut command = tokio::process::Command::new(program);
    command.args([
        "keys",
        "create",
        "--role",
        role,
        "--database-url",
        database_url,
    ]);
    // The ledger clients move money between house accounts (treasury work),
    // which a service key may do only when its key grants it.
    if role == "service" {
        command.arg("--grant-house-accounts");
    }
    let output = command.output().await?;
    if !output.status.success() {
        return Err(TortureError::Child(format!(
            "settle keys create --role {role}: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let created: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| TortureError::Child(format!("settle keys create printed no JSON: {e}")))?;
    created["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TortureError::Child(format!("settle keys create said {created}")))
}

/// What every client shares.
pub(crate) struct Shared {
    pub counters: LoadCounters,
    pub confirmed: Confirmed,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            counters: LoadCounters::default(),
            confirmed: Confirmed::default(),
            stop: AtomicBool::new(false),
        })
    }
}

async fn keep(ids: &Mutex<Vec<String>>, id: String) {
    let mut ids = ids.lock().await;
    if ids.len() < IDS_KEPT_MAX {
        ids.push(id);
    }
}

/// Ledger transfers between random house accounts until told to stop.
pub(crate) async fn ledger_client(
    api: ApiClient,
    accounts: Arc<Vec<String>>,
    seed: u64,
    shared: Arc<Shared>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while !shared.stop.load(Ordering::Relaxed) && accounts.len() > 1 {
        let from = rng.random_range(0..accounts.len());
        let to = (from + rng.random_range(1..accounts.len())) % accounts.len();
        let id = Uuid::now_v7().to_string();
        let body = json!({
            "id": id,
            "debit_account_id": accounts[from],
            "credit_account_id": accounts[to],
            "amount": rng.random_range(1..50_000),
        });
        let counters = &shared.counters;
        match api.post("/v1/transfers", &body, counters).await {
            Some((200 | 201, _)) => {
                counters.ledger_transfers_ok.fetch_add(1, Ordering::Relaxed);
                keep(&shared.confirmed.ledger, id).await;
            }
            Some(_) => {
                counters
                    .ledger_transfers_refused
                    .fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// A customer's channel transfers from their own account, one at a time.
pub(crate) async fn channel_client(
    api: ApiClient,
    own_account: String,
    others: Arc<Vec<String>>,
    seed: u64,
    shared: Arc<Shared>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while !shared.stop.load(Ordering::Relaxed) && !others.is_empty() {
        let id = Uuid::now_v7().to_string();
        let body = json!({
            "id": id,
            "from_account_id": own_account,
            "to_account_id": others[rng.random_range(0..others.len())],
            "amount_krw": rng.random_range(1..20_000),
        });
        let counters = &shared.counters;
        // A transfer still in flight (its answer lost with a killed API
        // process) holds the customer until the reconciler settles it.
        loop {
            match api.post("/v1/channel/transfers", &body, counters).await {
                Some((200 | 201, _)) => {
                    counters
                        .channel_transfers_accepted
                        .fetch_add(1, Ordering::Relaxed);
                    keep(&shared.confirmed.channel, id).await;
                }
                Some((409, answer)) if answer["code"] == "transfer_in_progress" => {
                    counters
                        .channel_transfers_busy
                        .fetch_add(1, Ordering::Relaxed);
                    if !shared.stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
                Some(_) => {
                    counters
                        .channel_transfers_refused
                        .fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
            break;
        }
    }
}

/// An operator calling a fee module for an open day now and then.
pub(crate) async fn fee_operator(
    api: ApiClient,
    days: Arc<std::sync::Mutex<Vec<String>>>,
    seed: u64,
    shared: Arc<Shared>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    const MODULES: [&str; 4] = ["record", "pay", "verify", "withdraw"];
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        let day = {
            let days = days.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if days.is_empty() {
                continue;
            }
            days[rng.random_range(0..days.len())].clone()
        };
        let module = MODULES[rng.random_range(0..MODULES.len())];
        let path = format!("/v1/fees/days/{day}/{module}");
        if api
            .post(&path, &json!({}), &shared.counters)
            .await
            .is_some()
        {
            shared
                .counters
                .fee_module_calls
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
