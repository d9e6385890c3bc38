//! The provider facade: routing by cohort and override, the double-settlement guard,
//! and both providers' wire shapes against the simulator over real HTTP.

mod common;

use std::sync::Arc;

use bank::providers::{self, BankingProvider, Facade, ProviderName};
use bank::routing::{RoutingTable, SettlementStart};
use bank::types::{TransferInquiry, TransferOutcome};
use bank::{AccountNumber, BankError, DepositId, HolderName, TransferKind, Transport, UserId};
use common::*;
use money::{Krw, SystemClock, TestClock, Timestamp};
use store::Store;
use uuid::Uuid;

fn user(n: u128) -> UserId {
    // Fixed, well-spread ids: the same users in every run.
    UserId::from_uuid(Uuid::from_u128(
        0x0192_f1a8_7b2c_7000_8000_0000_0000_0000
            ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
    ))
}

async fn routing(store: Store) -> RoutingTable {
    RoutingTable::open(
        store,
        Arc::new(TestClock::at(Timestamp::from_unix_ms(1_740_000_000_000))),
    )
    .await
    .unwrap()
}

async fn a_cohort_routes_its_share_and_overrides_win(store: Store, _url: String) {
    let table = routing(store).await;
    assert_eq!(table.cohort_percent().await.unwrap(), 0);
    table.set_cohort_percent(30, "ops:jiwoo").await.unwrap();

    let mut to_next = 0;
    for n in 0..10_000 {
        if table.provider_for(user(n)).await.unwrap() == ProviderName::Next {
            to_next += 1;
        }
    }
    eprintln!("{to_next} of 10,000 users route to next at 30 %");
    assert!(
        (2_800..=3_200).contains(&to_next),
        "{to_next} is not 30 % ± 2 %"
    );

    // Flipping one user's override is seen by the very next call, without a restart.
    let someone = user(17);
    let before = table.provider_for(someone).await.unwrap();
    let flipped = match before {
        ProviderName::Legacy => ProviderName::Next,
        ProviderName::Next => ProviderName::Legacy,
    };
    table
        .set_override(someone, Some(flipped), "ops:jiwoo")
        .await
        .unwrap();
    assert_eq!(table.provider_for(someone).await.unwrap(), flipped);
    table
        .set_override(someone, None, "ops:minho")
        .await
        .unwrap();
    assert_eq!(table.provider_for(someone).await.unwrap(), before);

    let audit = table.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0].actor, "ops:minho");
    assert_eq!(audit[0].old_value.as_deref(), Some(flipped.as_str()));
    assert_eq!(audit[0].new_value, None);
    assert_eq!(audit[2].subject, "cohort");
    assert_eq!(
        (audit[2].old_value.as_deref(), audit[2].new_value.as_deref()),
        (Some("0"), Some("30"))
    );
    assert_eq!(audit[2].at_ms, 1_740_000_000_000);
}

on_both_backends!(
    ten_thousand_users_at_a_30_percent_cohort_route_about_30_percent_to_next_and_an_override_flip_is_seen_next_call_on_sqlite,
    ten_thousand_users_at_a_30_percent_cohort_route_about_30_percent_to_next_and_an_override_flip_is_seen_next_call_on_postgres,
    a_cohort_routes_its_share_and_overrides_win
);

async fn only_one_provider_can_start_a_deposit(store: Store, _url: String) {
    let table = routing(store).await;
    for round in 1..=20 {
        let deposit = DepositId::from_sequence(round).unwrap();
        let (legacy, next) = tokio::join!(
            {
                let table = table.clone();
                let deposit = deposit.clone();
                tokio::spawn(async move {
                    table
                        .start_settlement(&deposit, ProviderName::Legacy)
                        .await
                        .unwrap()
                })
            },
            {
                let table = table.clone();
                let deposit = deposit.clone();
                tokio::spawn(async move {
                    table
                        .start_settlement(&deposit, ProviderName::Next)
                        .await
                        .unwrap()
                })
            }
        );
        let (legacy, next) = (legacy.unwrap(), next.unwrap());
        match (legacy, next) {
            (SettlementStart::Started, SettlementStart::AlreadyStarted { provider }) => {
                assert_eq!(provider, ProviderName::Legacy)
            }
            (SettlementStart::AlreadyStarted { provider }, SettlementStart::Started) => {
                assert_eq!(provider, ProviderName::Next)
            }
            other => panic!("round {round}: both or neither started: {other:?}"),
        }
        // Later attempts by either provider are refused too.
        assert!(matches!(
            table
                .start_settlement(&deposit, ProviderName::Next)
                .await
                .unwrap(),
            SettlementStart::AlreadyStarted { .. }
        ));
    }
}

on_both_backends!(
    a_deposit_started_on_one_provider_cannot_be_started_on_the_other_even_when_both_race_on_sqlite,
    a_deposit_started_on_one_provider_cannot_be_started_on_the_other_even_when_both_race_on_postgres,
    only_one_provider_can_start_a_deposit
);

async fn check_provider(
    server: &TestSim,
    provider: Arc<dyn BankingProvider>,
    who: u128,
    first_tran: u64,
) {
    let holder = HolderName::new("이서연").unwrap();
    let account = provider.account_number(user(who), &holder).await.unwrap();
    assert_eq!(
        provider.account_number(user(who), &holder).await.unwrap(),
        account,
        "issuing is idempotent"
    );

    // A salary arrives while 120,000 KRW of advance is due: the bank sweeps it.
    let (status, _) = server
        .admin_post(
            "/admin/repayment_due",
            serde_json::json!({"account_number": account.as_str(), "amount_krw": 120_000}),
        )
        .await;
    assert_eq!(status, 200);
    let salary = server.pay_salary(account.as_str(), 2_000_000).await;
    let deposit = DepositId::new(salary["deposit_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        provider
            .repayment_amount(user(who), &deposit)
            .await
            .unwrap(),
        Krw::new(120_000)
    );
    assert_eq!(
        provider.suspend_amount(user(who), &deposit).await.unwrap(),
        Krw::ZERO
    );
    assert_eq!(
        provider.balance(&account).await.unwrap(),
        Krw::new(2_000_000)
    );
    let page = provider.deposits(&account, 0).await.unwrap();
    assert_eq!(page.deposits.len(), 1);
    assert_eq!(page.deposits[0].deposit_id, deposit);
    assert_eq!(page.next_cursor, deposit.sequence());

    // A frozen account's salary is suspended whole.
    server
        .admin_post(
            "/admin/freeze",
            serde_json::json!({"account_number": account.as_str(), "frozen": true}),
        )
        .await;
    let held = server.pay_salary(account.as_str(), 300_000).await;
    let held = DepositId::new(held["deposit_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        provider.suspend_amount(user(who), &held).await.unwrap(),
        Krw::new(300_000)
    );
    assert_eq!(
        provider.repayment_amount(user(who), &held).await.unwrap(),
        Krw::ZERO
    );
    let missing = DepositId::from_sequence(999_999).unwrap();
    assert_eq!(
        provider
            .repayment_amount(user(who), &missing)
            .await
            .unwrap_err(),
        BankError::DepositNotFound
    );

    // Payouts: success, the per-call limit, and the result inquiry, in this provider's shape.
    let ok = payout(first_tran, 70_000);
    let receipt = provider.payout(&ok).await.unwrap();
    assert_eq!(receipt.amount_krw, Krw::new(70_000));
    let too_big = payout(first_tran + 1, 100_001);
    // The legacy wire names the limit; the KFTC wire carries only the code.
    let refused = provider.payout(&too_big).await.unwrap_err();
    assert!(
        matches!(refused, BankError::OverPerCallLimit { limit_krw } if limit_krw == 100_000 || limit_krw == 0),
        "{refused:?}"
    );
    // Inquiries name the original transfer (the KFTC inquiry needs its leg and amount).
    let asked =
        |n: u64, amount: i64| TransferInquiry::of(TransferKind::Deposit, &payout(n, amount));
    assert!(matches!(
        provider.payout_result(&asked(first_tran, 70_000)).await.unwrap(),
        TransferOutcome::Succeeded { receipt } if receipt.to_account == AccountNumber::new(PAYEE).unwrap()
    ));
    assert!(matches!(
        provider.payout_result(&asked(first_tran + 1, 100_001)).await.unwrap(),
        TransferOutcome::Failed { code, .. } if code == "over_per_call_limit"
    ));
    assert_eq!(
        provider
            .payout_result(&asked(first_tran + 2, 70_000))
            .await
            .unwrap_err(),
        BankError::TransferNotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_providers_speak_their_own_wire_shape_to_the_simulator_and_agree() {
    let db = store::testing::sqlite().await;
    let server = spawn_sim(db.store.clone(), test_config()).await;
    server.standard_accounts().await;
    let transport = Transport::new(server.client_config()).unwrap();
    let legacy = providers::connect(ProviderName::Legacy, transport.clone());
    let next = providers::connect(ProviderName::Next, transport);
    assert_eq!(legacy.name(), ProviderName::Legacy);
    check_provider(&server, legacy, 1, 100).await;
    check_provider(&server, next, 2, 200).await;
    assert_eq!(server.transfer_movements().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_sends_each_user_to_the_routed_provider_and_guards_the_deposit() {
    let db = store::testing::sqlite().await;
    let server = spawn_sim(db.store.clone(), test_config()).await;
    let transport = Transport::new(server.client_config()).unwrap();
    let table = RoutingTable::open(db.store.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    let facade = Facade::connect(table.clone(), &transport);
    let someone = user(5);
    assert_eq!(
        facade.provider_for(someone).await.unwrap().name(),
        ProviderName::Legacy
    );
    table
        .set_override(someone, Some(ProviderName::Next), "ops:test")
        .await
        .unwrap();
    let provider = facade.provider_for(someone).await.unwrap();
    assert_eq!(provider.name(), ProviderName::Next);
    let deposit = DepositId::from_sequence(1).unwrap();
    assert_eq!(
        facade
            .start_settlement(&deposit, provider.name())
            .await
            .unwrap(),
        SettlementStart::Started
    );
    assert_eq!(
        facade
            .start_settlement(&deposit, ProviderName::Legacy)
            .await
            .unwrap(),
        SettlementStart::AlreadyStarted {
            provider: ProviderName::Next
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_registry_is_built_from_the_list_of_all_providers() {
    let db = store::testing::sqlite().await;
    for (index, name) in ProviderName::ALL.into_iter().enumerate() {
        assert_eq!(name as usize, index);
        assert_eq!(ProviderName::parse(name.as_str()), Some(name));
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, format!("\"{}\"", name.as_str()));
    }
    let transport = Transport::new(bank::TransportConfig::new("http://127.0.0.1:9")).unwrap();
    let table = routing(db.store.clone()).await;
    let facade = Facade::connect(table.clone(), &transport);
    for name in ProviderName::ALL {
        assert_eq!(facade.provider(name).name(), name);
    }
    // A facade from given providers needs each one exactly once.
    let all = || ProviderName::ALL.map(|name| providers::connect(name, transport.clone()));
    assert!(Facade::with_providers(table.clone(), all()).is_ok());
    let missing = all().into_iter().skip(1);
    assert!(Facade::with_providers(table.clone(), missing).is_err());
    let twice = all()
        .into_iter()
        .chain([providers::connect(ProviderName::Next, transport.clone())]);
    assert!(Facade::with_providers(table, twice).is_err());
}
