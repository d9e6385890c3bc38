//! Statements through the connector: the [`Statement`] trait over the KFTC
//! transaction list, the NH transaction history and the in-process simulator
//! shows the same lines for one account, and a page's cursor, stored and passed
//! back later, resumes where it stopped.

use std::sync::Arc;

use bank::providers::{legacy, next};
use bank::sim::{OpenAccount, Profile, SimConfig, Simulator};
use bank::statement::read_all;
use bank::types::TransferRequest;
use bank::{
    AccountNumber, BankApi, BankTranId, HolderName, Statement, TranDate, Transport, TransportConfig,
};
use money::{Krw, TestClock, Timestamp};

const NOW_MS: i64 = 1_740_791_730_000;
const OPERATING: &str = "1002000000001";
const PAYEE: &str = "1002000000002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connector_reads_the_same_statement_and_resumes_from_a_stored_cursor() {
    let db = store::testing::sqlite().await;
    let clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let sim = Simulator::open(
        db.store.clone(),
        SimConfig::for_profile(Profile::Test, 5),
        clock.clone(),
    )
    .await
    .unwrap();
    for (number, holder, balance) in [(OPERATING, "세틀주식회사", 1_000_000), (PAYEE, "김민지", 0)]
    {
        sim.open_account(&OpenAccount {
            account_number: AccountNumber::new(number).unwrap(),
            holder_name: HolderName::new(holder).unwrap(),
            balance_krw: Krw::new(balance),
        })
        .await
        .unwrap();
    }
    for n in 0..120 {
        let payout = TransferRequest {
            bank_tran_id: BankTranId::from_sequence("S202500001", n).unwrap(),
            tran_date: TranDate::parse("20250301").unwrap(),
            from_account: AccountNumber::new(OPERATING).unwrap(),
            to_account: AccountNumber::new(PAYEE).unwrap(),
            holder_name: HolderName::new("김민지").unwrap(),
            amount_krw: Krw::new(1_000 + i64::try_from(n).unwrap()),
        };
        sim.deposit_transfer(&payout).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = TransportConfig::new(&format!("http://{}", listener.local_addr().unwrap()));
    config.requests_per_s_max = None;
    tokio::spawn(bank::sim::serve_simulator(
        sim.clone(),
        listener,
        std::future::pending(),
    ));
    let transport = Transport::new(config).unwrap();
    let kftc = next::connector(transport.clone(), clock.clone());
    let nh = legacy::connector(transport, clock);

    let account = AccountNumber::new(PAYEE).unwrap();
    let day = TranDate::parse("20250301").unwrap();
    let statements: [&dyn Statement; 3] = [&kftc, &nh, &sim];
    let mut all = Vec::new();
    for statement in statements {
        let lines = read_all(statement, &account, (day, day)).await.unwrap();
        assert_eq!(lines.len(), 120);
        assert!(lines.iter().all(|l| l.incoming));
        assert_eq!(lines[0].print_content, "S202500001U000000000");
        assert_eq!(
            lines[119].balance_after_krw,
            Krw::new(120 * 1_000 + 119 * 120 / 2)
        );
        all.push(lines);

        // Resume: the first page's cursor, stored and passed back, reads on (the
        // in-process page holds all 120 lines, so it has none).
        let first = statement
            .statement_page(&account, (day, day), None)
            .await
            .unwrap();
        let Some(cursor) = first.next.clone() else {
            assert_eq!(first.lines.len(), 120);
            continue;
        };
        let stored: bank::StatementCursor =
            serde_json::from_str(&serde_json::to_string(&cursor).unwrap()).unwrap();
        let rest = statement
            .statement_page(&account, (day, day), Some(&stored))
            .await
            .unwrap();
        assert_eq!(
            rest.lines.first(),
            all.last().unwrap().get(first.lines.len())
        );
    }
    assert_eq!(all[0], all[1], "KFTC and NH statements differ");
    // The in-process page size differs (500), but the lines are the same.
    assert_eq!(
        all[0], all[2],
        "the wire and the in-process statement differ"
    );
    let outside = TranDate::parse("20250302").unwrap();
    assert!(
        read_all(&kftc, &account, (outside, outside))
            .await
            .unwrap()
            .is_empty()
    );
}
