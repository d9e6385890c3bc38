//! `settle serve` as a real child process: a key made by `settle keys create` on
//! the same database works against it, readiness sees the bank, an ops action is
//! audited under the key, `--roles` runs only what it names, and Ctrl-C (SIGINT)
//! stops every role with a clean exit. With `--require-approval`, a cohort change
//! waits for `settle approvals approve` by a second ops key; `settle keys rotate`
//! retires the old secret at once; `settle audit verify` holds.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

async fn bank_sim(database_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "bank-sim",
            "--port",
            "0",
            "--profile",
            "test",
            "--database-url",
            database_url,
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (child, format!("http://{address}"))
}

/// The installation's id secret the test's processes share.
const ID_SECRET: &str = "serve-test-id-secret-0123456789abcdef";

/// The installation's settle.toml: the bank is `settle bank-sim` (its URL comes
/// with `--bank-url`, which overrides the file's), the fee accounts are named.
const INSTALLATION: &str = r#"
[bank]
kind = "bank-sim"
url = "http://127.0.0.1:9"

[fees]
institution_code = "F202600001"
settlement_account = "1002000000001"
settlement_holder = "세틀주식회사"
corporate_account = "1002000000009"
corporate_holder = "세틀주식회사 법인"
"#;

/// Writes [`INSTALLATION`] once per test process; its path.
fn installation() -> String {
    let path = std::env::temp_dir().join(format!("settle-serve-{}.toml", std::process::id()));
    std::fs::write(&path, INSTALLATION).unwrap();
    path.display().to_string()
}

async fn serve(database_url: &str, bank_url: &str, roles: &str) -> (Child, String) {
    serve_with(database_url, bank_url, roles, &[]).await
}

async fn serve_with(
    database_url: &str,
    bank_url: &str,
    roles: &str,
    extra: &[&str],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        // serve names no house account by default: the payout account is given.
        .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
        .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .args(["--config", &installation()])
        .args([
            "serve",
            "--database-url",
            database_url,
            "--bank-url",
            bank_url,
            "--listen",
            "127.0.0.1:0",
            "--roles",
            roles,
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("settle serve: API on ") {
                return rest.split("/v1").next().unwrap().to_owned();
            }
        }
        panic!("settle serve ended before it listened");
    })
    .await
    .unwrap();
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

async fn interrupt_and_wait(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("settle serve stops within 30 s of Ctrl-C")
        .unwrap();
    assert!(exit.success(), "settle serve exited with {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_with_a_cli_key_audits_ops_actions_and_stops_on_ctrl_c() {
    let dir = std::env::temp_dir().join(format!("settle-serve-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("settle.db").display());
    let (_sim, bank_url) =
        bank_sim(&format!("sqlite://{}", dir.join("banksim.db").display())).await;

    let created = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "keys",
            "create",
            "--role",
            "ops",
            "--database-url",
            &database_url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    let (child, base) = serve(
        &database_url,
        &bank_url,
        "api,dispatcher,reconciler,expiry,fees,payroll",
    )
    .await;
    let http = reqwest::Client::new();
    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["checks"]["bank"], "ok");
    let me: serde_json::Value = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "ops");
    let response = http
        .post(format!("{base}/v1/providers/cohort"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "percent": 20 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let audit: serde_json::Value = http
        .get(format!("{base}/v1/audit"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["action"].as_str().unwrap(),
                row["key_id"].as_str().unwrap(),
            )
        })
        .collect();
    let key_id = created["key_id"].as_str().unwrap();
    // Each action twice: before it ran, and after with its outcome.
    assert_eq!(
        actions,
        vec![
            ("providers.cohort", key_id),
            ("providers.cohort", key_id),
            ("keys.create", "cli"),
            ("keys.create", "cli")
        ]
    );
    interrupt_and_wait(child).await;

    // A process with only the workers runs no API: nothing listens for it, and it
    // still stops cleanly.
    let worker = Command::new(env!("CARGO_BIN_EXE_settle"))
        // serve names no house account by default: the payout account is given.
        .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
        .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .args(["--config", &installation()])
        .args([
            "serve",
            "--database-url",
            &database_url,
            "--bank-url",
            &bank_url,
            "--roles",
            "dispatcher,reconciler,expiry",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    interrupt_and_wait(worker).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_refuses_to_start_without_an_id_secret_or_with_the_test_one() {
    let dir = std::env::temp_dir().join(format!("settle-serve-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("settle.db").display());
    for secret in [
        None,
        Some("too-short"),
        Some("settle-test-only-id-secret-00001"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_settle"));
        command
            .env_remove("SETTLE_ID_SECRET")
            .env_remove("SETTLE_ID_SECRET_FILE")
            .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
            .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
            .args([
                "serve",
                "--database-url",
                &database_url,
                "--listen",
                "127.0.0.1:0",
            ]);
        if let Some(secret) = secret {
            command.env("SETTLE_ID_SECRET", secret);
        }
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .expect("serve refuses at once")
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{secret:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("id_secret_refused"), "{secret:?}: {stderr}");
        assert!(stderr.contains("SETTLE_ID_SECRET"), "{secret:?}: {stderr}");
    }
    assert!(
        !dir.join("settle.db").exists(),
        "no database is touched before the secret is known"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn settle(args: &[&str], api_key: Option<&str>) -> (i32, serde_json::Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_settle"));
    command.args(args);
    if let Some(key) = api_key {
        command.env("SETTLE_API_KEY", key);
    }
    let output = command.output().await.unwrap();
    let stdout = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (
        output.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_action_waits_for_settle_approvals_approve_by_a_second_ops_key() {
    let dir = std::env::temp_dir().join(format!("settle-approvals-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("settle.db").display());
    let (_sim, bank_url) =
        bank_sim(&format!("sqlite://{}", dir.join("banksim.db").display())).await;
    let create = [
        "keys",
        "create",
        "--role",
        "ops",
        "--database-url",
        &database_url,
    ];
    let (code, maker, stderr) = settle(&create, None).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, checker, stderr) = settle(&create, None).await;
    assert_eq!(code, 0, "{stderr}");
    let (maker, checker) = (
        maker["key"].as_str().unwrap().to_owned(),
        checker["key"].as_str().unwrap().to_owned(),
    );
    let (child, base) = serve_with(
        &database_url,
        &bank_url,
        "api",
        &["--require-approval", "providers_cohort,fees_withdraw"],
    )
    .await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/v1/providers/cohort"))
        .bearer_auth(&maker)
        .json(&serde_json::json!({ "percent": 45 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let approval: serde_json::Value = response.json().await.unwrap();
    let id = approval["approval_id"].as_str().unwrap().to_owned();

    let (code, listed, stderr) =
        settle(&["approvals", "list", "--api-url", &base], Some(&checker)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(listed["items"][0]["approval_id"], id.as_str(), "{listed}");
    let approve = ["approvals", "approve", "--api-url", &base, "--id", &id];
    let (code, _, stderr) = settle(&approve, Some(&maker)).await;
    assert_eq!(code, 2, "the requester approved its own request: {stderr}");
    assert!(stderr.contains("self_approval"), "{stderr}");
    let (code, done, stderr) = settle(&approve, Some(&checker)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(done["state"], "done", "{done}");
    let (code, _, stderr) = settle(&approve, Some(&checker)).await;
    assert_eq!(code, 2, "approved twice: {stderr}");
    let flags: serde_json::Value = http
        .get(format!("{base}/v1/providers/flags"))
        .bearer_auth(&checker)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(flags["cohort_percent"], 45, "{flags}");

    // Rotation from the command line: the old secret is refused at once.
    let me: serde_json::Value = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&maker)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let maker_id = me["key_id"].as_str().unwrap().to_owned();
    let rotate = [
        "keys",
        "rotate",
        "--key-id",
        &maker_id,
        "--database-url",
        &database_url,
    ];
    let (code, rotated, stderr) = settle(&rotate, None).await;
    assert_eq!(code, 0, "{stderr}");
    let status = |key: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/v1/me"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(maker.clone()).await, 401);
    assert_eq!(
        status(rotated["key"].as_str().unwrap().to_owned()).await,
        200
    );
    let (code, verdict, stderr) =
        settle(&["audit", "verify", "--database-url", &database_url], None).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(verdict["intact"], true, "{verdict}");
    interrupt_and_wait(child).await;
    let _ = std::fs::remove_dir_all(&dir);
}
