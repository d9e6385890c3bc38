//! Attacks on accounts (issue 15, items 2 and 3), over real HTTP on SQLite and
//! PostgreSQL: a create never hands an existing account to someone else, and money
//! moves only between the classes a key may touch — a customer debits its own
//! accounts and credits customer accounts only; a service key moves house money
//! only when granted.

mod common;

use common::{Backend, HOUSE, TestApp, id};
use serde_json::json;

const MALLORY: &str = "0190a000-0000-7000-8000-0000000ba11e";
const ALICE: &str = "0190a000-0000-7000-8000-00000000a11c";

async fn a_create_with_a_customer_for_a_house_account_is_409_and_hands_nothing_over(
    backend: Backend,
) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let footprint = app.footprint().await;
    // The attack: "create" the house account again, naming Mallory.
    let (status, body) = app
        .post(
            &app.service,
            "/v1/accounts",
            json!({ "id": HOUSE, "code": 9, "customer_id": MALLORY }),
        )
        .await;
    assert_eq!(
        (
            status,
            body["code"].as_str(),
            body["details"]["reason"].as_str()
        ),
        (409, Some("conflict"), Some("exists_with_different_fields")),
        "{body}"
    );
    assert_eq!(app.footprint().await, footprint);
    let mallory = app.customer_key(MALLORY).await;
    let (status, _) = app.get(&mallory, &format!("/v1/accounts/{HOUSE}")).await;
    assert_eq!(status, 404, "the house account is still nobody's");
    // The same create as the first one is still `exists`.
    let (status, body) = app
        .post(
            &app.service,
            "/v1/accounts",
            json!({ "id": HOUSE, "code": 9 }),
        )
        .await;
    assert_eq!((status, body["result"].as_str()), (200, Some("exists")));
}
on_both!(
    sqlite_a_create_with_a_customer_for_a_house_account_is_409_and_hands_nothing_over,
    postgres_a_create_with_a_customer_for_a_house_account_is_409_and_hands_nothing_over,
    a_create_with_a_customer_for_a_house_account_is_409_and_hands_nothing_over
);

async fn a_create_with_another_owner_flags_or_class_is_409(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let account = id();
    app.open_funded(ALICE, &account, 0).await;
    let footprint = app.footprint().await;
    let same = json!({
        "id": account, "code": 1, "customer_id": ALICE,
        "flags": { "debits_must_not_exceed_credits": true }
    });
    for other in [
        json!({ "id": account, "code": 1, "customer_id": MALLORY, "flags": { "debits_must_not_exceed_credits": true } }),
        json!({ "id": account, "code": 1, "flags": { "debits_must_not_exceed_credits": true } }),
        json!({ "id": account, "code": 1, "customer_id": ALICE }),
        json!({ "id": account, "code": 2, "customer_id": ALICE, "flags": { "debits_must_not_exceed_credits": true } }),
    ] {
        let (status, body) = app.post(&app.ops, "/v1/accounts", other.clone()).await;
        assert_eq!(
            (status, body["details"]["reason"].as_str()),
            (409, Some("exists_with_different_fields")),
            "{other}: {body}"
        );
    }
    assert_eq!(
        app.footprint().await,
        footprint,
        "a refused create writes nothing"
    );
    let (status, body) = app.post(&app.service, "/v1/accounts", same).await;
    assert_eq!(
        (status, body["customer_id"].as_str()),
        (200, Some(ALICE)),
        "{body}"
    );
}
on_both!(
    sqlite_a_create_with_another_owner_flags_or_class_is_409,
    postgres_a_create_with_another_owner_flags_or_class_is_409,
    a_create_with_another_owner_flags_or_class_is_409
);

async fn a_customer_credits_only_customer_accounts(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (mine, alices) = (id(), id());
    app.open_funded(MALLORY, &mine, 10_000).await;
    app.open_funded(ALICE, &alices, 0).await;
    let mallory = app.customer_key(MALLORY).await;
    let fees_settlement = fees::accounts::settlement(&common::installation_ids())
        .unwrap()
        .to_string();
    for house in [HOUSE.to_owned(), fees_settlement, id()] {
        let footprint = app.footprint().await;
        let (status, body) = app
            .post(
                &mallory,
                "/v1/channel/transfers",
                json!({ "id": id(), "from_account_id": mine, "to_account_id": house, "amount_krw": 100 }),
            )
            .await;
        assert_eq!(
            (status, body["details"]["reason"].as_str()),
            (403, Some("house_account")),
            "{house}: {body}"
        );
        assert_eq!(app.footprint().await, footprint);
    }
    let (status, body) = app
        .post(
            &mallory,
            "/v1/channel/transfers",
            json!({ "id": id(), "from_account_id": mine, "to_account_id": alices, "amount_krw": 100 }),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (201, Some("succeeded")),
        "{body}"
    );
}
on_both!(
    sqlite_a_customer_credits_only_customer_accounts,
    postgres_a_customer_credits_only_customer_accounts,
    a_customer_credits_only_customer_accounts
);

async fn a_service_key_moves_house_money_only_when_granted(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alices, malloys) = (id(), id());
    app.open_funded(ALICE, &alices, 50_000).await;
    app.open_funded(MALLORY, &malloys, 0).await;
    let plain = api::auth::create_key(&app.api_db.store, api::Role::Service, None, "test", 0)
        .await
        .unwrap()
        .key;
    let hold = id();
    let (status, body) = app
        .post(
            &app.service,
            "/v1/holds",
            json!({ "id": hold, "debit_account_id": HOUSE, "credit_account_id": alices, "amount_krw": 7 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let footprint = app.footprint().await;
    for (path, body) in [
        (
            "/v1/transfers".to_owned(),
            json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": malloys, "amount": 5_000_000 }),
        ),
        (
            "/v1/transfers".to_owned(),
            json!({ "id": id(), "debit_account_id": alices, "credit_account_id": HOUSE, "amount": 1 }),
        ),
        (
            "/v1/holds".to_owned(),
            json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": malloys, "amount_krw": 1 }),
        ),
        (format!("/v1/holds/{hold}/post"), json!({ "id": id() })),
        (format!("/v1/holds/{hold}/void"), json!({ "id": id() })),
    ] {
        let (status, answer) = app.post(&plain, &path, body.clone()).await;
        assert_eq!(
            (status, answer["details"]["reason"].as_str()),
            (403, Some("house_account")),
            "{path} {body}: {answer}"
        );
    }
    assert_eq!(app.footprint().await, footprint);
    // Between customer accounts the plain service key works.
    let (status, body) = app
        .post(
            &plain,
            "/v1/transfers",
            json!({ "id": id(), "debit_account_id": alices, "credit_account_id": malloys, "amount": 10 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A grant is only for service keys.
    let (status, body) = app
        .post(
            &app.ops,
            "/v1/keys",
            json!({ "role": "customer", "customer_id": MALLORY, "grants": ["house_accounts"] }),
        )
        .await;
    assert_eq!(
        (status, body["details"]["reason"].as_str()),
        (400, Some("grant_not_allowed")),
        "{body}"
    );
}
on_both!(
    sqlite_a_service_key_moves_house_money_only_when_granted,
    postgres_a_service_key_moves_house_money_only_when_granted,
    a_service_key_moves_house_money_only_when_granted
);

async fn an_owner_changes_only_by_an_audited_ops_action(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let account = id();
    app.open_funded(ALICE, &account, 3_000).await;
    let path = format!("/v1/accounts/{account}/owner");
    let body = json!({ "customer_id": MALLORY, "reason": "support ticket 42: profiles merged" });
    let alice = app.customer_key(ALICE).await;
    let footprint = app.footprint().await;
    for key in [app.service.clone(), alice.clone()] {
        let (status, answer) = app.post(&key, &path, body.clone()).await;
        assert_eq!(status, 403, "{answer}");
    }
    let (status, answer) = app
        .post(
            &app.ops,
            &format!("/v1/accounts/{HOUSE}/owner"),
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, answer["details"]["reason"].as_str()),
        (409, Some("account_is_house")),
        "{answer}"
    );
    let (status, answer) = app
        .post(
            &app.ops,
            &path,
            json!({ "customer_id": MALLORY, "reason": " " }),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(app.footprint().await, footprint, "refusals write nothing");

    let (status, answer) = app.post(&app.ops, &path, body).await;
    assert_eq!(
        (status, answer["customer_id"].as_str()),
        (200, Some(MALLORY)),
        "{answer}"
    );
    let (_, audit) = app.get(&app.ops, "/v1/audit").await;
    let row = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "accounts.change_owner" && r["details"]["outcome"].is_null())
        .unwrap_or_else(|| panic!("no audit row: {audit}"));
    assert_eq!(row["target"], account.as_str());
    assert_eq!(row["details"]["from"], ALICE);
    assert_eq!(row["details"]["to"], MALLORY);
    let mallory = app.customer_key(MALLORY).await;
    let (status, _) = app.get(&mallory, &format!("/v1/accounts/{account}")).await;
    assert_eq!(status, 200);
    let (status, _) = app.get(&alice, &format!("/v1/accounts/{account}")).await;
    assert_eq!(status, 404);
}
on_both!(
    sqlite_an_owner_changes_only_by_an_audited_ops_action,
    postgres_an_owner_changes_only_by_an_audited_ops_action,
    an_owner_changes_only_by_an_audited_ops_action
);
