//! A way out of every stuck state: for each, the operator sees why the deposit is
//! there and one action (retry, rollback, resolve) gets it out, audited; a
//! dead-lettered stage raises an alert, and an action is refused while a worker
//! holds the deposit.

mod common;

use std::sync::Arc;

use common::*;
use events::{Consumer, Step};
use money::{Clock, Krw};
use payroll::books::{self, Movement};
use payroll::{DepositState, Stage, StageConsumer};

/// Steps the pipeline until `done` holds (bounded).
async fn step_until<F, Fut>(system: &mut System, mut done: F)
where
    F: FnMut(payroll::Payroll) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..20_000 {
        if done(system.payroll.clone()).await {
            return;
        }
        if system.step().await == Step::Idle {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    panic!("the condition never held");
}

/// The state the production incident left: compute committed, but the ledger
/// holds the deposit's `undo-deposit` too, so every repay is refused and
/// dead-lettered, and the user's next salary queues behind it.
async fn a_stranded_deposit_is_alerted_and_a_rollback_frees_it(backend: Backend) {
    let mut options = Options::new(backend);
    options.retry_attempts_max = 3;
    let Some(mut system) = System::start(options).await else {
        return;
    };
    system.enrol(1, 500_000, 0).await;
    system
        .sim
        .set_repayment_due(&system.users[0].1, Krw::new(200_000))
        .await
        .unwrap();
    let stranded = system.pay_salary(0, 1_000_000).await;
    system.poller.run_round().await.unwrap();
    // Only compute runs: step the compute dispatcher alone (the first, in
    // `Stage::ALL` order).
    assert_eq!(Stage::ALL[0], Stage::Compute);
    while system.dispatchers[0].run_once().await.unwrap() == Step::Done {}
    assert_eq!(
        system.payroll.deposit(&stranded).await.unwrap().state,
        DepositState::Computed
    );
    let user = system.users[0].0.to_string();
    books::apply(
        &system.ledger,
        &money::DerivedIds::for_tests(),
        &stranded,
        "undo-deposit",
        Movement::Move {
            debit: books::wallet(&money::DerivedIds::for_tests(), &user).unwrap(),
            credit: books::virtual_accounts(&money::DerivedIds::for_tests()).unwrap(),
            amount: Krw::new(1_000_000),
        },
        system.clock.now(),
    )
    .await
    .unwrap();
    step_until(&mut system, |payroll| async move {
        payroll.alert_dead_letters().await.unwrap() > 0
    })
    .await;
    // The user's next salary: its repay would queue behind the parked one.
    let later = system.pay_salary(0, 700_000).await;
    system.poller.run_round().await.unwrap();
    let detail = system.payroll.detail(&stranded).await.unwrap();
    assert_eq!(detail.deposit.state, DepositState::Computed);
    assert!(detail.why.contains("repay"), "{}", detail.why);
    assert_eq!(detail.alerts.len(), 1);
    assert_eq!(detail.alerts[0].reason, "dead_lettered");
    assert_eq!(
        detail.actions_possible,
        vec!["retry", "rollback", "resolve"]
    );
    assert_eq!(
        system.payroll.alert_dead_letters().await.unwrap(),
        0,
        "one alert per deposit"
    );

    let view = system
        .payroll
        .rollback_as(&stranded, "ops-kim", Some("undo applied by the old race"))
        .await
        .unwrap();
    assert_eq!(view.state, DepositState::RolledBack);
    let detail = system.payroll.detail(&stranded).await.unwrap();
    assert_eq!(detail.actions.len(), 1);
    assert_eq!(detail.actions[0].action, "rollback");
    assert_eq!(detail.actions[0].actor, "ops-kim");
    assert_eq!(detail.actions[0].from_state, "computed");
    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&later).await.unwrap().state,
        DepositState::Completed,
        "the user's later salary is no longer held behind the dead letter"
    );
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_stranded_by_the_old_race_is_alerted_and_an_operator_rollback_frees_the_user_on_sqlite()
 {
    a_stranded_deposit_is_alerted_and_a_rollback_frees_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_stranded_by_the_old_race_is_alerted_and_an_operator_rollback_frees_the_user_on_postgres()
 {
    a_stranded_deposit_is_alerted_and_a_rollback_frees_it(Backend::Postgres).await;
}

/// A deposit waiting at its payout (the account is frozen for good): the operator
/// pays by other means and resolves it with a reason.
async fn a_waiting_deposit_is_resolved(backend: Backend) {
    let Some(mut system) = System::start(Options::new(backend)).await else {
        return;
    };
    system.enrol(1, 0, 0).await;
    let deposit = system.pay_salary(0, 300_000).await;
    system
        .sim
        .set_frozen(&system.users[0].2, true)
        .await
        .unwrap();
    system.poller.run_round().await.unwrap();
    system.settle().await;
    let waiting = system.payroll.detail(&deposit).await.unwrap();
    assert_eq!(waiting.deposit.state, DepositState::Waiting);
    assert!(waiting.why.contains("account_frozen"), "{}", waiting.why);

    let refused = system
        .payroll
        .resolve(&deposit, "ops-lee", "   ")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "invalid_input");
    let view = system
        .payroll
        .resolve(&deposit, "ops-lee", "paid by wire, ticket OPS-12")
        .await
        .unwrap();
    assert_eq!(view.state, DepositState::Resolved);
    let detail = system.payroll.detail(&deposit).await.unwrap();
    assert!(detail.actions_possible.is_empty());
    assert_eq!(
        detail.actions[0].reason.as_deref(),
        Some("paid by wire, ticket OPS-12")
    );
    let again = system.payroll.retry(&deposit).await.unwrap_err();
    assert_eq!(again.code(), "deposit_not_waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_deposit_is_resolved_by_hand_with_a_reason_and_then_never_moves_on_sqlite() {
    a_waiting_deposit_is_resolved(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_deposit_is_resolved_by_hand_with_a_reason_and_then_never_moves_on_postgres() {
    a_waiting_deposit_is_resolved(Backend::Postgres).await;
}

/// A worker that died holding a claim: the operator sees who holds it and until
/// when, is refused while it is live, and a retry after it lapsed completes it.
async fn a_claim_left_by_a_dead_worker_lapses(backend: Backend) {
    let mut options = Options::new(backend);
    options.configure = Box::new(|config| {
        config.claim_lease_ms = 300;
        config.stuck_after_ms = 1;
    });
    let Some(mut system) = System::start(options).await else {
        return;
    };
    system.enrol(1, 0, 0).await;
    let deposit = system.pay_salary(0, 400_000).await;
    system.poller.run_round().await.unwrap();
    let (dead_store, dead) = system.second_process(|_| {}).await;
    let key = payroll::user_key(&system.users[0].0.to_string());
    let kind = payroll::state::KIND_DETECTED;
    let event = events::Event {
        id: money::EventId::from_uuid(events::event_id(kind, &key, 1)).unwrap(),
        kind: kind.to_owned(),
        key,
        seq: 1,
        created_at: money::Timestamp::from_unix_ms(0),
    };
    let dying = Arc::new(StageConsumer::new(Stage::Compute, dead.clone()));
    dying.prepare(&event).await.unwrap();
    dead_store.close().await; // it dies before recording anything

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let detail = system.payroll.detail(&deposit).await.unwrap();
    assert!(detail.why.contains("being worked on"), "{}", detail.why);
    assert!(detail.stuck);
    let busy = system.payroll.retry(&deposit).await.unwrap_err();
    assert_eq!(busy.code(), "deposit_busy");

    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    system.payroll.retry(&deposit).await.unwrap();
    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&deposit).await.unwrap().state,
        DepositState::Completed
    );
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_dead_worker_refuses_operators_until_it_lapses_then_the_deposit_completes_on_sqlite()
 {
    a_claim_left_by_a_dead_worker_lapses(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_dead_worker_refuses_operators_until_it_lapses_then_the_deposit_completes_on_postgres()
 {
    a_claim_left_by_a_dead_worker_lapses(Backend::Postgres).await;
}
