//! The balance poller: it stays under its requests/s cap (the simulator counts
//! refusals), and a round cut short resumes where it stopped without detecting any
//! deposit twice.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_never_exceeds_the_cap_the_bank_enforces() {
    let mut options = Options::new(Backend::Sqlite);
    options.sim = Box::new(|sim| sim.requests_per_s_per_client_max = Some(100));
    options.configure = Box::new(|config| {
        config.poll_requests_per_s_max = 100;
        config.poll_concurrent_max = 8;
    });
    let mut system = System::start(options).await.unwrap();
    // Enrolment goes through the same client id; let its burst drain first.
    system.enrol(150, 0, 0).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = rejected(&system).await;
    let started = Instant::now();
    let report = system.poller.run_round().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.users_polled, 150);
    assert_eq!(report.users_failed, 0);
    assert_eq!(
        rejected(&system).await,
        before,
        "the bank refused none for rate"
    );
    // 150 requests at 100/s, evenly spaced: never faster than the cap allows.
    assert!(elapsed >= Duration::from_millis(1_450), "{elapsed:?}");
}

async fn rejected(system: &System) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/admin/stats", system.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["rejected_rate_total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_cut_short_resumes_and_detects_every_deposit_exactly_once() {
    let mut options = Options::new(Backend::Sqlite);
    options.configure = Box::new(|config| {
        config.poll_requests_per_s_max = 400;
        config.poll_users_page_max = 20;
    });
    let mut system = System::start(options).await.unwrap();
    system.enrol(120, 0, 0).await;
    for n in 0..120 {
        system.pay_salary(n, 150_000 + n as i64).await;
    }
    // Cut rounds short at a few points in "another process" (its own pool, closed
    // when it dies), then let one finish here.
    for cut_ms in [250, 500] {
        let (store, other) = system
            .second_process(|config| config.poll_users_page_max = 20)
            .await;
        let poller = payroll::poller::Poller::new(other).unwrap();
        let round = tokio::spawn(async move { poller.run_round().await });
        tokio::time::sleep(Duration::from_millis(cut_ms)).await;
        round.abort();
        let _ = round.await;
        store.close().await;
    }
    let report = system.poller.run_round().await.unwrap();
    assert_eq!(
        report.round, 1,
        "the cut-short round was continued, not restarted"
    );
    assert!(report.users_polled < 120, "it resumed after the saved page");
    assert_eq!(
        system.poller.run_round().await.unwrap().deposits_detected,
        0
    );
    let deposits = system.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), 120, "every deposit once");
    system.settle().await;
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salary_after_a_sweep_is_detected_though_the_balance_did_not_grow() {
    use bank::BankApi;
    let mut system = System::start(Options::new(Backend::Sqlite)).await.unwrap();
    system.enrol(1, 0, 0).await;
    system.pay_salary(0, 1_200_000).await;
    assert_eq!(
        system.poller.run_round().await.unwrap().deposits_detected,
        1
    );
    // The bank sweeps the virtual account empty, then the next salary is smaller.
    system
        .sim
        .withdraw_transfer(&bank::types::TransferRequest {
            bank_tran_id: bank::BankTranId::from_sequence("S202500001", 1).unwrap(),
            tran_date: bank::TranDate::parse("20261124").unwrap(),
            from_account: system.users[0].1.clone(),
            to_account: bank::AccountNumber::new(OPERATING).unwrap(),
            holder_name: bank::HolderName::new("직원0").unwrap(),
            amount_krw: money::Krw::new(1_200_000),
        })
        .await
        .unwrap();
    let second = system.pay_salary(0, 1_000_000).await;
    assert_eq!(
        system.poller.run_round().await.unwrap().deposits_detected,
        1
    );
    assert_eq!(
        system.payroll.deposit(&second).await.unwrap().amount_krw,
        1_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_1000_accounts_at_200_per_s_takes_at_most_1_1_times_the_ideal_and_the_bank_refuses_none()
 {
    let report = payroll::bench::polling(&payroll::bench::PollingParams {
        accounts: 1_000,
        requests_per_s: 200,
        concurrent_max: 16,
    })
    .await
    .unwrap();
    eprintln!("{report:?}");
    assert_eq!(report.bank_requests, 1_000, "one balance call per account");
    assert_eq!(
        report.rejected_rate_total, 0,
        "the simulator, enforcing the same cap, refused none"
    );
    assert!(
        report.ratio >= 0.99,
        "never faster than the cap: {report:?}"
    );
    assert!(report.ratio <= 1.1, "within 1.1 × ideal: {report:?}");
}
