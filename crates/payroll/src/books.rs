//! Payroll's chart of accounts in the ledger and every ledger transfer payroll
//! makes. Ids are derived from (deposit, purpose), so a stage that runs again after
//! a crash submits the same id and the ledger answers `exists` instead of moving
//! money twice; they are keyed by the installation's secret ([`DerivedIds`]), so a
//! client that knows a deposit id or user id cannot compute one and claim it first.
//!
//! Money flow per deposit: `virtual` → user's wallet (the deposit, at compute);
//! wallet → `lender` (repay); wallet ⇢ `suspense` (a hold, at suspend); wallet →
//! `payout` (pay out). A rollback reverses each completed movement. This module
//! never calls a bank and never touches payroll's own tables.

use ledger::{AccountFlags, CreateAccountResult, Ledger, NewAccount, TransferRequest};
use money::{AccountId, DerivedIds, Krw, Timestamp, TransferId};
use uuid::Uuid;

use crate::PayrollError;

/// The domain of every id payroll derives.
const DOMAIN: &str = "payroll";

/// Ledger account codes (the chart): one per role.
pub const CODE_VIRTUAL: u16 = 710;
pub const CODE_WALLET: u16 = 711;
pub const CODE_LENDER: u16 = 712;
pub const CODE_SUSPENSE: u16 = 713;
pub const CODE_PAYOUT: u16 = 714;

fn id_of(ids: &DerivedIds, name: &str) -> Uuid {
    ids.uuid(DOMAIN, name)
}

fn account(ids: &DerivedIds, name: &str) -> Result<AccountId, PayrollError> {
    AccountId::from_uuid(id_of(ids, name))
        .map_err(|error| PayrollError::Corrupt(format!("account id for {name}: {error}")))
}

/// Money sitting in users' virtual accounts at the bank (settle's asset).
pub fn virtual_accounts(ids: &DerivedIds) -> Result<AccountId, PayrollError> {
    account(ids, "payroll:virtual")
}

pub fn lender(ids: &DerivedIds) -> Result<AccountId, PayrollError> {
    account(ids, "payroll:lender")
}

pub fn suspense(ids: &DerivedIds) -> Result<AccountId, PayrollError> {
    account(ids, "payroll:suspense")
}

/// Money paid out to users' own bank accounts.
pub fn payout(ids: &DerivedIds) -> Result<AccountId, PayrollError> {
    account(ids, "payroll:payout")
}

/// A user's share of their deposits while a settlement is under way; never negative.
pub fn wallet(ids: &DerivedIds, user_id: &str) -> Result<AccountId, PayrollError> {
    account(ids, &format!("payroll:wallet:{user_id}"))
}

/// The transfer id of `purpose` for `deposit_id`.
pub fn transfer_id(
    ids: &DerivedIds,
    deposit_id: &str,
    purpose: &str,
) -> Result<TransferId, PayrollError> {
    TransferId::from_uuid(id_of(ids, &format!("payroll:{deposit_id}:{purpose}")))
        .map_err(|error| PayrollError::Corrupt(format!("transfer id: {error}")))
}

/// Opens the shared accounts (idempotent).
pub async fn open_shared(ledger: &Ledger, ids: &DerivedIds) -> Result<(), PayrollError> {
    let never_negative = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    let plain = AccountFlags::default();
    let accounts = [
        (virtual_accounts(ids)?, CODE_VIRTUAL, plain),
        (lender(ids)?, CODE_LENDER, never_negative),
        (suspense(ids)?, CODE_SUSPENSE, never_negative),
        (payout(ids)?, CODE_PAYOUT, never_negative),
    ];
    open(ledger, &accounts).await
}

/// Opens a user's wallet (idempotent).
pub async fn open_wallet(
    ledger: &Ledger,
    ids: &DerivedIds,
    user_id: &str,
) -> Result<(), PayrollError> {
    let flags = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    open(ledger, &[(wallet(ids, user_id)?, CODE_WALLET, flags)]).await
}

/// Opens many users' wallets in one ledger call (idempotent).
pub async fn open_wallets(
    ledger: &Ledger,
    ids: &DerivedIds,
    user_ids: &[String],
) -> Result<(), PayrollError> {
    let flags = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    let mut accounts = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        accounts.push((wallet(ids, user_id)?, CODE_WALLET, flags));
    }
    open(ledger, &accounts).await
}

async fn open(
    ledger: &Ledger,
    accounts: &[(AccountId, u16, AccountFlags)],
) -> Result<(), PayrollError> {
    let mut requests = Vec::with_capacity(accounts.len());
    for (id, code, flags) in accounts {
        requests.push(
            NewAccount::new(*id, *code, *flags)
                .map_err(|error| PayrollError::InvalidConfig(error.to_string()))?,
        );
    }
    for result in ledger.create_accounts(&requests).await? {
        if result == CreateAccountResult::ExistsWithDifferentFields {
            return Err(PayrollError::LedgerRefused {
                what: "opening payroll accounts".into(),
                result: result.code(),
            });
        }
    }
    Ok(())
}

/// One movement to make.
#[derive(Clone, Copy, Debug)]
pub enum Movement {
    Move {
        debit: AccountId,
        credit: AccountId,
        amount: Krw,
    },
    Hold {
        debit: AccountId,
        credit: AccountId,
        amount: Krw,
    },
    Void {
        hold: TransferId,
    },
}

/// Submits one movement under its derived id; applied now or earlier is success.
pub async fn apply(
    ledger: &Ledger,
    ids: &DerivedIds,
    deposit_id: &str,
    purpose: &str,
    movement: Movement,
    now: Timestamp,
) -> Result<(), PayrollError> {
    let id = transfer_id(ids, deposit_id, purpose)?;
    let invalid = |error: ledger::InvalidTransfer| PayrollError::LedgerRefused {
        what: format!("{purpose} of {deposit_id}"),
        result: error.code(),
    };
    let request = match movement {
        Movement::Move { amount, .. } | Movement::Hold { amount, .. } if !amount.is_positive() => {
            return Ok(());
        }
        Movement::Move {
            debit,
            credit,
            amount,
        } => TransferRequest::single(id, debit, credit, amount, now).map_err(invalid)?,
        Movement::Hold {
            debit,
            credit,
            amount,
        } => TransferRequest::pending(id, debit, credit, amount, 0, now).map_err(invalid)?,
        Movement::Void { hold } => TransferRequest::void(id, hold, now),
    };
    let result = ledger.transfer(request).await?;
    if result.is_applied() {
        Ok(())
    } else {
        Err(PayrollError::LedgerRefused {
            what: format!("{purpose} of {deposit_id}"),
            result: result.code(),
        })
    }
}
