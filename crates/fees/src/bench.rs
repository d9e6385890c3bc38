//! The payout benchmark: N items paid through the bank simulator over real HTTP
//! with a fixed latency L and concurrency C, against the ideal ⌈calls/C⌉·L. It
//! runs on scratch SQLite files in a new temporary directory and removes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank::sim::{Profile, SimConfig, Simulator};
use bank::{AccountNumber, HolderName, HttpBank, TransportConfig};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, SystemClock};
use serde::Serialize;
use store::Store;
use tokio::net::TcpListener;

use crate::workload::{generate_shaped, provision_bank};
use crate::{BusinessDay, Fees, FeesConfig, FeesError, Trigger};

/// Items one benchmark run may pay.
pub const BENCH_ITEMS_MAX: usize = 100_000;
/// Calls in flight one benchmark run may ask for.
pub const BENCH_CONCURRENCY_MAX: usize = 1_000;

/// What to measure.
#[derive(Clone, Debug)]
pub struct PayoutParams {
    pub items: usize,
    pub latency_ms: u64,
    pub concurrency: usize,
    pub seed: u64,
}

/// One JSON line of `settle bench payout`.
#[derive(Clone, Debug, Serialize)]
pub struct PayoutReport {
    pub bench: &'static str,
    pub items: usize,
    pub calls: i64,
    pub latency_ms: u64,
    pub concurrency: usize,
    pub ideal_s: f64,
    pub wall_s: f64,
    pub ratio: f64,
    pub sequential_estimate_s: f64,
    pub succeeded: i64,
}

/// Runs the benchmark; `progress` hears how many chunks were answered.
pub async fn payout(
    params: &PayoutParams,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<PayoutReport, FeesError> {
    if !(1..=BENCH_ITEMS_MAX).contains(&params.items)
        || !(1..=BENCH_CONCURRENCY_MAX).contains(&params.concurrency)
    {
        return Err(FeesError::Invalid(format!(
            "need 1..={BENCH_ITEMS_MAX} items and 1..={BENCH_CONCURRENCY_MAX} concurrency"
        )));
    }
    let dir = std::env::temp_dir().join(format!(
        "settle-bench-payout-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| FeesError::Invalid(format!("creating {}: {e}", dir.display())))?;
    // The simulated bank's own storage is not what this measures: on a machine
    // with a RAM disk its database lives there, so its commits do not queue
    // behind fsync. settle's database stays on the real disk.
    let shm = std::path::Path::new("/dev/shm");
    let bank_dir = if shm.is_dir() {
        shm.join(dir.file_name().unwrap_or_default())
    } else {
        dir.clone()
    };
    std::fs::create_dir_all(&bank_dir)
        .map_err(|e| FeesError::Invalid(format!("creating {}: {e}", bank_dir.display())))?;
    let outcome = run_in(&dir, &bank_dir, params, progress).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bank_dir);
    outcome
}

async fn run_in(
    dir: &std::path::Path,
    bank_dir: &std::path::Path,
    params: &PayoutParams,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<PayoutReport, FeesError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim_store = Store::connect(&format!(
        "sqlite://{}",
        bank_dir.join("banksim.db").display()
    ))
    .await?;
    let mut sim_config = SimConfig::for_profile(Profile::Test, params.seed);
    sim_config.latency_ms_min = params.latency_ms;
    sim_config.latency_ms_max = params.latency_ms;
    sim_config.concurrent_max = params.concurrency + 16;
    let sim = Simulator::open(sim_store, sim_config, clock.clone())
        .await
        .map_err(|e| FeesError::Invalid(format!("simulator: {e}")))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| FeesError::Invalid(format!("binding the simulator: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| FeesError::Invalid(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bank::sim::serve_simulator(sim.clone(), listener, async {
        let _ = stopped.await;
    }));

    let mut transport = TransportConfig::new(&format!("http://{address}"));
    transport.concurrent_max = Some(params.concurrency);
    transport.requests_per_s_max = None;
    transport.idle_connections_per_host_max = params.concurrency;
    transport.timeout_ms = params.latency_ms + 10_000;
    let bank = Arc::new(HttpBank::new(transport)?);

    let store = Store::connect(&format!("sqlite://{}", dir.join("settle.db").display())).await?;
    let ledger = Ledger::open(store, clock.clone(), LedgerConfig::default()).await?;
    let mut config = bench_config()?;
    config.bank_calls_in_flight_max = params.concurrency;
    let fees = Fees::open(ledger, bank, clock.clone(), config.clone()).await?;

    let day = BusinessDay::from_kst(clock.now()).previous();
    let workload = generate_shaped(day, params.items, params.seed, 1)?;
    fees.register_loans(&workload.loans).await?;
    fees.accrue(&workload.accruals).await?;
    provision_bank(&sim, &config, &workload).await?;
    fees.record(day, Trigger::Operator).await?;
    let chunks_total = fees.chunks_to_send(day).await?;
    let started = Instant::now();
    let report = fees
        .pay_with_progress(day, Trigger::Operator, &|done| progress(done, chunks_total))
        .await?;
    let wall = started.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;

    let calls = report.counts.get("calls").copied().unwrap_or(0);
    let succeeded = report.counts.get("succeeded").copied().unwrap_or(0);
    let concurrency = params.concurrency as f64;
    let latency_s = params.latency_ms as f64 / 1_000.0;
    let ideal_s = (calls as f64 / concurrency).ceil() * latency_s;
    let wall_s = wall.as_secs_f64();
    Ok(PayoutReport {
        bench: "payout",
        items: params.items,
        calls,
        latency_ms: params.latency_ms,
        concurrency: params.concurrency,
        ideal_s,
        wall_s,
        ratio: if ideal_s > 0.0 { wall_s / ideal_s } else { 0.0 },
        sequential_estimate_s: calls as f64 * latency_s,
        succeeded,
    })
}

/// The house accounts the demo and benchmark use at the simulator.
pub fn bench_config() -> Result<FeesConfig, FeesError> {
    Ok(FeesConfig::new(
        AccountNumber::new("1002000000001")?,
        HolderName::new("세틀주식회사")?,
        AccountNumber::new("1002000000009")?,
        HolderName::new("세틀주식회사 법인")?,
        money::DerivedIds::for_tests(),
    ))
}
