//! Business days in Asia/Seoul (UTC+9, no daylight saving). A [`BusinessDay`] is
//! parsed once from `YYYY-MM-DD` and is valid from then on; it knows when it starts
//! and ends in UTC so the rest of `fees` never does calendar arithmetic.
//!
//! This module does no I/O and never reads the clock: callers pass a `Timestamp`.

use std::fmt;
use std::str::FromStr;

use money::Timestamp;
use serde::{Deserialize, Serialize};

const KST_OFFSET_MS: i64 = 9 * 60 * 60 * 1_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1_000;
/// 2000-01-01 as days since the Unix epoch: the first day fees can settle.
const FIRST_DAY: i64 = 10_957;
/// 9999-12-31 as days since the Unix epoch.
const LAST_DAY: i64 = 2_932_896;

/// Why a business day was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("business day {0:?} is not a date YYYY-MM-DD between 2000-01-01 and 9999-12-31")]
pub struct BadDay(pub String);

/// A calendar day in Korea, the unit fees are settled by.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description" = "a calendar day in Korea, YYYY-MM-DD"))]
pub struct BusinessDay {
    /// Days since 1970-01-01.
    days: i64,
}

impl BusinessDay {
    /// Parses `YYYY-MM-DD`, refusing impossible dates such as 2025-02-29.
    pub fn parse(text: &str) -> Result<BusinessDay, BadDay> {
        let bad = || BadDay(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let digits = |range: std::ops::Range<usize>| -> Result<i64, BadDay> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<i64>().map_err(|_| bad())
        };
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        if !(FIRST_DAY..=LAST_DAY).contains(&days) {
            return Err(bad());
        }
        Ok(BusinessDay { days })
    }

    /// The Korean calendar day containing `at`.
    pub fn from_kst(at: Timestamp) -> BusinessDay {
        let days = at
            .unix_ms()
            .saturating_add(KST_OFFSET_MS)
            .div_euclid(DAY_MS);
        BusinessDay {
            days: days.clamp(FIRST_DAY, LAST_DAY),
        }
    }

    /// Midnight KST at the start of this day.
    pub fn starts_at(self) -> Timestamp {
        Timestamp::from_unix_ms(self.days * DAY_MS - KST_OFFSET_MS)
    }

    /// Midnight KST at the end of this day: from then on the day is closed.
    pub fn ends_at(self) -> Timestamp {
        Timestamp::from_unix_ms((self.days + 1) * DAY_MS - KST_OFFSET_MS)
    }

    /// True once the day is over in Seoul.
    pub fn is_closed_at(self, now: Timestamp) -> bool {
        now >= self.ends_at()
    }

    pub fn next(self) -> BusinessDay {
        BusinessDay {
            days: (self.days + 1).min(LAST_DAY),
        }
    }

    pub fn previous(self) -> BusinessDay {
        BusinessDay {
            days: (self.days - 1).max(FIRST_DAY),
        }
    }

    /// Days since 1970-01-01 (for compact identifiers).
    pub fn days_since_epoch(self) -> i64 {
        self.days
    }

    /// `YYYYMMDD` as a number, e.g. 20261123 (ledger user data).
    pub fn as_yyyymmdd(self) -> u64 {
        let (y, m, d) = civil_from_days(self.days);
        u64::try_from(y * 10_000 + m * 100 + d).unwrap_or(0)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Proleptic Gregorian date to days since 1970-01-01 (years counted from March so
/// the leap day is last).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for BusinessDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl fmt::Debug for BusinessDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BusinessDay({self})")
    }
}

impl FromStr for BusinessDay {
    type Err = BadDay;
    fn from_str(text: &str) -> Result<BusinessDay, BadDay> {
        BusinessDay::parse(text)
    }
}

impl TryFrom<String> for BusinessDay {
    type Error = BadDay;
    fn try_from(text: String) -> Result<BusinessDay, BadDay> {
        BusinessDay::parse(&text)
    }
}

impl From<BusinessDay> for String {
    fn from(day: BusinessDay) -> String {
        day.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_round_trips_and_impossible_dates_are_refused() {
        for text in ["2026-11-23", "2024-02-29", "2000-01-01", "9999-12-31"] {
            assert_eq!(BusinessDay::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-10",
            "20261123",
            "1999-12-31",
            "2026-11-2x",
            "",
        ] {
            assert!(BusinessDay::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_day_runs_from_midnight_to_midnight_in_seoul() {
        let day = BusinessDay::parse("2026-11-23").unwrap();
        // 2026-11-22T15:00:00Z is midnight in Seoul.
        assert_eq!(day.starts_at().unix_ms(), 1_795_359_600_000);
        assert_eq!(BusinessDay::from_kst(day.starts_at()), day);
        assert_eq!(BusinessDay::from_kst(day.ends_at().plus_ms(-1)), day);
        assert_eq!(BusinessDay::from_kst(day.ends_at()), day.next());
        assert!(!day.is_closed_at(day.ends_at().plus_ms(-1)));
        assert!(day.is_closed_at(day.ends_at()));
        assert_eq!(day.as_yyyymmdd(), 20_261_123);
        assert_eq!(day.next().previous(), day);
    }
}
