//! Transient is not final: a bank that answers "not processed" (429) to every
//! transfer for a while, then recovers. No item is blocked, each chunk keeps its
//! one `bank_tran_id`, the breaker pauses sending during the outage and resumes by
//! itself, and the day completes with every item paid once. While items wait, the
//! day's report does not agree and names them.

mod common;

use common::{Options, owed_by_account, system};
use fees::report::Statement;
use fees::{DayState, Outcome, Trigger};
use money::Clock;
use store::testing::TestDb;

const OUTAGE_MS: i64 = 10 * 60_000;
const TICK_MS: i64 = 30_000;

async fn a_bank_answering_429_for_ten_minutes_delays_the_day_but_blocks_nothing(db: TestDb) {
    let s = system(
        db,
        Options {
            rate_limited_for_ms: Some(OUTAGE_MS),
            ..Options::default()
        },
    )
    .await;
    let workload = fees::workload::generate(s.day, 40, 11).unwrap();
    s.load(&workload).await;
    let op = Trigger::Scheduler;
    assert_eq!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );

    let first = s.fees.pay(s.day, op).await.unwrap();
    assert_eq!(first.outcome, Outcome::Done);
    assert!(first.counts["transient"] > 0, "{:?}", first.counts);
    assert_eq!(first.counts["failed"], 0, "{:?}", first.counts);
    assert_eq!(
        first.counts["bank_breaker_opened_total"], 1,
        "{:?}",
        first.counts
    );

    // Mid-outage the day is not verified, nothing is blocked, and the report
    // names every item as waiting.
    s.clock.advance_ms(TICK_MS);
    s.fees.pay(s.day, op).await.unwrap();
    s.fees.verify(s.day, op).await.unwrap();
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Recorded);
    assert!(status.blocked.is_empty(), "{:?}", status.blocked);
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(report.books_agree, "{report:?}");
    assert!(!report.agrees);
    assert_eq!(report.unpaid.len(), usize::try_from(status.items).unwrap());
    assert!(
        report
            .unpaid
            .iter()
            .all(|item| item.reason.starts_with("waiting_for_bank")),
        "{:?}",
        report.unpaid
    );

    let mut ticks = 0;
    while s.fees.status(s.day).await.unwrap().unwrap().state == DayState::Recorded {
        assert!(ticks < 200, "the day was not verified in {ticks} ticks");
        s.clock.advance_ms(TICK_MS);
        s.fees.pay(s.day, op).await.unwrap();
        s.fees.verify(s.day, op).await.unwrap();
        ticks += 1;
    }
    assert!(s.fees.withdraw(s.day, op).await.unwrap().outcome == Outcome::Done);
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Withdrawn);
    assert!(status.blocked.is_empty(), "{:?}", status.blocked);
    // One id per chunk: every chunk succeeded on its first attempt's id.
    assert_eq!(status.chunks.get("failed"), None, "{:?}", status.chunks);
    assert_eq!(s.paid_by_account().await, owed_by_account(&workload));
    s.assert_no_duplicate_ids().await;
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    assert!(report.unpaid.is_empty());
    assert!(s.sim.faults_injected().rate_limited > 0);
    s.assert_ledger_balances().await;
}

/// 09:00–09:30 KST: the clock starts at 09:00, inside the window.
const WINDOW: bank::sim::MaintenanceWindow = bank::sim::MaintenanceWindow {
    start_minute_kst: 9 * 60,
    end_minute_kst: 9 * 60 + 30,
};

async fn a_maintenance_window_pauses_sending_without_a_storm_and_the_day_completes_after(
    db: TestDb,
) {
    let s = system(
        db,
        Options {
            maintenance: Some(WINDOW),
            ..Options::default()
        },
    )
    .await;
    let workload = fees::workload::generate(s.day, 40, 12).unwrap();
    s.load(&workload).await;
    let op = Trigger::Scheduler;
    assert_eq!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    let chunks = s.fees.chunks_to_send(s.day).await.unwrap();
    // Scheduler ticks every 30 s through the 30-minute window.
    let mut ticks = 0;
    while s.clock.now().unix_ms()
        < s.day
            .ends_at()
            .plus_ms(9 * 3_600_000 + 30 * 60_000)
            .unix_ms()
    {
        s.fees.pay(s.day, op).await.unwrap();
        s.fees.verify(s.day, op).await.unwrap();
        s.clock.advance_ms(TICK_MS);
        ticks += 1;
    }
    let refused_in_window = s.sim.faults_injected().maintenance;
    assert_eq!(
        s.paid_by_account().await.len(),
        0,
        "nothing was paid inside the window"
    );
    // No storm: the breaker lets a burst through only when a pause ends, not every
    // chunk on every tick.
    assert!(
        refused_in_window < chunks * u64::try_from(ticks).unwrap() / 4,
        "{refused_in_window} calls refused for maintenance over {ticks} ticks of {chunks} chunks"
    );
    let status = s.fees.status(s.day).await.unwrap().unwrap();
    assert!(status.blocked.is_empty(), "{:?}", status.blocked);

    let mut after = 0;
    while s.fees.status(s.day).await.unwrap().unwrap().state == DayState::Recorded {
        assert!(
            after < 200,
            "the day was not verified in {after} ticks after the window"
        );
        s.fees.pay(s.day, op).await.unwrap();
        s.fees.verify(s.day, op).await.unwrap();
        s.clock.advance_ms(TICK_MS);
        after += 1;
    }
    assert_eq!(
        s.fees.withdraw(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    assert_eq!(s.paid_by_account().await, owed_by_account(&workload));
    s.assert_no_duplicate_ids().await;
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    eprintln!(
        "maintenance: {chunks} chunks, {refused_in_window} refused over {ticks} ticks in the \
         window, verified {after} ticks after"
    );
}

on_both_backends!(
    a_bank_answering_429_for_ten_minutes_delays_the_day_but_blocks_nothing,
    a_maintenance_window_pauses_sending_without_a_storm_and_the_day_completes_after
);

/// The bank refuses settle's credentials (a wrong KFTC client secret): a
/// configuration error, loud in the connector, that blocks no item — every
/// item waits, the report names them, and once a correctly configured bank
/// client takes over the day completes with every item paid once.
async fn refused_bank_credentials_block_nothing_and_the_day_completes_once_fixed(db: TestDb) {
    let s = system(db, Options::default()).await;
    let workload = fees::workload::generate(s.day, 6, 5).unwrap();
    s.load(&workload).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut transport =
        bank::TransportConfig::new(&format!("http://{}", listener.local_addr().unwrap()));
    tokio::spawn(bank::sim::serve_simulator(
        s.sim.clone(),
        listener,
        std::future::pending(),
    ));
    transport.kftc.client_secret = bank::providers::next::token::Secret::new("a-wrong-secret");
    let wrong =
        bank::providers::next::bank_api::kftc_bank(bank::Transport::new(transport).unwrap());
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(s.clock.clone());
    let ledger = ledger::Ledger::open(s.db.store.clone(), clock.clone(), Default::default())
        .await
        .unwrap();
    let misconfigured = fees::Fees::open(ledger, wrong, clock, s.config().clone())
        .await
        .unwrap();
    let op = Trigger::Scheduler;
    assert_eq!(
        misconfigured.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    let first = misconfigured.pay(s.day, op).await.unwrap();
    assert_eq!(first.counts["failed"], 0, "{:?}", first.counts);
    assert!(first.counts["transient"] > 0, "{:?}", first.counts);
    let status = misconfigured.status(s.day).await.unwrap().unwrap();
    assert!(status.blocked.is_empty(), "{:?}", status.blocked);
    let report = misconfigured
        .report(s.day, &s.sim as &dyn Statement)
        .await
        .unwrap();
    assert!(!report.agrees);
    assert!(
        report
            .unpaid
            .iter()
            .all(|item| item.reason.starts_with("waiting_for_bank")),
        "{:?}",
        report.unpaid
    );
    assert!(
        report
            .unpaid
            .iter()
            .any(|item| item.reason.contains("bank_credentials_refused")),
        "{:?}",
        report.unpaid
    );
    assert_eq!(
        s.sim.submissions().submissions_total,
        0,
        "nothing reached the bank"
    );

    // Fixed: the scheduler's next runs (with a working bank client) finish the day.
    let mut ticks = 0;
    while s.fees.status(s.day).await.unwrap().unwrap().state == DayState::Recorded {
        assert!(ticks < 100, "the day was not verified in {ticks} ticks");
        s.clock.advance_ms(10 * 60_000);
        s.fees.pay(s.day, op).await.unwrap();
        s.fees.verify(s.day, op).await.unwrap();
        ticks += 1;
    }
    assert_eq!(
        s.fees.withdraw(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    assert_eq!(s.paid_by_account().await, owed_by_account(&workload));
    s.assert_no_duplicate_ids().await;
}

on_both_backends!(refused_bank_credentials_block_nothing_and_the_day_completes_once_fixed);
