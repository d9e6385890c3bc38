//! The audit log cannot be edited quietly (issue 15, item 8), on SQLite and
//! PostgreSQL: rows are hash-chained, and `verify_audit` (behind `settle audit
//! verify`) names the first row that was edited or whose predecessor was deleted —
//! even by someone who disabled the append-only triggers.

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

/// Four ops actions, so four audit rows; returns their ids in order.
async fn four_rows(app: &TestApp) -> Vec<i64> {
    for _ in 0..4 {
        let (status, body) = app
            .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, audit) = app.get(&app.ops, "/v1/audit").await;
    let mut ids: Vec<i64> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 4, "{audit}");
    ids
}

async fn an_edited_audit_row_is_found(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let ids = four_rows(&app).await;
    assert_eq!(
        api::db::verify_audit(&app.api_db.store).await.unwrap(),
        Ok(4)
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
