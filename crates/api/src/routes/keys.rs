//! API keys over HTTP: create (with an optional expiry), list (never a key, with
//! last use, expiry and rotation), revoke and rotate. A new or rotated key is in
//! its one answer only (`Cache-Control: no-store`, never kept for an
//! Idempotency-Key replay). Under maker-checker a new ops key is made inactive
//! and answered with its pending approval: it works once a second ops key
//! approves. Every change is audited with its outcome.

use axum::http::{HeaderValue, header};
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Empty, Items, Json, Path, Query, Shared, answer, page_limit};
use crate::approvals::{self, Action, Guarded};
use crate::auth::{self, Caller, CreatedKey, KeySpec, Role};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewKey")]
pub struct NewKeyBody {
    #[schemars(with = "Role")]
    role: String,
    /// Exactly on customer keys.
    #[serde(default)]
    #[schemars(schema_with = "money::id_schema")]
    customer_id: Option<String>,
    /// Only for service keys: `house_accounts`.
    #[serde(default)]
    #[schemars(with = "Vec<auth::Grant>")]
    grants: Vec<String>,
    /// When the key stops working (Unix ms), in the future and at most ten years
    /// ahead; past it the key is 401 `key_expired`. None: it never expires.
    #[serde(default)]
    expires_at_ms: Option<i64>,
}

/// An answer holding a new key: not cached, not kept for a replay (only
/// `withheld` is).
fn secret_answer(status: u16, body: Value, withheld: Value) -> Response {
    let mut response = answer(status, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .extensions_mut()
        .insert(crate::idempotency::SecretAnswer { withheld });
    response
}

pub async fn create_key(
    state: Shared,
    caller: Caller,
    Json(body): Json<NewKeyBody>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::invalid("role_invalid", "role must be ops, service or customer")
    })?;
    let mut grants = Vec::with_capacity(body.grants.len());
    for grant in &body.grants {
        grants.push(auth::Grant::parse(grant).ok_or_else(|| {
            ApiError::invalid("grant_invalid", format!("unknown grant {grant:?}"))
        })?);
    }
    let now_ms = state.now_ms();
    let spec = KeySpec::new(
        role,
        body.customer_id.as_deref(),
        &grants,
        body.expires_at_ms,
        now_ms,
    )?;
    let minted = auth::mint(None);
    let key_id = minted.0.clone();
    if role == Role::Ops && approvals::required(&state, Guarded::OpsKeyCreate) {
        return create_awaiting_approval(&state, &caller, minted, &spec).await;
    }
    let details = json!({
        "role": role, "customer_id": spec.customer_id, "grants": grants,
        "expires_at_ms": spec.expires_at_ms,
    });
    let created = state
        .audited(&caller, "keys.create", &key_id, details, async {
            auth::store_key(state.store(), minted, &spec, &caller.key_id, now_ms, None).await
        })
        .await?;
    let withheld = json!({ "key_id": created.key_id, "role": role });
    Ok(secret_answer(201, json!(created), withheld))
}

/// An ops key under maker-checker: stored inactive, with its pending approval.
async fn create_awaiting_approval(
    state: &AppState,
    caller: &Caller,
    minted: (String, String),
    spec: &KeySpec,
) -> Result<Response, ApiError> {
    let key_id = minted.0.clone();
    let action = Action::OpsKeyCreate {
        key_id: key_id.clone(),
    };
    let approval = approvals::request(state, caller, &action).await?;
    let details = json!({ "role": spec.role, "approval_id": approval.approval_id });
    let now_ms = state.now_ms();
    let created: CreatedKey = state
        .audited(caller, "keys.create", &key_id, details, async {
            let awaiting = Some(approval.approval_id.as_str());
            auth::store_key(
                state.store(),
                minted,
                spec,
                &caller.key_id,
                now_ms,
                awaiting,
            )
            .await
        })
        .await?;
    let body = json!(CreatedKey {
        approval: Some(approvals::view(&approval, now_ms)),
        ..created
    });
    let withheld =
        json!({ "key_id": key_id, "role": spec.role, "approval_id": approval.approval_id });
    Ok(secret_answer(202, body, withheld))
}

/// Lets an ops key made under maker-checker work (run by its approval).
pub(crate) async fn activate_key(
    state: &AppState,
    caller: &Caller,
    key_id: &str,
    approval_id: Option<&str>,
) -> Result<Value, ApiError> {
    let details = approvals::under(approval_id, json!({}));
    state
        .audited(caller, "keys.activate", key_id, details, async {
            let approval_id = approval_id.unwrap_or_default();
            if !db::activate_key(state.store(), key_id, approval_id).await? {
                return Err(ApiError::reason(
                    "conflict",
                    "key_not_waiting",
                    "the key is not waiting for this approval (revoked, or never stored)",
                ));
            }
            Ok(json!({ "key_id": key_id, "active": true }))
        })
        .await
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
    Ok(answer(200, Items { items }))
}

/// Revokes a key: every process refuses it from the next request on, since each
/// request reads its key from the database.
pub async fn revoke_key(
    state: Shared,
    caller: Caller,
    Path(key_id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    if !db::key_is_live(state.store(), &key_id).await? {
        return Err(ApiError::not_found("key"));
    }
    let now_ms = state.now_ms();
    state
        .audited(&caller, "keys.revoke", &key_id, json!({}), async {
            if db::revoke_key(state.store(), &key_id, now_ms).await? {
                Ok(())
            } else {
                Err(ApiError::not_found("key"))
            }
        })
        .await?;
    Ok(answer(
        200,
        KeyRevoked {
            key_id,
            revoked_at_ms: now_ms,
        },
    ))
}

/// A revoked key.
#[derive(Serialize, JsonSchema)]
pub struct KeyRevoked {
    key_id: String,
    revoked_at_ms: i64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "KeyRotation")]
pub struct RotateBody {
    /// A new expiry (Unix ms); none keeps the old one.
    #[serde(default)]
    expires_at_ms: Option<i64>,
}

/// A new secret for a key: same id, role, customer and grants; the old secret is
/// refused from the next request on, in every process.
pub async fn rotate_key(
    state: Shared,
    caller: Caller,
    Path(key_id): Path<String>,
    Json(body): Json<RotateBody>,
) -> Result<Response, ApiError> {
    if !db::key_is_live(state.store(), &key_id).await? {
        return Err(ApiError::not_found("key"));
    }
    let now_ms = state.now_ms();
    auth::check_expiry(body.expires_at_ms, now_ms)?;
    let details = json!({ "expires_at_ms": body.expires_at_ms });
    let created = state
        .audited(&caller, "keys.rotate", &key_id, details, async {
            auth::rotate_key(state.store(), &key_id, body.expires_at_ms, now_ms)
                .await?
                .ok_or_else(|| ApiError::not_found("key"))
        })
        .await?;
    let withheld = json!({ "key_id": created.key_id, "rotated": true });
    Ok(secret_answer(200, json!(created), withheld))
}
