//! The reconciler: settles every `unknown` transfer, and every `requested`/`sent`
//! one left stale by a dead process, by asking the core what happened to its id.
//!
//! Found → the core's result. Not found → left alone while the core could still
//! apply it; `failed` only once `requested_at` is older than the late window plus a
//! margin, because the core refuses any request that old. It never sends a
//! transfer, never guesses, and never fails a transfer the core might still apply.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ledger::{KindTag, TransferOutcome};
use serde::Serialize;

use crate::error::ChannelError;
use crate::state::StateEvent;
use crate::transfers::{ChannelTransfer, NOT_FOUND_AFTER_LATE_WINDOW, judge, step};
use crate::{Shared, db, telemetry};

/// What one reconciler step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Transfers asked about.
    pub examined: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Not found in the core and still inside the late window: asked again later.
    pub left_in_flight: usize,
    /// The core could not answer for these; asked again later.
    pub errors: usize,
}

/// Resolves in-flight transfers. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    shared: Arc<Shared>,
}

impl Reconciler {
    pub(crate) fn new(shared: Arc<Shared>) -> Reconciler {
        Reconciler { shared }
    }

    /// Refuses to run against a core whose late window is longer than ours: giving
    /// up after our window would then be unsafe.
    pub async fn check_core(&self) -> Result<(), ChannelError> {
        let core_ms = self.shared.core.late_window_ms().await?;
        if core_ms > self.shared.config.late_window_ms {
            return Err(ChannelError::InvalidConfig(format!(
                "the core's late window is {core_ms} ms, longer than the channel's {} ms",
                self.shared.config.late_window_ms
            )));
        }
        Ok(())
    }

    /// Asks the core about up to `reconcile_batch_max` in-flight transfers, oldest
    /// first, and records what it says.
    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self) -> Result<ReconcileReport, ChannelError> {
        let config = &self.shared.config;
        let now = self.shared.clock.now();
        let stale_before = now.plus_ms(-config.stale_after_ms);
        let candidates =
            db::reconcilable(&self.shared.store, stale_before, config.reconcile_batch_max).await?;
        let mut report = ReconcileReport::default();
        for transfer in candidates {
            report.examined += 1;
            match self.settle(transfer).await {
                Ok(Some(true)) => report.succeeded += 1,
                Ok(Some(false)) => report.failed += 1,
                Ok(None) => report.left_in_flight += 1,
                Err(error) => {
                    tracing::warn!(error = %error, code = error.code(), "could not reconcile a transfer; will ask again");
                    report.errors += 1;
                }
            }
        }
        let stats = db::in_flight_stats(&self.shared.store).await?;
        telemetry::in_flight(&stats, self.shared.clock.now());
        telemetry::reconciled(&report);
        if report.examined > 0 {
            tracing::info!(?report, "reconciler step");
        }
        Ok(report)
    }

    /// Steps every `reconcile_interval_ms` until `shutdown` resolves. Errors are
    /// logged and the next step tries again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        match self.check_core().await {
            Err(error @ ChannelError::InvalidConfig(_)) => {
                tracing::error!(error = %error, "reconciler not started: giving up on transfers would be unsafe");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not ask the core for its late window; starting anyway")
            }
            Ok(()) => {}
        }
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let interval = Duration::from_millis(self.shared.config.reconcile_interval_ms);
        loop {
            if let Err(error) = self.run_once().await {
                tracing::warn!(error = %error, code = error.code(), "reconciler step failed");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// `Some(true)`: succeeded; `Some(false)`: failed; `None`: still in flight.
    #[tracing::instrument(skip_all, fields(transfer_id = %transfer.id, state = %transfer.state))]
    async fn settle(&self, transfer: ChannelTransfer) -> Result<Option<bool>, ChannelError> {
        let config = &self.shared.config;
        let timeout = Duration::from_millis(config.core_call_timeout_ms);
        let outcome = tokio::time::timeout(timeout, self.shared.core.outcome(transfer.id))
            .await
            .map_err(|_| crate::core::CoreError::Timeout {
                timeout_ms: config.core_call_timeout_ms,
            })??;
        let (event, code) = match outcome {
            TransferOutcome::Applied { transfer: found } => {
                let ours = found.kind == KindTag::Single
                    && found.debit_account_id == transfer.debit
                    && found.credit_account_id == transfer.credit
                    && found.amount == transfer.amount;
                if ours {
                    (StateEvent::Applied, "ok")
                } else {
                    tracing::error!("the core applied a different transfer under this id");
                    (StateEvent::Refused, "exists_with_different_fields")
                }
            }
            TransferOutcome::Failed { result } => judge(result),
            TransferOutcome::NotFound => {
                let age_ms = self.shared.clock.now().ms_since(transfer.requested_at);
                let give_up_ms = config.late_window_ms.saturating_add(config.late_margin_ms);
                if age_ms <= give_up_ms {
                    tracing::debug!(age_ms, give_up_ms, "not in the core yet; leaving it");
                    return Ok(None);
                }
                (StateEvent::GaveUp, NOT_FOUND_AFTER_LATE_WINDOW)
            }
        };
        let settled = step(&self.shared, transfer, event, Some(code)).await?;
        Ok(match settled.state {
            crate::TransferState::Succeeded => Some(true),
            crate::TransferState::Failed => Some(false),
            _ => None,
        })
    }
}
