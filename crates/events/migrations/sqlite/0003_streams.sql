-- Every outbox row belongs to exactly one stream: the component that wrote it,
-- the part of its kind before the first dot (`ledger.entry` -> `ledger`). It is
-- decided when the row is appended and never changes. A relay selects and marks
-- only its own stream's rows, and a consumer reads only its own stream, so two
-- components sharing one database (and one outbox table) never take each other's
-- events.
ALTER TABLE outbox ADD COLUMN stream TEXT NOT NULL DEFAULT '';
UPDATE outbox SET stream = CASE WHEN instr(kind, '.') > 0
    THEN substr(kind, 1, instr(kind, '.') - 1) ELSE kind END;
DROP INDEX outbox_unrelayed;
CREATE INDEX outbox_unrelayed ON outbox (stream, position) WHERE relayed_at_ms IS NULL;
CREATE INDEX outbox_stream_scan ON outbox (stream, position);

-- A delivery a consumer should never have received: an event of another stream.
-- Written by the worker that refused it; tests and operators expect it empty.
CREATE TABLE event_misdeliveries (
    consumer TEXT NOT NULL,
    event_id BLOB NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);

-- How far each NATS worker's repair sweep has checked its partition of the outbox:
-- every row at or below the cursor was finished by the consumer, or its key is
-- parked behind a dead letter.
CREATE TABLE event_repair_cursors (
    consumer TEXT NOT NULL,
    partition INTEGER NOT NULL,
    xid INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition)
);

-- Which process relays each partition of each stream, and since when: written by
-- the relay that takes the partition's lease, for `settle events status`.
CREATE TABLE event_relay_leaders (
    stream TEXT NOT NULL,
    partition INTEGER NOT NULL,
    holder TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    PRIMARY KEY (stream, partition)
);
