//! Importing payroll users on SQLite and PostgreSQL: a good file is applied, the
//! same file again changes nothing, a file with bad lines names each one and
//! writes nothing, and a salary month then settles for the imported users end to
//! end (poller, stages, books to the won).

mod common;

use bank::providers::ProviderName;
use bank::sim::OpenAccount;
use bank::{AccountNumber, HolderName};
use common::*;
use money::Krw;
use money::import::{ImportReport, Record};
use payroll::DepositState;

const USERS: usize = 4;

fn record(line: u64, fields: Vec<(&str, String)>) -> Record {
    Record {
        line,
        fields: fields.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
    }
}

fn errors(report: &ImportReport) -> Vec<(u64, &str, &str)> {
    report
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.code))
        .collect()
}

/// The lender's side: each user's payout account opened and their virtual
/// account issued at the bank before the import, as a lender moving to settle has.
async fn lender_users(
    system: &System,
) -> Vec<(bank::UserId, AccountNumber, AccountNumber, String)> {
    let legacy = system.payroll.facade().provider(ProviderName::Legacy);
    let mut users = Vec::new();
    for n in 0..USERS {
        let user_id = user(1_000 + n as u128);
        let holder = format!("직원{n}");
        let payout = AccountNumber::new(&format!("4444{n:010}")).unwrap();
        system
            .sim
            .open_account(&OpenAccount {
                account_number: payout.clone(),
                holder_name: HolderName::new(&holder).unwrap(),
                balance_krw: Krw::ZERO,
            })
            .await
            .unwrap();
        let virtual_account = legacy
            .account_number(user_id, &HolderName::new(&holder).unwrap())
            .await
            .unwrap();
        users.push((user_id, virtual_account, payout, holder));
    }
    users
}

fn user_line(
    line: u64,
    (user_id, virtual_account, payout, holder): &(
        bank::UserId,
        AccountNumber,
        AccountNumber,
        String,
    ),
    suspend_percent: &str,
) -> Record {
    record(
        line,
        vec![
            ("user_id", user_id.to_string()),
            ("holder_name", holder.clone()),
            ("payout_account", payout.to_string()),
            ("advance_krw", "150000".into()),
            ("suspend_percent", suspend_percent.into()),
            ("virtual_account_legacy", virtual_account.to_string()),
            ("virtual_account_next", String::new()),
        ],
    )
}

fn quiet(_done: u64) {}

async fn imported_users_settle_a_salary_month(backend: Backend) {
    let Some(mut system) = System::start(Options::new(backend)).await else {
        return;
    };
    let users = lender_users(&system).await;
    let importer = system.payroll.importer();
    let file: Vec<Record> = users
        .iter()
        .zip(2u64..)
        .map(|(u, line)| user_line(line, u, "10"))
        .collect();
    let report = importer.users(&file, false, &quiet).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (report.applied, report.unchanged, report.batches_committed),
        (4, 0, 1)
    );
    let again = importer.users(&file, false, &quiet).await.unwrap();
    assert_eq!(
        (again.applied, again.unchanged, again.error_lines),
        (0, 4, 0)
    );

    // Bad lines: a changed rule, a virtual account held by another user, a missing
    // field, a misspelt column — and a good new user, who is not written either.
    let newcomer = (
        user(2_000),
        AccountNumber::new("79000000000099").unwrap(),
        users[0].2.clone(),
        "신입".to_owned(),
    );
    let taken = user_line(
        4,
        &(
            user(2_003),
            users[1].1.clone(),
            newcomer.2.clone(),
            "넷".into(),
        ),
        "10",
    );
    let mut missing = user_line(
        5,
        &(
            user(2_001),
            newcomer.1.clone(),
            newcomer.2.clone(),
            "둘".into(),
        ),
        "0",
    );
    missing.fields.remove(2);
    missing.fields[4].1 = "79000000000098".into();
    let mut misspelt = user_line(
        6,
        &(
            user(2_002),
            newcomer.1.clone(),
            newcomer.2.clone(),
            "셋".into(),
        ),
        "0",
    );
    misspelt.fields[3].0 = "advance_kwr".into();
    misspelt.fields[5].1 = "79000000000097".into();
    let bad = vec![
        user_line(2, &newcomer, "10"),
        user_line(3, &users[0], "20"),
        taken,
        missing,
        misspelt,
    ];
    let report = importer.users(&bad, false, &quiet).await.unwrap();
    assert_eq!(
        errors(&report),
        vec![
            (3, "suspend_percent", "exists_with_different_fields"),
            (4, "virtual_account_legacy", "virtual_account_taken"),
            (5, "payout_account", "missing_field"),
            (6, "advance_krw", "missing_field"),
            (6, "advance_kwr", "unknown_field"),
        ]
    );
    assert_eq!((report.applied, report.batches_committed), (0, 0));
    let dry = importer.users(&bad[..1], true, &quiet).await.unwrap();
    assert_eq!(dry.to_apply, 1, "the good line was not written");

    // A salary month on the imported users.
    for (user_id, virtual_account, payout, _) in &users {
        system
            .users
            .push((*user_id, virtual_account.clone(), payout.clone()));
    }
    for n in 0..USERS {
        system.pay_salary(n, 2_000_000 + n as i64 * 1_000).await;
    }
    let polled = system.poller.run_round().await.unwrap();
    assert_eq!(polled.deposits_detected, USERS as u64);
    system.settle().await;
    let deposits = system.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), USERS);
    for deposit in &deposits {
        assert_eq!(deposit.state, DepositState::Completed, "{deposit:?}");
    }
    system.assert_books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_users_settle_a_salary_month_on_sqlite() {
    imported_users_settle_a_salary_month(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_users_settle_a_salary_month_on_postgres() {
    imported_users_settle_a_salary_month(Backend::Postgres).await;
}
