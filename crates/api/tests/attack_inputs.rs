//! Unknown fields at every depth (issue 15, item 4), over real HTTP on SQLite and
//! PostgreSQL. For every POST route of the route table a body is generated from the
//! route's request schema in the OpenAPI document — every property present, nested
//! objects filled in — and then spoiled with one unknown field at each object in it
//! (the top level, `flags`, …). Each spoiled body is refused as `invalid_json`
//! naming the unknown field — a refusal the document lists for the route — and
//! nothing is written. A typo such as
//! `debit_must_not_exceed_credits` can no longer create an account without
//! overdraft protection.

mod common;

use axum::http::Method;
use common::{Backend, TestApp, id};
use serde_json::{Map, Value, json};

/// A value of `schema`'s type (resolving `$ref`s): every property of an object,
/// the first value of an enum.
fn fill(schema: &Value, components: &Map<String, Value>) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        return fill(&components[name], components);
    }
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    // An `Option` is `anyOf [schema, null]`; an enum with documented variants is
    // `oneOf` consts: the first alternative that is not null.
    for choice in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(choice).and_then(Value::as_array) {
            let first = options.iter().find(|o| o["type"] != "null");
            return first.map_or(Value::Null, |o| fill(o, components));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(fields) = fill(part, components) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds.first().cloned().unwrap_or(Value::Null),
        Some(kind) => kind.clone(),
        None if schema.get("properties").is_some() => json!("object"),
        None => Value::Null,
    };
    match kind.as_str() {
        Some("object") => {
            let mut fields = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    fields.insert(name.clone(), fill(property, components));
                }
            }
            Value::Object(fields)
        }
        Some("array") => json!([]),
        Some("integer") => json!(1),
        Some("number") => json!(1),
        Some("boolean") => json!(false),
        Some("string") => json!(id()),
        _ => Value::Null,
    }
}

/// Every object inside `value` (the root included), as JSON pointers.
fn object_paths(value: &Value, at: &str, paths: &mut Vec<String>) {
    if let Value::Object(fields) = value {
        paths.push(at.to_owned());
        for (name, inner) in fields {
            object_paths(inner, &format!("{at}/{name}"), paths);
        }
    }
}

fn concrete(path: &str) -> String {
    let id = match path {
        p if p.contains("dead-letters") => "api-test:0190a000-0000-7000-8000-000000000001",
        p if p.contains("payroll") => "deposit-1",
        _ => "0190a000-0000-7000-8000-0000000000ff",
    };
    path.replace("{id}", id)
        .replace("{day}", "2026-11-20")
        .replace("{module}", "record")
        .replace("{user_id}", "0190a000-0000-7000-8000-000000000001")
}

async fn every_post_route_refuses_unknown_fields_at_every_depth(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let customer = app
        .customer_key("0190a000-0000-7000-8000-00000000a11c")
        .await;
    let document = api::openapi::document();
    let components = document["components"]["schemas"]
        .as_object()
        .unwrap()
        .clone();
    let footprint = app.footprint().await;
    let (mut routes, mut bodies, mut nested) = (0, 0, 0);
    for route in api::routes::table() {
        if route.method != Method::POST {
            continue;
        }
        routes += 1;
        let key = match route.roles.first() {
            Some(api::Role::Service) => app.service.clone(),
            Some(api::Role::Customer) => customer.clone(),
            _ => app.ops.clone(),
        };
        let schema = match route.request {
            Some(body) => components[&body.name()].clone(),
            None => json!({ "type": "object", "properties": {} }),
        };
        // The refusal below is one the document lists for this route.
        let refusals = &document["paths"][route.path]["post"]["responses"]["400"];
        assert!(
            refusals["x-error-codes"]
                .as_array()
                .is_some_and(|codes| codes.iter().any(|c| c == "invalid_json")),
            "{} does not document 400 invalid_json",
            route.path
        );
        let valid = fill(&schema, &components);
        let mut paths = Vec::new();
        object_paths(&valid, "", &mut paths);
        for at in paths {
            let mut body = valid.clone();
            body.pointer_mut(&at)
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert("zz_unknown_field".into(), json!(true));
            bodies += 1;
            nested += usize::from(!at.is_empty());
            let (status, answer) = app.post(&key, &concrete(route.path), body.clone()).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (400, Some("invalid_json")),
                "{} with an unknown field at {at:?}: {body}: {answer}",
                route.path
            );
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("zz_unknown_field"),
                "{}: {answer}",
                route.path
            );
        }
    }
    assert!(routes >= 15, "only {routes} POST routes");
    assert!(
        nested >= 1,
        "no nested object was spoiled ({bodies} bodies)"
    );
    assert_eq!(
        app.footprint().await,
        footprint,
        "a refused body wrote something"
    );
}
on_both!(
    sqlite_every_post_route_refuses_unknown_fields_at_every_depth,
    postgres_every_post_route_refuses_unknown_fields_at_every_depth,
    every_post_route_refuses_unknown_fields_at_every_depth
);

async fn a_misspelt_flag_creates_no_account(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let account = id();
    let (status, body) = app
        .post(
            &app.service,
            "/v1/accounts",
            json!({ "id": account, "code": 1, "flags": { "debit_must_not_exceed_credits": true } }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (status, _) = app
        .get(&app.service, &format!("/v1/accounts/{account}"))
        .await;
    assert_eq!(status, 404, "no account was created");
}
on_both!(
    sqlite_a_misspelt_flag_creates_no_account,
    postgres_a_misspelt_flag_creates_no_account,
    a_misspelt_flag_creates_no_account
);
