//! The OpenAPI 3.1 document, written from the route table ([`crate::routes::table`])
//! and the error catalogue ([`crate::error::CODES`]) — the same values that mount
//! the router and answer errors — plus the JSON schemas of bodies, below.

use serde_json::{Map, Value, json};

use crate::error::CODES;
use crate::routes::{POST_ERRORS, Route, V1_ERRORS, table};

/// The document as JSON.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in table() {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        if let Some(object) = entry.as_object_mut() {
            object.insert(
                route.method.as_str().to_ascii_lowercase(),
                operation(&route),
            );
        }
    }
    let mut schemas = schemas();
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "settle API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Ledger, channel, fees, payroll and event operations. Every error is \
                {\"code\", \"message\", \"details\"} with a code from x-error-codes. Every POST \
                accepts an Idempotency-Key header: the same key and request replay the first \
                success, a different request is 422 idempotency_key_reused, a running one 409 \
                idempotency_in_progress.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key from `settle keys create` or POST /v1/keys." }
            },
        },
        "x-error-codes": CODES.iter().map(|(code, status, description)| json!({
            "code": code, "status": status, "description": description
        })).collect::<Vec<_>>(),
    })
}

/// The error codes a route may answer: its own, plus those of every `/v1` route
/// and of every POST.
pub fn error_codes(route: &Route) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = route.errors.to_vec();
    if !route.roles.is_empty() {
        codes.extend_from_slice(V1_ERRORS);
    }
    if route.method == axum::http::Method::POST {
        codes.extend_from_slice(POST_ERRORS);
    }
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = path_parameters(route.path)
        .into_iter()
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    for (name, description) in route.query {
        parameters.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": { "type": ["string", "integer"] }
        }));
    }
    if route.method == axum::http::Method::POST {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "1..=255 printable ASCII characters; see the document's description.",
            "schema": { "type": "string", "maxLength": 255 }
        }));
    }
    let mut responses = Map::new();
    responses.insert(
        route.success_status.to_string(),
        success_response(route.response),
    );
    if let Some(pending) = route.guarded {
        responses.insert(
            "202".to_owned(),
            json!({
                "description": "maker-checker: the action needs a second ops key and waits as a pending approval (POST /v1/approvals/{id}/approve)",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{pending}") } } },
            }),
        );
    }
    let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
    for code in error_codes(route) {
        let status = crate::error::status_of(code).as_u16();
        by_status.entry(status).or_default().push(code);
    }
    for (status, codes) in by_status {
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("code: {}", codes.join(", ")),
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                "x-error-codes": codes,
            }),
        );
    }
    let who = if route.roles.is_empty() {
        "No key needed.".to_owned()
    } else {
        let roles: Vec<&str> = route.roles.iter().map(|r| r.as_str()).collect();
        let scoped = if route.customer_scoped {
            " A customer key reaches only its own accounts; others are 404."
        } else {
            ""
        };
        format!("Roles: {}.{scoped}", roles.join(", "))
    };
    let mut op = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": who,
        "parameters": parameters,
        "responses": responses,
        "x-roles": route.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    });
    if !route.roles.is_empty() {
        op["security"] = json!([{ "apiKey": [] }]);
    }
    if let Some(request) = route.request {
        op["requestBody"] = json!({
            "required": request != "Empty",
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{request}") } } }
        });
    }
    op
}

fn success_response(schema: &str) -> Value {
    let content = match schema {
        "PrometheusText" => json!({ "text/plain": { "schema": { "type": "string" } } }),
        "HtmlPage" => json!({ "text/html": { "schema": { "type": "string" } } }),
        _ => {
            json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } })
        }
    };
    json!({ "description": "success", "content": content })
}

/// The `{name}` segments of a path template.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": { "type": "string", "enum": CODES.iter().map(|(c, _, _)| *c).collect::<Vec<_>>() },
            "message": { "type": "string" },
            "details": { "description": "null, or an object; `reason` carries a domain code" }
        }
    })
}

fn obj(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn list(item: &str) -> Value {
    obj(
        &["items"],
        json!({ "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } } }),
    )
}

const INT: &str = "integer";

fn t(kind: &str) -> Value {
    json!({ "type": kind })
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

fn schemas() -> Map<String, Value> {
    let uuid = json!({ "type": "string", "description": "UUID or ULID" });
    let entries = [
        ("Health", obj(&["status"], json!({ "status": t("string") }))),
        (
            "Readiness",
            obj(
                &["ready", "checks"],
                json!({ "ready": t("boolean"), "checks": { "type": "object", "additionalProperties": t("string") } }),
            ),
        ),
        ("OpenApiDocument", t("object")),
        (
            "Empty",
            json!({ "type": "object", "additionalProperties": false }),
        ),
        (
            "Me",
            obj(
                &["key_id", "role"],
                json!({ "key_id": t("string"), "role": { "enum": ["ops", "service", "customer"] }, "customer_id": nullable("string") }),
            ),
        ),
        (
            "NewKey",
            obj(
                &["role"],
                json!({ "role": { "enum": ["ops", "service", "customer"] }, "customer_id": nullable("string"), "grants": { "type": "array", "items": { "enum": ["house_accounts"] } }, "expires_at_ms": { "type": ["integer", "null"], "description": "Unix ms, in the future, at most ten years ahead; past it the key is 401 key_expired" } }),
            ),
        ),
        (
            "CreatedKey",
            obj(
                &["key_id", "key", "role"],
                json!({ "key_id": t("string"), "key": { "type": "string", "description": "shown only here" }, "role": t("string"), "customer_id": nullable("string"), "expires_at_ms": nullable(INT), "approval": { "description": "present (with status 202) when the new ops key waits for a second ops key's approval", "$ref": "#/components/schemas/Approval" } }),
            ),
        ),
        (
            "KeyListing",
            obj(
                &["key_id", "role", "created_at_ms"],
                json!({ "key_id": t("string"), "role": t("string"), "customer_id": nullable("string"), "grants": t("string"), "created_at_ms": t(INT), "created_by": t("string"), "revoked_at_ms": nullable(INT), "expires_at_ms": nullable(INT), "last_used_at_ms": { "type": ["integer", "null"], "description": "written at most once a minute per key" }, "rotated_at_ms": nullable(INT), "awaiting_approval": nullable("string") }),
            ),
        ),
        ("KeyList", list("KeyListing")),
        (
            "KeyRotation",
            json!({ "type": "object", "additionalProperties": false, "properties": { "expires_at_ms": { "type": ["integer", "null"], "description": "a new expiry; none keeps the old one" } } }),
        ),
        (
            "Approval",
            obj(
                &[
                    "approval_id",
                    "action",
                    "target",
                    "body",
                    "body_hash",
                    "requested_by",
                    "requested_at_ms",
                    "expires_at_ms",
                    "state",
                    "expired",
                ],
                json!({
                    "approval_id": t("string"),
                    "action": { "enum": crate::approvals::Guarded::ALL.iter().map(|g| g.name()).collect::<Vec<_>>() },
                    "target": t("string"),
                    "body": { "type": "object", "description": "the action with its input, as stored" },
                    "body_hash": { "type": "string", "description": "SHA-256 of the stored body, hex" },
                    "requested_by": t("string"),
                    "requested_at_ms": t(INT),
                    "expires_at_ms": t(INT),
                    "state": { "enum": ["pending", "approved", "rejected", "done", "failed"] },
                    "expired": t("boolean"),
                    "decided_by": nullable("string"),
                    "decided_at_ms": nullable(INT),
                    "reason": nullable("string"),
                    "outcome": { "description": "null, or {ok, result} / {ok: false, code, message, reason}" },
                    "finished_at_ms": nullable(INT),
                }),
            ),
        ),
        ("ApprovalList", list("Approval")),
        (
            "ApprovalDecision",
            json!({ "type": "object", "additionalProperties": false, "properties": { "body_hash": { "type": "string", "description": "the body hash the approver saw; another stored one is 409 approval_changed" } } }),
        ),
        (
            "Rejection",
            json!({ "type": "object", "additionalProperties": false, "required": ["reason"], "properties": { "reason": { "type": "string", "minLength": 1, "maxLength": 500 } } }),
        ),
        (
            "AuditVerification",
            obj(
                &["intact"],
                json!({ "intact": t("boolean"), "rows": nullable(INT), "broken": { "description": "null, or {id, why}: the first row whose link or hash fails" } }),
            ),
        ),
        (
            "KeyRevoked",
            obj(
                &["key_id", "revoked_at_ms"],
                json!({ "key_id": t("string"), "revoked_at_ms": t(INT) }),
            ),
        ),
        (
            "AuditRecord",
            obj(
                &["id", "at_ms", "key_id", "action", "target"],
                json!({ "id": t(INT), "at_ms": t(INT), "key_id": t("string"), "action": t("string"), "target": t("string"), "details": {} }),
            ),
        ),
        (
            "AuditPage",
            obj(
                &["items"],
                json!({ "items": { "type": "array", "items": { "$ref": "#/components/schemas/AuditRecord" } }, "next_before_id": nullable(INT) }),
            ),
        ),
        (
            "AccountFlags",
            json!({ "type": "object", "additionalProperties": false, "properties": { "debits_must_not_exceed_credits": t("boolean"), "credits_must_not_exceed_debits": t("boolean") } }),
        ),
        (
            "NewAccount",
            json!({ "type": "object", "additionalProperties": false, "required": ["id"], "properties": { "id": uuid, "code": t(INT), "flags": { "$ref": "#/components/schemas/AccountFlags" }, "user_data": t(INT), "customer_id": nullable("string") } }),
        ),
        (
            "Account",
            obj(
                &["id", "code", "seq"],
                json!({ "id": t("string"), "code": t(INT), "flags": { "$ref": "#/components/schemas/AccountFlags" }, "user_data": t(INT), "customer_id": nullable("string"), "debits_posted_krw": t(INT), "credits_posted_krw": t(INT), "debits_pending_krw": t(INT), "credits_pending_krw": t(INT), "balance_krw": nullable(INT), "available_krw": nullable(INT), "seq": t(INT), "created_at_ms": t(INT) }),
            ),
        ),
        (
            "OwnerChange",
            json!({ "type": "object", "additionalProperties": false, "required": ["customer_id", "reason"], "properties": { "customer_id": t("string"), "reason": { "type": "string", "minLength": 1, "maxLength": 500 } } }),
        ),
        (
            "AccountCreated",
            json!({ "allOf": [{ "$ref": "#/components/schemas/Account" }, obj(&["result"], json!({ "result": { "enum": ["ok", "exists"] } }))] }),
        ),
        (
            "Balance",
            obj(
                &["account_id"],
                json!({ "account_id": t("string"), "debits_posted_krw": t(INT), "credits_posted_krw": t(INT), "debits_pending_krw": t(INT), "credits_pending_krw": t(INT), "balance_krw": nullable(INT), "available_krw": nullable(INT), "seq": t(INT) }),
            ),
        ),
        ("AccountList", list("Account")),
        (
            "HistoryItem",
            obj(
                &[
                    "seq",
                    "transfer_id",
                    "amount_krw",
                    "balance_after_krw",
                    "at_ms",
                ],
                json!({ "seq": t(INT), "transfer_id": t("string"), "amount_krw": t(INT), "pending_krw": t(INT), "direction": { "enum": ["in", "out", "hold"] }, "balance_after_krw": t(INT), "debits_pending_krw": t(INT), "credits_pending_krw": t(INT), "at_ms": t(INT) }),
            ),
        ),
        (
            "HistoryPage",
            obj(
                &["items", "next_before_seq"],
                json!({ "account_id": t("string"), "items": { "type": "array", "items": { "$ref": "#/components/schemas/HistoryItem" } }, "next_before_seq": nullable(INT), "synced": t("boolean"), "stale": t("boolean") }),
            ),
        ),
        (
            "SyncReport",
            obj(
                &["synced", "last_seq"],
                json!({ "account_id": t("string"), "synced": t(INT), "last_seq": t(INT), "last_seq_before": t(INT) }),
            ),
        ),
        (
            "TransferInput",
            json!({ "type": "object", "additionalProperties": false, "required": ["id"], "properties": { "id": uuid, "kind": { "enum": ["single", "pending", "post", "void"] }, "debit_account_id": t("string"), "credit_account_id": t("string"), "amount": t(INT), "pending_id": t("string"), "timeout_ms": t(INT), "code": t(INT), "user_data": t(INT), "linked": t("boolean"), "requested_at_ms": t(INT) } }),
        ),
        (
            "HoldInput",
            json!({ "type": "object", "additionalProperties": false, "required": ["id", "debit_account_id", "credit_account_id", "amount_krw"], "properties": { "id": uuid, "debit_account_id": t("string"), "credit_account_id": t("string"), "amount_krw": t(INT), "timeout_ms": t(INT), "code": t(INT), "user_data": t(INT) } }),
        ),
        (
            "PostHold",
            json!({ "type": "object", "additionalProperties": false, "required": ["id"], "properties": { "id": uuid, "amount_krw": t(INT) } }),
        ),
        (
            "VoidHold",
            json!({ "type": "object", "additionalProperties": false, "required": ["id"], "properties": { "id": uuid } }),
        ),
        (
            "TransferAnswer",
            obj(
                &["id", "result"],
                json!({ "id": t("string"), "result": { "enum": ["ok", "exists"] } }),
            ),
        ),
        (
            "TransferOutcome",
            obj(
                &["status"],
                json!({ "status": { "enum": ["applied", "failed", "not_found"] }, "transfer": t("object"), "result": t("string") }),
            ),
        ),
        (
            "NewChannelTransfer",
            json!({ "type": "object", "additionalProperties": false, "required": ["id", "from_account_id", "to_account_id", "amount_krw"], "properties": { "id": uuid, "from_account_id": t("string"), "to_account_id": t("string"), "amount_krw": t(INT) } }),
        ),
        (
            "ChannelTransfer",
            obj(
                &["id", "state"],
                json!({ "id": t("string"), "customer_id": t("string"), "from_account_id": t("string"), "to_account_id": t("string"), "amount_krw": t(INT), "state": { "enum": ["requested", "sent", "unknown", "succeeded", "failed"] }, "result_code": nullable("string"), "requested_at_ms": t(INT), "updated_at_ms": t(INT) }),
            ),
        ),
        ("ChannelTransferList", list("ChannelTransfer")),
        (
            "FeeDayStatus",
            obj(
                &["day", "state"],
                json!({ "day": t("string"), "state": { "enum": ["recorded", "verified", "withdrawn"] }, "items": t(INT), "total_krw": t(INT), "paid_krw": t(INT), "items_paid": t(INT), "items_blocked": t(INT), "chunks": { "type": "object", "additionalProperties": t(INT) }, "withdrawn_krw": t(INT), "blocked": t("array") }),
            ),
        ),
        ("FeeDayList", list("FeeDayStatus")),
        (
            "FeeDay",
            obj(
                &["status", "runs"],
                json!({ "status": { "$ref": "#/components/schemas/FeeDayStatus" }, "runs": t("array") }),
            ),
        ),
        (
            "FeeRun",
            obj(
                &["module", "day", "outcome"],
                json!({ "module": { "enum": ["record", "pay", "verify", "withdraw"] }, "day": t("string"), "trigger": t("string"), "outcome": { "enum": ["done", "busy", "already_done", "not_ready"] }, "detail": {}, "started_at_ms": t(INT), "finished_at_ms": t(INT), "counts": t("object") }),
            ),
        ),
        (
            "FeeReport",
            obj(
                &["day", "kinds", "agrees"],
                json!({ "day": t("string"), "kinds": t("array"), "ledger_paid_krw": t(INT), "bank_paid_krw": t(INT), "ledger_withdrawn_krw": t(INT), "bank_withdrawn_krw": t(INT), "duplicates": t("array"), "unaccounted": t("array"), "unpaid": t("array"), "books_agree": t("boolean"), "agrees": t("boolean") }),
            ),
        ),
        (
            "Deposit",
            obj(
                &["deposit_id", "state"],
                json!({ "deposit_id": t("string"), "user_id": t("string"), "account": t("string"), "amount_krw": t(INT), "state": t("string"), "waiting_stage": nullable("string"), "waiting_reason": nullable("string"), "provider": nullable("string"), "repayment_krw": t(INT), "suspend_krw": t(INT), "payout_krw": t(INT), "attempt": t(INT), "detected_at_ms": t(INT), "updated_at_ms": t(INT), "bank_cursor": t(INT) }),
            ),
        ),
        ("DepositList", list("Deposit")),
        (
            "DepositDetail",
            obj(
                &[
                    "deposit",
                    "why",
                    "actions_possible",
                    "stuck",
                    "claims",
                    "alerts",
                    "actions",
                ],
                json!({ "deposit": { "$ref": "#/components/schemas/Deposit" }, "why": t("string"), "actions_possible": { "type": "array", "items": { "enum": ["retry", "rollback", "resolve"] } }, "stuck": t("boolean"), "claims": t("array"), "alerts": { "type": "array", "items": { "$ref": "#/components/schemas/Alert" } }, "actions": t("array") }),
            ),
        ),
        (
            "ResolveRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["reason"], "properties": { "reason": { "type": "string", "minLength": 1, "maxLength": 500 } } }),
        ),
        (
            "EnrolRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["user_id", "holder_name", "payout_account"], "properties": { "user_id": uuid, "holder_name": t("string"), "payout_account": t("string"), "payout_holder": t("string"), "advance_krw": t(INT), "suspend_percent": { "type": "integer", "minimum": 0, "maximum": 100 } } }),
        ),
        (
            "Enrolled",
            obj(
                &["user_id", "virtual_account"],
                json!({ "user_id": t("string"), "virtual_account": t("string") }),
            ),
        ),
        (
            "Alert",
            obj(
                &["deposit_id", "reason"],
                json!({ "deposit_id": t("string"), "reason": t("string"), "user_id": t("string"), "stage": t("string"), "next_step": t("string"), "message": t("string"), "created_at_ms": t(INT), "delivered_at_ms": nullable(INT) }),
            ),
        ),
        ("AlertList", list("Alert")),
        (
            "PayrollStatus",
            obj(
                &["users", "per_state", "stuck", "alerts_count"],
                json!({ "users": t(INT), "per_state": t("array"), "stuck": { "type": "array", "items": { "$ref": "#/components/schemas/Deposit" } }, "alerts_count": t(INT), "alerts": { "type": "array", "items": { "$ref": "#/components/schemas/Alert" } } }),
            ),
        ),
        (
            "DeadLetter",
            obj(
                &["id", "consumer", "event_id", "state"],
                json!({ "id": { "type": "string", "description": "<consumer>:<event id>" }, "consumer": t("string"), "event_id": t("string"), "kind": t("string"), "key": t("string"), "seq": t(INT), "attempts": t(INT), "last_error": t("string"), "at_ms": t(INT), "state": { "enum": ["parked", "replayed", "discarded"] }, "resolved_by": nullable("string"), "resolved_at_ms": nullable(INT) }),
            ),
        ),
        ("DeadLetterList", list("DeadLetter")),
        (
            "BackboneStatus",
            obj(
                &["streams", "consumers", "relay_leaders"],
                json!({
                    "streams": { "type": "array", "items": obj(&["stream", "events", "unrelayed"], json!({ "stream": t("string"), "events": t(INT), "unrelayed": t(INT), "oldest_unrelayed_age_ms": nullable(INT) })) },
                    "consumers": { "type": "array", "items": obj(&["consumer", "stream", "lag_events", "parked_keys"], json!({ "consumer": t("string"), "stream": t("string"), "lag_events": t(INT), "parked_keys": t(INT) })) },
                    "relay_leaders": { "type": "array", "items": obj(&["stream", "partition", "holder", "since_ms"], json!({ "stream": t("string"), "partition": t(INT), "holder": t("string"), "since_ms": t(INT) })) },
                }),
            ),
        ),
        (
            "ProviderFlags",
            obj(
                &["cohort_percent", "changes"],
                json!({ "cohort_percent": t(INT), "changes": t("array") }),
            ),
        ),
        (
            "Cohort",
            json!({ "type": "object", "additionalProperties": false, "required": ["percent"], "properties": { "percent": { "type": "integer", "minimum": 0, "maximum": 100 } } }),
        ),
        (
            "Override",
            json!({ "type": "object", "additionalProperties": false, "required": ["provider"], "properties": { "provider": { "enum": ["legacy", "next", null] } } }),
        ),
    ];
    entries
        .into_iter()
        .chain(crate::routes::imports::schemas())
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect()
}

/// The `/docs` page: renders `/openapi.json` with a few lines of our own script.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>settle API</title>
<style>
body{font:14px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}
.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:3.5rem;font-weight:bold}.GET{color:#06c}.POST{color:#080}
code{background:#f4f4f4;padding:0 .2rem}table{border-collapse:collapse}td{padding:.1rem .6rem;border-bottom:1px solid #eee}
</style></head><body>
<h1>settle API</h1><p id="desc"></p><div id="ops"></div>
<h2>Error codes</h2><table id="codes"></table>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;"}[c]));
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("desc").textContent = doc.info.description;
  let html = "";
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const m = method.toUpperCase();
      const body = op.requestBody ? `<div>body: <code>${esc(op.requestBody.content["application/json"].schema.$ref.split("/").pop())}</code></div>` : "";
      const codes = Object.entries(op.responses).map(([s, r]) => `<code>${esc(s)}</code> ${esc(r["x-error-codes"] ? r["x-error-codes"].join(", ") : r.description)}`).join("; ");
      html += `<div class="op"><span class="m ${m}">${m}</span><code>${esc(path)}</code> — ${esc(op.summary)}<div>${esc(op.description)}</div>${body}<div>${codes}</div></div>`;
    }
  }
  document.getElementById("ops").innerHTML = html;
  document.getElementById("codes").innerHTML = doc["x-error-codes"].map((c) => `<tr><td><code>${esc(c.code)}</code></td><td>${c.status}</td><td>${esc(c.description)}</td></tr>`).join("");
});
</script></body></html>
"#;
