//! A fault-injecting [`CoreClient`] wrapper for tests: a slow core, a core that
//! commits and then loses its answer, one that never sees the call, a process that
//! dies right after the core committed, and a request stuck in the network that
//! arrives only when the test lets it.
//!
//! Faults apply to `transfer` calls, one queued fault per call in order; reads can
//! be made to fail as a whole. This wrapper never changes what the core decides.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ledger::{Account, Entry, TransferOutcome, TransferRequest, TransferResult};
use money::{AccountId, TransferId};
use tokio::sync::{Mutex, Notify};

use crate::core::{CoreClient, CoreError};

/// What happens to one transfer call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Waits `delay_ms` of real time, then forwards. The request travels on its own
    /// task, so a caller that stops waiting does not stop it reaching the core.
    Delay { delay_ms: u64 },
    /// The core never sees the call; the caller gets a timeout.
    TimeoutBeforeCommit,
    /// The core applies the call; its answer is lost and the caller gets a timeout.
    TimeoutAfterCommit,
    /// The core applies the call, [`FaultyCore::committed`] is notified, and the
    /// caller never gets an answer: the process "dies" here.
    HangAfterCommit,
    /// The caller gets a timeout at once; the request waits in the network until
    /// [`FaultyCore::release_stragglers`].
    Straggle,
}

/// Stragglers held at once, beyond which a straggling call is dropped instead.
const STRAGGLERS_MAX: usize = 1_024;
/// Faults queued at once; a test that plans more has a bug.
const PLANNED_FAULTS_MAX: usize = 1_024;

/// Wraps a core and misbehaves on request.
pub struct FaultyCore {
    inner: Arc<dyn CoreClient>,
    plan: Mutex<VecDeque<Fault>>,
    reads_fail: AtomicBool,
    stragglers: Mutex<Vec<TransferRequest>>,
    committed: Notify,
}

impl FaultyCore {
    pub fn new(inner: Arc<dyn CoreClient>) -> FaultyCore {
        FaultyCore {
            inner,
            plan: Mutex::new(VecDeque::new()),
            reads_fail: AtomicBool::new(false),
            stragglers: Mutex::new(Vec::new()),
            committed: Notify::new(),
        }
    }

    /// Queues a fault for the next transfer call that has none. Returns false (and
    /// queues nothing) when `PLANNED_FAULTS_MAX` faults are already waiting.
    pub async fn push(&self, fault: Fault) -> bool {
        let mut plan = self.plan.lock().await;
        if plan.len() >= PLANNED_FAULTS_MAX {
            return false;
        }
        plan.push_back(fault);
        true
    }

    /// While set, `outcome`, `entries` and `account` fail as unreachable.
    pub fn fail_reads(&self, fail: bool) {
        self.reads_fail.store(fail, Ordering::SeqCst);
    }

    /// Resolves after a [`Fault::HangAfterCommit`] call has committed in the core.
    pub async fn committed(&self) {
        self.committed.notified().await;
    }

    /// Lets every straggling request reach the core now; returns what it said.
    pub async fn release_stragglers(&self) -> Vec<(TransferId, Result<TransferResult, CoreError>)> {
        let held: Vec<TransferRequest> = std::mem::take(&mut *self.stragglers.lock().await);
        let mut answers = Vec::with_capacity(held.len());
        for request in held {
            answers.push((request.id(), self.inner.transfer(request).await));
        }
        answers
    }

    fn check_reads(&self) -> Result<(), CoreError> {
        if self.reads_fail.load(Ordering::SeqCst) {
            return Err(CoreError::Unreachable("injected read fault".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl CoreClient for FaultyCore {
    async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, CoreError> {
        let fault = self.plan.lock().await.pop_front();
        let lost = CoreError::Timeout { timeout_ms: 0 };
        match fault {
            None => self.inner.transfer(request).await,
            Some(Fault::Delay { delay_ms }) => {
                let inner = self.inner.clone();
                let travelling = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    inner.transfer(request).await
                });
                travelling
                    .await
                    .map_err(|error| CoreError::Unreachable(error.to_string()))?
            }
            Some(Fault::TimeoutBeforeCommit) => Err(lost),
            Some(Fault::TimeoutAfterCommit) => {
                let _ = self.inner.transfer(request).await;
                Err(lost)
            }
            Some(Fault::HangAfterCommit) => {
                let _ = self.inner.transfer(request).await;
                self.committed.notify_one();
                std::future::pending().await
            }
            Some(Fault::Straggle) => {
                let mut held = self.stragglers.lock().await;
                if held.len() < STRAGGLERS_MAX {
                    held.push(request);
                }
                Err(lost)
            }
        }
    }

    async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, CoreError> {
        self.check_reads()?;
        self.inner.outcome(id).await
    }

    async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, CoreError> {
        self.check_reads()?;
        self.inner.entries(account, from_seq, limit).await
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, CoreError> {
        self.check_reads()?;
        self.inner.account(id).await
    }

    async fn late_window_ms(&self) -> Result<i64, CoreError> {
        self.inner.late_window_ms().await
    }
}
