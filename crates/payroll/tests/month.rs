//! A month of salaries at full size, while half the users move from the "legacy"
//! provider to "next" mid-run: every deposit is completed exactly once, by exactly
//! one provider, and repaid + suspended + paid out = deposited, to the won.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use bank::DepositId;
use bank::providers::ProviderName;
use bank::routing::SettlementStart;
use common::*;
use events::Step;
use money::Krw;
use payroll::DepositState;

/// Users per run: the full month (4,000 users, about 5 billion KRW, plus a second
/// wave for half of them) on both backends — about 75 s on SQLite and 100 s on
/// PostgreSQL in a dev build on two loaded cores (docs/benchmarks.md).
/// `PAYROLL_MONTH_USERS` overrides it for a quicker run.
fn users(default: usize) -> usize {
    std::env::var("PAYROLL_MONTH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn a_month_of_salaries_settles_once_each_while_half_the_users_migrate(
    backend: Backend,
    count: usize,
) {
    let mut options = Options::new(backend);
    // One payout call per salary keeps the run short; chunking under the 100,000
    // limit is covered by the order test.
    options.payout_chunk_max_krw = 10_000_000;
    let Some(mut system) = System::start(options).await else {
        return;
    };
    let started = Instant::now();
    system.enrol(count, 500_000, 5).await;
    let mut expected_total = 0i64;
    for n in 0..count {
        if n % 4 == 0 {
            system
                .sim
                .set_repayment_due(
                    &system.users[n].1,
                    Krw::new(200_000 + (n as i64 % 7) * 10_000),
                )
                .await
                .unwrap();
        }
        let amount = 1_000_000 + (n as i64 * 7_919) % 500_001;
        expected_total += amount;
        system.pay_salary(n, amount).await;
    }
    eprintln!("{count} users enrolled and paid in {:?}", started.elapsed());
    let report = system.poller.run_round().await.unwrap();
    assert_eq!(report.deposits_detected as usize, count);
    eprintln!("polled in {:?}: {report:?}", started.elapsed());

    // Every salary starts on "legacy" and stops in flight (computed, not yet
    // repaid). Then half the users move to "next", and a second wave of salaries
    // arrives for every other user while the first wave is still in flight.
    while system.dispatchers[0].run_once().await.unwrap() == Step::Done {}
    system
        .routing
        .set_cohort_percent(50, "ops:test")
        .await
        .unwrap();
    let mut second_wave = Vec::new();
    for n in (0..count).step_by(2) {
        let amount = 300_000 + (n as i64 * 31) % 10_000;
        expected_total += amount;
        second_wave.push(system.pay_salary(n, amount).await);
    }
    let report = system.poller.run_round().await.unwrap();
    assert_eq!(report.deposits_detected as usize, second_wave.len());
    // While the pipeline runs, operators keep moving the cohort (all users to
    // "next", back to half): deposits in flight keep their provider.
    let flipping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flipper = {
        let (routing, flipping) = (system.routing.clone(), flipping.clone());
        tokio::spawn(async move {
            let mut flips = 0u32;
            while flipping.load(std::sync::atomic::Ordering::SeqCst) {
                let percent = if flips.is_multiple_of(2) { 100 } else { 50 };
                routing
                    .set_cohort_percent(percent, "ops:test")
                    .await
                    .unwrap();
                flips += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            routing.set_cohort_percent(50, "ops:test").await.unwrap();
            flips
        })
    };
    system.settle().await;
    flipping.store(false, std::sync::atomic::Ordering::SeqCst);
    let flips = flipper.await.unwrap();
    eprintln!("cohort flipped {flips} times while settling");
    eprintln!("settled in {:?}", started.elapsed());
    let second_wave: std::collections::HashSet<String> = second_wave.into_iter().collect();
    let total = count + second_wave.len();

    let deposits = system.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), total);
    let mut per_provider: HashMap<String, usize> = HashMap::new();
    for d in &deposits {
        assert_eq!(d.state, DepositState::Completed, "{d:?}");
        if !second_wave.contains(&d.deposit_id) {
            assert_eq!(
                d.provider.as_deref(),
                Some("legacy"),
                "a deposit keeps the provider it started with"
            );
        }
        *per_provider.entry(d.provider.clone().unwrap()).or_default() += 1;
    }
    eprintln!("settled per provider: {per_provider:?}");
    assert!(
        per_provider.get("next").copied().unwrap_or(0) > 0,
        "some deposits started on next"
    );
    assert!(
        per_provider.get("legacy").copied().unwrap_or(0) > 0,
        "some stayed on legacy"
    );
    // Totals come from the bank's statement and the ledger, not from the
    // generator: what the bank credited = what was settled, to the won.
    let deposited = system.bank_salaries_krw().await;
    assert_eq!(deposited, expected_total);
    system.assert_everything_settled_to_the_won().await;
    if count == 4_000 {
        assert!(
            (5_500_000_000..=5_700_000_000).contains(&deposited),
            "a month (about 5 billion) plus a second wave: {deposited}"
        );
    }
    // The guard holds one row per deposit, naming the provider that settled it, and
    // refuses a second start by either provider.
    for d in deposits.iter().take(50) {
        let id = DepositId::new(&d.deposit_id).unwrap();
        for other in [ProviderName::Legacy, ProviderName::Next] {
            assert_eq!(
                system
                    .payroll
                    .facade()
                    .start_settlement(&id, other)
                    .await
                    .unwrap(),
                SettlementStart::AlreadyStarted {
                    provider: ProviderName::parse(d.provider.as_deref().unwrap()).unwrap()
                }
            );
        }
    }
    let payouts = system.bank_payouts().await;
    assert_eq!(
        payouts.len(),
        total,
        "one payout call per salary, none twice"
    );
    system.assert_books().await;
    eprintln!("checked in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_salaries_for_4000_users_about_5_billion_won_settles_exactly_once_while_half_migrate_on_sqlite()
 {
    a_month_of_salaries_settles_once_each_while_half_the_users_migrate(
        Backend::Sqlite,
        users(4_000),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_salaries_for_4000_users_about_5_billion_won_settles_exactly_once_while_half_migrate_on_postgres()
 {
    a_month_of_salaries_settles_once_each_while_half_the_users_migrate(
        Backend::Postgres,
        users(4_000),
    )
    .await;
}
