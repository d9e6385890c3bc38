//! The six fee kinds and their codes in the ledger's chart of transfers. A kind's
//! code is stored on every accrual, hold, post and void, so ledger totals can be
//! split by kind without reading `fees` tables.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a fee is for.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FeeKind {
    Tax,
    PlatformFee,
    EarlyRepaymentFee,
    /// 후취: charged after the loan is repaid.
    DeferredFee,
    /// 선취: charged when the loan is paid out.
    UpfrontFee,
    WithdrawalFee,
}

impl FeeKind {
    pub const ALL: [FeeKind; 6] = [
        FeeKind::Tax,
        FeeKind::PlatformFee,
        FeeKind::EarlyRepaymentFee,
        FeeKind::DeferredFee,
        FeeKind::UpfrontFee,
        FeeKind::WithdrawalFee,
    ];

    /// The transfer code in the ledger.
    pub fn code(self) -> u16 {
        match self {
            FeeKind::Tax => 7101,
            FeeKind::PlatformFee => 7102,
            FeeKind::EarlyRepaymentFee => 7103,
            FeeKind::DeferredFee => 7104,
            FeeKind::UpfrontFee => 7105,
            FeeKind::WithdrawalFee => 7106,
        }
    }

    pub fn from_code(code: u16) -> Option<FeeKind> {
        FeeKind::ALL.into_iter().find(|kind| kind.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            FeeKind::Tax => "tax",
            FeeKind::PlatformFee => "platform_fee",
            FeeKind::EarlyRepaymentFee => "early_repayment_fee",
            FeeKind::DeferredFee => "deferred_fee",
            FeeKind::UpfrontFee => "upfront_fee",
            FeeKind::WithdrawalFee => "withdrawal_fee",
        }
    }

    pub fn parse(text: &str) -> Option<FeeKind> {
        FeeKind::ALL.into_iter().find(|kind| kind.name() == text)
    }
}

impl fmt::Display for FeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_code_and_name() {
        for kind in FeeKind::ALL {
            assert_eq!(FeeKind::from_code(kind.code()), Some(kind));
            assert_eq!(FeeKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(FeeKind::from_code(7000), None);
    }
}
