//! The OpenAPI 3.1 document, written from the route table ([`crate::routes::table`])
//! and the error catalogue ([`crate::error::CODES`]) — the same values that mount
//! the router and answer errors. Body schemas are derived by `schemars` from the
//! Rust types the handlers read and write: requests as they deserialize (a field
//! with a default is optional; `deny_unknown_fields` is `additionalProperties:
//! false`), answers as they serialize (every field present is required), with the
//! bounds, patterns and enums the handlers enforce written on the types.

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::error::CODES;
use crate::routes::{Answer, POST_ERRORS, Route, V1_ERRORS, table};

/// Where the document keeps named schemas.
const DEFINITIONS: &str = "/components/schemas";

fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings
        .with(|s| {
            s.definitions_path = DEFINITIONS.into();
            s.meta_schema = None;
        })
        .into_generator()
}

/// The generators of request and answer schemas: one reads as serde
/// deserializes, the other as it serializes.
struct Generators {
    reads: SchemaGenerator,
    writes: SchemaGenerator,
}

/// The document as JSON.
pub fn document() -> Value {
    let mut generators = Generators {
        reads: generator(SchemaSettings::draft2020_12().for_deserialize()),
        writes: generator(SchemaSettings::draft2020_12().for_serialize()),
    };
    let mut paths = Map::new();
    for route in table() {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        if let Some(object) = entry.as_object_mut() {
            object.insert(
                route.method.as_str().to_ascii_lowercase(),
                operation(&route, &mut generators),
            );
        }
    }
    let mut schemas = generators.writes.take_definitions(true);
    let reads = generators.reads.take_definitions(true);
    let mut document_paths = Value::Object(paths);
    merge_reads(&mut schemas, reads, &mut document_paths);
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
        "paths": document_paths,
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

/// Adds the request schemas to the answer schemas. A name both hold with
/// different schemas (a type read with defaults and written in full, such as
/// `AccountFlags`) gets an `Input` suffix on the request side, its `$ref`s renamed.
fn merge_reads(schemas: &mut Map<String, Value>, mut reads: Map<String, Value>, paths: &mut Value) {
    let clashes: Vec<String> = reads
        .iter()
        .filter(|(name, schema)| schemas.get(*name).is_some_and(|other| other != *schema))
        .map(|(name, _)| name.clone())
        .collect();
    for name in clashes {
        let from = format!("#{DEFINITIONS}/{name}");
        let to = format!("#{DEFINITIONS}/{name}Input");
        for schema in reads.values_mut() {
            rename_refs(schema, &from, &to);
        }
        for operation in paths
            .as_object_mut()
            .into_iter()
            .flat_map(|p| p.values_mut())
        {
            for request in operation
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                if let Some(body) = request.get_mut("requestBody") {
                    rename_refs(body, &from, &to);
                }
            }
        }
        if let Some(schema) = reads.remove(&name) {
            reads.insert(format!("{name}Input"), schema);
        }
    }
    schemas.extend(reads);
}

fn rename_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "$ref" && inner.as_str() == Some(from) {
                    *inner = Value::String(to.to_owned());
                } else {
                    rename_refs(inner, from, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, from, to)),
        _ => {}
    }
}

fn json_content(schema: Schema) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn operation(route: &Route, generators: &mut Generators) -> Value {
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
        "parameters": parameters(route),
        "responses": responses(route, generators),
        "x-roles": route.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    });
    if !route.roles.is_empty() {
        op["security"] = json!([{ "apiKey": [] }]);
    }
    if let Some(request) = route.request {
        op["requestBody"] = json!({
            "required": request.name() != "Empty",
            "content": json_content(request.schema(&mut generators.reads)),
        });
    }
    op
}

fn parameters(route: &Route) -> Vec<Value> {
    let mut parameters: Vec<Value> = path_parameters(route.path)
        .into_iter()
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    for (name, description) in route.query {
        let schema = match *name {
            "limit" => json!({ "type": "integer", "minimum": 1 }),
            "before_id" | "before_seq" => json!({ "type": "integer", "minimum": 1 }),
            _ => json!({ "type": "string" }),
        };
        parameters.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": schema,
        }));
    }
    if route.method == axum::http::Method::POST {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "1..=255 printable ASCII characters; see the document's description.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255 }
        }));
    }
    parameters
}

/// Every status the route answers: its success (and 200 `exists` for a create
/// by client id), 202 when maker-checker may hold it, and each error status with
/// its codes.
fn responses(route: &Route, generators: &mut Generators) -> Map<String, Value> {
    let mut responses = Map::new();
    let content = match route.response {
        Answer::Json(body) => json_content(body.schema(&mut generators.writes)),
        Answer::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
        Answer::Html => json!({ "text/html": { "schema": { "type": "string" } } }),
    };
    if route.replays_exist {
        responses.insert(
            "200".to_owned(),
            json!({
                "description": "exists: the id was applied earlier with the same fields; nothing changed",
                "content": content.clone(),
            }),
        );
    }
    responses.insert(
        route.success_status.to_string(),
        json!({ "description": "success", "content": content }),
    );
    if let Some(pending) = route.guarded {
        responses.insert(
            "202".to_owned(),
            json!({
                "description": "maker-checker: the action needs a second ops key and waits as a pending approval (POST /v1/approvals/{id}/approve)",
                "content": json_content(pending.schema(&mut generators.writes)),
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
    responses
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
