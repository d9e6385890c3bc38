-- The transactional outbox. A row is written in the same transaction as the state
-- change it announces, and carries no payload: consumers load current state by id.
-- `key_hash` picks the relay partition; `relayed_at_ms` is set only after the
-- broker acknowledged the publish (NULL: not yet relayed).
CREATE TABLE outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    key_hash INTEGER NOT NULL,
    relayed_at_ms INTEGER,
    UNIQUE (key, seq)
);
CREATE INDEX outbox_unrelayed ON outbox (position) WHERE relayed_at_ms IS NULL;
