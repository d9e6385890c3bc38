//! The route table: one list of [`Route`]s that both mounts the router and writes
//! the OpenAPI document, so the two cannot drift apart. Each entry names its method,
//! path, who may call it, its request and response schemas and its error codes;
//! the roles it lists are enforced by the router built from it ([`router`]).
//!
//! Handlers live beside the table by area: `accounts.rs` (accounts, balances,
//! history), `transfers.rs` (ledger transfers, holds, channel transfers),
//! `settlement.rs` (fees, payroll, alerts), `operations.rs` (audit, dead letters,
//! provider flags), `keys.rs` (API keys), `approvals.rs` (maker-checker, audit
//! verification), `imports.rs` (loans, accruals and payroll users in) and
//! `health.rs` (health, readiness, metrics, docs).

pub(crate) mod accounts;
mod approvals;
mod health;
pub(crate) mod imports;
pub(crate) mod keys;
pub(crate) mod operations;
pub(crate) mod settlement;
mod transfers;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// One endpoint, as mounted and as documented.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    /// Who may call it; empty means no key is needed.
    pub roles: &'static [Role],
    /// A customer key only reaches its own resources (others' are 404).
    pub customer_scoped: bool,
    pub query: &'static [(&'static str, &'static str)],
    /// The body it reads: the Rust type its handler deserializes.
    pub request: Option<Body>,
    /// What it answers on success.
    pub response: Answer,
    pub success_status: u16,
    /// A create by client id: a replay with the same fields answers 200 `exists`
    /// with the same body.
    pub replays_exist: bool,
    /// Maker-checker may put it behind a second ops key: then it answers 202 with
    /// this body (a pending approval, or a new key holding one) instead of running.
    pub guarded: Option<Body>,
    /// Error codes beyond the ones every `/v1` route may answer.
    pub errors: &'static [&'static str],
    pub handler: MethodRouter<AppState>,
}

/// A JSON body's schema, derived by `schemars` from the Rust type that reads or
/// writes it, so the document cannot drift from the code.
#[derive(Clone, Copy)]
pub struct Body {
    name: fn() -> std::borrow::Cow<'static, str>,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

impl Body {
    pub fn of<T: JsonSchema>() -> Body {
        Body {
            name: T::schema_name,
            schema: subschema::<T>,
        }
    }

    /// The schema's name in the document's components.
    pub fn name(&self) -> String {
        (self.name)().into_owned()
    }

    /// The schema (a `$ref` for named types), its definitions added to `generator`.
    pub fn schema(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.schema)(generator)
    }
}

fn subschema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a route answers on success.
#[derive(Clone, Copy)]
pub enum Answer {
    Json(Body),
    /// Prometheus text exposition.
    Text,
    Html,
}

fn body<T: JsonSchema>() -> Option<Body> {
    Some(Body::of::<T>())
}

fn json<T: JsonSchema>() -> Answer {
    Answer::Json(Body::of::<T>())
}

/// A list answer: `{"items": [...]}`.
#[derive(serde::Serialize, JsonSchema)]
#[schemars(rename = "{T}List")]
pub struct Items<T> {
    pub items: Vec<T>,
}

const OPS: &[Role] = &[Role::Ops];
const SERVICE: &[Role] = &[Role::Service];
const SERVICE_OPS: &[Role] = &[Role::Service, Role::Ops];
const ANY: &[Role] = &[Role::Ops, Role::Service, Role::Customer];
const CUSTOMER_SERVICE: &[Role] = &[Role::Customer, Role::Service];
const PUBLIC: &[Role] = &[];
const PAGE: &[(&str, &str)] = &[("limit", "items per page (1..=100)")];

/// Error codes every authenticated route may answer.
pub const V1_ERRORS: &[&str] = &[
    "unauthenticated",
    "rate_limited",
    "internal_error",
    "unavailable",
    "timeout",
];
/// Error codes every POST may answer on top.
pub const POST_ERRORS: &[&str] = &[
    "invalid_json",
    "body_too_large",
    "unsupported_media_type",
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "idempotency_in_progress",
];

#[allow(clippy::too_many_arguments)]
fn route(
    method: Method,
    path: &'static str,
    operation_id: &'static str,
    summary: &'static str,
    roles: &'static [Role],
    request: Option<Body>,
    response: Answer,
    errors: &'static [&'static str],
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        success_status: if method == Method::POST { 201 } else { 200 },
        replays_exist: false,
        guarded: None,
        method,
        path,
        operation_id,
        summary,
        roles,
        customer_scoped: roles.contains(&Role::Customer),
        query: &[],
        request,
        response,
        errors,
        handler,
    }
}

impl Route {
    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Route {
        self.query = query;
        self
    }

    fn status(mut self, status: u16) -> Route {
        self.success_status = status;
        self
    }

    fn replays_exist(mut self) -> Route {
        self.replays_exist = true;
        self
    }

    fn guarded(mut self, pending: Body) -> Route {
        self.guarded = Some(pending);
        self
    }
}

/// Every endpoint of the API (the console's pages are not endpoints).
pub fn table() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::GET,
            "/healthz",
            "health",
            "The process is up.",
            PUBLIC,
            None,
            json::<health::Health>(),
            &[],
            get(health::healthz),
        ),
        route(
            M::GET,
            "/readyz",
            "ready",
            "Every dependency answers (store, NATS when configured, bank).",
            PUBLIC,
            None,
            json::<health::Readiness>(),
            &["unavailable"],
            get(health::readyz),
        ),
        route(
            M::GET,
            "/metrics",
            "metrics",
            "Prometheus text: request latency histograms and the ledger, event and settlement counters.",
            PUBLIC,
            None,
            Answer::Text,
            &[],
            get(health::metrics),
        ),
        route(
            M::GET,
            "/openapi.json",
            "openapi",
            "This document.",
            PUBLIC,
            None,
            json::<serde_json::Map<String, serde_json::Value>>(),
            &[],
            get(health::openapi),
        ),
        route(
            M::GET,
            "/docs",
            "docs",
            "A page rendering this document.",
            PUBLIC,
            None,
            Answer::Html,
            &[],
            get(health::docs),
        ),
        route(
            M::GET,
            "/v1/me",
            "me",
            "Who this key is.",
            ANY,
            None,
            json::<operations::MeView>(),
            &[],
            get(operations::me),
        ),
        route(
            M::POST,
            "/v1/keys",
            "create_key",
            "Creates an API key; the key is shown only in this answer (Cache-Control: no-store; \
             a replayed Idempotency-Key is 409 secret_shown_once). Under maker-checker an ops \
             key answers 202 with its pending approval and works once a second ops key approves.",
            OPS,
            body::<keys::NewKeyBody>(),
            json::<crate::auth::CreatedKey>(),
            &["forbidden", "invalid_input", "conflict"],
            post(keys::create_key),
        )
        .guarded(Body::of::<crate::auth::CreatedKey>()),
        route(
            M::GET,
            "/v1/keys",
            "list_keys",
            "Every API key (never the key itself), revoked ones with their time.",
            OPS,
            None,
            json::<Items<crate::db::KeyListing>>(),
            &["forbidden", "invalid_query"],
            get(keys::list_keys),
        )
        .query(PAGE),
        route(
            M::POST,
            "/v1/keys/{id}/revoke",
            "revoke_key",
            "Revokes an API key: every process refuses it from the next request on.",
            OPS,
            body::<Empty>(),
            json::<keys::KeyRevoked>(),
            &["forbidden", "not_found"],
            post(keys::revoke_key),
        )
        .status(200),
        route(
            M::POST,
            "/v1/keys/{id}/rotate",
            "rotate_key",
            "A new secret for a key (same id, role and grants), shown only in this answer; the old \
             secret is refused from the next request on, in every process.",
            OPS,
            body::<keys::RotateBody>(),
            json::<crate::auth::CreatedKey>(),
            &["forbidden", "invalid_input", "not_found", "conflict"],
            post(keys::rotate_key),
        )
        .status(200),
        route(
            M::GET,
            "/v1/approvals",
            "approvals",
            "Approvals (maker-checker), newest first.",
            OPS,
            None,
            json::<Items<crate::approvals::ApprovalView>>(),
            &["forbidden", "invalid_query"],
            get(approvals::list),
        )
        .query(&[
            ("state", "pending, approved, rejected, done or failed"),
            ("limit", "items per page (1..=100)"),
        ]),
        route(
            M::GET,
            "/v1/approvals/{id}",
            "approval",
            "One approval with its outcome.",
            OPS,
            None,
            json::<crate::approvals::ApprovalView>(),
            &["forbidden", "not_found"],
            get(approvals::get),
        ),
        route(
            M::POST,
            "/v1/approvals/{id}/approve",
            "approve",
            "Approves a pending approval with a second ops key (never the requester's); the action \
             runs then, once, and its outcome is stored on the approval.",
            OPS,
            body::<approvals::ApproveBody>(),
            json::<crate::approvals::ApprovalView>(),
            &["forbidden", "not_found", "conflict"],
            post(approvals::approve),
        )
        .status(200),
        route(
            M::POST,
            "/v1/approvals/{id}/reject",
            "reject",
            "Rejects a pending approval, with a reason.",
            OPS,
            body::<approvals::RejectBody>(),
            json::<crate::approvals::ApprovalView>(),
            &["forbidden", "not_found", "conflict", "invalid_input"],
            post(approvals::reject),
        )
        .status(200),
        route(
            M::GET,
            "/v1/audit",
            "audit",
            "The append-only audit log, newest first.",
            OPS,
            None,
            json::<operations::AuditPage>(),
            &["forbidden", "invalid_query"],
            get(operations::audit),
        )
        .query(&[
            ("before_id", "only records with a smaller id"),
            ("limit", "items per page (1..=100)"),
        ]),
        route(
            M::GET,
            "/v1/audit/verify",
            "audit_verify",
            "Walks the audit log's hash chain: how many rows hold, or the first edited or \
             unlinked row.",
            OPS,
            None,
            json::<approvals::AuditVerification>(),
            &["forbidden"],
            get(approvals::verify_audit),
        ),
        route(
            M::POST,
            "/v1/accounts",
            "create_account",
            "Opens a ledger account, optionally owned by a customer.",
            SERVICE_OPS,
            body::<accounts::NewAccountBody>(),
            json::<accounts::AccountCreated>(),
            &["forbidden", "invalid_input", "conflict", "role_disabled"],
            post(accounts::create),
        )
        .replays_exist(),
        route(
            M::GET,
            "/v1/accounts/{id}",
            "account",
            "An account with its balances.",
            ANY,
            None,
            json::<accounts::AccountView>(),
            &["forbidden", "invalid_path", "not_found", "role_disabled"],
            get(accounts::get),
        ),
        route(
            M::POST,
            "/v1/accounts/{id}/owner",
            "change_owner",
            "Hands a customer account to another customer (audited; the only way an owner changes). \
             Under maker-checker (configured per action) it answers 202 with a pending approval instead.",
            OPS,
            body::<accounts::OwnerChangeBody>(),
            json::<accounts::AccountView>(),
            &[
                "forbidden",
                "invalid_path",
                "invalid_input",
                "not_found",
                "conflict",
                "role_disabled",
            ],
            post(accounts::change_owner),
        )
        .status(200)
        .guarded(Body::of::<crate::approvals::ApprovalView>()),
        route(
            M::GET,
            "/v1/accounts/{id}/balance",
            "balance",
            "An account's balances.",
            ANY,
            None,
            json::<accounts::BalanceView>(),
            &["forbidden", "invalid_path", "not_found", "role_disabled"],
            get(accounts::balance),
        ),
        route(
            M::GET,
            "/v1/customers/{customer_id}/accounts",
            "customer_accounts",
            "The accounts a customer owns.",
            ANY,
            None,
            json::<Items<accounts::AccountView>>(),
            &["forbidden", "invalid_path", "not_found", "role_disabled"],
            get(accounts::of_customer),
        ),
        route(
            M::GET,
            "/v1/accounts/{id}/history",
            "history",
            "An account's entries, newest first, by keyset (`before_seq`).",
            ANY,
            None,
            json::<accounts::HistoryPage>(),
            &[
                "invalid_path",
                "invalid_query",
                "not_found",
                "role_disabled",
            ],
            get(accounts::history),
        )
        .query(&[
            ("before_seq", "only entries with a smaller seq"),
            ("limit", "items per page (1..=100, default 20)"),
        ]),
        route(
            M::POST,
            "/v1/accounts/{id}/history/sync",
            "history_sync",
            "Pulls what the core has beyond the read model (the sync button).",
            ANY,
            body::<Empty>(),
            json::<accounts::SyncView>(),
            &["invalid_path", "not_found", "role_disabled"],
            post(accounts::sync),
        )
        .status(200),
        route(
            M::GET,
            "/v1/accounts/{id}/pending",
            "pending",
            "The account's channel transfers not yet final.",
            ANY,
            None,
            json::<accounts::PendingPage>(),
            &["invalid_path", "not_found", "role_disabled"],
            get(accounts::pending),
        ),
        route(
            M::POST,
            "/v1/transfers",
            "transfer",
            "A ledger transfer (single, pending, post or void).",
            SERVICE,
            body::<ledger::TransferInput>(),
            json::<transfers::TransferAnswer>(),
            &[
                "forbidden",
                "invalid_input",
                "refused",
                "conflict",
                "role_disabled",
            ],
            post(transfers::transfer),
        )
        .replays_exist(),
        route(
            M::GET,
            "/v1/transfers/{id}",
            "transfer_outcome",
            "What the ledger knows about a transfer id.",
            SERVICE_OPS,
            None,
            json::<ledger::TransferOutcome>(),
            &["forbidden", "invalid_path", "role_disabled"],
            get(transfers::outcome),
        ),
        route(
            M::POST,
            "/v1/holds",
            "hold",
            "A pending transfer that reserves funds.",
            SERVICE,
            body::<transfers::HoldBody>(),
            json::<transfers::TransferAnswer>(),
            &[
                "forbidden",
                "invalid_input",
                "refused",
                "conflict",
                "role_disabled",
            ],
            post(transfers::hold),
        )
        .replays_exist(),
        route(
            M::POST,
            "/v1/holds/{id}/post",
            "post_hold",
            "Posts a hold, in full or in part.",
            SERVICE,
            body::<transfers::PostBody>(),
            json::<transfers::TransferAnswer>(),
            &[
                "forbidden",
                "invalid_path",
                "invalid_input",
                "refused",
                "conflict",
                "role_disabled",
            ],
            post(transfers::post_hold),
        )
        .replays_exist(),
        route(
            M::POST,
            "/v1/holds/{id}/void",
            "void_hold",
            "Voids a hold.",
            SERVICE,
            body::<transfers::VoidBody>(),
            json::<transfers::TransferAnswer>(),
            &[
                "forbidden",
                "invalid_path",
                "invalid_input",
                "refused",
                "conflict",
                "role_disabled",
            ],
            post(transfers::void_hold),
        )
        .replays_exist(),
        route(
            M::POST,
            "/v1/channel/transfers",
            "channel_transfer",
            "A customer's transfer through the channel: stored before the core hears of it.",
            CUSTOMER_SERVICE,
            body::<transfers::ChannelTransferBody>(),
            json::<transfers::ChannelTransferView>(),
            &[
                "forbidden",
                "invalid_input",
                "not_found",
                "transfer_in_progress",
                "conflict",
                "role_disabled",
            ],
            post(transfers::channel_transfer),
        ),
        route(
            M::GET,
            "/v1/channel/transfers/{id}",
            "channel_transfer_get",
            "One channel transfer.",
            ANY,
            None,
            json::<transfers::ChannelTransferView>(),
            &["invalid_path", "not_found", "role_disabled"],
            get(transfers::channel_transfer_get),
        ),
        route(
            M::GET,
            "/v1/fees/days",
            "fee_days",
            "Recorded fee days with their status, newest first.",
            OPS,
            None,
            json::<Items<fees::DayStatus>>(),
            &["forbidden", "invalid_query", "role_disabled"],
            get(settlement::days),
        )
        .query(PAGE),
        route(
            M::GET,
            "/v1/fees/days/{day}",
            "fee_day",
            "A day's per-stage status and its module runs.",
            OPS,
            None,
            json::<settlement::FeeDay>(),
            &["forbidden", "invalid_path", "not_found", "role_disabled"],
            get(settlement::day),
        ),
        route(
            M::POST,
            "/v1/fees/days/{day}/{module}",
            "run_fee_module",
            "Runs record, pay, verify or withdraw for a day. Under maker-checker (configured per action) it answers 202 with a pending approval instead.",
            OPS,
            body::<Empty>(),
            json::<fees::RunReport>(),
            &["forbidden", "invalid_path", "role_disabled"],
            post(settlement::run_module),
        )
        .status(200)
        .guarded(Body::of::<crate::approvals::ApprovalView>()),
        route(
            M::GET,
            "/v1/fees/days/{day}/report",
            "fee_report",
            "The day's ledger against the bank statement, per fee kind.",
            OPS,
            None,
            json::<fees::report::DayReport>(),
            &["forbidden", "invalid_path", "role_disabled"],
            get(settlement::report),
        ),
        route(
            M::GET,
            "/v1/payroll/status",
            "payroll_status",
            "Deposits per state, stuck deposits and alerts.",
            OPS,
            None,
            json::<settlement::PayrollStatus>(),
            &["forbidden", "role_disabled"],
            get(settlement::payroll_status),
        ),
        route(
            M::GET,
            "/v1/payroll/deposits",
            "payroll_deposits",
            "Salary deposits, newest first.",
            OPS,
            None,
            json::<Items<payroll::DepositView>>(),
            &["forbidden", "invalid_query", "role_disabled"],
            get(settlement::deposits),
        )
        .query(&[
            ("state", "only deposits in this state"),
            ("limit", "items per page (1..=100)"),
        ]),
        route(
            M::GET,
            "/v1/payroll/deposits/{id}",
            "payroll_deposit",
            "One deposit: why it is where it is, its claims, alerts and operator actions.",
            OPS,
            None,
            json::<payroll::DepositDetail>(),
            &["forbidden", "not_found", "role_disabled"],
            get(settlement::deposit),
        ),
        route(
            M::POST,
            "/v1/payroll/deposits/{id}/resolve",
            "payroll_resolve",
            "Marks a deposit settled by hand, with the reason; it never moves again.",
            OPS,
            body::<settlement::Resolve>(),
            json::<payroll::DepositView>(),
            &[
                "forbidden",
                "not_found",
                "conflict",
                "invalid_input",
                "role_disabled",
            ],
            post(settlement::resolve),
        )
        .status(200),
        route(
            M::POST,
            "/v1/payroll/users",
            "payroll_enrol",
            "Enrols one user: issues their virtual account and opens their wallet.",
            OPS,
            body::<settlement::Enrol>(),
            json::<settlement::Enrolled>(),
            &["forbidden", "invalid_input", "not_found", "role_disabled"],
            post(settlement::enrol),
        )
        .status(201),
        route(
            M::POST,
            "/v1/payroll/users/import",
            "payroll_import_users",
            "Imports payroll users with their virtual accounts per provider, payout accounts and repayment/suspension rules; idempotent by content; any refused line writes nothing.",
            SERVICE_OPS,
            body::<imports::ImportBody>(),
            json::<money::import::ImportReport>(),
            &["forbidden", "invalid_input", "role_disabled"],
            post(imports::payroll_users),
        )
        .status(200),
        route(
            M::POST,
            "/v1/fees/loans/import",
            "fees_import_loans",
            "Imports loans and opens their fee accounts; idempotent by content; any refused line writes nothing.",
            SERVICE_OPS,
            body::<imports::ImportBody>(),
            json::<money::import::ImportReport>(),
            &["forbidden", "invalid_input", "role_disabled"],
            post(imports::loans),
        )
        .status(200),
        route(
            M::POST,
            "/v1/fees/accruals/import",
            "fees_import_accruals",
            "Imports daily accruals per fee kind (one per loan, day and kind); idempotent by content; any refused line writes nothing.",
            SERVICE_OPS,
            body::<imports::ImportBody>(),
            json::<money::import::ImportReport>(),
            &["forbidden", "invalid_input", "role_disabled"],
            post(imports::accruals),
        )
        .status(200),
        route(
            M::POST,
            "/v1/payroll/deposits/{id}/retry",
            "payroll_retry",
            "Runs the stage a deposit stands or waits at again (replays its dead letter). Under maker-checker (configured per action) it answers 202 with a pending approval instead.",
            OPS,
            body::<Empty>(),
            json::<payroll::DepositView>(),
            &["forbidden", "not_found", "conflict", "role_disabled"],
            post(settlement::retry),
        )
        .status(200)
        .guarded(Body::of::<crate::approvals::ApprovalView>()),
        route(
            M::POST,
            "/v1/payroll/deposits/{id}/rollback",
            "payroll_rollback",
            "Rolls a deposit back: the decision commits, then compensating transfers. Under maker-checker (configured per action) it answers 202 with a pending approval instead.",
            OPS,
            body::<Empty>(),
            json::<payroll::DepositView>(),
            &["forbidden", "not_found", "conflict", "role_disabled"],
            post(settlement::rollback),
        )
        .status(200)
        .guarded(Body::of::<crate::approvals::ApprovalView>()),
        route(
            M::GET,
            "/v1/alerts",
            "alerts",
            "Payroll alerts, newest first.",
            OPS,
            None,
            json::<Items<payroll::AlertRow>>(),
            &["forbidden", "role_disabled"],
            get(settlement::alerts),
        ),
        route(
            M::GET,
            "/v1/events/status",
            "events_status",
            "The event backbone now: per stream the unrelayed backlog and its oldest age, per consumer the lag and parked keys, per partition the relay leader.",
            OPS,
            None,
            json::<events::status::BackboneStatus>(),
            &["forbidden", "role_disabled"],
            get(operations::events_status),
        ),
        route(
            M::GET,
            "/v1/events/dead-letters",
            "dead_letters",
            "Dead letters, newest first.",
            OPS,
            None,
            json::<Items<operations::DeadLetterView>>(),
            &["forbidden", "invalid_query", "role_disabled"],
            get(operations::dead_letters),
        )
        .query(&[
            ("state", "parked, replayed or discarded"),
            ("limit", "items per page (1..=100)"),
        ]),
        route(
            M::POST,
            "/v1/events/dead-letters/{id}/replay",
            "replay_dead_letter",
            "Delivers a parked event again.",
            OPS,
            body::<Empty>(),
            json::<operations::DeadLetterView>(),
            &[
                "forbidden",
                "invalid_path",
                "not_found",
                "conflict",
                "role_disabled",
            ],
            post(operations::replay),
        )
        .status(200),
        route(
            M::POST,
            "/v1/events/dead-letters/{id}/discard",
            "discard_dead_letter",
            "Finishes a parked event without its effect.",
            OPS,
            body::<Empty>(),
            json::<operations::DeadLetterView>(),
            &[
                "forbidden",
                "invalid_path",
                "not_found",
                "conflict",
                "role_disabled",
            ],
            post(operations::discard),
        )
        .status(200),
        route(
            M::GET,
            "/v1/providers/flags",
            "provider_flags",
            "The cohort percentage routed to the next provider and the latest routing changes.",
            OPS,
            None,
            json::<operations::ProviderFlags>(),
            &["forbidden", "role_disabled"],
            get(operations::flags),
        ),
        route(
            M::POST,
            "/v1/providers/cohort",
            "set_cohort",
            "Sets the share of users routed to the next provider. Under maker-checker (configured per action) it answers 202 with a pending approval instead.",
            OPS,
            body::<operations::CohortBody>(),
            json::<operations::ProviderFlags>(),
            &["forbidden", "invalid_input", "role_disabled"],
            post(operations::set_cohort),
        )
        .status(200)
        .guarded(Body::of::<crate::approvals::ApprovalView>()),
        route(
            M::POST,
            "/v1/providers/overrides/{user_id}",
            "set_override",
            "Pins one user to a provider (or removes the pin with null). Under maker-checker (configured per action) it answers 202 with a pending approval instead.",
            OPS,
            body::<operations::OverrideBody>(),
            json::<operations::ProviderFlags>(),
            &[
                "forbidden",
                "invalid_path",
                "invalid_input",
                "role_disabled",
            ],
            post(operations::set_override),
        )
        .status(200)
        .guarded(Body::of::<crate::approvals::ApprovalView>()),
    ]
}

/// The API router built from [`table`]: each route gets its role check; `/v1`
/// routes get authentication, rate limits and idempotency.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut public = Router::new();
    let mut v1 = Router::new();
    for route in table() {
        if route.roles.is_empty() {
            public = public.route(route.path, route.handler);
        } else {
            let roles = route.roles;
            // Innermost first: the write permit, then idempotency, then — outside
            // both — the role check, so a caller without the role is 403 before
            // its Idempotency-Key is even looked at.
            let handler = route
                .handler
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    crate::limits::write_permit,
                ))
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    crate::idempotency::idempotent,
                ))
                .route_layer(middleware::from_fn(
                    move |request: Request, next: Next| async move {
                        let allowed = request
                            .extensions()
                            .get::<Caller>()
                            .map(|caller| caller.require(roles));
                        match allowed {
                            Some(Ok(())) => next.run(request).await,
                            Some(Err(error)) => error.into_response(),
                            None => ApiError::new("unauthenticated", "an API key is required")
                                .into_response(),
                        }
                    },
                ));
            v1 = v1.route(route.path, handler);
        }
    }
    let v1 = v1.route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::auth::authenticate,
    ));
    public.merge(v1)
}

/// A JSON body parsed by our rules: `application/json` (an empty body counts as
/// `{}`), UTF-8, the schema's types; every failure is `invalid_json` with where
/// and why, before any handler code runs.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Json<T>, ApiError> {
        let json_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
            });
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::new("body_too_large", "the body exceeds the limit"))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            if json_type != Some(true) {
                return Err(ApiError::new(
                    "unsupported_media_type",
                    "send bodies as Content-Type: application/json",
                ));
            }
            &bytes
        };
        if std::str::from_utf8(text).is_err() {
            return Err(ApiError::new("invalid_json", "the body is not UTF-8"));
        }
        // serde would also read a struct from a positional array (`["ops"]`); a
        // body is an object with named fields, nothing else.
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::new(
                "invalid_json",
                "the body must be a JSON object",
            ));
        }
        serde_json::from_slice(text).map(Json).map_err(|error| {
            ApiError::new("invalid_json", format!("the body does not fit: {error}"))
                .with_details(serde_json::json!({ "line": error.line(), "column": error.column() }))
        })
    }
}

/// Query parameters parsed by our rules (`invalid_query` on failure).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|error| ApiError::new("invalid_query", error.body_text()))
    }
}

/// Path parameters parsed by our rules (`invalid_path` on failure).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Path<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|error| ApiError::new("invalid_path", error.body_text()))
    }
}

/// The body of actions that take no input: `{}` or nothing.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A page size from `?limit=`, clamped to the server's page limit.
pub fn page_limit(limit: Option<i64>, default: i64, state: &AppState) -> Result<i64, ApiError> {
    let max = i64::try_from(state.config().page_items_max).unwrap_or(100);
    match limit {
        None => Ok(default.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            "invalid_query",
            format!("limit must be 1..={max}, got {n}"),
        )),
    }
}

/// A JSON answer with a status.
pub fn answer(status: u16, body: impl serde::Serialize) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    (status, axum::Json(body)).into_response()
}

pub(crate) type Shared = State<AppState>;
