//! What a user asks the channel for: a transfer between two accounts, valid by
//! construction. This module does no I/O and never reads the clock.

use std::fmt;

use ledger::InvalidTransfer;
use money::{AccountId, IdError, Krw, TransferId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A channel user: whoever the one-transfer-in-flight rule counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(Uuid);

impl UserId {
    /// Refuses the reserved all-zero and all-one ids.
    pub fn from_uuid(uuid: Uuid) -> Result<UserId, IdError> {
        money::parse_id(&uuid.hyphenated().to_string()).map(|v| UserId(Uuid::from_u128(v)))
    }

    pub fn parse(text: &str) -> Result<UserId, IdError> {
        money::parse_id(text).map(|v| UserId(Uuid::from_u128(v)))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(text: String) -> Result<UserId, IdError> {
        UserId::parse(&text)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.to_string()
    }
}

/// A transfer a user asked for. The id is chosen by the client and is both the
/// channel's idempotency key and the core's transfer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewTransfer {
    id: TransferId,
    user: UserId,
    debit: AccountId,
    credit: AccountId,
    amount: Krw,
}

impl NewTransfer {
    /// Refuses a non-positive amount and a transfer from an account to itself.
    pub fn new(
        id: TransferId,
        user: UserId,
        debit: AccountId,
        credit: AccountId,
        amount: Krw,
    ) -> Result<NewTransfer, InvalidTransfer> {
        Krw::positive(amount.get())?;
        if debit == credit {
            return Err(InvalidTransfer::AccountsMustBeDifferent);
        }
        Ok(NewTransfer {
            id,
            user,
            debit,
            credit,
            amount,
        })
    }

    pub fn id(&self) -> TransferId {
        self.id
    }
    pub fn user(&self) -> UserId {
        self.user
    }
    pub fn debit(&self) -> AccountId {
        self.debit
    }
    pub fn credit(&self) -> AccountId {
        self.credit
    }
    pub fn amount(&self) -> Krw {
        self.amount
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_to_the_same_account_or_of_nothing_is_refused() {
        let a = AccountId::from_u128(1).unwrap();
        let b = AccountId::from_u128(2).unwrap();
        let id = TransferId::from_u128(3).unwrap();
        let user = UserId::parse("0192f1a8-7b2c-7d3e-8f40-000000000009").unwrap();
        assert!(NewTransfer::new(id, user, a, b, Krw::new(1)).is_ok());
        assert_eq!(
            NewTransfer::new(id, user, a, a, Krw::new(1)).unwrap_err(),
            InvalidTransfer::AccountsMustBeDifferent
        );
        assert!(NewTransfer::new(id, user, a, b, Krw::ZERO).is_err());
        assert!(UserId::parse("00000000-0000-0000-0000-000000000000").is_err());
    }
}
