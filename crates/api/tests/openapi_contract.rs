//! The OpenAPI document is the contract (issue 15, item 12): for random *valid*
//! requests to every route of the route table — bodies generated from the
//! document's own request schemas (themselves derived from the Rust types),
//! path and query parameters from the values each route takes — sent over real
//! HTTP to a whole server on SQLite and PostgreSQL, every answer's status is one
//! the document lists for that route and its body validates against the schema
//! listed for that status (`jsonschema`, draft 2020-12).
//!
//! Each generated body is first checked against the document's request schema,
//! so the generator cannot drift from the document either. A route of the table
//! without a parameter generator here fails the test (see [`params`]).

mod common;

use std::collections::BTreeMap;

use common::{Backend, HOUSE, TestApp, id};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// Cases per route, pass and backend: ~50 routes × 2 passes × 4 requests run in
/// seconds.
const CASES_PER_ROUTE: u32 = 4;
/// Passes over the table: the second meets what the first made (keys, accounts,
/// holds, fee runs, approvals), so list answers hold items to check.
const PASSES: usize = 2;

/// A fee day with items (recorded before the requests).
const RECORDED_DAY: &str = "2026-11-19";
const CUSTOMER: &str = "0190a000-0000-7000-8000-00000000c001";
const CUSTOMER_ACCOUNT: &str = "0190a000-0000-7000-8000-00000000c0a1";

/// What exists on the server, for generators to pick from next to fresh ids.
struct World {
    customer_key: String,
    second_ops: String,
    hold_id: String,
    spare_key_id: String,
    approval_id: String,
}

/// One request.
#[derive(Clone, Debug)]
struct Call {
    key: String,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

fn select(values: Vec<String>) -> BoxedStrategy<String> {
    proptest::sample::select(values).boxed()
}

fn fresh_uuid() -> BoxedStrategy<String> {
    any::<u128>()
        .prop_map(|bits| uuid::Uuid::from_u128(bits | 1).hyphenated().to_string())
        .boxed()
}

/// A value the schema admits, resolving `$ref`s into `components`. Ids (strings
/// of the id pattern) come from what exists or fresh ones, so some requests find
/// their accounts and succeed.
fn value(schema: &Value, components: &Map<String, Value>) -> BoxedStrategy<Value> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        return value(&components[name], components);
    }
    if let Some(constant) = schema.get("const") {
        return Just(constant.clone()).boxed();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return proptest::sample::select(values.clone()).boxed();
    }
    for choice in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(choice).and_then(Value::as_array) {
            return Union::new(options.iter().map(|o| value(o, components))).boxed();
        }
    }
    match schema.get("type") {
        Some(Value::Array(kinds)) => Union::new(kinds.iter().map(|kind| {
            let mut one = schema.clone();
            one["type"] = kind.clone();
            value(&one, components)
        }))
        .boxed(),
        Some(Value::String(kind)) => typed(kind, schema, components),
        _ => Just(json!({})).boxed(),
    }
}

fn typed(kind: &str, schema: &Value, components: &Map<String, Value>) -> BoxedStrategy<Value> {
    match kind {
        "object" => object(schema, components),
        "array" => {
            let items = value(schema.get("items").unwrap_or(&json!({})), components);
            proptest::collection::vec(items, 0..=2)
                .prop_map(Value::Array)
                .boxed()
        }
        "integer" => {
            let min = schema["minimum"].as_i64().unwrap_or(-1_000);
            let max = schema["maximum"]
                .as_i64()
                .unwrap_or(min.saturating_add(1_000_000));
            (min..=max).prop_map(|n| json!(n)).boxed()
        }
        "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
        "null" => Just(Value::Null).boxed(),
        "string" => string(schema).prop_map(Value::String).boxed(),
        other => panic!("no generator for type {other}"),
    }
}

fn object(schema: &Value, components: &Map<String, Value>) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut fields = Vec::new();
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let field = value(property, components);
        let name = name.clone();
        let strategy = if required.contains(&name.as_str()) {
            field.prop_map(move |v| Some((name.clone(), v))).boxed()
        } else {
            proptest::option::of(field.prop_map(move |v| (name.clone(), v))).boxed()
        };
        fields.push(strategy);
    }
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
        .boxed()
}

fn string(schema: &Value) -> BoxedStrategy<String> {
    match schema["pattern"].as_str() {
        Some(pattern) if pattern == money::ID_PATTERN => Union::new([
            select(vec![
                HOUSE.to_owned(),
                CUSTOMER_ACCOUNT.to_owned(),
                CUSTOMER.to_owned(),
            ]),
            fresh_uuid(),
            Just("01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned()).boxed(),
        ])
        .boxed(),
        Some(pattern) if pattern == money::UUID_PATTERN => fresh_uuid(),
        Some(pattern) => {
            let bare = pattern.trim_start_matches('^').trim_end_matches('$');
            proptest::string::string_regex(bare).unwrap().boxed()
        }
        None => {
            let min = schema["minLength"].as_u64().unwrap_or(1).max(1);
            let max = schema["maxLength"].as_u64().unwrap_or(12).min(12).max(min);
            proptest::string::string_regex(&format!(
                "[a-z가-힣][a-z0-9가-힣]{{{},{}}}",
                min - 1,
                max - 1
            ))
            .unwrap()
            .boxed()
        }
    }
}

/// The path parameters of each route, by operation id. A route missing here is
/// `None`, and the test fails naming it.
fn params(operation: &str, world: &World) -> Option<BoxedStrategy<Vec<(&'static str, String)>>> {
    let none = || Just(Vec::new()).boxed();
    let one = |name: &'static str, values: BoxedStrategy<String>| {
        values.prop_map(move |v| vec![(name, v)]).boxed()
    };
    let account = || {
        Union::new([
            select(vec![HOUSE.to_owned(), CUSTOMER_ACCOUNT.to_owned()]),
            fresh_uuid(),
        ])
        .boxed()
    };
    let key = || select(vec![world.spare_key_id.clone(), "key_unknown".to_owned()]);
    let day = (18..=22_u8).prop_map(|d| format!("2026-11-{d}")).boxed();
    Some(match operation {
        "health"
        | "ready"
        | "metrics"
        | "openapi"
        | "docs"
        | "me"
        | "create_key"
        | "list_keys"
        | "approvals"
        | "audit"
        | "audit_verify"
        | "create_account"
        | "transfer"
        | "hold"
        | "channel_transfer"
        | "fee_days"
        | "payroll_status"
        | "payroll_deposits"
        | "payroll_enrol"
        | "alerts"
        | "events_status"
        | "dead_letters"
        | "provider_flags"
        | "set_cohort"
        | "payroll_import_users"
        | "fees_import_loans"
        | "fees_import_accruals" => none(),
        "revoke_key" | "rotate_key" => one("id", key()),
        "approval" | "approve" | "reject" => one(
            "id",
            select(vec![world.approval_id.clone(), "apr_unknown".to_owned()]),
        ),
        "account" | "change_owner" | "balance" | "history" | "history_sync" | "pending" => {
            one("id", account())
        }
        "customer_accounts" => one(
            "customer_id",
            Union::new([select(vec![CUSTOMER.to_owned()]), fresh_uuid()]).boxed(),
        ),
        "transfer_outcome" | "post_hold" | "void_hold" | "channel_transfer_get" => one(
            "id",
            Union::new([select(vec![world.hold_id.clone()]), fresh_uuid()]).boxed(),
        ),
        "fee_day" | "fee_report" => one("day", day),
        "run_fee_module" => (
            day,
            select(
                ["record", "pay", "verify", "withdraw"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        )
            .prop_map(|(day, module)| vec![("day", day), ("module", module)])
            .boxed(),
        "payroll_deposit" | "payroll_resolve" | "payroll_retry" | "payroll_rollback" => {
            one("id", select(vec!["deposit-1".to_owned(), id()]))
        }
        "replay_dead_letter" | "discard_dead_letter" => one(
            "id",
            fresh_uuid()
                .prop_map(|e| format!("payroll.compute:{e}"))
                .boxed(),
        ),
        "set_override" => one("user_id", fresh_uuid()),
        _ => return None,
    })
}

/// The query parameters a route documents, each present or not.
fn query(route: &api::routes::Route) -> BoxedStrategy<Vec<(String, String)>> {
    let mut parts = Vec::new();
    for (name, _) in route.query {
        let values = match (*name, route.operation_id) {
            ("limit", _) => (1..=100_u32).prop_map(|n| n.to_string()).boxed(),
            ("before_id" | "before_seq", _) => (1..=1_000_i64).prop_map(|n| n.to_string()).boxed(),
            ("state", "approvals") => select(
                ["pending", "approved", "rejected", "done", "failed"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            ("state", "dead_letters") => select(
                ["parked", "replayed", "discarded"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            ("state", "payroll_deposits") => select(
                ["detected", "completed", "rolled_back", "resolved"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            (other, op) => panic!("no generator for query parameter {other} of {op}"),
        };
        let name = name.to_string();
        parts.push(proptest::option::of(values.prop_map(move |v| (name.clone(), v))).boxed());
    }
    parts
        .prop_map(|parts| parts.into_iter().flatten().collect())
        .boxed()
}

fn call_strategy(
    route: &api::routes::Route,
    world: &World,
    app: &TestApp,
    components: &Map<String, Value>,
) -> Option<BoxedStrategy<Call>> {
    let params = params(route.operation_id, world)?;
    let keys: Vec<String> = route
        .roles
        .iter()
        .flat_map(|role| match role {
            api::Role::Ops => vec![app.ops.clone(), world.second_ops.clone()],
            api::Role::Service => vec![app.service.clone()],
            api::Role::Customer => vec![world.customer_key.clone()],
        })
        .collect();
    let key = if keys.is_empty() {
        Just(String::new()).boxed()
    } else {
        select(keys)
    };
    let body = match &route.request {
        Some(body) => {
            let schema = json!({ "$ref": format!("#/components/schemas/{}", body.name()) });
            value(&schema, components).prop_map(Some).boxed()
        }
        None => Just(None).boxed(),
    };
    let template = route.path;
    Some(
        (key, params, query(route), body)
            .prop_map(move |(key, params, query, body)| {
                let mut path = template.to_owned();
                for (name, value) in params {
                    path = path.replace(&format!("{{{name}}}"), &value);
                }
                Call {
                    key,
                    path,
                    query,
                    body,
                }
            })
            .boxed(),
    )
}

/// Sends `call`; its status and body, the body as JSON when it is JSON.
async fn send(app: &TestApp, method: &axum::http::Method, call: &Call) -> (u16, String, Value) {
    let url = app.url(&call.path);
    let mut request = if *method == axum::http::Method::POST {
        app.http
            .post(url)
            .json(call.body.as_ref().unwrap_or(&json!({})))
    } else {
        app.http.get(url)
    };
    request = request.query(&call.query);
    if !call.key.is_empty() {
        request = request.bearer_auth(&call.key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, kind, json)
}

/// A validator of `schema` whose `$ref`s resolve into the document's components.
fn validator(schema: &Value, doc: &Value) -> jsonschema::Validator {
    let mut root = json!({ "allOf": [schema], "components": doc["components"] });
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::new(&root).unwrap()
}

/// Validators built once per schema (building one compiles every component).
#[derive(Default)]
struct Validators(std::collections::HashMap<String, jsonschema::Validator>);

impl Validators {
    fn of(&mut self, schema: &Value, doc: &Value) -> &jsonschema::Validator {
        self.0
            .entry(schema.to_string())
            .or_insert_with(|| validator(schema, doc))
    }
}

fn check_answer(
    op: &Value,
    (status, kind, body): (u16, &str, &Value),
    doc: &Value,
    validators: &mut Validators,
) -> Result<(), String> {
    let Some(response) = op["responses"].get(status.to_string()) else {
        return Err(format!("status {status} is not documented: {body}"));
    };
    let Some(content) = response["content"].as_object() else {
        return Ok(());
    };
    let Some(media) = content.get("application/json") else {
        return match content.keys().any(|m| kind.starts_with(m.as_str())) {
            true => Ok(()),
            false => Err(format!(
                "{status} answered {kind}, documented {:?}",
                content.keys()
            )),
        };
    };
    if !kind.starts_with("application/json") {
        return Err(format!(
            "{status} answered {kind}, documented application/json"
        ));
    }
    let errors: Vec<String> = validators
        .of(&media["schema"], doc)
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{status} body does not fit its schema: {errors:?}\n{body}"
        ))
    }
}

async fn world(app: &TestApp) -> World {
    let customer_key = app.customer_key(CUSTOMER).await;
    app.open_funded(CUSTOMER, CUSTOMER_ACCOUNT, 1_000_000).await;
    let second_ops = api::auth::create_key(&app.api_db.store, api::Role::Ops, None, "test", 0)
        .await
        .unwrap()
        .key;
    let hold_id = id();
    let (status, body) = app
        .post(
            &app.service,
            "/v1/holds",
            json!({ "id": hold_id, "debit_account_id": CUSTOMER_ACCOUNT, "credit_account_id": HOUSE, "amount_krw": 100 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .post(&app.ops, "/v1/keys", json!({ "role": "service" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let spare_key_id = body["key_id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(&app.ops, "/v1/providers/cohort", json!({ "percent": 5 }))
        .await;
    assert_eq!(status, 202, "cohort changes wait for approval here: {body}");
    let approval_id = body["approval_id"].as_str().unwrap().to_owned();
    // A recorded fee day, so the fee routes answer days, items and runs.
    let day = fees::BusinessDay::parse(RECORDED_DAY).unwrap();
    let workload = fees::workload::generate(day, 3, 7).unwrap();
    app.fees.register_loans(&workload.loans).await.unwrap();
    app.fees.accrue(&workload.accruals).await.unwrap();
    app.fees.record(day, fees::Trigger::Operator).await.unwrap();
    World {
        customer_key,
        second_ops,
        hold_id,
        spare_key_id,
        approval_id,
    }
}

fn every_answer_matches_the_document(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = api::ApiConfig {
        key_requests_per_s_max: 100_000,
        approvals_required: [api::approvals::Guarded::ProvidersCohort].into(),
        ..api::ApiConfig::default()
    };
    let Some(app) = runtime.block_on(TestApp::start_with(backend, config)) else {
        return;
    };
    let world = runtime.block_on(world(&app));
    let doc = api::openapi::document();
    let components = doc["components"]["schemas"].as_object().unwrap().clone();
    let mut statuses: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    // `TestRunner::run` takes a `Fn`: what the cases record goes through cells.
    let validators = std::cell::RefCell::new(Validators::default());
    let routes = api::routes::table();
    let missing: Vec<&str> = routes
        .iter()
        .filter(|r| params(r.operation_id, &world).is_none())
        .map(|r| r.operation_id)
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a generator: {missing:?}"
    );
    for route in routes.iter().cycle().take(routes.len() * PASSES) {
        let strategy = call_strategy(route, &world, &app, &components).unwrap();
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        let request_schema = route.request.map(|body| {
            validator(
                &json!({ "$ref": format!("#/components/schemas/{}", body.name()) }),
                &doc,
            )
        });
        let mut runner = TestRunner::new(Config {
            cases: CASES_PER_ROUTE,
            failure_persistence: None,
            ..Config::default()
        });
        let seen = std::cell::RefCell::new(Vec::new());
        let result = runner.run(&strategy, |call| {
            if let (Some(schema), Some(body)) = (&request_schema, &call.body) {
                prop_assert!(schema.is_valid(body), "generated an invalid body: {body}");
            }
            let (status, kind, body) = runtime.block_on(send(&app, &route.method, &call));
            seen.borrow_mut().push(status);
            let mut validators = validators.borrow_mut();
            check_answer(op, (status, &kind, &body), &doc, &mut validators).map_err(|why| {
                TestCaseError::fail(format!("{} {}: {why}", route.method, call.path))
            })
        });
        if let Err(error) = result {
            panic!("{} {}: {error}", route.method, route.path);
        }
        statuses
            .entry(route.operation_id)
            .or_default()
            .extend(seen.into_inner());
    }
    eprintln!("statuses per route: {statuses:?}");
    // Valid requests reach past validation: most routes answered a success.
    let succeeded = statuses
        .values()
        .filter(|s| s.iter().any(|s| (200..300).contains(s)))
        .count();
    assert!(
        succeeded * 3 >= statuses.len() * 2,
        "only {succeeded} of {} routes ever succeeded: {statuses:?}",
        statuses.len()
    );
}

#[test]
fn sqlite_every_answer_matches_the_document() {
    every_answer_matches_the_document(Backend::Sqlite);
}

#[test]
fn postgres_every_answer_matches_the_document() {
    every_answer_matches_the_document(Backend::Postgres);
}
