//! `settle bank-sim` as a real child process: killed and restarted on the same
//! SQLite file, it still answers inquiries for earlier `bank_tran_id`s.

use std::process::Stdio;

use bank::sim::{AdminClient, OpenAccount};
use bank::types::{TransferInquiry, TransferOutcome, TransferRequest};
use bank::{
    AccountNumber, BankApi, BankError, BankTranId, HolderName, HttpBank, TranDate, TransportConfig,
};
use money::Krw;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `settle bank-sim --port 0` and reads the bound address from its first line.
async fn start(database_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "bank-sim",
            "--port",
            "0",
            "--profile",
            "test",
            "--seed",
            "7",
            "--database-url",
            database_url,
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("settle starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .await
        .expect("a first line");
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (child, format!("http://{address}"))
}

fn transfer(sequence: u64, amount_krw: i64) -> TransferRequest {
    TransferRequest {
        bank_tran_id: BankTranId::from_sequence("M202500001", sequence).unwrap(),
        tran_date: TranDate::parse("20250301").unwrap(),
        from_account: AccountNumber::new("1002000000001").unwrap(),
        to_account: AccountNumber::new("1002000000002").unwrap(),
        holder_name: HolderName::new("김민지").unwrap(),
        amount_krw: Krw::new(amount_krw),
    }
}

fn inquiry(sequence: u64) -> TransferInquiry {
    TransferInquiry {
        bank_tran_id: BankTranId::from_sequence("M202500001", sequence).unwrap(),
        tran_date: TranDate::parse("20250301").unwrap(),
        original: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_bank_sim_still_answers_inquiries_for_earlier_bank_tran_ids() {
    let path = std::env::temp_dir().join(format!(
        "banksim-restart-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}", path.display());

    let (mut first, base_url) = start(&url).await;
    let admin = AdminClient::new(&base_url);
    for (number, holder, balance) in [
        ("1002000000001", "세틀주식회사", 1_000_000),
        ("1002000000002", "김민지", 0),
    ] {
        admin
            .open_account(&OpenAccount {
                account_number: AccountNumber::new(number).unwrap(),
                holder_name: HolderName::new(holder).unwrap(),
                balance_krw: Krw::new(balance),
            })
            .await
            .unwrap();
    }
    let bank = HttpBank::new(TransportConfig::new(&base_url)).unwrap();
    bank.deposit_transfer(&transfer(1, 40_000)).await.unwrap();
    assert_eq!(
        bank.deposit_transfer(&transfer(2, 150_000))
            .await
            .unwrap_err(),
        BankError::OverPerCallLimit { limit_krw: 100_000 }
    );
    first.kill().await.unwrap();

    let (_second, base_url) = start(&url).await;
    let bank = HttpBank::new(TransportConfig::new(&base_url)).unwrap();
    assert!(matches!(
        bank.transfer_result(&inquiry(1)).await.unwrap(),
        TransferOutcome::Succeeded { receipt } if receipt.amount_krw == Krw::new(40_000)
    ));
    assert!(matches!(
        bank.transfer_result(&inquiry(2)).await.unwrap(),
        TransferOutcome::Failed { code, .. } if code == "over_per_call_limit"
    ));
    assert_eq!(
        bank.transfer_result(&inquiry(3)).await.unwrap_err(),
        BankError::TransferNotFound
    );
    // The first id sent again after the restart still pays once.
    bank.deposit_transfer(&transfer(1, 40_000)).await.unwrap();
    let statement = AdminClient::new(&base_url).statement().await.unwrap();
    let transfers: Vec<_> = statement
        .movements
        .iter()
        .filter(|m| m.bank_tran_id.is_some())
        .collect();
    assert_eq!(transfers.len(), 1);

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
