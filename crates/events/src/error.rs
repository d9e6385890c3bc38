//! The one error type of the event backbone. Callers branch on the variant or on
//! its stable [`EventsError::code`]; this module never logs, it only describes.

/// Errors of the event backbone.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored row breaks an invariant of the backbone (a bug or a hand edit).
    #[error("corrupt event data: {0}")]
    Corrupt(String),
    #[error("no dead letter for consumer {consumer:?} and event {event_id}")]
    DeadLetterNotFound { consumer: String, event_id: String },
    #[error("dead letter {event_id} is {state}, not parked; only a parked letter can be {action}")]
    DeadLetterNotParked {
        event_id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An event kind must name its component first (`ledger.entry`): that prefix
    /// is the stream the row belongs to.
    #[error("event kind {0:?} is not `<component>.<name>` with a lowercase component")]
    InvalidKind(String),
    /// A consumer was handed an event of a stream it does not read: a routing bug.
    #[error("consumer {consumer} reads stream {expected:?} but was handed a {kind} event")]
    WrongStream {
        consumer: String,
        expected: String,
        kind: String,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the relay of partition {partition} lost its lock connection: {reason}")]
    RelayLockLost { partition: u32, reason: String },
    /// A worker's lease on its (consumer, partition) was lost with the lock
    /// connection: another process may deliver the partition now.
    #[error("lease {lease:?} was lost with its lock connection")]
    LeaseLost { lease: String },
}

impl EventsError {
    /// A stable, machine-readable code for CLI and API output.
    pub fn code(&self) -> &'static str {
        match self {
            EventsError::Store(error) => error.code(),
            EventsError::Db(_) => "database_error",
            EventsError::Corrupt(_) => "events_corrupt",
            EventsError::DeadLetterNotFound { .. } => "dead_letter_not_found",
            EventsError::DeadLetterNotParked { .. } => "dead_letter_not_parked",
            EventsError::InvalidConfig(_) => "events_config_invalid",
            EventsError::InvalidKind(_) => "event_kind_invalid",
            EventsError::WrongStream { .. } => "event_wrong_stream",
            EventsError::Nats(_) => "nats_error",
            EventsError::RelayLockLost { .. } => "relay_lock_lost",
            EventsError::LeaseLost { .. } => "lease_lost",
        }
    }

    pub(crate) fn nats(error: impl std::fmt::Display) -> EventsError {
        EventsError::Nats(error.to_string())
    }
}
