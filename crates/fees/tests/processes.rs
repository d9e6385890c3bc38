//! Fee runs across processes and shutdowns: two processes (each its own pool on
//! one database) running Pay for one day at once never send one `bank_tran_id`
//! twice — the module lock and the chunk states see to it — and a run told to
//! stop finishes the window of bank calls in flight, records their answers, and
//! leaves the rest for the next run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank::BankApi;
use common::{Options, System, one_tax, owed_by_account, system};
use fees::scheduler::Scheduler;
use fees::{DayState, Fees, Outcome, Trigger};
use ledger::{Ledger, LedgerConfig};
use money::Clock;
use store::testing::TestDb;

/// Another process's handle on the same database and bank.
async fn second_process(s: &System) -> (store::Store, Fees) {
    let store = store::Store::connect(&s.db.url).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(s.clock.clone());
    let ledger = Ledger::open(store.clone(), clock.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let bank: Arc<dyn BankApi> = s.tripwire.clone();
    let fees = Fees::open(ledger, bank, clock, s.config().clone())
        .await
        .unwrap();
    (store, fees)
}

async fn two_processes_paying_one_day_send_each_id_once(db: TestDb) {
    let s = system(db, Options::default()).await;
    let workload = fees::workload::generate(s.day, 40, 5).unwrap();
    s.load(&workload).await;
    let (b_store, b) = second_process(&s).await;
    let done = s.fees.record(s.day, Trigger::Scheduler).await.unwrap();
    assert_eq!(done.outcome, Outcome::Done);
    let mut worked = 0;
    for _ in 0..5 {
        let (a_run, b_run) = tokio::join!(
            s.fees.pay(s.day, Trigger::Scheduler),
            b.pay(s.day, Trigger::Operator)
        );
        for run in [a_run.unwrap(), b_run.unwrap()] {
            assert!(
                matches!(
                    run.outcome,
                    Outcome::Done | Outcome::Busy | Outcome::AlreadyDone
                ),
                "{run:?}"
            );
            worked += usize::from(run.outcome == Outcome::Done);
        }
    }
    assert_eq!(worked, 1, "one Pay run did the work");
    for fees in [&s.fees, &b] {
        let verified = fees.verify(s.day, Trigger::Scheduler).await.unwrap();
        assert!(matches!(
            verified.outcome,
            Outcome::Done | Outcome::AlreadyDone
        ));
    }
    let (a_run, b_run) = tokio::join!(
        s.fees.withdraw(s.day, Trigger::Scheduler),
        b.withdraw(s.day, Trigger::Scheduler)
    );
    let withdrawn = [a_run.unwrap(), b_run.unwrap()]
        .iter()
        .filter(|r| r.outcome == Outcome::Done)
        .count();
    assert_eq!(withdrawn, 1, "the day is withdrawn once");
    let submitted = s.sim.submissions();
    assert_eq!(
        submitted.repeated_total, 0,
        "ids submitted twice: {:?}",
        submitted.repeated
    );
    assert_eq!(s.paid_by_account().await, owed_by_account(&workload));
    s.assert_no_duplicate_ids().await;
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Withdrawn);
    s.assert_ledger_balances().await;
    b_store.close().await;
}

on_both_backends!(two_processes_paying_one_day_send_each_id_once);

/// A bank answering in 2.5 s, four calls in flight, twelve chunks: a whole Pay
/// takes three windows (7.5 s). Shutdown during the first window stops the
/// scheduler when that window is answered; a fresh process pays the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_run_stops_after_its_window_on_shutdown_and_the_next_run_resumes() {
    let options = Options {
        latency_ms: (2_500, 2_500),
        in_flight_max: 4,
        ..Options::default()
    };
    let s = system(store::testing::sqlite().await, options).await;
    s.load(&one_tax(1, 1_200_000)).await;
    s.fees.record(s.day, Trigger::Scheduler).await.unwrap();
    let scheduler = Scheduler::new(s.fees.clone(), Duration::from_secs(3_600));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let scheduler = scheduler.clone();
        async move {
            scheduler
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    // The first window is on its way to the bank.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    running.await.unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(2_500 + 1_500),
        "stopped after the window in flight, took {took:?}"
    );
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.chunks.get("succeeded"), Some(&4), "{status:?}");
    assert_eq!(status.state, DayState::Recorded, "not paid in full");

    // The next process resumes where the first stopped.
    let (store, next) = second_process(&s).await;
    let resumed = next.pay(s.day, Trigger::Scheduler).await.unwrap();
    assert_eq!(resumed.outcome, Outcome::Done);
    next.verify(s.day, Trigger::Scheduler).await.unwrap();
    let status = next.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.chunks.get("succeeded"), Some(&12), "{status:?}");
    assert_eq!(status.state, DayState::Verified);
    assert_eq!(s.sim.submissions().repeated_total, 0);
    store.close().await;
}
