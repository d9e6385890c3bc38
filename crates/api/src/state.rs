//! What every handler shares: the api's own store, the domain handles a process
//! runs with (each optional), readiness probes and limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bank::BankApi;
use bank::routing::RoutingTable;
use channel::Channel;
use fees::Fees;
use ledger::Ledger;
use money::{Clock, SystemClock};
use payroll::Payroll;
use store::Store;

use crate::auth::{Caller, Gate};
use crate::error::ApiError;

/// A readiness check of one dependency (NATS, the bank): `Err` says why it is not
/// ready.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The domain handles a process serves. A `None` switches the routes that need it
/// off (they answer 503 `role_disabled`).
#[derive(Clone, Default)]
pub struct Handles {
    pub ledger: Option<Ledger>,
    pub channel: Option<Channel>,
    pub fees: Option<Fees>,
    pub payroll: Option<Payroll>,
    /// The store holding the outbox and the dead letters.
    pub events: Option<Store>,
    /// The provider routing table (cohort percentage and per-user overrides).
    pub routing: Option<RoutingTable>,
    /// The bank the process talks to.
    pub bank: Option<Arc<dyn BankApi>>,
    /// The bank statement fee reports reconcile against.
    pub statement: Option<Arc<dyn fees::report::Statement>>,
    /// The clock for audit and idempotency times (default: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Extra readiness checks by name (e.g. `nats`, `bank`).
    pub probes: Vec<(String, Probe)>,
}

/// Limits of the HTTP surface.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub body_bytes_max: usize,
    pub request_timeout_ms: u64,
    /// Requests per second one API key may make (burst the same).
    pub key_requests_per_s_max: u32,
    /// Requests per second one peer address may make without a known key (a
    /// missing or unknown key): guessing keys costs a database lookup each.
    pub unauthenticated_requests_per_s_max: u32,
    pub page_items_max: usize,
    /// POSTs running at once; more wait in line (first come, first served). On
    /// SQLite this keeps writers from starving each other in the busy handler.
    pub writes_in_flight_max: usize,
    /// Connections open at once; at the cap new ones wait in the listen backlog.
    pub connections_max: usize,
    /// A client must send a request's headers within this (a half-sent request
    /// cannot hold a connection slot).
    pub header_read_timeout_ms: u64,
    /// A connection with no bytes either way for this long is closed; longer than
    /// `request_timeout_ms`, so an answer being computed is never cut.
    pub idle_timeout_ms: u64,
    /// How far a transfer's `requested_at_ms` may be ahead of the server's clock.
    pub requested_at_future_skew_ms: i64,
    /// How long a finished `Idempotency-Key` is remembered (pruned afterwards).
    pub idempotency_retention_ms: i64,
    /// The actions that need a second ops key's approval (maker-checker); empty:
    /// none.
    pub approvals_required: std::collections::BTreeSet<crate::approvals::Guarded>,
    /// How long a pending approval may wait for its second key.
    pub approval_ttl_ms: i64,
    /// Pending approvals at most; more requests are 409 until some are decided.
    pub approvals_pending_max: i64,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            body_bytes_max: 64 * 1024,
            request_timeout_ms: 10_000,
            key_requests_per_s_max: 100,
            unauthenticated_requests_per_s_max: 10,
            page_items_max: 100,
            writes_in_flight_max: 64,
            connections_max: 1_024,
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 60_000,
            requested_at_future_skew_ms: ledger::REQUESTED_AT_FUTURE_SKEW_MS_DEFAULT,
            idempotency_retention_ms: 24 * 60 * 60 * 1_000,
            approvals_required: std::collections::BTreeSet::new(),
            approval_ttl_ms: 24 * 60 * 60 * 1_000,
            approvals_pending_max: 1_000,
        }
    }
}

/// The state handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The api's own tables live here.
    pub store: Store,
    pub handles: Handles,
    pub config: ApiConfig,
    pub clock: Arc<dyn Clock>,
    /// Known keys and per-key rate limits.
    pub gate: Arc<Gate>,
    /// Bounds the POSTs in flight (see `ApiConfig::writes_in_flight_max`).
    pub writes: Arc<tokio::sync::Semaphore>,
    /// When this process last pruned idempotency records (Unix ms).
    pub pruned_at_ms: std::sync::atomic::AtomicI64,
}

impl AppState {
    /// Migrates the api's own tables in `store` and builds the state over
    /// already-open handles.
    pub async fn new(
        store: Store,
        handles: Handles,
        config: ApiConfig,
    ) -> Result<AppState, store::StoreError> {
        store
            .migrate(crate::db::COMPONENT, crate::db::MIGRATIONS)
            .await?;
        crate::telemetry::prometheus();
        let clock = handles
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock));
        let gate = Arc::new(Gate::new(
            config.key_requests_per_s_max,
            config.unauthenticated_requests_per_s_max,
        ));
        let writes = Arc::new(tokio::sync::Semaphore::new(
            config.writes_in_flight_max.max(1),
        ));
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                handles,
                config,
                clock,
                gate,
                writes,
                pruned_at_ms: std::sync::atomic::AtomicI64::new(0),
            }),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now().unix_ms()
    }

    pub fn ledger(&self) -> Result<&Ledger, ApiError> {
        self.inner
            .handles
            .ledger
            .as_ref()
            .ok_or_else(|| ApiError::role_disabled("the ledger"))
    }

    pub fn channel(&self) -> Result<&Channel, ApiError> {
        self.inner
            .handles
            .channel
            .as_ref()
            .ok_or_else(|| ApiError::role_disabled("the channel"))
    }

    pub fn fees(&self) -> Result<&Fees, ApiError> {
        self.inner
            .handles
            .fees
            .as_ref()
            .ok_or_else(|| ApiError::role_disabled("fee settlement"))
    }

    pub fn payroll(&self) -> Result<&Payroll, ApiError> {
        self.inner
            .handles
            .payroll
            .as_ref()
            .ok_or_else(|| ApiError::role_disabled("payroll"))
    }

    pub fn events_store(&self) -> Result<&Store, ApiError> {
        self.inner
            .handles
            .events
            .as_ref()
            .ok_or_else(|| ApiError::role_disabled("the event backbone"))
    }

    pub fn routing(&self) -> Result<&RoutingTable, ApiError> {
        self.inner
            .handles
            .routing
            .as_ref()
            .ok_or_else(|| ApiError::role_disabled("provider routing"))
    }

    /// Appends one audit record for `caller`: an event that is its own outcome
    /// (an approval requested). Actions go through [`AppState::audited`].
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<i64, ApiError> {
        let id = crate::db::append_audit(
            &self.inner.store,
            self.now_ms(),
            &caller.key_id,
            action,
            target,
            &details,
        )
        .await?;
        Ok(id)
    }

    /// Runs `work` as an audited action: one record before it runs (so no action
    /// escapes the log, even one that never ends) and one after it with its
    /// outcome — `ok`, `failed` with the error's code, or `aborted` when the
    /// request is dropped half way (the server's timeout, a crash of the task).
    /// Both are rows of the hash chain; the second names the first (`of`).
    pub async fn audited<T>(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        details: serde_json::Value,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let intent = self.audit(caller, action, target, details).await?;
        let mut pending = PendingOutcome {
            state: Some(self.clone()),
            key_id: caller.key_id.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            intent,
        };
        let result = work.await;
        let outcome = match &result {
            Ok(_) => serde_json::json!({ "outcome": "ok", "of": intent }),
            Err(error) => serde_json::json!({
                "outcome": "failed", "of": intent, "code": error.code,
                "reason": error.details.get("reason"),
            }),
        };
        // Written by a task of its own, so a drop from here on cannot lose it.
        if let Some(write) = pending.write(outcome) {
            let _ = write.await;
        }
        result
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn handles(&self) -> &Handles {
        &self.inner.handles
    }
}

/// The outcome record an audited action still owes; dropped unwritten, it writes
/// `aborted`.
struct PendingOutcome {
    state: Option<AppState>,
    key_id: String,
    action: String,
    target: String,
    intent: i64,
}

impl PendingOutcome {
    fn write(&mut self, outcome: serde_json::Value) -> Option<tokio::task::JoinHandle<()>> {
        let state = self.state.take()?;
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (key_id, action, target) = (
            std::mem::take(&mut self.key_id),
            std::mem::take(&mut self.action),
            std::mem::take(&mut self.target),
        );
        Some(handle.spawn(async move {
            let written = crate::db::append_audit(
                state.store(),
                state.now_ms(),
                &key_id,
                &action,
                &target,
                &outcome,
            )
            .await;
            if let Err(error) = written {
                tracing::error!(%error, action, target, "could not record an action's outcome");
            }
        }))
    }
}

impl Drop for PendingOutcome {
    fn drop(&mut self) {
        let intent = self.intent;
        let _ = self.write(serde_json::json!({ "outcome": "aborted", "of": intent }));
    }
}
