//! The expiry worker: voids holds whose timeout has passed, through the writer, so
//! an expiry is ordered with every other balance change.

use std::time::Duration;

use crate::{Ledger, LedgerError};

/// Holds expired per step; the worker steps again at once while there are more.
pub const EXPIRY_HOLDS_PER_STEP_MAX: i64 = 1_000;

pub struct ExpiryWorker {
    ledger: Ledger,
    interval_ms: u64,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Done(usize),
    Idle,
}

impl ExpiryWorker {
    pub fn new(ledger: Ledger, interval_ms: u64) -> ExpiryWorker {
        ExpiryWorker {
            ledger,
            interval_ms,
        }
    }

    /// Expires one batch of due holds.
    pub async fn run_once(&self) -> Result<Step, LedgerError> {
        let expired = self.ledger.expire_holds(EXPIRY_HOLDS_PER_STEP_MAX).await?;
        Ok(if expired == 0 {
            Step::Idle
        } else {
            Step::Done(expired)
        })
    }

    /// Steps until `shutdown` resolves, sleeping `interval_ms` when idle.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let idle = match self.run_once().await {
                Ok(Step::Done(_)) => false,
                Ok(Step::Idle) => true,
                Err(error) => {
                    tracing::warn!(error = %error, "expiring holds failed; will retry");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_millis(self.interval_ms)) => {}
                }
            }
        }
    }
}
