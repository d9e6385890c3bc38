//! Operators' platform endpoints: who am I, API keys, the audit log, dead letters
//! and provider routing flags. Every ops action is in the audit log (key id, time,
//! action, target) before it runs.

use axum::response::Response;
use bank::providers::ProviderName;
use events::{DeadLetter, DeadLetterState, OperatorAction};
use money::EventId;
use serde::Deserialize;
use serde_json::json;

use super::{Empty, Json, Path, Query, Shared, answer, page_limit};
use crate::auth::{self, Caller, Role};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn me(caller: Caller) -> Response {
    answer(
        200,
        json!({
            "key_id": caller.key_id,
            "role": caller.role,
            "customer_id": caller.customer_id,
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    role: String,
    #[serde(default)]
    customer_id: Option<String>,
    /// Only for service keys: `house_accounts`.
    #[serde(default)]
    grants: Vec<String>,
}

pub async fn create_key(
    state: Shared,
    caller: Caller,
    Json(body): Json<NewKeyBody>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::invalid("role_invalid", "role must be ops, service or customer")
    })?;
    if let Some(customer) = &body.customer_id {
        auth::parse_customer(customer)?;
    }
    let mut grants = Vec::with_capacity(body.grants.len());
    for grant in &body.grants {
        grants.push(auth::Grant::parse(grant).ok_or_else(|| {
            ApiError::invalid("grant_invalid", format!("unknown grant {grant:?}"))
        })?);
    }
    let created = auth::create_key_granted(
        state.store(),
        role,
        body.customer_id.as_deref(),
        &grants,
        &caller.key_id,
        state.now_ms(),
    )
    .await?;
    state
        .audit(
            &caller,
            "keys.create",
            &created.key_id,
            json!({ "role": role, "customer_id": created.customer_id, "grants": grants }),
        )
        .await?;
    let mut response = answer(201, &created);
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
        .extensions_mut()
        .insert(crate::idempotency::SecretAnswer {
            withheld: json!({ "key_id": created.key_id, "role": role }),
        });
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn list_keys(
    state: Shared,
    Query(query): Query<KeysQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit, 100, &state)?;
    let items = db::list_keys(state.store(), limit).await?;
    Ok(answer(200, json!({ "items": items })))
}

/// Revokes a key: audited first; from then on every process refuses it, since
/// each request reads its key from the database.
pub async fn revoke_key(
    state: Shared,
    caller: Caller,
    Path(key_id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    if !db::key_is_live(state.store(), &key_id).await? {
        return Err(ApiError::not_found("key"));
    }
    state
        .audit(&caller, "keys.revoke", &key_id, json!({}))
        .await?;
    let now_ms = state.now_ms();
    if !db::revoke_key(state.store(), &key_id, now_ms).await? {
        return Err(ApiError::not_found("key"));
    }
    Ok(answer(
        200,
        json!({ "key_id": key_id, "revoked_at_ms": now_ms }),
    ))
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
        json!({ "items": items, "next_before_id": next_before_id }),
    ))
}

/// A dead letter's API id: `<consumer>:<event id>`.
fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    json!({
        "id": format!("{}:{}", letter.consumer, letter.event.id),
        "consumer": letter.consumer,
        "event_id": letter.event.id,
        "kind": letter.event.kind,
        "key": letter.event.key,
        "seq": letter.event.seq,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "at_ms": letter.dead_at.unix_ms(),
        "state": letter.state,
        "resolved_by": letter.resolved_by,
        "resolved_at_ms": letter.resolved_at.map(|t| t.unix_ms()),
    })
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
    Ok(answer(200, json!({ "items": items })))
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
    state.audit(caller, name, id, json!({})).await?;
    let actor = format!("api:{}", caller.key_id);
    let letter = events::dead_letter::resolve(
        store,
        &consumer,
        event_id,
        action,
        &actor,
        money::Timestamp::from_unix_ms(state.now_ms()),
    )
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

async fn flags_json(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let routing = state.routing()?;
    let percent = routing.cohort_percent().await?;
    let changes = routing.audit_log(50).await?;
    Ok(json!({ "cohort_percent": percent, "changes": changes }))
}

pub async fn flags(state: Shared) -> Result<Response, ApiError> {
    Ok(answer(200, flags_json(&state).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortBody {
    percent: u8,
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
    let routing = state.routing()?;
    state
        .audit(
            &caller,
            "providers.cohort",
            "cohort",
            json!({ "percent": body.percent }),
        )
        .await?;
    routing
        .set_cohort_percent(body.percent, &format!("api:{}", caller.key_id))
        .await?;
    Ok(answer(200, flags_json(&state).await?))
}

pub async fn set_override(
    state: Shared,
    caller: Caller,
    Path(user): Path<String>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, ApiError> {
    // `provider` must be present: `null` removes the pin, an empty body does not.
    let provider = match (body.len(), body.get("provider")) {
        (1, Some(serde_json::Value::Null)) => None,
        (1, Some(serde_json::Value::String(name))) => {
            Some(ProviderName::parse(name).ok_or_else(|| {
                ApiError::invalid("provider_invalid", "provider must be legacy, next or null")
            })?)
        }
        _ => {
            let unknown: Vec<&str> = body
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "provider")
                .collect();
            return Err(ApiError::new(
                "invalid_json",
                format!(
                    "the body is {{\"provider\": \"legacy\" | \"next\" | null}}; unknown \
                     fields: {unknown:?}"
                ),
            ));
        }
    };
    let user = bank::UserId::parse(&user)
        .map_err(|error| ApiError::new("invalid_path", format!("user id: {error}")))?;
    let routing = state.routing()?;
    state
        .audit(
            &caller,
            "providers.override",
            &user.to_string(),
            json!({ "provider": provider }),
        )
        .await?;
    routing
        .set_override(user, provider, &format!("api:{}", caller.key_id))
        .await?;
    Ok(answer(200, flags_json(&state).await?))
}
