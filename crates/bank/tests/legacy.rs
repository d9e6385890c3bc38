//! The NH-style (`legacy`) connector against the simulator over real HTTP: the
//! holder check (예금주조회) refuses a payout to a renamed account before any
//! transfer reaches the bank; a withdrawal transfer and its result inquiry; and
//! the transaction history pages by page number with running balances.

use std::sync::Arc;

use bank::providers::legacy::{self, Legacy};
use bank::providers::{BankingProvider, Connector};
use bank::sim::{OpenAccount, Profile, SimConfig, Simulator};
use bank::types::{TransferInquiry, TransferOutcome, TransferRequest};
use bank::{
    AccountNumber, BankError, BankTranId, HolderName, TranDate, TransferKind, Transport,
    TransportConfig,
};
use money::{Krw, TestClock, Timestamp};

const NOW_MS: i64 = 1_740_791_730_000;
const OPERATING: &str = "1002000000001";
const PAYEE: &str = "1002000000002";

struct Bank {
    sim: Simulator,
    connector: Connector<Legacy>,
    _db: store::testing::TestDb,
}

async fn bank() -> Bank {
    let db = store::testing::sqlite().await;
    let clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let config = SimConfig::for_profile(Profile::Test, 13);
    let sim = Simulator::open(db.store.clone(), config, clock.clone())
        .await
        .unwrap();
    for (number, holder, balance) in [
        (OPERATING, "세틀주식회사", 1_000_000),
        (PAYEE, "김민지", 80_000),
    ] {
        sim.open_account(&OpenAccount {
            account_number: AccountNumber::new(number).unwrap(),
            holder_name: HolderName::new(holder).unwrap(),
            balance_krw: Krw::new(balance),
        })
        .await
        .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut transport = TransportConfig::new(&format!("http://{}", listener.local_addr().unwrap()));
    transport.requests_per_s_max = None;
    tokio::spawn(bank::sim::serve_simulator(
        sim.clone(),
        listener,
        std::future::pending(),
    ));
    let connector = legacy::connector(Transport::new(transport).unwrap(), clock);
    Bank {
        sim,
        connector,
        _db: db,
    }
}

fn account(number: &str) -> AccountNumber {
    AccountNumber::new(number).unwrap()
}

fn transfer(n: u64, from: &str, to: &str, holder: &str, amount_krw: i64) -> TransferRequest {
    TransferRequest {
        bank_tran_id: BankTranId::from_sequence("L202500001", n).unwrap(),
        tran_date: TranDate::parse("20250301").unwrap(),
        from_account: account(from),
        to_account: account(to),
        holder_name: HolderName::new(holder).unwrap(),
        amount_krw: Krw::new(amount_krw),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_payee_is_refused_by_the_holder_check_before_any_transfer_reaches_the_bank() {
    let bank = bank().await;
    let payee = account(PAYEE);
    let holder = bank.connector.account_holder(&payee).await.unwrap();
    assert_eq!(holder.as_str(), "김민지");
    let paid = transfer(1, OPERATING, PAYEE, "김민지", 50_000);
    assert_eq!(
        bank.connector.payout(&paid).await.unwrap().amount_krw,
        Krw::new(50_000)
    );

    bank.sim
        .rename_holder(&payee, &HolderName::new("이서연").unwrap())
        .await
        .unwrap();
    let renamed = transfer(2, OPERATING, PAYEE, "김민지", 50_000);
    let refused = bank.connector.payout(&renamed).await.unwrap_err();
    assert_eq!(refused, BankError::HolderNameMismatch);
    assert!(!refused.is_transient() && !refused.is_outcome_unknown());
    // Only the first payout ever reached the bank's transfer desk.
    assert_eq!(bank.sim.submissions().submissions_total, 1);
    let asked = TransferInquiry::of(TransferKind::Deposit, &renamed);
    assert_eq!(
        bank.connector.payout_result(&asked).await.unwrap_err(),
        BankError::TransferNotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_transfer_and_its_result_inquiry_speak_the_nh_wire() {
    let bank = bank().await;
    let pull = transfer(10, PAYEE, OPERATING, "김민지", 30_000);
    let receipt = bank.connector.withdraw(&pull).await.unwrap();
    assert_eq!(receipt.kind, TransferKind::Withdraw);
    // The same IsTuno again moves nothing and answers the first result.
    bank.connector.withdraw(&pull).await.unwrap();
    let asked = TransferInquiry::of(TransferKind::Withdraw, &pull);
    assert!(matches!(
        bank.connector.result(&asked).await.unwrap(),
        TransferOutcome::Succeeded { receipt } if receipt.amount_krw == Krw::new(30_000)
    ));
    let too_much = transfer(11, PAYEE, OPERATING, "김민지", 60_000);
    assert_eq!(
        bank.connector.withdraw(&too_much).await.unwrap_err(),
        BankError::InsufficientFunds
    );
    assert!(matches!(
        bank.connector
            .result(&TransferInquiry::of(TransferKind::Withdraw, &too_much))
            .await
            .unwrap(),
        TransferOutcome::Failed { code, .. } if code == "insufficient_funds"
    ));
    assert_eq!(
        BankingProvider::balance(&bank.connector, &account(PAYEE))
            .await
            .unwrap(),
        Krw::new(50_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_history_pages_by_page_number_with_running_balances() {
    let bank = bank().await;
    let payouts = 150_u64;
    for n in 0..payouts {
        let request = transfer(100 + n, OPERATING, PAYEE, "김민지", 1_000);
        bank.connector.payout(&request).await.unwrap();
    }
    let day = TranDate::parse("20250301").unwrap();
    let (mut page_no, mut lines) = (Some(1), Vec::new());
    let mut pages = 0;
    while let Some(number) = page_no {
        let page = bank
            .connector
            .history(&account(OPERATING), (day, day), number)
            .await
            .unwrap();
        assert!(page.lines.len() <= 100);
        lines.extend(page.lines);
        page_no = page.next_page;
        pages += 1;
        assert!(pages <= 3, "runaway paging");
    }
    assert_eq!(pages, 2);
    assert_eq!(
        lines.len() as u64,
        payouts + 1,
        "the opening and every payout, once"
    );
    assert!(lines[0].incoming);
    assert!(
        lines[1..]
            .iter()
            .all(|l| !l.incoming && l.amount_krw == Krw::new(1_000))
    );
    let last = lines.last().unwrap();
    assert_eq!(last.balance_after_krw, Krw::new(1_000_000 - 150 * 1_000));
    // Each payout's line prints its IsTuno: the statement names the transfer.
    assert!(lines[1].print_content.starts_with("L202500001U"));
}
