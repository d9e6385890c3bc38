-- The channel's own tables. They never live in the core's schema and no other
-- crate reads them.

-- Transfer requests, written before the core is called. `state` moves only through
-- `TransferState::after`; the partial unique index is the one-in-flight-per-user rule.
CREATE TABLE channel_transfers (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL,
    debit_account_id UUID NOT NULL,
    credit_account_id UUID NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    state TEXT NOT NULL CHECK (state IN ('requested', 'sent', 'unknown', 'succeeded', 'failed')),
    result_code TEXT,
    requested_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE UNIQUE INDEX channel_transfers_one_in_flight_per_user
    ON channel_transfers (user_id) WHERE state IN ('requested', 'sent', 'unknown');
CREATE INDEX channel_transfers_in_flight
    ON channel_transfers (updated_at_ms) WHERE state IN ('requested', 'sent', 'unknown');
CREATE INDEX channel_transfers_in_flight_debit
    ON channel_transfers (debit_account_id) WHERE state IN ('requested', 'sent', 'unknown');
CREATE INDEX channel_transfers_in_flight_credit
    ON channel_transfers (credit_account_id) WHERE state IN ('requested', 'sent', 'unknown');

-- The history read model: a gapless prefix 1..=last_seq of each account's core
-- entries. `last_seq` moves in the same transaction as the rows it covers.
CREATE TABLE channel_history_accounts (
    account_id UUID PRIMARY KEY,
    last_seq BIGINT NOT NULL CHECK (last_seq >= 0),
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE channel_history_entries (
    account_id UUID NOT NULL,
    seq BIGINT NOT NULL CHECK (seq >= 1),
    transfer_id UUID NOT NULL,
    debits_pending BIGINT NOT NULL,
    debits_posted BIGINT NOT NULL,
    credits_pending BIGINT NOT NULL,
    credits_posted BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
