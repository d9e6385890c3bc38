//! The balance poller. A round polls every enrolled user's virtual account through
//! the user's current provider, at most `poll_requests_per_s_max` requests started
//! per second and `poll_concurrent_max` in flight. A balance other than the last one
//! seen reads the account's deposits after its cursor; each new deposit becomes a
//! deposit row and a `payroll.deposit_detected` event in one transaction with the
//! new cursor (one transaction per page of users).
//!
//! A round is resumable: progress (the last user of each finished page) is saved,
//! and a round cut short continues where it stopped. A deposit is never detected
//! twice: its bank id is the primary key and `(account, cursor)` is unique. The
//! poller never moves money.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bank::providers::ProviderName;
use bank::types::VirtualDeposit;
use bank::{AccountNumber, UserId};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use money::Krw;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::db::{self, NewDeposit, UserRow};
use crate::state::KIND_DETECTED;
use crate::{Payroll, PayrollError};

/// What one round did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoundReport {
    pub round: i64,
    pub users_polled: u64,
    pub bank_requests: u64,
    pub deposits_detected: u64,
    /// Users whose poll failed this round (logged); the next round tries again.
    pub users_failed: u64,
}

/// Polls balances. Cheap to clone; clones share the throttle.
#[derive(Clone)]
pub struct Poller {
    payroll: Payroll,
    /// Starts at most `poll_requests_per_s_max` bank requests per second, evenly
    /// spaced (burst 1), so the bank's own limiter never sees more.
    rate: Arc<DefaultDirectRateLimiter>,
    /// Caps bank requests in flight.
    permits: Arc<Semaphore>,
}

impl Poller {
    pub fn new(payroll: Payroll) -> Result<Poller, PayrollError> {
        let config = payroll.config();
        let per_s = NonZeroU32::new(config.poll_requests_per_s_max).ok_or_else(|| {
            PayrollError::InvalidConfig("poll_requests_per_s_max must be positive".into())
        })?;
        let quota = Quota::per_second(per_s).allow_burst(NonZeroU32::MIN);
        Ok(Poller {
            rate: Arc::new(RateLimiter::direct(quota)),
            permits: Arc::new(Semaphore::new(config.poll_concurrent_max)),
            payroll,
        })
    }

    /// A round every `every_ms` (from the start of one to the next) until
    /// `shutdown` resolves; a round in progress is cut off at once (its progress
    /// is saved per page, so the next start resumes it) and a failed round is
    /// logged and continued at the next tick.
    pub async fn run(&self, every_ms: u64, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticks = tokio::time::interval(std::time::Duration::from_millis(every_ms.max(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = &mut shutdown => return,
                round = self.run_round() => match round {
                    Ok(report) => tracing::info!(?report, "payroll poll round"),
                    Err(error) => {
                        tracing::warn!(code = error.code(), %error, "poll round failed; next tick continues it");
                    }
                },
            }
        }
    }

    /// Polls every user once (continuing an unfinished round).
    pub async fn run_round(&self) -> Result<RoundReport, PayrollError> {
        self.run_round_observed(&|_| {}).await
    }

    /// Same, calling `observe(users polled so far)` after each user.
    #[tracing::instrument(skip_all)]
    pub async fn run_round_observed(
        &self,
        observe: &(dyn Fn(u64) + Sync),
    ) -> Result<RoundReport, PayrollError> {
        let store = self.payroll.store();
        let (round, after, finished) = db::poll_state(store).await?;
        let (round, mut after) = if finished {
            (round.saturating_add(1), None)
        } else {
            (round, after)
        };
        db::set_poll_state(store, round, after.as_deref(), false).await?;
        let report = Arc::new(Counters::default());
        let page_max = self.payroll.config().poll_users_page_max;
        loop {
            let users = db::users_page(store, after.as_deref(), page_max).await?;
            let Some(last) = users.last().map(|u| u.user_id.clone()) else {
                break;
            };
            let mut tasks = JoinSet::new();
            for user in users {
                let poller = self.clone();
                let report = Arc::clone(&report);
                tasks.spawn(async move {
                    let outcome = poller.poll_user(user, &report).await;
                    report.polled.fetch_add(1, Ordering::Relaxed);
                    match outcome {
                        Ok(polled) => polled,
                        Err((user_id, error)) => {
                            report.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(user = user_id, code = error.code(), %error, "poll failed; next round tries again");
                            None
                        }
                    }
                });
            }
            let mut changed = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Some(polled)) => changed.push(polled),
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "poll task failed"),
                }
                observe(report.polled.load(Ordering::Relaxed));
            }
            // In user order, the order stage transactions lock users in.
            changed.sort_by(|a, b| a.user.user_id.cmp(&b.user.user_id));
            let detected = self.record(&changed).await?;
            report.detected.fetch_add(detected, Ordering::Relaxed);
            metrics::counter!("payroll_deposits_detected_total").increment(detected);
            db::set_poll_state(store, round, Some(&last), false).await?;
            after = Some(last);
        }
        db::set_poll_state(store, round, None, true).await?;
        let report = RoundReport {
            round,
            users_polled: report.polled.load(Ordering::Relaxed),
            bank_requests: report.requests.load(Ordering::Relaxed),
            deposits_detected: report.detected.load(Ordering::Relaxed),
            users_failed: report.failed.load(Ordering::Relaxed),
        };
        tracing::info!(?report, "poll round finished");
        Ok(report)
    }

    async fn throttle(
        &self,
        counters: &Counters,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, PayrollError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PayrollError::InvalidConfig("poller closed".into()))?;
        self.rate.until_ready().await;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("payroll_poll_requests_total").increment(1);
        Ok(permit)
    }

    /// Reads one account; `None` when its balance did not change. The error
    /// names the user.
    async fn poll_user(
        &self,
        user: UserRow,
        counters: &Counters,
    ) -> Result<Option<Polled>, (String, PayrollError)> {
        match self.read_account(&user, counters).await {
            Ok(Some((provider, balance_mark, cursor, found))) => Ok(Some(Polled {
                user,
                provider,
                balance_mark,
                cursor,
                found,
            })),
            Ok(None) => Ok(None),
            Err(error) => Err((user.user_id, error)),
        }
    }

    #[allow(clippy::type_complexity)]
    async fn read_account(
        &self,
        user: &UserRow,
        counters: &Counters,
    ) -> Result<Option<(ProviderName, i64, i64, Vec<VirtualDeposit>)>, PayrollError> {
        let user_id = UserId::parse(&user.user_id)?;
        let account = AccountNumber::new(&user.virtual_account)?;
        let provider = self.payroll.facade().provider_for(user_id).await?;
        let balance = {
            let _permit = self.throttle(counters).await?;
            provider.balance(&account).await?
        };
        // Any change reads the deposits: a sweep out of the account between two
        // polls can hide a salary behind a balance that did not grow.
        if balance == Krw::new(user.last_balance_krw) {
            return Ok(None);
        }
        let mut cursor = user.deposit_cursor;
        let mut seen_all = false;
        let mut found = Vec::new();
        for _ in 0..self.payroll.config().poll_deposit_pages_max {
            let page = {
                let _permit = self.throttle(counters).await?;
                provider.deposits(&account, cursor).await?
            };
            if page.deposits.is_empty() {
                seen_all = true;
                break;
            }
            cursor = page.next_cursor.max(cursor);
            found.extend(
                page.deposits
                    .into_iter()
                    .filter(|d| d.account_number == account && d.amount_krw.is_positive()),
            );
        }
        // Only a complete read moves the balance mark; otherwise the next round reads on.
        let balance_mark = if seen_all {
            balance.get()
        } else {
            user.last_balance_krw
        };
        Ok(Some((provider.name(), balance_mark, cursor, found)))
    }

    /// Writes a page's new deposits, their events and the accounts' new marks in
    /// one transaction; returns the deposits detected.
    async fn record(&self, changed: &[Polled]) -> Result<u64, PayrollError> {
        if changed.is_empty() {
            return Ok(0);
        }
        let mut tx = self.payroll.store().begin().await?;
        let now_ms = self.payroll.now().unix_ms();
        let mut detected = 0;
        for polled in changed {
            let user_id = &polled.user.user_id;
            for deposit in &polled.found {
                let inserted = db::insert_deposit(
                    &mut tx,
                    &NewDeposit {
                        deposit_id: deposit.deposit_id.as_str(),
                        user_id,
                        account: &polled.user.virtual_account,
                        bank_cursor: deposit.cursor,
                        amount_krw: deposit.amount_krw.get(),
                        detected_by: polled.provider.as_str(),
                    },
                    now_ms,
                )
                .await?;
                if inserted {
                    self.payroll
                        .emit(&mut tx, user_id, KIND_DETECTED, deposit.deposit_id.as_str())
                        .await?;
                    detected += 1;
                }
            }
            db::set_polled(&mut tx, user_id, polled.balance_mark, polled.cursor).await?;
        }
        tx.commit().await?;
        Ok(detected)
    }
}

/// What polling one account found, to record.
struct Polled {
    user: UserRow,
    provider: ProviderName,
    balance_mark: i64,
    cursor: i64,
    found: Vec<VirtualDeposit>,
}

#[derive(Default)]
struct Counters {
    polled: AtomicU64,
    requests: AtomicU64,
    detected: AtomicU64,
    failed: AtomicU64,
}
