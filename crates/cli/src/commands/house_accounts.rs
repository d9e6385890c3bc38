//! settle's own (house) bank accounts each serve one purpose: the payout
//! operating account payroll pays users from, the fee settlement account fee
//! Pay moves fees into, the corporate account fee Withdraw moves them to. Where
//! the configuration of two of them meets (`serve`, `payroll …`), this refuses
//! one account named for two purposes, naming both keys. It never supplies a
//! default: each account must be named.

use bank::AccountNumber;

use super::CliError;

/// Refuses the first pair of `named` (configuration key, account) that share an
/// account.
pub fn distinct(named: &[(&str, &AccountNumber)]) -> Result<(), CliError> {
    for (index, (key, account)) in named.iter().enumerate() {
        if let Some((other, _)) = named[index + 1..].iter().find(|(_, a)| a == account) {
            return Err(CliError::new(
                "accounts_not_distinct",
                format!(
                    "{key} and {other} both name account {account}; each purpose needs its own account"
                ),
            ));
        }
    }
    Ok(())
}

/// The payout account against the fee accounts of `fees`.
pub fn payout_apart_from_fees(
    payout_key: &str,
    payout: &AccountNumber,
    fees: &fees::FeesConfig,
) -> Result<(), CliError> {
    distinct(&[
        (payout_key, payout),
        ("fees.settlement_account", &fees.settlement_account),
        ("fees.corporate_account", &fees.corporate_account),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_for_two_purposes_is_refused_naming_both_keys() {
        let a = AccountNumber::new("1002000000001").unwrap();
        let b = AccountNumber::new("1002000000002").unwrap();
        assert!(distinct(&[("x", &a), ("y", &b)]).is_ok());
        let refused =
            distinct(&[("--payout-account", &a), ("fees.settlement_account", &a)]).unwrap_err();
        assert_eq!(refused.code, "accounts_not_distinct");
        assert!(refused.message.contains("--payout-account"));
        assert!(refused.message.contains("fees.settlement_account"));
    }
}
