//! settle's own (house) bank accounts each serve one purpose: the payout
//! operating account payroll pays users from, the fee settlement account fee
//! Pay moves fees into, the corporate account fee Withdraw moves them to. The
//! configuration ([`crate::settings`]) refuses one account named for two
//! purposes, naming both keys. Nothing here supplies a default: each account
//! must be named.

use bank::AccountNumber;

/// Every pair of `named` (configuration key, account) that share an account:
/// (first key, second key, the account).
pub fn clashes<'a>(
    named: &[(&'a str, &'a AccountNumber)],
) -> Vec<(&'a str, &'a str, &'a AccountNumber)> {
    let mut found = Vec::new();
    for (index, (key, account)) in named.iter().enumerate() {
        for (other, _) in named[index + 1..].iter().filter(|(_, a)| a == account) {
            found.push((*key, *other, *account));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_for_two_purposes_is_found_naming_both_keys() {
        let a = AccountNumber::new("1002000000001").unwrap();
        let b = AccountNumber::new("1002000000002").unwrap();
        assert!(clashes(&[("x", &a), ("y", &b)]).is_empty());
        let found = clashes(&[("p", &a), ("s", &a), ("c", &a)]);
        let keys: Vec<(&str, &str)> = found.iter().map(|(k, o, _)| (*k, *o)).collect();
        assert_eq!(keys, [("p", "s"), ("p", "c"), ("s", "c")]);
    }
}
