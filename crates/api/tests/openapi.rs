//! The OpenAPI document is valid enough to trust (it parses, every operation has
//! responses, every `$ref` resolves, every error code is catalogued) and says
//! exactly what the running router serves: every documented path and method
//! answers (not 404/405), other methods on those paths are 405, and the table
//! that mounts the router and the document list the same operations. Plus the
//! public surface: health, readiness, metrics and the docs page.

mod common;

use std::collections::BTreeSet;

use common::{Backend, TestApp};
use serde_json::Value;

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref"
                    && let Some(target) = inner.as_str()
                {
                    out.push(target.to_owned());
                }
                refs(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    path.replace("{day}", "2026-11-20")
        .replace("{module}", "record")
        .replace("{customer_id}", "0190a000-0000-7000-8000-000000000001")
        .replace("{user_id}", "0190a000-0000-7000-8000-000000000001")
        .replace("{id}", "0190a000-0000-7000-8000-000000000002")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_and_matches_the_router() {
    let config = api::ApiConfig {
        key_requests_per_s_max: 100_000,
        ..api::ApiConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await.unwrap();
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string());

    // Every $ref resolves to a schema that exists.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(targets.len() > 40);
    for target in &targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("ref outside the schemas: {target}"));
        assert!(schemas.contains_key(name), "unresolved $ref {target}");
    }

    // Every operation has a success and its error responses, each with codes
    // from the catalogue and the status the catalogue gives them.
    let catalogue: Vec<(String, u64)> = doc["x-error-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap().to_owned(),
                c["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(catalogue.len(), api::error::CODES.len());
    let error_enum = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(error_enum, catalogue.len());
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success response"
            );
            assert!(op["operationId"].is_string() && op["summary"].is_string());
            for (status, response) in responses {
                for code in response["x-error-codes"].as_array().into_iter().flatten() {
                    let code = code.as_str().unwrap();
                    let listed = catalogue.iter().find(|(c, _)| c == code);
                    assert_eq!(
                        listed.map(|(_, s)| s.to_string()),
                        Some(status.clone()),
                        "{method} {path}: {code} under {status}"
                    );
                }
            }
            let parameters: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(parameters, api::openapi::path_parameters(path), "{path}");
            if op.get("security").is_some() {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} needs a key but documents no 401"
                );
            }
        }
    }

    // The table that mounts the router and the document list the same operations.
    let from_table: BTreeSet<(String, String)> = api::routes::table()
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let documented = operations(&doc);
    assert_eq!(from_table, documented);

    // And the running router serves exactly those: each documented operation is
    // routed (an unauthenticated call is 401 or answers; never 404/405), other
    // methods on the same paths are 405, and an undocumented path is 404.
    for (method, path) in &documented {
        let url = app.url(&concrete(path));
        let response = match method.as_str() {
            "GET" => app.http.get(&url).send().await.unwrap(),
            "POST" => app
                .http
                .post(&url)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap(),
            other => panic!("unexpected method {other}"),
        };
        let (status, body) = common::read(response).await;
        assert!(
            status != 404 || body["code"] != "route_not_found",
            "{method} {path} is documented but not routed"
        );
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        let mut methods_here: Vec<&str> = documented
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.as_str())
            .collect();
        methods_here.sort_unstable();
        for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if methods_here.contains(&other) {
                continue;
            }
            let response = app
                .http
                .request(other.parse().unwrap(), &url)
                .bearer_auth(&app.ops)
                .send()
                .await
                .unwrap();
            let (status, body) = common::read(response).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (405, Some("method_not_allowed")),
                "{other} {path} is routed but not documented"
            );
        }
    }
    for undocumented in ["/v1/nothing", "/v2/accounts", "/v1/accounts"] {
        let response = app
            .http
            .get(app.url(undocumented))
            .bearer_auth(&app.ops)
            .send()
            .await
            .unwrap();
        let (status, body) = common::read(response).await;
        let code = body["code"].as_str();
        assert!(
            (status, code) == (404, Some("route_not_found"))
                || (status, code) == (405, Some("method_not_allowed")),
            "{undocumented}: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_docs_need_no_key() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (status, body) =
        common::read(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = common::read(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["ready"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    for check in ["store", "ledger_store", "events_store", "payroll_store"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }

    // Some traffic, then the histogram and the domain counters are exposed.
    let (status, _) = app.get(&app.service, "/v1/me").await;
    assert_eq!(status, 200);
    app.open_funded("0190a000-0000-7000-8000-000000000e11", &common::id(), 1_000)
        .await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("api_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/me\""), "{text}");
    assert!(text.contains("api_requests_total"), "{text}");
    assert!(text.contains("ledger_transfers_total"), "{text}");

    let page = app.http.get(app.url("/docs")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "the docs page loads from elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_a_probe_fails() {
    let db = store::testing::sqlite().await;
    let probe: api::Probe =
        std::sync::Arc::new(|| Box::pin(async { Err("nats: connection refused".to_owned()) }));
    let handles = api::Handles {
        probes: vec![("nats".to_owned(), probe)],
        ..api::Handles::default()
    };
    let state = api::AppState::new(db.store.clone(), handles, api::ApiConfig::default())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve(listener, state, std::future::pending()));
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    // Without a key, no internal text: only that the check failed.
    assert_eq!(body["details"]["checks"]["nats"], "failed");
    assert_eq!(body["details"]["checks"]["store"], "ok");
    // A process without a role answers its routes with role_disabled.
    let key = api::auth::create_key(&db.store, api::Role::Ops, None, "test", 0)
        .await
        .unwrap()
        .key;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/fees/days"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("role_disabled"))
    );
    // An ops key this process knows sees why.
    let response = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["details"]["checks"]["nats"],
        "nats: connection refused"
    );
}
