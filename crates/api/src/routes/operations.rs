//! Operators' platform endpoints: who am I, the audit log, dead letters and
//! provider routing flags. Every ops action is in the audit log (key id, time,
//! action, target) before it runs and again with its outcome; cohort and override
//! changes may need a second ops key's approval (`crate::approvals`).

use axum::response::Response;
use bank::providers::ProviderName;
use events::{DeadLetter, DeadLetterState, OperatorAction};
use money::EventId;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::{Empty, Items, Json, Path, Query, Shared, answer, page_limit};
use crate::approvals::{self, Action};
use crate::auth::Caller;
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

/// Who a key is.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Me")]
pub struct MeView {
    key_id: String,
    role: crate::Role,
    #[schemars(with = "Option<money::AccountId>")]
    customer_id: Option<String>,
}

pub async fn me(caller: Caller) -> Response {
    answer(
        200,
        MeView {
            key_id: caller.key_id,
            role: caller.role,
            customer_id: caller.customer_id,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    before_id: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn audit(state: Shared, Query(query): Query<AuditQuery>) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit, 50, &state)?;
    let items = db::audit_page(state.store(), query.before_id.unwrap_or(i64::MAX), limit).await?;
    let next_before_id = if i64::try_from(items.len()).unwrap_or(0) == limit {
        items.last().map(|row| row.id)
    } else {
        None
    };
    Ok(answer(
        200,
        AuditPage {
            items,
            next_before_id,
        },
    ))
}

/// A page of the audit log, newest first.
#[derive(Serialize, JsonSchema)]
pub struct AuditPage {
    items: Vec<db::AuditRow>,
    /// Where the next page starts (`?before_id=`); none on the last page.
    next_before_id: Option<i64>,
}

/// A dead letter as the API shows it.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "DeadLetter")]
pub struct DeadLetterView {
    /// `<consumer>:<event id>`.
    id: String,
    consumer: String,
    event_id: EventId,
    kind: String,
    key: String,
    seq: i64,
    attempts: i64,
    last_error: String,
    at_ms: i64,
    state: DeadLetterState,
    resolved_by: Option<String>,
    resolved_at_ms: Option<i64>,
}

/// A dead letter's API id: `<consumer>:<event id>`.
fn letter_json(letter: &DeadLetter) -> DeadLetterView {
    DeadLetterView {
        id: format!("{}:{}", letter.consumer, letter.event.id),
        consumer: letter.consumer.clone(),
        event_id: letter.event.id,
        kind: letter.event.kind.clone(),
        key: letter.event.key.clone(),
        seq: letter.event.seq,
        attempts: letter.attempts,
        last_error: letter.last_error.clone(),
        at_ms: letter.dead_at.unix_ms(),
        state: letter.state,
        resolved_by: letter.resolved_by.clone(),
        resolved_at_ms: letter.resolved_at.map(|t| t.unix_ms()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LettersQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn events_status(state: Shared) -> Result<Response, ApiError> {
    let store = state.events_store()?;
    let now = money::Timestamp::from_unix_ms(state.now_ms());
    let status = events::status::status(store, now).await?;
    Ok(answer(
        200,
        serde_json::to_value(status).unwrap_or_default(),
    ))
}

pub async fn dead_letters(
    state: Shared,
    Query(query): Query<LettersQuery>,
) -> Result<Response, ApiError> {
    let store = state.events_store()?;
    let limit = usize::try_from(page_limit(query.limit, 50, &state)?).unwrap_or(50);
    let wanted = match query.state.as_deref() {
        None | Some("") => None,
        Some("parked") => Some(DeadLetterState::Parked),
        Some("replayed") => Some(DeadLetterState::Replayed),
        Some("discarded") => Some(DeadLetterState::Discarded),
        Some(other) => {
            return Err(ApiError::new(
                "invalid_query",
                format!("unknown dead letter state {other:?}"),
            ));
        }
    };
    let letters = events::dead_letter::list(store, None, wanted, limit).await?;
    let items: Vec<_> = letters.iter().map(letter_json).collect();
    Ok(answer(200, Items { items }))
}

fn parse_letter(id: &str) -> Result<(String, EventId), ApiError> {
    let bad = || ApiError::new("invalid_path", "a dead letter id is <consumer>:<event id>");
    let (consumer, event) = id.rsplit_once(':').ok_or_else(bad)?;
    if consumer.is_empty() {
        return Err(bad());
    }
    Ok((
        consumer.to_owned(),
        EventId::parse(event).map_err(|_| bad())?,
    ))
}

async fn resolve(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: OperatorAction,
    name: &str,
) -> Result<Response, ApiError> {
    let (consumer, event_id) = parse_letter(id)?;
    let store = state.events_store()?;
    let (letter, _) = events::dead_letter::show(store, &consumer, event_id).await?;
    if letter.state.after(action).is_none() {
        return Err(ApiError::reason(
            "conflict",
            "dead_letter_not_parked",
            format!("the dead letter is {}, not parked", letter.state.name()),
        ));
    }
    let actor = format!("api:{}", caller.key_id);
    let letter = state
        .audited(caller, name, id, json!({}), async {
            let at = money::Timestamp::from_unix_ms(state.now_ms());
            Ok(
                events::dead_letter::resolve(store, &consumer, event_id, action, &actor, at)
                    .await?,
            )
        })
        .await?;
    Ok(answer(200, letter_json(&letter)))
}

pub async fn replay(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    resolve(
        &state,
        &caller,
        &id,
        OperatorAction::Replay,
        "events.replay",
    )
    .await
}

pub async fn discard(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    resolve(
        &state,
        &caller,
        &id,
        OperatorAction::Discard,
        "events.discard",
    )
    .await
}

/// The provider routing now, with its latest changes.
#[derive(Serialize, JsonSchema)]
pub struct ProviderFlags {
    #[schemars(range(min = 0, max = 100))]
    cohort_percent: u8,
    changes: Vec<bank::routing::AuditEntry>,
}

async fn flags_json(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let routing = state.routing()?;
    let flags = ProviderFlags {
        cohort_percent: routing.cohort_percent().await?,
        changes: routing.audit_log(50).await?,
    };
    serde_json::to_value(flags).map_err(|e| ApiError::internal("internal_error", &e))
}

pub async fn flags(state: Shared) -> Result<Response, ApiError> {
    Ok(answer(200, flags_json(&state).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cohort")]
pub struct CohortBody {
    #[schemars(range(min = 0, max = 100))]
    percent: u8,
}

/// One user's provider pin: `legacy`, `next`, or null to remove it. The field is
/// required: `null` removes the pin, an empty body does not.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Override")]
pub struct OverrideBody {
    #[serde(deserialize_with = "present")]
    #[schemars(required, extend("type" = ["string", "null"], "enum" = ["legacy", "next", null]))]
    provider: Option<String>,
}

/// `Option` without serde's "missing means None": the field must be there.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(deserializer)
}

pub async fn set_cohort(
    state: Shared,
    caller: Caller,
    Json(body): Json<CohortBody>,
) -> Result<Response, ApiError> {
    if body.percent > 100 {
        return Err(ApiError::invalid(
            "routing_bad_percent",
            "percent must be 0..=100",
        ));
    }
    state.routing()?;
    let action = Action::ProvidersCohort {
        percent: body.percent,
    };
    let (status, body) = approvals::run_or_request(&state, &caller, action).await?;
    Ok(answer(status, body))
}

/// Sets the cohort percentage, audited with its outcome; the flags after it.
pub(crate) async fn cohort(
    state: &AppState,
    caller: &Caller,
    percent: u8,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let routing = state.routing()?;
    let details = approvals::under(approval_id, json!({ "percent": percent }));
    let actor = format!("api:{}", caller.key_id);
    state
        .audited(caller, "providers.cohort", "cohort", details, async {
            Ok(routing.set_cohort_percent(percent, &actor).await?)
        })
        .await?;
    flags_json(state).await
}

pub async fn set_override(
    state: Shared,
    caller: Caller,
    Path(user): Path<String>,
    Json(body): Json<OverrideBody>,
) -> Result<Response, ApiError> {
    let provider = match &body.provider {
        None => None,
        Some(name) => Some(ProviderName::parse(name).ok_or_else(|| {
            ApiError::invalid("provider_invalid", "provider must be legacy, next or null")
        })?),
    };
    let user = bank::UserId::parse(&user)
        .map_err(|error| ApiError::new("invalid_path", format!("user id: {error}")))?;
    state.routing()?;
    let action = Action::ProvidersOverride {
        user_id: user.to_string(),
        provider: provider.map(|p| p.as_str().to_owned()),
    };
    let (status, body) = approvals::run_or_request(&state, &caller, action).await?;
    Ok(answer(status, body))
}

/// Pins a user to a provider (or unpins), audited with its outcome; the flags
/// after it.
pub(crate) async fn pin(
    state: &AppState,
    caller: &Caller,
    user: &str,
    provider: Option<&str>,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let routing = state.routing()?;
    let user_id = bank::UserId::parse(user)
        .map_err(|error| ApiError::new("invalid_path", format!("user id: {error}")))?;
    let provider = match provider {
        None => None,
        Some(name) => Some(ProviderName::parse(name).ok_or_else(|| {
            ApiError::invalid("provider_invalid", "provider must be legacy, next or null")
        })?),
    };
    let details = approvals::under(approval_id, json!({ "provider": provider }));
    let actor = format!("api:{}", caller.key_id);
    state
        .audited(caller, "providers.override", user, details, async {
            Ok(routing.set_override(user_id, provider, &actor).await?)
        })
        .await?;
    flags_json(state).await
}
