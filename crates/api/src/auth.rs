//! API keys and who is calling. A key is 256 random bits shown once at creation
//! (or rotation); only its SHA-256 is stored. Each key has a role — `ops`
//! (settlement, dead letters, flags, keys, audit), `service` (ledger transfers and
//! accounts) or `customer` (only the accounts it owns) — its own rate limit, and
//! optionally an expiry. Every request reads its key from the database, so a
//! revoked, rotated-away or expired key is refused at once by every process; the
//! key's last use is written at most once a minute.
//!
//! This module never logs or returns a key after creation, and never answers 403
//! where a customer asks about someone else's resource: that is a 404, so a
//! customer cannot learn which ids exist.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::db::{self, KeyRow};
use crate::error::ApiError;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ops,
    Service,
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ops => "ops",
            Role::Service => "service",
            Role::Customer => "customer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "ops" => Some(Role::Ops),
            "service" => Some(Role::Service),
            "customer" => Some(Role::Customer),
            _ => None,
        }
    }
}

/// What a key may do beyond its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A service key may move money on house accounts (settlement, corporate,
    /// lender, suspense, operating…); without it only customer accounts.
    HouseAccounts,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::HouseAccounts => "house_accounts",
        }
    }

    pub fn parse(text: &str) -> Option<Grant> {
        match text {
            "house_accounts" => Some(Grant::HouseAccounts),
            _ => None,
        }
    }
}

/// The authenticated caller of a `/v1` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
    /// Set exactly for customer keys: the customer (channel user id, a UUID).
    pub customer_id: Option<String>,
    /// A service key granted [`Grant::HouseAccounts`].
    pub house_accounts: bool,
}

impl Caller {
    /// Refuses with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// May this caller see resources of `owner` (an account's customer, or `None`
    /// for an account no customer owns)? Ops and service see everything.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match self.role {
            Role::Ops | Role::Service => true,
            Role::Customer => owner.is_some() && owner == self.customer_id.as_deref(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new("unauthenticated", "an API key is required"))
    }
}

/// A key as shown once to its creator.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CreatedKey {
    pub key_id: String,
    /// The secret: shown only here.
    pub key: String,
    pub role: Role,
    #[schemars(with = "Option<money::AccountId>")]
    pub customer_id: Option<String>,
    pub expires_at_ms: Option<i64>,
    /// Present (with status 202) when a new ops key waits for a second ops key's
    /// approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::approvals::ApprovalView>,
}

/// How far ahead a key's expiry may be set (ten years).
pub const KEY_EXPIRY_MS_MAX: i64 = 10 * 366 * 24 * 60 * 60 * 1_000;
/// A key's last use is written at most this often (per key, across processes).
pub const LAST_USED_EVERY_MS: i64 = 60_000;

/// What a new key may do, checked: grants only on service keys, a customer id
/// exactly on customer keys, an expiry in the future and at most
/// [`KEY_EXPIRY_MS_MAX`] ahead.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub role: Role,
    pub customer_id: Option<String>,
    pub grants: Vec<Grant>,
    pub expires_at_ms: Option<i64>,
}

impl KeySpec {
    pub fn new(
        role: Role,
        customer_id: Option<&str>,
        grants: &[Grant],
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<KeySpec, ApiError> {
        if role != Role::Service && !grants.is_empty() {
            return Err(ApiError::invalid(
                "grant_not_allowed",
                "only service keys carry grants",
            ));
        }
        let customer_id = match (role, customer_id) {
            (Role::Customer, Some(customer)) => Some(parse_customer(customer)?),
            (Role::Customer, None) => {
                return Err(ApiError::invalid(
                    "customer_id_required",
                    "a customer key needs customer_id",
                ));
            }
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    "customer_id_not_allowed",
                    "only customer keys carry a customer_id",
                ));
            }
            (_, None) => None,
        };
        check_expiry(expires_at_ms, now_ms)?;
        Ok(KeySpec {
            role,
            customer_id,
            grants: grants.to_vec(),
            expires_at_ms,
        })
    }
}

/// An expiry must lie after `now_ms` and within [`KEY_EXPIRY_MS_MAX`] of it.
pub fn check_expiry(expires_at_ms: Option<i64>, now_ms: i64) -> Result<(), ApiError> {
    match expires_at_ms {
        Some(at) if at <= now_ms || at.saturating_sub(now_ms) > KEY_EXPIRY_MS_MAX => {
            Err(ApiError::invalid(
                "expires_at_invalid",
                "expires_at_ms must be in the future and at most ten years ahead",
            ))
        }
        _ => Ok(()),
    }
}

/// A fresh key for `key_id` (a new id when `None`): 256 bits from the OS's random
/// source (three v4 UUIDs' random bits), prefixed with the id's own bits so a key
/// names its id.
pub fn mint(key_id: Option<&str>) -> (String, String) {
    let id_bits = match key_id.and_then(|id| id.strip_prefix("key_")) {
        Some(bits) => bits.to_owned(),
        None => uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
    };
    let secret: String = (0..3)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    (
        format!("key_{id_bits}"),
        format!("settle_{id_bits}_{secret}"),
    )
}

/// Creates a key: 256 bits from the OS's random source, stored as its SHA-256 only.
pub async fn create_key(
    store: &store::Store,
    role: Role,
    customer_id: Option<&str>,
    created_by: &str,
    now_ms: i64,
) -> Result<CreatedKey, ApiError> {
    create_key_granted(store, role, customer_id, &[], created_by, now_ms).await
}

/// [`create_key`] with grants; only service keys may hold any.
pub async fn create_key_granted(
    store: &store::Store,
    role: Role,
    customer_id: Option<&str>,
    grants: &[Grant],
    created_by: &str,
    now_ms: i64,
) -> Result<CreatedKey, ApiError> {
    let spec = KeySpec::new(role, customer_id, grants, None, now_ms)?;
    store_key(store, mint(None), &spec, created_by, now_ms, None).await
}

/// Stores a minted key (its hash) under `spec`; `awaiting_approval` names the
/// approval an ops key waits for before it works.
pub async fn store_key(
    store: &store::Store,
    (key_id, key): (String, String),
    spec: &KeySpec,
    created_by: &str,
    now_ms: i64,
    awaiting_approval: Option<&str>,
) -> Result<CreatedKey, ApiError> {
    db::insert_key(
        store,
        &KeyRow {
            key_id: key_id.clone(),
            key_hash: hash_key(&key),
            role: spec.role.as_str().to_owned(),
            customer_id: spec.customer_id.clone(),
            created_at_ms: now_ms,
            created_by: created_by.to_owned(),
            grants: spec
                .grants
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(","),
            expires_at_ms: spec.expires_at_ms,
            awaiting_approval: awaiting_approval.map(str::to_owned),
        },
    )
    .await?;
    Ok(CreatedKey {
        key_id,
        key,
        role: spec.role,
        customer_id: spec.customer_id.clone(),
        expires_at_ms: spec.expires_at_ms,
        approval: None,
    })
}

/// Gives a live key a new secret under the same id, role and grants (and, when
/// given, a new expiry): the old key is refused from the next request on, in
/// every process. `None` if there is no such live key.
pub async fn rotate_key(
    store: &store::Store,
    key_id: &str,
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<Option<CreatedKey>, ApiError> {
    check_expiry(expires_at_ms, now_ms)?;
    let Some(row) = db::key_row(store, key_id).await? else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&row.role) else {
        return Err(ApiError::internal(
            "internal_error",
            &format!("key {key_id} has unknown role {:?}", row.role),
        ));
    };
    let (key_id, key) = mint(Some(&row.key_id));
    if !db::rotate_key(store, &key_id, &hash_key(&key), expires_at_ms, now_ms).await? {
        return Ok(None);
    }
    Ok(Some(CreatedKey {
        key_id,
        key,
        role,
        customer_id: row.customer_id,
        expires_at_ms: expires_at_ms.or(row.expires_at_ms),
        approval: None,
    }))
}

/// A customer id is a channel user id: a UUID, in canonical hyphenated form.
pub fn parse_customer(text: &str) -> Result<String, ApiError> {
    channel::UserId::parse(text)
        .map(|user| user.to_string())
        .map_err(|error| ApiError::invalid("customer_id_invalid", format!("customer_id: {error}")))
}

pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keys seen valid by hash (only to spare them the strangers' limiter: every
/// request still reads its key from the database, so a revoke takes effect at once
/// in every process) and each key's rate limiter.
pub(crate) struct Gate {
    known: Mutex<HashMap<String, Caller>>,
    limiter:
        RateLimiter<String, governor::state::keyed::DefaultKeyedStateStore<String>, DefaultClock>,
    /// Per peer address, counting failed authentications (no key, unknown or
    /// revoked key).
    strangers:
        RateLimiter<IpAddr, governor::state::keyed::DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    /// Peers over their failure budget, until when: refused before any lookup.
    held: Mutex<HashMap<IpAddr, std::time::Instant>>,
    /// When this process last wrote each key's last use (Unix ms).
    touched: Mutex<HashMap<String, i64>>,
}

/// What a presented key turned out to be.
enum Lookup {
    Found(Caller),
    /// Not a live key (never made, revoked, rotated away, awaiting approval).
    Unknown,
    /// A live key past its `expires_at_ms`.
    Expired,
}

/// Keys remembered before the cache starts over.
const KNOWN_KEYS_MAX: usize = 10_000;

impl Gate {
    pub(crate) fn new(requests_per_s_max: u32, unauthenticated_per_s_max: u32) -> Gate {
        let per_s = NonZeroU32::new(requests_per_s_max.max(1)).unwrap_or(NonZeroU32::MIN);
        let strangers_per_s =
            NonZeroU32::new(unauthenticated_per_s_max.max(1)).unwrap_or(NonZeroU32::MIN);
        Gate {
            known: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_second(per_s)),
            strangers: RateLimiter::keyed(Quota::per_second(strangers_per_s)),
            held: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    fn is_known(&self, key: &str) -> bool {
        self.known
            .lock()
            .is_ok_and(|known| known.contains_key(&hash_key(key)))
    }

    /// `Err(seconds)` while `peer` is held for too many failed authentications.
    fn held(&self, peer: Option<IpAddr>) -> Result<(), u64> {
        let Some(peer) = peer else { return Ok(()) };
        let Ok(mut held) = self.held.lock() else {
            return Ok(());
        };
        match held.get(&peer) {
            Some(until) if *until > std::time::Instant::now() => {
                let wait = until.saturating_duration_since(std::time::Instant::now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            Some(_) => {
                held.remove(&peer);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed authentication of `peer`: 401 within its budget, else 429
    /// and the peer is held (refused before any lookup) until the budget refills.
    fn failed(&self, peer: Option<IpAddr>, refusal: ApiError) -> Response {
        let over = peer.and_then(|peer| {
            self.strangers.check_key(&peer).err().map(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                if let Ok(mut held) = self.held.lock() {
                    if held.len() >= KNOWN_KEYS_MAX {
                        held.clear();
                    }
                    held.insert(peer, std::time::Instant::now() + wait);
                }
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
        });
        match over {
            Some(seconds) => stranger_limited(seconds),
            None => refusal.into_response(),
        }
    }

    async fn caller(
        &self,
        store: &store::Store,
        key: &str,
        now_ms: i64,
    ) -> Result<Lookup, ApiError> {
        let key_hash = hash_key(key);
        let row = match db::key_by_hash(store, &key_hash).await? {
            Some(row) if row.expires_at_ms.is_none_or(|at| now_ms < at) => row,
            found => {
                if let Ok(mut known) = self.known.lock() {
                    known.remove(&key_hash);
                }
                return Ok(if found.is_some() {
                    Lookup::Expired
                } else {
                    Lookup::Unknown
                });
            }
        };
        let Some(role) = Role::parse(&row.role) else {
            return Err(ApiError::internal(
                "internal_error",
                &format!("key {} has unknown role {:?}", row.key_id, row.role),
            ));
        };
        let house_accounts = row
            .grants
            .split(',')
            .any(|g| Grant::parse(g) == Some(Grant::HouseAccounts));
        let caller = Caller {
            key_id: row.key_id,
            role,
            customer_id: row.customer_id,
            house_accounts: role == Role::Service && house_accounts,
        };
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= KNOWN_KEYS_MAX {
                known.clear();
                self.limiter.retain_recent();
                self.strangers.retain_recent();
            }
            known.insert(key_hash, caller.clone());
        }
        Ok(Lookup::Found(caller))
    }

    /// Records that `key_id` was used, at most once per [`LAST_USED_EVERY_MS`]
    /// per process (and, by the UPDATE's own condition, across processes): a
    /// request never pays a write for it otherwise.
    async fn touch(&self, store: &store::Store, key_id: &str, now_ms: i64) {
        let due = self.touched.lock().is_ok_and(|mut touched| {
            let due = touched
                .get(key_id)
                .is_none_or(|at| now_ms.saturating_sub(*at) >= LAST_USED_EVERY_MS);
            if due {
                if touched.len() >= KNOWN_KEYS_MAX {
                    touched.clear();
                }
                touched.insert(key_id.to_owned(), now_ms);
            }
            due
        });
        if due && let Err(error) = db::touch_key(store, key_id, now_ms, LAST_USED_EVERY_MS).await {
            tracing::warn!(%error, key_id, "could not record a key's last use");
        }
    }

    /// `Err(seconds)` when the key is over its rate.
    fn admit(&self, key_id: &str) -> Result<(), u64> {
        self.limiter
            .check_key(&key_id.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }
}

/// The caller a request's key names, if it names one (for public routes that show
/// more to a key, such as `/readyz`). Counts against the key's rate limit.
pub(crate) async fn optional_caller(state: &AppState, headers: &HeaderMap) -> Option<Caller> {
    let key = bearer(headers)?;
    let gate = &state.inner.gate;
    if !gate.is_known(key) {
        return None;
    }
    let Ok(Lookup::Found(caller)) = gate.caller(&state.inner.store, key, state.now_ms()).await
    else {
        return None;
    };
    gate.admit(&caller.key_id).ok()?;
    Some(caller)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let key = key.trim();
    (!key.is_empty() && key.len() <= 200).then_some(key)
}

fn stranger_limited(seconds: u64) -> Response {
    metrics::counter!("api_rate_limited_total", "who" => "unauthenticated").increment(1);
    let mut error = ApiError::new(
        "rate_limited",
        "too many failed authentications from this address",
    );
    error.retry_after_s = Some(seconds);
    error.into_response()
}

/// Middleware on `/v1`: resolves the key into a [`Caller`] (401 without one) and
/// applies the key's rate limit (429 with `Retry-After`).
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let gate: &Arc<Gate> = &state.inner.gate;
    let key = bearer(request.headers());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    // A key seen valid is not held back; anything else from a held peer is
    // refused before it costs a lookup.
    if !key.is_some_and(|key| gate.is_known(key))
        && let Err(seconds) = gate.held(peer)
    {
        return stranger_limited(seconds);
    }
    let Some(key) = key else {
        let refusal = ApiError::new(
            "unauthenticated",
            "an API key is required: Authorization: Bearer <key>",
        );
        return gate.failed(peer, refusal);
    };
    let now_ms = state.now_ms();
    let caller = match gate.caller(&state.inner.store, key, now_ms).await {
        Ok(Lookup::Found(caller)) => caller,
        Ok(Lookup::Unknown) => {
            return gate.failed(peer, ApiError::new("unauthenticated", "unknown API key"));
        }
        Ok(Lookup::Expired) => {
            let refusal =
                ApiError::reason("unauthenticated", "key_expired", "this API key expired");
            return gate.failed(peer, refusal);
        }
        Err(error) => return error.into_response(),
    };
    if let Err(seconds) = gate.admit(&caller.key_id) {
        metrics::counter!("api_rate_limited_total").increment(1);
        let mut error = ApiError::new("rate_limited", "too many requests for this key");
        error.retry_after_s = Some(seconds);
        return error.into_response();
    }
    gate.touch(&state.inner.store, &caller.key_id, now_ms).await;
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_hash_is_hex_sha256() {
        let hash = hash_key("abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_customer_sees_only_what_it_owns() {
        let customer = Caller {
            key_id: "k".into(),
            role: Role::Customer,
            customer_id: Some("c1".into()),
            house_accounts: false,
        };
        assert!(customer.may_see(Some("c1")));
        assert!(!customer.may_see(Some("c2")));
        assert!(!customer.may_see(None));
        let service = Caller {
            role: Role::Service,
            customer_id: None,
            ..customer
        };
        assert!(service.may_see(None));
    }

    #[test]
    fn only_bearer_keys_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
