//! Fee settlement over HTTPS and the KFTC wire: the simulator served with TLS (a
//! certificate from a CA made at start), and fees paying, inquiring and
//! reconciling through the KFTC connector (OAuth token, 입금이체 / 출금이체,
//! 이체결과조회, 거래내역조회) on the rustls client that trusts that CA and nothing
//! else besides the web PKI.

mod common;

use std::sync::Arc;

use bank::providers::next::bank_api::kftc_bank;
use bank::tls::{SimCertificate, TlsListener};
use bank::{BankApi, Transport, TransportConfig};
use common::{Options, owed_by_account, system};
use fees::report::HttpStatement;
use fees::{DayState, Fees, Outcome, Trigger};
use ledger::{Ledger, LedgerConfig};
use money::Clock;
use store::testing::TestDb;

async fn a_fee_day_is_paid_verified_and_withdrawn_over_https(db: TestDb) {
    let s = system(db, Options::default()).await;
    let workload = fees::workload::generate(s.day, 12, 3).unwrap();
    s.load(&workload).await;

    let certificate = SimCertificate::generate(&["127.0.0.1".into()]).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("https://{}", tcp.local_addr().unwrap());
    let listener = TlsListener::new(tcp, &certificate).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bank::sim::serve_simulator_tls(
        s.sim.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    // Without the CA the certificate is not trusted and nothing is sent: a
    // transient error, the same id may be sent again at once.
    let untrusted = kftc_bank(Transport::new(TransportConfig::new(&base_url)).unwrap());
    let refused = untrusted
        .balance(&bank::types::AccountRequest {
            account_number: s.config().settlement_account.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "bank_not_sent", "{refused:?}");
    assert!(refused.is_transient());

    let ca = certificate.bank_ca().unwrap();
    let mut transport = TransportConfig::new(&base_url);
    transport.extra_ca = Some(ca.clone());
    let bank: Arc<dyn BankApi> = kftc_bank(Transport::new(transport).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(s.clock.clone());
    let ledger = Ledger::open(s.db.store.clone(), clock.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let fees = Fees::open(ledger, bank, clock, s.config().clone())
        .await
        .unwrap();

    let op = Trigger::Operator;
    assert_eq!(fees.record(s.day, op).await.unwrap().outcome, Outcome::Done);
    assert_eq!(fees.pay(s.day, op).await.unwrap().outcome, Outcome::Done);
    assert_eq!(fees.verify(s.day, op).await.unwrap().outcome, Outcome::Done);
    assert_eq!(
        fees.withdraw(s.day, op).await.unwrap().outcome,
        Outcome::Done
    );
    let status = fees.status(s.day).await.unwrap().unwrap();
    assert_eq!(status.state, DayState::Withdrawn);

    assert_eq!(s.paid_by_account().await, owed_by_account(&workload));
    s.assert_no_duplicate_ids().await;
    // Every chunk went over the KFTC wire: the bank issued it a token.
    let stats: bank::sim::StatsBody = bank::tls::http_client(Some(&ca))
        .build()
        .unwrap()
        .get(format!("{base_url}/admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats.tokens_issued_total >= 1, "{stats:?}");
    let statement = HttpStatement::with_ca(&base_url, Some(&ca)).unwrap();
    let report = fees.report(s.day, &statement).await.unwrap();
    assert!(report.agrees, "{report:?}");
    assert!(report.bank_paid_krw.is_positive());
    s.assert_ledger_balances().await;

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

on_both_backends!(a_fee_day_is_paid_verified_and_withdrawn_over_https);
