//! The balance poller. A round polls every enrolled user's virtual account through
//! the user's current provider, at most `poll_requests_per_s_max` requests started
//! per second and `poll_concurrent_max` in flight. A balance other than the last one
//! seen reads the account's deposits after its cursor; each new deposit becomes a
//! deposit row and a `payroll.deposit_detected` event in one transaction with the
//! new cursor.
//!
//! A round is resumable: progress (the last user of each finished page) is saved,
//! and a round cut short continues where it stopped. A deposit is never detected
//! twice: its bank id is the primary key and `(account, cursor)` is unique. The
//! poller never moves money.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
                    let outcome = poller.poll_user(&user, &report).await;
                    if let Err(error) = &outcome {
                        report.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(user = user.user_id, code = error.code(), %error, "poll failed; next round tries again");
                    }
                    report.polled.fetch_add(1, Ordering::Relaxed);
                });
            }
            while let Some(joined) = tasks.join_next().await {
                if let Err(error) = joined {
                    tracing::error!(%error, "poll task failed");
                }
                observe(report.polled.load(Ordering::Relaxed));
            }
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

    async fn poll_user(&self, user: &UserRow, counters: &Counters) -> Result<(), PayrollError> {
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
            return Ok(());
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
            found.extend(page.deposits);
        }
        let mut tx = self.payroll.store().begin().await?;
        let now_ms = self.payroll.now().unix_ms();
        let mut detected = 0;
        for deposit in &found {
            if deposit.account_number != account || !deposit.amount_krw.is_positive() {
                continue;
            }
            let inserted = db::insert_deposit(
                &mut tx,
                &NewDeposit {
                    deposit_id: deposit.deposit_id.as_str(),
                    user_id: &user.user_id,
                    account: account.as_str(),
                    bank_cursor: deposit.cursor,
                    amount_krw: deposit.amount_krw.get(),
                    detected_by: provider.name().as_str(),
                },
                now_ms,
            )
            .await?;
            if inserted {
                self.payroll
                    .emit(
                        &mut tx,
                        &user.user_id,
                        KIND_DETECTED,
                        deposit.deposit_id.as_str(),
                    )
                    .await?;
                detected += 1;
            }
        }
        // Only a complete read moves the balance mark; otherwise the next round reads on.
        let balance_mark = if seen_all {
            balance.get()
        } else {
            user.last_balance_krw
        };
        db::set_polled(&mut tx, &user.user_id, balance_mark, cursor).await?;
        tx.commit().await?;
        counters.detected.fetch_add(detected, Ordering::Relaxed);
        metrics::counter!("payroll_deposits_detected_total").increment(detected);
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    polled: AtomicU64,
    requests: AtomicU64,
    detected: AtomicU64,
    failed: AtomicU64,
}
