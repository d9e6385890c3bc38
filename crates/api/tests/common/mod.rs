//! One helper starts a whole API over real HTTP on 127.0.0.1:0: the ledger, the
//! channel (through a `FaultyCore`, so a test can slow the core), the event
//! backbone, provider routing, fee settlement against an in-process bank
//! simulator, and payroll — on a fresh SQLite file or PostgreSQL schema.
#![allow(dead_code)]

use std::sync::Arc;

use api::{ApiConfig, AppState, Handles, Role};
use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::sim::{Profile, SimConfig, Simulator};
use bank::{AccountNumber, HolderName, Transport, TransportConfig};
use channel::faults::FaultyCore;
use channel::{Channel, ChannelConfig, InProcessCore};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, SystemClock};
use payroll::{Payroll, PayrollConfig};
use serde_json::{Value, json};
use store::testing::TestDb;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub ledger: Ledger,
    pub channel: Channel,
    pub core: Arc<FaultyCore>,
    pub routing: RoutingTable,
    pub fees: fees::Fees,
    pub payroll: Payroll,
    pub db: TestDb,
    /// The channel's own database, as in production (core and channel apart).
    pub channel_db: TestDb,
    /// The api's own tables (keys, ownership, idempotency, audit).
    pub api_db: TestDb,
    pub payroll_db: TestDb,
    pub sim_db: TestDb,
    /// The bank simulator fees and payroll call (for provisioning its accounts).
    pub sim: Simulator,
    pub ops: String,
    pub service: String,
}

async fn fresh(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => Some(store::testing::sqlite().await),
        Backend::Postgres => store::testing::postgres().await,
    }
}

/// The installation's id secret of these tests: not the published test secret, so a
/// test can play a client that does not know it.
pub fn installation_ids() -> money::DerivedIds {
    money::DerivedIds::new(b"api-tests-installation-secret-not-published-0001").unwrap()
}

/// The house account services fund customers from (no balance limits).
pub const HOUSE: &str = "00000000-0000-7000-8000-00000000a001";

impl TestApp {
    pub async fn start(backend: Backend) -> Option<TestApp> {
        TestApp::start_with(backend, ApiConfig::default()).await
    }

    pub async fn start_with(backend: Backend, config: ApiConfig) -> Option<TestApp> {
        let db = fresh(backend).await?;
        let payroll_db = fresh(backend).await?;
        let channel_db = fresh(backend).await?;
        let api_db = fresh(backend).await?;
        let sim_db = store::testing::sqlite().await;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::open(db.store.clone(), clock.clone(), LedgerConfig::default())
            .await
            .unwrap();
        let core = Arc::new(FaultyCore::new(Arc::new(InProcessCore::new(
            ledger.clone(),
        ))));
        let channel = Channel::open(
            channel_db.store.clone(),
            core.clone(),
            clock.clone(),
            ChannelConfig::default(),
        )
        .await
        .unwrap();
        let sim = Simulator::open(
            sim_db.store.clone(),
            SimConfig::for_profile(Profile::Test, 7),
            clock.clone(),
        )
        .await
        .unwrap();
        let fees = fees::Fees::open(
            ledger.clone(),
            Arc::new(sim.clone()),
            clock.clone(),
            fees::FeesConfig {
                ids: installation_ids(),
                ..fees::bench::bench_config().unwrap()
            },
        )
        .await
        .unwrap();
        // Payroll keeps its tables (and the routing table) in its own database.
        let payroll_ledger = ledger.clone();
        let routing = RoutingTable::open(payroll_db.store.clone(), clock.clone())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(bank::sim::serve_simulator(
            sim.clone(),
            listener,
            std::future::pending(),
        ));
        let transport = Transport::new(TransportConfig::new(&sim_url)).unwrap();
        let facade = Facade::connect(routing.clone(), &transport);
        let payroll = Payroll::open(
            payroll_db.store.clone(),
            payroll_ledger,
            facade,
            clock.clone(),
            PayrollConfig::new(
                AccountNumber::new("9000000001").unwrap(),
                HolderName::new("OPERATING").unwrap(),
                installation_ids(),
            ),
        )
        .await
        .unwrap();
        let handles = Handles {
            ledger: Some(ledger.clone()),
            channel: Some(channel.clone()),
            fees: Some(fees.clone()),
            payroll: Some(payroll.clone()),
            events: Some(db.store.clone()),
            routing: Some(routing.clone()),
            bank: Some(Arc::new(sim.clone())),
            statement: Some(Arc::new(sim.clone())),
            clock: Some(clock),
            probes: Vec::new(),
        };
        let state = AppState::new(api_db.store.clone(), handles, config)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(api::serve(listener, state.clone(), std::future::pending()));
        let ops = api::auth::create_key(&api_db.store, Role::Ops, None, "test", 0)
            .await
            .unwrap()
            .key;
        // The services of these tests fund customers from house accounts.
        let service = api::auth::create_key_granted(
            &api_db.store,
            Role::Service,
            None,
            &[api::auth::Grant::HouseAccounts],
            "test",
            0,
        )
        .await
        .unwrap()
        .key;
        let app = TestApp {
            base,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            state,
            ledger,
            channel,
            core,
            routing,
            fees,
            payroll,
            db,
            channel_db,
            api_db,
            payroll_db,
            sim_db,
            sim,
            ops,
            service,
        };
        let (status, body) = app
            .post(
                &app.service,
                "/v1/accounts",
                json!({ "id": HOUSE, "code": 9 }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        Some(app)
    }

    pub async fn customer_key(&self, customer: &str) -> String {
        api::auth::create_key(
            &self.api_db.store,
            Role::Customer,
            Some(customer),
            "test",
            0,
        )
        .await
        .unwrap()
        .key
    }

    /// Opens a customer's deposit account (never overdrawn) and funds it from the house.
    pub async fn open_funded(&self, customer: &str, account: &str, amount_krw: i64) {
        let (status, body) = self
            .post(
                &self.service,
                "/v1/accounts",
                json!({
                    "id": account, "code": 1, "customer_id": customer,
                    "flags": { "debits_must_not_exceed_credits": true }
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        if amount_krw > 0 {
            let (status, body) = self
                .post(
                    &self.service,
                    "/v1/transfers",
                    json!({
                        "id": uuid::Uuid::now_v7().to_string(),
                        "debit_account_id": HOUSE,
                        "credit_account_id": account,
                        "amount": amount_krw,
                    }),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn post_idempotent(
        &self,
        key: &str,
        path: &str,
        idempotency_key: &str,
        body: Value,
    ) -> (u16, Value, bool) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let replayed = response.headers().get("idempotency-replayed").is_some();
        let (status, body) = read(response).await;
        (status, body, replayed)
    }

    /// Rows of the api's tables and the ledger's totals: what "nothing written" compares.
    pub async fn footprint(&self) -> String {
        let counts = api::db::row_counts(&self.api_db.store).await.unwrap();
        let totals = self.ledger.totals().await.unwrap();
        format!("{counts:?} {totals:?}")
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    if status >= 400 {
        assert!(
            content_type.starts_with("application/json"),
            "error {status} is not JSON ({content_type}): {text}"
        );
    }
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        for field in ["code", "message", "details"] {
            assert!(body.get(field).is_some(), "error without {field}: {body}");
        }
        let code = body["code"].as_str().unwrap();
        assert!(
            api::error::CODES
                .iter()
                .any(|(c, s, _)| *c == code && *s == status),
            "code {code} with status {status} is not in the catalogue"
        );
    }
    (status, body)
}

pub fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Runs `test` on SQLite and, when reachable, on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body(common::Backend::Sqlite).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $body(common::Backend::Postgres).await;
        }
    };
}
