//! One worker per unit of work: a lease row per (deposit, stage) in
//! `payroll_claims`, with the owning process, an expiry and a fencing token.
//!
//! Before a stage does anything outside its transaction (a ledger transfer, a
//! bank call), its process takes the claim in one statement; a process that
//! finds a live claim of another owner skips the work (the backbone defers the
//! event). The token grows by one every time the claim changes hands (or is
//! taken again), never goes back, and is checked by the stage's transaction when
//! it records the result ([`fence`]): a process paused past its lease, or whose
//! work an operator overrode ([`supersede`]), records nothing.
//!
//! This module owns `payroll_claims` and its SQL; it never decides what a stage
//! does, and never deletes a claim row (a deleted row would restart its token).

use serde::Serialize;
use store::{Store, Tx, on_pool, on_tx};

use crate::PayrollError;
use crate::state::Stage;

/// The owner an operator action writes when it overrides every claim.
pub(crate) const OPERATOR: &str = "operator";

pub(crate) const SCHEMA: &str = "
CREATE TABLE payroll_claims (
    deposit_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    owner TEXT NOT NULL,
    token BIGINT NOT NULL CHECK (token > 0),
    expires_at_ms BIGINT NOT NULL,
    taken_at_ms BIGINT NOT NULL,
    PRIMARY KEY (deposit_id, stage)
);";

/// A claim this process holds: the token its result must be recorded under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub deposit_id: String,
    pub stage: Stage,
    pub owner: String,
    pub token: i64,
}

/// A claim row as operators see it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClaimView {
    pub stage: String,
    pub owner: String,
    pub token: i64,
    /// 0 once the holder recorded its result (or an operator overrode it).
    pub expires_at_ms: i64,
    pub taken_at_ms: i64,
}

/// Takes (deposit, stage) for `owner` until `now_ms + lease_ms`: a new row with
/// token 1, or the existing row with its token plus one when it is free (released
/// or expired) or already `owner`'s. `None` while another owner holds it.
pub(crate) async fn take(
    store: &Store,
    deposit_id: &str,
    stage: Stage,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<Claim>, PayrollError> {
    let token: Option<(i64,)> = on_pool!(
        store,
        sqlx::query_as::<_, (i64,)>(
            "INSERT INTO payroll_claims (deposit_id, stage, owner, token, expires_at_ms, taken_at_ms)
             VALUES ($1, $2, $3, 1, $4, $5)
             ON CONFLICT (deposit_id, stage) DO UPDATE SET owner = excluded.owner,
                 token = payroll_claims.token + 1, expires_at_ms = excluded.expires_at_ms,
                 taken_at_ms = excluded.taken_at_ms
             WHERE payroll_claims.owner = excluded.owner OR payroll_claims.expires_at_ms <= $5
             RETURNING token"
        )
        .bind(deposit_id)
        .bind(stage.as_str())
        .bind(owner)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(now_ms),
        fetch_optional
    )?;
    Ok(token.map(|(token,)| Claim {
        deposit_id: deposit_id.to_owned(),
        stage,
        owner: owner.to_owned(),
        token,
    }))
}

/// Extends a claim still held under its token; `false` when it was taken over,
/// released or overridden (the holder must stop before its next outside step).
pub(crate) async fn renew(
    store: &Store,
    claim: &Claim,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, PayrollError> {
    let renewed = on_pool!(
        store,
        sqlx::query(
            "UPDATE payroll_claims SET expires_at_ms = $5
             WHERE deposit_id = $1 AND stage = $2 AND owner = $3 AND token = $4
               AND expires_at_ms > 0"
        )
        .bind(&claim.deposit_id)
        .bind(claim.stage.as_str())
        .bind(&claim.owner)
        .bind(claim.token)
        .bind(now_ms.saturating_add(lease_ms)),
        execute
    )?;
    Ok(renewed == 1)
}

/// In the stage's transaction: `true` when `claim` is still the newest claim of its
/// (deposit, stage), which it then releases (expiry 0) in the same transaction as
/// the result. The row stays locked until that transaction ends, so two
/// transactions never both pass the fence for one claim row.
pub(crate) async fn fence(tx: &mut Tx, claim: &Claim) -> Result<bool, PayrollError> {
    let fenced = on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_claims SET expires_at_ms = 0
             WHERE deposit_id = $1 AND stage = $2 AND owner = $3 AND token = $4"
        )
        .bind(&claim.deposit_id)
        .bind(claim.stage.as_str())
        .bind(&claim.owner)
        .bind(claim.token),
        execute
    )?;
    Ok(fenced == 1)
}

/// Releases a claim whose holder found nothing to do, so the next taker need not
/// wait for its expiry. A claim taken over meanwhile is left alone.
pub(crate) async fn release(store: &Store, claim: &Claim) -> Result<(), PayrollError> {
    on_pool!(
        store,
        sqlx::query(
            "UPDATE payroll_claims SET expires_at_ms = 0
             WHERE deposit_id = $1 AND stage = $2 AND owner = $3 AND token = $4"
        )
        .bind(&claim.deposit_id)
        .bind(claim.stage.as_str())
        .bind(&claim.owner)
        .bind(claim.token),
        execute
    )?;
    Ok(())
}

/// In an operator's transaction: every claim of the deposit moves to a new token
/// owned by [`OPERATOR`] and free, so a worker still holding an older one (paused,
/// or slow) records nothing after the operator acted.
pub(crate) async fn supersede(
    tx: &mut Tx,
    deposit_id: &str,
    now_ms: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_claims SET token = token + 1, owner = $2, expires_at_ms = 0,
                 taken_at_ms = $3
             WHERE deposit_id = $1"
        )
        .bind(deposit_id)
        .bind(OPERATOR)
        .bind(now_ms),
        execute
    )?;
    Ok(())
}

/// Every claim row of a deposit, in stage order of their names.
pub(crate) async fn of_deposit(
    store: &Store,
    deposit_id: &str,
) -> Result<Vec<ClaimView>, PayrollError> {
    let rows: Vec<(String, String, i64, i64, i64)> = on_pool!(
        store,
        sqlx::query_as::<_, (String, String, i64, i64, i64)>(
            "SELECT stage, owner, token, expires_at_ms, taken_at_ms FROM payroll_claims
             WHERE deposit_id = $1 ORDER BY stage"
        )
        .bind(deposit_id),
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(
            |(stage, owner, token, expires_at_ms, taken_at_ms)| ClaimView {
                stage,
                owner,
                token,
                expires_at_ms,
                taken_at_ms,
            },
        )
        .collect())
}
