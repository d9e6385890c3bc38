-- Consumer progress. A consumer has finished an event exactly when its key's
-- seq_done has reached the event's seq; the row is moved forward in the same
-- transaction as the consumer's own effect, so a redelivered event finds it done.
CREATE TABLE event_consumer_keys (
    consumer TEXT NOT NULL,
    key TEXT NOT NULL,
    seq_done BIGINT NOT NULL,
    PRIMARY KEY (consumer, key)
);

-- Where each consumer's outbox scan resumes after a restart. Everything at or
-- below it is finished, parked behind a dead letter, or re-read harmlessly.
CREATE TABLE event_consumer_cursors (
    consumer TEXT PRIMARY KEY,
    xid BIGINT NOT NULL,
    position BIGINT NOT NULL
);

-- Events that failed retry_attempts_max times. While a row is 'parked' its key's
-- later events wait. An operator replays or discards it; drain_pending tells the
-- dispatcher to pick the key's waiting events up again.
CREATE TABLE event_dead_letters (
    consumer TEXT NOT NULL,
    event_id UUID NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    dead_at_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('parked', 'replayed', 'discarded')),
    drain_pending BIGINT NOT NULL DEFAULT 0,
    resolved_by TEXT,
    resolved_at_ms BIGINT,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX event_dead_letters_open ON event_dead_letters (consumer, state, drain_pending);

-- Every operator action on a dead letter: who did what, and when.
CREATE TABLE event_dead_letter_actions (
    consumer TEXT NOT NULL,
    event_id UUID NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
