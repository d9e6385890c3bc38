//! The one installation every torture run plays: an id secret of its own and a
//! payout account apart from the fee accounts, shared by the parent, the
//! in-process children and the `settle serve` processes of the cluster (which
//! take them from the environment, as a real installation's processes do).
//!
//! The secret is not the published test secret, which `serve` refuses; it is
//! written here because a torture run is a scratch installation whose schema is
//! dropped at the end, never one that holds money.

use bank::{AccountNumber, HolderName};
use money::DerivedIds;

use crate::TortureError;

/// The torture installation's id secret (≥ 32 bytes).
pub(crate) const ID_SECRET: &str = "settle-torture-scratch-installation-id-secret";

/// The operating account payroll pays salaries out of — not a fee account
/// (fees settle on 1002000000001 and withdraw to 1002000000009).
pub(crate) const PAYOUT_ACCOUNT: &str = "1002000000021";
pub(crate) const PAYOUT_HOLDER: &str = "세틀주식회사 급여";

pub(crate) fn ids() -> Result<DerivedIds, TortureError> {
    DerivedIds::new(ID_SECRET.as_bytes())
        .map_err(|e| TortureError::Invalid(format!("the torture id secret: {e}")))
}

pub(crate) fn payout_account() -> Result<AccountNumber, TortureError> {
    Ok(AccountNumber::new(PAYOUT_ACCOUNT)?)
}

pub(crate) fn payout_holder() -> Result<HolderName, TortureError> {
    Ok(HolderName::new(PAYOUT_HOLDER)?)
}

/// The environment a `settle serve` of this installation needs.
pub(crate) fn serve_env() -> [(&'static str, &'static str); 3] {
    [
        ("SETTLE_ID_SECRET", ID_SECRET),
        ("SETTLE_PAYOUT_ACCOUNT", PAYOUT_ACCOUNT),
        ("SETTLE_PAYOUT_HOLDER", PAYOUT_HOLDER),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installation_is_one_serve_accepts() {
        let ids = ids().unwrap();
        assert!(!ids.is_test_secret());
        let fees = fees::bench::bench_config().unwrap();
        let payout = payout_account().unwrap();
        assert_ne!(payout, fees.settlement_account);
        assert_ne!(payout, fees.corporate_account);
    }
}
