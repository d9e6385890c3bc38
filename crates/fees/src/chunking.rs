//! Splitting an amount into bank calls, and naming each call. A payout of 250,000
//! KRW under a 100,000 KRW per-call limit is chunks 100,000 + 100,000 + 50,000;
//! chunk `n` of an item always has the same amount, whatever the attempt.
//!
//! A chunk's `bank_tran_id` is the institution code, `U`, then nine characters:
//! the purpose (`F` payout, `W` withdraw), the business day in three base-36
//! digits, and the day's chunk sequence in five. Sequences are handed out in the
//! transaction that stores the chunk, so an id is never reused for another chunk.

use bank::BankTranId;
use money::Krw;

use crate::{BusinessDay, FeesError};

/// Chunks one day may hand out per purpose: five base-36 digits.
pub const DAY_CHUNKS_MAX: i64 = 36_i64.pow(5);
/// Chunks one item may split into; bounds the work an absurd amount could cause.
pub const ITEM_CHUNKS_MAX: i64 = 10_000;

const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Why a chunk exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// An item's fee moving from the loan's account to the settlement account.
    Payout,
    /// The day's total moving from the settlement account to the corporate account.
    Withdraw,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Payout => "pay",
            Purpose::Withdraw => "withdraw",
        }
    }

    fn letter(self) -> u8 {
        match self {
            Purpose::Payout => b'F',
            Purpose::Withdraw => b'W',
        }
    }
}

/// Splits a positive `amount` into chunks of at most `limit`, largest first.
pub fn split(amount: Krw, limit: Krw) -> Result<Vec<Krw>, FeesError> {
    if !amount.is_positive() || !limit.is_positive() {
        return Err(FeesError::Invalid(format!(
            "cannot split {amount} into chunks of {limit}"
        )));
    }
    let full = amount.get() / limit.get();
    let rest = amount.get() % limit.get();
    let count = full + i64::from(rest > 0);
    if count > ITEM_CHUNKS_MAX {
        return Err(FeesError::Invalid(format!(
            "{amount} would need {count} chunks, over {ITEM_CHUNKS_MAX}"
        )));
    }
    let mut chunks: Vec<Krw> = (0..full).map(|_| limit).collect();
    if rest > 0 {
        chunks.push(Krw::new(rest));
    }
    Ok(chunks)
}

/// The `bank_tran_id` of the `sequence`-th chunk of `purpose` on `day`.
pub fn bank_tran_id(
    institution_code: &str,
    purpose: Purpose,
    day: BusinessDay,
    sequence: i64,
) -> Result<BankTranId, FeesError> {
    if !(0..DAY_CHUNKS_MAX).contains(&sequence) {
        return Err(FeesError::Invalid(format!(
            "chunk sequence {sequence} is over the day's {DAY_CHUNKS_MAX}"
        )));
    }
    let mut tail = [b'0'; 9];
    tail[0] = purpose.letter();
    let mut day_number = day.days_since_epoch();
    for slot in tail[1..4].iter_mut().rev() {
        *slot = DIGITS[usize::try_from(day_number % 36).unwrap_or(0)];
        day_number /= 36;
    }
    let mut rest = sequence;
    for slot in tail[4..9].iter_mut().rev() {
        *slot = DIGITS[usize::try_from(rest % 36).unwrap_or(0)];
        rest /= 36;
    }
    let tail = String::from_utf8_lossy(&tail);
    Ok(BankTranId::new(&format!("{institution_code}U{tail}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundred_fifty_thousand_is_two_full_chunks_and_fifty_thousand() {
        let chunks = split(Krw::new(250_000), Krw::new(100_000)).unwrap();
        assert_eq!(
            chunks,
            vec![Krw::new(100_000), Krw::new(100_000), Krw::new(50_000)]
        );
        assert_eq!(
            split(Krw::new(100_000), Krw::new(100_000)).unwrap(),
            vec![Krw::new(100_000)]
        );
        assert_eq!(
            split(Krw::new(1), Krw::new(100_000)).unwrap(),
            vec![Krw::new(1)]
        );
        assert!(split(Krw::ZERO, Krw::new(100_000)).is_err());
        assert!(split(Krw::new(10_000_000_000), Krw::new(1)).is_err());
    }

    #[test]
    fn chunk_ids_differ_by_purpose_day_and_sequence() {
        let day = BusinessDay::parse("2026-11-23").unwrap();
        let a = bank_tran_id("F000000001", Purpose::Payout, day, 0).unwrap();
        let b = bank_tran_id("F000000001", Purpose::Payout, day, 1).unwrap();
        let c = bank_tran_id("F000000001", Purpose::Withdraw, day, 0).unwrap();
        let d = bank_tran_id("F000000001", Purpose::Payout, day.next(), 0).unwrap();
        let ids = [&a, &b, &c, &d];
        for (i, x) in ids.iter().enumerate() {
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert!(a.as_str().starts_with("F000000001UF"));
        assert!(bank_tran_id("F000000001", Purpose::Payout, day, DAY_CHUNKS_MAX).is_err());
    }
}
