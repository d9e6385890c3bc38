//! The reliability suite's short version, as CI runs it: each workload runs in a
//! child `settle` process that is SIGKILLed (or dies at a fail point) 20 times at
//! seeded random moments and restarted, under bank or core faults at 10 % and
//! 30 %, on SQLite and on PostgreSQL with the run's connections terminated
//! mid-run, and (relay) a private nats-server killed and restarted under the
//! relay; then every invariant of DESIGN.md is checked. The long version is
//! `settle torture --cycles 200` (docs/reliability.md).

use torture::Workload;
use torture::faults::FaultKind;
use torture::harness::{Plan, Summary, run};

const CYCLES: u64 = 20;

fn plan(workload: Workload, seed: u64, fault_rate_pct: u32) -> Plan {
    let mut plan = Plan::new(workload, env!("CARGO_BIN_EXE_settle").into());
    plan.cycles = CYCLES;
    plan.seed = seed;
    plan.fault_rate_pct = fault_rate_pct;
    plan.kill_ms_max = 1_200;
    if workload == Workload::Fees {
        plan.faults = FaultKind::ALL.to_vec();
    }
    plan
}

/// The test PostgreSQL server, or None outside CI when it is down.
async fn postgres_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_owned());
    match store::Store::connect(&url).await {
        Ok(admin) => {
            admin.close().await;
            Some(url)
        }
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: PostgreSQL at {url} is unreachable ({error})");
            None
        }
        Err(error) => panic!("PostgreSQL at {url} is unreachable in CI: {error}"),
    }
}

/// Whether a private nats-server can be started (always in CI).
fn nats_server_available() -> bool {
    let binary = torture::nats_server::binary();
    if binary.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI",
        binary.display()
    );
    eprintln!("skipping: no {}", binary.display());
    false
}

async fn torture(plan: Plan) -> Summary {
    eprintln!(
        "torture seed {} (replay: {})",
        plan.seed,
        torture::harness::replay_command(&plan)
    );
    let summary = run(&plan, &|_, _| {}).await.unwrap();
    let violated: Vec<_> = summary.checks.iter().filter(|c| !c.holds).collect();
    assert!(
        violated.is_empty(),
        "seed {}: {violated:#?}\nreplay: {}\nkept at {:?}",
        summary.seed,
        summary.replay,
        summary.kept_at
    );
    assert_eq!(summary.child_panics, 0);
    // The harness really killed children mid-work, not idle ones.
    assert!(
        summary.kills + summary.failpoint_deaths >= CYCLES * 3 / 4,
        "only {} kills and {} fail-point deaths in {CYCLES} cycles",
        summary.kills,
        summary.failpoint_deaths
    );
    assert!(summary.operations > CYCLES, "{summary:?}");
    eprintln!(
        "{}: {} kills, {} fail points, {} operations, {} bank faults, {} core faults, {} backends terminated",
        summary.workload.name(),
        summary.kills,
        summary.failpoint_deaths,
        summary.operations,
        summary.faults_injected.total(),
        summary.core_faults_injected,
        summary.pg_backends_terminated
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_settlement_killed_twenty_times_under_10_percent_bank_faults_pays_each_item_once() {
    let summary = torture(plan(Workload::Fees, 20_261_125, 10)).await;
    assert!(summary.faults_injected.total() > 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_settlement_killed_twenty_times_under_30_percent_faults_and_dropped_postgres_connections()
 {
    let Some(url) = postgres_url().await else {
        return;
    };
    let mut plan = plan(Workload::Fees, 20_261_126, 30);
    plan.database_url = Some(url);
    plan.pg_drop_pct = 25;
    let summary = torture(plan).await;
    assert!(summary.faults_injected.total() > 0, "{summary:?}");
    assert!(summary.pg_backends_terminated > 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_transfers_killed_twenty_times_with_10_percent_lost_answers_settle_exactly_once() {
    let summary = torture(plan(Workload::Channel, 20_261_127, 10)).await;
    assert!(summary.core_faults_injected > 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_transfers_killed_twenty_times_with_30_percent_lost_answers_and_dropped_postgres_connections()
 {
    let Some(url) = postgres_url().await else {
        return;
    };
    let mut plan = plan(Workload::Channel, 20_261_128, 30);
    plan.database_url = Some(url);
    plan.pg_drop_pct = 25;
    let summary = torture(plan).await;
    assert!(summary.core_faults_injected > 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_to_a_restarted_nats_with_the_relay_killed_twenty_times_delivers_every_event_once()
{
    if !nats_server_available() {
        return;
    }
    let mut plan = plan(Workload::Relay, 20_261_129, 0);
    plan.nats_restart_pct = 30;
    let summary = torture(plan).await;
    assert!(summary.nats_restarts > 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_on_postgres_with_dropped_connections_and_a_restarted_nats_delivers_every_event_once()
 {
    if !nats_server_available() {
        return;
    }
    let Some(url) = postgres_url().await else {
        return;
    };
    let mut plan = plan(Workload::Relay, 20_261_130, 0);
    plan.database_url = Some(url);
    plan.pg_drop_pct = 25;
    plan.nats_restart_pct = 25;
    let summary = torture(plan).await;
    assert!(
        summary.nats_restarts + summary.pg_backends_terminated > 0,
        "{summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salary_stages_killed_twenty_times_settle_each_deposit_once_with_each_stage_once() {
    let summary = torture(plan(Workload::Payroll, 20_261_131, 0)).await;
    assert!(summary.work_items >= CYCLES * 40, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salary_stages_killed_twenty_times_on_postgres_with_dropped_connections_settle_each_deposit_once()
 {
    let Some(url) = postgres_url().await else {
        return;
    };
    let mut plan = plan(Workload::Payroll, 20_261_132, 0);
    plan.database_url = Some(url);
    plan.pg_drop_pct = 25;
    let summary = torture(plan).await;
    assert!(summary.pg_backends_terminated > 0, "{summary:?}");
}
