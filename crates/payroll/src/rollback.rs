//! Rolling a deposit back in two steps that never overlap. First the decision, in
//! a transaction (a stage's, on a failure whose policy is to roll back, or an
//! operator's): the deposit moves to `rolling_back`, its advance is restored if
//! its repay had committed, every claim on it is superseded and a
//! `payroll.rolling_back` event is appended. Only once that has committed does
//! the compensation run: the [`Stage::Compensate`] step, claimed like any other
//! stage, applies the compensating ledger transfers (ids derived from the
//! deposit, so a second run repeats nothing) and its transaction moves the
//! deposit to `rolled_back`.
//!
//! This closes the race of two processes handling one deposit: a process whose
//! transaction aborts has decided nothing and compensated nothing, so the ledger
//! never holds an undo for a stage that still stands.

use store::Tx;

use crate::books::{self, Movement};
use crate::claims;
use crate::db::{self, DepositRow};
use crate::stages::progress;
use crate::state::{DepositState, KIND_ROLLING_BACK, Stage, Step};
use crate::{Payroll, PayrollError};

/// Which of a deposit's ledger transfers, by purpose, in [`transfer_ids`] order.
const PURPOSES: [&str; 4] = ["deposit", "repay", "suspend", "payout"];

fn transfer_ids(
    keyed: &money::DerivedIds,
    deposit_id: &str,
) -> Result<[money::TransferId; 4], PayrollError> {
    Ok([
        books::transfer_id(keyed, deposit_id, PURPOSES[0])?,
        books::transfer_id(keyed, deposit_id, PURPOSES[1])?,
        books::transfer_id(keyed, deposit_id, PURPOSES[2])?,
        books::transfer_id(keyed, deposit_id, PURPOSES[3])?,
    ])
}

impl Payroll {
    /// The decision, in `tx`: `deposit.state` is where it stands; `reached` is how
    /// far its stages committed (the advance is restored only after a committed
    /// repay). Refused when part of the payout is at the bank or booked.
    pub(crate) async fn decide_roll_back(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        reached: DepositState,
    ) -> Result<(), PayrollError> {
        let id = &deposit.deposit_id;
        if !db::paid_chunks(db::Reader::Tx(tx), id).await?.is_empty() {
            return Err(PayrollError::NotWaiting {
                deposit: id.clone(),
                state: "partly_paid_out",
                action: "rollback",
            });
        }
        let ids = transfer_ids(&self.inner.config.ids, id)?;
        if !self
            .inner
            .ledger
            .lookup_transfers(&ids[3..])
            .await?
            .is_empty()
        {
            return Err(PayrollError::NotWaiting {
                deposit: id.clone(),
                state: "paid_out",
                action: "rollback",
            });
        }
        let next = deposit
            .state
            .after(Step::RollBack, deposit.waiting_stage)
            .ok_or(PayrollError::IllegalTransition {
                deposit: id.clone(),
                from: deposit.state.as_str(),
                step: "roll back",
            })?;
        let now_ms = self.now().unix_ms();
        if progress(reached) >= progress(DepositState::Repaid) {
            db::restore_advance(tx, &deposit.user_id, deposit.repayment_krw).await?;
        }
        claims::supersede(tx, id, now_ms).await?;
        if !db::move_state(tx, id, deposit.state, next, None, now_ms).await? {
            return Err(PayrollError::Corrupt(format!(
                "deposit {id} moved under rollback"
            )));
        }
        self.emit(tx, &deposit.user_id, KIND_ROLLING_BACK, id)
            .await?;
        tracing::info!(deposit_id = id, "rollback decided; compensation follows");
        Ok(())
    }

    /// The compensation, outside any transaction and under the deposit's
    /// compensate claim: undoes, newest first, every ledger transfer of the
    /// deposit that the ledger holds (a stage's transfer may have been applied by
    /// a prepare whose transaction never committed). Idempotent.
    pub(crate) async fn compensate(&self, deposit: &DepositRow) -> Result<(), PayrollError> {
        let id = &deposit.deposit_id;
        let ledger = &self.inner.ledger;
        let ids = transfer_ids(&self.inner.config.ids, id)?;
        let applied = ledger.lookup_transfers(&ids).await?;
        let amount_of = |which: usize| {
            applied
                .iter()
                .find(|t| t.id == ids[which])
                .map(|t| t.amount)
        };
        if amount_of(3).is_some() {
            return Err(PayrollError::Corrupt(format!(
                "deposit {id} is rolling back but its payout is booked"
            )));
        }
        let now = self.now();
        let keyed = &self.inner.config.ids;
        let wallet = books::wallet(keyed, &deposit.user_id)?;
        if amount_of(2).is_some() {
            let hold = ids[2];
            books::apply(
                ledger,
                keyed,
                id,
                "undo-suspend",
                Movement::Void { hold },
                now,
            )
            .await?;
        }
        if let Some(amount) = amount_of(1) {
            let debit = books::lender(keyed)?;
            let movement = Movement::Move {
                debit,
                credit: wallet,
                amount,
            };
            books::apply(ledger, keyed, id, "undo-repay", movement, now).await?;
        }
        if let Some(amount) = amount_of(0) {
            let credit = books::virtual_accounts(keyed)?;
            let movement = Movement::Move {
                debit: wallet,
                credit,
                amount,
            };
            books::apply(ledger, keyed, id, "undo-deposit", movement, now).await?;
        }
        Ok(())
    }

    /// The compensation right away, for an operator who just decided a rollback:
    /// the same claimed step a worker runs on the `rolling_back` event (which then
    /// finds nothing to do). Returns quietly when a worker holds the claim or the
    /// compensation fails: the event's delivery finishes it.
    pub(crate) async fn compensate_now(&self, deposit_id: &str) -> Result<(), PayrollError> {
        let store = self.store();
        let now_ms = self.now().unix_ms();
        let lease_ms = self.inner.config.claim_lease_ms;
        let stage = Stage::Compensate;
        let owner = &self.inner.owner;
        let Some(claim) = claims::take(store, deposit_id, stage, owner, now_ms, lease_ms).await?
        else {
            return Ok(());
        };
        let deposit = db::deposit(store, deposit_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownDeposit(deposit_id.to_owned()))?;
        if deposit.state != DepositState::RollingBack {
            return claims::release(store, &claim).await;
        }
        if let Err(error) = self.compensate(&deposit).await {
            tracing::warn!(deposit_id, code = error.code(), %error, "compensation failed; the rolling_back event retries it");
            return claims::release(store, &claim).await;
        }
        let mut tx = store.begin().await?;
        if !claims::fence(&mut tx, &claim).await? {
            return Ok(());
        }
        let Some(deposit) = db::deposit_tx(&mut tx, deposit_id).await? else {
            return Ok(());
        };
        if deposit.state != DepositState::RollingBack {
            return Ok(());
        }
        self.finish_rollback(&mut tx, &deposit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// In the compensation's transaction: `rolled_back`, and the user's later
    /// salaries queued behind this one go on.
    pub(crate) async fn finish_rollback(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
    ) -> Result<(), PayrollError> {
        let id = &deposit.deposit_id;
        let next = deposit
            .state
            .after(Step::Finished(Stage::Compensate), None)
            .ok_or(PayrollError::IllegalTransition {
                deposit: id.clone(),
                from: deposit.state.as_str(),
                step: "finish compensating",
            })?;
        let now_ms = self.now().unix_ms();
        if !db::move_state(tx, id, deposit.state, next, None, now_ms).await? {
            return Err(PayrollError::Corrupt(format!(
                "deposit {id} moved under compensation"
            )));
        }
        self.release_behind(tx, deposit).await?;
        metrics::counter!("payroll_rollbacks_total").increment(1);
        tracing::info!(deposit_id = id, "rolled back");
        Ok(())
    }
}
