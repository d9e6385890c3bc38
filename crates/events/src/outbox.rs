//! The outbox table: written by producers in their own transaction, read by the
//! dispatcher and the relay. This module owns the table's SQL; no other crate
//! touches it, and it never decides what a consumer does with an event.

use money::{EventId, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Row};
use store::{Migration, Store, Tx};
use uuid::Uuid;

pub use crate::error::EventsError;

/// An event to append: what happened (`kind`), to whom (`key`, the FIFO unit) and
/// its place in that key's order (`seq`, gapless per key from 1, set by the producer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: &'static str,
    pub key: String,
    pub seq: i64,
}

/// An event as stored: the only fields that ever travel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub kind: String,
    pub key: String,
    pub seq: i64,
    pub created_at: Timestamp,
}

/// Rows per multi-row INSERT on SQLite: 6 parameters each, far under SQLite's
/// 32,766-parameter limit, and few distinct statements for the statement cache.
const SQLITE_ROWS_PER_INSERT_MAX: usize = 500;

/// The namespace of deterministic event ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5e77_1e00_e7e7_4a0b_9d1c_0000_0000_0001);

/// The id of an event is derived from `(kind, key, seq)`, so writing the same event
/// twice collides on the unique key instead of announcing it twice.
pub fn event_id(kind: &str, key: &str, seq: i64) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{kind}\u{0}{key}\u{0}{seq}").as_bytes(),
    )
}

/// A stable, non-negative hash of a key (32-bit FNV-1a). It is stored with the row
/// and picks the relay partition, so it must never change between releases.
pub fn key_hash(key: &str) -> i64 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i64::from(hash)
}

/// The stream an event of `kind` belongs to: its component, the part before the
/// first dot (`ledger.entry` → `ledger`). Decided once, when the row is appended.
pub fn stream_of(kind: &str) -> Result<&str, EventsError> {
    match kind.split_once('.') {
        Some((component, name))
            if !component.is_empty()
                && !name.is_empty()
                && component.len() <= 32
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Ok(component)
        }
        _ => Err(EventsError::InvalidKind(kind.to_owned())),
    }
}

pub fn migrations() -> &'static [Migration] {
    &[
        Migration {
            version: 1,
            name: "outbox",
            sqlite: include_str!("../migrations/sqlite/0001_outbox.sql"),
            postgres: include_str!("../migrations/postgres/0001_outbox.sql"),
        },
        Migration {
            version: 2,
            name: "consumers",
            sqlite: include_str!("../migrations/sqlite/0002_consumers.sql"),
            postgres: include_str!("../migrations/postgres/0002_consumers.sql"),
        },
        Migration {
            version: 3,
            name: "streams",
            sqlite: include_str!("../migrations/sqlite/0003_streams.sql"),
            postgres: include_str!("../migrations/postgres/0003_streams.sql"),
        },
    ]
}

/// Applies the event backbone's migrations under the component name `events`.
pub async fn migrate(store: &Store) -> Result<(), EventsError> {
    store.migrate("events", migrations()).await?;
    Ok(())
}

/// Appends events to the outbox inside the caller's transaction, so they commit or
/// roll back with the state change they announce. Bulk: one statement per few
/// hundred rows on SQLite, one per call on PostgreSQL.
pub async fn append(tx: &mut Tx, events: &[NewEvent], now: Timestamp) -> Result<(), EventsError> {
    if events.is_empty() {
        return Ok(());
    }
    let streams = events
        .iter()
        .map(|event| stream_of(event.kind))
        .collect::<Result<Vec<&str>, EventsError>>()?;
    let created_at_ms = now.unix_ms();
    match tx {
        Tx::Sqlite(tx) => {
            let rows: Vec<(&NewEvent, &str)> = events.iter().zip(streams).collect();
            for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT_MAX) {
                let mut insert = QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO outbox (id, kind, key, seq, created_at_ms, key_hash, stream) ",
                );
                insert.push_values(chunk, |mut row, (event, stream)| {
                    row.push_bind(event_id(event.kind, &event.key, event.seq))
                        .push_bind(event.kind)
                        .push_bind(event.key.as_str())
                        .push_bind(event.seq)
                        .push_bind(created_at_ms)
                        .push_bind(key_hash(&event.key))
                        .push_bind(*stream);
                });
                insert.build().execute(&mut **tx).await?;
            }
        }
        Tx::Postgres(tx) => {
            let ids: Vec<Uuid> = events
                .iter()
                .map(|e| event_id(e.kind, &e.key, e.seq))
                .collect();
            let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
            let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let hashes: Vec<i64> = events.iter().map(|e| key_hash(&e.key)).collect();
            sqlx::query(
                "INSERT INTO outbox (id, kind, key, seq, created_at_ms, key_hash, stream)
                 SELECT id, kind, key, seq, $5, key_hash, stream
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $6::int8[],
                             $7::text[])
                     AS e(id, kind, key, seq, key_hash, stream)",
            )
            .bind(&ids)
            .bind(&kinds)
            .bind(&keys)
            .bind(&seqs)
            .bind(created_at_ms)
            .bind(&hashes)
            .bind(&streams)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// A place in the outbox scan order: `(xid, position)` on PostgreSQL, where rows
/// can commit out of position order, and `(0, position)` on SQLite, where they
/// cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cursor {
    pub xid: i64,
    pub position: i64,
}

impl Cursor {
    /// The cursor just before this one: scanning after it yields this row again.
    pub fn before(self) -> Cursor {
        Cursor {
            xid: self.xid,
            position: self.position.saturating_sub(1),
        }
    }
}

/// An outbox row with its place in the scan order.
#[derive(Clone, Debug)]
pub(crate) struct Scanned {
    pub cursor: Cursor,
    pub event: Event,
}

const COLUMNS_SQLITE: &str = "0, position, id, kind, key, seq, created_at_ms";
const COLUMNS_POSTGRES: &str = "(xid::text)::int8, position, id, kind, key, seq, created_at_ms";

fn decode_id(uuid: Uuid) -> Result<EventId, EventsError> {
    EventId::from_uuid(uuid)
        .map_err(|error| EventsError::Corrupt(format!("event id {uuid}: {error}")))
}

fn decode<R>(row: &R) -> Result<Scanned, EventsError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Scanned {
        cursor: Cursor {
            xid: row.try_get(0)?,
            position: row.try_get(1)?,
        },
        event: Event {
            id: decode_id(row.try_get(2)?)?,
            kind: row.try_get(3)?,
            key: row.try_get(4)?,
            seq: row.try_get(5)?,
            created_at: Timestamp::from_unix_ms(row.try_get(6)?),
        },
    })
}

/// Up to `limit` rows after `cursor` in scan order. On PostgreSQL only rows of
/// transactions older than every running one are returned, so no row can later
/// appear behind the cursor.
pub(crate) async fn scan_after(
    store: &Store,
    stream: &str,
    cursor: Cursor,
    limit: usize,
) -> Result<Vec<Scanned>, EventsError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match store {
        Store::Sqlite(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_SQLITE} FROM outbox WHERE stream = ? AND position > ?
             ORDER BY position LIMIT ?"
        ))
        .bind(stream)
        .bind(cursor.position)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
        Store::Postgres(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_POSTGRES} FROM outbox
             WHERE stream = $4 AND (xid, position) > (($1::int8)::text::xid8, $2)
               AND xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY xid, position LIMIT $3"
        ))
        .bind(cursor.xid)
        .bind(cursor.position)
        .bind(limit)
        .bind(stream)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
    }
}

/// Whether any row lies after `cursor`, including rows [`scan_after`] cannot
/// return yet because an older transaction is still running somewhere.
pub(crate) async fn exists_after(
    store: &Store,
    stream: &str,
    cursor: Cursor,
) -> Result<bool, EventsError> {
    let found: Option<i64> = match store {
        Store::Sqlite(pool) => {
            sqlx::query_scalar("SELECT 1 FROM outbox WHERE stream = ? AND position > ? LIMIT 1")
                .bind(stream)
                .bind(cursor.position)
                .fetch_optional(pool)
                .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT 1::int8 FROM outbox
                 WHERE stream = $3 AND (xid, position) > (($1::int8)::text::xid8, $2) LIMIT 1",
            )
            .bind(cursor.xid)
            .bind(cursor.position)
            .bind(stream)
            .fetch_optional(pool)
            .await?
        }
    };
    Ok(found.is_some())
}

/// Up to `limit` events of one key with seq above `after_seq`, in seq order.
pub(crate) async fn key_backlog(
    store: &Store,
    key: &str,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<Scanned>, EventsError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match store {
        Store::Sqlite(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_SQLITE} FROM outbox WHERE key = ? AND seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(key)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
        Store::Postgres(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_POSTGRES} FROM outbox WHERE key = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(key)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
    }
}

/// Up to `limit` rows of one relay partition not yet acknowledged by the broker,
/// in position order (which is seq order within a key).
pub(crate) async fn unrelayed(
    store: &Store,
    stream: &str,
    partition: u32,
    partitions: u32,
    limit: usize,
) -> Result<Vec<Scanned>, EventsError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match store {
        Store::Sqlite(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_SQLITE} FROM outbox
             WHERE relayed_at_ms IS NULL AND stream = ? AND key_hash % ? = ?
             ORDER BY position LIMIT ?"
        ))
        .bind(stream)
        .bind(i64::from(partitions))
        .bind(i64::from(partition))
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
        Store::Postgres(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_POSTGRES} FROM outbox
             WHERE relayed_at_ms IS NULL AND stream = $4 AND key_hash % $1 = $2
             ORDER BY position LIMIT $3"
        ))
        .bind(i64::from(partitions))
        .bind(i64::from(partition))
        .bind(limit)
        .bind(stream)
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect(),
    }
}

/// Records that the broker acknowledged these rows, all of `stream` (a row of
/// another stream is never marked, whatever the positions say).
pub(crate) async fn mark_relayed(
    store: &Store,
    stream: &str,
    positions: &[i64],
    now: Timestamp,
) -> Result<(), EventsError> {
    if positions.is_empty() {
        return Ok(());
    }
    match store {
        Store::Sqlite(pool) => {
            for chunk in positions.chunks(SQLITE_ROWS_PER_INSERT_MAX) {
                let mut update =
                    QueryBuilder::<sqlx::Sqlite>::new("UPDATE outbox SET relayed_at_ms = ");
                update
                    .push_bind(now.unix_ms())
                    .push(" WHERE stream = ")
                    .push_bind(stream)
                    .push(" AND position IN (");
                let mut list = update.separated(", ");
                for position in chunk {
                    list.push_bind(*position);
                }
                update.push(")");
                update.build().execute(pool).await?;
            }
        }
        Store::Postgres(pool) => {
            sqlx::query(
                "UPDATE outbox SET relayed_at_ms = $1
                 WHERE stream = $3 AND position = ANY($2::int8[])",
            )
            .bind(now.unix_ms())
            .bind(positions)
            .bind(stream)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// What a repair sweep looks at: one consumer's partition of one stream.
pub(crate) struct RepairScope<'a> {
    pub stream: &'a str,
    pub consumer: &'a str,
    pub partition: u32,
    pub partitions: u32,
}

/// Up to `limit` committed rows of the scope after `cursor`, in scan order, each
/// with whether the consumer has not finished it yet.
pub(crate) async fn repair_scan(
    store: &Store,
    scope: &RepairScope<'_>,
    cursor: Cursor,
    limit: usize,
) -> Result<Vec<(Scanned, bool)>, EventsError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match store {
        Store::Sqlite(pool) => {
            let rows = sqlx::query(
                "SELECT 0, o.position, o.id, o.kind, o.key, o.seq, o.created_at_ms, c.seq_done
                 FROM outbox o LEFT JOIN event_consumer_keys c
                     ON c.consumer = ? AND c.key = o.key
                 WHERE o.stream = ? AND o.key_hash % ? = ? AND o.position > ?
                 ORDER BY o.position LIMIT ?",
            )
            .bind(scope.consumer)
            .bind(scope.stream)
            .bind(i64::from(scope.partitions))
            .bind(i64::from(scope.partition))
            .bind(cursor.position)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(decode_behind).collect()
        }
        Store::Postgres(pool) => {
            let rows = sqlx::query(
                "SELECT (o.xid::text)::int8, o.position, o.id, o.kind, o.key, o.seq,
                        o.created_at_ms, c.seq_done
                 FROM outbox o LEFT JOIN event_consumer_keys c
                     ON c.consumer = $1 AND c.key = o.key
                 WHERE o.stream = $2 AND o.key_hash % $3 = $4
                   AND (o.xid, o.position) > (($5::int8)::text::xid8, $6)
                   AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
                 ORDER BY o.xid, o.position LIMIT $7",
            )
            .bind(scope.consumer)
            .bind(scope.stream)
            .bind(i64::from(scope.partitions))
            .bind(i64::from(scope.partition))
            .bind(cursor.xid)
            .bind(cursor.position)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(decode_behind).collect()
        }
    }
}

/// A repair-scan row: the outbox row, and whether the consumer's watermark
/// (column 7, NULL: none yet) is still below its seq.
fn decode_behind<R>(row: &R) -> Result<(Scanned, bool), EventsError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let scanned = decode(row)?;
    let done: Option<i64> = row.try_get(7)?;
    let behind = done.unwrap_or(0) < scanned.event.seq;
    Ok((scanned, behind))
}

/// Where a consumer's repair sweep of `partition` resumes.
pub(crate) async fn repair_cursor(
    store: &Store,
    consumer: &str,
    partition: u32,
) -> Result<Cursor, EventsError> {
    let saved: Option<(i64, i64)> = store::on_pool!(
        store,
        sqlx::query_as(
            "SELECT xid, position FROM event_repair_cursors WHERE consumer = $1 AND partition = $2"
        )
        .bind(consumer)
        .bind(i64::from(partition)),
        fetch_optional
    )?;
    Ok(saved
        .map(|(xid, position)| Cursor { xid, position })
        .unwrap_or_default())
}

pub(crate) async fn save_repair_cursor(
    store: &Store,
    consumer: &str,
    partition: u32,
    cursor: Cursor,
) -> Result<(), EventsError> {
    store::on_pool!(
        store,
        sqlx::query(
            "INSERT INTO event_repair_cursors (consumer, partition, xid, position)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (consumer, partition)
             DO UPDATE SET xid = excluded.xid, position = excluded.position"
        )
        .bind(consumer)
        .bind(i64::from(partition))
        .bind(cursor.xid)
        .bind(cursor.position),
        execute
    )?;
    Ok(())
}

/// Records a delivery a consumer refused because the event is of another stream.
pub(crate) async fn record_misdelivery(
    store: &Store,
    consumer: &str,
    event: &Event,
    now: Timestamp,
) -> Result<(), EventsError> {
    store::on_pool!(
        store,
        sqlx::query(
            "INSERT INTO event_misdeliveries (consumer, event_id, kind, key, seq, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(consumer)
        .bind(event.id.as_uuid())
        .bind(&event.kind)
        .bind(&event.key)
        .bind(event.seq)
        .bind(now.unix_ms()),
        execute
    )?;
    Ok(())
}

/// Records that `holder` relays `partition` of `stream` from now on.
pub(crate) async fn record_relay_leader(
    store: &Store,
    stream: &str,
    partition: u32,
    holder: &str,
    now: Timestamp,
) -> Result<(), EventsError> {
    store::on_pool!(
        store,
        sqlx::query(
            "INSERT INTO event_relay_leaders (stream, partition, holder, since_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream, partition)
             DO UPDATE SET holder = excluded.holder, since_ms = excluded.since_ms"
        )
        .bind(stream)
        .bind(i64::from(partition))
        .bind(holder)
        .bind(now.unix_ms()),
        execute
    )?;
    Ok(())
}

/// One event by id, if the outbox has it.
pub async fn find(store: &Store, id: EventId) -> Result<Option<Event>, EventsError> {
    let row = match store {
        Store::Sqlite(pool) => {
            sqlx::query(&format!("SELECT {COLUMNS_SQLITE} FROM outbox WHERE id = ?"))
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await?
                .map(|row| decode(&row))
                .transpose()?
        }
        Store::Postgres(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS_POSTGRES} FROM outbox WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?
        .map(|row| decode(&row))
        .transpose()?,
    };
    Ok(row.map(|scanned| scanned.event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_stable_across_releases() {
        assert_eq!(key_hash(""), 0x811c_9dc5);
        assert_eq!(key_hash("a"), 0xe40c_292c);
    }

    #[test]
    fn the_stream_of_a_kind_is_its_component() {
        assert_eq!(stream_of("ledger.entry").ok(), Some("ledger"));
        assert_eq!(stream_of("payroll.deposit_detected").ok(), Some("payroll"));
        assert_eq!(stream_of("a.b.c").ok(), Some("a"));
        for bad in [
            "entry",
            ".entry",
            "ledger.",
            "Ledger.entry",
            "led ger.entry",
            "",
        ] {
            assert!(stream_of(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn cursor_before_yields_the_same_row_again() {
        let cursor = Cursor {
            xid: 7,
            position: 10,
        };
        assert!(cursor.before() < cursor);
        assert_eq!(cursor.before().xid, 7);
    }
}
