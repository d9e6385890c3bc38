//! Crash safety: the stage processing is killed at seeded random points (the task
//! running the dispatchers is aborted mid-flight: open transactions roll back,
//! bank calls are cut off) and restarted, again and again. No stage has a second
//! effect and no deposit is lost.
//!
//! It runs on PostgreSQL, the production shape: there an aborted task's connection
//! is closed and the server rolls its transaction back, as after a real crash. On
//! SQLite an aborted task can leave its pooled connection holding the file's write
//! lock inside the still-running process — something a real crash (which ends the
//! process) never does — and the test then measured that artefact, not payroll.

mod common;

use std::time::Duration;

use common::*;
use payroll::DepositState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CYCLES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stages_at_random_points_and_restarting_settles_every_deposit_exactly_once() {
    let seed: u64 = std::env::var("PAYROLL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_124);
    eprintln!("crash seed {seed} (PAYROLL_CRASH_SEED to replay)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let Some(mut system) = System::start(Options::new(Backend::Postgres)).await else {
        return;
    };
    system.enrol(40, 100_000, 10).await;
    for n in 0..40 {
        if n % 5 == 0 {
            system
                .sim
                .set_repayment_due(&system.users[n].1, money::Krw::new(80_000))
                .await
                .unwrap();
        }
        system.pay_salary(n, 280_000 + n as i64 * 1_001).await;
    }
    system.poller.run_round().await.unwrap();

    for cycle in 0..CYCLES {
        if cycle == CYCLES / 2 {
            // A second salary for some users arrives mid-way.
            for n in 0..10 {
                system.pay_salary(n, 310_000 + n as i64).await;
            }
            system.poller.run_round().await.unwrap();
        }
        let mut dispatchers = std::mem::take(&mut system.dispatchers);
        let running = tokio::spawn(async move {
            loop {
                for dispatcher in &mut dispatchers {
                    let _ = dispatcher.run_once().await;
                }
                tokio::task::yield_now().await;
            }
        });
        let kill_after_ms = rng.random_range(1..40);
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        running.abort();
        let _ = running.await;
        system.restart_dispatchers().await;
    }
    system.settle().await;

    let deposits = system.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), 50, "no deposit lost or invented");
    for d in &deposits {
        assert_eq!(d.state, DepositState::Completed, "{d:?}");
    }
    // Each stage of each deposit committed exactly once.
    let log = system.payroll.stage_log().await.unwrap();
    assert_eq!(log.len(), 50 * 5, "five stages per deposit, none twice");
    let mut seen = std::collections::HashSet::new();
    for (deposit, _, stage) in &log {
        assert!(
            seen.insert((deposit.clone(), stage.clone())),
            "{deposit} ran {stage} twice"
        );
    }
    // The bank paid every chunk once, and exactly what the ledger booked.
    system.assert_books().await;
}
