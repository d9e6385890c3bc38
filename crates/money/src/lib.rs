//! settle's shared vocabulary: won amounts ([`Krw`]), client-chosen 128-bit ids and
//! the [`Clock`] through which every other crate learns the time.
//!
//! This crate does no I/O. Its only contact with the outside world is
//! [`SystemClock`], which it never calls itself: callers inject a clock, so tests
//! can move time.

mod clock;
mod derived;
mod id;
pub mod import;
mod krw;

pub use clock::{Clock, SystemClock, TestClock, Timestamp};
pub use derived::{DerivedIds, ID_SECRET_BYTES_MAX, ID_SECRET_BYTES_MIN, IdSecretError};
pub use id::{
    AccountId, EventId, ID_PATTERN, IdError, TransferId, UUID_PATTERN, id_schema, parse_id,
    uuid_schema,
};
pub use krw::{Krw, MoneyError};
