//! Who may do what, over real HTTP: a customer never reaches another customer's
//! money (404, never 403) nor an ops endpoint (403); a service cannot change
//! provider flags; every ops action lands in the audit log with key id and time.

mod common;

use std::sync::Arc;

use common::{Backend, TestApp, id};
use events::{Consumer, Dispatcher, DispatcherConfig, Event, HandleError, RetryPolicy, Wake};
use money::{Clock, SystemClock};
use serde_json::json;

const ALICE: &str = "0190a000-0000-7000-8000-00000000a11c";
const BOB: &str = "0190a000-0000-7000-8000-000000000b0b";

async fn a_customer_cannot_read_or_move_another_customers_money(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice_account, bob_account) = (id(), id());
    app.open_funded(ALICE, &alice_account, 50_000).await;
    app.open_funded(BOB, &bob_account, 70_000).await;
    let alice = app.customer_key(ALICE).await;
    let bob_before = app
        .get(&app.service, &format!("/v1/accounts/{bob_account}"))
        .await;
    let footprint = app.footprint().await;

    for path in [
        format!("/v1/accounts/{bob_account}"),
        format!("/v1/accounts/{bob_account}/balance"),
        format!("/v1/accounts/{bob_account}/history"),
        format!("/v1/accounts/{bob_account}/pending"),
        format!("/v1/customers/{BOB}/accounts"),
        // Not even a malformed id or an unknown one tells her anything.
        "/v1/accounts/not-an-id".to_owned(),
        format!("/v1/accounts/{}", id()),
    ] {
        let (status, body) = app.get(&alice, &path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .post(
            &alice,
            &format!("/v1/accounts/{bob_account}/history/sync"),
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app
        .post(
            &alice,
            "/v1/channel/transfers",
            json!({ "id": id(), "from_account_id": bob_account, "to_account_id": alice_account, "amount_krw": 1_000 }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(
        app.footprint().await,
        footprint,
        "a refused request wrote something"
    );

    for path in [
        "/v1/fees/days",
        "/v1/events/dead-letters",
        "/v1/providers/flags",
        "/v1/audit",
        "/v1/payroll/status",
        "/v1/alerts",
    ] {
        let (status, body) = app.get(&alice, path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    for (path, body) in [
        ("/v1/providers/cohort", json!({ "percent": 50 })),
        ("/v1/keys", json!({ "role": "ops" })),
        ("/v1/fees/days/2026-11-20/record", json!({})),
        (
            "/v1/transfers",
            json!({ "id": id(), "debit_account_id": bob_account, "credit_account_id": alice_account, "amount": 1 }),
        ),
        ("/v1/accounts", json!({ "id": id() })),
    ] {
        let (status, answer) = app.post(&alice, path, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let bob_after = app
        .get(&app.service, &format!("/v1/accounts/{bob_account}"))
        .await;
    assert_eq!(bob_before, bob_after, "Bob's money moved");

    // Her own account she reads and moves.
    let (status, body) = app
        .get(&alice, &format!("/v1/accounts/{alice_account}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance_krw"], 50_000);
    let (status, body) = app
        .get(&alice, &format!("/v1/customers/{ALICE}/accounts"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (status, body) = app
        .post(
            &alice,
            "/v1/channel/transfers",
            json!({ "id": id(), "from_account_id": alice_account, "to_account_id": bob_account, "amount_krw": 1_000 }),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (201, Some("succeeded")),
        "{body}"
    );
    let (_, bob) = app
        .get(&app.service, &format!("/v1/accounts/{bob_account}"))
        .await;
    assert_eq!(bob["balance_krw"], 71_000);
}

on_both!(
    customer_cannot_touch_another_customers_money_sqlite,
    customer_cannot_touch_another_customers_money_postgres,
    a_customer_cannot_read_or_move_another_customers_money
);

async fn a_service_key_cannot_change_flags_or_keys(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let footprint = app.footprint().await;
    for (path, body) in [
        ("/v1/providers/cohort", json!({ "percent": 30 })),
        (
            "/v1/providers/overrides/0190a000-0000-7000-8000-000000000001",
            json!({ "provider": "next" }),
        ),
        ("/v1/keys", json!({ "role": "ops" })),
        ("/v1/fees/days/2026-11-20/pay", json!({})),
    ] {
        let (status, answer) = app.post(&app.service, path, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    for path in [
        "/v1/providers/flags",
        "/v1/audit",
        "/v1/events/dead-letters",
    ] {
        let (status, _) = app.get(&app.service, path).await;
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(app.routing.cohort_percent().await.unwrap(), 0);
    assert_eq!(app.footprint().await, footprint);
    // Without a key, or with a wrong one, nothing at all.
    let response = app.http.get(app.url("/v1/me")).send().await.unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _) = app.get("settle_not_a_key", "/v1/me").await;
    assert_eq!(status, 401);
    let (status, me) = app.get(&app.service, "/v1/me").await;
    assert_eq!((status, me["role"].as_str()), (200, Some("service")));
}

on_both!(
    service_cannot_change_flags_sqlite,
    service_cannot_change_flags_postgres,
    a_service_key_cannot_change_flags_or_keys
);

/// A consumer that always fails: its first event becomes a dead letter.
struct Failing;

impl Consumer for Failing {
    fn name(&self) -> &str {
        "api-test-failing"
    }
    fn kinds(&self) -> &[&str] {
        &["api.test"]
    }
    async fn handle(&self, _event: &Event, _tx: &mut store::Tx) -> Result<(), HandleError> {
        Err("always fails".into())
    }
}

async fn park_one_letter(app: &TestApp) -> String {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut tx = app.db.store.begin().await.unwrap();
    events::append(
        &mut tx,
        &[events::NewEvent {
            kind: "api.test",
            key: "api-test:1".into(),
            seq: 1,
        }],
        clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let config = DispatcherConfig {
        retry: RetryPolicy {
            retry_attempts_max: 1,
            backoff_min_ms: 1,
            backoff_max_ms: 1,
            jitter: false,
            jitter_seed: None,
        },
        ..DispatcherConfig::default()
    };
    let mut dispatcher = Dispatcher::new(
        app.db.store.clone(),
        Arc::new(Failing),
        config,
        clock,
        Wake::new(),
    )
    .await
    .unwrap();
    // A generous bound: on a loaded machine the retry's backoff and the lease take
    // their time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = serde_json::Value::Null;
    while std::time::Instant::now() < deadline {
        dispatcher.run_once().await.unwrap();
        let (_, letters) = app
            .get(&app.ops, "/v1/events/dead-letters?state=parked")
            .await;
        if let Some(letter) = letters["items"].as_array().and_then(|items| items.first()) {
            return letter["id"].as_str().unwrap().to_owned();
        }
        last = letters;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no dead letter within 30 s: {last}");
}

async fn each_ops_action_is_in_the_audit_log_with_key_id_and_time(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (_, me) = app.get(&app.ops, "/v1/me").await;
    let ops_key_id = me["key_id"].as_str().unwrap().to_owned();
    let started_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let user = "0190a000-0000-7000-8000-000000000001";
    let letter = park_one_letter(&app).await;

    let mut expected = Vec::new();
    let (status, body) = app
        .post(&app.ops, "/v1/providers/cohort", json!({ "percent": 25 }))
        .await;
    assert_eq!(
        (status, body["cohort_percent"].as_u64()),
        (200, Some(25)),
        "{body}"
    );
    expected.push(("providers.cohort", "cohort".to_owned()));
    let (status, _) = app
        .post(
            &app.ops,
            &format!("/v1/providers/overrides/{user}"),
            json!({ "provider": "next" }),
        )
        .await;
    assert_eq!(status, 200);
    expected.push(("providers.override", user.to_owned()));
    let (status, created) = app
        .post(
            &app.ops,
            "/v1/keys",
            json!({ "role": "customer", "customer_id": ALICE }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    expected.push((
        "keys.create",
        created["key_id"].as_str().unwrap().to_owned(),
    ));
    let (status, run) = app
        .post(&app.ops, "/v1/fees/days/2026-11-20/record", json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    expected.push(("fees.record", "2026-11-20".to_owned()));
    let (status, replayed) = app
        .post(
            &app.ops,
            &format!("/v1/events/dead-letters/{letter}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, replayed["state"].as_str()),
        (200, Some("replayed")),
        "{replayed}"
    );
    expected.push(("events.replay", letter.clone()));
    // Replaying twice is a conflict, and a refused action is not a second record.
    let (status, _) = app
        .post(
            &app.ops,
            &format!("/v1/events/dead-letters/{letter}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = app
        .post(
            &app.ops,
            "/v1/payroll/deposits/no-such-deposit/retry",
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    let (status, audit) = app.get(&app.ops, "/v1/audit?limit=100").await;
    assert_eq!(status, 200);
    let mut items = audit["items"].as_array().unwrap().clone();
    items.reverse();
    // Each action has a record before it ran and one after with its outcome.
    let (intents, outcomes): (Vec<_>, Vec<_>) = items
        .iter()
        .cloned()
        .partition(|row| row["details"]["outcome"].is_null());
    assert_eq!(intents.len(), outcomes.len(), "{audit}");
    for (intent, outcome) in intents.iter().zip(&outcomes) {
        assert_eq!(outcome["details"]["of"], intent["id"], "{audit}");
        assert_eq!(outcome["details"]["outcome"], "ok", "{audit}");
        assert_eq!(outcome["action"], intent["action"]);
    }
    let got: Vec<(String, String)> = intents
        .iter()
        .map(|row| {
            (
                row["action"].as_str().unwrap().to_owned(),
                row["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let wanted: Vec<(String, String)> = expected
        .iter()
        .map(|(a, t)| (a.to_string(), t.clone()))
        .collect();
    assert_eq!(got, wanted, "{audit}");
    for row in &items {
        assert_eq!(row["key_id"], ops_key_id.as_str());
        assert!(row["at_ms"].as_i64().unwrap() >= started_ms);
    }
    // The log is append-only in the database itself.
    let tampered = match &app.api_db.store {
        store::Store::Sqlite(pool) => sqlx::query("DELETE FROM api_audit")
            .execute(pool)
            .await
            .is_err(),
        store::Store::Postgres(pool) => sqlx::query("DELETE FROM api_audit")
            .execute(pool)
            .await
            .is_err(),
    };
    assert!(tampered, "the audit log accepted a delete");
}

on_both!(
    ops_actions_are_audited_sqlite,
    ops_actions_are_audited_postgres,
    each_ops_action_is_in_the_audit_log_with_key_id_and_time
);
