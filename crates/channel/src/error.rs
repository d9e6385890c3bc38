//! The channel's one error type. Callers branch on the variant or on its stable
//! [`ChannelError::code`]; this module never logs, it only describes.

use money::{AccountId, TransferId};

use crate::core::CoreError;
use crate::request::UserId;
use crate::state::IllegalMove;

/// Why a channel operation could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The user already has a transfer `requested`, `sent` or `unknown`.
    #[error("user {user} already has a transfer in progress; try again when it has finished")]
    TransferInProgress { user: UserId },
    /// The id was used before for a request with other fields.
    #[error("transfer id {0} is already taken by a different request")]
    IdTaken(TransferId),
    #[error("the core could not answer: {0}")]
    Core(#[from] CoreError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A state move the transition function refuses: a bug, never user input.
    #[error(transparent)]
    IllegalMove(#[from] IllegalMove),
    /// The core's entries for an account did not continue the read model's prefix.
    #[error("the core's entries for account {account} do not continue from seq {last_seq}")]
    CoreEntriesBroken { account: AccountId, last_seq: i64 },
    /// A catch-up or sync needed more pages than its limit; the next one resumes.
    #[error("account {account} is still behind the core after {pages} pages")]
    StillBehind { account: AccountId, pages: usize },
    #[error("stored channel data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl ChannelError {
    /// A stable, machine-readable code for API and CLI output.
    pub fn code(&self) -> &'static str {
        match self {
            ChannelError::TransferInProgress { .. } => "transfer_in_progress",
            ChannelError::IdTaken(_) => "transfer_id_taken",
            ChannelError::Core(_) => "core_unavailable",
            ChannelError::Store(error) => error.code(),
            ChannelError::Db(_) => "database_error",
            ChannelError::IllegalMove(_) => "illegal_state_move",
            ChannelError::CoreEntriesBroken { .. } => "core_entries_broken",
            ChannelError::StillBehind { .. } => "history_still_behind",
            ChannelError::Corrupt(_) => "channel_corrupt",
            ChannelError::InvalidConfig(_) => "channel_config_invalid",
        }
    }
}
