//! The batching writer (group commit). One task owns all writes of a ledger: it
//! takes every submission waiting in its queue, up to `batch_transfers_max`
//! transfers, applies them in arrival order in memory and commits them in one
//! transaction with their entries and outbox rows, then answers each caller.
//!
//! Results are exactly those of applying the submissions one by one: the engine
//! sees them in order and each sees the balances the previous ones left.

use std::sync::Arc;
use std::time::Instant;

use money::{Clock, Timestamp};
use store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::db::{self, BatchIds};
use crate::engine::{Engine, Loaded};
use crate::transfer::{TransferKind, TransferRequest, TransferResult};
use crate::{LedgerConfig, LedgerError};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// Work for the writer.
pub(crate) enum Job {
    Transfers {
        requests: Vec<TransferRequest>,
        reply: Reply<Vec<TransferResult>>,
    },
    /// Expire up to `limit` holds whose deadline has passed.
    Expire { limit: i64, reply: Reply<usize> },
}

impl Job {
    fn transfer_count(&self) -> usize {
        match self {
            Job::Transfers { requests, .. } => requests.len(),
            Job::Expire { .. } => 0,
        }
    }
}

pub(crate) fn spawn(
    store: Store,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(config.queue_submissions_max);
    tokio::spawn(run(store, clock, config, receiver));
    sender
}

async fn run(
    store: Store,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut waiting: Option<Job> = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        if matches!(first, Job::Expire { .. }) {
            expire(&store, clock.now(), first, config.late_window_ms).await;
            continue;
        }
        let mut count = first.transfer_count();
        let mut batch = vec![first];
        while count < config.batch_transfers_max {
            match queue.try_recv() {
                Ok(job @ Job::Expire { .. }) => {
                    waiting = Some(job);
                    break;
                }
                Ok(job) if count + job.transfer_count() > config.batch_transfers_max => {
                    waiting = Some(job);
                    break;
                }
                Ok(job) => {
                    count += job.transfer_count();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        commit_batch(&store, clock.as_ref(), &config, batch).await;
    }
}

/// Commits a batch and answers its callers. If the batch fails as a whole, each
/// submission is retried alone, so one poisoned submission cannot fail its
/// neighbours.
async fn commit_batch(store: &Store, clock: &dyn Clock, config: &LedgerConfig, batch: Vec<Job>) {
    let started = Instant::now();
    let submissions: Vec<(Vec<TransferRequest>, Reply<Vec<TransferResult>>)> = batch
        .into_iter()
        .filter_map(|job| match job {
            Job::Transfers { requests, reply } => Some((requests, reply)),
            Job::Expire { .. } => None,
        })
        .collect();
    let requests: Vec<&[TransferRequest]> = submissions.iter().map(|(r, _)| r.as_slice()).collect();
    let outcome = apply(store, clock.now(), config.late_window_ms, &requests).await;
    metrics::histogram!("ledger_batch_transfers")
        .record(requests.iter().map(|r| r.len()).sum::<usize>() as f64);
    metrics::histogram!("ledger_batch_seconds").record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(results) => {
            for ((_, reply), results) in submissions.into_iter().zip(results) {
                for result in &results {
                    metrics::counter!("ledger_transfers_total", "result" => result.code())
                        .increment(1);
                }
                let _ = reply.send(Ok(results));
            }
        }
        Err(error) if submissions.len() == 1 => {
            tracing::warn!(error = %error, "ledger batch failed");
            if let Some((_, reply)) = submissions.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, submissions = submissions.len(), "ledger batch failed; retrying each submission alone");
            for (requests, reply) in submissions {
                let alone = apply(
                    store,
                    clock.now(),
                    config.late_window_ms,
                    &[requests.as_slice()],
                )
                .await;
                let _ = reply.send(alone.map(|mut r| r.pop().unwrap_or_default()));
            }
        }
    }
}

/// Applies submissions in order in one transaction. Also the naive baseline's path,
/// called with one submission per transaction.
pub(crate) async fn apply(
    store: &Store,
    now: Timestamp,
    late_window_ms: i64,
    submissions: &[&[TransferRequest]],
) -> Result<Vec<Vec<TransferResult>>, LedgerError> {
    let mut ids = BatchIds::default();
    for request in submissions.iter().flat_map(|s| s.iter()) {
        ids.transfers.push(request.id());
        match *request.kind() {
            TransferKind::Single {
                debit_account_id,
                credit_account_id,
                ..
            }
            | TransferKind::Pending {
                debit_account_id,
                credit_account_id,
                ..
            } => {
                ids.accounts.insert(debit_account_id);
                ids.accounts.insert(credit_account_id);
            }
            TransferKind::Post { pending_id, .. } | TransferKind::Void { pending_id } => {
                ids.transfers.push(pending_id);
            }
        }
    }
    ids.transfers.sort_unstable();
    ids.transfers.dedup();
    let mut tx = store.begin().await?;
    let loaded = db::load(&mut tx, &ids).await?;
    let mut engine = Engine::new(loaded, now, late_window_ms);
    let results: Vec<Vec<TransferResult>> = submissions
        .iter()
        .map(|submission| engine.apply_submission(submission))
        .collect();
    let effects = engine.finish();
    if effects.is_empty() {
        tx.rollback().await?;
    } else {
        db::write(&mut tx, &effects, now).await?;
        tx.commit().await?;
    }
    Ok(results)
}

async fn expire(store: &Store, now: Timestamp, job: Job, late_window_ms: i64) {
    let Job::Expire { limit, reply } = job else {
        return;
    };
    let _ = reply.send(expire_holds(store, now, limit, late_window_ms).await);
}

async fn expire_holds(
    store: &Store,
    now: Timestamp,
    limit: i64,
    late_window_ms: i64,
) -> Result<usize, LedgerError> {
    let mut tx = store.begin().await?;
    let holds = db::expiring_holds(&mut tx, now, limit).await?;
    if holds.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let ids = BatchIds {
        transfers: holds.clone(),
        ..BatchIds::default()
    };
    let loaded: Loaded = db::load(&mut tx, &ids).await?;
    let mut engine = Engine::new(loaded, now, late_window_ms);
    let expired = holds.iter().filter(|id| engine.expire(**id)).count();
    let effects = engine.finish();
    db::write(&mut tx, &effects, now).await?;
    tx.commit().await?;
    metrics::counter!("ledger_holds_expired_total").increment(expired as u64);
    Ok(expired)
}
