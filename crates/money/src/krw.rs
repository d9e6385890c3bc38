//! Won amounts. The won has no minor unit, so an amount is a whole number of won in
//! an `i64`; arithmetic is checked and never wraps.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an amount was refused. Each variant has a stable [`MoneyError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount {0:?} is not a whole number of won")]
    NotAnInteger(String),
    #[error("amount {0:?} does not fit in 64 bits")]
    Overflow(String),
    #[error("amount must be positive, got {0}")]
    NotPositive(i64),
    #[error("arithmetic on amounts overflowed")]
    ArithmeticOverflow,
}

impl MoneyError {
    /// A stable, machine-readable code for APIs and CLIs.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::NotAnInteger(_) => "amount_not_integer",
            MoneyError::Overflow(_) => "amount_overflow",
            MoneyError::NotPositive(_) => "amount_not_positive",
            MoneyError::ArithmeticOverflow => "amount_overflow",
        }
    }
}

/// An amount of Korean won. Signed, because balances and deltas can be negative;
/// use [`Krw::positive`] or [`Krw::parse_positive`] where only a positive amount
/// makes sense. In JSON it is a plain integer: `1.5` or `"1"` do not deserialize.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Krw(i64);

impl Krw {
    pub const ZERO: Krw = Krw(0);
    pub const MAX: Krw = Krw(i64::MAX);

    /// Any whole number of won, of either sign.
    pub const fn new(won: i64) -> Krw {
        Krw(won)
    }

    /// An amount that must be strictly positive (a transfer, a payout chunk).
    pub fn positive(won: i64) -> Result<Krw, MoneyError> {
        if won > 0 {
            Ok(Krw(won))
        } else {
            Err(MoneyError::NotPositive(won))
        }
    }

    /// Parses a decimal integer such as `"250000"` or `"-3"`. Decimal points,
    /// exponents, separators and surrounding text are refused rather than rounded.
    pub fn parse(text: &str) -> Result<Krw, MoneyError> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::NotAnInteger(text.to_owned()));
        }
        text.parse::<i64>()
            .map(Krw)
            .map_err(|_| MoneyError::Overflow(text.to_owned()))
    }

    /// [`Krw::parse`], then [`Krw::positive`].
    pub fn parse_positive(text: &str) -> Result<Krw, MoneyError> {
        Krw::positive(Krw::parse(text)?.0)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, other: Krw) -> Result<Krw, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Krw)
            .ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn checked_sub(self, other: Krw) -> Result<Krw, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Krw)
            .ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn checked_mul(self, factor: i64) -> Result<Krw, MoneyError> {
        self.0
            .checked_mul(factor)
            .map(Krw)
            .ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn checked_neg(self) -> Result<Krw, MoneyError> {
        self.0
            .checked_neg()
            .map(Krw)
            .ok_or(MoneyError::ArithmeticOverflow)
    }

    /// Sums amounts, failing on overflow instead of wrapping.
    pub fn checked_sum<I: IntoIterator<Item = Krw>>(amounts: I) -> Result<Krw, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Krw::ZERO, |total, amount| total.checked_add(amount))
    }
}

impl FromStr for Krw {
    type Err = MoneyError;
    fn from_str(text: &str) -> Result<Krw, MoneyError> {
        Krw::parse(text)
    }
}

impl fmt::Display for Krw {
    /// `1234567` is shown as `₩1,234,567`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.unsigned_abs().to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}₩{grouped}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_accepts_whole_numbers_only() {
        assert_eq!(Krw::parse("250000"), Ok(Krw(250_000)));
        assert_eq!(Krw::parse("-3"), Ok(Krw(-3)));
        for bad in ["", "-", "1.5", "1e3", "1,000", " 1", "+1", "abc", "0x10"] {
            assert!(
                matches!(Krw::parse(bad), Err(MoneyError::NotAnInteger(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn parse_refuses_overflow() {
        let err = Krw::parse("9223372036854775808").unwrap_err();
        assert_eq!(err.code(), "amount_overflow");
        assert_eq!(Krw::parse("9223372036854775807"), Ok(Krw::MAX));
    }

    #[test]
    fn positive_refuses_zero_and_negative() {
        assert_eq!(Krw::positive(0).unwrap_err().code(), "amount_not_positive");
        assert_eq!(
            Krw::parse_positive("-5").unwrap_err().code(),
            "amount_not_positive"
        );
        assert_eq!(Krw::parse_positive("5"), Ok(Krw(5)));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(
            Krw::MAX.checked_add(Krw(1)),
            Err(MoneyError::ArithmeticOverflow)
        );
        assert_eq!(
            Krw(i64::MIN).checked_sub(Krw(1)),
            Err(MoneyError::ArithmeticOverflow)
        );
        assert_eq!(
            Krw(i64::MIN).checked_neg(),
            Err(MoneyError::ArithmeticOverflow)
        );
        assert_eq!(Krw::checked_sum([Krw(1), Krw(2), Krw(3)]), Ok(Krw(6)));
        assert!(Krw::checked_sum([Krw::MAX, Krw(1)]).is_err());
    }

    #[test]
    fn json_is_an_integer_and_floats_are_refused() {
        assert_eq!(serde_json::to_string(&Krw(100_000)).unwrap(), "100000");
        assert_eq!(serde_json::from_str::<Krw>("100000").unwrap(), Krw(100_000));
        assert!(serde_json::from_str::<Krw>("1.5").is_err());
        assert!(serde_json::from_str::<Krw>("\"1\"").is_err());
        assert!(serde_json::from_str::<Krw>("1e30").is_err());
    }

    #[test]
    fn display_groups_thousands() {
        assert_eq!(Krw(1_234_567).to_string(), "₩1,234,567");
        assert_eq!(Krw(-1000).to_string(), "-₩1,000");
        assert_eq!(Krw(999).to_string(), "₩999");
    }

    proptest! {
        #[test]
        fn parse_round_trips(won in any::<i64>()) {
            prop_assert_eq!(Krw::parse(&won.to_string()), Ok(Krw(won)));
        }

        #[test]
        fn checked_add_agrees_with_i128(a in any::<i64>(), b in any::<i64>()) {
            let wide = i128::from(a) + i128::from(b);
            match Krw(a).checked_add(Krw(b)) {
                Ok(sum) => prop_assert_eq!(i128::from(sum.get()), wide),
                Err(_) => prop_assert!(wide > i128::from(i64::MAX) || wide < i128::from(i64::MIN)),
            }
        }
    }
}
