//! One helper that starts a bank simulator server on port 0 over a fresh database,
//! plus small admin calls. Tests state only what is special about them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bank::sim::{OpenAccount, Profile, Salary, SimConfig, Simulator};
use bank::types::{TransferInquiry, TransferRequest};
use bank::{AccountNumber, BankTranId, HolderName, HttpBank, TranDate, TransportConfig};
use money::{Krw, SystemClock};
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const OPERATING: &str = "1002000000001";
pub const OPERATING_HOLDER: &str = "세틀주식회사";
pub const PAYEE: &str = "1002000000002";
pub const PAYEE_HOLDER: &str = "김민지";
pub const INSTITUTION: &str = "M202500001";

/// Runs `$scenario(store)` as two tests: on a fresh SQLite file and a fresh
/// PostgreSQL schema (skipped outside CI when PostgreSQL is unreachable).
#[macro_export]
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let db = store::testing::sqlite().await;
            $scenario(db.store.clone(), db.url.clone()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(db) = store::testing::postgres().await else {
                return;
            };
            $scenario(db.store.clone(), db.url.clone()).await;
        }
    };
}

pub fn test_config() -> SimConfig {
    SimConfig::for_profile(Profile::Test, 42)
}

/// A running simulator server. Dropping it stops accepting; `stop` also drains.
pub struct TestSim {
    pub addr: SocketAddr,
    pub base_url: String,
    pub sim: Simulator,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), bank::sim::SimError>>>,
    admin: reqwest::Client,
}

pub async fn spawn_sim(store: Store, config: SimConfig) -> TestSim {
    let sim = Simulator::open(store, config, Arc::new(SystemClock))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bank::sim::serve_simulator(
        sim.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    TestSim {
        addr,
        base_url: format!("http://{addr}"),
        sim,
        shutdown: Some(shutdown),
        task: Some(task),
        admin: reqwest::Client::new(),
    }
}

impl TestSim {
    pub fn client_config(&self) -> TransportConfig {
        let mut config = TransportConfig::new(&self.base_url);
        config.timeout_ms = 5_000;
        config.requests_per_s_max = None;
        config
    }

    pub fn client(&self) -> HttpBank {
        HttpBank::new(self.client_config()).unwrap()
    }

    /// Stops accepting, waits for in-flight requests, and returns when the server
    /// task has ended.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub async fn admin_post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .admin
            .post(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        self.admin
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn open_account(&self, number: &str, holder: &str, balance_krw: i64) {
        let (status, body) = self
            .admin_post(
                "/admin/accounts",
                serde_json::to_value(OpenAccount {
                    account_number: AccountNumber::new(number).unwrap(),
                    holder_name: HolderName::new(holder).unwrap(),
                    balance_krw: Krw::new(balance_krw),
                })
                .unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn pay_salary(&self, number: &str, amount_krw: i64) -> serde_json::Value {
        let (status, body) = self
            .admin_post(
                "/admin/salary",
                serde_json::to_value(Salary {
                    account_number: AccountNumber::new(number).unwrap(),
                    amount_krw: Krw::new(amount_krw),
                    depositor_name: "(주)고용주".into(),
                })
                .unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The statement's transfer movements, as `(bank_tran_id, amount_krw)`.
    pub async fn transfer_movements(&self) -> Vec<(String, i64)> {
        let statement = self.admin_get("/admin/statement").await;
        statement["movements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["bank_tran_id"].is_string())
            .map(|m| {
                (
                    m["bank_tran_id"].as_str().unwrap().to_owned(),
                    m["amount_krw"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    pub async fn stats(&self) -> bank::sim::StatsBody {
        serde_json::from_value(self.admin_get("/admin/stats").await).unwrap()
    }

    pub async fn standard_accounts(&self) {
        self.open_account(OPERATING, OPERATING_HOLDER, 10_000_000)
            .await;
        self.open_account(PAYEE, PAYEE_HOLDER, 0).await;
    }
}

pub fn tran_id(sequence: u64) -> BankTranId {
    BankTranId::from_sequence(INSTITUTION, sequence).unwrap()
}

pub fn today() -> TranDate {
    TranDate::parse("20250301").unwrap()
}

/// A deposit transfer from the operating account to the payee.
pub fn payout(sequence: u64, amount_krw: i64) -> TransferRequest {
    TransferRequest {
        bank_tran_id: tran_id(sequence),
        tran_date: today(),
        from_account: AccountNumber::new(OPERATING).unwrap(),
        to_account: AccountNumber::new(PAYEE).unwrap(),
        holder_name: HolderName::new(PAYEE_HOLDER).unwrap(),
        amount_krw: Krw::new(amount_krw),
    }
}

pub fn inquiry(sequence: u64) -> TransferInquiry {
    TransferInquiry {
        bank_tran_id: tran_id(sequence),
        tran_date: today(),
        original: None,
    }
}
