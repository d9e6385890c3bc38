//! The client's limiters against the simulator's concurrency cap, over real HTTP.

mod common;

use std::collections::BTreeSet;

use bank::{BankApi, BankError, HttpBank};
use common::*;
use store::Store;

const CALLS: u64 = 200;
const SERVER_CONCURRENT_MAX: usize = 50;

fn capped_config() -> bank::sim::SimConfig {
    let mut config = test_config();
    config.concurrent_max = SERVER_CONCURRENT_MAX;
    // Slow enough that 200 simultaneous calls really overlap.
    config.latency_ms_min = 20;
    config.latency_ms_max = 40;
    config
}

/// Fires all calls at once and returns (succeeded ids, rate-limited ids).
async fn fire(bank: HttpBank) -> (BTreeSet<String>, BTreeSet<String>) {
    let calls: Vec<_> = (1..=CALLS)
        .map(|sequence| {
            let bank = bank.clone();
            tokio::spawn(async move {
                (
                    sequence,
                    bank.deposit_transfer(&payout(sequence, 1_000)).await,
                )
            })
        })
        .collect();
    let mut succeeded = BTreeSet::new();
    let mut limited = BTreeSet::new();
    for call in calls {
        let (sequence, result) = call.await.unwrap();
        match result {
            Ok(_) => succeeded.insert(tran_id(sequence).to_string()),
            Err(BankError::RateLimited) => limited.insert(tran_id(sequence).to_string()),
            Err(other) => panic!("call {sequence} failed unexpectedly: {other:?}"),
        };
    }
    (succeeded, limited)
}

async fn the_client_limiter_keeps_within_the_server_cap(store: Store, _url: String) {
    let server = spawn_sim(store, capped_config()).await;
    server.standard_accounts().await;
    let mut config = server.client_config();
    config.concurrent_max = Some(SERVER_CONCURRENT_MAX);
    let (succeeded, limited) = fire(HttpBank::new(config).unwrap()).await;

    let stats = server.stats().await;
    eprintln!("with the limiter: {stats:?}");
    assert!(
        limited.is_empty(),
        "{} calls were answered 429",
        limited.len()
    );
    assert_eq!(succeeded.len() as u64, CALLS);
    assert!(
        stats.concurrent_max_observed <= SERVER_CONCURRENT_MAX as u64,
        "{stats:?}"
    );
    assert!(
        stats.concurrent_max_observed > 1,
        "calls did overlap: {stats:?}"
    );
    assert_eq!(stats.rejected_concurrency_total, 0);
}

on_both_backends!(
    two_hundred_concurrent_calls_with_the_client_limiter_stay_at_or_under_fifty_with_no_429_on_sqlite,
    two_hundred_concurrent_calls_with_the_client_limiter_stay_at_or_under_fifty_with_no_429_on_postgres,
    the_client_limiter_keeps_within_the_server_cap
);

async fn without_the_limiter_the_server_refuses_and_applies_nothing_half(
    store: Store,
    _url: String,
) {
    let server = spawn_sim(store, capped_config()).await;
    server.standard_accounts().await;
    let mut config = server.client_config();
    config.concurrent_max = None;
    config.idle_connections_per_host_max = CALLS as usize;
    let (succeeded, limited) = fire(HttpBank::new(config).unwrap()).await;

    let stats = server.stats().await;
    eprintln!(
        "without the limiter: {} ok, {} refused, {stats:?}",
        succeeded.len(),
        limited.len()
    );
    assert!(
        !limited.is_empty(),
        "the server must answer 429 beyond its cap"
    );
    assert_eq!(succeeded.len() + limited.len(), CALLS as usize);
    assert!(
        stats.concurrent_max_observed <= SERVER_CONCURRENT_MAX as u64,
        "{stats:?}"
    );

    // The statement holds exactly the successful calls, once each; the refused ones
    // are unknown to the bank.
    let movements = server.transfer_movements().await;
    let moved: BTreeSet<String> = movements.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(movements.len(), moved.len(), "no id moved twice");
    assert_eq!(moved, succeeded);
    let bank = server.client();
    for id in limited.iter().take(5) {
        let inquiry = bank::types::TransferInquiry {
            bank_tran_id: bank::BankTranId::new(id).unwrap(),
            tran_date: today(),
            original: None,
        };
        assert_eq!(
            bank.transfer_result(&inquiry).await.unwrap_err(),
            BankError::TransferNotFound
        );
    }

    // The bank received every call, the ones refused at the door included: each
    // id once. A refused id sent again is received twice, and says so.
    let submissions = server.admin_get("/admin/submissions").await;
    assert_eq!(submissions["ids_total"], CALLS, "{submissions}");
    assert_eq!(submissions["submissions_total"], CALLS, "{submissions}");
    assert_eq!(submissions["repeated_total"], 0, "{submissions}");
    let again: Vec<u64> = limited
        .iter()
        .take(3)
        .map(|id| {
            (1..=CALLS)
                .find(|s| tran_id(*s).to_string() == *id)
                .unwrap()
        })
        .collect();
    for sequence in &again {
        bank.deposit_transfer(&payout(*sequence, 1_000))
            .await
            .unwrap();
    }
    let submissions = server.admin_get("/admin/submissions").await;
    assert_eq!(submissions["repeated_total"], again.len(), "{submissions}");
    assert_eq!(submissions["decided_twice_total"], again.len());
    assert_eq!(submissions["cut_off_total"], 0);
}

on_both_backends!(
    without_the_client_limiter_the_server_answers_429_and_the_statement_matches_the_successful_calls_on_sqlite,
    without_the_client_limiter_the_server_answers_429_and_the_statement_matches_the_successful_calls_on_postgres,
    without_the_limiter_the_server_refuses_and_applies_nothing_half
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_429_beyond_a_clients_requests_per_second() {
    let db = store::testing::sqlite().await;
    let mut config = test_config();
    config.requests_per_s_per_client_max = Some(5);
    let server = spawn_sim(db.store.clone(), config).await;
    server.standard_accounts().await;
    let bank = server.client();
    let mut limited = 0;
    for sequence in 1..=20 {
        if bank.deposit_transfer(&payout(sequence, 1_000)).await == Err(BankError::RateLimited) {
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 20 back-to-back calls were limited"
    );
    assert_eq!(server.stats().await.rejected_rate_total, limited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_rate_limiter_keeps_under_the_servers_requests_per_second() {
    let db = store::testing::sqlite().await;
    let mut config = test_config();
    config.requests_per_s_per_client_max = Some(10);
    let server = spawn_sim(db.store.clone(), config).await;
    server.standard_accounts().await;
    let mut client = server.client_config();
    client.requests_per_s_max = Some(8);
    let bank = HttpBank::new(client).unwrap();
    let started = std::time::Instant::now();
    for sequence in 1..=20 {
        bank.deposit_transfer(&payout(sequence, 1_000))
            .await
            .unwrap();
    }
    let elapsed_ms = started.elapsed().as_millis();
    eprintln!("20 calls at 8/s took {elapsed_ms} ms");
    assert!(
        elapsed_ms >= 1_000,
        "the limiter spaced the calls: {elapsed_ms} ms"
    );
    assert_eq!(server.stats().await.rejected_rate_total, 0);
}
