//! Importing loans and accruals on SQLite and PostgreSQL: a dry run writes
//! nothing, a good file is applied, the same file again changes nothing, a file
//! with bad lines names each one (line, field, code) and writes nothing, and a
//! fee day then settles on the imported data end to end.

mod common;

use common::{Options, System, system};
use fees::accrual::{Accrual, Loan};
use fees::import::AccrualLine;
use fees::workload::{Workload, provision_bank};
use fees::{FeeKind, Outcome, Trigger, accounts};
use money::Krw;
use money::import::{ImportReport, Record};
use store::testing::TestDb;

/// Records from rows of (field, value), numbered from line 2 as in a CSV file.
fn records(rows: &[&[(&str, &str)]]) -> Vec<Record> {
    rows.iter()
        .zip(2u64..)
        .map(|(fields, line)| Record {
            line,
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        })
        .collect()
}

fn loan(
    id: &'static str,
    account: &'static str,
    holder: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("loan_id", id),
        ("bank_account", account),
        ("holder_name", holder),
    ]
}

fn accrual(
    loan_id: &'static str,
    day: &'static str,
    kind: &'static str,
    amount: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("loan_id", loan_id),
        ("day", day),
        ("kind", kind),
        ("amount_krw", amount),
    ]
}

fn errors(report: &ImportReport) -> Vec<(u64, &str, &str)> {
    report
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.code))
        .collect()
}

const DAY: &str = common::DAY;

fn good_loans() -> Vec<Record> {
    let rows = [
        loan("1", "5000000000001", "김민지"),
        loan("2", "5000000000002", "이서준"),
    ];
    records(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

fn good_accruals() -> Vec<Record> {
    let rows = [
        accrual("1", DAY, "tax", "120000"),
        accrual("1", DAY, "platform_fee", "30000"),
        accrual("2", DAY, "tax", "250000"),
    ];
    records(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

fn quiet(_done: u64) {}

async fn import_good_files(s: &System) {
    let importer = s.fees.importer();
    let dry = importer.loans(&good_loans(), true, &quiet).await.unwrap();
    assert_eq!(
        (dry.to_apply, dry.applied, dry.batches_committed),
        (2, 0, 0)
    );
    let loans = importer.loans(&good_loans(), false, &quiet).await.unwrap();
    assert!(loans.is_clean(), "{loans:?}");
    assert_eq!(
        (loans.lines_read, loans.applied, loans.unchanged),
        (2, 2, 0)
    );
    let accruals = importer
        .accruals(&good_accruals(), false, &quiet)
        .await
        .unwrap();
    assert!(accruals.is_clean(), "{accruals:?}");
    assert_eq!(
        (
            accruals.applied,
            accruals.unchanged,
            accruals.batches_committed
        ),
        (3, 0, 1)
    );
    // The same files again: nothing changes.
    let loans = importer.loans(&good_loans(), false, &quiet).await.unwrap();
    assert_eq!(
        (loans.applied, loans.unchanged, loans.error_lines),
        (0, 2, 0)
    );
    let accruals = importer
        .accruals(&good_accruals(), false, &quiet)
        .await
        .unwrap();
    assert_eq!(
        (accruals.applied, accruals.unchanged, accruals.error_lines),
        (0, 3, 0)
    );
}

async fn bad_files_name_every_line_and_write_nothing(s: &System) {
    let importer = s.fees.importer();
    let rows = [
        accrual("2", DAY, "platform_fee", "10000"),
        accrual("9", DAY, "tax", "100"),
        accrual("1", DAY, "tax", "99"),
        accrual("1", DAY, "vat", "100"),
        vec![
            ("loan_id", "2"),
            ("day", DAY),
            ("kind", "upfront_fee"),
            ("amount_krw", "5"),
            ("memo", "x"),
        ],
        accrual("2", DAY, "platform_fee", "20000"),
        accrual("2", "2026-02-30", "tax", "-1"),
    ];
    let report = importer
        .accruals(
            &records(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            false,
            &quiet,
        )
        .await
        .unwrap();
    assert_eq!(
        errors(&report),
        vec![
            (3, "loan_id", "unknown_loan"),
            (4, "amount_krw", "exists_with_different_fields"),
            (5, "kind", "invalid_kind"),
            (6, "memo", "unknown_field"),
            (7, "", "duplicate_key"),
            (8, "day", "invalid_day"),
            (8, "amount_krw", "invalid_amount"),
        ]
    );
    assert_eq!(
        (report.applied, report.error_lines, report.batches_committed),
        (0, 6, 0)
    );
    // Line 2 was good, and still nothing was written.
    let line_two = records(&[&accrual("2", DAY, "platform_fee", "10000")]);
    let dry = importer.accruals(&line_two, true, &quiet).await.unwrap();
    assert_eq!(dry.to_apply, 1, "{dry:?}");
    let rows = [
        loan("3", "5000000000003", "박하은"),
        loan("1", "5000000000001", "최지우"),
    ];
    let report = importer
        .loans(
            &records(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            false,
            &quiet,
        )
        .await
        .unwrap();
    assert_eq!(
        errors(&report),
        vec![(3, "holder_name", "exists_with_different_fields")]
    );
    let dry = importer
        .loans(&records(&[&rows[0]]), true, &quiet)
        .await
        .unwrap();
    assert_eq!(dry.to_apply, 1, "loan 3 was not written");
}

/// What the imported files say, as a workload to fund the loans' bank accounts.
fn imported_workload(s: &System) -> Workload {
    let loans = [
        (1, "5000000000001", "김민지"),
        (2, "5000000000002", "이서준"),
    ];
    let lines = [
        (1, FeeKind::Tax, 120_000),
        (1, FeeKind::PlatformFee, 30_000),
        (2, FeeKind::Tax, 250_000),
    ];
    Workload {
        day: s.day,
        loans: loans
            .iter()
            .map(|(id, account, holder)| Loan {
                loan_id: *id,
                bank_account: bank::AccountNumber::new(account).unwrap(),
                holder_name: bank::HolderName::new(holder).unwrap(),
            })
            .collect(),
        accruals: lines
            .iter()
            .map(|(loan_id, kind, amount)| {
                let line = AccrualLine {
                    loan_id: *loan_id,
                    day: s.day,
                    kind: *kind,
                    amount: Krw::new(*amount),
                };
                Accrual {
                    id: accounts::imported_accrual(
                        &s.config().ids,
                        line.day,
                        line.loan_id,
                        line.kind,
                    )
                    .unwrap(),
                    day: line.day,
                    loan_id: line.loan_id,
                    kind: line.kind,
                    amount: line.amount,
                }
            })
            .collect(),
    }
}

async fn imported_loans_and_accruals_settle_a_fee_day(db: TestDb) {
    let s = system(db, Options::default()).await;
    import_good_files(&s).await;
    bad_files_name_every_line_and_write_nothing(&s).await;
    provision_bank(&s.sim, s.config(), &imported_workload(&s))
        .await
        .unwrap();
    let op = Trigger::Operator;
    assert_eq!(
        s.fees.record(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    assert_eq!(s.fees.pay(s.day, op).await.unwrap().outcome, Outcome::Done);
    assert_eq!(
        s.fees.verify(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    assert_eq!(
        s.fees.withdraw(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    let report = s
        .fees
        .report(s.day, &s.sim as &dyn fees::report::Statement)
        .await
        .unwrap();
    assert!(report.agrees, "{report:?}");
    assert_eq!(report.bank_withdrawn_krw, Krw::new(400_000));
    // The day is recorded: a new accrual for it is refused, an old one unchanged.
    let late = records(&[
        &accrual("2", DAY, "deferred_fee", "1000"),
        &accrual("2", DAY, "tax", "250000"),
    ]);
    let report = s
        .fees
        .importer()
        .accruals(&late, false, &quiet)
        .await
        .unwrap();
    assert_eq!(errors(&report), vec![(2, "day", "day_already_recorded")]);
    assert_eq!(report.unchanged, 1);
    s.assert_ledger_balances().await;
}

on_both_backends!(imported_loans_and_accruals_settle_a_fee_day);
