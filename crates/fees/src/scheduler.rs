//! The scheduler: every few minutes it calls all four modules for every open day
//! — days with accruals not yet recorded (so missed days are caught up) and
//! recorded days not yet withdrawn. Order does not matter: each module checks its
//! own precondition and is a no-op when its work is done or not ready.
//!
//! It uses a plain `tokio` interval, no cron crate. It never holds a lock across
//! ticks and never waits for one.

use std::future::Future;
use std::time::Duration;

use crate::{BusinessDay, Fees, FeesError, Module, RunReport, Trigger};

/// Days one tick works on; older days wait for the next tick.
pub const TICK_DAYS_MAX: usize = 62;

/// Calls the modules for every open day, once per tick.
#[derive(Clone)]
pub struct Scheduler {
    fees: Fees,
    interval: Duration,
    /// Modules this scheduler never calls (Withdraw, when a second operator must
    /// approve each one).
    skipped: Vec<Module>,
}

impl Scheduler {
    pub fn new(fees: Fees, interval: Duration) -> Scheduler {
        Scheduler {
            fees,
            interval,
            skipped: Vec::new(),
        }
    }

    /// A scheduler that leaves `module` to operators.
    pub fn without(mut self, module: Module) -> Scheduler {
        self.skipped.push(module);
        self
    }

    /// Days that still have work: unrecorded days with accruals, then recorded days
    /// not yet withdrawn, oldest first.
    pub async fn open_days(&self) -> Result<Vec<BusinessDay>, FeesError> {
        let mut days = self.fees.unrecorded_days().await?;
        days.extend(self.fees.days(false).await?);
        days.sort_unstable();
        days.dedup();
        days.truncate(TICK_DAYS_MAX);
        Ok(days)
    }

    /// One tick: Record, Pay, Verify, Withdraw for every open day. A module that
    /// fails is logged and the tick goes on with the next.
    pub async fn run_once(&self) -> Result<Vec<RunReport>, FeesError> {
        let mut reports = Vec::new();
        for day in self.open_days().await? {
            for module in Module::ALL {
                if self.skipped.contains(&module) {
                    continue;
                }
                if self.fees.is_stopping() {
                    return Ok(reports);
                }
                let result = match module {
                    Module::Record => self.fees.record(day, Trigger::Scheduler).await,
                    Module::Pay => self.fees.pay(day, Trigger::Scheduler).await,
                    Module::Verify => self.fees.verify(day, Trigger::Scheduler).await,
                    Module::Withdraw => self.fees.withdraw(day, Trigger::Scheduler).await,
                };
                match result {
                    Ok(report) => reports.push(report),
                    Err(error) => {
                        tracing::error!(module = module.name(), %day, %error, "scheduled fee module failed");
                    }
                }
            }
        }
        Ok(reports)
    }

    /// Ticks every `interval` until `shutdown` completes. A shutdown during a
    /// tick stops it after the window of bank calls in flight (their answers are
    /// recorded; the rest resumes at the next start), so stopping takes one
    /// window, not a whole day's payout.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
            }
            let tick = self.run_once();
            tokio::pin!(tick);
            let finished = tokio::select! {
                result = &mut tick => Some(result),
                () = &mut shutdown => None,
            };
            let result = match finished {
                Some(result) => result,
                None => {
                    self.fees.stop_after_window();
                    let result = tick.await;
                    if let Err(error) = result {
                        tracing::error!(%error, "fee scheduler tick failed while stopping");
                    }
                    break;
                }
            };
            if let Err(error) = result {
                tracing::error!(%error, "fee scheduler tick failed");
            }
        }
    }
}
