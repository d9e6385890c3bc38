//! API keys can be rotated, expire and show their last use (issue 15, item 6), on
//! SQLite and PostgreSQL: a rotated key's old secret is refused at once — by a
//! second API process on its own connection pool too — and the new one is shown
//! once; a key past its expiry is 401 `key_expired`; the last use is written at
//! most once a minute per key, not once per request.

mod common;

use common::{Backend, TestApp};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn status_of(http: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let response = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    common::read(response).await
}

async fn listing(app: &TestApp, key_id: &str) -> Value {
    let (status, keys) = app.get(&app.ops, "/v1/keys").await;
    assert_eq!(status, 200, "{keys}");
    keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == key_id)
        .cloned()
        .unwrap_or_else(|| panic!("{key_id} is not listed: {keys}"))
}

/// A second API process over the same api tables, on a pool of its own.
async fn second_process(app: &TestApp) -> String {
    let store = store::Store::connect(&app.api_db.url).await.unwrap();
    let other = api::AppState::new(store, api::Handles::default(), api::ApiConfig::default())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve(listener, other, std::future::pending()));
    base
}

async fn a_rotated_key_refuses_its_old_secret_in_every_process(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let other = second_process(&app).await;
    let (status, created) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let old = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&app.http, &app.base, &old).await.0, 200);
    assert_eq!(status_of(&app.http, &other, &old).await.0, 200);

    let response = app
        .http
        .post(app.url(&format!("/v1/keys/{key_id}/rotate")))
        .bearer_auth(&app.ops)
        .header("Idempotency-Key", "rotate-once")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let (status, rotated) = common::read(response).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["key_id"], key_id.as_str());
    assert_eq!(rotated["role"], "service");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // The old secret is refused at once by both processes; the new one works.
    for base in [&app.base, &other] {
        let (status, refused) = status_of(&app.http, base, &old).await;
        assert_eq!(status, 401, "{base}: {refused}");
        let (status, me) = status_of(&app.http, base, &new).await;
        assert_eq!(
            (status, me["key_id"].as_str()),
            (200, Some(key_id.as_str()))
        );
    }
    // Shown once: a replay of the rotation never hands the secret out again.
    let (status, replay, _) = app
        .post_idempotent(
            &app.ops,
            &format!("/v1/keys/{key_id}/rotate"),
            "rotate-once",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, replay["details"]["reason"].as_str()),
        (409, Some("secret_shown_once")),
        "{replay}"
    );
    assert!(!replay.to_string().contains(&new));
    assert_eq!(status_of(&app.http, &app.base, &new).await.0, 200);
    let listed = listing(&app, &key_id).await;
    assert!(listed["rotated_at_ms"].is_i64(), "{listed}");
    // A revoked key cannot be rotated back to life.
    let (status, _) = app
        .post(&app.ops, &format!("/v1/keys/{key_id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(&app.ops, &format!("/v1/keys/{key_id}/rotate"), json!({}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(status_of(&app.http, &other, &new).await.0, 401);
}
on_both!(
    sqlite_a_rotated_key_refuses_its_old_secret_in_every_process,
    postgres_a_rotated_key_refuses_its_old_secret_in_every_process,
    a_rotated_key_refuses_its_old_secret_in_every_process
);

async fn a_key_past_its_expiry_is_refused_with_key_expired(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (status, past) = app
        .post(
            &app.ops,
            "/v1/keys",
            json!({ "role": "service", "expires_at_ms": now_ms() - 1 }),
        )
        .await;
    assert_eq!(
        (status, past["details"]["reason"].as_str()),
        (400, Some("expires_at_invalid")),
        "{past}"
    );
    let lifetime_ms = 1_500;
    let (status, created) = app
        .post(
            &app.ops,
            "/v1/keys",
            json!({ "role": "service", "expires_at_ms": now_ms() + lifetime_ms }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap();
    assert_eq!(status_of(&app.http, &app.base, &key).await.0, 200);
    assert!(listing(&app, key_id).await["expires_at_ms"].is_i64());
    let lifetime = std::time::Duration::from_millis(u64::try_from(lifetime_ms).unwrap());
    tokio::time::sleep(lifetime + std::time::Duration::from_millis(100)).await;
    let (status, refused) = status_of(&app.http, &app.base, &key).await;
    assert_eq!(
        (
            status,
            refused["code"].as_str(),
            refused["details"]["reason"].as_str()
        ),
        (401, Some("unauthenticated"), Some("key_expired")),
        "{refused}"
    );
    // Rotating with a new expiry brings the key id back with a new secret.
    let (status, rotated) = app
        .post(
            &app.ops,
            &format!("/v1/keys/{key_id}/rotate"),
            json!({ "expires_at_ms": now_ms() + 60_000 }),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["key"].as_str().unwrap();
    assert_eq!(status_of(&app.http, &app.base, new).await.0, 200);
    assert_eq!(status_of(&app.http, &app.base, &key).await.0, 401);
}
on_both!(
    sqlite_a_key_past_its_expiry_is_refused_with_key_expired,
    postgres_a_key_past_its_expiry_is_refused_with_key_expired,
    a_key_past_its_expiry_is_refused_with_key_expired
);

async fn a_keys_last_use_is_written_at_most_once_a_minute(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let other = second_process(&app).await;
    let (status, created) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    assert!(listing(&app, &key_id).await["last_used_at_ms"].is_null());

    let before = now_ms();
    assert_eq!(status_of(&app.http, &app.base, &key).await.0, 200);
    let first = listing(&app, &key_id).await["last_used_at_ms"]
        .as_i64()
        .expect("the first use is recorded");
    assert!(first >= before, "{first} < {before}");
    // More uses within the minute, in this process and another: no new write.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(status_of(&app.http, &app.base, &key).await.0, 200);
        assert_eq!(status_of(&app.http, &other, &key).await.0, 200);
    }
    assert_eq!(
        listing(&app, &key_id).await["last_used_at_ms"].as_i64(),
        Some(first),
        "a use within a minute wrote again"
    );
}
on_both!(
    sqlite_a_keys_last_use_is_written_at_most_once_a_minute,
    postgres_a_keys_last_use_is_written_at_most_once_a_minute,
    a_keys_last_use_is_written_at_most_once_a_minute
);
