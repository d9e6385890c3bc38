//! Payroll's chart of accounts in the ledger and every ledger transfer payroll
//! makes. Ids are derived from (deposit, purpose), so a stage that runs again after
//! a crash submits the same id and the ledger answers `exists` instead of moving
//! money twice.
//!
//! Money flow per deposit: `virtual` → user's wallet (the deposit, at compute);
//! wallet → `lender` (repay); wallet ⇢ `suspense` (a hold, at suspend); wallet →
//! `payout` (pay out). A rollback reverses each completed movement. This module
//! never calls a bank and never touches payroll's own tables.

use ledger::{AccountFlags, CreateAccountResult, Ledger, NewAccount, TransferRequest};
use money::{AccountId, Krw, Timestamp, TransferId};
use uuid::Uuid;

use crate::PayrollError;

const NAMESPACE: Uuid = Uuid::from_u128(0x0a71_0011_5e77_4e00_9a1c_0000_0000_0001);

/// Ledger account codes (the chart): one per role.
pub const CODE_VIRTUAL: u16 = 710;
pub const CODE_WALLET: u16 = 711;
pub const CODE_LENDER: u16 = 712;
pub const CODE_SUSPENSE: u16 = 713;
pub const CODE_PAYOUT: u16 = 714;

fn id_of(name: &str) -> Result<Uuid, PayrollError> {
    Ok(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

fn account(name: &str) -> Result<AccountId, PayrollError> {
    AccountId::from_uuid(id_of(name)?)
        .map_err(|error| PayrollError::Corrupt(format!("account id for {name}: {error}")))
}

/// Money sitting in users' virtual accounts at the bank (settle's asset).
pub fn virtual_accounts() -> Result<AccountId, PayrollError> {
    account("payroll:virtual")
}

pub fn lender() -> Result<AccountId, PayrollError> {
    account("payroll:lender")
}

pub fn suspense() -> Result<AccountId, PayrollError> {
    account("payroll:suspense")
}

/// Money paid out to users' own bank accounts.
pub fn payout() -> Result<AccountId, PayrollError> {
    account("payroll:payout")
}

/// A user's share of their deposits while a settlement is under way; never negative.
pub fn wallet(user_id: &str) -> Result<AccountId, PayrollError> {
    account(&format!("payroll:wallet:{user_id}"))
}

/// The transfer id of `purpose` for `deposit_id`.
pub fn transfer_id(deposit_id: &str, purpose: &str) -> Result<TransferId, PayrollError> {
    TransferId::from_uuid(id_of(&format!("payroll:{deposit_id}:{purpose}"))?)
        .map_err(|error| PayrollError::Corrupt(format!("transfer id: {error}")))
}

/// Opens the shared accounts (idempotent).
pub async fn open_shared(ledger: &Ledger) -> Result<(), PayrollError> {
    let never_negative = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    let plain = AccountFlags::default();
    let accounts = [
        (virtual_accounts()?, CODE_VIRTUAL, plain),
        (lender()?, CODE_LENDER, never_negative),
        (suspense()?, CODE_SUSPENSE, never_negative),
        (payout()?, CODE_PAYOUT, never_negative),
    ];
    open(ledger, &accounts).await
}

/// Opens a user's wallet (idempotent).
pub async fn open_wallet(ledger: &Ledger, user_id: &str) -> Result<(), PayrollError> {
    let flags = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    open(ledger, &[(wallet(user_id)?, CODE_WALLET, flags)]).await
}

/// Opens many users' wallets in one ledger call (idempotent).
pub async fn open_wallets(ledger: &Ledger, user_ids: &[String]) -> Result<(), PayrollError> {
    let flags = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    let mut accounts = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        accounts.push((wallet(user_id)?, CODE_WALLET, flags));
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
    deposit_id: &str,
    purpose: &str,
    movement: Movement,
    now: Timestamp,
) -> Result<(), PayrollError> {
    let id = transfer_id(deposit_id, purpose)?;
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
