//! The stage consumers. Each stage is one consumer on the event backbone, keyed by
//! user. First, outside any transaction, the stage's slow work ([`crate::prepared`]:
//! provider and bank calls, ledger transfers); then, in the transaction the
//! backbone hands it, it loads the deposit its event names, checks the deposit is
//! ready for this stage, records the result and appends the next stage's event, so
//! the state change and the completion record commit together. No bank call ever
//! happens while that transaction (SQLite's write lock, PostgreSQL's row locks)
//! is open.
//!
//! Side effects outside the transaction carry ids derived from (deposit, purpose),
//! so a stage that runs again after a crash repeats nothing. A stage never acts on
//! a deposit that is not in its ready state.

use std::sync::Mutex;

use bank::DepositId;
use bank::routing::SettlementStart;
use events::{Consumer, Event, HandleError};
use money::Krw;
use store::Tx;

use crate::books::{self, Movement};
use crate::config::{FailureKind, OnFailure};
use crate::db::{self, AlertRow, DepositRow};
use crate::payout;
use crate::prepared::{self, Prepared, PreparedCache};
use crate::state::{DepositState, KIND_ALERT, Stage, Step};
use crate::{Payroll, PayrollError};

/// One stage as a backbone consumer.
pub struct StageConsumer {
    stage: Stage,
    payroll: Payroll,
    name: String,
    kinds: [&'static str; 1],
    /// What `prepare` did, for the transaction that records it.
    prepared: Mutex<PreparedCache>,
}

impl StageConsumer {
    pub fn new(stage: Stage, payroll: Payroll) -> StageConsumer {
        StageConsumer {
            stage,
            payroll,
            name: format!("payroll.{}", stage.as_str()),
            kinds: [stage.trigger_kind()],
            prepared: Mutex::default(),
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }
}

impl Consumer for StageConsumer {
    const PREPARES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> &[&str] {
        &self.kinds
    }

    async fn prepare(&self, event: &Event) -> Result<(), HandleError> {
        let done = self
            .payroll
            .prepare_stage(self.stage, event)
            .await
            .map_err(|error| {
                tracing::warn!(stage = self.stage.as_str(), key = %event.key, seq = event.seq, code = error.code(), %error, "stage work failed; the backbone retries it");
                Box::new(error) as HandleError
            })?;
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .put(prepared::event_key(event), done);
        Ok(())
    }

    async fn handle(&self, event: &Event, tx: &mut Tx) -> Result<(), HandleError> {
        let done = self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&prepared::event_key(event));
        self.payroll
            .run_stage(self.stage, event, tx, done)
            .await
            .map_err(|error| {
                tracing::warn!(stage = self.stage.as_str(), key = %event.key, seq = event.seq, code = error.code(), %error, "stage failed; the backbone retries it");
                Box::new(error) as HandleError
            })
    }
}

/// What a stage's work came to.
enum Worked {
    Done,
    Failed { kind: FailureKind, message: String },
}

/// Orders states by how far a deposit got, for compensation.
pub(crate) fn progress(state: DepositState) -> u8 {
    match state {
        DepositState::Detected => 0,
        DepositState::Computed => 1,
        DepositState::Repaid => 2,
        DepositState::Suspended => 3,
        DepositState::PaidOut => 4,
        DepositState::Completed => 5,
        DepositState::Waiting | DepositState::RolledBack => 0,
    }
}

impl Payroll {
    #[tracing::instrument(skip_all, fields(stage = stage.as_str(), key = %event.key, seq = event.seq))]
    pub(crate) async fn run_stage(
        &self,
        stage: Stage,
        event: &Event,
        tx: &mut Tx,
        done: Option<Prepared>,
    ) -> Result<(), PayrollError> {
        let event_id = event.id.as_uuid().hyphenated().to_string();
        let deposit_id = db::deposit_of_event(db::Reader::Tx(tx), &event_id)
            .await?
            .ok_or_else(|| PayrollError::Corrupt(format!("event {event_id} names no deposit")))?;
        let deposit = db::deposit_tx(tx, &deposit_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownDeposit(deposit_id.clone()))?;
        if deposit.state != stage.ready_state() {
            tracing::debug!(
                deposit_id,
                state = deposit.state.as_str(),
                "not ready for this stage; passing"
            );
            return Ok(());
        }
        let now_ms = self.now().unix_ms();
        if let Some(blocker) = self.blocker(tx, &deposit, stage).await? {
            // Strict per-user order: an earlier salary of this user is parked at this
            // stage (or before it), so this one waits behind it, without an alert,
            // until that one finishes the stage or is rolled back.
            let reason = behind(&blocker);
            let next = deposit.state.after(Step::Failed(stage), None).ok_or(
                PayrollError::IllegalTransition {
                    deposit: deposit_id.clone(),
                    from: deposit.state.as_str(),
                    step: "wait behind",
                },
            )?;
            if !db::move_state(
                tx,
                &deposit_id,
                deposit.state,
                next,
                Some((stage, &reason)),
                now_ms,
            )
            .await?
            {
                return Err(PayrollError::Corrupt(format!(
                    "deposit {deposit_id} moved while queuing"
                )));
            }
            tracing::info!(
                deposit_id,
                blocker,
                stage = stage.as_str(),
                "waits behind an earlier salary"
            );
            return Ok(());
        }
        db::log_stage(tx, &deposit_id, &deposit.user_id, stage, now_ms).await?;
        let worked = match stage {
            Stage::Compute => self.compute(tx, &deposit, done).await?,
            Stage::Repay => self.repay(tx, &deposit, done).await?,
            Stage::Suspend => self.suspend(&deposit, done).await?,
            Stage::Payout => self.pay_out(tx, &deposit, done).await?,
            Stage::Complete => Worked::Done,
        };
        match worked {
            Worked::Done => {
                let next = deposit.state.after(Step::Finished(stage), None).ok_or(
                    PayrollError::IllegalTransition {
                        deposit: deposit_id.clone(),
                        from: deposit.state.as_str(),
                        step: "finish",
                    },
                )?;
                if !db::move_state(tx, &deposit_id, deposit.state, next, None, now_ms).await? {
                    return Err(PayrollError::Corrupt(format!(
                        "deposit {deposit_id} moved under {}",
                        stage.as_str()
                    )));
                }
                if let Some(following) = following(stage) {
                    self.emit(tx, &deposit.user_id, following.trigger_kind(), &deposit_id)
                        .await?;
                }
                self.release_behind(tx, &deposit).await?;
                metrics::counter!("payroll_stages_total", "stage" => stage.as_str(), "outcome" => "done").increment(1);
                if next == DepositState::Completed {
                    metrics::counter!("payroll_deposits_completed_total").increment(1);
                }
            }
            Worked::Failed { kind, message } => {
                metrics::counter!("payroll_stages_total", "stage" => stage.as_str(), "outcome" => kind.as_str()).increment(1);
                self.fail(tx, &deposit, stage, kind, &message).await?;
            }
        }
        Ok(())
    }

    /// Claims the deposit for the provider `prepare` asked and records the split.
    async fn compute(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        done: Option<Prepared>,
    ) -> Result<Worked, PayrollError> {
        let Some(Prepared::Compute {
            provider: provider_name,
            repayment,
            suspended,
        }) = done
        else {
            return Err(not_prepared(deposit, Stage::Compute));
        };
        if deposit
            .provider
            .as_deref()
            .is_some_and(|name| name != provider_name.as_str())
        {
            return Err(not_prepared(deposit, Stage::Compute));
        }
        let bank_deposit = DepositId::new(&deposit.deposit_id)?;
        match self
            .inner
            .facade
            .routing()
            .start_settlement_in(tx, &bank_deposit, provider_name)
            .await?
        {
            SettlementStart::Started => {}
            SettlementStart::AlreadyStarted { provider }
                if deposit.provider.as_deref() == Some(provider.as_str()) => {}
            SettlementStart::AlreadyStarted { provider } => {
                return Ok(Worked::Failed {
                    kind: FailureKind::AlreadySettled,
                    message: format!("the deposit was already started by the {provider} provider"),
                });
            }
        }
        db::set_split(tx, &deposit.deposit_id, provider_name.as_str(), 0, 0, 0).await?;
        let user = db::user_tx(tx, &deposit.user_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownUser(deposit.user_id.clone()))?;
        // `prepare` moved the deposit into the wallet exactly when this fits.
        let (repay, suspend, pay) =
            match self.split_for(deposit, repayment, suspended, user.suspend_percent)? {
                Ok(split) => split,
                Err((kind, message)) => return Ok(Worked::Failed { kind, message }),
            };
        db::set_split(
            tx,
            &deposit.deposit_id,
            provider_name.as_str(),
            repay.get(),
            suspend.get(),
            pay.get(),
        )
        .await?;
        Ok(Worked::Done)
    }

    /// The deposit's split into (repay, suspend, pay out), or the business failure
    /// it is when the provider's amounts do not fit or the payout needs too many
    /// chunks.
    #[allow(clippy::type_complexity)]
    pub(crate) fn split_for(
        &self,
        deposit: &DepositRow,
        repayment: Krw,
        suspended: Krw,
        suspend_percent: i64,
    ) -> Result<Result<(Krw, Krw, Krw), (FailureKind, String)>, PayrollError> {
        let amount = Krw::new(deposit.amount_krw);
        let Some((repay, suspend, pay)) = split(amount, repayment, suspended, suspend_percent)?
        else {
            return Ok(Err((
                FailureKind::BadAmounts,
                format!(
                    "the provider's split (repay {repayment}, suspend {suspended}) does not fit a deposit of {amount}"
                ),
            )));
        };
        let chunks = payout::chunk_count(pay, self.inner.config.payout_chunk_max_krw);
        if chunks > u64::from(self.inner.config.payout_chunks_max) {
            return Ok(Err((
                FailureKind::BadAmounts,
                format!("a payout of {pay} needs {chunks} chunks, over payout_chunks_max"),
            )));
        }
        Ok(Ok((repay, suspend, pay)))
    }

    async fn repay(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        done: Option<Prepared>,
    ) -> Result<Worked, PayrollError> {
        if done != Some(Prepared::Booked) {
            // The hand-off was lost: a ledger call (never a bank call) is safe here.
            self.book(deposit, Stage::Repay).await?;
        }
        db::reduce_advance(tx, &deposit.user_id, deposit.repayment_krw).await?;
        Ok(Worked::Done)
    }

    async fn suspend(
        &self,
        deposit: &DepositRow,
        done: Option<Prepared>,
    ) -> Result<Worked, PayrollError> {
        if done != Some(Prepared::Booked) {
            self.book(deposit, Stage::Suspend).await?;
        }
        Ok(Worked::Done)
    }

    /// Records the chunks `prepare` had paid; a refusal is a business failure.
    async fn pay_out(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        done: Option<Prepared>,
    ) -> Result<Worked, PayrollError> {
        let Some(Prepared::Payout {
            attempt,
            paid,
            refused,
        }) = done
        else {
            return Err(not_prepared(deposit, Stage::Payout));
        };
        if attempt != deposit.attempt {
            return Err(not_prepared(deposit, Stage::Payout));
        }
        for chunk in &paid {
            db::insert_chunk(
                tx,
                &deposit.deposit_id,
                chunk.chunk,
                &chunk.bank_tran_id,
                chunk.amount_krw,
            )
            .await?;
        }
        if let Some((kind, message)) = refused {
            return Ok(Worked::Failed { kind, message });
        }
        Ok(Worked::Done)
    }

    /// A business failure: alert once per (deposit, reason), then wait or roll back.
    async fn fail(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        stage: Stage,
        kind: FailureKind,
        message: &str,
    ) -> Result<(), PayrollError> {
        let mut policy = self.inner.config.failure_policy.for_kind(kind);
        let paid_chunks = db::paid_chunks(db::Reader::Tx(tx), &deposit.deposit_id).await?;
        if policy == OnFailure::RollBack && !paid_chunks.is_empty() {
            // Money already left the bank for part of the payout; only a person can
            // decide how to undo that.
            policy = OnFailure::WaitForRetry;
        }
        let next_step = match policy {
            OnFailure::WaitForRetry => format!(
                "waits at {}; fix the account, then run `settle payroll retry {}` (or `rollback`)",
                stage.as_str(),
                deposit.deposit_id
            ),
            OnFailure::RollBack => {
                "completed stages are rolled back; the deposit will not be settled".to_owned()
            }
        };
        tracing::warn!(
            deposit_id = deposit.deposit_id,
            stage = stage.as_str(),
            reason = kind.as_str(),
            policy = policy.as_str(),
            message,
            "business failure"
        );
        self.raise_alert(tx, deposit, stage, kind, message, &next_step)
            .await?;
        let now_ms = self.now().unix_ms();
        match policy {
            OnFailure::WaitForRetry => {
                let next = deposit.state.after(Step::Failed(stage), None).ok_or(
                    PayrollError::IllegalTransition {
                        deposit: deposit.deposit_id.clone(),
                        from: deposit.state.as_str(),
                        step: "fail",
                    },
                )?;
                if !db::move_state(
                    tx,
                    &deposit.deposit_id,
                    deposit.state,
                    next,
                    Some((stage, kind.as_str())),
                    now_ms,
                )
                .await?
                {
                    return Err(PayrollError::Corrupt(format!(
                        "deposit {} moved under failure",
                        deposit.deposit_id
                    )));
                }
            }
            OnFailure::RollBack => {
                self.roll_back_in(tx, deposit, deposit.state).await?;
            }
        }
        Ok(())
    }

    async fn raise_alert(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        stage: Stage,
        kind: FailureKind,
        message: &str,
        next_step: &str,
    ) -> Result<(), PayrollError> {
        if db::alert_exists(tx, &deposit.deposit_id, kind.as_str()).await? {
            return Ok(());
        }
        let event_id = self
            .emit(tx, &deposit.user_id, KIND_ALERT, &deposit.deposit_id)
            .await?;
        db::insert_alert(
            tx,
            &AlertRow {
                deposit_id: deposit.deposit_id.clone(),
                reason: kind.as_str().to_owned(),
                user_id: deposit.user_id.clone(),
                stage: stage.as_str().to_owned(),
                next_step: next_step.to_owned(),
                message: message.to_owned(),
                created_at_ms: self.now().unix_ms(),
                delivered_at_ms: None,
            },
            &event_id,
        )
        .await?;
        metrics::counter!("payroll_alerts_total", "reason" => kind.as_str()).increment(1);
        Ok(())
    }

    /// Compensates, newest first, every ledger transfer of the deposit's stages
    /// that the ledger has applied (a stage's transfer may be applied outside its
    /// transaction before the stage committed), and marks the deposit
    /// `rolled_back`. `deposit.state` is where it stands now; `reached` is how far
    /// its stages committed (the advance is restored only for a committed repay).
    pub(crate) async fn roll_back_in(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        reached: DepositState,
    ) -> Result<(), PayrollError> {
        if !db::paid_chunks(db::Reader::Tx(tx), &deposit.deposit_id)
            .await?
            .is_empty()
        {
            return Err(PayrollError::NotWaiting {
                deposit: deposit.deposit_id.clone(),
                state: "partly_paid_out",
                action: "rollback",
            });
        }
        let next = deposit
            .state
            .after(Step::RollBack, deposit.waiting_stage)
            .ok_or(PayrollError::IllegalTransition {
                deposit: deposit.deposit_id.clone(),
                from: deposit.state.as_str(),
                step: "roll back",
            })?;
        let id = &deposit.deposit_id;
        let ledger = &self.inner.ledger;
        let now = self.now();
        let wallet = books::wallet(&self.inner.config.ids, &deposit.user_id)?;
        let ids = [
            books::transfer_id(&self.inner.config.ids, id, "deposit")?,
            books::transfer_id(&self.inner.config.ids, id, "repay")?,
            books::transfer_id(&self.inner.config.ids, id, "suspend")?,
            books::transfer_id(&self.inner.config.ids, id, "payout")?,
        ];
        let applied = ledger.lookup_transfers(&ids).await?;
        let amount_of = |which: usize| {
            applied
                .iter()
                .find(|t| t.id == ids[which])
                .map(|t| t.amount)
        };
        if amount_of(3).is_some() {
            return Err(PayrollError::NotWaiting {
                deposit: id.clone(),
                state: "paid_out",
                action: "rollback",
            });
        }
        if amount_of(2).is_some() {
            books::apply(
                ledger,
                &self.inner.config.ids,
                id,
                "undo-suspend",
                Movement::Void { hold: ids[2] },
                now,
            )
            .await?;
        }
        if let Some(amount) = amount_of(1) {
            books::apply(
                ledger,
                &self.inner.config.ids,
                id,
                "undo-repay",
                Movement::Move {
                    debit: books::lender(&self.inner.config.ids)?,
                    credit: wallet,
                    amount,
                },
                now,
            )
            .await?;
        }
        if progress(reached) >= progress(DepositState::Repaid) {
            db::restore_advance(tx, &deposit.user_id, deposit.repayment_krw).await?;
        }
        if let Some(amount) = amount_of(0) {
            books::apply(
                ledger,
                &self.inner.config.ids,
                id,
                "undo-deposit",
                Movement::Move {
                    debit: wallet,
                    credit: books::virtual_accounts(&self.inner.config.ids)?,
                    amount,
                },
                now,
            )
            .await?;
        }
        if !db::move_state(tx, id, deposit.state, next, None, now.unix_ms()).await? {
            return Err(PayrollError::Corrupt(format!(
                "deposit {id} moved under rollback"
            )));
        }
        self.release_behind(tx, deposit).await?;
        metrics::counter!("payroll_rollbacks_total").increment(1);
        tracing::info!(deposit_id = id, "rolled back");
        Ok(())
    }
}

impl Payroll {
    /// An earlier deposit of the same user parked at `stage` or before it.
    async fn blocker(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        stage: Stage,
    ) -> Result<Option<String>, PayrollError> {
        let earlier =
            db::earlier_waiting(db::Reader::Tx(tx), &deposit.user_id, deposit.bank_cursor).await?;
        Ok(prepared::blocking(earlier, stage))
    }

    /// Sends every deposit queued behind `deposit` back to the stage it waits at.
    async fn release_behind(&self, tx: &mut Tx, deposit: &DepositRow) -> Result<(), PayrollError> {
        let reason = behind(&deposit.deposit_id);
        for id in db::waiting_behind(tx, &deposit.user_id, &reason).await? {
            let Some(waiting) = db::deposit_tx(tx, &id).await? else {
                continue;
            };
            let Some(stage) = waiting.waiting_stage else {
                continue;
            };
            let Some(ready) = waiting.state.after(Step::Retry(stage), Some(stage)) else {
                continue;
            };
            if db::move_state(tx, &id, waiting.state, ready, None, self.now().unix_ms()).await? {
                self.emit(tx, &waiting.user_id, stage.trigger_kind(), &id)
                    .await?;
                tracing::info!(
                    deposit_id = id,
                    released_by = deposit.deposit_id,
                    "released from behind an earlier salary"
                );
            }
        }
        Ok(())
    }
}

/// The stage's outside work is not at hand (or is stale): the backbone retries,
/// and the retry prepares again.
fn not_prepared(deposit: &DepositRow, stage: Stage) -> PayrollError {
    PayrollError::NotPrepared {
        deposit: deposit.deposit_id.clone(),
        stage: stage.as_str(),
    }
}

fn behind(deposit_id: &str) -> String {
    format!("behind:{deposit_id}")
}

/// The stage after `stage`, if any.
fn following(stage: Stage) -> Option<Stage> {
    match stage {
        Stage::Compute => Some(Stage::Repay),
        Stage::Repay => Some(Stage::Suspend),
        Stage::Suspend => Some(Stage::Payout),
        Stage::Payout => Some(Stage::Complete),
        Stage::Complete => None,
    }
}

/// Splits a deposit into (repay, suspend, pay out), or `None` when the provider's
/// amounts do not fit it. Suspend is the provider's hold or `suspend_percent` of what
/// is left after repayment, whichever is larger.
fn split(
    amount: Krw,
    repayment: Krw,
    provider_suspend: Krw,
    suspend_percent: i64,
) -> Result<Option<(Krw, Krw, Krw)>, PayrollError> {
    if repayment.get() < 0 || provider_suspend.get() < 0 || !(0..=100).contains(&suspend_percent) {
        return Ok(None);
    }
    let Ok(rest) = amount.checked_sub(repayment) else {
        return Ok(None);
    };
    if rest.get() < 0 {
        return Ok(None);
    }
    let by_rule = Krw::new(rest.checked_mul(suspend_percent)?.get() / 100);
    let suspend = provider_suspend.max(by_rule);
    if suspend > rest {
        return Ok(None);
    }
    let pay = rest.checked_sub(suspend)?;
    debug_assert_eq!(
        Krw::checked_sum([repayment, suspend, pay]).ok(),
        Some(amount)
    );
    Ok(Some((repayment, suspend, pay)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_adds_up_to_the_deposit_to_the_won() {
        let (r, s, p) = split(Krw::new(1_234_567), Krw::new(100_000), Krw::ZERO, 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r, s, p),
            (Krw::new(100_000), Krw::new(113_456), Krw::new(1_021_111))
        );
        let (r, s, p) = split(Krw::new(300_000), Krw::ZERO, Krw::new(300_000), 0)
            .unwrap()
            .unwrap();
        assert_eq!((r, s, p), (Krw::ZERO, Krw::new(300_000), Krw::ZERO));
        assert!(
            split(Krw::new(100), Krw::new(101), Krw::ZERO, 0)
                .unwrap()
                .is_none()
        );
        assert!(
            split(Krw::new(100), Krw::new(50), Krw::new(51), 0)
                .unwrap()
                .is_none()
        );
    }
}
