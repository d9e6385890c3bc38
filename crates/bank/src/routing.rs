//! The provider routing table and the double-settlement guard, in settle's own
//! database (component `bank`): a cohort percentage routed to "next", per-user
//! overrides, an audit log of every change (who, when, old, new), and one row per
//! deposit whose settlement has started.
//!
//! Routing is read fresh on every call, so a switch needs no restart. The guard is a
//! primary key on the deposit id, inserted in the transaction that starts the
//! settlement: two providers can never both start one deposit. This module never
//! calls a bank.

use std::sync::Arc;

use money::Clock;
use serde::{Deserialize, Serialize};
use store::{Migration, Store, StoreError, Tx};

use crate::providers::ProviderName;
use crate::sim::faults::fnv1a64;
use crate::sql::{on_pool, on_tx};
use crate::types::{DepositId, UserId};

const COMPONENT: &str = "bank";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "routing and settlement guard",
    sqlite: "
CREATE TABLE bank_routing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_percent INTEGER NOT NULL CHECK (next_percent BETWEEN 0 AND 100)
);
INSERT INTO bank_routing (id, next_percent) VALUES (1, 0);
CREATE TABLE bank_routing_overrides (
    user_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('legacy', 'next'))
);
CREATE TABLE bank_routing_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    subject TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE TABLE bank_settlements (
    deposit_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('legacy', 'next')),
    started_at_ms INTEGER NOT NULL
);
",
    postgres: "
CREATE TABLE bank_routing (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    next_percent BIGINT NOT NULL CHECK (next_percent BETWEEN 0 AND 100)
);
INSERT INTO bank_routing (id, next_percent) VALUES (1, 0);
CREATE TABLE bank_routing_overrides (
    user_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('legacy', 'next'))
);
CREATE TABLE bank_routing_audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    subject TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE TABLE bank_settlements (
    deposit_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('legacy', 'next')),
    started_at_ms BIGINT NOT NULL
);
",
}];

/// Why routing could not answer. Each variant has a stable [`RoutingError::code`].
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("cohort percentage must be 0..=100, got {0}")]
    BadPercent(u8),
    #[error("stored routing value {0:?} is not a provider")]
    CorruptProvider(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl RoutingError {
    pub fn code(&self) -> &'static str {
        match self {
            RoutingError::BadPercent(_) => "routing_bad_percent",
            RoutingError::CorruptProvider(_) => "routing_corrupt",
            RoutingError::Store(error) => error.code(),
            RoutingError::Db(_) => "database_error",
        }
    }
}

/// The answer of [`RoutingTable::start_settlement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettlementStart {
    /// This call claimed the deposit for its provider.
    Started,
    /// The deposit was already claimed, by `provider` (possibly the same one).
    AlreadyStarted { provider: ProviderName },
}

type AuditRow = (i64, String, i64, String, Option<String>, Option<String>);

/// One change to the routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub actor: String,
    pub at_ms: i64,
    /// `cohort` or `user:<uuid>`.
    pub subject: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// Which of 100 buckets a user falls in: FNV-1a of the UUID's bytes, the same in
/// every process and every release.
pub fn cohort_bucket(user: UserId) -> u8 {
    u8::try_from(fnv1a64(user.as_uuid().as_bytes()) % 100).unwrap_or(0)
}

/// Routes by an explicit override, else by cohort.
pub fn route(
    user: UserId,
    override_provider: Option<ProviderName>,
    next_percent: u8,
) -> ProviderName {
    match override_provider {
        Some(provider) => provider,
        None if cohort_bucket(user) < next_percent => ProviderName::Next,
        None => ProviderName::Legacy,
    }
}

fn provider_from(text: &str) -> Result<ProviderName, RoutingError> {
    ProviderName::parse(text).ok_or_else(|| RoutingError::CorruptProvider(text.to_owned()))
}

/// The routing table. Cheap to clone.
#[derive(Clone)]
pub struct RoutingTable {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl RoutingTable {
    /// Migrates the routing tables and returns the table.
    pub async fn open(store: Store, clock: Arc<dyn Clock>) -> Result<RoutingTable, RoutingError> {
        store.migrate(COMPONENT, MIGRATIONS).await?;
        Ok(RoutingTable { store, clock })
    }

    /// The provider for `user` now, in one round trip.
    pub async fn provider_for(&self, user: UserId) -> Result<ProviderName, RoutingError> {
        let (override_provider, next_percent): (Option<String>, i64) = on_pool!(
            &self.store,
            sqlx::query_as::<_, (Option<String>, i64)>(
                "SELECT (SELECT provider FROM bank_routing_overrides WHERE user_id = $1),
                        next_percent FROM bank_routing WHERE id = 1"
            )
            .bind(user.to_string()),
            fetch_one
        )?;
        let override_provider = override_provider
            .as_deref()
            .map(provider_from)
            .transpose()?;
        let next_percent = u8::try_from(next_percent.clamp(0, 100)).unwrap_or(0);
        Ok(route(user, override_provider, next_percent))
    }

    pub async fn cohort_percent(&self) -> Result<u8, RoutingError> {
        let (percent,): (i64,) = on_pool!(
            &self.store,
            sqlx::query_as::<_, (i64,)>("SELECT next_percent FROM bank_routing WHERE id = 1"),
            fetch_one
        )?;
        Ok(u8::try_from(percent.clamp(0, 100)).unwrap_or(0))
    }

    /// Routes `percent` % of users (by [`cohort_bucket`]) to "next"; audit-logged.
    pub async fn set_cohort_percent(&self, percent: u8, actor: &str) -> Result<(), RoutingError> {
        if percent > 100 {
            return Err(RoutingError::BadPercent(percent));
        }
        let mut tx = self.store.begin().await?;
        let (old,): (i64,) = on_tx!(
            &mut tx,
            sqlx::query_as::<_, (i64,)>("SELECT next_percent FROM bank_routing WHERE id = 1"),
            fetch_one
        )?;
        on_tx!(
            &mut tx,
            sqlx::query("UPDATE bank_routing SET next_percent = $1 WHERE id = 1")
                .bind(i64::from(percent)),
            execute
        )?;
        self.audit(
            &mut tx,
            actor,
            "cohort",
            Some(old.to_string()),
            Some(percent.to_string()),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(actor, old, new = percent, "bank routing cohort changed");
        Ok(())
    }

    /// Pins `user` to a provider (or, with `None`, returns them to the cohort rule);
    /// audit-logged.
    pub async fn set_override(
        &self,
        user: UserId,
        provider: Option<ProviderName>,
        actor: &str,
    ) -> Result<(), RoutingError> {
        let user_text = user.to_string();
        let mut tx = self.store.begin().await?;
        let old: Option<(String,)> = on_tx!(
            &mut tx,
            sqlx::query_as::<_, (String,)>(
                "SELECT provider FROM bank_routing_overrides WHERE user_id = $1"
            )
            .bind(&user_text),
            fetch_optional
        )?;
        match provider {
            Some(provider) => on_tx!(
                &mut tx,
                sqlx::query(
                    "INSERT INTO bank_routing_overrides (user_id, provider) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET provider = excluded.provider"
                )
                .bind(&user_text)
                .bind(provider.as_str()),
                execute
            )?,
            None => on_tx!(
                &mut tx,
                sqlx::query("DELETE FROM bank_routing_overrides WHERE user_id = $1")
                    .bind(&user_text),
                execute
            )?,
        };
        let subject = format!("user:{user_text}");
        let new = provider.map(|p| p.as_str().to_owned());
        self.audit(&mut tx, actor, &subject, old.map(|o| o.0), new)
            .await?;
        tx.commit().await?;
        tracing::info!(actor, %user, provider = ?provider, "bank routing override changed");
        Ok(())
    }

    async fn audit(
        &self,
        tx: &mut Tx,
        actor: &str,
        subject: &str,
        old_value: Option<String>,
        new_value: Option<String>,
    ) -> Result<(), RoutingError> {
        on_tx!(
            tx,
            sqlx::query(
                "INSERT INTO bank_routing_audit (actor, at_ms, subject, old_value, new_value)
                 VALUES ($1, $2, $3, $4, $5)"
            )
            .bind(actor)
            .bind(self.clock.now().unix_ms())
            .bind(subject)
            .bind(old_value.as_deref())
            .bind(new_value.as_deref()),
            execute
        )?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, RoutingError> {
        let rows: Vec<AuditRow> = on_pool!(
            &self.store,
            sqlx::query_as::<_, AuditRow>(
                "SELECT seq, actor, at_ms, subject, old_value, new_value
                 FROM bank_routing_audit ORDER BY seq DESC LIMIT $1"
            )
            .bind(i64::from(limit)),
            fetch_all
        )?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                seq: r.0,
                actor: r.1,
                at_ms: r.2,
                subject: r.3,
                old_value: r.4,
                new_value: r.5,
            })
            .collect())
    }

    /// Claims `deposit` for `provider` in its own transaction.
    pub async fn start_settlement(
        &self,
        deposit: &DepositId,
        provider: ProviderName,
    ) -> Result<SettlementStart, RoutingError> {
        let mut tx = self.store.begin().await?;
        let started = self.start_settlement_in(&mut tx, deposit, provider).await?;
        tx.commit().await?;
        Ok(started)
    }

    /// Claims `deposit` for `provider` inside the caller's transaction (the one that
    /// starts the settlement), so the claim and the settlement commit together.
    pub async fn start_settlement_in(
        &self,
        tx: &mut Tx,
        deposit: &DepositId,
        provider: ProviderName,
    ) -> Result<SettlementStart, RoutingError> {
        let inserted = on_tx!(
            tx,
            sqlx::query(
                "INSERT INTO bank_settlements (deposit_id, provider, started_at_ms)
                 VALUES ($1, $2, $3) ON CONFLICT (deposit_id) DO NOTHING"
            )
            .bind(deposit.as_str())
            .bind(provider.as_str())
            .bind(self.clock.now().unix_ms()),
            execute
        )?;
        if inserted == 1 {
            metrics::counter!("bank_settlements_started_total", "provider" => provider.as_str())
                .increment(1);
            return Ok(SettlementStart::Started);
        }
        let (holder,): (String,) = on_tx!(
            tx,
            sqlx::query_as::<_, (String,)>(
                "SELECT provider FROM bank_settlements WHERE deposit_id = $1"
            )
            .bind(deposit.as_str()),
            fetch_one
        )?;
        let holder = provider_from(&holder)?;
        tracing::warn!(%deposit, wanted = %provider, holder = %holder, "deposit settlement already started");
        Ok(SettlementStart::AlreadyStarted { provider: holder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohort_buckets_are_fixed_across_processes() {
        // FNV-1a of fixed bytes never changes; a changed bucket would silently move
        // users between providers on upgrade.
        let user = UserId::from_uuid(uuid::Uuid::from_u128(
            0x0192_f1a8_7b2c_7d3e_8f40_1122_3344_5566,
        ));
        assert_eq!(cohort_bucket(user), cohort_bucket(user));
        assert_eq!(
            route(user, Some(ProviderName::Legacy), 100),
            ProviderName::Legacy
        );
        assert_eq!(route(user, None, 100), ProviderName::Next);
        assert_eq!(route(user, None, 0), ProviderName::Legacy);
    }
}
