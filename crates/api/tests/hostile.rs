//! Hostile bodies to every POST route of the route table: wrong types, huge and
//! fractional numbers, missing and unknown fields, deep nesting, 10 MB bodies,
//! invalid UTF-8, the wrong content type. Every answer is a 4xx in the JSON error
//! shape (never a 5xx, never a dropped connection), and nothing is written: the
//! api's tables, the ledger's totals and the routing flags are as before.

mod common;

use std::sync::OnceLock;

use axum::http::Method;
use common::{Backend, HOUSE, TestApp, id};
use proptest::prelude::*;
use serde_json::{Value, json};

const DAVE: &str = "0190a000-0000-7000-8000-0000000da4e1";

struct Target {
    path: String,
    key: String,
    template: Value,
}

/// Every POST route with a key allowed to call it (so the body is what gets
/// judged) and a valid body to spoil.
async fn targets(app: &TestApp, customer_key: &str, account: &str) -> Vec<Target> {
    let mut targets = Vec::new();
    for route in api::routes::table() {
        if route.method != Method::POST {
            continue;
        }
        let key = match route.roles.first() {
            Some(api::Role::Ops) => app.ops.clone(),
            Some(api::Role::Service) => app.service.clone(),
            Some(api::Role::Customer) => customer_key.to_owned(),
            None => app.ops.clone(),
        };
        let path = route
            .path
            .replace(
                "{id}",
                match route.path {
                    p if p.contains("dead-letters") => {
                        "api-test:0190a000-0000-7000-8000-000000000001"
                    }
                    p if p.contains("payroll") => "deposit-1",
                    p if p.contains("accounts") => account,
                    _ => "0190a000-0000-7000-8000-0000000000ff",
                },
            )
            .replace("{day}", "2026-11-20")
            .replace("{module}", "record")
            .replace("{user_id}", "0190a000-0000-7000-8000-000000000001");
        let request = route.request.map(|body| body.name());
        let template = match request.as_deref().unwrap_or("Empty") {
            "NewKey" => json!({ "role": "service" }),
            "NewAccount" => json!({ "id": id() }),
            "TransferInput" => {
                json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount": 1 })
            }
            "HoldInput" => {
                json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount_krw": 1 })
            }
            "PostHold" | "VoidHold" => json!({ "id": id() }),
            "NewChannelTransfer" => {
                json!({ "id": id(), "from_account_id": account, "to_account_id": HOUSE, "amount_krw": 1 })
            }
            "Cohort" => json!({ "percent": 10 }),
            "OwnerChange" => json!({ "customer_id": DAVE, "reason": "merged profiles" }),
            "Override" => json!({ "provider": "next" }),
            "ResolveRequest" => json!({ "reason": "paid by wire" }),
            "EnrolRequest" => {
                json!({ "user_id": "0190a000-0000-7000-8000-000000000001", "holder_name": "홍길동", "payout_account": "3333000000001" })
            }
            "ImportRequest" => json!({ "lines": [] }),
            "KeyRotation" | "ApprovalDecision" => json!({}),
            "Rejection" => json!({ "reason": "not now" }),
            "Empty" => json!({}),
            other => panic!("no template for request schema {other}"),
        };
        targets.push(Target {
            path,
            key,
            template,
        });
    }
    assert!(
        targets.len() >= 15,
        "the table has fewer POST routes than expected"
    );
    targets
}

/// Bodies over the limit go over a raw socket: the server answers 413 before
/// reading them, and a client that insists on writing all 10 MB first would see
/// the connection close instead of the answer.
async fn send_raw(
    app: &TestApp,
    target: &Target,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        target.path,
        target.key,
        body.len()
    );
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read_to_end(&mut answer),
    )
    .await;
    writing.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: no HTTP answer: {text:?}", target.path));
    let (headers, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}: error is not JSON: {headers}",
        target.path
    );
    // A chunked payload has its size lines around the JSON.
    let json_text = payload
        .find('{')
        .and_then(|start| payload.rfind('}').map(|end| &payload[start..=end]))
        .unwrap_or(payload);
    (
        status,
        serde_json::from_str(json_text).unwrap_or(Value::Null),
    )
}

async fn send(app: &TestApp, target: &Target, content_type: &str, body: Vec<u8>) -> u16 {
    if body.len() > api::ApiConfig::default().body_bytes_max {
        let (status, answer) = send_raw(app, target, content_type, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (413, Some("body_too_large")),
            "{}: {answer}",
            target.path
        );
        return status;
    }
    let response = app
        .http
        .post(app.url(&target.path))
        .bearer_auth(&target.key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{}: no answer: {error}", target.path));
    let (status, answer) = common::read(response).await;
    assert!(
        (400..500).contains(&status),
        "{} answered {status} to a hostile body: {answer}",
        target.path
    );
    status
}

async fn footprint(app: &TestApp) -> String {
    format!(
        "{} cohort={}",
        app.footprint().await,
        app.routing.cohort_percent().await.unwrap()
    )
}

struct Fixture {
    app: TestApp,
    targets: Vec<Target>,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let app = TestApp::start(backend).await?;
    let account = id();
    app.open_funded(DAVE, &account, 10_000).await;
    let customer = app.customer_key(DAVE).await;
    let targets = targets(&app, &customer, &account).await;
    Some(Fixture { app, targets })
}

fn deep(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth);
    body.push_str(&"]".repeat(depth));
    body.into_bytes()
}

async fn every_post_route_refuses_hostile_bodies_and_writes_nothing(backend: Backend) {
    let Some(Fixture { app, targets }) = fixture(backend).await else {
        return;
    };
    let before = footprint(&app).await;
    let json_type = "application/json";
    for target in &targets {
        let template = target.template.to_string();
        let mut bodies: Vec<(&str, Vec<u8>)> = vec![
            (json_type, vec![b'{'; 1]),
            (json_type, b"null".to_vec()),
            (json_type, b"[]".to_vec()),
            (json_type, b"\"text\"".to_vec()),
            (json_type, b"1e400".to_vec()),
            (json_type, deep(100_000)),
            (
                json_type,
                format!(
                    "{{\"a\":{}}}",
                    "{\"a\":".repeat(5_000) + "1" + &"}".repeat(5_000)
                )
                .into_bytes(),
            ),
            (json_type, vec![b' '; 10 * 1024 * 1024]),
            (json_type, {
                let mut big = b"{\"id\":\"".to_vec();
                big.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
                big.extend(b"\"}");
                big
            }),
            (json_type, b"{\"id\":\"\xff\xfe\xfd\"}".to_vec()),
            (
                json_type,
                [b"\xef\xbb\xbf".as_slice(), template.as_bytes()].concat(),
            ),
            ("text/plain", template.clone().into_bytes()),
            (
                "application/x-www-form-urlencoded",
                b"id=1&amount=2".to_vec(),
            ),
        ];
        // The template with one field spoiled, one removed, one too many.
        if let Value::Object(fields) = &target.template {
            for name in fields.keys() {
                for spoiled in [
                    json!(true),
                    json!([1, 2]),
                    json!({ "nested": { "deeper": [] } }),
                    json!(1.5),
                    json!(-1),
                    json!(u64::MAX),
                    json!("9223372036854775808"),
                ] {
                    if std::mem::discriminant(&spoiled) == std::mem::discriminant(&fields[name])
                        && !(spoiled.is_number() && fields[name].is_number())
                    {
                        continue;
                    }
                    // A number where a number goes is only hostile when out of range.
                    if spoiled.is_number() && fields[name].is_number() && spoiled == json!(-1) {
                        continue;
                    }
                    let mut body = fields.clone();
                    body.insert(name.clone(), spoiled);
                    bodies.push((json_type, Value::Object(body).to_string().into_bytes()));
                }
                let mut missing = fields.clone();
                missing.remove(name);
                if !missing.is_empty() || target.template != json!({}) {
                    bodies.push((json_type, Value::Object(missing).to_string().into_bytes()));
                }
            }
            let mut extra = fields.clone();
            extra.insert("zz_unknown".into(), json!(1));
            bodies.push((json_type, Value::Object(extra).to_string().into_bytes()));
        }
        for (content_type, body) in bodies {
            let preview = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            let status = send(&app, target, content_type, body).await;
            assert_ne!(status, 200, "{} accepted {preview}", target.path);
        }
    }
    assert_eq!(
        footprint(&app).await,
        before,
        "a hostile body wrote something"
    );
}

on_both!(
    hostile_bodies_sqlite,
    hostile_bodies_postgres,
    every_post_route_refuses_hostile_bodies_and_writes_nothing
);

/// Random JSON values and random bytes, property-tested against every POST route.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn shared_fixture() -> &'static (Fixture, String) {
    static FIXTURE: OnceLock<(Fixture, String)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let fixture = fixture(Backend::Sqlite).await.unwrap();
            let before = footprint(&fixture.app).await;
            (fixture, before)
        })
    })
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("amount".to_owned()),
                    Just("amount_krw".to_owned()),
                    Just("percent".to_owned()),
                    Just("provider".to_owned()),
                    Just("role".to_owned()),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_json_to_any_post_route_is_a_4xx_and_writes_nothing(
        route in 0usize..64,
        value in arbitrary_json(),
        spoil in any::<bool>(),
    ) {
        let (fixture, before) = shared_fixture();
        let target = &fixture.targets[route % fixture.targets.len()];
        // Random values merged into a valid template must still spoil it: the
        // template's first field gets a value of a different JSON type.
        let body = match (&target.template, &value) {
            (Value::Object(fields), Value::Object(extra)) if spoil => {
                let mut merged = fields.clone();
                merged.extend(extra.clone());
                merged.insert("zz_unknown".into(), Value::Bool(true));
                Value::Object(merged)
            }
            _ => value.clone(),
        };
        // A random object can happen to be valid for a lenient route; keep only
        // bodies the schema refuses: anything but a plain object, or one with a
        // field no schema has.
        let hostile = !body.is_object()
            || body.as_object().is_some_and(|m| m.keys().any(|k| !target.template.as_object().is_some_and(|t| t.contains_key(k)) && !["code", "flags", "user_data", "customer_id", "kind", "pending_id", "timeout_ms", "linked", "requested_at_ms"].contains(&k.as_str())) || m.is_empty() && target.template != json!({}));
        prop_assume!(hostile);
        runtime().block_on(async {
            send(&fixture.app, target, "application/json", body.to_string().into_bytes()).await;
            assert_eq!(&footprint(&fixture.app).await, before);
        });
    }

    #[test]
    fn random_bytes_to_any_post_route_are_a_4xx_and_write_nothing(
        route in 0usize..64,
        bytes in prop::collection::vec(any::<u8>(), 1..512),
    ) {
        let (fixture, before) = shared_fixture();
        let target = &fixture.targets[route % fixture.targets.len()];
        prop_assume!(serde_json::from_slice::<Value>(&bytes).map_or(true, |v| !v.is_object()));
        runtime().block_on(async {
            send(&fixture.app, target, "application/json", bytes).await;
            assert_eq!(&footprint(&fixture.app).await, before);
        });
    }
}
