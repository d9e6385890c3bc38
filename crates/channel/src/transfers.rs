//! The transfer service: a user's request is stored as `requested` before the core
//! hears of it, marked `sent` just before the call, and moved by the core's answer
//! (or its silence) through [`TransferState::after`].
//!
//! It never calls the core for a request it has not stored, never calls it twice
//! for one id, and never turns silence into a result: a timeout is `unknown`, for
//! the reconciler to settle by asking.

use std::sync::Arc;
use std::time::Duration;

use ledger::{TransferRequest, TransferResult};
use money::{AccountId, Krw, Timestamp, TransferId};
use serde::Serialize;

use crate::error::ChannelError;
use crate::request::{NewTransfer, UserId};
use crate::state::{StateEvent, TransferState};
use crate::{Shared, db, telemetry};

/// A channel transfer as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelTransfer {
    pub id: TransferId,
    pub user: UserId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Krw,
    pub state: TransferState,
    /// The core's result code (`ok`, `exceeds_credits`, `late`, …) or the
    /// reconciler's `not_found_after_late_window`.
    pub result_code: Option<String>,
    pub requested_at: Timestamp,
    pub updated_at: Timestamp,
}

impl ChannelTransfer {
    /// The same request as `new` (a client's retry), as opposed to a reused id.
    fn is_same_request(&self, new: &NewTransfer) -> bool {
        self.user == new.user()
            && self.debit == new.debit()
            && self.credit == new.credit()
            && self.amount == new.amount()
    }
}

/// Result code the reconciler records when the core never saw a transfer and the
/// late window has closed.
pub const NOT_FOUND_AFTER_LATE_WINDOW: &str = "not_found_after_late_window";

/// Accepts transfers and carries them to the core. Cheap to clone.
#[derive(Clone)]
pub struct TransferService {
    shared: Arc<Shared>,
}

impl TransferService {
    pub(crate) fn new(shared: Arc<Shared>) -> TransferService {
        TransferService { shared }
    }

    /// Stores the request, sends it to the core and records the answer. A timeout
    /// or transport failure returns the transfer as `unknown`, not an error. The
    /// same id with the same fields returns the stored transfer without sending
    /// again.
    #[tracing::instrument(skip_all, fields(transfer_id = %new.id(), user = %new.user()))]
    pub async fn submit(&self, new: NewTransfer) -> Result<ChannelTransfer, ChannelError> {
        let store = &self.shared.store;
        let transfer = match db::insert_requested(store, &new, self.shared.clock.now()).await {
            Ok(db::Inserted::New(transfer)) => transfer,
            Ok(db::Inserted::Existing(existing)) if existing.is_same_request(&new) => {
                tracing::debug!(state = %existing.state, "a retry of a stored transfer");
                return Ok(existing);
            }
            Ok(db::Inserted::Existing(_)) => return Err(ChannelError::IdTaken(new.id())),
            Err(error) => {
                if let ChannelError::TransferInProgress { .. } = error {
                    telemetry::refused_in_progress();
                }
                return Err(error);
            }
        };
        let transfer = self.step(transfer, StateEvent::Send, None).await?;
        if transfer.state != TransferState::Sent {
            // Another process settled it first (a reconciler that gave up on a
            // stale request): it must never reach the core now.
            return Ok(transfer);
        }
        let request = TransferRequest::single(
            transfer.id,
            transfer.debit,
            transfer.credit,
            transfer.amount,
            transfer.requested_at,
        )
        .map_err(|error| ChannelError::Corrupt(format!("stored request is invalid: {error}")))?;
        let timeout_ms = self.shared.config.core_call_timeout_ms;
        let answer = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.shared.core.transfer(request),
        )
        .await;
        let transfer = match answer {
            Ok(Ok(result)) => {
                let (event, code) = judge(result);
                self.step(transfer, event, Some(code)).await?
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, code = error.code(), "core call failed; outcome unknown");
                self.step(transfer, StateEvent::TimedOut, Some(error.code()))
                    .await?
            }
            Err(_) => {
                tracing::warn!(timeout_ms, "core call timed out; outcome unknown");
                self.step(transfer, StateEvent::TimedOut, Some("core_timeout"))
                    .await?
            }
        };
        telemetry::transfer_finished(transfer.state);
        Ok(transfer)
    }

    /// One transfer by id.
    pub async fn get(&self, id: TransferId) -> Result<Option<ChannelTransfer>, ChannelError> {
        db::load_transfer(&self.shared.store, id).await
    }

    /// Applies `event` to `transfer` and stores the move, or, if another process
    /// moved the row first, returns the row as that process left it.
    async fn step(
        &self,
        transfer: ChannelTransfer,
        event: StateEvent,
        code: Option<&str>,
    ) -> Result<ChannelTransfer, ChannelError> {
        step(&self.shared, transfer, event, code).await
    }
}

/// The state move a core result calls for, and the code to record.
pub(crate) fn judge(result: TransferResult) -> (StateEvent, &'static str) {
    if result.is_applied() {
        (StateEvent::Applied, result.code())
    } else {
        (StateEvent::Refused, result.code())
    }
}

/// Moves a stored transfer by `event` with compare-and-set. Losing the race is not
/// an error: the winner's row is returned (the core is the only source of truth,
/// so both movers agree on where it ends).
pub(crate) async fn step(
    shared: &Shared,
    transfer: ChannelTransfer,
    event: StateEvent,
    code: Option<&str>,
) -> Result<ChannelTransfer, ChannelError> {
    let to = transfer.state.after(event)?;
    let now = shared.clock.now();
    if db::move_state(&shared.store, transfer.id, transfer.state, to, code, now).await? {
        tracing::debug!(transfer_id = %transfer.id, from = %transfer.state, to = %to, "transfer moved");
        return Ok(ChannelTransfer {
            state: to,
            result_code: code.map(str::to_owned).or(transfer.result_code),
            updated_at: now,
            ..transfer
        });
    }
    let current = db::load_transfer(&shared.store, transfer.id)
        .await?
        .ok_or_else(|| ChannelError::Corrupt(format!("transfer {} vanished", transfer.id)))?;
    if !current.state.is_in_flight() && current.state != to && to != TransferState::Unknown {
        tracing::error!(transfer_id = %transfer.id, ours = %to, theirs = %current.state, "two movers disagree on a transfer's end");
    }
    Ok(current)
}
