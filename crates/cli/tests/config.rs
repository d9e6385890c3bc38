//! `settle config check` as an operator runs it: the documented example with
//! its secrets in the environment is fine (exit 0, a summary without a
//! secret); a broken file has every problem named by key path and code at
//! once (exit 2).

use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/settle.toml");

/// Secrets of the example installation (never in the file).
const SECRETS: [(&str, &str); 4] = [
    ("SETTLE_ID_SECRET", "config-test-id-secret-0123456789abcdef"),
    ("SETTLE_KFTC_CLIENT_ID", "client-id-for-the-test"),
    (
        "SETTLE_KFTC_CLIENT_SECRET",
        "kftc-client-secret-never-shown",
    ),
    ("SETTLE_KFTC_PASS_PHRASE", "pass-phrase-never-shown"),
];

fn check(config: &str, secrets: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_settle"));
    for (name, _) in SECRETS {
        command.env_remove(name);
    }
    command
        .env_remove("SETTLE_CONFIG")
        .envs(secrets.iter().copied())
        .args(["config", "check", "--config", config])
        .output()
        .unwrap()
}

#[test]
fn the_example_checks_out_and_its_summary_shows_no_secret() {
    let output = check(EXAMPLE, &SECRETS);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("configuration ok"), "{stdout}");
    assert!(stdout.contains("settlement 1002000000001"), "{stdout}");
    for (_, secret) in &SECRETS[1..] {
        assert!(!stdout.contains(secret), "{stdout}");
    }
}

#[test]
fn every_problem_of_a_broken_file_is_named_at_once() {
    let dir = std::env::temp_dir().join(format!("settle-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let broken = example
        .replace(
            "payout_account = \"1002000000021\"",
            "payout_account = \"1002000000009\"",
        )
        .replace(
            "institution_code = \"F202600001\"",
            "institution_code = \"F2\"",
        )
        .replace("listen = \"127.0.0.1:8000\"", "listen = \"nowhere\"");
    let path = dir.join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    // The KFTC secrets are missing too.
    let output = check(path.to_str().unwrap(), &SECRETS[..1]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    for named in [
        "payroll.payout_account",
        "[accounts_not_distinct]",
        "fees.institution_code",
        "[bad_institution_code]",
        "api.listen",
        "secrets.kftc_client_secret_file",
        "[secret_missing]",
    ] {
        assert!(stdout.contains(named), "{named} not in:\n{stdout}");
    }
    let stderr: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(stderr["code"], "config_invalid");

    // A key the file does not know, at depth, is refused by name.
    let unknown = example.replace("[bank.kftc]\n", "[bank.kftc]\nclient_secret = \"x\"\n");
    std::fs::write(&path, unknown).unwrap();
    let output = check(path.to_str().unwrap(), &SECRETS);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("bank.kftc.client_secret") && stdout.contains("[unknown_key]"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
