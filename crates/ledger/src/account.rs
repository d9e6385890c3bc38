//! Accounts: who may owe whom. An account only ever changes through a transfer
//! applied by the batching writer; its balances are never set directly.

use money::{AccountId, Krw, Timestamp};
use serde::{Deserialize, Serialize};

/// Balance limits an account enforces on every transfer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct AccountFlags {
    /// An asset-like account that may never be overdrawn: pending and posted debits
    /// never exceed posted credits (a customer's deposit account).
    #[serde(default)]
    pub debits_must_not_exceed_credits: bool,
    /// The mirror image: credits never exceed posted debits (e.g. a loan account).
    #[serde(default)]
    pub credits_must_not_exceed_debits: bool,
}

impl AccountFlags {
    const DEBITS_MUST_NOT_EXCEED_CREDITS: i64 = 1;
    const CREDITS_MUST_NOT_EXCEED_DEBITS: i64 = 2;

    pub(crate) fn bits(self) -> i64 {
        let mut bits = 0;
        if self.debits_must_not_exceed_credits {
            bits |= Self::DEBITS_MUST_NOT_EXCEED_CREDITS;
        }
        if self.credits_must_not_exceed_debits {
            bits |= Self::CREDITS_MUST_NOT_EXCEED_DEBITS;
        }
        bits
    }

    pub(crate) fn from_bits(bits: i64) -> Option<AccountFlags> {
        if bits & !(Self::DEBITS_MUST_NOT_EXCEED_CREDITS | Self::CREDITS_MUST_NOT_EXCEED_DEBITS)
            != 0
        {
            return None;
        }
        Some(AccountFlags {
            debits_must_not_exceed_credits: bits & Self::DEBITS_MUST_NOT_EXCEED_CREDITS != 0,
            credits_must_not_exceed_debits: bits & Self::CREDITS_MUST_NOT_EXCEED_DEBITS != 0,
        })
    }
}

/// A request to open an account. Valid by construction: see [`NewAccount::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewAccount {
    id: AccountId,
    code: u16,
    flags: AccountFlags,
    user_data: u64,
}

/// Why an account request was refused before reaching the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAccount {
    #[error("an account cannot both forbid debits over credits and credits over debits")]
    FlagsAreMutuallyExclusive,
}

impl InvalidAccount {
    pub fn code(&self) -> &'static str {
        match self {
            InvalidAccount::FlagsAreMutuallyExclusive => "flags_are_mutually_exclusive",
        }
    }
}

impl NewAccount {
    /// `code` is the account's kind (chart of accounts), chosen by the caller.
    pub fn new(
        id: AccountId,
        code: u16,
        flags: AccountFlags,
    ) -> Result<NewAccount, InvalidAccount> {
        if flags.debits_must_not_exceed_credits && flags.credits_must_not_exceed_debits {
            return Err(InvalidAccount::FlagsAreMutuallyExclusive);
        }
        Ok(NewAccount {
            id,
            code,
            flags,
            user_data: 0,
        })
    }

    /// An opaque number the caller may attach (e.g. its own customer number).
    pub fn with_user_data(mut self, user_data: u64) -> NewAccount {
        self.user_data = user_data;
        self
    }

    pub fn id(&self) -> AccountId {
        self.id
    }
    pub fn code(&self) -> u16 {
        self.code
    }
    pub fn flags(&self) -> AccountFlags {
        self.flags
    }
    pub fn user_data(&self) -> u64 {
        self.user_data
    }
}

/// An account as stored. `seq` counts its balance changes; entry `n` of the account
/// is the `n`-th change, so entries are gapless `1..=seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub code: u16,
    pub flags: AccountFlags,
    pub user_data: u64,
    pub debits_pending: Krw,
    pub debits_posted: Krw,
    pub credits_pending: Krw,
    pub credits_posted: Krw,
    pub seq: i64,
    pub created_at: Timestamp,
}

impl Account {
    pub(crate) fn opened(new: &NewAccount, now: Timestamp) -> Account {
        Account {
            id: new.id,
            code: new.code,
            flags: new.flags,
            user_data: new.user_data,
            debits_pending: Krw::ZERO,
            debits_posted: Krw::ZERO,
            credits_pending: Krw::ZERO,
            credits_posted: Krw::ZERO,
            seq: 0,
            created_at: now,
        }
    }

    /// Posted credits minus posted debits: what a liability account (a customer's
    /// deposit) holds. `None` only if the difference overflows.
    pub fn credit_balance(&self) -> Option<Krw> {
        self.credits_posted.checked_sub(self.debits_posted).ok()
    }

    /// What a customer can still spend: posted credits minus posted and pending debits.
    pub fn available_credit_balance(&self) -> Option<Krw> {
        self.credits_posted
            .checked_sub(self.debits_posted)
            .and_then(|b| b.checked_sub(self.debits_pending))
            .ok()
    }

    /// True when the account's balances respect its flags. A stored account that
    /// does not is a bug, never a user error.
    pub fn respects_flags(&self) -> bool {
        let debits = self.debits_pending.get() as i128 + self.debits_posted.get() as i128;
        let credits = self.credits_pending.get() as i128 + self.credits_posted.get() as i128;
        let debit_ok = !self.flags.debits_must_not_exceed_credits
            || debits <= self.credits_posted.get() as i128;
        let credit_ok = !self.flags.credits_must_not_exceed_debits
            || credits <= self.debits_posted.get() as i128;
        debit_ok && credit_ok
    }

    pub(crate) fn matches(&self, new: &NewAccount) -> bool {
        self.code == new.code && self.flags == new.flags && self.user_data == new.user_data
    }
}

/// The outcome of opening one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateAccountResult {
    Ok,
    /// The id exists with the same fields: the earlier request won, nothing changed.
    Exists,
    ExistsWithDifferentFields,
}

impl CreateAccountResult {
    pub fn code(self) -> &'static str {
        match self {
            CreateAccountResult::Ok => "ok",
            CreateAccountResult::Exists => "exists",
            CreateAccountResult::ExistsWithDifferentFields => "exists_with_different_fields",
        }
    }
}
