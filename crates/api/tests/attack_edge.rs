//! The HTTP edge under attack (issue 15, items 9–11), over real HTTP on SQLite and
//! PostgreSQL: half-open and idle connections are dropped and capped, callers
//! without a known key are rate-limited, 401 says how to authenticate, the role is
//! checked before the Idempotency-Key, idempotency records are pruned, `/readyz`
//! is right on both backends and shows no internals, and a `requested_at_ms` far in
//! the future is refused.

mod common;

use std::time::{Duration, Instant};

use api::ApiConfig;
use common::{Backend, HOUSE, TestApp, id};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Half a request: a request line and one header, never the blank line.
async fn half_open(address: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .ok()?;
    Some(stream)
}

/// Whether the server closed `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0_u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

fn now_ms() -> i64 {
    use money::Clock;
    money::SystemClock.now().unix_ms()
}

fn edge_config() -> ApiConfig {
    ApiConfig {
        header_read_timeout_ms: 1_000,
        request_timeout_ms: 1_000,
        idle_timeout_ms: 2_000,
        ..ApiConfig::default()
    }
}

async fn eleven_hundred_half_open_connections_do_not_stop_healthz(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, edge_config()).await else {
        return;
    };
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut attackers = Vec::with_capacity(1_100);
    for _ in 0..1_100 {
        if let Some(stream) = half_open(&address).await {
            attackers.push(stream);
        }
    }
    assert_eq!(
        attackers.len(),
        1_100,
        "the attacker's connections were all accepted by the kernel"
    );
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client.get(app.url("/healthz")).send().await;
    let waited = started.elapsed();
    assert_eq!(
        response.map(|r| r.status().as_u16()).ok(),
        Some(200),
        "/healthz answered within 10 s under 1,100 half-open connections"
    );
    assert!(waited < Duration::from_secs(5), "/healthz took {waited:?}");
    // The server drops a half-sent request after the header-read timeout.
    let mut first = attackers.swap_remove(0);
    assert!(
        closed_within(&mut first, Duration::from_secs(5)).await,
        "a half-open connection was still open 5 s after the 1 s header-read timeout"
    );
}
on_both!(
    sqlite_eleven_hundred_half_open_connections_do_not_stop_healthz,
    postgres_eleven_hundred_half_open_connections_do_not_stop_healthz,
    eleven_hundred_half_open_connections_do_not_stop_healthz
);

async fn connections_over_the_cap_wait_and_idle_ones_are_closed(backend: Backend) {
    let config = ApiConfig {
        connections_max: 4,
        ..edge_config()
    };
    let Some(app) = TestApp::start_with(backend, config).await else {
        return;
    };
    let address = app.base.trim_start_matches("http://").to_owned();
    // A kept-alive connection that sent one whole request and then went quiet.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0_u8; 512];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let mut holders = Vec::new();
    for _ in 0..8 {
        holders.push(half_open(&address).await.unwrap());
    }
    // Over the cap, /healthz waits for a slot; the header-read timeout frees them.
    let started = Instant::now();
    let status = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(app.url("/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(200), "after {:?}", started.elapsed());
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "an idle kept-alive connection outlived the 2 s idle timeout"
    );
}
on_both!(
    sqlite_connections_over_the_cap_wait_and_idle_ones_are_closed,
    postgres_connections_over_the_cap_wait_and_idle_ones_are_closed,
    connections_over_the_cap_wait_and_idle_ones_are_closed
);

async fn unknown_keys_are_rate_limited_and_401_names_the_scheme(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    // Only failures count: thirty fresh, valid keys from one address all get in.
    for n in 0..30 {
        let key = app
            .customer_key(&format!("0190a000-0000-7000-8000-0000000c{n:04}"))
            .await;
        let (status, body) = app.get(&key, "/v1/me").await;
        assert_eq!(status, 200, "fresh key {n}: {body}");
    }
    // The ops key is in use before the guessing starts (so this process knows it).
    let (status, _) = app.get(&app.ops, "/v1/me").await;
    assert_eq!(status, 200);
    let response = app.http.get(app.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer realm=\"settle\"")
    );
    let mut limited = 0;
    for n in 0..60 {
        let response = app
            .http
            .get(app.url("/v1/me"))
            .bearer_auth(format!("settle_guess_{n}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            assert!(response.headers().get("retry-after").is_some());
            limited += 1;
        } else {
            assert_eq!(status, 401);
        }
        let (_, body) = common::read(response).await;
        assert!(body["code"].is_string(), "{body}");
    }
    assert!(limited >= 30, "only {limited} of 60 guesses were limited");
    // A key in use is not held back by the strangers' limit.
    let (status, body) = app.get(&app.ops, "/v1/me").await;
    assert_eq!(status, 200, "{body}");
}
on_both!(
    sqlite_unknown_keys_are_rate_limited_and_401_names_the_scheme,
    postgres_unknown_keys_are_rate_limited_and_401_names_the_scheme,
    unknown_keys_are_rate_limited_and_401_names_the_scheme
);

async fn the_role_is_checked_before_the_idempotency_key(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let customer = app
        .customer_key("0190a000-0000-7000-8000-00000000a11c")
        .await;
    let footprint = app.footprint().await;
    for idempotency_key in ["", "k".repeat(300).as_str(), "ops-only-1"] {
        let response = app
            .http
            .post(app.url("/v1/keys"))
            .bearer_auth(&customer)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "role": "ops" }))
            .send()
            .await
            .unwrap();
        let (status, body) = common::read(response).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{idempotency_key:?}: {body}"
        );
    }
    assert_eq!(
        app.footprint().await,
        footprint,
        "no idempotency row was claimed"
    );
}
on_both!(
    sqlite_the_role_is_checked_before_the_idempotency_key,
    postgres_the_role_is_checked_before_the_idempotency_key,
    the_role_is_checked_before_the_idempotency_key
);

async fn idempotency_records_are_pruned_after_the_retention(backend: Backend) {
    let config = ApiConfig {
        idempotency_retention_ms: 300,
        ..ApiConfig::default()
    };
    let Some(app) = TestApp::start_with(backend, config).await else {
        return;
    };
    let account = id();
    app.open_funded("0190a000-0000-7000-8000-00000000a11c", &account, 0)
        .await;
    let transfer = json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount": 10 });
    let (status, _, replayed) = app
        .post_idempotent(&app.service, "/v1/transfers", "fund-1", transfer.clone())
        .await;
    assert_eq!((status, replayed), (201, false));
    let (_, _, replayed) = app
        .post_idempotent(&app.service, "/v1/transfers", "fund-1", transfer.clone())
        .await;
    assert!(replayed, "within the retention the answer is replayed");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The next idempotent request prunes; the old key then runs afresh, and the
    // ledger's own id keeps it from moving money twice.
    let (status, body, replayed) = app
        .post_idempotent(&app.service, "/v1/transfers", "fund-1", transfer)
        .await;
    assert_eq!(
        (status, replayed, body["result"].as_str()),
        (200, false, Some("exists")),
        "{body}"
    );
    let (_, balance) = app
        .get(&app.service, &format!("/v1/accounts/{account}/balance"))
        .await;
    assert_eq!(balance["balance_krw"], 10);
}
on_both!(
    sqlite_idempotency_records_are_pruned_after_the_retention,
    postgres_idempotency_records_are_pruned_after_the_retention,
    idempotency_records_are_pruned_after_the_retention
);

async fn readyz_is_ready_on_both_backends(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(
        (status, body["ready"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    for (_, check) in body["checks"].as_object().unwrap() {
        assert_eq!(check, "ok", "{body}");
    }
}
on_both!(
    sqlite_readyz_is_ready_on_both_backends,
    postgres_readyz_is_ready_on_both_backends,
    readyz_is_ready_on_both_backends
);

async fn a_transfer_dated_in_the_year_10000_is_refused(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let account = id();
    app.open_funded("0190a000-0000-7000-8000-00000000a11c", &account, 0)
        .await;
    let footprint = app.footprint().await;
    // 10000-01-01T00:00:00Z.
    let far = 253_402_300_800_000_i64;
    let soon = now_ms() + 5 * 60_000;
    for requested_at_ms in [far, soon] {
        let (status, body) = app
            .post(
                &app.service,
                "/v1/transfers",
                json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount": 10, "requested_at_ms": requested_at_ms }),
            )
            .await;
        assert_eq!(
            (status, body["details"]["reason"].as_str()),
            (400, Some("requested_at_in_future")),
            "{body}"
        );
    }
    assert_eq!(app.footprint().await, footprint);
    // A few seconds of skew is fine.
    let (status, body) = app
        .post(
            &app.service,
            "/v1/transfers",
            json!({ "id": id(), "debit_account_id": HOUSE, "credit_account_id": account, "amount": 10, "requested_at_ms": now_ms() + 2_000 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}
on_both!(
    sqlite_a_transfer_dated_in_the_year_10000_is_refused,
    postgres_a_transfer_dated_in_the_year_10000_is_refused,
    a_transfer_dated_in_the_year_10000_is_refused
);
