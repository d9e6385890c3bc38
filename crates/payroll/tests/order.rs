//! Per-user order: a user's second salary never starts a stage before the first
//! one's same stage finished; payouts are split under the per-call limit.

mod common;

use std::collections::HashMap;

use common::*;
use payroll::DepositState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_later_salary_never_starts_a_stage_before_the_earlier_one_finished_it() {
    let mut system = System::start(Options::new(Backend::Sqlite)).await.unwrap();
    system.enrol(6, 0, 0).await;
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..3 {
        for n in 0..6 {
            let id = system
                .pay_salary(n, 250_000 + round * 10_000 + n as i64)
                .await;
            order
                .entry(system.users[n].0.to_string())
                .or_default()
                .push(id);
        }
    }
    system.poller.run_round().await.unwrap();
    system.settle().await;
    for d in system.payroll.deposits().await.unwrap() {
        assert_eq!(d.state, DepositState::Completed);
    }
    let log = system.payroll.stage_log().await.unwrap();
    for stage in ["compute", "repay", "suspend", "payout", "complete"] {
        for (user, expected) in &order {
            let seen: Vec<&String> = log
                .iter()
                .filter(|(_, u, s)| u == user && s == stage)
                .map(|(d, _, _)| d)
                .collect();
            let expected: Vec<&String> = expected.iter().collect();
            assert_eq!(seen, expected, "user {user} at stage {stage}");
        }
    }
    // 250,000-ish payouts take three calls each under the 100,000 limit.
    let payouts = system.bank_payouts().await;
    assert_eq!(payouts.len(), 18 * 3);
    assert!(payouts.values().all(|(_, amount)| *amount <= 100_000));
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_salary_waits_behind_an_earlier_one_parked_at_the_same_stage() {
    let (hook, received) = webhook_receiver().await;
    let mut options = Options::new(Backend::Sqlite);
    options.configure = Box::new(move |config| config.webhook_url = Some(hook));
    let mut system = System::start(options).await.unwrap();
    system.enrol(1, 0, 0).await;
    let first = system.pay_salary(0, 180_000).await;
    let second = system.pay_salary(0, 170_000).await;
    system
        .sim
        .set_frozen(&system.users[0].2, true)
        .await
        .unwrap();
    system.poller.run_round().await.unwrap();
    system.settle().await;
    let parked = system.payroll.deposit(&first).await.unwrap();
    assert_eq!(parked.waiting_reason.as_deref(), Some("account_frozen"));
    let queued = system.payroll.deposit(&second).await.unwrap();
    assert_eq!(queued.state, DepositState::Waiting);
    let expected_reason = format!("behind:{first}");
    assert_eq!(
        queued.waiting_reason.as_deref(),
        Some(expected_reason.as_str())
    );
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "only the parked one alerts"
    );

    system
        .sim
        .set_frozen(&system.users[0].2, false)
        .await
        .unwrap();
    system.payroll.retry(&first).await.unwrap();
    system.settle().await;
    for id in [&first, &second] {
        assert_eq!(
            system.payroll.deposit(id).await.unwrap().state,
            DepositState::Completed
        );
    }
    let payouts: Vec<String> = system
        .payroll
        .stage_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, _, stage)| stage == "payout")
        .map(|(deposit, _, _)| deposit)
        .collect();
    // The first salary's failed try, its retry, then the second salary.
    assert_eq!(payouts, vec![first.clone(), first.clone(), second.clone()]);
    system.assert_books().await;
}
