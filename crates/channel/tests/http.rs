//! The channel against a core on "another server": the core's ledger endpoints
//! served on a real port, the HTTP client in front of them, the same guarantees.

mod common;

use std::sync::Arc;

use channel::core_http::{HttpCore, router};
use channel::faults::{Fault, FaultyCore};
use channel::{CoreClient, CoreError, TransferState};
use common::{Sys, account_id, new_transfer, transfer_id, user_id};
use ledger::TransferOutcome;

on_both_backends!(
    over_http_transfers_reconciliation_and_history_work_as_in_process,
    the_core_endpoints_refuse_bad_input_with_stable_codes,
);

/// Serves the core's router on an ephemeral port; returns its base URL.
async fn serve_core(sys: &Sys) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(sys.ledger.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

async fn over_http_transfers_reconciliation_and_history_work_as_in_process(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let http = Arc::new(HttpCore::new(&serve_core(&sys).await, 2_000).unwrap());
    let faulty = Arc::new(FaultyCore::new(http.clone()));
    let remote = sys.another_process(faulty.clone()).await;
    remote.reconciler().check_core().await.unwrap();

    let done = remote
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 1_000))
        .await
        .unwrap();
    assert_eq!(done.state, TransferState::Succeeded);

    faulty.push(Fault::TimeoutAfterCommit).await;
    let lost = remote
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 2_000))
        .await
        .unwrap();
    assert_eq!(lost.state, TransferState::Unknown);
    let report = remote.reconciler().run_once().await.unwrap();
    assert_eq!(report.succeeded, 1, "{report:?}");
    assert!(matches!(
        http.outcome(lost.id).await.unwrap(),
        TransferOutcome::Applied { .. }
    ));
    assert_eq!(
        http.outcome(transfer_id()).await.unwrap(),
        TransferOutcome::NotFound
    );

    let synced = remote.history().sync(bob).await.unwrap();
    assert_eq!(synced.last_seq_after, 2);
    let page = remote.history().history(bob, None, 10).await.unwrap();
    let mut core = sys.core_entries(bob).await;
    core.reverse();
    assert_eq!(page.entries, core);

    let account = http.account(bob).await.unwrap().unwrap();
    assert_eq!(account.credit_balance().unwrap().get(), 3_000);
    assert!(http.account(account_id()).await.unwrap().is_none());
    assert_eq!(http.late_window_ms().await.unwrap(), 60_000);
}

async fn the_core_endpoints_refuse_bad_input_with_stable_codes(sys: Sys) {
    let base = serve_core(&sys).await;
    let client = reqwest::Client::new();
    let malformed = client
        .post(format!("{base}/v1/core/transfers"))
        .header("content-type", "application/json")
        .body(r#"{"id": "x", "amount": 1.5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(body["code"], "body_invalid");

    let same_accounts = serde_json::json!({
        "id": transfer_id().to_string(),
        "debit_account_id": sys.bank.to_string(),
        "credit_account_id": sys.bank.to_string(),
        "amount": 5,
    });
    let refused = client
        .post(format!("{base}/v1/core/transfers"))
        .json(&same_accounts)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "accounts_must_be_different");

    let http = HttpCore::new(&base, 2_000).unwrap();
    let untouched = http.entries(sys.bank, 1, 10).await.unwrap();
    assert!(untouched.is_empty(), "a refused request leaves no entry");
    let bad_id = client
        .get(format!("{base}/v1/core/transfers/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400);

    // A core that accepts the connection and never answers: a timeout, which the
    // transfer service turns into `unknown`.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let slow = HttpCore::new(&silent_url, 100).unwrap();
    let result = slow.late_window_ms().await;
    assert!(
        matches!(result, Err(CoreError::Timeout { .. })),
        "{result:?}"
    );
    drop(silent);
}
