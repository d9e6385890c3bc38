//! The KFTC connector against the simulator over real HTTP: the OAuth token is
//! fetched once for many concurrent calls, refreshed before it lapses, dropped
//! when the bank no longer accepts it; and the holder check refuses a payout to a
//! renamed account before any transfer reaches the bank; and credentials the bank
//! refuses are a configuration error, never "transient" forever.

use std::sync::Arc;

use bank::providers::next::{self, Next};
use bank::providers::{BankingProvider, Connector};
use bank::sim::{OpenAccount, Profile, SimConfig, Simulator, StatsBody};
use bank::types::{TransferInquiry, TransferRequest};
use bank::{
    AccountNumber, BankError, BankTranId, HolderName, TranDate, Transport, TransportConfig,
};
use money::{Krw, TestClock, Timestamp};

const NOW_MS: i64 = 1_740_791_730_000;
const OPERATING: &str = "1002000000001";
const PAYEE: &str = "1002000000002";

struct Bank {
    sim: Simulator,
    base_url: String,
    sim_clock: Arc<TestClock>,
    _db: store::testing::TestDb,
}

async fn bank(token_ttl_s: u64) -> Bank {
    let db = store::testing::sqlite().await;
    let mut config = SimConfig::for_profile(Profile::Test, 11);
    config.token_ttl_s = token_ttl_s;
    let sim_clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let sim = Simulator::open(db.store.clone(), config, sim_clock.clone())
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(bank::sim::serve_simulator(
        sim.clone(),
        listener,
        std::future::pending(),
    ));
    Bank {
        sim,
        base_url,
        sim_clock,
        _db: db,
    }
}

impl Bank {
    fn connector(&self, clock: Arc<TestClock>) -> Connector<Next> {
        let mut config = TransportConfig::new(&self.base_url);
        config.requests_per_s_max = None;
        next::connector(Transport::new(config).unwrap(), clock)
    }

    async fn stats(&self) -> StatsBody {
        reqwest::get(format!("{}/admin/stats", self.base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn operating() -> AccountNumber {
    AccountNumber::new(OPERATING).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_calls_fetch_one_token_and_it_is_refreshed_before_it_lapses() {
    let bank = bank(3_600).await;
    let clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let connector = Arc::new(bank.connector(clock.clone()));
    let calls = (0..20).map(|_| {
        let connector = connector.clone();
        tokio::spawn(async move { connector.balance(&operating()).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), Krw::new(1_000_000));
    }
    let cache = connector.token_cache().unwrap();
    assert_eq!(cache.fetched(), 1, "one token for twenty concurrent calls");
    assert_eq!(bank.stats().await.tokens_issued_total, 1);

    // Still good for longer than the refresh margin (10 minutes): reused.
    clock.advance_ms(2_000_000);
    bank.sim_clock.advance_ms(2_000_000);
    connector.balance(&operating()).await.unwrap();
    assert_eq!(cache.fetched(), 1);

    // Inside the margin: refreshed before the bank would refuse it.
    clock.advance_ms(1_100_000);
    bank.sim_clock.advance_ms(1_100_000);
    connector.balance(&operating()).await.unwrap();
    assert_eq!(cache.fetched(), 2);
    assert_eq!(bank.stats().await.tokens_issued_total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_bank_refuses_is_transient_and_the_next_call_fetches_a_new_one() {
    let bank = bank(3_600).await;
    let clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let connector = bank.connector(clock);
    connector.balance(&operating()).await.unwrap();
    // The bank's clock runs past the token's life while ours does not.
    bank.sim_clock.advance_ms(4_000_000);
    let refused = connector.balance(&operating()).await.unwrap_err();
    assert_eq!(refused, BankError::AuthRejected);
    assert!(refused.is_transient(), "not processed: send again");
    assert_eq!(
        connector.balance(&operating()).await.unwrap(),
        Krw::new(1_000_000)
    );
    assert_eq!(connector.token_cache().unwrap().fetched(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_bank_refuses_are_a_configuration_error_not_a_transient_one() {
    let bank = bank(3_600).await;
    let mut config = TransportConfig::new(&bank.base_url);
    config.requests_per_s_max = None;
    config.kftc.client_secret = bank::providers::next::token::Secret::new("a-wrong-secret");
    let clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let connector = next::connector(Transport::new(config).unwrap(), clock);
    for _ in 0..2 {
        let refused = connector.balance(&operating()).await.unwrap_err();
        assert_eq!(refused.code(), "bank_credentials_refused", "{refused:?}");
        assert_eq!(refused.class(), bank::ErrorClass::Configuration);
        assert!(!refused.is_transient() && !refused.is_outcome_unknown());
    }
    // Nothing reached the accounts: the refused calls never got past the token.
    assert_eq!(bank.stats().await.tokens_issued_total, 0);
    assert_eq!(connector.token_cache().unwrap().fetched(), 2);
}

fn payout(n: u64, holder: &str) -> TransferRequest {
    TransferRequest {
        bank_tran_id: BankTranId::from_sequence("P202500001", n).unwrap(),
        tran_date: TranDate::parse("20250301").unwrap(),
        from_account: operating(),
        to_account: AccountNumber::new(PAYEE).unwrap(),
        holder_name: HolderName::new(holder).unwrap(),
        amount_krw: Krw::new(50_000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_payee_is_refused_by_the_holder_check_before_any_transfer_reaches_the_bank() {
    let bank = bank(3_600).await;
    let connector = bank.connector(Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS))));
    // The holder as the bank has it now.
    let payee = AccountNumber::new(PAYEE).unwrap();
    assert_eq!(
        connector.account_holder(&payee).await.unwrap().as_str(),
        "김민지"
    );
    let paid = connector.payout(&payout(1, "김민지")).await.unwrap();
    assert_eq!(paid.amount_krw, Krw::new(50_000));

    bank.sim
        .rename_holder(&payee, &HolderName::new("이서연").unwrap())
        .await
        .unwrap();
    let refused = connector.payout(&payout(2, "김민지")).await.unwrap_err();
    assert_eq!(refused, BankError::HolderNameMismatch);
    assert_eq!(refused.code(), "holder_name_mismatch");
    assert!(!refused.is_transient() && !refused.is_outcome_unknown());
    // Only the first payout ever reached the bank's transfer desk.
    assert_eq!(bank.sim.submissions().submissions_total, 1);
    let asked = TransferInquiry::of(bank::TransferKind::Deposit, &payout(2, "김민지"));
    assert_eq!(
        connector.payout_result(&asked).await.unwrap_err(),
        BankError::TransferNotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_list_pages_and_resumes_from_its_trace_with_running_balances() {
    let bank = bank(3_600).await;
    let connector = bank.connector(Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS))));
    let payouts = 150_u64;
    for n in 0..payouts {
        let mut request = payout(100 + n, "김민지");
        request.amount_krw = Krw::new(1_000);
        connector.payout(&request).await.unwrap();
    }
    let day = TranDate::parse("20250301").unwrap();
    let mut trace: Option<String> = None;
    let mut lines = Vec::new();
    for _ in 0..10 {
        let page = connector
            .transactions(&operating(), (day, day), trace.as_deref())
            .await
            .unwrap();
        assert!(page.lines.len() <= 100);
        lines.extend(page.lines);
        trace = page.next_trace;
        if trace.is_none() {
            break;
        }
    }
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
}
