//! `settle bank-sim --tls` and `settle fees … --bank-ca` as real child processes:
//! the fee commands reach the simulator over HTTPS only with its CA; a bank that
//! answers 429 to every transfer leaves items waiting, not blocked, and `fees
//! report` exits non-zero naming them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the simulator with TLS and a 429 outage; returns it and its https URL.
fn start_sim(dir: &std::path::Path, ca: &std::path::Path) -> (Sim, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["bank-sim", "--port", "0", "--tls", "--tls-ca-out"])
        .arg(ca)
        .args(["--fault-rate-limited-for-s", "3600", "--database-url"])
        .arg(format!("sqlite://{}", dir.join("bank.db").display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("settle bank-sim starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (Sim(child), format!("https://{address}"))
}

/// The installation's bank and fee accounts (no default names them), as
/// `SETTLE_<SECTION>__<KEY>` variables.
const INSTALLATION_ENV: [(&str, &str); 7] = [
    ("SETTLE_BANK__KIND", "bank-sim"),
    ("SETTLE_BANK__URL", "http://127.0.0.1:9"),
    ("SETTLE_FEES__INSTITUTION_CODE", "F202600001"),
    ("SETTLE_FEES__SETTLEMENT_ACCOUNT", "1002000000001"),
    ("SETTLE_FEES__SETTLEMENT_HOLDER", "세틀주식회사"),
    ("SETTLE_FEES__CORPORATE_ACCOUNT", "1002000000009"),
    ("SETTLE_FEES__CORPORATE_HOLDER", "세틀주식회사 법인"),
];

fn settle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settle"))
        .env(
            "SETTLE_ID_SECRET",
            "bank-tls-test-id-secret-0123456789abcdef",
        )
        .envs(INSTALLATION_ENV)
        .args(args)
        .output()
        .expect("settle runs")
}

#[test]
fn fees_over_https_need_the_ca_and_a_throttled_bank_leaves_items_waiting_and_named() {
    let dir =
        std::env::temp_dir().join(format!("settle-cli-tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    let (_sim, url) = start_sim(&dir, &ca_path);
    let ca = ca_path.to_str().unwrap();
    let db = format!("sqlite://{}", dir.join("settle.db").display());
    let day = "2026-11-20";
    let bank = ["--bank-url", url.as_str(), "--bank-ca", ca];

    let untrusted = settle(&[
        "fees",
        "generate",
        "--day",
        day,
        "--loans",
        "5",
        "--database-url",
        &db,
        "--bank-url",
        &url,
    ]);
    assert!(!untrusted.status.success(), "no CA, no connection");

    let mut generate = vec!["fees", "generate", "--day", day, "--loans", "5"];
    generate.extend(["--database-url", db.as_str()]);
    generate.extend(bank);
    let generated = settle(&generate);
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );

    let mut run = vec!["fees", "run", "--day", day, "--database-url", db.as_str()];
    run.extend(bank);
    let ran = settle(&run);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    let verify = &runs.as_array().unwrap()[2];
    assert_eq!(verify["outcome"], "not_ready", "{runs}");

    let mut report = vec![
        "fees",
        "report",
        "--day",
        day,
        "--database-url",
        db.as_str(),
    ];
    report.extend(bank);
    let reported = settle(&report);
    assert!(
        !reported.status.success(),
        "a day with unpaid items does not agree"
    );
    let body: serde_json::Value = serde_json::from_slice(&reported.stdout).unwrap();
    assert_eq!(body["agrees"], false);
    assert_eq!(body["books_agree"], true);
    let unpaid = body["unpaid"].as_array().unwrap();
    assert!(!unpaid.is_empty());
    for item in unpaid {
        let reason = item["reason"].as_str().unwrap();
        assert!(reason.starts_with("waiting_for_bank: "), "{item}");
    }
    let error: serde_json::Value = serde_json::from_slice(&reported.stderr).unwrap();
    assert_eq!(error["code"], "items_unpaid");
    assert!(
        error["message"].as_str().unwrap().contains("loan "),
        "{error}"
    );

    let _ = std::fs::remove_dir_all(&dir);
}
