//! The channel side of settle: what a mobile bank's channel layer does in front of
//! the core ledger. It owns three things, all in its own store (which may be a
//! different database from the core's):
//!
//! - [`transfers`]: transfer requests, persisted as `requested` *before* the core is
//!   called, one in flight per user, moved by [`state::TransferState::after`] only;
//! - [`reconciler`]: resolves `unknown` and stale in-flight transfers by asking the
//!   core, and gives up on one only after the core's late window has closed;
//! - [`history`]: the transaction-history read model, fed by the ledger's
//!   `ledger.entry` events, always a gapless prefix of the core's entries.
//!
//! The channel talks to the core only through [`core::CoreClient`] (in process, or
//! over HTTP with [`core_http`]). It never reads or writes the core's tables, never
//! resends a transfer whose outcome is unknown, and never shows a balance the core
//! did not have.

pub mod bench;
pub mod core;
pub mod core_http;
mod db;
mod error;
pub mod faults;
pub mod history;
pub mod reconciler;
pub mod request;
pub mod state;
mod telemetry;
pub mod transfers;

use std::sync::Arc;

use money::Clock;
use store::Store;

pub use crate::core::{CoreClient, CoreError, InProcessCore};
pub use error::ChannelError;
pub use history::{History, HistoryConsumer, HistoryPage, SyncReport};
pub use reconciler::{ReconcileReport, Reconciler};
pub use request::{NewTransfer, UserId};
pub use state::{IllegalMove, StateEvent, TransferState};
pub use transfers::{ChannelTransfer, TransferService};

/// Limits, windows and timeouts of one channel process.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// How long the transfer service waits for the core before the outcome is
    /// `unknown`.
    pub core_call_timeout_ms: u64,
    /// The core's late window. Must not be shorter than the core's own (checked by
    /// [`Reconciler::check_core`]): a not-found transfer is given up only after it.
    pub late_window_ms: i64,
    /// Extra wait past the late window before giving up on a not-found transfer:
    /// covers clock skew between the processes and a request that passed the
    /// core's lateness check but had not committed when the reconciler asked. It
    /// must exceed the core's worst commit stall; giving up later only delays the
    /// `failed` of a transfer that never arrived.
    pub late_margin_ms: i64,
    /// A `requested` or `sent` transfer untouched for this long is the reconciler's.
    pub stale_after_ms: i64,
    /// Transfers one reconciler step examines.
    pub reconcile_batch_max: usize,
    /// Sleep between reconciler steps in [`Reconciler::run`].
    pub reconcile_interval_ms: u64,
    /// Entries in one history page.
    pub history_page_max: usize,
    /// Entries asked of the core in one call.
    pub fetch_entries_max: usize,
    /// Pages of entries one catch-up or sync may fetch before it stops.
    pub catch_up_pages_max: usize,
    /// Pages a read may fetch to sync an account with a transfer in flight; a
    /// read model further behind is shown as it is, flagged stale.
    pub read_sync_pages_max: usize,
}

impl Default for ChannelConfig {
    fn default() -> ChannelConfig {
        ChannelConfig {
            core_call_timeout_ms: 5_000,
            late_window_ms: 60_000,
            late_margin_ms: 30_000,
            stale_after_ms: 30_000,
            reconcile_batch_max: 256,
            reconcile_interval_ms: 1_000,
            history_page_max: 100,
            fetch_entries_max: 500,
            catch_up_pages_max: 2_000,
            read_sync_pages_max: 4,
        }
    }
}

/// What every channel component shares: its store, the core, the clock, the limits.
pub(crate) struct Shared {
    pub store: Store,
    pub core: Arc<dyn CoreClient>,
    pub clock: Arc<dyn Clock>,
    pub config: ChannelConfig,
}

/// The channel's three components over one store and one core. Cheap to clone.
#[derive(Clone)]
pub struct Channel {
    transfers: TransferService,
    history: History,
    reconciler: Reconciler,
}

/// Applies the channel's migrations (component `channel`) to its own store.
pub async fn migrate(store: &Store) -> Result<(), ChannelError> {
    store.migrate("channel", db::MIGRATIONS).await?;
    Ok(())
}

impl Channel {
    /// Migrates the channel's store and builds its components.
    pub async fn open(
        store: Store,
        core: Arc<dyn CoreClient>,
        clock: Arc<dyn Clock>,
        config: ChannelConfig,
    ) -> Result<Channel, ChannelError> {
        migrate(&store).await?;
        let shared = Arc::new(Shared {
            store,
            core,
            clock,
            config,
        });
        Ok(Channel {
            transfers: TransferService::new(shared.clone()),
            history: History::new(shared.clone()),
            reconciler: Reconciler::new(shared),
        })
    }

    pub fn transfers(&self) -> &TransferService {
        &self.transfers
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }
}
