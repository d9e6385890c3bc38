//! Unknown outcomes resolve at the bank's pace: after a payout run in which every
//! answer was lost (timeouts after commit, a few 5xx before commit), Verify asks
//! the result inquiry about each chunk with the payouts' own concurrency C, at the
//! bank's latency L, and waits the connector's not-found grace — not a fixed
//! minute. The figure is checked against 1.2 × (unknowns / C × L + grace).
//!
//! The grace is waited on the test clock (the sim and fees share it), so the
//! measured figure is the wall time of the Verify runs plus the grace advanced.

mod common;

use std::time::Instant;

use bank::sim::{FaultRates, PPM_ALWAYS};
use common::{Options, system};
use fees::{Outcome, Trigger};
use store::testing::TestDb;

const LATENCY_MS: u64 = 100;
const IN_FLIGHT: usize = 16;

async fn about_a_thousand_unknown_chunks_resolve_within_the_bound(db: TestDb) {
    let s = system(
        db,
        Options {
            faults: FaultRates {
                server_error_before_commit_ppm: 50_000,
                timeout_after_commit_ppm: PPM_ALWAYS,
                ..FaultRates::default()
            },
            latency_ms: (LATENCY_MS, LATENCY_MS),
            in_flight_max: IN_FLIGHT,
            ..Options::default()
        },
    )
    .await;
    let workload = fees::workload::generate(s.day, 270, 21).unwrap();
    s.load(&workload).await;
    let op = Trigger::Operator;
    assert_eq!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    let paid = s.fees.pay(s.day, op).await.unwrap();
    let unknowns = paid.counts["unknown"];
    assert!(unknowns >= 900, "{:?}", paid.counts);
    assert_eq!(paid.counts["succeeded"], 0, "{:?}", paid.counts);

    let grace_ms = s.fees.not_found_grace_ms();
    let started = Instant::now();
    let mut waited_ms = 0;
    let mut rounds = 0;
    loop {
        s.fees.verify(s.day, op).await.unwrap();
        rounds += 1;
        let chunks = s.fees.status(s.day).await.unwrap().unwrap().chunks;
        let open = chunks.get("sent").unwrap_or(&0) + chunks.get("unknown").unwrap_or(&0);
        if open == 0 {
            break;
        }
        assert!(
            rounds < 4,
            "{open} chunks still unknown after {rounds} rounds"
        );
        s.clock.advance_ms(grace_ms);
        waited_ms += grace_ms;
    }
    let measured_ms = i64::try_from(started.elapsed().as_millis()).unwrap() + waited_ms;
    let ideal_ms = unknowns * i64::try_from(LATENCY_MS).unwrap()
        / i64::try_from(IN_FLIGHT).unwrap()
        + grace_ms;
    eprintln!(
        "unknowns {unknowns}, C {IN_FLIGHT}, L {LATENCY_MS} ms, grace {grace_ms} ms: \
         resolved in {measured_ms} ms over {rounds} Verify runs; \
         unknowns / C × L + grace = {ideal_ms} ms"
    );
    assert!(
        measured_ms * 10 <= ideal_ms * 12,
        "{measured_ms} ms > 1.2 × {ideal_ms} ms"
    );
}

on_both_backends!(about_a_thousand_unknown_chunks_resolve_within_the_bound);
