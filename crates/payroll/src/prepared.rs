//! The part of a stage that happens outside any transaction: the provider's
//! amounts, bank payouts, webhook posts and ledger transfers. The backbone calls a
//! stage consumer's `prepare` before every attempt to handle an event; what it did
//! is handed to the stage's transaction (which records it and appends the next
//! event) through a bounded in-memory [`PreparedCache`] keyed by event id.
//!
//! Before any of that, the process claims (deposit, stage) ([`crate::claims`]):
//! a deposit another live process holds is skipped (the backbone defers the
//! event), and the claim's fencing token travels with the result to the stage's
//! transaction, which records nothing under a stale one.
//!
//! Everything here may still run twice or be cut off at any point (a process
//! paused past its lease): ledger transfer ids and `bank_tran_id`s are derived
//! from (deposit, purpose), a payout chunk is asked about before it is sent, and
//! a lost hand-off only means the next attempt prepares again (asking the bank,
//! not paying twice). This module writes no payroll table but `payroll_claims`,
//! and acts only on a deposit in the stage's ready state that no earlier salary
//! of the same user holds back.

use std::collections::{HashMap, VecDeque};

use bank::providers::ProviderName;
use bank::{DepositId, UserId};
use events::Event;
use money::Krw;

use crate::books::{self, Movement};
use crate::claims::{self, Claim};
use crate::config::FailureKind;
use crate::db::{self, DepositRow};
use crate::state::Stage;
use crate::{Payroll, PayrollError, payout};

/// Prepared results held at once; the oldest are forgotten beyond it (their
/// stages then prepare again).
pub(crate) const PREPARED_MAX: usize = 16_384;

/// A chunk the bank confirmed, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PaidChunk {
    pub chunk: i64,
    pub bank_tran_id: String,
    pub amount_krw: i64,
}

/// What a stage did outside its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The deposit was not ready for this stage, or waits behind an earlier
    /// salary: nothing was done.
    Nothing,
    /// The provider's amounts, asked of `provider`; when they fit the deposit,
    /// the deposit was moved into the user's wallet.
    Compute {
        provider: ProviderName,
        repayment: Krw,
        suspended: Krw,
    },
    /// The stage's ledger transfer is applied (for compensation: every
    /// compensating transfer).
    Booked,
    /// The chunks of `attempt` the bank paid now, and the refusal that stopped
    /// the payout, if any; without one, every chunk is paid and booked.
    Payout {
        attempt: i64,
        paid: Vec<PaidChunk>,
        refused: Option<(FailureKind, String)>,
    },
}

/// What `prepare` hands to the transaction: its result and the claim it holds.
pub(crate) type Handoff = (Prepared, Option<Claim>);

/// Prepared results by event id, oldest forgotten first beyond [`PREPARED_MAX`].
#[derive(Default)]
pub(crate) struct PreparedCache {
    entries: HashMap<String, Handoff>,
    order: VecDeque<String>,
}

impl PreparedCache {
    pub(crate) fn put(&mut self, event_id: String, prepared: Handoff) {
        if self.entries.insert(event_id.clone(), prepared).is_none() {
            self.order.push_back(event_id);
        }
        while self.order.len() > PREPARED_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    /// The result stays until the event is prepared again or forgotten: a batch
    /// that rolls back hands it to the next try of the same transaction.
    pub(crate) fn get(&self, event_id: &str) -> Option<Handoff> {
        self.entries.get(event_id).cloned()
    }
}

/// The first of `earlier` (a user's earlier waiting deposits with the stage each
/// waits at) that holds a deposit back from `stage`: one parked at that stage or
/// before it.
pub(crate) fn blocking(earlier: Vec<(String, Option<String>)>, stage: Stage) -> Option<String> {
    let here = crate::stages::progress(stage.ready_state());
    earlier.into_iter().find_map(|(id, waiting_stage)| {
        let at = waiting_stage.as_deref().and_then(Stage::parse);
        at.is_none_or(|at| crate::stages::progress(at.ready_state()) <= here)
            .then_some(id)
    })
}

pub(crate) fn event_key(event: &Event) -> String {
    event.id.as_uuid().hyphenated().to_string()
}

impl Payroll {
    /// Does `stage`'s outside work for the deposit `event` names, under a claim
    /// on (deposit, stage); [`PayrollError::Claimed`] while another process holds it.
    #[tracing::instrument(skip_all, fields(stage = stage.as_str(), key = %event.key, seq = event.seq))]
    pub(crate) async fn prepare_stage(
        &self,
        stage: Stage,
        event: &Event,
    ) -> Result<Handoff, PayrollError> {
        let store = self.store();
        let event_id = event_key(event);
        let deposit_id = db::deposit_of_event(db::Reader::Pool(store), &event_id)
            .await?
            .ok_or_else(|| PayrollError::Corrupt(format!("event {event_id} names no deposit")))?;
        let Some(deposit) = self.ready_for(&deposit_id, stage).await? else {
            return Ok((Prepared::Nothing, None));
        };
        if stage == Stage::Complete {
            // Nothing outside the transaction: its state check is enough.
            return Ok((Prepared::Nothing, None));
        }
        let now_ms = self.now().unix_ms();
        let lease_ms = self.inner.config.claim_lease_ms;
        let Some(claim) = claims::take(
            store,
            &deposit_id,
            stage,
            &self.inner.owner,
            now_ms,
            lease_ms,
        )
        .await?
        else {
            return Err(PayrollError::Claimed {
                deposit: deposit_id,
                stage: stage.as_str(),
            });
        };
        // Read again under the claim: the previous holder may have just finished.
        if self.ready_for(&deposit_id, stage).await?.is_none() {
            claims::release(store, &claim).await?;
            return Ok((Prepared::Nothing, None));
        }
        let work = async {
            match stage {
                Stage::Compute => self.prepare_compute(&deposit).await,
                Stage::Repay | Stage::Suspend => {
                    self.book(&deposit, stage).await.map(|()| Prepared::Booked)
                }
                Stage::Payout => payout::prepare(self, &deposit, &claim).await,
                Stage::Compensate => self.compensate(&deposit).await.map(|()| Prepared::Booked),
                Stage::Complete => Ok(Prepared::Nothing),
            }
        };
        // A live process keeps its claim for as long as its work takes (bank calls
        // queued behind the transport's limit included); only a dead or paused one
        // loses it.
        let worked = tokio::select! {
            biased;
            worked = work => worked,
            () = self.keep_claimed(&claim) => Err(PayrollError::StaleClaim {
                deposit: claim.deposit_id.clone(),
                stage: stage.as_str(),
                token: claim.token,
            }),
        };
        match worked {
            Ok(prepared) => {
                // The transaction that records it may start a while later (a batch
                // prepares all its events first): the lease runs from here.
                let now_ms = self.now().unix_ms();
                claims::renew(store, &claim, now_ms, lease_ms).await?;
                Ok((prepared, Some(claim)))
            }
            Err(error) => {
                // The work stopped here: let the next taker start without waiting
                // for the lease (it asks the bank before sending anything again).
                if let Err(release) = claims::release(store, &claim).await {
                    tracing::warn!(code = release.code(), %release, "claim not released; it expires");
                }
                Err(error)
            }
        }
    }

    /// Renews `claim` every third of its lease; returns only when it was lost
    /// (taken over or overridden), so the work racing it stops at its next await.
    async fn keep_claimed(&self, claim: &Claim) {
        let lease_ms = self.inner.config.claim_lease_ms;
        let every =
            std::time::Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1).max(1));
        loop {
            tokio::time::sleep(every).await;
            match claims::renew(self.store(), claim, self.now().unix_ms(), lease_ms).await {
                Ok(true) => {}
                Ok(false) => return,
                // The database is unreachable: keep working; the lease may lapse,
                // and the fence at recording time decides.
                Err(error) => tracing::warn!(code = error.code(), %error, "claim not renewed"),
            }
        }
    }

    /// The deposit when it is in `stage`'s ready state and no earlier salary of
    /// its user holds it back (compensation waits for nothing).
    async fn ready_for(
        &self,
        deposit_id: &str,
        stage: Stage,
    ) -> Result<Option<DepositRow>, PayrollError> {
        let store = self.store();
        let deposit = db::deposit(store, deposit_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownDeposit(deposit_id.to_owned()))?;
        if deposit.state != stage.ready_state() {
            return Ok(None);
        }
        if stage != Stage::Compensate {
            let earlier = db::earlier_waiting(
                db::Reader::Pool(store),
                &deposit.user_id,
                deposit.bank_cursor,
            )
            .await?;
            if blocking(earlier, stage).is_some() {
                return Ok(None);
            }
        }
        Ok(Some(deposit))
    }

    async fn prepare_compute(&self, deposit: &DepositRow) -> Result<Prepared, PayrollError> {
        let user_id = UserId::parse(&deposit.user_id)?;
        let bank_deposit = DepositId::new(&deposit.deposit_id)?;
        let facade = &self.inner.facade;
        // A deposit keeps the provider it started with (a retry of compute included);
        // a new one starts with the provider routing names now.
        let provider_name = match deposit.provider.as_deref() {
            Some(name) => ProviderName::parse(name)
                .ok_or_else(|| PayrollError::Corrupt(format!("provider {name:?}")))?,
            None => facade.routing().provider_for(user_id).await?,
        };
        let provider = facade.provider(provider_name);
        let repayment = provider.repayment_amount(user_id, &bank_deposit).await?;
        let suspended = provider.suspend_amount(user_id, &bank_deposit).await?;
        let user = db::user(self.store(), &deposit.user_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownUser(deposit.user_id.clone()))?;
        if self
            .split_for(deposit, repayment, suspended, user.suspend_percent)?
            .is_ok()
        {
            books::apply(
                &self.inner.ledger,
                &self.inner.config.ids,
                &deposit.deposit_id,
                "deposit",
                Movement::Move {
                    debit: books::virtual_accounts(&self.inner.config.ids)?,
                    credit: books::wallet(&self.inner.config.ids, &deposit.user_id)?,
                    amount: Krw::new(deposit.amount_krw),
                },
                self.now(),
            )
            .await?;
        }
        Ok(Prepared::Compute {
            provider: provider_name,
            repayment,
            suspended,
        })
    }

    /// Applies the ledger transfer of the repay or suspend stage (idempotent).
    pub(crate) async fn book(
        &self,
        deposit: &DepositRow,
        stage: Stage,
    ) -> Result<(), PayrollError> {
        let wallet = books::wallet(&self.inner.config.ids, &deposit.user_id)?;
        let (purpose, movement) = match stage {
            Stage::Repay => (
                "repay",
                Movement::Move {
                    debit: wallet,
                    credit: books::lender(&self.inner.config.ids)?,
                    amount: Krw::new(deposit.repayment_krw),
                },
            ),
            Stage::Suspend => (
                "suspend",
                Movement::Hold {
                    debit: wallet,
                    credit: books::suspense(&self.inner.config.ids)?,
                    amount: Krw::new(deposit.suspend_krw),
                },
            ),
            Stage::Compute | Stage::Payout | Stage::Complete | Stage::Compensate => {
                return Err(PayrollError::Corrupt(format!(
                    "stage {} books nothing on its own",
                    stage.as_str()
                )));
            }
        };
        books::apply(
            &self.inner.ledger,
            &self.inner.config.ids,
            &deposit.deposit_id,
            purpose,
            movement,
            self.now(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_forgets_the_oldest_beyond_its_bound_and_keeps_a_result_for_a_second_try() {
        let mut cache = PreparedCache::default();
        for n in 0..PREPARED_MAX + 10 {
            cache.put(format!("e{n}"), (Prepared::Booked, None));
        }
        assert_eq!(cache.entries.len(), PREPARED_MAX);
        assert_eq!(cache.get("e0"), None);
        let last = format!("e{}", PREPARED_MAX + 9);
        assert_eq!(cache.get(&last), Some((Prepared::Booked, None)));
        assert_eq!(
            cache.get(&last),
            Some((Prepared::Booked, None)),
            "still there"
        );
        cache.put(last.clone(), (Prepared::Nothing, None));
        assert_eq!(cache.get(&last), Some((Prepared::Nothing, None)));
        assert_eq!(
            cache.order.len(),
            PREPARED_MAX,
            "a re-prepare is not a new entry"
        );
    }

    #[test]
    fn an_earlier_salary_parked_at_or_before_a_stage_blocks_it() {
        let parked_at_payout = vec![("D1".to_owned(), Some("payout".to_owned()))];
        assert_eq!(blocking(parked_at_payout.clone(), Stage::Repay), None);
        assert_eq!(
            blocking(parked_at_payout, Stage::Payout),
            Some("D1".to_owned())
        );
        assert_eq!(
            blocking(vec![("D2".to_owned(), None)], Stage::Compute),
            Some("D2".to_owned())
        );
    }
}
