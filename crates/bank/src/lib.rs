//! The bank boundary of settle: the [`BankApi`] trait (Korean open banking: deposit
//! and withdraw transfers keyed by a caller-chosen `bank_tran_id`, result inquiry,
//! balance, account holder, virtual accounts), its HTTP client [`HttpBank`], the
//! bank simulator ([`sim`]), and the provider facade ([`providers`]) with its
//! routing table and double-settlement guard ([`routing`]).
//!
//! `bank` never retries a money-moving call whose outcome is unknown, never uses
//! floats for money, and never reads the clock except through an injected `Clock`.

mod api;
mod client;
mod error;
pub mod providers;
pub mod routing;
pub mod sim;
mod sql;
pub mod statement;
pub mod tls;
mod transport;
pub mod types;
pub mod wire;

pub use api::{BankApi, DEFAULT_NOT_FOUND_GRACE_MS};
pub use client::HttpBank;
pub use error::{BankError, ErrorClass};
pub use statement::{Statement, StatementCursor, StatementLine, StatementPage};
pub use tls::BankCa;
pub use transport::{
    Body, KftcSettings, LegacySettings, SIMULATOR_CLIENT_SECRET, SIMULATOR_LEGACY_ACCESS_TOKEN,
    Transport, TransportConfig,
};
pub use types::{
    AccountNumber, BankTranId, DepositId, HOLDER_NAME_CHARS_MAX, HolderName, TranDate,
    TransferKind, UserId,
};
