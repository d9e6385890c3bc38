//! `Idempotency-Key` over real HTTP: a replay returns the first answer and moves
//! nothing; the same key with another request is 422; a request whose first
//! twin is still running is 409; a refused request leaves the key free.

mod common;

use channel::faults::Fault;
use common::{Backend, HOUSE, TestApp, id};
use serde_json::json;

const CAROL: &str = "0190a000-0000-7000-8000-0000000ca201";

async fn replay_returns_the_first_answer_and_moves_money_once(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let account = id();
    app.open_funded(CAROL, &account, 0).await;
    let transfer = json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount": 5_000 });
    let (status, first, replayed) = app
        .post_idempotent(
            &app.service,
            "/v1/transfers",
            "fund-carol-1",
            transfer.clone(),
        )
        .await;
    assert_eq!((status, replayed), (201, false), "{first}");
    for _ in 0..3 {
        let (status, again, replayed) = app
            .post_idempotent(
                &app.service,
                "/v1/transfers",
                "fund-carol-1",
                transfer.clone(),
            )
            .await;
        assert_eq!((status, replayed), (201, true));
        assert_eq!(again, first);
    }
    let (_, balance) = app
        .get(&app.service, &format!("/v1/accounts/{account}/balance"))
        .await;
    assert_eq!(balance["balance_krw"], 5_000);

    // The same key with another body, or another path, is refused and changes nothing.
    let footprint = app.footprint().await;
    let other = json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount": 7_000 });
    let (status, body, _) = app
        .post_idempotent(&app.service, "/v1/transfers", "fund-carol-1", other)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let (status, body, _) = app
        .post_idempotent(&app.service, "/v1/holds", "fund-carol-1", transfer.clone())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(app.footprint().await, footprint);

    // Keys belong to an API key: another caller's same key is its own.
    let other_service = api::auth::create_key_granted(
        &app.api_db.store,
        api::Role::Service,
        None,
        &[api::auth::Grant::HouseAccounts],
        "test",
        0,
    )
    .await
    .unwrap()
    .key;
    let (status, body, replayed) = app
        .post_idempotent(
            &other_service,
            "/v1/transfers",
            "fund-carol-1",
            transfer.clone(),
        )
        .await;
    // The ledger's own id makes it `exists`, not a second movement.
    assert_eq!(
        (status, replayed, body["result"].as_str()),
        (200, false, Some("exists"))
    );
    let (_, balance) = app
        .get(&app.service, &format!("/v1/accounts/{account}/balance"))
        .await;
    assert_eq!(balance["balance_krw"], 5_000);

    // A refused request does not take the key: after fixing the body it runs.
    let bad = json!({ "id": id(), "debit_account_id": account, "credit_account_id": HOUSE, "amount": "lots" });
    let (status, _, _) = app
        .post_idempotent(&app.service, "/v1/transfers", "carol-2", bad)
        .await;
    assert_eq!(status, 400);
    let good = json!({ "id": id(), "debit_account_id": account, "credit_account_id": HOUSE, "amount": 1_000 });
    let (status, body, replayed) = app
        .post_idempotent(&app.service, "/v1/transfers", "carol-2", good)
        .await;
    assert_eq!((status, replayed), (201, false), "{body}");
    // An unusable key is refused before anything runs.
    let (status, body, _) = app
        .post_idempotent(&app.service, "/v1/transfers", &"k".repeat(300), transfer)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );
}

on_both!(
    idempotency_replay_and_mismatch_sqlite,
    idempotency_replay_and_mismatch_postgres,
    replay_returns_the_first_answer_and_moves_money_once
);

async fn a_second_request_while_the_first_runs_is_409(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (from, to) = (id(), id());
    app.open_funded(CAROL, &from, 10_000).await;
    app.open_funded("0190a000-0000-7000-8000-0000000ca202", &to, 0)
        .await;
    let carol = app.customer_key(CAROL).await;
    // The core answers the first transfer call only after 1.5 s.
    assert!(app.core.push(Fault::Delay { delay_ms: 1_500 }).await);
    let body =
        json!({ "id": id(), "from_account_id": from, "to_account_id": to, "amount_krw": 2_500 });
    let first = {
        let (app_http, url, key, body) = (
            app.http.clone(),
            app.url("/v1/channel/transfers"),
            carol.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            let response = app_http
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "carol-pays-1")
                .json(&body)
                .send()
                .await
                .unwrap();
            common::read(response).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut concurrent = Vec::new();
    for _ in 0..5 {
        concurrent.push(app.post_idempotent(
            &carol,
            "/v1/channel/transfers",
            "carol-pays-1",
            body.clone(),
        ));
    }
    for (status, answer, _) in futures_util::future::join_all(concurrent).await {
        assert_eq!(
            (status, answer["code"].as_str()),
            (409, Some("idempotency_in_progress")),
            "{answer}"
        );
    }
    let (status, first) = first.await.unwrap();
    assert_eq!(
        (status, first["state"].as_str()),
        (201, Some("succeeded")),
        "{first}"
    );
    let (status, replay, replayed) = app
        .post_idempotent(&carol, "/v1/channel/transfers", "carol-pays-1", body)
        .await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(replay, first);
    let (_, balance) = app
        .get(&carol, &format!("/v1/accounts/{from}/balance"))
        .await;
    assert_eq!(balance["balance_krw"], 7_500);
}

on_both!(
    idempotency_concurrent_sqlite,
    idempotency_concurrent_postgres,
    a_second_request_while_the_first_runs_is_409
);
