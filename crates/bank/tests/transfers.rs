//! Transfers against the simulator server over real HTTP, on both backends.

mod common;

use bank::sim::PPM_ALWAYS;
use bank::types::{AccountRequest, TransferOutcome};
use bank::{AccountNumber, BankApi, BankError};
use common::*;
use money::Krw;
use store::Store;

async fn payee_balance(bank: &impl BankApi) -> Krw {
    bank.balance(&AccountRequest {
        account_number: AccountNumber::new(PAYEE).unwrap(),
    })
    .await
    .unwrap()
    .balance_krw
}

async fn over_the_per_call_limit_is_refused_but_split_calls_pass(store: Store, _url: String) {
    let server = spawn_sim(store, test_config()).await;
    server.standard_accounts().await;
    let bank = server.client();

    let refused = bank
        .deposit_transfer(&payout(1, 250_000))
        .await
        .unwrap_err();
    assert_eq!(refused, BankError::OverPerCallLimit { limit_krw: 100_000 });
    assert_eq!(refused.code(), "over_per_call_limit");
    assert!(!refused.is_outcome_unknown());
    assert_eq!(payee_balance(&bank).await, Krw::ZERO);

    for (sequence, amount) in [(2, 100_000), (3, 100_000), (4, 50_000)] {
        let receipt = bank
            .deposit_transfer(&payout(sequence, amount))
            .await
            .unwrap();
        assert_eq!(receipt.amount_krw, Krw::new(amount));
    }
    assert_eq!(payee_balance(&bank).await, Krw::new(250_000));
    // The refused call is remembered as refused, and moved nothing.
    let outcome = bank.transfer_result(&inquiry(1)).await.unwrap();
    assert!(
        matches!(outcome, TransferOutcome::Failed { ref code, .. } if code == "over_per_call_limit")
    );
    assert_eq!(server.transfer_movements().await.len(), 3);
}

on_both_backends!(
    a_250000_won_deposit_is_refused_and_100000_100000_50000_succeeds_on_sqlite,
    a_250000_won_deposit_is_refused_and_100000_100000_50000_succeeds_on_postgres,
    over_the_per_call_limit_is_refused_but_split_calls_pass
);

async fn timeout_after_commit_is_unknown_then_inquired_and_never_paid_twice(
    store: Store,
    _url: String,
) {
    let mut config = test_config();
    config.faults.timeout_after_commit_ppm = PPM_ALWAYS;
    config.timeout_hold_ms = 2_000;
    let server = spawn_sim(store, config).await;
    server.standard_accounts().await;
    let mut client_config = server.client_config();
    client_config.timeout_ms = 300;
    let bank = bank::HttpBank::new(client_config).unwrap();

    let error = bank.deposit_transfer(&payout(7, 80_000)).await.unwrap_err();
    assert!(error.is_outcome_unknown(), "{error:?}");
    assert_eq!(error.code(), "bank_timeout");

    // The caller asks before retrying: the money moved.
    match bank.transfer_result(&inquiry(7)).await.unwrap() {
        TransferOutcome::Succeeded { receipt } => assert_eq!(receipt.amount_krw, Krw::new(80_000)),
        other => panic!("expected success, got {other:?}"),
    }
    // A blind retry with the same id is answered with the first result, not paid again.
    let again = bank.deposit_transfer(&payout(7, 80_000)).await.unwrap();
    assert_eq!(again.amount_krw, Krw::new(80_000));
    assert_eq!(payee_balance(&bank).await, Krw::new(80_000));
    let movements = server.transfer_movements().await;
    assert_eq!(movements, vec![(tran_id(7).to_string(), 80_000)]);
}

on_both_backends!(
    a_timeout_after_commit_is_unknown_the_inquiry_shows_success_and_a_retry_pays_once_on_sqlite,
    a_timeout_after_commit_is_unknown_the_inquiry_shows_success_and_a_retry_pays_once_on_postgres,
    timeout_after_commit_is_unknown_then_inquired_and_never_paid_twice
);

async fn frozen_and_renamed_accounts_fail_definitely(store: Store, _url: String) {
    let server = spawn_sim(store, test_config()).await;
    server.standard_accounts().await;
    let bank = server.client();

    let (status, _) = server
        .admin_post(
            "/admin/freeze",
            serde_json::json!({"account_number": PAYEE, "frozen": true}),
        )
        .await;
    assert_eq!(status, 200);
    let frozen = bank.deposit_transfer(&payout(1, 10_000)).await.unwrap_err();
    assert_eq!(frozen, BankError::AccountFrozen);
    assert!(!frozen.is_outcome_unknown());

    server
        .admin_post(
            "/admin/freeze",
            serde_json::json!({"account_number": PAYEE, "frozen": false}),
        )
        .await;
    let (status, _) = server
        .admin_post(
            "/admin/rename",
            serde_json::json!({"account_number": PAYEE, "holder_name": "김민준"}),
        )
        .await;
    assert_eq!(status, 200);
    let renamed = bank.deposit_transfer(&payout(2, 10_000)).await.unwrap_err();
    assert_eq!(renamed, BankError::HolderNameMismatch);
    assert!(!renamed.is_outcome_unknown());
    assert_ne!(frozen.code(), renamed.code());

    assert_eq!(payee_balance(&bank).await, Krw::ZERO);
    assert!(server.transfer_movements().await.is_empty());
}

on_both_backends!(
    a_frozen_account_and_a_changed_holder_name_fail_definitely_with_distinct_codes_on_sqlite,
    a_frozen_account_and_a_changed_holder_name_fail_definitely_with_distinct_codes_on_postgres,
    frozen_and_renamed_accounts_fail_definitely
);

async fn bad_input_is_a_clear_error_and_changes_nothing(store: Store, _url: String) {
    let server = spawn_sim(store, test_config()).await;
    server.standard_accounts().await;
    let http = reqwest::Client::new();
    let url = format!("{}{}", server.base_url, bank::wire::PATH_DEPOSIT_TRANSFER);
    let good = serde_json::to_value(payout(1, 1_000)).unwrap();

    let mut bad_id = good.clone();
    bad_id["bank_tran_id"] = "M202500001X000000001".into();
    let mut negative = good.clone();
    negative["amount_krw"] = (-5_000).into();
    let mut fractional = good.clone();
    fractional["amount_krw"] = serde_json::json!(1.5);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"bank_tran_id\": ".into(),
            400,
            "invalid_request",
        ),
        (
            "bad bank_tran_id",
            bad_id.to_string(),
            400,
            "bad_bank_tran_id",
        ),
        ("negative amount", negative.to_string(), 400, "bad_amount"),
        (
            "fractional amount",
            fractional.to_string(),
            400,
            "invalid_request",
        ),
        (
            "oversized body",
            format!("{{\"pad\": \"{}\"}}", "x".repeat(64 * 1024)),
            413,
            "invalid_request",
        ),
    ];
    for (what, body, status, code) in cases {
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let error: bank::wire::ErrorBody = response.json().await.unwrap();
        assert_eq!(error.code, code, "{what}: {}", error.message);
        assert!(!error.message.is_empty(), "{what}");
    }
    assert!(server.transfer_movements().await.is_empty());
    let bank = server.client();
    assert_eq!(payee_balance(&bank).await, Krw::ZERO);
    assert_eq!(
        bank.transfer_result(&inquiry(1)).await.unwrap_err(),
        BankError::TransferNotFound
    );
}

on_both_backends!(
    malformed_json_a_bad_bank_tran_id_and_a_negative_amount_are_clear_errors_with_no_state_change_on_sqlite,
    malformed_json_a_bad_bank_tran_id_and_a_negative_amount_are_clear_errors_with_no_state_change_on_postgres,
    bad_input_is_a_clear_error_and_changes_nothing
);

async fn a_restarted_simulator_still_answers_inquiries(store: Store, url: String) {
    let server = spawn_sim(store, test_config()).await;
    server.standard_accounts().await;
    let bank = server.client();
    bank.deposit_transfer(&payout(1, 30_000)).await.unwrap();
    bank.deposit_transfer(&payout(2, 500_000))
        .await
        .unwrap_err();
    server.stop().await;

    // A new process on the same database: a fresh pool, a fresh server, a new port.
    let reopened = Store::connect(&url).await.unwrap();
    let server = spawn_sim(reopened, test_config()).await;
    let bank = server.client();
    assert!(matches!(
        bank.transfer_result(&inquiry(1)).await.unwrap(),
        TransferOutcome::Succeeded { receipt } if receipt.amount_krw == Krw::new(30_000)
    ));
    assert!(matches!(
        bank.transfer_result(&inquiry(2)).await.unwrap(),
        TransferOutcome::Failed { code, .. } if code == "over_per_call_limit"
    ));
    assert_eq!(
        bank.transfer_result(&inquiry(3)).await.unwrap_err(),
        BankError::TransferNotFound
    );
    // Replaying the first id after the restart still pays nothing more.
    bank.deposit_transfer(&payout(1, 30_000)).await.unwrap();
    assert_eq!(payee_balance(&bank).await, Krw::new(30_000));
}

on_both_backends!(
    a_restarted_simulator_still_answers_inquiries_for_earlier_bank_tran_ids_on_sqlite,
    a_restarted_simulator_still_answers_inquiries_for_earlier_bank_tran_ids_on_postgres,
    a_restarted_simulator_still_answers_inquiries
);

/// Issue 19 item 5: a refused connection sent nothing, so it is transient (the same
/// id may be sent again at once), never outcome unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_not_sent_rather_than_outcome_unknown() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let bank =
        bank::HttpBank::new(bank::TransportConfig::new(&format!("http://{address}"))).unwrap();
    let error = bank.deposit_transfer(&payout(1, 10_000)).await.unwrap_err();
    assert_eq!(error.code(), "bank_not_sent", "{error:?}");
    assert_eq!(error.class(), bank::ErrorClass::Transient);
    assert!(!error.is_outcome_unknown());
}
