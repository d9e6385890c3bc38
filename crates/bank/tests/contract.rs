//! Contract fixtures for both connectors: `tests/fixtures/next/*.json` for the KFTC
//! connector (written from the public KFTC open banking v2.0 specification) and
//! `tests/fixtures/legacy/*.json` for the NH-style one (written from the public NH
//! developer-centre pages; a fixture's `notes` says what is assumed). One
//! request/answer pair per endpoint and answer class. Each fixture is checked twice:
//! - against the connector: it builds exactly the fixture's request from the
//!   fixture's call, and reads the fixture's answer as the fixture expects;
//! - against the simulator, over real HTTP: sent the fixture's request (KFTC: with
//!   a token from its token endpoint), it answers the fixture's status and shape,
//!   with the same codes and values (ids, times and messages aside).

use std::path::PathBuf;
use std::sync::Arc;

use bank::providers::legacy::nh_calls;
use bank::providers::next::kftc_calls;
use bank::providers::next::token::Secret;
use bank::sim::{
    FaultRates, MaintenanceWindow, OpenAccount, PPM_ALWAYS, Profile, SimConfig, Simulator,
};
use bank::types::{TransferInquiry, TransferKind, TransferOutcome, TransferRequest};
use bank::{
    AccountNumber, BankError, BankTranId, HolderName, KftcSettings, LegacySettings, TranDate,
};
use money::{Krw, TestClock, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

/// 2025-03-01 10:15:30 KST, the `tran_dtime` every fixture carries.
const NOW_MS: i64 = 1_740_791_730_000;
const OPERATING: &str = "1002000000001";
const PAYEE: &str = "1002000000002";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    name: String,
    endpoint: String,
    class: String,
    /// What the fixture assumes beyond the public pages.
    #[serde(default)]
    notes: Option<String>,
    call: Value,
    request: WireCall,
    answer: Answer,
    expect: Value,
    sim: SimSetup,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCall {
    method: String,
    path: String,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    query: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    status: u16,
    body: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSetup {
    #[serde(default)]
    rename: Option<(String, String)>,
    #[serde(default)]
    freeze: Option<String>,
    #[serde(default)]
    operating_balance_krw: Option<i64>,
    #[serde(default)]
    payee_balance_krw: Option<i64>,
    #[serde(default)]
    maintenance: bool,
    #[serde(default)]
    rate_limited: bool,
    #[serde(default)]
    server_error: bool,
    #[serde(default)]
    bad_token: bool,
    #[serde(default)]
    prior: Option<String>,
}

fn fixtures() -> Vec<Fixture> {
    fixtures_of("next")
}

fn fixtures_of(provider: &str) -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider);
    let mut all: Vec<Fixture> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

fn fixture(provider: &str, name: &str) -> Fixture {
    fixtures_of(provider)
        .into_iter()
        .find(|f| f.name == name)
        .unwrap()
}

fn field<T: serde::de::DeserializeOwned>(call: &Value, key: &str) -> T {
    serde_json::from_value(call[key].clone()).unwrap()
}

/// Checks a connector's reading of the answer against the fixture's `expect`.
fn check_expect(f: &Fixture, read: Result<Value, BankError>) {
    match (f.expect.get("error"), read) {
        (Some(code), Err(error)) => {
            assert_eq!(
                error.code(),
                code.as_str().unwrap(),
                "{}: {error:?}",
                f.name
            );
            assert_eq!(error.class().name(), f.class, "{}: the class", f.name);
        }
        (None, Ok(value)) => assert_eq!(value, f.expect, "{}", f.name),
        (expected, got) => panic!("{}: expected {expected:?}, read {got:?}", f.name),
    }
}

#[test]
fn the_connector_builds_each_fixture_request_and_reads_each_answer_as_its_class() {
    let settings = KftcSettings::simulator();
    let now = Timestamp::from_unix_ms(NOW_MS);
    let all = fixtures();
    assert!(all.len() >= 15, "{} fixtures", all.len());
    for f in &all {
        let status = f.answer.status;
        let answer = serde_json::to_vec(&f.answer.body).unwrap();
        let (built, read) = match f.endpoint.as_str() {
            "deposit" | "withdraw" => {
                let t: TransferRequest = field(&f.call, "transfer");
                if f.endpoint == "deposit" {
                    let built = kftc_calls::deposit(&settings, &t, now).unwrap();
                    let read = kftc_calls::parse_deposit(&t, status, &answer);
                    (built, read.map(|_| json!({"ok": true})))
                } else {
                    let built = kftc_calls::withdraw(&settings, &t, now).unwrap();
                    let read = kftc_calls::parse_withdraw(&t, status, &answer);
                    (built, read.map(|_| json!({"ok": true})))
                }
            }
            "result" => {
                let t: TransferRequest = field(&f.call, "transfer");
                let kind: TransferKind = field(&f.call, "kind");
                let inquiry = TransferInquiry::of(kind, &t);
                let built = kftc_calls::result(&inquiry, now).unwrap();
                let read =
                    kftc_calls::parse_result(&inquiry, status, &answer).map(
                        |outcome| match outcome {
                            bank::types::TransferOutcome::Succeeded { .. } => {
                                json!({"outcome": "succeeded"})
                            }
                            bank::types::TransferOutcome::Failed { code, .. } => {
                                json!({"outcome": "failed", "code": code})
                            }
                        },
                    );
                (built, read)
            }
            "balance" | "real_name" | "transactions" => {
                let account: AccountNumber = field(&f.call, "account");
                let id: BankTranId = field(&f.call, "id");
                match f.endpoint.as_str() {
                    "balance" => (
                        kftc_calls::balance(&settings, &account, &id, now).unwrap(),
                        kftc_calls::parse_balance(&id, status, &answer)
                            .map(|b| json!({"balance_krw": b.get()})),
                    ),
                    "real_name" => (
                        kftc_calls::real_name(&settings, &account, &id, now).unwrap(),
                        kftc_calls::parse_real_name(&id, status, &answer)
                            .map(|h| json!({"holder_name": h.as_str()})),
                    ),
                    _ => {
                        let dates = (field::<TranDate>(&f.call, "from"), field(&f.call, "to"));
                        (
                            kftc_calls::transactions(&settings, &account, dates, None, &id, now)
                                .unwrap(),
                            kftc_calls::parse_transactions(&id, status, &answer)
                                .map(|page| json!({"lines": page.lines.len()})),
                        )
                    }
                }
            }
            other => panic!("{}: unknown endpoint {other}", f.name),
        };
        assert_eq!(built.path, f.request.path, "{}", f.name);
        let method = match built.method {
            bank::providers::WireMethod::PostJson => "POST",
            bank::providers::WireMethod::GetQuery => "GET",
        };
        assert_eq!(method, f.request.method, "{}", f.name);
        let expected_body = f.request.body.clone().or(f.request.query.clone()).unwrap();
        assert_eq!(built.body, expected_body, "{}: the request differs", f.name);
        assert!(
            built.authorized,
            "{}: every KFTC call carries the token",
            f.name
        );
        check_expect(f, read);
    }
}

// ---- the simulator side ----

struct RunningSim {
    base_url: String,
    http: reqwest::Client,
    _db: store::testing::TestDb,
}

async fn start_sim(setup: &SimSetup) -> RunningSim {
    let db = store::testing::sqlite().await;
    let mut config = SimConfig::for_profile(Profile::Test, 7);
    if setup.maintenance {
        config.maintenance = Some(MaintenanceWindow {
            start_minute_kst: 0,
            end_minute_kst: 24 * 60,
        });
    }
    if setup.rate_limited {
        config.rate_limited_until_ms = Some(i64::MAX);
    }
    if setup.server_error {
        config.faults = FaultRates {
            server_error_before_commit_ppm: PPM_ALWAYS,
            ..FaultRates::default()
        };
    }
    let clock = Arc::new(TestClock::at(Timestamp::from_unix_ms(NOW_MS)));
    let sim = Simulator::open(db.store.clone(), config, clock)
        .await
        .unwrap();
    let open = |number: &str, holder: &str, balance: i64| OpenAccount {
        account_number: AccountNumber::new(number).unwrap(),
        holder_name: HolderName::new(holder).unwrap(),
        balance_krw: Krw::new(balance),
    };
    let operating = setup.operating_balance_krw.unwrap_or(10_000_000);
    sim.open_account(&open(OPERATING, "세틀주식회사", operating))
        .await
        .unwrap();
    let payee = setup.payee_balance_krw.unwrap_or(0);
    sim.open_account(&open(PAYEE, "김민지", payee))
        .await
        .unwrap();
    if let Some((account, holder)) = &setup.rename {
        let account = AccountNumber::new(account).unwrap();
        sim.rename_holder(&account, &HolderName::new(holder).unwrap())
            .await
            .unwrap();
    }
    if let Some(account) = &setup.freeze {
        sim.set_frozen(&AccountNumber::new(account).unwrap(), true)
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(bank::sim::serve_simulator(
        sim,
        listener,
        std::future::pending(),
    ));
    RunningSim {
        base_url,
        http: reqwest::Client::new(),
        _db: db,
    }
}

impl RunningSim {
    async fn token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/oauth/2.0/token", self.base_url))
            .form(&[
                ("client_id", "settle"),
                ("client_secret", bank::SIMULATOR_CLIENT_SECRET),
                ("scope", "oob"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["token_type"], "Bearer", "{answer}");
        assert_eq!(answer["expires_in"], 90 * 24 * 60 * 60);
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn send(&self, call: &WireCall, token: &str) -> (u16, Value) {
        self.send_with(call, Some(token)).await
    }

    async fn send_with(&self, call: &WireCall, token: Option<&str>) -> (u16, Value) {
        let url = format!("{}{}", self.base_url, call.path);
        let builder = match call.method.as_str() {
            "POST" => self.http.post(url).json(call.body.as_ref().unwrap()),
            "GET" => self.http.get(url).query(call.query.as_ref().unwrap()),
            other => panic!("method {other}"),
        };
        let builder = match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        };
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// Blanks what differs on every call (the centre's id and time, free text).
fn normalized(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    if matches!(
                        key.as_str(),
                        "api_tran_id"
                            | "api_tran_dtm"
                            | "rsp_message"
                            | "bank_rsp_message"
                            | "Rsms"
                            | "OrgRsms"
                    ) {
                        *field = Value::String(String::new());
                    } else {
                        walk(field);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_each_fixture_request_in_the_fixture_shape_over_http() {
    for f in fixtures() {
        let sim = start_sim(&f.sim).await;
        let token = if f.sim.bad_token {
            "not-a-token-of-this-bank".to_owned()
        } else {
            sim.token().await
        };
        if let Some(prior) = &f.sim.prior {
            let prior = fixture("next", prior);
            sim.send(&prior.request, &token).await;
        }
        let (status, body) = sim.send(&f.request, &token).await;
        assert_eq!(status, f.answer.status, "{}: status, answer {body}", f.name);
        let api_tran_id = body["api_tran_id"].as_str().unwrap_or_default().to_owned();
        assert!(
            !api_tran_id.is_empty() && api_tran_id.len() <= 40,
            "{}: api_tran_id {api_tran_id:?}",
            f.name
        );
        assert_eq!(
            normalized(body),
            normalized(f.answer.body.clone()),
            "{}: the simulator's answer differs from the fixture",
            f.name
        );
    }
}

// ---- the NH-style (legacy) connector ----

/// Reads one legacy fixture's answer with the connector; returns what it built.
fn legacy_connector_reads(f: &Fixture) -> (bank::providers::WireRequest, Result<Value, BankError>) {
    let mut settings = LegacySettings::simulator();
    if let Some(token) = f.call.get("access_token").and_then(Value::as_str) {
        settings.access_token = Secret::new(token);
    }
    let now = Timestamp::from_unix_ms(NOW_MS);
    let (status, answer) = (f.answer.status, serde_json::to_vec(&f.answer.body).unwrap());
    let ok = |_| json!({"ok": true});
    match f.endpoint.as_str() {
        "deposit" => {
            let t: TransferRequest = field(&f.call, "transfer");
            let read = nh_calls::parse_deposit(&settings, &t, status, &answer).map(ok);
            (nh_calls::deposit(&settings, &t, now).unwrap(), read)
        }
        "withdraw" => {
            let t: TransferRequest = field(&f.call, "transfer");
            let read = nh_calls::parse_withdraw(&settings, &t, status, &answer).map(ok);
            (nh_calls::withdraw(&settings, &t, now).unwrap(), read)
        }
        "result" => {
            let t: TransferRequest = field(&f.call, "transfer");
            let id: BankTranId = field(&f.call, "id");
            let inquiry = TransferInquiry::of(field(&f.call, "kind"), &t);
            let read =
                nh_calls::parse_result(&settings, &inquiry, &id, status, &answer).map(|outcome| {
                    match outcome {
                        TransferOutcome::Succeeded { .. } => json!({"outcome": "succeeded"}),
                        TransferOutcome::Failed { code, .. } => {
                            json!({"outcome": "failed", "code": code})
                        }
                    }
                });
            (
                nh_calls::result(&settings, &inquiry, &id, now).unwrap(),
                read,
            )
        }
        _ => legacy_inquiry_reads(f, &settings, now, status, &answer),
    }
}

fn legacy_inquiry_reads(
    f: &Fixture,
    settings: &LegacySettings,
    now: Timestamp,
    status: u16,
    answer: &[u8],
) -> (bank::providers::WireRequest, Result<Value, BankError>) {
    let account: AccountNumber = field(&f.call, "account");
    let id: BankTranId = field(&f.call, "id");
    match f.endpoint.as_str() {
        "balance" => (
            nh_calls::balance(settings, &account, &id, now).unwrap(),
            nh_calls::parse_balance(settings, &account, &id, status, answer)
                .map(|b| json!({"balance_krw": b.get()})),
        ),
        "holder" => (
            nh_calls::holder(settings, &account, &id, now).unwrap(),
            nh_calls::parse_holder(settings, &account, &id, status, answer)
                .map(|h| json!({"holder_name": h.as_str()})),
        ),
        "history" => {
            let dates = (field::<TranDate>(&f.call, "from"), field(&f.call, "to"));
            let page_no: u32 = field(&f.call, "page_no");
            (
                nh_calls::history(settings, &account, dates, page_no, &id, now).unwrap(),
                nh_calls::parse_history(settings, page_no, &id, status, answer)
                    .map(|page| json!({"lines": page.lines.len(), "next_page": page.next_page})),
            )
        }
        other => panic!("{}: unknown endpoint {other}", f.name),
    }
}

#[test]
fn the_legacy_connector_builds_each_fixture_request_and_reads_each_answer_as_its_class() {
    let all = fixtures_of("legacy");
    assert!(all.len() >= 15, "{} fixtures", all.len());
    let endpoints: std::collections::BTreeSet<&str> =
        all.iter().map(|f| f.endpoint.as_str()).collect();
    assert_eq!(endpoints.len(), 6, "{endpoints:?}");
    for class in ["success", "refused", "transient", "unknown"] {
        assert!(all.iter().any(|f| f.class == class), "no {class} fixture");
    }
    for f in &all {
        if f.endpoint == "result" {
            // The inquiry is not on the public pages: its fixtures say so.
            assert!(
                f.notes.as_deref().is_some_and(|n| n.contains("assumed")),
                "{}",
                f.name
            );
        }
        let (built, read) = legacy_connector_reads(f);
        assert_eq!(built.path, f.request.path, "{}", f.name);
        assert_eq!(f.request.method, "POST", "{}: NH calls are POSTs", f.name);
        assert_eq!(
            Some(&built.body),
            f.request.body.as_ref(),
            "{}: the request differs",
            f.name
        );
        check_expect(f, read);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_each_legacy_fixture_request_in_the_fixture_shape_over_http() {
    for f in fixtures_of("legacy") {
        let sim = start_sim(&f.sim).await;
        if let Some(prior) = &f.sim.prior {
            sim.send_with(&fixture("legacy", prior).request, None).await;
        }
        let (status, body) = sim.send_with(&f.request, None).await;
        assert_eq!(status, f.answer.status, "{}: status, answer {body}", f.name);
        assert_eq!(
            normalized(body),
            normalized(f.answer.body.clone()),
            "{}: the simulator's answer differs from the fixture",
            f.name
        );
    }
}
