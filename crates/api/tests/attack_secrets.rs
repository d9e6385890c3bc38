//! Secrets are shown once (issue 15, item 5), over real HTTP on SQLite and
//! PostgreSQL: a key created with an `Idempotency-Key` is never stored in the
//! idempotency table nor handed out again; a replay is a clear 409, and the answer
//! that holds the key says `Cache-Control: no-store`.

mod common;

use common::{Backend, TestApp};
use serde_json::json;

/// Every stored idempotent response, as text.
async fn stored_responses(store: &store::Store) -> Vec<String> {
    let sql = "SELECT COALESCE(response, '') FROM api_idempotency";
    let rows: Vec<(String,)> = match store {
        store::Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        store::Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter().map(|(text,)| text).collect()
}

async fn a_replayed_key_creation_never_hands_out_the_key_again(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let body = json!({ "role": "service" });
    let response = app
        .http
        .post(app.url("/v1/keys"))
        .bearer_auth(&app.ops)
        .header("Idempotency-Key", "new-service-key-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let (status, created) = common::read(response).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();

    let stored = stored_responses(&app.api_db.store).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        !stored[0].contains(&key),
        "the key is in the idempotency table"
    );
    assert!(
        !stored[0].contains(&key[8..24]),
        "part of the key is stored"
    );

    let (status, replay, replayed) = app
        .post_idempotent(&app.ops, "/v1/keys", "new-service-key-1", body)
        .await;
    assert_eq!(
        (
            status,
            replay["code"].as_str(),
            replay["details"]["reason"].as_str()
        ),
        (409, Some("conflict"), Some("secret_shown_once")),
        "{replay}"
    );
    assert!(!replayed);
    assert!(!replay.to_string().contains(&key), "{replay}");
    assert_eq!(replay["details"]["withheld"]["key_id"], key_id.as_str());
    // The key created the first time works; no second key was made.
    let (status, me) = app.get(&key, "/v1/me").await;
    assert_eq!(status, 200, "{me}");
}
on_both!(
    sqlite_a_replayed_key_creation_never_hands_out_the_key_again,
    postgres_a_replayed_key_creation_never_hands_out_the_key_again,
    a_replayed_key_creation_never_hands_out_the_key_again
);

async fn a_revoked_key_is_refused_at_once_by_every_process(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    // A second API process over the same api tables, as in a scaled-out deployment.
    let other = api::AppState::new(
        app.api_db.store.clone(),
        api::Handles::default(),
        api::ApiConfig::default(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve(listener, other, std::future::pending()));
    let (status, created) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let me = |base: String| {
        let (http, key) = (app.http.clone(), key.clone());
        async move {
            let response = http
                .get(format!("{base}/v1/me"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            common::read(response).await.0
        }
    };
    // Both processes know (and would have cached) the key.
    assert_eq!(me(app.base.clone()).await, 200);
    assert_eq!(me(other_base.clone()).await, 200);

    let (status, listed) = app.get(&app.ops, "/v1/keys").await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains(&key), "a listing shows a key");
    let (status, body) = app
        .post(&app.ops, &format!("/v1/keys/{key_id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(me(app.base.clone()).await, 401);
    assert_eq!(me(other_base).await, 401, "the other process still took it");
    let (status, _) = app
        .post(&app.ops, &format!("/v1/keys/{key_id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 404, "a key is revoked once");
    let (_, audit) = app.get(&app.ops, "/v1/audit").await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "keys.revoke" && r["target"] == key_id.as_str()),
        "{audit}"
    );
}
on_both!(
    sqlite_a_revoked_key_is_refused_at_once_by_every_process,
    postgres_a_revoked_key_is_refused_at_once_by_every_process,
    a_revoked_key_is_refused_at_once_by_every_process
);
