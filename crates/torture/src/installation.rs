//! The one installation every torture run plays: an id secret of its own, the
//! fee accounts and a payout account apart from them, shared by the parent, the
//! in-process children and the `settle serve` processes of the cluster (which
//! take them from the environment, as a real installation's processes do). No
//! production default supplies these accounts: they are named here.
//!
//! The secret is not the published test secret, which `serve` refuses; it is
//! written here because a torture run is a scratch installation whose schema is
//! dropped at the end, never one that holds money.

use bank::{AccountNumber, HolderName};
use fees::FeesConfig;
use money::DerivedIds;

use crate::TortureError;

/// The torture installation's id secret (≥ 32 bytes).
pub(crate) const ID_SECRET: &str = "settle-torture-scratch-installation-id-secret";

/// The fee accounts: fees settle on one and withdraw to the other.
const INSTITUTION_CODE: &str = "F202600001";
const SETTLEMENT_ACCOUNT: &str = "1002000000001";
const SETTLEMENT_HOLDER: &str = "세틀주식회사";
const CORPORATE_ACCOUNT: &str = "1002000000009";
const CORPORATE_HOLDER: &str = "세틀주식회사 법인";

/// The operating account payroll pays salaries out of — not a fee account.
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

/// Fee settlement with this installation's accounts and secret (the
/// workloads tune its limits).
pub(crate) fn fees_config() -> Result<FeesConfig, TortureError> {
    let mut config = FeesConfig::new(
        AccountNumber::new(SETTLEMENT_ACCOUNT)?,
        HolderName::new(SETTLEMENT_HOLDER)?,
        AccountNumber::new(CORPORATE_ACCOUNT)?,
        HolderName::new(CORPORATE_HOLDER)?,
        ids()?,
    );
    config.institution_code = INSTITUTION_CODE.to_owned();
    Ok(config)
}

/// The environment a `settle serve` of this installation needs: the secret,
/// the accounts, and the bank's kind (`settle bank-sim`; its URL is a flag).
pub(crate) fn serve_env() -> [(&'static str, &'static str); 9] {
    [
        ("SETTLE_ID_SECRET", ID_SECRET),
        ("SETTLE_PAYOUT_ACCOUNT", PAYOUT_ACCOUNT),
        ("SETTLE_PAYOUT_HOLDER", PAYOUT_HOLDER),
        ("SETTLE_BANK__KIND", "bank-sim"),
        ("SETTLE_FEES__INSTITUTION_CODE", INSTITUTION_CODE),
        ("SETTLE_FEES__SETTLEMENT_ACCOUNT", SETTLEMENT_ACCOUNT),
        ("SETTLE_FEES__SETTLEMENT_HOLDER", SETTLEMENT_HOLDER),
        ("SETTLE_FEES__CORPORATE_ACCOUNT", CORPORATE_ACCOUNT),
        ("SETTLE_FEES__CORPORATE_HOLDER", CORPORATE_HOLDER),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installation_is_one_serve_accepts() {
        let ids = ids().unwrap();
        assert!(!ids.is_test_secret());
        let fees = fees_config().unwrap();
        let payout = payout_account().unwrap();
        assert_ne!(payout, fees.settlement_account);
        assert_ne!(payout, fees.corporate_account);
    }
}
