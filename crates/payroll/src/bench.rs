//! `settle bench polling`: polls `accounts` virtual accounts once against the bank
//! simulator over HTTP under a `rps` cap and compares the wall time with the ideal
//! (`accounts / rps` seconds). The simulator enforces the same cap per client and
//! counts refusals, so a poller that ever exceeds the cap shows up as
//! `rejected_rate_total > 0`.
//!
//! Benchmark code only: scratch SQLite files in the temp directory, removed after.
//! It measures; it never touches a real bank or settle's own database.

use std::sync::Arc;
use std::time::Instant;

use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::sim::{Profile, SimConfig, Simulator};
use bank::{AccountNumber, HolderName, Transport, TransportConfig, UserId};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, Krw, SystemClock};
use serde::Serialize;
use store::Store;
use tokio::net::TcpListener;

use crate::poller::Poller;
use crate::{NewUser, Payroll, PayrollConfig, PayrollError};

/// Accounts one benchmark run polls at most.
pub const BENCH_ACCOUNTS_MAX: usize = 100_000;
/// Enrolments in flight during set-up.
const ENROL_CONCURRENT_MAX: usize = 32;

/// What to measure.
#[derive(Clone, Debug)]
pub struct PollingParams {
    pub accounts: usize,
    pub requests_per_s: u32,
    pub concurrent_max: usize,
}

/// One JSON line of `settle bench polling --json`.
#[derive(Clone, Debug, Serialize)]
pub struct PollingReport {
    pub bench: &'static str,
    pub accounts: usize,
    pub rps: u32,
    pub ideal_s: f64,
    pub wall_s: f64,
    pub ratio: f64,
    pub bank_requests: u64,
    /// Requests the simulator refused for going over `rps` (must be 0).
    pub rejected_rate_total: u64,
    pub concurrent_max_observed: u64,
}

struct Scratch {
    paths: Vec<std::path::PathBuf>,
}

impl Scratch {
    async fn store(&mut self, name: &str) -> Result<Store, PayrollError> {
        let path = std::env::temp_dir().join(format!(
            "settle-bench-polling-{}-{name}.db",
            uuid::Uuid::new_v4().simple()
        ));
        self.paths.push(path.clone());
        Ok(Store::connect(&format!("sqlite://{}", path.display())).await?)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.paths {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

async fn payroll_on(
    store: &Store,
    ledger: &Ledger,
    base_url: &str,
    client_id: &str,
    transport_requests_per_s_max: Option<u32>,
    params: &PollingParams,
    clock: &Arc<dyn Clock>,
) -> Result<Payroll, PayrollError> {
    let mut transport = TransportConfig::new(base_url);
    transport.client_id = client_id.to_owned();
    transport.requests_per_s_max = transport_requests_per_s_max;
    transport.concurrent_max = Some(params.concurrent_max.max(ENROL_CONCURRENT_MAX));
    let transport = Transport::new(transport)?;
    let routing = RoutingTable::open(store.clone(), clock.clone()).await?;
    let facade = Facade::connect(routing, &transport);
    let mut config = PayrollConfig::new(
        AccountNumber::new("1002000000001")?,
        HolderName::new("세틀주식회사")?,
        money::DerivedIds::for_tests(),
    );
    config.poll_requests_per_s_max = params.requests_per_s;
    config.poll_concurrent_max = params.concurrent_max;
    Payroll::open(store.clone(), ledger.clone(), facade, clock.clone(), config).await
}

/// Sets up `accounts` enrolled users on a fresh simulator, then times one round.
pub async fn polling(params: &PollingParams) -> Result<PollingReport, PayrollError> {
    if params.accounts == 0 || params.accounts > BENCH_ACCOUNTS_MAX || params.requests_per_s == 0 {
        return Err(PayrollError::InvalidConfig(format!(
            "accounts must be 1..={BENCH_ACCOUNTS_MAX} and rps positive"
        )));
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut scratch = Scratch { paths: Vec::new() };
    let sim_store = scratch.store("bank").await?;
    let store = scratch.store("payroll").await?;
    let ledger_store = scratch.store("ledger").await?;
    let mut sim_config = SimConfig::for_profile(Profile::Test, 7);
    sim_config.requests_per_s_per_client_max = Some(params.requests_per_s);
    sim_config.concurrent_max = 1_024;
    let sim = Simulator::open(sim_store, sim_config, clock.clone())
        .await
        .map_err(|error| PayrollError::InvalidConfig(format!("simulator: {error}")))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| PayrollError::InvalidConfig(format!("bind: {error}")))?;
    let base_url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|error| PayrollError::InvalidConfig(format!("bind: {error}")))?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bank::sim::serve_simulator(sim, listener, async move {
        let _ = stopped.await;
    }));
    let ledger = Ledger::open(ledger_store, clock.clone(), LedgerConfig::default()).await?;

    // Set-up enrols through another client id, so its requests never count
    // against the measured poller's rate.
    let setup = payroll_on(
        &store,
        &ledger,
        &base_url,
        "settle-bench-setup",
        // Set-up stays under the simulator's per-client cap, with a margin for
        // skew between the two limiters.
        Some((params.requests_per_s.saturating_mul(9) / 10).max(1)),
        params,
        &clock,
    )
    .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..params.accounts {
        let setup = setup.clone();
        tasks.spawn(async move {
            let user = NewUser {
                user_id: UserId::from_uuid(uuid::Uuid::from_u128(
                    0x0192_0000_0000_7000_8000_0000_0000_0000 | n as u128,
                )),
                holder_name: HolderName::new(&format!("직원{n}"))?,
                payout_account: AccountNumber::new(&format!("3333{n:010}"))?,
                payout_holder: HolderName::new(&format!("직원{n}"))?,
                advance_krw: Krw::ZERO,
                suspend_percent: 0,
            };
            setup.enrol(&user).await.map(|_| ())
        });
        if tasks.len() >= ENROL_CONCURRENT_MAX
            && let Some(done) = tasks.join_next().await
        {
            done.map_err(|error| PayrollError::InvalidConfig(format!("set-up task: {error}")))??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|error| PayrollError::InvalidConfig(format!("set-up task: {error}")))??;
    }
    let admin = reqwest::Client::new();
    let stats = |admin: reqwest::Client, url: String| async move {
        let body: bank::sim::StatsBody = admin
            .get(format!("{url}/admin/stats"))
            .send()
            .await
            .map_err(|error| PayrollError::Webhook(error.to_string()))?
            .json()
            .await
            .map_err(|error| PayrollError::Webhook(error.to_string()))?;
        Ok::<_, PayrollError>(body)
    };
    let before = stats(admin.clone(), base_url.clone()).await?;

    let measured = payroll_on(
        &store,
        &ledger,
        &base_url,
        "settle-bench-poller",
        // The measured poller throttles itself; the transport must not.
        None,
        params,
        &clock,
    )
    .await?;
    let poller = Poller::new(measured)?;
    let started = Instant::now();
    let round = poller.run_round().await?;
    let wall_s = started.elapsed().as_secs_f64();
    let after = stats(admin, base_url).await?;
    let _ = stop.send(());
    let _ = server.await;
    let ideal_s = params.accounts as f64 / f64::from(params.requests_per_s);
    Ok(PollingReport {
        bench: "polling",
        accounts: params.accounts,
        rps: params.requests_per_s,
        ideal_s,
        wall_s,
        ratio: wall_s / ideal_s,
        bank_requests: round.bank_requests,
        rejected_rate_total: after
            .rejected_rate_total
            .saturating_sub(before.rejected_rate_total),
        concurrent_max_observed: after.concurrent_max_observed,
    })
}
