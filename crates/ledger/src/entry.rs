//! Entries: one row per balance change of one account, numbered by the account's
//! `seq`. They are the ledger's history and what the channel's read model copies.

use money::{AccountId, Krw, Timestamp, TransferId};
use serde::{Deserialize, Serialize};

/// The balances of `account_id` right after its `seq`-th change, made by
/// `transfer_id` (for an expiry, the id of the hold that expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub account_id: AccountId,
    pub seq: i64,
    pub transfer_id: TransferId,
    pub debits_pending: Krw,
    pub debits_posted: Krw,
    pub credits_pending: Krw,
    pub credits_posted: Krw,
    pub created_at: Timestamp,
}

/// The outbox kind of "an entry was written"; key = account id, seq = entry seq.
pub const ENTRY_EVENT_KIND: &str = "ledger.entry";
