//! A realistic day of fees, generated from a seed: loans with 1–3 fee kinds each,
//! several accruals per kind, item totals from a few thousand won to several
//! hundred thousand (1 to several 100,000-KRW chunks). Used by tests, the demo and
//! the benchmark; the same (day, loans, seed) always yields the same workload.
//!
//! [`provision_bank`] opens the matching accounts at a bank simulator and funds
//! each loan's account with what its borrower paid in. Nothing here settles.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bank::sim::{OpenAccount, Salary};
use bank::{AccountNumber, BankError, HolderName};
use money::{Krw, TransferId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

use crate::accrual::{Accrual, Loan};
use crate::{BusinessDay, FeeKind, FeesConfig, FeesError};

/// Loans one generated workload may hold.
pub const WORKLOAD_LOANS_MAX: usize = 1_000_000;

const NAMESPACE: Uuid = Uuid::from_u128(0x5e77_1e00_fee5_4000_8000_0000_0000_0002);
const SURNAMES: [&str; 8] = ["김", "이", "박", "최", "정", "강", "조", "윤"];
const GIVEN: [&str; 8] = [
    "민지", "서준", "하은", "도윤", "지우", "예준", "수아", "시우",
];

/// One generated day.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub day: BusinessDay,
    pub loans: Vec<Loan>,
    pub accruals: Vec<Accrual>,
}

impl Workload {
    /// What each loan's borrower paid in: the sum of its accruals.
    pub fn totals_by_loan(&self) -> Result<BTreeMap<u64, Krw>, FeesError> {
        let mut totals: BTreeMap<u64, Krw> = BTreeMap::new();
        for accrual in &self.accruals {
            let total = totals.entry(accrual.loan_id).or_insert(Krw::ZERO);
            *total = total.checked_add(accrual.amount)?;
        }
        Ok(totals)
    }

    pub fn total(&self) -> Result<Krw, FeesError> {
        Ok(Krw::checked_sum(self.accruals.iter().map(|a| a.amount))?)
    }
}

/// The bank account of loan `loan_id`: 14 digits.
pub fn loan_bank_account(loan_id: u64) -> Result<AccountNumber, FeesError> {
    Ok(AccountNumber::new(&format!(
        "5{:013}",
        loan_id % 10_000_000_000_000
    ))?)
}

/// A realistic mix of accruals for loans 1..=`loans` on `day`.
pub fn generate(day: BusinessDay, loans: usize, seed: u64) -> Result<Workload, FeesError> {
    generate_shaped(day, loans, seed, 3)
}

/// [`generate`] with at most `kinds_per_loan_max` fee kinds per loan (1 gives one
/// item per loan, as the benchmark wants).
pub fn generate_shaped(
    day: BusinessDay,
    loans: usize,
    seed: u64,
    kinds_per_loan_max: usize,
) -> Result<Workload, FeesError> {
    if loans > WORKLOAD_LOANS_MAX || kinds_per_loan_max == 0 {
        return Err(FeesError::Invalid(format!(
            "a workload has 0..={WORKLOAD_LOANS_MAX} loans and at least one kind per loan"
        )));
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ (day.as_yyyymmdd().rotate_left(32)));
    let mut workload = Workload {
        day,
        loans: Vec::with_capacity(loans),
        accruals: Vec::new(),
    };
    for n in 1..=loans as u64 {
        let holder = format!(
            "{}{}",
            SURNAMES[rng.random_range(0..SURNAMES.len())],
            GIVEN[rng.random_range(0..GIVEN.len())]
        );
        workload.loans.push(Loan {
            loan_id: n,
            bank_account: loan_bank_account(n)?,
            holder_name: HolderName::new(&holder)?,
        });
        let kinds_wanted = rng.random_range(1..=kinds_per_loan_max.min(FeeKind::ALL.len()));
        let mut kinds: Vec<FeeKind> = Vec::with_capacity(kinds_wanted);
        while kinds.len() < kinds_wanted {
            let kind = pick_kind(&mut rng);
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        for kind in kinds {
            let (low, high) = amount_range(kind);
            let pieces = rng.random_range(1..=3);
            for _ in 0..pieces {
                // Round to 10 won, as fee schedules do.
                let amount = rng.random_range(low..=high) / pieces / 10 * 10;
                let index = workload.accruals.len();
                let id = Uuid::new_v5(
                    &NAMESPACE,
                    format!("accrual/{day}/{seed}/{index}").as_bytes(),
                );
                workload.accruals.push(Accrual {
                    id: TransferId::from_uuid(id).map_err(|e| FeesError::Invalid(e.to_string()))?,
                    day,
                    loan_id: n,
                    kind,
                    amount: Krw::positive(amount.max(10))?,
                });
            }
        }
    }
    Ok(workload)
}

/// Platform fees and tax are on most loans; the rest are rarer.
fn pick_kind(rng: &mut SmallRng) -> FeeKind {
    match rng.random_range(0..100) {
        0..30 => FeeKind::PlatformFee,
        30..55 => FeeKind::Tax,
        55..70 => FeeKind::DeferredFee,
        70..82 => FeeKind::UpfrontFee,
        82..92 => FeeKind::EarlyRepaymentFee,
        _ => FeeKind::WithdrawalFee,
    }
}

/// Item totals per kind, in won.
fn amount_range(kind: FeeKind) -> (i64, i64) {
    match kind {
        FeeKind::Tax => (3_000, 120_000),
        FeeKind::PlatformFee => (20_000, 260_000),
        FeeKind::EarlyRepaymentFee => (60_000, 480_000),
        FeeKind::DeferredFee => (10_000, 320_000),
        FeeKind::UpfrontFee => (30_000, 400_000),
        FeeKind::WithdrawalFee => (500, 5_000),
    }
}

/// The admin side of a bank simulator, in process or over HTTP.
#[async_trait]
pub trait BankAdmin: Send + Sync {
    async fn open_account(&self, open: &OpenAccount) -> Result<(), BankError>;
    async fn pay_in(&self, salary: &Salary) -> Result<(), BankError>;
}

#[async_trait]
impl BankAdmin for bank::sim::Simulator {
    async fn open_account(&self, open: &OpenAccount) -> Result<(), BankError> {
        bank::sim::Simulator::open_account(self, open).await
    }
    async fn pay_in(&self, salary: &Salary) -> Result<(), BankError> {
        self.pay_salary(salary).await.map(|_| ())
    }
}

#[async_trait]
impl BankAdmin for bank::sim::AdminClient {
    async fn open_account(&self, open: &OpenAccount) -> Result<(), BankError> {
        bank::sim::AdminClient::open_account(self, open).await
    }
    async fn pay_in(&self, salary: &Salary) -> Result<(), BankError> {
        self.pay_salary(salary).await.map(|_| ())
    }
}

async fn open_if_missing(
    admin: &dyn BankAdmin,
    account_number: &AccountNumber,
    holder_name: &HolderName,
) -> Result<(), BankError> {
    let open = OpenAccount {
        account_number: account_number.clone(),
        holder_name: holder_name.clone(),
        balance_krw: Krw::ZERO,
    };
    match admin.open_account(&open).await {
        Ok(()) => Ok(()),
        Err(BankError::InvalidRequest(message)) if message.contains("already exists") => Ok(()),
        Err(error) => Err(error),
    }
}

/// Opens the settlement and corporate accounts and every loan's account, and pays
/// into each loan's account what its borrower owes for the day.
pub async fn provision_bank(
    admin: &dyn BankAdmin,
    config: &FeesConfig,
    workload: &Workload,
) -> Result<(), FeesError> {
    open_if_missing(admin, &config.settlement_account, &config.settlement_holder).await?;
    open_if_missing(admin, &config.corporate_account, &config.corporate_holder).await?;
    let totals = workload.totals_by_loan()?;
    for loan in &workload.loans {
        open_if_missing(admin, &loan.bank_account, &loan.holder_name).await?;
        if let Some(total) = totals.get(&loan.loan_id).filter(|t| t.is_positive()) {
            admin
                .pay_in(&Salary {
                    account_number: loan.bank_account.clone(),
                    amount_krw: *total,
                    depositor_name: loan.holder_name.to_string(),
                })
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_day_and_items_need_one_to_several_chunks() {
        let day = BusinessDay::parse("2026-11-23").unwrap();
        let a = generate(day, 200, 7).unwrap();
        let b = generate(day, 200, 7).unwrap();
        assert_eq!(a.accruals, b.accruals);
        assert_ne!(a.accruals, generate(day, 200, 8).unwrap().accruals);
        let mut items: BTreeMap<(u64, FeeKind), i64> = BTreeMap::new();
        for accrual in &a.accruals {
            *items.entry((accrual.loan_id, accrual.kind)).or_default() += accrual.amount.get();
        }
        let chunks = |amount: i64| (amount + 99_999) / 100_000;
        assert!(items.values().any(|a| chunks(*a) == 1));
        assert!(items.values().any(|a| chunks(*a) >= 3));
        assert!(items.values().all(|a| *a > 0));
        let one_kind = generate_shaped(day, 50, 7, 1).unwrap();
        let kinds: std::collections::BTreeSet<(u64, FeeKind)> = one_kind
            .accruals
            .iter()
            .map(|a| (a.loan_id, a.kind))
            .collect();
        assert_eq!(kinds.len(), 50, "one item per loan");
    }
}
