-- The core ledger. Balances change only through the batching writer; every change
-- bumps the account's seq and writes one entry, so entries are gapless per account.
CREATE TABLE ledger_accounts (
    id BLOB PRIMARY KEY,
    code INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    user_data INTEGER NOT NULL,
    debits_pending INTEGER NOT NULL CHECK (debits_pending >= 0),
    debits_posted INTEGER NOT NULL CHECK (debits_posted >= 0),
    credits_pending INTEGER NOT NULL CHECK (credits_pending >= 0),
    credits_posted INTEGER NOT NULL CHECK (credits_posted >= 0),
    seq INTEGER NOT NULL CHECK (seq >= 0),
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ledger_transfers (
    id BLOB PRIMARY KEY,
    kind INTEGER NOT NULL,
    debit_account_id BLOB NOT NULL,
    credit_account_id BLOB NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    pending_id BLOB,
    post_full_amount INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    code INTEGER NOT NULL,
    user_data INTEGER NOT NULL,
    linked INTEGER NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    pending_state INTEGER,
    expires_at_ms INTEGER
) WITHOUT ROWID;

CREATE INDEX ledger_transfers_expiring ON ledger_transfers (expires_at_ms)
    WHERE pending_state = 1 AND expires_at_ms IS NOT NULL;

-- Valid requests that failed (balance limits, lateness). The id stays failed.
CREATE TABLE ledger_failures (
    id BLOB PRIMARY KEY,
    result TEXT NOT NULL,
    kind INTEGER NOT NULL,
    debit_account_id BLOB,
    credit_account_id BLOB,
    amount INTEGER,
    pending_id BLOB,
    timeout_ms INTEGER NOT NULL,
    code INTEGER NOT NULL,
    user_data INTEGER NOT NULL,
    linked INTEGER NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    failed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ledger_entries (
    account_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    transfer_id BLOB NOT NULL,
    debits_pending INTEGER NOT NULL,
    debits_posted INTEGER NOT NULL,
    credits_pending INTEGER NOT NULL,
    credits_posted INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
