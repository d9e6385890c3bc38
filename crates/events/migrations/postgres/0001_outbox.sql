-- The transactional outbox. A row is written in the same transaction as the state
-- change it announces, and carries no payload: consumers load current state by id.
-- `key_hash` picks the relay partition; `relayed_at_ms` is set only after the
-- broker acknowledged the publish (NULL: not yet relayed). `xid` is the writing
-- transaction: the dispatcher scans in (xid, position) order and only below the
-- oldest running transaction, so a row that commits late is never skipped.
CREATE TABLE outbox (
    position BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    key_hash BIGINT NOT NULL,
    relayed_at_ms BIGINT,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (key, seq)
);
CREATE INDEX outbox_unrelayed ON outbox (position) WHERE relayed_at_ms IS NULL;
CREATE INDEX outbox_scan ON outbox (xid, position);
