//! `settle demo --scale small --json` as a real child process, on both shapes:
//! the embedded default (SQLite, in-process dispatcher and bank) and production
//! (PostgreSQL from `DATABASE_URL`, NATS JetStream from `NATS_URL`). Every check in
//! the report must be ok, every part of the run must be in it, and the numbers
//! must be the ones the stores hold (the bank's statement agrees with the ledger).
//! Outside CI the production shape is skipped when its servers are unreachable;
//! with `CI` set it fails.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::{Duration, Instant};

/// The parts every run reports, in order of appearance (prefixes).
const PARTS: [&str; 7] = [
    "accounts and funding",
    "channel transfers",
    "customer payments",
    "holds and safety rails",
    "fee settlement for ",
    "salary settlement",
    "dead letter and replay",
];

/// The invariant groups of DESIGN.md the report must cover.
const GROUPS: [&str; 6] = [
    "ledger (",
    "transfers (",
    "channel (",
    "fee settlement (",
    "salary deposits (",
    "event backbone (",
];

fn run_demo(extra: &[&str]) -> serde_json::Value {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["demo", "--scale", "small", "--json"])
        .args(extra)
        .output()
        .expect("settle runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the JSON report ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    eprintln!(
        "demo {extra:?} took {:.1}s (report says {}s)",
        started.elapsed().as_secs_f64(),
        report["seconds"]
    );
    let failed: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] != true)
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert!(
        output.status.success(),
        "exit status {:?} with every check ok; stderr: {stderr}",
        output.status
    );
    assert_eq!(report["ok"], true);
    report
}

fn assert_complete(report: &serde_json::Value) {
    let parts: Vec<&str> = report["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["name"].as_str().expect("part name"))
        .collect();
    for wanted in PARTS {
        assert!(
            parts.iter().any(|p| p.starts_with(wanted)),
            "no part {wanted:?} in {parts:?}"
        );
    }
    let checks = report["checks"].as_array().expect("checks");
    for group in GROUPS {
        assert!(
            checks
                .iter()
                .any(|c| c["group"].as_str().is_some_and(|g| g.starts_with(group))),
            "no checks of {group:?}"
        );
    }
    // The bank's statement was reconciled with the ledger for fees and salaries,
    // and it moved real money.
    let lines = report["reconciliation"].as_array().expect("reconciliation");
    assert!(lines.len() >= 3, "{lines:?}");
    for line in lines {
        assert_eq!(line["agrees"], true, "{line}");
        assert_eq!(line["bank_krw"], line["ledger_krw"], "{line}");
        assert!(line["bank_krw"].as_i64().unwrap() > 0, "{line}");
    }
    let salary = report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "salary settlement")
        .unwrap();
    let count = |what: &str| {
        salary["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == what)
            .and_then(|c| c[1].as_i64())
            .unwrap_or_else(|| panic!("no count {what:?} in {salary}"))
    };
    assert_eq!(count("users enrolled"), count("salary deposits"));
    assert!(count("deposits settled by next") > 0, "{salary}");
    assert!(count("deposits settled by legacy") > 0, "{salary}");
}

/// `host:port` of a URL such as `postgres://user@host:5432/db`.
fn reachable(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let Ok(mut addresses) = host_port.to_socket_addrs() else {
        return false;
    };
    addresses.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

#[test]
fn the_demo_at_small_scale_on_sqlite_passes_every_invariant() {
    let report = run_demo(&[]);
    assert_complete(&report);
    assert!(
        report["shape"]["database"]
            .as_str()
            .unwrap()
            .starts_with("SQLite")
    );
}

#[test]
fn the_demo_at_small_scale_on_postgres_and_nats_passes_every_invariant() {
    let database_url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_owned());
    let nats_url = std::env::var("NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    for url in [&database_url, &nats_url] {
        if !reachable(url) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set and {url} is unreachable"
            );
            eprintln!("skipping: {url} is unreachable");
            return;
        }
    }
    let report = run_demo(&["--database-url", &database_url, "--nats-url", &nats_url]);
    assert_complete(&report);
    assert!(
        report["shape"]["events"]
            .as_str()
            .unwrap()
            .starts_with("NATS")
    );
}
