//! Business failures: an alert reaches the webhook once per deposit and reason, and
//! the deposit either waits for an operator's retry or is rolled back with
//! compensating ledger transfers that restore every balance exactly.

mod common;

use common::*;
use money::{AccountId, Krw};
use payroll::{DepositState, OnFailure, Stage, books};

/// Every payroll ledger balance that a deposit of `user` can touch.
async fn balances(system: &System, user_id: &str) -> Vec<(i64, i64, i64, i64)> {
    let ids: Vec<AccountId> = vec![
        books::virtual_accounts(&system.payroll.config().ids).unwrap(),
        books::lender(&system.payroll.config().ids).unwrap(),
        books::suspense(&system.payroll.config().ids).unwrap(),
        books::payout(&system.payroll.config().ids).unwrap(),
        books::wallet(&system.payroll.config().ids, user_id).unwrap(),
    ];
    let accounts = system.ledger.lookup_accounts(&ids).await.unwrap();
    ids.iter()
        .map(|id| {
            let a = accounts.iter().find(|a| a.id == *id).unwrap();
            (
                a.debits_posted.get(),
                a.credits_posted.get(),
                a.debits_pending.get(),
                a.credits_pending.get(),
            )
        })
        .collect()
}

async fn frozen_payout_alerts_waits_and_a_retry_completes_it(backend: Backend) {
    let (hook, received) = webhook_receiver().await;
    let mut options = Options::new(backend);
    options.configure = Box::new(move |config| config.webhook_url = Some(hook));
    let Some(mut system) = System::start(options).await else {
        return;
    };
    system.enrol(3, 0, 0).await;
    system
        .sim
        .set_repayment_due(&system.users[0].1, Krw::new(50_000))
        .await
        .unwrap();
    let frozen = system.pay_salary(0, 2_500_000).await;
    let renamed = system.pay_salary(1, 900_000).await;
    let fine = system.pay_salary(2, 1_000_000).await;
    system
        .sim
        .set_frozen(&system.users[0].2, true)
        .await
        .unwrap();
    system
        .sim
        .rename_holder(
            &system.users[1].2,
            &bank::HolderName::new("개명된이름").unwrap(),
        )
        .await
        .unwrap();
    system.poller.run_round().await.unwrap();
    system.settle().await;

    let stopped = system.payroll.deposit(&frozen).await.unwrap();
    assert_eq!(stopped.state, DepositState::Waiting);
    assert_eq!(stopped.waiting_stage, Some(Stage::Payout));
    assert_eq!(stopped.waiting_reason.as_deref(), Some("account_frozen"));
    let renamed_view = system.payroll.deposit(&renamed).await.unwrap();
    assert_eq!(
        renamed_view.waiting_reason.as_deref(),
        Some("holder_name_changed")
    );
    assert_eq!(
        system.payroll.deposit(&fine).await.unwrap().state,
        DepositState::Completed
    );
    {
        let bodies = received.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        let alert = bodies
            .iter()
            .find(|b| b["deposit"] == frozen.as_str())
            .unwrap();
        assert_eq!(alert["user"], system.users[0].0.to_string());
        assert_eq!(alert["stage"], "payout");
        assert_eq!(alert["reason"], "account_frozen");
        assert!(alert["next"].as_str().unwrap().contains("retry"));
        assert!(alert["text"].as_str().unwrap().contains(&frozen));
    }

    // Retrying before the account is fixed fails again, but alerts only once.
    system.payroll.retry(&frozen).await.unwrap();
    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&frozen).await.unwrap().state,
        DepositState::Waiting
    );
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "one alert per deposit and reason"
    );

    // The operator unfreezes the account and retries: it completes.
    system
        .sim
        .set_frozen(&system.users[0].2, false)
        .await
        .unwrap();
    let retried = system.payroll.retry(&frozen).await.unwrap();
    assert_eq!(retried.state, DepositState::Suspended);
    assert_eq!(retried.attempt, 2);
    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&frozen).await.unwrap().state,
        DepositState::Completed
    );

    // The renamed one is rolled back by the operator instead: balances come back.
    let user1 = system.users[1].0.to_string();
    system.payroll.rollback(&renamed).await.unwrap();
    assert_eq!(
        system.payroll.deposit(&renamed).await.unwrap().state,
        DepositState::RolledBack
    );
    let wallet = balances(&system, &user1).await[4];
    assert_eq!(wallet.1 - wallet.0, 0, "the wallet is back to zero");
    assert_eq!(wallet.2, 0, "no hold is left");
    assert!(
        system.payroll.retry(&renamed).await.is_err(),
        "a rolled back deposit never settles"
    );
    system.assert_books().await;
    assert_eq!(system.payroll.alerts().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_payout_account_alerts_the_webhook_once_and_a_retry_after_unfreezing_completes_on_sqlite()
 {
    frozen_payout_alerts_waits_and_a_retry_completes_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_payout_account_alerts_the_webhook_once_and_a_retry_after_unfreezing_completes_on_postgres()
 {
    frozen_payout_alerts_waits_and_a_retry_completes_it(Backend::Postgres).await;
}

async fn rollback_policy_restores_balances(backend: Backend) {
    let (hook, received) = webhook_receiver().await;
    let mut options = Options::new(backend);
    options.configure = Box::new(move |config| {
        config.webhook_url = Some(hook);
        config.failure_policy.account_frozen = OnFailure::RollBack;
    });
    let Some(mut system) = System::start(options).await else {
        return;
    };
    system.enrol(1, 0, 20).await;
    let user = system.users[0].0.to_string();
    system
        .sim
        .set_repayment_due(&system.users[0].1, Krw::new(300_000))
        .await
        .unwrap();
    let before = balances(&system, &user).await;
    let deposit = system.pay_salary(0, 3_000_000).await;
    system
        .sim
        .set_frozen(&system.users[0].2, true)
        .await
        .unwrap();
    system.poller.run_round().await.unwrap();
    system.settle().await;
    let view = system.payroll.deposit(&deposit).await.unwrap();
    assert_eq!(view.state, DepositState::RolledBack);
    assert_eq!((view.repayment_krw, view.suspend_krw), (300_000, 540_000));
    let after = balances(&system, &user).await;
    // Every account's net position is back where it was; the compensations show as
    // equal debits and credits on top.
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.1 - b.0, a.1 - a.0, "net posted balance restored");
        assert_eq!(b.3 - b.2, a.3 - a.2, "net pending balance restored");
    }
    assert_eq!(after[2].3, 0, "the suspend hold was voided");
    assert!(
        system.bank_payouts().await.is_empty(),
        "nothing was paid out"
    );
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0]["next"].as_str().unwrap().contains("rolled back"));
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_rollback_policy_a_frozen_payout_is_compensated_and_every_balance_is_restored_on_sqlite()
 {
    rollback_policy_restores_balances(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_rollback_policy_a_frozen_payout_is_compensated_and_every_balance_is_restored_on_postgres()
 {
    rollback_policy_restores_balances(Backend::Postgres).await;
}

/// The `next` provider (KFTC) asks 수취조회 before each payout: a renamed payout
/// account is refused before any transfer reaches the bank, the deposit waits with
/// `holder_name_changed`, and the webhook hears it once.
async fn the_kftc_holder_check_refuses_a_renamed_account_before_paying(backend: Backend) {
    let (hook, received) = webhook_receiver().await;
    let mut options = Options::new(backend);
    options.configure = Box::new(move |config| config.webhook_url = Some(hook));
    let Some(mut system) = System::start(options).await else {
        return;
    };
    system
        .routing
        .set_cohort_percent(100, "ops:test")
        .await
        .unwrap();
    system.enrol(2, 0, 0).await;
    let renamed = system.pay_salary(0, 900_000).await;
    let fine = system.pay_salary(1, 1_000_000).await;
    system
        .sim
        .rename_holder(
            &system.users[0].2,
            &bank::HolderName::new("개명된이름").unwrap(),
        )
        .await
        .unwrap();
    system.poller.run_round().await.unwrap();
    system.settle().await;

    let waiting = system.payroll.deposit(&renamed).await.unwrap();
    assert_eq!(waiting.state, DepositState::Waiting);
    assert_eq!(
        waiting.waiting_reason.as_deref(),
        Some("holder_name_changed")
    );
    assert_eq!(
        system.payroll.deposit(&fine).await.unwrap().state,
        DepositState::Completed
    );
    let renamed_account = system.users[0].2.to_string();
    let payouts = system.bank_payouts().await;
    assert!(
        payouts.values().all(|(to, _)| *to != renamed_account),
        "nothing was paid to the renamed account: {payouts:?}"
    );
    assert!(
        payouts
            .values()
            .any(|(to, _)| *to == system.users[1].2.to_string()),
        "the other user was paid over the KFTC wire"
    );
    // Every transfer request the bank received moved money: the refused payout
    // never reached its transfer desk (the legacy wire would have sent it and
    // been refused there).
    let mut moved = 0;
    let mut since = 0;
    loop {
        let page = system.sim.statement(None, since).await.unwrap();
        let Some(last) = page.last() else { break };
        since = last.seq;
        moved += page.iter().filter(|m| m.bank_tran_id.is_some()).count() as u64;
    }
    assert_eq!(system.sim.submissions().ids_total, moved);
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["reason"], "holder_name_changed");
    assert_eq!(bodies[0]["deposit"], renamed.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kftc_holder_check_refuses_a_renamed_payout_account_before_paying_and_alerts_once_on_sqlite()
 {
    the_kftc_holder_check_refuses_a_renamed_account_before_paying(Backend::Sqlite).await;
}
