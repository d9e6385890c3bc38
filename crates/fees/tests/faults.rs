//! Fee settlement against a misbehaving bank: timeouts after commit, 5xx before
//! commit, frozen accounts — and a payout killed at random moments. Whatever
//! happens, each item is paid at most once, the ledger balances, and the day ends
//! verified except for the items the bank refuses, each with its reason.

mod common;

use bank::sim::FaultRates;
use common::{Options, System, owed_by_account, system};
use fees::report::Statement;
use fees::{DayState, Outcome, Trigger};
use money::Krw;
use rand::{Rng, SeedableRng};
use store::testing::TestDb;

/// Verify, then let the not-found grace period pass, then Pay: what a scheduler
/// does over a few ticks. Stops when the day is verified.
async fn settle_until_verified(s: &System, ticks_max: usize) {
    let op = Trigger::Scheduler;
    for _ in 0..ticks_max {
        s.fees.pay(s.day, op).await.unwrap();
        s.fees.verify(s.day, op).await.unwrap();
        let status = s.fees.status(s.day).await.unwrap().unwrap();
        if status.state != DayState::Recorded {
            return;
        }
        s.clock.advance_ms(s.fees.not_found_grace_ms() + 1_000);
    }
    panic!("the day was not verified in {ticks_max} ticks");
}

async fn settle_until_withdrawn(s: &System, ticks_max: usize) {
    for _ in 0..ticks_max {
        s.fees.withdraw(s.day, Trigger::Scheduler).await.unwrap();
        if s.fees.status(s.day).await.unwrap().unwrap().state == DayState::Withdrawn {
            return;
        }
        s.clock.advance_ms(s.fees.not_found_grace_ms() + 1_000);
    }
    panic!("the day was not withdrawn in {ticks_max} ticks");
}

async fn timeouts_5xx_and_frozen_accounts_end_verified_except_the_frozen(db: TestDb) {
    let s = system(
        db,
        Options {
            faults: FaultRates {
                timeout_after_commit_ppm: 200_000,
                server_error_before_commit_ppm: 100_000,
                ..FaultRates::default()
            },
            ..Options::default()
        },
    )
    .await;
    let workload = fees::workload::generate(s.day, 60, 5).unwrap();
    s.load(&workload).await;
    let frozen: Vec<_> = workload.loans.iter().take(3).collect();
    for loan in &frozen {
        s.sim.set_frozen(&loan.bank_account, true).await.unwrap();
    }
    assert_eq!(
        s.fees
            .record(s.day, Trigger::Operator)
            .await
            .unwrap()
            .outcome,
        Outcome::Done
    );
    settle_until_verified(&s, 20).await;
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Verified);
    let frozen_ids: Vec<u64> = frozen.iter().map(|l| l.loan_id).collect();
    assert!(!status.blocked.is_empty());
    for blocked in &status.blocked {
        assert!(frozen_ids.contains(&blocked.loan_id), "{blocked:?}");
        assert_eq!(blocked.reason, "account_frozen");
        assert_eq!(blocked.unpaid_krw, blocked.amount_krw);
    }
    let items_of_frozen = {
        let mut kinds = std::collections::BTreeSet::new();
        for accrual in &workload.accruals {
            if frozen_ids.contains(&accrual.loan_id) {
                kinds.insert((accrual.loan_id, accrual.kind));
            }
        }
        kinds.len()
    };
    assert_eq!(status.blocked.len(), items_of_frozen);

    settle_until_withdrawn(&s, 20).await;
    s.assert_no_duplicate_ids().await;
    let mut owed = owed_by_account(&workload);
    for loan in &frozen {
        owed.remove(loan.bank_account.as_str());
    }
    assert_eq!(
        s.paid_by_account().await,
        owed,
        "every other item paid exactly once"
    );
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    // The books agree, but a day with blocked items is not reported as agreeing,
    // and the report names exactly the frozen loans' items.
    assert!(report.books_agree, "{report:?}");
    assert!(!report.agrees);
    assert!(!report.unpaid.is_empty());
    for item in &report.unpaid {
        assert!(frozen_ids.contains(&item.loan_id), "{item:?}");
        assert_eq!(item.reason, "blocked: account_frozen");
    }
    assert_eq!(report.bank_withdrawn_krw, report.ledger_paid_krw);
    s.assert_ledger_balances().await;
}

async fn a_payout_killed_at_random_moments_pays_each_item_exactly_once(db: TestDb) {
    let s = system(
        db,
        Options {
            faults: FaultRates {
                timeout_after_commit_ppm: 100_000,
                server_error_before_commit_ppm: 50_000,
                ..FaultRates::default()
            },
            latency_ms: (2, 12),
            in_flight_max: 8,
            ..Options::default()
        },
    )
    .await;
    let workload = fees::workload::generate(s.day, 250, 9).unwrap();
    s.load(&workload).await;
    s.fees.record(s.day, Trigger::Operator).await.unwrap();
    let seed = 20_261_123;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut killed = 0;
    for cycle in 0..24 {
        // The crash: the payout is dropped when the n-th bank call has moved money
        // but before its answer is recorded, with other calls in flight, writes
        // uncommitted and (on SQLite) the lock's lease left behind.
        s.tripwire.arm(rng.random_range(1..40));
        tokio::select! {
            report = s.fees.pay(s.day, Trigger::Scheduler) => {
                assert!(report.is_ok(), "cycle {cycle}: {report:?}");
            }
            () = s.tripwire.tripped.notified() => killed += 1,
        }
        s.tripwire.disarm();
        s.tripwire.bank_settled().await;
        s.clock.advance_ms(s.config().lock_lease_ms + 1);
        s.assert_ledger_balances().await;
        // Verify settles the orphaned chunks: the ones the bank has are confirmed,
        // the rest are proven failed after the grace period and go back to Pay.
        s.fees.verify(s.day, Trigger::Scheduler).await.unwrap();
        s.clock.advance_ms(s.fees.not_found_grace_ms() + 1_000);
        s.fees.verify(s.day, Trigger::Scheduler).await.unwrap();
    }
    assert!(
        killed >= 20,
        "seed {seed}: only {killed} of 24 payouts were killed mid-way"
    );
    settle_until_verified(&s, 30).await;
    settle_until_withdrawn(&s, 20).await;
    s.assert_no_duplicate_ids().await;
    assert_eq!(
        s.paid_by_account().await,
        owed_by_account(&workload),
        "seed {seed}: every item paid exactly once"
    );
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    assert_eq!(report.ledger_withdrawn_krw, workload.total().unwrap());
    assert_eq!(report.bank_paid_krw, workload.total().unwrap());
    assert!(report.bank_paid_krw > Krw::ZERO);
    s.assert_ledger_balances().await;
}

on_both_backends!(
    timeouts_5xx_and_frozen_accounts_end_verified_except_the_frozen,
    a_payout_killed_at_random_moments_pays_each_item_exactly_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_timeouts_and_5xx_end_withdrawn_and_nothing_is_paid_twice() {
    use std::sync::Arc;

    use bank::sim::{Profile, SimConfig, Simulator};
    use bank::{HttpBank, TransportConfig};
    use ledger::{Ledger, LedgerConfig};
    use money::{Clock, TestClock};

    let day = common::day();
    let clock = TestClock::at(day.ends_at().plus_ms(9 * 3_600_000));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim_db = store::testing::sqlite().await;
    let mut sim_config = SimConfig::for_profile(Profile::Test, 3);
    sim_config.faults = FaultRates {
        timeout_after_commit_ppm: 200_000,
        server_error_before_commit_ppm: 100_000,
        ..FaultRates::default()
    };
    // The server holds a timed-out answer longer than the client waits.
    sim_config.timeout_hold_ms = 1_500;
    let sim = Simulator::open(sim_db.store.clone(), sim_config, shared.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bank::sim::serve_simulator(sim.clone(), listener, async {
        let _ = stopped.await;
    }));
    let mut transport = TransportConfig::new(&format!("http://{address}"));
    transport.timeout_ms = 400;
    transport.concurrent_max = Some(16);
    transport.requests_per_s_max = None;
    let bank = Arc::new(HttpBank::new(transport).unwrap());

    let db = store::testing::sqlite().await;
    let ledger = Ledger::open(db.store.clone(), shared.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let mut config = fees::bench::bench_config().unwrap();
    config.bank_calls_in_flight_max = 16;
    let fees = fees::Fees::open(ledger, bank, shared, config.clone())
        .await
        .unwrap();
    let workload = fees::workload::generate(day, 40, 13).unwrap();
    fees.register_loans(&workload.loans).await.unwrap();
    fees.accrue(&workload.accruals).await.unwrap();
    fees::workload::provision_bank(&sim, &config, &workload)
        .await
        .unwrap();
    fees.record(day, Trigger::Operator).await.unwrap();
    let mut state = DayState::Recorded;
    for _ in 0..30 {
        fees.pay(day, Trigger::Scheduler).await.unwrap();
        fees.verify(day, Trigger::Scheduler).await.unwrap();
        fees.withdraw(day, Trigger::Scheduler).await.unwrap();
        state = fees.status(day).await.unwrap().unwrap().state;
        if state == DayState::Withdrawn {
            break;
        }
        clock.advance_ms(fees.not_found_grace_ms() + 1_000);
    }
    assert_eq!(state, DayState::Withdrawn);
    let report = fees
        .report(
            day,
            &fees::report::HttpStatement::new(&format!("http://{address}")).unwrap(),
        )
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    assert!(report.duplicates.is_empty());
    assert_eq!(report.bank_paid_krw, workload.total().unwrap());
    assert_eq!(report.bank_withdrawn_krw, workload.total().unwrap());
    let _ = stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
}
