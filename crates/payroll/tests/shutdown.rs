//! Bounded shutdown: with a bank that answers in 2.5 s, the payroll workers
//! (poll round, stage dispatchers, dead-letter watch) stop within their grace
//! once told, instead of waiting for the round or the stages in hand; what was
//! cut off resumes from the stores at the next start.

mod common;

use std::time::{Duration, Instant};

use common::*;
use payroll::{DepositState, Workers, WorkersConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_stop_within_their_grace_while_the_bank_takes_two_and_a_half_seconds() {
    let mut options = Options::new(Backend::Sqlite);
    options.sim = Box::new(|sim| {
        sim.latency_ms_min = 2_500;
        sim.latency_ms_max = 2_500;
    });
    let Some(mut system) = System::start(options).await else {
        return;
    };
    system.enrol(2, 0, 0).await;
    for user in 0..2 {
        system.pay_salary(user, 100_000).await;
    }
    let mut config = WorkersConfig::for_backend(system.db.store.backend());
    config.poll_every_ms = Some(60_000);
    config.shutdown_grace_ms = 1_000;
    let workers = Workers::new(system.payroll.clone(), config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(workers.run(async {
        let _ = stopped.await;
    }));
    // The poll round is waiting on the bank.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(1_000 + 800),
        "stopped within the grace, took {took:?}"
    );

    // A fresh start picks the work up where the stores say.
    system.poller.run_round().await.unwrap();
    system.settle().await;
    for deposit in system.payroll.deposits().await.unwrap() {
        assert_eq!(deposit.state, DepositState::Completed, "{deposit:?}");
    }
    system.assert_books().await;
}
