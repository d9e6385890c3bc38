//! The deterministic simulation mode: one seed reproduces one run exactly (same
//! trace hash, step for step), a different seed gives a different run, and every
//! run ends with the day withdrawn and the books agreeing with the bank.

use torture::simulation::{SimPlan, run};

fn scratch(label: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "settle-sim-test-{label}-{}",
        uuid::Uuid::now_v7().simple()
    ))
}

async fn simulate(seed: u64) -> torture::simulation::SimReport {
    let dir = scratch(&seed.to_string());
    let report = run(&SimPlan::new(seed), &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report.unwrap();
    assert_eq!(
        report.violations, 0,
        "seed {seed} broke an invariant; replay: {}\n{:#?}",
        report.replay, report.checks
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_replays_the_same_trace_and_another_seed_differs() {
    let first = simulate(11).await;
    let again = simulate(11).await;
    assert_eq!(first.trace_hash, again.trace_hash, "seed 11 did not replay");
    assert_eq!(first.steps, again.steps);
    assert_eq!(first.trace_lines, again.trace_lines);
    let other = simulate(12).await;
    assert_ne!(
        first.trace_hash, other.trace_hash,
        "seeds 11 and 12 gave one trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_schedules_with_bank_faults_always_settle_the_day() {
    let seeds: u64 = std::env::var("SETTLE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for seed in 100..100 + seeds {
        let report = simulate(seed).await;
        eprintln!(
            "seed {seed}: {} steps, trace {}",
            report.steps, report.trace_hash
        );
    }
}
