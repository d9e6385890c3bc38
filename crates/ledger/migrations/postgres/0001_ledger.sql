-- The core ledger. Balances change only through the batching writer; every change
-- bumps the account's seq and writes one entry, so entries are gapless per account.
CREATE TABLE ledger_accounts (
    id UUID PRIMARY KEY,
    code BIGINT NOT NULL,
    flags BIGINT NOT NULL,
    user_data BIGINT NOT NULL,
    debits_pending BIGINT NOT NULL CHECK (debits_pending >= 0),
    debits_posted BIGINT NOT NULL CHECK (debits_posted >= 0),
    credits_pending BIGINT NOT NULL CHECK (credits_pending >= 0),
    credits_posted BIGINT NOT NULL CHECK (credits_posted >= 0),
    seq BIGINT NOT NULL CHECK (seq >= 0),
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE ledger_transfers (
    id UUID PRIMARY KEY,
    kind BIGINT NOT NULL,
    debit_account_id UUID NOT NULL,
    credit_account_id UUID NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    pending_id UUID,
    post_full_amount BOOLEAN NOT NULL,
    timeout_ms BIGINT NOT NULL,
    code BIGINT NOT NULL,
    user_data BIGINT NOT NULL,
    linked BOOLEAN NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    pending_state BIGINT,
    expires_at_ms BIGINT
);

CREATE INDEX ledger_transfers_expiring ON ledger_transfers (expires_at_ms)
    WHERE pending_state = 1 AND expires_at_ms IS NOT NULL;

-- Valid requests that failed (balance limits, lateness). The id stays failed.
CREATE TABLE ledger_failures (
    id UUID PRIMARY KEY,
    result TEXT NOT NULL,
    kind BIGINT NOT NULL,
    debit_account_id UUID,
    credit_account_id UUID,
    amount BIGINT,
    pending_id UUID,
    timeout_ms BIGINT NOT NULL,
    code BIGINT NOT NULL,
    user_data BIGINT NOT NULL,
    linked BOOLEAN NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    failed_at_ms BIGINT NOT NULL
);

CREATE TABLE ledger_entries (
    account_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    transfer_id UUID NOT NULL,
    debits_pending BIGINT NOT NULL,
    debits_posted BIGINT NOT NULL,
    credits_pending BIGINT NOT NULL,
    credits_posted BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
