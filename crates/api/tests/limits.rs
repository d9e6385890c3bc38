//! The limits every key and request lives under: a per-key rate (429 with
//! Retry-After, other keys unaffected), a request timeout (504), a body cap (413),
//! and no CORS headers for a cross-origin caller.

mod common;

use channel::faults::Fault;
use common::{Backend, TestApp, id};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let config = api::ApiConfig {
        key_requests_per_s_max: 5,
        ..api::ApiConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await.unwrap();
    let mut limited = 0;
    for _ in 0..20 {
        let response = app
            .http
            .get(app.url("/v1/me"))
            .bearer_auth(&app.service)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry_after));
            let (_, body) = common::read(response).await;
            assert_eq!(body["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 were limited at 5/s");
    let (status, _) = app.get(&app.ops, "/v1/me").await;
    assert_eq!(status, 200, "another key was limited too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_times_out_as_504_json() {
    let config = api::ApiConfig {
        request_timeout_ms: 300,
        ..api::ApiConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await.unwrap();
    let customer = "0190a000-0000-7000-8000-00000000f001";
    let (from, to) = (id(), id());
    app.open_funded(customer, &from, 1_000).await;
    app.open_funded("0190a000-0000-7000-8000-00000000f002", &to, 0)
        .await;
    let key = app.customer_key(customer).await;
    assert!(app.core.push(Fault::Delay { delay_ms: 1_500 }).await);
    let (status, body) = app
        .post(
            &key,
            "/v1/channel/transfers",
            json!({ "id": id(), "from_account_id": from, "to_account_id": to, "amount_krw": 100 }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413_and_cors_is_off() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let response = app
        .http
        .post(app.url("/v1/accounts"))
        .bearer_auth(&app.service)
        .header("content-type", "application/json")
        .body(format!("{{\"id\":\"{}\"}}", "a".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("body_too_large"))
    );
    // A fresh connection: the server answers 413 before reading the whole body and
    // then closes that connection, so a pooled one may already be gone.
    let response = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let response = app
        .http
        .get(app.url("/v1/me"))
        .bearer_auth(&app.ops)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_shown_once_and_stored_only_as_its_hash() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (status, created) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 64, "a short key: {key}");
    let store::Store::Sqlite(pool) = &app.api_db.store else {
        unreachable!()
    };
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT key_id, key_hash, created_by FROM api_keys")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(
        rows.iter()
            .all(|(id, hash, by)| !key.contains(hash.as_str())
                && hash != &key
                && !id.contains(&key)
                && !by.contains(&key))
    );
    assert!(
        rows.iter()
            .any(|(_, hash, _)| hash == &api::auth::hash_key(&key))
    );
    // The new key works; the listing of keys never shows one again.
    let (status, me) = app.get(&key, "/v1/me").await;
    assert_eq!((status, me["role"].as_str()), (200, Some("service")));
    let (_, audit) = app.get(&app.ops, "/v1/audit").await;
    assert!(
        !audit.to_string().contains(&key),
        "the audit log holds a key"
    );
}
