//! The audit log cannot be edited quietly and says how each action ended (issue
//! 15, item 8), on SQLite and PostgreSQL: rows are hash-chained, and
//! `verify_audit` (behind `settle audit verify` and `GET /v1/audit/verify`) names
//! the first row that was edited or whose predecessor was deleted — even by
//! someone who disabled the append-only triggers. Every action writes a row
//! before it runs and one after with its outcome: `ok`, `failed` with the error's
//! code, or `aborted` when the request was dropped half way.

mod common;

use common::{Backend, TestApp};
use serde_json::json;

/// Runs `sql` on the api's tables with the append-only triggers out of the way.
async fn tamper(store: &store::Store, sql: &str) {
    match store {
        store::Store::Sqlite(pool) => {
            sqlx::query("DROP TRIGGER IF EXISTS api_audit_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DROP TRIGGER IF EXISTS api_audit_no_delete")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        store::Store::Postgres(pool) => {
            sqlx::query("ALTER TABLE api_audit DISABLE TRIGGER USER")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    }
}

/// Four ops actions, so eight audit rows (intent and outcome each); returns
/// their ids in order.
async fn four_rows(app: &TestApp) -> Vec<i64> {
    for _ in 0..4 {
        let (status, body) = app
            .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, audit) = app.get(&app.ops, "/v1/audit").await;
    let items = audit["items"].as_array().unwrap();
    for (intent, outcome) in items
        .iter()
        .rev()
        .step_by(2)
        .zip(items.iter().rev().skip(1).step_by(2))
    {
        assert_eq!(intent["action"], "keys.create", "{audit}");
        assert_eq!(outcome["action"], "keys.create", "{audit}");
        assert_eq!(outcome["details"]["outcome"], "ok", "{audit}");
        assert_eq!(outcome["details"]["of"], intent["id"], "{audit}");
    }
    let mut ids: Vec<i64> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 8, "{audit}");
    ids
}

async fn an_edited_audit_row_is_found(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let ids = four_rows(&app).await;
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Ok(8)
    );
    let (status, verdict) = app.get(&app.ops, "/v1/audit/verify").await;
    assert_eq!(status, 200);
    assert_eq!(
        (verdict["intact"].as_bool(), verdict["rows"].as_i64()),
        (Some(true), Some(8))
    );
    tamper(
        &app.api_db.store,
        &format!(
            "UPDATE api_audit SET key_id = 'key_someone_else' WHERE id = {}",
            ids[1]
        ),
    )
    .await;
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Err(api::db::AuditBreak {
            id: ids[1],
            why: "row_changed"
        })
    );
    let (status, verdict) = app.get(&app.ops, "/v1/audit/verify").await;
    assert_eq!(status, 200);
    assert_eq!(verdict["intact"], false, "{verdict}");
    assert_eq!(verdict["broken"]["id"], ids[1]);
    assert_eq!(verdict["broken"]["why"], "row_changed");
}
on_both!(
    sqlite_an_edited_audit_row_is_found,
    postgres_an_edited_audit_row_is_found,
    an_edited_audit_row_is_found
);

async fn a_deleted_audit_row_is_found(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let ids = four_rows(&app).await;
    tamper(
        &app.api_db.store,
        &format!("DELETE FROM api_audit WHERE id = {}", ids[2]),
    )
    .await;
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Err(api::db::AuditBreak {
            id: ids[3],
            why: "link_broken"
        })
    );
    // Deleting the first rows is found too: the chain starts from nothing.
    tamper(
        &app.api_db.store,
        &format!("DELETE FROM api_audit WHERE id = {}", ids[0]),
    )
    .await;
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Err(api::db::AuditBreak {
            id: ids[1],
            why: "link_broken"
        })
    );
}
on_both!(
    sqlite_a_deleted_audit_row_is_found,
    postgres_a_deleted_audit_row_is_found,
    a_deleted_audit_row_is_found
);

async fn an_action_that_fails_writes_an_outcome_row_saying_so(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    // The routing table's database goes away: setting the cohort fails inside.
    app.payroll_db.store.close().await;
    let (status, body) = app
        .post(&app.ops, "/v1/providers/cohort", json!({ "percent": 35 }))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let (_, audit) = app.get(&app.ops, "/v1/audit").await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    let (outcome, intent) = (&items[0], &items[1]);
    assert_eq!(intent["action"], "providers.cohort");
    assert_eq!(intent["details"]["percent"], 35);
    assert_eq!(outcome["action"], "providers.cohort");
    assert_eq!(outcome["target"], "cohort");
    assert_eq!(outcome["details"]["outcome"], "failed", "{audit}");
    assert_eq!(outcome["details"]["code"], "unavailable");
    assert_eq!(outcome["details"]["of"], intent["id"]);
    assert!(outcome["id"].as_i64() > intent["id"].as_i64());
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Ok(2)
    );
}
on_both!(
    sqlite_an_action_that_fails_writes_an_outcome_row_saying_so,
    postgres_an_action_that_fails_writes_an_outcome_row_saying_so,
    an_action_that_fails_writes_an_outcome_row_saying_so
);

async fn an_action_cut_short_writes_an_aborted_row(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let caller = api::auth::Caller {
        key_id: "key_cut_short".into(),
        role: api::Role::Ops,
        customer_id: None,
        house_accounts: false,
    };
    // An action that never ends, dropped as the server's request timeout drops it.
    let never = std::future::pending::<Result<(), api::ApiError>>();
    let run = app
        .state
        .audited(&caller, "test.hang", "nowhere", json!({}), never);
    let cut = tokio::time::timeout(std::time::Duration::from_millis(100), run).await;
    assert!(cut.is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, audit) = app.get(&app.ops, "/v1/audit").await;
        let items = audit["items"].as_array().unwrap();
        if items.len() == 2 {
            assert_eq!(items[1]["action"], "test.hang");
            assert_eq!(items[0]["action"], "test.hang");
            assert_eq!(items[0]["details"]["outcome"], "aborted", "{audit}");
            assert_eq!(items[0]["details"]["of"], items[1]["id"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no aborted row: {audit}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Ok(2)
    );
}
on_both!(
    sqlite_an_action_cut_short_writes_an_aborted_row,
    postgres_an_action_cut_short_writes_an_aborted_row,
    an_action_cut_short_writes_an_aborted_row
);
