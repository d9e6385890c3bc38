//! `settle channel reconcile` as a real child process: a transfer left `unknown` by
//! a lost core answer is settled from the command line, on a channel database
//! separate from the core's.

use std::sync::Arc;

use channel::faults::{Fault, FaultyCore};
use channel::{Channel, ChannelConfig, InProcessCore, NewTransfer, TransferState, UserId};
use ledger::{AccountFlags, Ledger, LedgerConfig, NewAccount, TransferRequest};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use store::Store;

fn temp_sqlite(label: &str) -> (String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "settle-cli-{label}-{}.db",
        uuid::Uuid::now_v7().simple()
    ));
    (format!("sqlite://{}", path.display()), path)
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_settles_an_unknown_transfer_and_prints_its_counts() {
    let (core_url, core_path) = temp_sqlite("core");
    let (channel_url, channel_path) = temp_sqlite("channel");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(
        Store::connect(&core_url).await.unwrap(),
        clock.clone(),
        LedgerConfig::default(),
    )
    .await
    .unwrap();
    let id = || AccountId::from_uuid(uuid::Uuid::now_v7()).unwrap();
    let (bank, alice, bob) = (id(), id(), id());
    let customer = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    ledger
        .create_accounts(&[
            NewAccount::new(bank, 1, AccountFlags::default()).unwrap(),
            NewAccount::new(alice, 2, customer).unwrap(),
            NewAccount::new(bob, 2, customer).unwrap(),
        ])
        .await
        .unwrap();
    let fund = TransferRequest::single(
        TransferId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        bank,
        alice,
        Krw::new(10_000),
        clock.now(),
    )
    .unwrap();
    assert!(ledger.transfer(fund).await.unwrap().is_applied());

    let faulty = Arc::new(FaultyCore::new(Arc::new(InProcessCore::new(
        ledger.clone(),
    ))));
    let channel = Channel::open(
        Store::connect(&channel_url).await.unwrap(),
        faulty.clone(),
        clock.clone(),
        ChannelConfig::default(),
    )
    .await
    .unwrap();
    faulty.push(Fault::TimeoutAfterCommit).await;
    let new = NewTransfer::new(
        TransferId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        UserId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        alice,
        bob,
        Krw::new(4_000),
    )
    .unwrap();
    let lost = channel.transfers().submit(new).await.unwrap();
    assert_eq!(lost.state, TransferState::Unknown);

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "channel",
            "reconcile",
            "--database-url",
            &core_url,
            "--channel-database-url",
            &channel_url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["examined"], 1, "{report}");
    assert_eq!(report["succeeded"], 1, "{report}");
    let settled = channel.transfers().get(new.id()).await.unwrap().unwrap();
    assert_eq!(settled.state, TransferState::Succeeded);
    remove(&core_path);
    remove(&channel_path);
}
