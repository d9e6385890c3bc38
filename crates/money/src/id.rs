//! Client-chosen 128-bit ids. A transfer's id *is* its idempotency key, so ids come
//! from the caller (UUID v7 or ULID), never from the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why an id was refused. Each variant has a stable [`IdError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id {0:?} is neither a UUID nor a ULID")]
    Malformed(String),
    #[error("the id must not be all zeros or all ones")]
    Reserved,
}

impl IdError {
    pub fn code(&self) -> &'static str {
        match self {
            IdError::Malformed(_) => "id_malformed",
            IdError::Reserved => "id_reserved",
        }
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The text forms [`parse_id`] reads, as a JSON-schema `pattern`: a UUID
/// (hyphenated or 32 hex digits) or a 26-character ULID (Crockford base 32, the
/// first character 0–7). The all-zero and all-one values match it but are refused.
pub const ID_PATTERN: &str = "^([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32}|[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25})$";

/// The JSON schema of an id: a string of [`ID_PATTERN`].
pub fn id_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": ID_PATTERN,
        "description": "a UUID (hyphenated or 32 hex digits) or a ULID; not all zeros or all ones",
    })
}

/// A UUID alone (hyphenated or 32 hex digits), as a JSON-schema `pattern`: for
/// ids that are UUIDs only (a bank's user id).
pub const UUID_PATTERN: &str = "^([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32})$";

/// The JSON schema of a UUID: a string of [`UUID_PATTERN`].
pub fn uuid_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": UUID_PATTERN,
        "description": "a UUID (hyphenated or 32 hex digits)",
    })
}

/// Parses a UUID (hyphenated or 32 hex digits) or a 26-character ULID into 128 bits.
/// The all-zero and all-one values are reserved: a zero id is almost always a
/// forgotten field, not a real choice.
pub fn parse_id(text: &str) -> Result<u128, IdError> {
    let value = if text.len() == 26 {
        parse_ulid(text).ok_or_else(|| IdError::Malformed(text.to_owned()))?
    } else {
        Uuid::try_parse(text)
            .map_err(|_| IdError::Malformed(text.to_owned()))?
            .as_u128()
    };
    check_reserved(value)
}

fn check_reserved(value: u128) -> Result<u128, IdError> {
    if value == 0 || value == u128::MAX {
        Err(IdError::Reserved)
    } else {
        Ok(value)
    }
}

fn parse_ulid(text: &str) -> Option<u128> {
    let mut value: u128 = 0;
    for (index, byte) in text.bytes().enumerate() {
        let digit = CROCKFORD
            .iter()
            .position(|c| *c == byte.to_ascii_uppercase())? as u128;
        // The first character carries only 3 bits: 26 × 5 = 130 > 128.
        if index == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(value)
}

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps 128 bits, refusing the reserved all-zero and all-one values.
            pub fn from_u128(value: u128) -> Result<$name, IdError> {
                check_reserved(value).map(|v| $name(Uuid::from_u128(v)))
            }

            pub fn from_uuid(uuid: Uuid) -> Result<$name, IdError> {
                $name::from_u128(uuid.as_u128())
            }

            pub fn parse(text: &str) -> Result<$name, IdError> {
                parse_id(text).map(|v| $name(Uuid::from_u128(v)))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn as_u128(&self) -> u128 {
                self.0.as_u128()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<$name, IdError> {
                $name::parse(text)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0.hyphenated())
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                id_schema(generator)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A ledger account, chosen by the client that opens it.
    AccountId
);
define_id!(
    /// A transfer; also its idempotency key.
    TransferId
);
define_id!(
    /// An event in the outbox.
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uuid_and_ulid() {
        let uuid = "0192f1a8-7b2c-7d3e-8f40-112233445566";
        assert_eq!(
            AccountId::parse(uuid).unwrap().to_string(),
            uuid,
            "a hyphenated UUID round-trips"
        );
        assert!(TransferId::parse("0192f1a87b2c7d3e8f40112233445566").is_ok());
        // 26 Crockford characters: a ULID. The same 128 bits in both spellings.
        let ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        let id = TransferId::parse(ulid).unwrap();
        assert_eq!(id, TransferId::parse(&ulid.to_lowercase()).unwrap());
        assert_eq!(id.as_u128() >> 80, 0x0156_3E3A_B5D3);
    }

    #[test]
    fn refuses_malformed_and_reserved() {
        for bad in [
            "",
            "42",
            "not-a-uuid",
            "81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01ARZ3NDEKTSV4RRFFQ69G5FAU!",
        ] {
            assert_eq!(parse_id(bad).unwrap_err().code(), "id_malformed", "{bad:?}");
        }
        assert_eq!(
            AccountId::parse("00000000-0000-0000-0000-000000000000").unwrap_err(),
            IdError::Reserved
        );
        assert_eq!(
            AccountId::from_u128(u128::MAX).unwrap_err(),
            IdError::Reserved
        );
    }

    #[test]
    fn json_is_the_hyphenated_string() {
        let id = AccountId::from_u128(1).unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000-0000-0000-0000-000000000001\"");
        assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<AccountId>("\"zzz\"").is_err());
    }
}
