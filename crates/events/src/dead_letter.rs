//! The dead-letter table: events a consumer failed `retry_attempts_max` times, and
//! the operator actions (replay, discard) that release their key again.
//!
//! This module owns the letter's states and the one transition function between
//! them. It never runs a consumer and never deletes a letter: a resolved letter
//! stays, with who resolved it and when, and every action is logged.

use money::{EventId, Timestamp};
use serde::Serialize;
use sqlx::Row;
use store::Store;

use crate::consumer::{on_store, on_tx};
use crate::outbox::{Event, EventsError};
use crate::telemetry;

/// Where a dead letter stands. `Parked` holds its key's later events back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterState {
    Parked,
    Replayed,
    Discarded,
}

/// What an operator can do to a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    /// Deliver the event again (after fixing the cause), then the key's later ones.
    Replay,
    /// Give the event up as finished without an effect, then deliver the later ones.
    Discard,
}

impl OperatorAction {
    fn name(self) -> &'static str {
        match self {
            OperatorAction::Replay => "replayed",
            OperatorAction::Discard => "discarded",
        }
    }
}

impl DeadLetterState {
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterState::Parked => "parked",
            DeadLetterState::Replayed => "replayed",
            DeadLetterState::Discarded => "discarded",
        }
    }

    fn parse(text: &str) -> Result<DeadLetterState, EventsError> {
        match text {
            "parked" => Ok(DeadLetterState::Parked),
            "replayed" => Ok(DeadLetterState::Replayed),
            "discarded" => Ok(DeadLetterState::Discarded),
            other => Err(EventsError::Corrupt(format!("dead letter state {other:?}"))),
        }
    }

    /// The only legal moves: a parked letter is replayed or discarded, once.
    pub fn after(self, action: OperatorAction) -> Option<DeadLetterState> {
        match (self, action) {
            (DeadLetterState::Parked, OperatorAction::Replay) => Some(DeadLetterState::Replayed),
            (DeadLetterState::Parked, OperatorAction::Discard) => Some(DeadLetterState::Discarded),
            (DeadLetterState::Replayed | DeadLetterState::Discarded, _) => None,
        }
    }
}

/// A dead letter as an operator sees it.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    pub consumer: String,
    pub event: Event,
    pub attempts: i64,
    pub last_error: String,
    pub dead_at: Timestamp,
    pub state: DeadLetterState,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<Timestamp>,
}

/// One recorded operator action.
#[derive(Clone, Debug, Serialize)]
pub struct ActionRecord {
    pub action: String,
    pub actor: String,
    pub at: Timestamp,
}

/// Rows returned by [`list`] at most.
pub const LIST_LETTERS_MAX: usize = 1_000;

const COLUMNS: &str = "consumer, event_id, kind, key, seq, created_at_ms, attempts, last_error, \
                       dead_at_ms, state, resolved_by, resolved_at_ms";

fn decode<R>(row: &R) -> Result<DeadLetter, EventsError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    uuid::Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: uuid::Uuid = row.try_get(1)?;
    let resolved_at: Option<i64> = row.try_get(11)?;
    Ok(DeadLetter {
        consumer: row.try_get(0)?,
        event: Event {
            id: EventId::from_uuid(id)
                .map_err(|error| EventsError::Corrupt(format!("event id {id}: {error}")))?,
            kind: row.try_get(2)?,
            key: row.try_get(3)?,
            seq: row.try_get(4)?,
            created_at: Timestamp::from_unix_ms(row.try_get(5)?),
        },
        attempts: row.try_get(6)?,
        last_error: row.try_get(7)?,
        dead_at: Timestamp::from_unix_ms(row.try_get(8)?),
        state: DeadLetterState::parse(&row.try_get::<String, _>(9)?)?,
        resolved_by: row.try_get(10)?,
        resolved_at: resolved_at.map(Timestamp::from_unix_ms),
    })
}

/// Parks `event` for `consumer` after `attempts` failures. A letter replayed and
/// failing again is parked again, its attempts added up.
pub(crate) async fn park(
    store: &Store,
    consumer: &str,
    event: &Event,
    attempts: i64,
    last_error: &str,
    now: Timestamp,
) -> Result<(), EventsError> {
    on_store!(store, |pool| sqlx::query(
        "INSERT INTO event_dead_letters
             (consumer, event_id, kind, key, seq, created_at_ms, attempts, last_error,
              dead_at_ms, state, drain_pending)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'parked', 0)
         ON CONFLICT (consumer, event_id) DO UPDATE SET
             attempts = event_dead_letters.attempts + excluded.attempts,
             last_error = excluded.last_error, dead_at_ms = excluded.dead_at_ms,
             state = 'parked', drain_pending = 0, resolved_by = NULL, resolved_at_ms = NULL"
    )
    .bind(consumer)
    .bind(event.id.as_uuid())
    .bind(&event.kind)
    .bind(&event.key)
    .bind(event.seq)
    .bind(event.created_at.unix_ms())
    .bind(attempts)
    .bind(last_error)
    .bind(now.unix_ms())
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    telemetry::dead_lettered(consumer);
    tracing::warn!(consumer, event_id = %event.id, key = %event.key, seq = event.seq, attempts, last_error, "event dead-lettered; its key is parked");
    Ok(())
}

/// Keys of `consumer` that a dead letter holds back, and letters whose key an
/// operator released and whose waiting events still have to be picked up.
pub(crate) struct OpenLetters {
    pub parked_keys: Vec<String>,
    pub draining: Vec<(String, EventId)>,
}

pub(crate) async fn open(store: &Store, consumer: &str) -> Result<OpenLetters, EventsError> {
    let rows: Vec<(String, uuid::Uuid, String)> = on_store!(store, |pool| sqlx::query_as(
        "SELECT key, event_id, state FROM event_dead_letters
         WHERE consumer = $1 AND (state = 'parked' OR drain_pending = 1)"
    )
    .bind(consumer)
    .fetch_all(pool)
    .await)?;
    let mut open = OpenLetters {
        parked_keys: Vec::new(),
        draining: Vec::new(),
    };
    for (key, id, state) in rows {
        if state == "parked" {
            open.parked_keys.push(key);
        } else {
            let id = EventId::from_uuid(id)
                .map_err(|error| EventsError::Corrupt(format!("event id {id}: {error}")))?;
            open.draining.push((key, id));
        }
    }
    Ok(open)
}

/// Whether `key` of `consumer` is held back by a parked letter.
pub(crate) async fn is_parked(
    store: &Store,
    consumer: &str,
    key: &str,
) -> Result<bool, EventsError> {
    let found: Option<i64> = on_store!(store, |pool| sqlx::query_scalar(
        "SELECT 1 FROM event_dead_letters WHERE consumer = $1 AND key = $2 AND state = 'parked'"
    )
    .bind(consumer)
    .bind(key)
    .fetch_optional(pool)
    .await)?;
    Ok(found.is_some())
}

/// The key's waiting events have all been picked up again.
pub(crate) async fn drained(store: &Store, consumer: &str, id: EventId) -> Result<(), EventsError> {
    on_store!(store, |pool| sqlx::query(
        "UPDATE event_dead_letters SET drain_pending = 0 WHERE consumer = $1 AND event_id = $2"
    )
    .bind(consumer)
    .bind(id.as_uuid())
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Dead letters, newest first, optionally of one consumer and one state.
pub async fn list(
    store: &Store,
    consumer: Option<&str>,
    state: Option<DeadLetterState>,
    limit: usize,
) -> Result<Vec<DeadLetter>, EventsError> {
    let limit = i64::try_from(limit.min(LIST_LETTERS_MAX)).unwrap_or(0);
    let sql = format!(
        "SELECT {COLUMNS} FROM event_dead_letters
         WHERE ($1 IS NULL OR consumer = $1) AND ($2 IS NULL OR state = $2)
         ORDER BY dead_at_ms DESC LIMIT $3"
    );
    let state = state.map(DeadLetterState::name);
    match store {
        Store::Sqlite(pool) => sqlx::query(&sql)
            .bind(consumer)
            .bind(state)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode)
            .collect(),
        Store::Postgres(pool) => sqlx::query(
            &sql.replace("$1 IS NULL", "$1::text IS NULL")
                .replace("$2 IS NULL", "$2::text IS NULL"),
        )
        .bind(consumer)
        .bind(state)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
    }
}

/// One dead letter with its action history.
pub async fn show(
    store: &Store,
    consumer: &str,
    id: EventId,
) -> Result<(DeadLetter, Vec<ActionRecord>), EventsError> {
    let sql =
        format!("SELECT {COLUMNS} FROM event_dead_letters WHERE consumer = $1 AND event_id = $2");
    let letter = match store {
        Store::Sqlite(pool) => sqlx::query(&sql)
            .bind(consumer)
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
            .map(|row| decode(&row))
            .transpose()?,
        Store::Postgres(pool) => sqlx::query(&sql)
            .bind(consumer)
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
            .map(|row| decode(&row))
            .transpose()?,
    }
    .ok_or_else(|| EventsError::DeadLetterNotFound {
        consumer: consumer.to_owned(),
        event_id: id.to_string(),
    })?;
    let actions: Vec<(String, String, i64)> = on_store!(store, |pool| sqlx::query_as(
        "SELECT action, actor, at_ms FROM event_dead_letter_actions
         WHERE consumer = $1 AND event_id = $2 ORDER BY at_ms"
    )
    .bind(consumer)
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await)?;
    let actions = actions
        .into_iter()
        .map(|(action, actor, at_ms)| ActionRecord {
            action,
            actor,
            at: Timestamp::from_unix_ms(at_ms),
        })
        .collect();
    Ok((letter, actions))
}

/// Releases a parked letter: `Replay` delivers it again, `Discard` records it as
/// finished without an effect. Either way its key's later events follow, and the
/// action is recorded with `actor` and `now`.
pub async fn resolve(
    store: &Store,
    consumer: &str,
    id: EventId,
    action: OperatorAction,
    actor: &str,
    now: Timestamp,
) -> Result<DeadLetter, EventsError> {
    let (letter, _) = show(store, consumer, id).await?;
    let Some(next) = letter.state.after(action) else {
        return Err(EventsError::DeadLetterNotParked {
            event_id: id.to_string(),
            state: letter.state.name(),
            action: action.name(),
        });
    };
    let mut tx = store.begin().await?;
    let moved = on_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE event_dead_letters
         SET state = $1, drain_pending = 1, resolved_by = $2, resolved_at_ms = $3
         WHERE consumer = $4 AND event_id = $5 AND state = 'parked'"
    )
    .bind(next.name())
    .bind(actor)
    .bind(now.unix_ms())
    .bind(consumer)
    .bind(id.as_uuid())
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if moved != 1 {
        tx.rollback().await?;
        return Err(EventsError::DeadLetterNotParked {
            event_id: id.to_string(),
            state: "resolved concurrently",
            action: action.name(),
        });
    }
    if action == OperatorAction::Discard {
        // The discarded event counts as finished: the key's watermark moves past it.
        on_tx!(&mut tx, |conn| sqlx::query(
            "INSERT INTO event_consumer_keys (consumer, key, seq_done) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, key) DO UPDATE SET seq_done = excluded.seq_done
             WHERE event_consumer_keys.seq_done = excluded.seq_done - 1"
        )
        .bind(consumer)
        .bind(&letter.event.key)
        .bind(letter.event.seq)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    }
    on_tx!(&mut tx, |conn| sqlx::query(
        "INSERT INTO event_dead_letter_actions (consumer, event_id, action, actor, at_ms)
         VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(consumer)
    .bind(id.as_uuid())
    .bind(action.name())
    .bind(actor)
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    tracing::info!(consumer, event_id = %id, action = action.name(), actor, "dead letter released");
    Ok(DeadLetter {
        state: next,
        resolved_by: Some(actor.to_owned()),
        resolved_at: Some(now),
        ..letter
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_parked_letter_can_be_replayed_or_discarded() {
        use DeadLetterState::*;
        use OperatorAction::*;
        assert_eq!(Parked.after(Replay), Some(Replayed));
        assert_eq!(Parked.after(Discard), Some(Discarded));
        assert_eq!(Replayed.after(Replay), None);
        assert_eq!(Discarded.after(Replay), None);
        assert_eq!(Replayed.after(Discard), None);
    }
}
