//! Fee settlement end to end against the in-process bank simulator, on SQLite and
//! PostgreSQL: chunking, idempotent modules under concurrent callers, the
//! scheduler, and reconciliation with the bank statement.

mod common;

use common::{Options, System, one_tax, owed_by_account, system};
use fees::report::Statement;
use fees::scheduler::Scheduler;
use fees::{DayState, Module, Outcome, Trigger};
use money::Krw;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use store::testing::TestDb;

async fn a_250000_tax_becomes_three_chunks_on_the_statement_once(db: TestDb) {
    let s = system(db, Options::default()).await;
    let workload = one_tax(1, 250_000);
    s.load(&workload).await;
    let op = Trigger::Operator;
    assert_eq!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    assert_eq!(s.fees.pay(s.day, op).await.unwrap().outcome, Outcome::Done);
    assert_eq!(
        s.fees.pay(s.day, op).await.unwrap().outcome,
        Outcome::AlreadyDone
    );
    assert_eq!(
        s.fees.verify(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    assert_eq!(
        s.fees.withdraw(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    for module in Module::ALL {
        let again = match module {
            Module::Record => s.fees.record(s.day, op).await,
            Module::Pay => s.fees.pay(s.day, op).await,
            Module::Verify => s.fees.verify(s.day, op).await,
            Module::Withdraw => s.fees.withdraw(s.day, op).await,
        };
        assert_eq!(again.unwrap().outcome, Outcome::AlreadyDone, "{module:?}");
    }
    let settlement = s.config().settlement_account.to_string();
    let mut payouts: Vec<i64> = s
        .statement()
        .await
        .iter()
        .filter(|m| m.to_account == settlement)
        .map(|m| m.amount_krw.get())
        .collect();
    payouts.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(payouts, vec![100_000, 100_000, 50_000]);
    s.assert_no_duplicate_ids().await;
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    assert_eq!(report.ledger_withdrawn_krw, Krw::new(250_000));
    assert_eq!(report.bank_withdrawn_krw, Krw::new(250_000));
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Withdrawn);
    assert_eq!(status.chunks.get("succeeded"), Some(&3));
    s.assert_ledger_balances().await;
}

async fn run(s: &System, module: Module) -> fees::RunReport {
    let op = Trigger::Scheduler;
    match module {
        Module::Record => s.fees.record(s.day, op).await,
        Module::Pay => s.fees.pay(s.day, op).await,
        Module::Verify => s.fees.verify(s.day, op).await,
        Module::Withdraw => s.fees.withdraw(s.day, op).await,
    }
    .unwrap()
}

async fn modules_called_twenty_times_by_ten_callers_pay_each_item_once(db: TestDb) {
    let s = system(db, Options::default()).await;
    let workload = fees::workload::generate(s.day, 25, 11).unwrap();
    s.load(&workload).await;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2026);
    let mut done_per_module = std::collections::HashMap::new();
    for round in 0..20 {
        // All four modules, ten callers each, started together in a random order.
        let mut callers: Vec<Module> = Module::ALL
            .iter()
            .flat_map(|module| std::iter::repeat_n(*module, 10))
            .collect();
        callers.shuffle(&mut rng);
        let reports =
            futures_util::future::join_all(callers.iter().map(|module| run(&s, *module))).await;
        for module in Module::ALL {
            let done = reports
                .iter()
                .filter(|r| r.module == module && r.outcome == Outcome::Done)
                .count();
            assert!(done <= 1, "round {round} {module:?}: {done} callers worked");
            *done_per_module.entry(module).or_insert(0) += done;
        }
        // Time moves as it would between scheduler ticks.
        s.clock.advance_ms(rng.random_range(1_000..60_000));
    }
    for module in Module::ALL {
        assert_eq!(
            done_per_module.get(&module),
            Some(&1),
            "{module:?} worked once"
        );
    }
    assert_eq!(s.paid_by_account().await, owed_by_account(&workload));
    s.assert_no_duplicate_ids().await;
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Withdrawn);
    assert_eq!(status.withdrawn_krw, workload.total().unwrap());
    let withdraws = s
        .statement()
        .await
        .into_iter()
        .filter(|m| m.kind == "withdraw_transfer")
        .count();
    assert_eq!(withdraws, 1, "the day is withdrawn once");
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    s.assert_ledger_balances().await;
}

async fn the_scheduler_catches_up_missed_days(db: TestDb) {
    let s = system(db, Options::default()).await;
    let days = [s.day.previous().previous(), s.day.previous(), s.day];
    let mut expected = Krw::ZERO;
    for (n, day) in days.iter().enumerate() {
        let workload = fees::workload::generate(*day, 5, n as u64).unwrap();
        expected = expected.checked_add(workload.total().unwrap()).unwrap();
        s.load(&workload).await;
    }
    let scheduler = Scheduler::new(s.fees.clone(), std::time::Duration::from_secs(300));
    assert_eq!(scheduler.open_days().await.unwrap(), days.to_vec());
    let first = scheduler.run_once().await.unwrap();
    assert_eq!(first.len(), 12, "four modules for each of three days");
    assert!(scheduler.open_days().await.unwrap().is_empty(), "{first:?}");
    assert!(scheduler.run_once().await.unwrap().is_empty());
    let mut withdrawn = Krw::ZERO;
    for day in days {
        let status = s.fees.status(day).await.unwrap().unwrap();
        assert_eq!(status.state, DayState::Withdrawn);
        withdrawn = withdrawn.checked_add(status.withdrawn_krw).unwrap();
    }
    assert_eq!(withdrawn, expected);
    s.assert_ledger_balances().await;
}

/// With Withdraw left to approved operator requests (maker-checker), the
/// scheduler records, pays and verifies a day but never withdraws it; an
/// operator's Withdraw then does, once.
async fn a_scheduler_without_withdraw_leaves_the_day_verified(db: TestDb) {
    let s = system(db, Options::default()).await;
    s.load(&one_tax(1, 120_000)).await;
    let scheduler = Scheduler::new(s.fees.clone(), std::time::Duration::from_secs(300))
        .without(Module::Withdraw);
    for _ in 0..3 {
        let reports = scheduler.run_once().await.unwrap();
        assert!(
            reports.iter().all(|r| r.module != Module::Withdraw),
            "{reports:?}"
        );
    }
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Verified);
    assert_eq!(status.withdrawn_krw, Krw::ZERO);
    let report = s.fees.withdraw(s.day, Trigger::Operator).await.unwrap();
    assert_eq!(report.outcome, Outcome::Done);
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Withdrawn);
}

async fn a_day_not_closed_is_not_recorded_and_pay_waits_for_record(db: TestDb) {
    let s = system(db, Options::default()).await;
    s.load(&one_tax(1, 5_000)).await;
    s.clock.set(s.day.ends_at().plus_ms(-1));
    let op = Trigger::Operator;
    assert!(matches!(
        s.fees.pay(s.day, op).await.unwrap().outcome,
        Outcome::NotReady(_)
    ));
    assert!(matches!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::NotReady(_)
    ));
    assert!(matches!(
        s.fees.withdraw(s.day, op).await.unwrap().outcome,
        Outcome::NotReady(_)
    ));
    s.clock.advance_ms(1);
    assert_eq!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    let runs = s.fees.runs(s.day, 10).await.unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["module"], "record");
    assert_eq!(runs[0]["outcome"], "done");
    assert_eq!(runs[0]["trigger"], "operator");
}

on_both_backends!(
    a_250000_tax_becomes_three_chunks_on_the_statement_once,
    modules_called_twenty_times_by_ten_callers_pay_each_item_once,
    the_scheduler_catches_up_missed_days,
    a_scheduler_without_withdraw_leaves_the_day_verified,
    a_day_not_closed_is_not_recorded_and_pay_waits_for_record,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_ticks_at_once_and_stops_when_told() {
    let s = system(store::testing::sqlite().await, Options::default()).await;
    s.load(&one_tax(1, 120_000)).await;
    let scheduler = Scheduler::new(s.fees.clone(), std::time::Duration::from_secs(3_600));
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
    // The first tick is immediate; step until the day is settled, then stop.
    let mut settled = false;
    for _ in 0..100_000 {
        tokio::task::yield_now().await;
        if let Some(status) = s.fees.status(s.day).await.unwrap()
            && status.state == DayState::Withdrawn
        {
            settled = true;
            break;
        }
    }
    assert!(settled, "the first tick settled the day");
    stop.send(()).unwrap();
    running.await.unwrap();
    assert!(scheduler.open_days().await.unwrap().is_empty());
}
