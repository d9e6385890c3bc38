//! The pure heart of the ledger: applies a batch of requests, in order, to balances
//! held in memory, and says what must be written. No I/O, no clock: the batch's
//! `now` is given.
//!
//! Applying a batch here gives exactly the results of applying its requests one by
//! one, which is what lets the writer commit a whole batch in one transaction.

use std::collections::{HashMap, HashSet};

use money::{AccountId, Krw, Timestamp, TransferId};

use crate::account::Account;
use crate::entry::Entry;
use crate::transfer::{
    KindTag, PendingState, Transfer, TransferFailure, TransferKind, TransferRequest, TransferResult,
};

/// What the store loaded for a batch: every account, transfer and recorded failure
/// the batch's requests can touch.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub accounts: HashMap<AccountId, Account>,
    pub transfers: HashMap<TransferId, Transfer>,
    pub failures: HashMap<TransferId, TransferFailure>,
}

/// What a batch changes, for the store to write in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub new_transfers: Vec<Transfer>,
    pub new_failures: Vec<TransferFailure>,
    /// Holds that existed before the batch and changed state in it.
    pub pending_updates: Vec<(TransferId, PendingState)>,
    /// Every account whose balances changed, in its final state.
    pub accounts: Vec<Account>,
    pub entries: Vec<Entry>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.new_transfers.is_empty()
            && self.new_failures.is_empty()
            && self.pending_updates.is_empty()
            && self.entries.is_empty()
    }
}

/// Undo log of the linked chain being applied.
#[derive(Default)]
struct Undo {
    accounts: Vec<Account>,
    saved_accounts: HashSet<AccountId>,
    transfers: Vec<(TransferId, Option<Transfer>)>,
    entries_len: usize,
    new_ids_len: usize,
    changed_pending_len: usize,
}

pub(crate) struct Engine {
    accounts: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, Transfer>,
    failures: HashMap<TransferId, TransferFailure>,
    loaded_transfer_ids: HashSet<TransferId>,
    new_ids: Vec<TransferId>,
    new_failures: Vec<TransferFailure>,
    changed_pending: Vec<TransferId>,
    touched_accounts: Vec<AccountId>,
    touched_set: HashSet<AccountId>,
    entries: Vec<Entry>,
    undo: Option<Undo>,
    now: Timestamp,
    late_window_ms: i64,
}

impl Engine {
    pub fn new(loaded: Loaded, now: Timestamp, late_window_ms: i64) -> Engine {
        Engine {
            loaded_transfer_ids: loaded.transfers.keys().copied().collect(),
            accounts: loaded.accounts,
            transfers: loaded.transfers,
            failures: loaded.failures,
            new_ids: Vec::new(),
            new_failures: Vec::new(),
            changed_pending: Vec::new(),
            touched_accounts: Vec::new(),
            touched_set: HashSet::new(),
            entries: Vec::new(),
            undo: None,
            now,
            late_window_ms,
        }
    }

    /// Applies one submission: a list of requests in which consecutive `linked`
    /// requests form all-or-nothing chains.
    pub fn apply_submission(&mut self, requests: &[TransferRequest]) -> Vec<TransferResult> {
        let mut results = Vec::with_capacity(requests.len());
        let mut start = 0;
        while start < requests.len() {
            // A chain runs from `start` to the first request that is not linked.
            let end = requests[start..]
                .iter()
                .position(|r| !r.is_linked())
                .map(|offset| start + offset + 1);
            match end {
                None => {
                    results.extend(std::iter::repeat_n(
                        TransferResult::LinkedEventChainOpen,
                        requests.len() - start,
                    ));
                    break;
                }
                Some(end) if end - start == 1 => {
                    let result = self.apply_one(&requests[start]);
                    results.push(result);
                    start = end;
                }
                Some(end) => {
                    results.extend(self.apply_chain(&requests[start..end]));
                    start = end;
                }
            }
        }
        results
    }

    fn apply_chain(&mut self, chain: &[TransferRequest]) -> Vec<TransferResult> {
        self.undo = Some(Undo {
            entries_len: self.entries.len(),
            new_ids_len: self.new_ids.len(),
            changed_pending_len: self.changed_pending.len(),
            ..Undo::default()
        });
        let mut results = Vec::with_capacity(chain.len());
        let mut failed_at = None;
        for (index, request) in chain.iter().enumerate() {
            let result = self.apply_one_unrecorded(request);
            results.push(result);
            if !result.is_applied() {
                failed_at = Some(index);
                break;
            }
        }
        let undo = self.undo.take();
        let all_existed = results.iter().all(|r| *r == TransferResult::Exists);
        let mixed =
            results.contains(&TransferResult::Ok) && results.contains(&TransferResult::Exists);
        if failed_at.is_none() && (all_existed || !mixed) {
            return results;
        }
        // Roll the chain back and explain each member.
        if let Some(undo) = undo {
            self.roll_back(undo);
        }
        let mut explained = Vec::with_capacity(chain.len());
        for (index, request) in chain.iter().enumerate() {
            let result = match results.get(index) {
                Some(TransferResult::Ok) | None => TransferResult::LinkedEventFailed,
                Some(other) => *other,
            };
            if result.is_recorded_failure() {
                self.record_failure(request, result);
            }
            explained.push(result);
        }
        explained
    }

    fn roll_back(&mut self, undo: Undo) {
        for account in undo.accounts {
            self.accounts.insert(account.id, account);
        }
        for (id, previous) in undo.transfers.into_iter().rev() {
            match previous {
                Some(transfer) => self.transfers.insert(id, transfer),
                None => self.transfers.remove(&id),
            };
        }
        self.entries.truncate(undo.entries_len);
        self.new_ids.truncate(undo.new_ids_len);
        self.changed_pending.truncate(undo.changed_pending_len);
    }

    /// Applies a request that is not part of a chain, recording a failure if it fails.
    fn apply_one(&mut self, request: &TransferRequest) -> TransferResult {
        let result = self.apply_one_unrecorded(request);
        if result.is_recorded_failure() {
            self.record_failure(request, result);
        }
        result
    }

    /// Records a failure the first time an id fails; a repeat keeps the first reason.
    fn record_failure(&mut self, request: &TransferRequest, result: TransferResult) {
        if self.failures.contains_key(&request.id()) {
            return;
        }
        let failure = TransferFailure {
            id: request.id(),
            request: request.fingerprint(),
            requested_at: request.requested_at(),
            result,
            failed_at: self.now,
        };
        self.failures.insert(request.id(), failure);
        self.new_failures.push(failure);
    }

    fn apply_one_unrecorded(&mut self, request: &TransferRequest) -> TransferResult {
        if let Some(existing) = self.transfers.get(&request.id()) {
            return if existing.fingerprint() == request.fingerprint() {
                TransferResult::Exists
            } else {
                TransferResult::ExistsWithDifferentFields
            };
        }
        if let Some(failure) = self.failures.get(&request.id()) {
            return if failure.request == request.fingerprint() {
                failure.result
            } else {
                TransferResult::ExistsWithDifferentFields
            };
        }
        if self.now.ms_since(request.requested_at()) > self.late_window_ms {
            return TransferResult::Late;
        }
        match *request.kind() {
            TransferKind::Single {
                debit_account_id,
                credit_account_id,
                amount,
            } => self.apply_movement(request, debit_account_id, credit_account_id, amount, None),
            TransferKind::Pending {
                debit_account_id,
                credit_account_id,
                amount,
                timeout_ms,
            } => self.apply_movement(
                request,
                debit_account_id,
                credit_account_id,
                amount,
                Some(timeout_ms),
            ),
            TransferKind::Post { pending_id, amount } => {
                self.settle_hold(request, pending_id, Settlement::Post(amount))
            }
            TransferKind::Void { pending_id } => {
                self.settle_hold(request, pending_id, Settlement::Void)
            }
        }
    }

    /// A single transfer (`timeout_ms: None`) or a new hold.
    fn apply_movement(
        &mut self,
        request: &TransferRequest,
        debit_id: AccountId,
        credit_id: AccountId,
        amount: Krw,
        hold_timeout_ms: Option<i64>,
    ) -> TransferResult {
        let Some(debit) = self.accounts.get(&debit_id).copied() else {
            return TransferResult::DebitAccountNotFound;
        };
        let Some(credit) = self.accounts.get(&credit_id).copied() else {
            return TransferResult::CreditAccountNotFound;
        };
        let is_hold = hold_timeout_ms.is_some();
        let mut new_debit = debit;
        let mut new_credit = credit;
        let grown = if is_hold {
            (
                new_debit.debits_pending.checked_add(amount),
                new_credit.credits_pending.checked_add(amount),
            )
        } else {
            (
                new_debit.debits_posted.checked_add(amount),
                new_credit.credits_posted.checked_add(amount),
            )
        };
        let (Ok(debit_side), Ok(credit_side)) = grown else {
            return TransferResult::OverflowsBalance;
        };
        if is_hold {
            new_debit.debits_pending = debit_side;
            new_credit.credits_pending = credit_side;
        } else {
            new_debit.debits_posted = debit_side;
            new_credit.credits_posted = credit_side;
        }
        if !new_debit.respects_flags() {
            return TransferResult::ExceedsCredits;
        }
        if !new_credit.respects_flags() {
            return TransferResult::ExceedsDebits;
        }
        let transfer = Transfer {
            id: request.id(),
            kind: if is_hold {
                KindTag::Pending
            } else {
                KindTag::Single
            },
            debit_account_id: debit_id,
            credit_account_id: credit_id,
            amount,
            pending_id: None,
            post_full_amount: false,
            timeout_ms: hold_timeout_ms.unwrap_or(0),
            code: request.code(),
            user_data: request.user_data(),
            linked: request.is_linked(),
            requested_at: request.requested_at(),
            created_at: self.now,
            pending_state: is_hold.then_some(PendingState::Pending),
            expires_at: match hold_timeout_ms {
                Some(timeout_ms) if timeout_ms > 0 => Some(self.now.plus_ms(timeout_ms)),
                _ => None,
            },
        };
        self.commit_change(new_debit, new_credit, transfer.id);
        self.insert_transfer(transfer);
        TransferResult::Ok
    }

    fn settle_hold(
        &mut self,
        request: &TransferRequest,
        pending_id: TransferId,
        settlement: Settlement,
    ) -> TransferResult {
        let Some(hold) = self.transfers.get(&pending_id).copied() else {
            return TransferResult::PendingTransferNotFound;
        };
        match hold.pending_state {
            None => return TransferResult::PendingTransferNotPending,
            Some(PendingState::Posted) => return TransferResult::PendingTransferAlreadyPosted,
            Some(PendingState::Voided) => return TransferResult::PendingTransferAlreadyVoided,
            Some(PendingState::Expired) => return TransferResult::PendingTransferExpired,
            Some(PendingState::Pending) => {}
        }
        if hold.expires_at.is_some_and(|deadline| self.now >= deadline) {
            return TransferResult::PendingTransferExpired;
        }
        let posted = match settlement {
            Settlement::Post(Some(amount)) if amount > hold.amount => {
                return TransferResult::ExceedsPendingTransferAmount;
            }
            Settlement::Post(Some(amount)) => Some(amount),
            Settlement::Post(None) => Some(hold.amount),
            Settlement::Void => None,
        };
        let Some((new_debit, new_credit)) = self.release_hold(&hold, posted) else {
            return TransferResult::OverflowsBalance;
        };
        let transfer = Transfer {
            id: request.id(),
            kind: if posted.is_some() {
                KindTag::Post
            } else {
                KindTag::Void
            },
            debit_account_id: hold.debit_account_id,
            credit_account_id: hold.credit_account_id,
            amount: posted.unwrap_or(hold.amount),
            pending_id: Some(pending_id),
            post_full_amount: matches!(settlement, Settlement::Post(None)),
            timeout_ms: 0,
            code: request.code(),
            user_data: request.user_data(),
            linked: request.is_linked(),
            requested_at: request.requested_at(),
            created_at: self.now,
            pending_state: None,
            expires_at: None,
        };
        self.commit_change(new_debit, new_credit, transfer.id);
        self.set_hold_state(
            hold,
            if posted.is_some() {
                PendingState::Posted
            } else {
                PendingState::Voided
            },
        );
        self.insert_transfer(transfer);
        TransferResult::Ok
    }

    /// Expires a hold whose deadline passed. Returns false if it is no longer pending.
    pub fn expire(&mut self, pending_id: TransferId) -> bool {
        let Some(hold) = self.transfers.get(&pending_id).copied() else {
            return false;
        };
        if hold.pending_state != Some(PendingState::Pending)
            || hold.expires_at.is_none_or(|deadline| self.now < deadline)
        {
            return false;
        }
        let Some((new_debit, new_credit)) = self.release_hold(&hold, None) else {
            return false;
        };
        self.commit_change(new_debit, new_credit, hold.id);
        self.set_hold_state(hold, PendingState::Expired);
        true
    }

    /// The two accounts after a hold is released, with `posted` of it posted.
    fn release_hold(&self, hold: &Transfer, posted: Option<Krw>) -> Option<(Account, Account)> {
        let mut debit = *self.accounts.get(&hold.debit_account_id)?;
        let mut credit = *self.accounts.get(&hold.credit_account_id)?;
        debit.debits_pending = debit.debits_pending.checked_sub(hold.amount).ok()?;
        credit.credits_pending = credit.credits_pending.checked_sub(hold.amount).ok()?;
        if debit.debits_pending.get() < 0 || credit.credits_pending.get() < 0 {
            return None;
        }
        if let Some(amount) = posted {
            debit.debits_posted = debit.debits_posted.checked_add(amount).ok()?;
            credit.credits_posted = credit.credits_posted.checked_add(amount).ok()?;
        }
        Some((debit, credit))
    }

    fn set_hold_state(&mut self, mut hold: Transfer, state: PendingState) {
        hold.pending_state = Some(state);
        self.save_transfer(hold.id);
        if self.loaded_transfer_ids.contains(&hold.id) {
            self.changed_pending.push(hold.id);
        }
        self.transfers.insert(hold.id, hold);
    }

    fn insert_transfer(&mut self, transfer: Transfer) {
        self.save_transfer(transfer.id);
        self.new_ids.push(transfer.id);
        self.transfers.insert(transfer.id, transfer);
    }

    fn save_transfer(&mut self, id: TransferId) {
        if let Some(undo) = &mut self.undo {
            undo.transfers.push((id, self.transfers.get(&id).copied()));
        }
    }

    /// Stores the new balances of both accounts, bumps their seq and writes entries.
    fn commit_change(&mut self, mut debit: Account, mut credit: Account, transfer_id: TransferId) {
        for account in [&mut debit, &mut credit] {
            if let Some(undo) = &mut self.undo
                && undo.saved_accounts.insert(account.id)
                && let Some(original) = self.accounts.get(&account.id)
            {
                undo.accounts.push(*original);
            }
            account.seq += 1;
            self.entries.push(Entry {
                account_id: account.id,
                seq: account.seq,
                transfer_id,
                debits_pending: account.debits_pending,
                debits_posted: account.debits_posted,
                credits_pending: account.credits_pending,
                credits_posted: account.credits_posted,
                created_at: self.now,
            });
            if self.touched_set.insert(account.id) {
                self.touched_accounts.push(account.id);
            }
            self.accounts.insert(account.id, *account);
        }
    }

    pub fn finish(self) -> Effects {
        let Engine {
            accounts,
            transfers,
            new_ids,
            new_failures,
            changed_pending,
            touched_accounts,
            entries,
            ..
        } = self;
        let mut seen = HashSet::new();
        let pending_updates = changed_pending
            .into_iter()
            .filter(|id| seen.insert(*id))
            .filter_map(|id| Some((id, transfers.get(&id)?.pending_state?)))
            .collect();
        Effects {
            new_transfers: new_ids
                .iter()
                .filter_map(|id| transfers.get(id).copied())
                .collect(),
            new_failures,
            pending_updates,
            accounts: touched_accounts
                .iter()
                .filter_map(|id| accounts.get(id).copied())
                .collect(),
            entries,
        }
    }
}

enum Settlement {
    Post(Option<Krw>),
    Void,
}
