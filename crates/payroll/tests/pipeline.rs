//! End-to-end: salaries land in virtual accounts, the poller detects them, the
//! stages settle them, and the books add up to the won.

mod common;

use common::*;
use payroll::DepositState;

async fn salaries_settle_and_the_books_add_up(backend: Backend) {
    let Some(mut system) = System::start(Options::new(backend)).await else {
        return;
    };
    system.enrol(12, 150_000, 10).await;
    for n in 0..12 {
        if n % 3 == 0 {
            system
                .sim
                .set_repayment_due(&system.users[n].1, money::Krw::new(120_000))
                .await
                .unwrap();
        }
        system.pay_salary(n, 1_234_567 + n as i64 * 1_000).await;
    }
    let report = system.poller.run_round().await.unwrap();
    assert_eq!(report.deposits_detected, 12);
    // A second round finds nothing new.
    assert_eq!(
        system.poller.run_round().await.unwrap().deposits_detected,
        0
    );
    system.settle().await;
    let deposits = system.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), 12);
    for d in &deposits {
        assert_eq!(d.state, DepositState::Completed, "{d:?}");
    }
    assert_eq!(
        deposits
            .iter()
            .filter(|d| d.repayment_krw == 120_000)
            .count(),
        4
    );
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salaries_are_detected_settled_and_add_up_to_the_won_on_sqlite() {
    salaries_settle_and_the_books_add_up(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salaries_are_detected_settled_and_add_up_to_the_won_on_postgres() {
    salaries_settle_and_the_books_add_up(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payroll_refuses_a_ledger_in_its_own_sqlite_file() {
    use std::sync::Arc;

    use bank::providers::Facade;
    let db = store::testing::sqlite().await;
    let clock: Arc<dyn money::Clock> = Arc::new(money::SystemClock);
    let ledger = ledger::Ledger::open(db.store.clone(), clock.clone(), Default::default())
        .await
        .unwrap();
    let transport = bank::Transport::new(bank::TransportConfig::new("http://127.0.0.1:9")).unwrap();
    let routing = bank::routing::RoutingTable::open(db.store.clone(), clock.clone())
        .await
        .unwrap();
    let facade = Facade::connect(routing, &transport);
    let config = payroll::PayrollConfig::new(
        bank::AccountNumber::new(OPERATING).unwrap(),
        bank::HolderName::new(OPERATING_HOLDER).unwrap(),
        money::DerivedIds::for_tests(),
    );
    let refused = payroll::Payroll::open(db.store.clone(), ledger, facade, clock, config).await;
    assert_eq!(refused.err().unwrap().code(), "payroll_config_invalid");
}
