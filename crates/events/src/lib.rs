//! The event backbone. Producers append zero-payload events to the outbox inside
//! their own transaction ([`outbox::append`]); the backbone delivers them per key in
//! seq order, at least once, and records each consumer's completion in the same
//! transaction as its effect, so effects happen exactly once.
//!
//! An event never carries the state it announces: only `(id, kind, key, seq,
//! created_at)` travels, and a consumer loads the current row by id.
//!
//! Transports: [`dispatcher`] (embedded, in-process, polls the outbox) and [`nats`]
//! (production: a relay publishes to NATS JetStream, partition workers consume).

pub mod bench;
pub mod consumer;
pub mod dead_letter;
pub mod dispatcher;
mod error;
pub mod nats;
pub mod outbox;
pub mod retry;
pub mod shutdown;
pub mod status;
mod telemetry;

pub use consumer::{Consumer, Deferred, HandleError, seq_done};
pub use dead_letter::{DeadLetter, DeadLetterState, OperatorAction};
pub use dispatcher::{Dispatcher, DispatcherConfig, Step, Wake};
pub use error::EventsError;
pub use outbox::{Event, NewEvent, append, event_id, migrate, migrations};
pub use retry::RetryPolicy;
pub use shutdown::Shutdown;
