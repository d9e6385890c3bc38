//! Maker-checker cannot be walked around (issue 15, item 7), on SQLite and
//! PostgreSQL. With every guarded action configured to need a second ops key: a
//! request only records a pending approval; the requester cannot approve it; a
//! second approval, a replay, an approval of a rejected or expired one and an
//! approval by a service or customer key run nothing; a new ops key works only
//! once approved; request, approval and the action itself are audited with their
//! outcomes.

mod common;

use api::approvals::Guarded;
use common::{Backend, TestApp};
use serde_json::{Value, json};

fn guarded_config() -> api::ApiConfig {
    api::ApiConfig {
        approvals_required: Guarded::ALL.into_iter().collect(),
        key_requests_per_s_max: 10_000,
        ..api::ApiConfig::default()
    }
}

async fn start(backend: Backend) -> Option<TestApp> {
    TestApp::start_with(backend, guarded_config()).await
}

async fn ops_key(app: &TestApp) -> String {
    api::auth::create_key(&app.api_db.store, api::Role::Ops, None, "test", 0)
        .await
        .unwrap()
        .key
}

async fn cohort(app: &TestApp) -> u64 {
    let (status, flags) = app.get(&app.ops, "/v1/providers/flags").await;
    assert_eq!(status, 200, "{flags}");
    flags["cohort_percent"].as_u64().unwrap()
}

/// How many times the routing table's cohort was set.
async fn cohort_changes(app: &TestApp) -> usize {
    let (_, flags) = app.get(&app.ops, "/v1/providers/flags").await;
    flags["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.to_string().contains("cohort"))
        .count()
}

/// Asks for the cohort at `percent` as `key`: a pending approval.
async fn request_cohort(app: &TestApp, key: &str, percent: u8) -> Value {
    let (status, approval) = app
        .post(key, "/v1/providers/cohort", json!({ "percent": percent }))
        .await;
    assert_eq!(status, 202, "{approval}");
    assert_eq!(approval["state"], "pending", "{approval}");
    assert_eq!(approval["action"], "providers_cohort");
    assert_eq!(approval["body"]["percent"], percent);
    approval
}

fn approve_path(approval: &Value) -> String {
    format!(
        "/v1/approvals/{}/approve",
        approval["approval_id"].as_str().unwrap()
    )
}

async fn a_guarded_action_runs_only_after_a_second_ops_key_approves(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    let approval = request_cohort(&app, &app.ops, 40).await;
    assert_eq!(cohort(&app).await, 0, "a request changed the cohort");
    let (status, pending) = app.get(&checker, "/v1/approvals?state=pending").await;
    assert_eq!(status, 200);
    assert_eq!(pending["items"].as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending["items"][0]["body_hash"], approval["body_hash"]);

    // The approver names the body it reviewed.
    let body = json!({ "body_hash": approval["body_hash"] });
    let (status, done) = app.post(&checker, &approve_path(&approval), body).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["outcome"]["ok"], true, "{done}");
    assert_eq!(done["outcome"]["result"]["cohort_percent"], 40);
    assert_eq!(cohort(&app).await, 40);

    // Audited: the request, the approval and the action, each with its outcome.
    let (_, audit) = app.get(&app.ops, "/v1/audit?limit=100").await;
    let rows = audit["items"].as_array().unwrap();
    let id = approval["approval_id"].as_str().unwrap();
    for action in ["approvals.request", "approvals.approve", "providers.cohort"] {
        let intents: Vec<&Value> = rows
            .iter()
            .filter(|r| r["action"] == action && r["details"]["outcome"].is_null())
            .collect();
        assert_eq!(intents.len(), 1, "{action}: {audit}");
        let intent_id = intents[0]["id"].as_i64().unwrap();
        assert!(
            rows.iter().any(|r| r["action"] == action
                && r["details"]["outcome"] == "ok"
                && r["details"]["of"] == intent_id),
            "{action} has no ok outcome: {audit}"
        );
    }
    let cohort_row = rows
        .iter()
        .find(|r| r["action"] == "providers.cohort" && r["details"]["outcome"].is_null())
        .unwrap();
    assert_eq!(cohort_row["details"]["approval_id"], id);
    assert_ne!(
        cohort_row["key_id"],
        rows.iter()
            .find(|r| r["action"] == "approvals.request")
            .unwrap()["key_id"]
    );
    assert!(
        api::db::verify_audit(&app.api_db.store)
            .await
            .unwrap()
            .is_ok()
    );
}
on_both!(
    sqlite_a_guarded_action_runs_only_after_a_second_ops_key_approves,
    postgres_a_guarded_action_runs_only_after_a_second_ops_key_approves,
    a_guarded_action_runs_only_after_a_second_ops_key_approves
);

async fn a_key_cannot_approve_its_own_request(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let approval = request_cohort(&app, &app.ops, 30).await;
    let (status, refused) = app
        .post(&app.ops, &approve_path(&approval), json!({}))
        .await;
    assert_eq!(
        (status, refused["details"]["reason"].as_str()),
        (403, Some("self_approval")),
        "{refused}"
    );
    assert_eq!(cohort(&app).await, 0);
    let path = format!(
        "/v1/approvals/{}",
        approval["approval_id"].as_str().unwrap()
    );
    assert_eq!(app.get(&app.ops, &path).await.1["state"], "pending");
    // The table refuses it too, whoever writes.
    let id = approval["approval_id"].as_str().unwrap();
    let requester = approval["requested_by"].as_str().unwrap();
    let moved = api::db::decide_approval(
        &app.api_db.store,
        id,
        api::db::ApprovalState::Approved,
        requester,
        None,
        0,
    )
    .await;
    assert!(!matches!(moved, Ok(true)), "the requester approved itself");
}
on_both!(
    sqlite_a_key_cannot_approve_its_own_request,
    postgres_a_key_cannot_approve_its_own_request,
    a_key_cannot_approve_its_own_request
);

async fn an_approval_runs_its_action_once_however_often_it_is_approved(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let (first, second) = (ops_key(&app).await, ops_key(&app).await);
    let approval = request_cohort(&app, &app.ops, 55).await;
    let path = approve_path(&approval);
    // Two checkers at once: one wins, the other is 409.
    let (a, b) = tokio::join!(
        app.post(&first, &path, json!({})),
        app.post(&second, &path, json!({}))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.1, b.1);
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(
        loser["details"]["reason"], "approval_not_pending",
        "{loser}"
    );
    // Again, later: still 409.
    let (status, again) = app.post(&first, &path, json!({})).await;
    assert_eq!(
        (status, again["details"]["reason"].as_str()),
        (409, Some("approval_not_pending"))
    );
    assert_eq!(cohort(&app).await, 55);
    assert_eq!(
        cohort_changes(&app).await,
        1,
        "the action ran more than once"
    );
}
on_both!(
    sqlite_an_approval_runs_its_action_once_however_often_it_is_approved,
    postgres_an_approval_runs_its_action_once_however_often_it_is_approved,
    an_approval_runs_its_action_once_however_often_it_is_approved
);

async fn a_replayed_approval_or_request_runs_nothing_again(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    let (status, approval, _) = app
        .post_idempotent(
            &app.ops,
            "/v1/providers/cohort",
            "ask-once",
            json!({ "percent": 20 }),
        )
        .await;
    assert_eq!(status, 202, "{approval}");
    // The request replayed: the same approval, not a second one.
    let (status, again, replayed) = app
        .post_idempotent(
            &app.ops,
            "/v1/providers/cohort",
            "ask-once",
            json!({ "percent": 20 }),
        )
        .await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again["approval_id"], approval["approval_id"]);
    let (_, all) = app.get(&app.ops, "/v1/approvals").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");

    let path = approve_path(&approval);
    let (status, done, _) = app
        .post_idempotent(&checker, &path, "approve-once", json!({}))
        .await;
    assert_eq!(
        (status, done["state"].as_str()),
        (200, Some("done")),
        "{done}"
    );
    let (status, replay, replayed) = app
        .post_idempotent(&checker, &path, "approve-once", json!({}))
        .await;
    assert_eq!((status, replayed), (200, true), "{replay}");
    assert_eq!(replay["approval_id"], approval["approval_id"]);
    assert_eq!(
        cohort_changes(&app).await,
        1,
        "a replay ran the action again"
    );
}
on_both!(
    sqlite_a_replayed_approval_or_request_runs_nothing_again,
    postgres_a_replayed_approval_or_request_runs_nothing_again,
    a_replayed_approval_or_request_runs_nothing_again
);

async fn a_rejected_or_expired_approval_is_never_approved(backend: Backend) {
    let config = api::ApiConfig {
        approval_ttl_ms: 400,
        ..guarded_config()
    };
    let Some(app) = TestApp::start_with(backend, config).await else {
        return;
    };
    let (checker, third) = (ops_key(&app).await, ops_key(&app).await);
    let rejected = request_cohort(&app, &app.ops, 70).await;
    let reject = format!(
        "/v1/approvals/{}/reject",
        rejected["approval_id"].as_str().unwrap()
    );
    let (status, refused) = app.post(&checker, &reject, json!({ "reason": "" })).await;
    assert_eq!(
        (status, refused["details"]["reason"].as_str()),
        (400, Some("reason_invalid"))
    );
    let (status, body) = app
        .post(&checker, &reject, json!({ "reason": "not this quarter" }))
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("rejected")),
        "{body}"
    );
    let (status, refused) = app.post(&third, &approve_path(&rejected), json!({})).await;
    assert_eq!(
        (status, refused["details"]["reason"].as_str()),
        (409, Some("approval_not_pending")),
        "{refused}"
    );

    let expired = request_cohort(&app, &app.ops, 80).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let path = format!("/v1/approvals/{}", expired["approval_id"].as_str().unwrap());
    assert_eq!(app.get(&checker, &path).await.1["expired"], true);
    let (status, refused) = app.post(&checker, &approve_path(&expired), json!({})).await;
    assert_eq!(
        (status, refused["details"]["reason"].as_str()),
        (409, Some("approval_expired")),
        "{refused}"
    );
    assert_eq!(cohort(&app).await, 0);
    assert_eq!(cohort_changes(&app).await, 0);
}
on_both!(
    sqlite_a_rejected_or_expired_approval_is_never_approved,
    postgres_a_rejected_or_expired_approval_is_never_approved,
    a_rejected_or_expired_approval_is_never_approved
);

async fn only_a_live_ops_key_approves_what_it_reviewed(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    let customer = app
        .customer_key("0190a000-0000-7000-8000-00000000c0de")
        .await;
    let approval = request_cohort(&app, &app.ops, 10).await;
    let path = approve_path(&approval);
    for key in [&app.service, &customer] {
        let (status, refused) = app.post(key, &path, json!({})).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (403, Some("forbidden")),
            "{refused}"
        );
    }
    let other_hash = "0".repeat(64);
    let (status, refused) = app
        .post(&checker, &path, json!({ "body_hash": other_hash }))
        .await;
    assert_eq!(
        (status, refused["details"]["reason"].as_str()),
        (409, Some("approval_changed"))
    );
    let (status, refused) = app
        .post(&checker, &path, json!({ "body_hash": "x", "extra": 1 }))
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("invalid_json"))
    );
    // A request whose requester was revoked meanwhile is not approvable.
    let (_, me) = app.get(&app.ops, "/v1/me").await;
    let requester = me["key_id"].as_str().unwrap();
    let (status, _) = app
        .post(&checker, &format!("/v1/keys/{requester}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, refused) = app.post(&checker, &path, json!({})).await;
    assert_eq!(
        (status, refused["details"]["reason"].as_str()),
        (409, Some("requester_revoked")),
        "{refused}"
    );
    let (_, flags) = app.get(&checker, "/v1/providers/flags").await;
    assert_eq!(flags["cohort_percent"], 0);
}
on_both!(
    sqlite_only_a_live_ops_key_approves_what_it_reviewed,
    postgres_only_a_live_ops_key_approves_what_it_reviewed,
    only_a_live_ops_key_approves_what_it_reviewed
);

async fn a_new_ops_key_works_only_once_a_second_ops_key_approves(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    let response = app
        .http
        .post(app.url("/v1/keys"))
        .bearer_auth(&app.ops)
        .json(&json!({ "role": "ops" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let (status, created) = common::read(response).await;
    assert_eq!(status, 202, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let approval = created["approval"].clone();
    assert_eq!(approval["action"], "ops_key_create");
    assert_eq!(
        app.get(&key, "/v1/me").await.0,
        401,
        "an unapproved ops key works"
    );
    // Nor may the new key approve itself into life.
    let (status, _) = app.post(&key, &approve_path(&approval), json!({})).await;
    assert_eq!(status, 401);
    let (status, done) = app
        .post(&checker, &approve_path(&approval), json!({}))
        .await;
    assert_eq!(
        (status, done["state"].as_str()),
        (200, Some("done")),
        "{done}"
    );
    let (status, me) = app.get(&key, "/v1/me").await;
    assert_eq!((status, me["role"].as_str()), (200, Some("ops")), "{me}");

    // A rejected ops key never works.
    let (status, created) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "ops" }))
        .await;
    assert_eq!(status, 202, "{created}");
    let rejected = created["key"].as_str().unwrap().to_owned();
    let reject = format!(
        "/v1/approvals/{}/reject",
        created["approval"]["approval_id"].as_str().unwrap()
    );
    let (status, _) = app.post(&checker, &reject, json!({ "reason": "no" })).await;
    assert_eq!(status, 200);
    assert_eq!(app.get(&rejected, "/v1/me").await.0, 401);
    // Other roles are not guarded.
    let (status, _) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
        .await;
    assert_eq!(status, 201);
}
on_both!(
    sqlite_a_new_ops_key_works_only_once_a_second_ops_key_approves,
    postgres_a_new_ops_key_works_only_once_a_second_ops_key_approves,
    a_new_ops_key_works_only_once_a_second_ops_key_approves
);

async fn an_approved_action_that_fails_records_its_failure(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    let approval = request_cohort(&app, &app.ops, 90).await;
    // The routing table's database goes away between request and approval.
    app.payroll_db.store.close().await;
    let (status, failed) = app
        .post(&checker, &approve_path(&approval), json!({}))
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["outcome"]["ok"], false);
    assert_eq!(failed["outcome"]["code"], "unavailable");
    let (status, again) = app
        .post(&checker, &approve_path(&approval), json!({}))
        .await;
    assert_eq!(
        (status, again["details"]["reason"].as_str()),
        (409, Some("approval_not_pending"))
    );
}
on_both!(
    sqlite_an_approved_action_that_fails_records_its_failure,
    postgres_an_approved_action_that_fails_records_its_failure,
    an_approved_action_that_fails_records_its_failure
);

async fn a_fee_withdraw_waits_for_approval_and_other_modules_do_not(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    // Record is not guarded: it runs at once.
    let (status, run) = app
        .post(&app.ops, "/v1/fees/days/2026-11-20/record", json!({}))
        .await;
    assert_eq!(
        (status, run["module"].as_str()),
        (200, Some("record")),
        "{run}"
    );
    let (status, approval) = app
        .post(&app.ops, "/v1/fees/days/2026-11-20/withdraw", json!({}))
        .await;
    assert_eq!(status, 202, "{approval}");
    assert_eq!(approval["action"], "fees_withdraw");
    assert_eq!(approval["target"], "2026-11-20");
    let withdraw_rows = |audit: &Value| {
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "fees.withdraw" && r["details"]["outcome"].is_null())
            .count()
    };
    let (_, audit) = app.get(&app.ops, "/v1/audit?limit=100").await;
    assert_eq!(
        withdraw_rows(&audit),
        0,
        "withdraw ran before approval: {audit}"
    );
    let (status, done) = app
        .post(&checker, &approve_path(&approval), json!({}))
        .await;
    assert_eq!(
        (status, done["state"].as_str()),
        (200, Some("done")),
        "{done}"
    );
    assert_eq!(done["outcome"]["result"]["module"], "withdraw", "{done}");
    assert_eq!(done["outcome"]["result"]["trigger"], "operator", "{done}");
    let (_, audit) = app.get(&app.ops, "/v1/audit?limit=100").await;
    assert_eq!(withdraw_rows(&audit), 1, "{audit}");
}
on_both!(
    sqlite_a_fee_withdraw_waits_for_approval_and_other_modules_do_not,
    postgres_a_fee_withdraw_waits_for_approval_and_other_modules_do_not,
    a_fee_withdraw_waits_for_approval_and_other_modules_do_not
);

/// The document says which routes may answer 202 with a pending approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_names_every_guarded_route_and_its_202() {
    let Some(app) = start(Backend::Sqlite).await else {
        return;
    };
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    let doc: Value = response.json().await.unwrap();
    let guarded: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, op)| op["responses"].get("202").is_some())
                .map(|(method, op)| {
                    let schema =
                        op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                    (format!("{method} {path}"), schema)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let approval = "#/components/schemas/Approval".to_owned();
    let wanted = vec![
        ("post /v1/accounts/{id}/owner".to_owned(), approval.clone()),
        (
            "post /v1/fees/days/{day}/{module}".to_owned(),
            approval.clone(),
        ),
        (
            "post /v1/keys".to_owned(),
            "#/components/schemas/CreatedKey".to_owned(),
        ),
        (
            "post /v1/payroll/deposits/{id}/retry".to_owned(),
            approval.clone(),
        ),
        (
            "post /v1/payroll/deposits/{id}/rollback".to_owned(),
            approval.clone(),
        ),
        ("post /v1/providers/cohort".to_owned(), approval.clone()),
        (
            "post /v1/providers/overrides/{user_id}".to_owned(),
            approval,
        ),
    ];
    let mut got = guarded;
    got.sort();
    assert_eq!(got, wanted);
}

async fn an_owner_change_waits_for_approval_and_never_hands_over_twice(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let checker = ops_key(&app).await;
    let (alice, bob, carol) = (
        "0190a000-0000-7000-8000-00000000a11c",
        "0190a000-0000-7000-8000-0000000000b0",
        "0190a000-0000-7000-8000-0000000000c0",
    );
    let account = common::id();
    app.open_funded(alice, &account, 10_000).await;
    let path = format!("/v1/accounts/{account}/owner");
    let mut asked = Vec::new();
    for to in [bob, carol] {
        let (status, approval) = app
            .post(
                &app.ops,
                &path,
                json!({ "customer_id": to, "reason": "merged profiles" }),
            )
            .await;
        assert_eq!(status, 202, "{approval}");
        assert_eq!(approval["body"]["from"], alice);
        asked.push(approval);
    }
    let (_, view) = app.get(&app.ops, &format!("/v1/accounts/{account}")).await;
    assert_eq!(
        view["customer_id"], alice,
        "a request handed the account over"
    );
    let (status, done) = app
        .post(&checker, &approve_path(&asked[0]), json!({}))
        .await;
    assert_eq!(
        (status, done["state"].as_str()),
        (200, Some("done")),
        "{done}"
    );
    assert_eq!(done["outcome"]["result"]["customer_id"], bob);
    // The second was asked for while Alice held it: it is refused, not applied.
    let (status, failed) = app
        .post(&checker, &approve_path(&asked[1]), json!({}))
        .await;
    assert_eq!(
        (status, failed["state"].as_str()),
        (200, Some("failed")),
        "{failed}"
    );
    assert_eq!(failed["outcome"]["reason"], "owner_changed_meanwhile");
    let (_, view) = app.get(&app.ops, &format!("/v1/accounts/{account}")).await;
    assert_eq!(view["customer_id"], bob);
}
on_both!(
    sqlite_an_owner_change_waits_for_approval_and_never_hands_over_twice,
    postgres_an_owner_change_waits_for_approval_and_never_hands_over_twice,
    an_owner_change_waits_for_approval_and_never_hands_over_twice
);
