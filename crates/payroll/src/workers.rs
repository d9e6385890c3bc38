//! The long-running side of payroll in one value: the poller on a schedule, one
//! embedded dispatcher per stage consumer and one for alerts. `settle serve`,
//! `settle payroll work` and the demo run it; tests and the demo step it
//! ([`Workers::step`], [`Workers::run_until_idle`]).
//!
//! It owns no state of its own: everything it does is recorded by the poller and
//! the stages, so a process running it may die at any point and a new one picks
//! up where the database says. It never runs two poll rounds at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use events::{Dispatcher, DispatcherConfig, Shutdown, Step, Wake};

use crate::alerts::AlertConsumer;
use crate::poller::{Poller, RoundReport};
use crate::stages::StageConsumer;
use crate::{Payroll, PayrollError};

/// Longest pause of [`Workers::run_until_idle`] while only retries are pending.
const IDLE_PAUSE_MS: u64 = 5;

/// How the workers run.
#[derive(Clone, Debug)]
pub struct WorkersConfig {
    /// Each stage's (and the alerts') dispatcher.
    pub dispatcher: DispatcherConfig,
    /// Time from the start of one poll round to the next; `None`: [`Workers::run`]
    /// does not poll (another process does).
    pub poll_every_ms: Option<u64>,
    /// How often [`Workers::run`] looks for dead-lettered stage events to alert on.
    pub dead_letter_scan_ms: u64,
    /// After shutdown, how long the dispatchers may take to finish the work in
    /// hand before they are cut off (claims they hold then expire; nothing is
    /// recorded half).
    pub shutdown_grace_ms: u64,
}

impl WorkersConfig {
    /// The defaults for a backend. SQLite has one writer per file, and its
    /// waiting writers sleep between tries: one batch transaction in flight per
    /// stage is faster there than several waiting for the lock.
    pub fn for_backend(backend: store::Backend) -> WorkersConfig {
        let mut config = WorkersConfig::default();
        if backend == store::Backend::Sqlite {
            config.dispatcher.concurrency_max = 1;
        }
        config
    }
}

impl Default for WorkersConfig {
    fn default() -> WorkersConfig {
        WorkersConfig {
            dispatcher: DispatcherConfig {
                // Stage events arrive from other stages, not from a producer that
                // pokes: a short poll keeps a deposit moving through five stages.
                poll_interval_ms: 20,
                // A batch's bank calls run concurrently (outside its
                // transaction), so its size bounds the calls in flight; a stage
                // also passes over the other stages' events of each user.
                batch_events_max: 1_024,
                key_events_per_batch_max: 8,
                ..DispatcherConfig::default()
            },
            poll_every_ms: Some(60_000),
            dead_letter_scan_ms: 2_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// The poller, the stage consumers and the alert consumer.
pub struct Workers {
    payroll: Payroll,
    poller: Poller,
    stages: Vec<Dispatcher<StageConsumer>>,
    alerts: Dispatcher<AlertConsumer>,
    poll_every_ms: Option<u64>,
    dead_letter_scan_ms: u64,
    shutdown_grace_ms: u64,
}

impl Workers {
    /// Prepares the dispatchers; each resumes from its consumer's saved cursor.
    pub async fn new(payroll: Payroll, config: WorkersConfig) -> Result<Workers, PayrollError> {
        let clock = payroll.inner.clock.clone();
        let store = payroll.store().clone();
        let mut stages = Vec::new();
        for consumer in payroll.stage_consumers() {
            stages.push(
                Dispatcher::new(
                    store.clone(),
                    Arc::new(consumer),
                    config.dispatcher.clone(),
                    clock.clone(),
                    Wake::new(),
                )
                .await?,
            );
        }
        let alerts = Dispatcher::new(
            store,
            Arc::new(payroll.alert_consumer()),
            config.dispatcher,
            clock,
            Wake::new(),
        )
        .await?;
        Ok(Workers {
            poller: Poller::new(payroll.clone())?,
            payroll,
            stages,
            alerts,
            poll_every_ms: config.poll_every_ms,
            dead_letter_scan_ms: config.dead_letter_scan_ms,
            shutdown_grace_ms: config.shutdown_grace_ms,
        })
    }

    pub fn payroll(&self) -> &Payroll {
        &self.payroll
    }

    /// The poller (its throttle is shared with the scheduled rounds).
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// One poll round (continuing an unfinished one).
    pub async fn poll_round(&self) -> Result<RoundReport, PayrollError> {
        self.poller.run_round().await
    }

    /// One step of every dispatcher, all at once; `Done` if any did something.
    pub async fn step(&mut self) -> Result<Step, PayrollError> {
        let (stages, alerts) = tokio::join!(
            futures_util::future::join_all(self.stages.iter_mut().map(|d| d.run_once())),
            self.alerts.run_once()
        );
        let mut worked = alerts? == Step::Done;
        for step in stages {
            worked |= step? == Step::Done;
        }
        Ok(if worked { Step::Done } else { Step::Idle })
    }

    /// Steps until every event is delivered or dead-lettered: every deposit then
    /// is completed, rolled back or waiting for an operator, and every alert is
    /// posted. Pending retries are waited for (they back off).
    pub async fn run_until_idle(&mut self) -> Result<(), PayrollError> {
        loop {
            if self.step().await? == Step::Done {
                continue;
            }
            if self.caught_up().await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(IDLE_PAUSE_MS)).await;
        }
    }

    async fn caught_up(&self) -> Result<bool, PayrollError> {
        for dispatcher in &self.stages {
            if !dispatcher.caught_up().await? {
                return Ok(false);
            }
        }
        Ok(self.alerts.caught_up().await?)
    }

    /// Runs every dispatcher, a poll round every `poll_every_ms` and a dead-letter
    /// scan every `dead_letter_scan_ms`, until `shutdown` resolves; then gives the
    /// dispatchers `shutdown_grace_ms` to finish and cuts them off. A poll round
    /// in progress stops at once (its progress is saved per page). Step errors
    /// are logged and retried by the dispatchers; a failed poll round is logged
    /// and continued at the next tick.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), PayrollError> {
        let stop = Shutdown::default();
        let mut tasks = tokio::task::JoinSet::new();
        for dispatcher in self.stages {
            tasks.spawn(dispatcher.run(stop.clone().wait()));
        }
        tasks.spawn(self.alerts.run(stop.clone().wait()));
        let stopping = Shutdown::default();
        let poller = self.poller;
        let polling = {
            let stopping = stopping.clone();
            async move {
                match self.poll_every_ms {
                    Some(every_ms) => poller.run(every_ms, stopping.wait()).await,
                    None => stopping.wait().await,
                }
            }
        };
        let scanning = self
            .payroll
            .watch_dead_letters(self.dead_letter_scan_ms, stopping.clone().wait());
        let watching = async {
            shutdown.await;
            stopping.cancel();
        };
        tokio::join!(watching, polling, scanning);
        stop.cancel();
        let grace = Duration::from_millis(self.shutdown_grace_ms);
        let mut first_error = None;
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        first_error.get_or_insert(PayrollError::from(error));
                    }
                    Err(error) => tracing::error!(%error, "payroll dispatcher task failed"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = self.shutdown_grace_ms,
                left = tasks.len(),
                "payroll dispatchers did not stop within the grace; cut off (their claims expire)"
            );
            tasks.abort_all();
        }
        first_error.map_or(Ok(()), Err)
    }
}
