-- The channel's own tables. They never live in the core's schema and no other
-- crate reads them.

-- Transfer requests, written before the core is called. `state` moves only through
-- `TransferState::after`; the partial unique index is the one-in-flight-per-user rule.
CREATE TABLE channel_transfers (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL,
    debit_account_id BLOB NOT NULL,
    credit_account_id BLOB NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    state TEXT NOT NULL CHECK (state IN ('requested', 'sent', 'unknown', 'succeeded', 'failed')),
    result_code TEXT,
    requested_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

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
    account_id BLOB PRIMARY KEY,
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE channel_history_entries (
    account_id BLOB NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    transfer_id BLOB NOT NULL,
    debits_pending INTEGER NOT NULL,
    debits_posted INTEGER NOT NULL,
    credits_pending INTEGER NOT NULL,
    credits_posted INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
