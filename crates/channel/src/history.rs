//! The transaction-history read model: a copy, in the channel's store, of each
//! account's core entries, fed by the ledger's `ledger.entry` events.
//!
//! It owns `channel_history_entries` and each account's `last_seq`. It always holds
//! a gapless prefix `1..=last_seq` of the core's entries: an event beyond `last + 1`
//! makes it fetch the missing range from the core, entries are applied strictly in
//! seq order, and the rows and `last_seq` move in one channel transaction — so a
//! redelivered event is harmless and a shown balance is always one the core had.
//! It never writes to the core's store and never invents or edits an entry.

use std::future::Future;
use std::sync::Arc;

use events::{Consumer, Event, HandleError};
use ledger::{ENTRY_EVENT_KIND, Entry};
use money::AccountId;
use serde::Serialize;
use store::Tx;
use tracing::Instrument;

use crate::error::ChannelError;
use crate::{Shared, db, telemetry};

/// One page of an account's history, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryPage {
    pub account: AccountId,
    pub entries: Vec<Entry>,
    /// Pass as `before_seq` for the next (older) page; `None` at the first entry.
    pub next_before_seq: Option<i64>,
    /// The account had a transfer in flight, so it was synced with the core first.
    pub synced: bool,
    /// A sync was due but the core could not answer: this page may lag the core
    /// (every balance in it is still one the core had).
    pub stale: bool,
}

/// What a sync pulled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub account: AccountId,
    pub last_seq_before: i64,
    pub last_seq_after: i64,
    pub applied: usize,
}

/// The read model. Cheap to clone.
#[derive(Clone)]
pub struct History {
    shared: Arc<Shared>,
}

impl History {
    pub(crate) fn new(shared: Arc<Shared>) -> History {
        History { shared }
    }

    /// The event consumer that feeds this read model when the channel has its own
    /// database (the production shape).
    pub fn consumer(&self) -> HistoryConsumer {
        HistoryConsumer {
            history: self.clone(),
            shares_core_store: false,
        }
    }

    /// The consumer for a channel whose store *is* the core's database (the
    /// embedded shape: one SQLite file). Its effect goes through the backbone's
    /// transaction, so it commits with the completion record and never waits on
    /// the write lock that transaction already holds.
    pub fn consumer_sharing_core_store(&self) -> HistoryConsumer {
        HistoryConsumer {
            history: self.clone(),
            shares_core_store: true,
        }
    }

    /// Up to `limit` (capped at `history_page_max`) entries with seq below
    /// `before_seq` (`None`: the newest), newest first. An account with a transfer
    /// in flight is synced with the core first.
    #[tracing::instrument(skip_all, fields(account = %account, before_seq))]
    pub async fn history(
        &self,
        account: AccountId,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<HistoryPage, ChannelError> {
        let store = &self.shared.store;
        let mut synced = false;
        let mut stale = false;
        if db::account_has_in_flight(store, account).await? {
            let pages_max = self.shared.config.read_sync_pages_max;
            match self.pull(account, None, Sink::Own, pages_max).await {
                Ok(_) => synced = true,
                Err(error) => {
                    tracing::warn!(error = %error, code = error.code(), "sync before read failed; showing the read model as it is");
                    stale = true;
                }
            }
        }
        let limit = limit.clamp(1, self.shared.config.history_page_max.max(1));
        let before_seq = before_seq.unwrap_or(i64::MAX);
        let entries = db::history_page(store, account, before_seq, limit).await?;
        let next_before_seq = entries.last().map(|e| e.seq).filter(|seq| *seq > 1);
        Ok(HistoryPage {
            account,
            entries,
            next_before_seq,
            synced,
            stale,
        })
    }

    /// The "sync now" button: pulls everything the core has beyond the read
    /// model's last seq.
    #[tracing::instrument(skip_all, fields(account = %account))]
    pub async fn sync(&self, account: AccountId) -> Result<SyncReport, ChannelError> {
        self.pull(
            account,
            None,
            Sink::Own,
            self.shared.config.catch_up_pages_max,
        )
        .await
    }

    /// Brings the account up to at least `through_seq` (what an event announced),
    /// fetching any gap from the core. Already there: nothing happens.
    #[tracing::instrument(skip_all, fields(account = %account, through_seq))]
    pub async fn catch_up(
        &self,
        account: AccountId,
        through_seq: i64,
    ) -> Result<SyncReport, ChannelError> {
        self.pull(
            account,
            Some(through_seq),
            Sink::Own,
            self.shared.config.catch_up_pages_max,
        )
        .await
    }

    /// The read model's last applied seq of `account`.
    pub async fn last_seq(&self, account: AccountId) -> Result<i64, ChannelError> {
        db::last_seq(&self.shared.store, account).await
    }

    /// Fetches pages from the core after `last_seq` and applies them in order, until
    /// `through_seq` is reached (or, without one, until the core has no more).
    async fn pull(
        &self,
        account: AccountId,
        through_seq: Option<i64>,
        mut sink: Sink<'_>,
        pages_max: usize,
    ) -> Result<SyncReport, ChannelError> {
        let store = &self.shared.store;
        let config = &self.shared.config;
        let before = match &mut sink {
            Sink::Own => db::last_seq(store, account).await?,
            Sink::Borrowed(tx) => db::last_seq_in_tx(tx, account).await?,
        };
        let mut last = before;
        let mut applied = 0;
        let mut pages = 0;
        loop {
            if through_seq.is_some_and(|target| last >= target) {
                break;
            }
            if pages >= pages_max {
                return Err(ChannelError::StillBehind { account, pages });
            }
            let from_seq = last.saturating_add(1);
            // A catch-up loads exactly the announced range (zero payload: the
            // event names the entry, the consumer loads it); a sync takes all.
            let wanted = match through_seq {
                Some(target) => usize::try_from(target.saturating_sub(last)).unwrap_or(usize::MAX),
                None => usize::MAX,
            };
            let limit = wanted.clamp(1, config.fetch_entries_max.max(1));
            let page = self.shared.core.entries(account, from_seq, limit).await?;
            pages += 1;
            telemetry::fetched(page.len());
            if page.is_empty() {
                if through_seq.is_some() {
                    // The core announced an entry it cannot show: wrong core, or
                    // a read that lags its writer. Retried with backoff.
                    return Err(ChannelError::CoreEntriesBroken {
                        account,
                        last_seq: last,
                    });
                }
                break;
            }
            let now = self.shared.clock.now();
            let step = match &mut sink {
                Sink::Own => db::apply_entries(store, account, &page, now).await?,
                Sink::Borrowed(tx) => db::apply_in_tx(tx, account, &page, now).await?,
            };
            if step.last_seq <= last {
                return Err(ChannelError::CoreEntriesBroken {
                    account,
                    last_seq: last,
                });
            }
            applied += step.applied;
            last = step.last_seq;
        }
        if applied > 0 {
            tracing::debug!(account = %account, from = before, to = last, applied, "read model caught up");
        }
        Ok(SyncReport {
            account,
            last_seq_before: before,
            last_seq_after: last,
            applied,
        })
    }
}

/// The durable name of the read model's consumer.
pub const CONSUMER_NAME: &str = "channel.history";

/// Feeds the read model from `ledger.entry` events. Its effect lands in the
/// channel's store, not in the transaction the backbone hands it (that one belongs
/// to the core's store), so the apply is idempotent on its own; a failure is
/// returned to the backbone for backoff and, in the end, the dead-letter table.
#[derive(Clone)]
pub struct HistoryConsumer {
    history: History,
    /// Write through the backbone's transaction instead of the channel's own.
    shares_core_store: bool,
}

/// Where a pull writes: the channel's own store, or a transaction it is handed.
enum Sink<'a> {
    Own,
    Borrowed(&'a mut Tx),
}

impl Consumer for HistoryConsumer {
    fn name(&self) -> &str {
        CONSUMER_NAME
    }

    fn kinds(&self) -> &[&str] {
        &[ENTRY_EVENT_KIND]
    }

    fn handle(
        &self,
        event: &Event,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), HandleError>> + Send {
        let span = tracing::debug_span!("history_event", key = %event.key, seq = event.seq);
        async move {
            let account = AccountId::parse(&event.key).map_err(|error| {
                format!("event key {:?} is not an account id: {error}", event.key)
            })?;
            let sink = if self.shares_core_store {
                Sink::Borrowed(tx)
            } else {
                Sink::Own
            };
            let pages_max = self.history.shared.config.catch_up_pages_max;
            self.history
                .pull(account, Some(event.seq), sink, pages_max)
                .await?;
            Ok(())
        }
        .instrument(span)
    }
}
