//! Attacks on the ids the system derives for itself (issue 15, item 1), over real
//! HTTP on SQLite and PostgreSQL: a customer who computes the ids fee settlement
//! and payroll would use (from public names: institution code, day, sequence,
//! deposit id) and claims them first with one-won transfers blocks nothing, because
//! the real ids are keyed by the installation's secret; and if an id is taken
//! anyway (a leaked secret), fee settlement stops loudly instead of blocking items.

mod common;

use common::{Backend, TestApp, id, installation_ids};
use fees::chunking::{Purpose, bank_tran_id};
use fees::{BusinessDay, FeesError, Trigger};
use money::{DerivedIds, TransferId};
use serde_json::json;
use uuid::Uuid;

const MALLORY: &str = "0190a000-0000-7000-8000-0000000ba11e";
/// A closed business day (the tests run on the system clock, later than this).
const DAY: &str = "2026-11-23";
/// Chunks of the day an attacker claims ahead (more than the day will have).
const CLAIMED_CHUNKS: i64 = 60;

/// What fee settlement derived before the fix: UUID v5 of public text.
fn public_v5_hold(bank_tran_id: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5e77_1e00_fee5_4000_8000_0000_0000_0001);
    Uuid::new_v5(&NAMESPACE, format!("hold/{bank_tran_id}").as_bytes())
}

/// Every hold id of the day's first chunks an attacker can compute: the old public
/// scheme, and the keyed scheme under the published test secret.
fn computable_hold_ids(day: BusinessDay) -> Vec<Uuid> {
    let published = DerivedIds::for_tests();
    let mut ids = Vec::new();
    for sequence in 0..CLAIMED_CHUNKS {
        let chunk = bank_tran_id("F202600001", Purpose::Payout, day, sequence).unwrap();
        ids.push(public_v5_hold(chunk.as_str()));
        ids.push(published.uuid("fees", &format!("hold/{chunk}")));
    }
    ids
}

/// Mallory's two accounts: one funded, one to receive her one-won claims.
async fn mallory(app: &TestApp) -> (String, String, String) {
    let (from, to) = (id(), id());
    app.open_funded(MALLORY, &from, 1_000_000).await;
    app.open_funded(MALLORY, &to, 0).await;
    (app.customer_key(MALLORY).await, from, to)
}

/// Claims `id` with a one-won channel transfer; answers whether the ledger took it.
async fn claim(app: &TestApp, key: &str, from: &str, to: &str, id: Uuid) -> bool {
    let (status, body) = app
        .post(
            key,
            "/v1/channel/transfers",
            json!({ "id": id.to_string(), "from_account_id": from, "to_account_id": to, "amount_krw": 1 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["state"] == "succeeded"
}

/// Registers, accrues and funds a small fee day (a few dozen chunks).
async fn fee_day(app: &TestApp, day: BusinessDay) -> fees::workload::Workload {
    let workload = fees::workload::generate(day, 12, 5).unwrap();
    app.fees.register_loans(&workload.loans).await.unwrap();
    let summary = app.fees.accrue(&workload.accruals).await.unwrap();
    assert_eq!(summary.refused, 0);
    fees::workload::provision_bank(&app.sim, app.fees.config(), &workload)
        .await
        .unwrap();
    workload
}

async fn a_customer_who_claims_the_fee_days_computable_ids_blocks_nothing(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let day = BusinessDay::parse(DAY).unwrap();
    let (key, from, to) = mallory(&app).await;
    let claims = computable_hold_ids(day);
    for hold in &claims {
        assert!(claim(&app, &key, &from, &to, *hold).await, "claim {hold}");
    }

    let workload = fee_day(&app, day).await;
    app.fees.record(day, Trigger::Operator).await.unwrap();
    app.fees.pay(day, Trigger::Operator).await.unwrap();
    app.fees.verify(day, Trigger::Operator).await.unwrap();
    app.fees.withdraw(day, Trigger::Operator).await.unwrap();

    let status = app.fees.status(day).await.unwrap().unwrap();
    assert_eq!(status.items_blocked, 0, "{status:?}");
    assert!(status.blocked.is_empty(), "{status:?}");
    assert_eq!(status.items_paid, status.items, "{status:?}");
    assert_eq!(status.paid_krw, workload.total().unwrap(), "{status:?}");
    assert_eq!(
        status.withdrawn_krw,
        workload.total().unwrap(),
        "{status:?}"
    );
    let report = app.fees.report(day, &app.sim).await.unwrap();
    assert!(report.agrees, "{report:?}");
    assert_eq!(report.ledger_paid_krw, workload.total().unwrap());
    // None of the real holds is one of Mallory's transfers.
    let ids = installation_ids();
    for sequence in 0..CLAIMED_CHUNKS {
        let chunk = bank_tran_id("F202600001", Purpose::Payout, day, sequence).unwrap();
        let real = fees::accounts::hold(&ids, &chunk).unwrap();
        assert!(!claims.contains(&real.as_uuid()));
    }
}
on_both!(
    sqlite_a_customer_who_claims_the_fee_days_computable_ids_blocks_nothing,
    postgres_a_customer_who_claims_the_fee_days_computable_ids_blocks_nothing,
    a_customer_who_claims_the_fee_days_computable_ids_blocks_nothing
);

async fn a_taken_derived_id_stops_fee_settlement_loudly_and_blocks_no_item(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let day = BusinessDay::parse(DAY).unwrap();
    // The secret leaked: Mallory takes the real hold id of the day's first chunk.
    let (key, from, to) = mallory(&app).await;
    let first = bank_tran_id("F202600001", Purpose::Payout, day, 0).unwrap();
    let real = fees::accounts::hold(&installation_ids(), &first).unwrap();
    assert!(claim(&app, &key, &from, &to, real.as_uuid()).await);

    fee_day(&app, day).await;
    app.fees.record(day, Trigger::Operator).await.unwrap();
    let error = app.fees.pay(day, Trigger::Operator).await.unwrap_err();
    assert!(
        matches!(error, FeesError::DerivedIdTaken { ref bank_tran_id, .. } if *bank_tran_id == first.to_string()),
        "{error:?}"
    );
    assert_eq!(error.code(), "derived_id_taken");
    // Nothing was blocked, and the day can be neither verified nor withdrawn.
    for _ in 0..2 {
        let _ = app.fees.verify(day, Trigger::Operator).await;
        let _ = app.fees.withdraw(day, Trigger::Operator).await;
    }
    let status = app.fees.status(day).await.unwrap().unwrap();
    assert_eq!(status.items_blocked, 0, "{status:?}");
    assert_eq!(status.withdrawn_krw.get(), 0, "{status:?}");
    assert_eq!(status.state, fees::DayState::Recorded, "{status:?}");
    // Pay keeps refusing while the id is taken; it never marks the chunk failed.
    let again = app.fees.pay(day, Trigger::Operator).await.unwrap_err();
    assert_eq!(again.code(), "derived_id_taken");
}
on_both!(
    sqlite_a_taken_derived_id_stops_fee_settlement_loudly_and_blocks_no_item,
    postgres_a_taken_derived_id_stops_fee_settlement_loudly_and_blocks_no_item,
    a_taken_derived_id_stops_fee_settlement_loudly_and_blocks_no_item
);

#[test]
fn payrolls_derived_ids_cannot_be_computed_from_public_names() {
    const OLD_NAMESPACE: Uuid = Uuid::from_u128(0x0a71_0011_5e77_4e00_9a1c_0000_0000_0001);
    let ids = installation_ids();
    let published = DerivedIds::for_tests();
    for purpose in ["deposit", "repay", "suspend", "payout"] {
        let deposit = "D000000000001";
        let real = payroll::books::transfer_id(&ids, deposit, purpose).unwrap();
        let old = Uuid::new_v5(
            &OLD_NAMESPACE,
            format!("payroll:{deposit}:{purpose}").as_bytes(),
        );
        assert_ne!(real.as_uuid(), old, "{purpose}");
        assert_ne!(
            real,
            payroll::books::transfer_id(&published, deposit, purpose).unwrap()
        );
    }
    let wallet = payroll::books::wallet(&ids, MALLORY).unwrap();
    let old_wallet = Uuid::new_v5(
        &OLD_NAMESPACE,
        format!("payroll:wallet:{MALLORY}").as_bytes(),
    );
    assert_ne!(wallet.as_uuid(), old_wallet);
    let _: TransferId = payroll::books::transfer_id(&ids, "D1", "payout").unwrap();
}
