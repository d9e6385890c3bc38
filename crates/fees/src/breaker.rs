//! The per-bank circuit breaker of fee sending: after a run of "not processed"
//! answers in a row (429, maintenance, busy, nothing sent) it opens and sending
//! pauses for a while, then resumes by itself — the next call after the pause is
//! let through, and any answer that is not transient closes it again.
//!
//! It only ever delays sending; it never fails, voids or blocks a chunk, and it
//! never reads the clock itself (callers pass the time).

use std::sync::Mutex;

/// Shared by every clone of one `Fees` (one bank).
#[derive(Debug)]
pub(crate) struct Breaker {
    transients_to_open: u32,
    open_ms: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Transient answers in a row since the last other answer.
    transients_in_row: u32,
    /// Sending is paused until then.
    open_until_ms: i64,
    /// Times it opened, for the run's counts.
    opened_total: u64,
}

impl Breaker {
    pub(crate) fn new(transients_to_open: u32, open_ms: i64) -> Breaker {
        Breaker {
            transients_to_open: transients_to_open.max(1),
            open_ms: open_ms.max(0),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of two counters;
        // the counters are still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(until_ms)` while sending is paused.
    pub(crate) fn open_until(&self, now_ms: i64) -> Option<i64> {
        let state = self.state();
        (state.open_until_ms > now_ms).then_some(state.open_until_ms)
    }

    /// Counts one answer; opens the breaker on the N-th transient answer in a row.
    pub(crate) fn record(&self, transient: bool, now_ms: i64) {
        let mut state = self.state();
        if !transient {
            state.transients_in_row = 0;
            return;
        }
        state.transients_in_row = state.transients_in_row.saturating_add(1);
        if state.transients_in_row >= self.transients_to_open && state.open_until_ms <= now_ms {
            state.transients_in_row = 0;
            state.open_until_ms = now_ms.saturating_add(self.open_ms);
            state.opened_total += 1;
            metrics::counter!("fees_bank_breaker_opened_total").increment(1);
            tracing::warn!(
                open_ms = self.open_ms,
                "the bank keeps answering 'not processed'; fee sending pauses"
            );
        }
    }

    pub(crate) fn opened_total(&self) -> u64 {
        self.state().opened_total
    }
}

/// When a chunk answered "not processed" for the `answers`-th time may be sent
/// again: exponential from `min_ms`, capped at `max_ms`.
pub(crate) fn backoff_ms(answers: i64, min_ms: i64, max_ms: i64) -> i64 {
    let doublings = u32::try_from(answers.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    min_ms
        .saturating_mul(1_i64.checked_shl(doublings).unwrap_or(i64::MAX))
        .min(max_ms)
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_on_the_nth_transient_in_a_row_and_resumes_by_itself() {
        let breaker = Breaker::new(3, 10_000);
        breaker.record(true, 0);
        breaker.record(true, 0);
        breaker.record(false, 0);
        breaker.record(true, 0);
        breaker.record(true, 0);
        assert_eq!(breaker.open_until(0), None);
        breaker.record(true, 5);
        assert_eq!(breaker.open_until(5), Some(10_005));
        assert_eq!(breaker.open_until(10_005), None);
        assert_eq!(breaker.opened_total(), 1);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1, 1_000, 60_000), 1_000);
        assert_eq!(backoff_ms(2, 1_000, 60_000), 2_000);
        assert_eq!(backoff_ms(4, 1_000, 60_000), 8_000);
        assert_eq!(backoff_ms(100, 1_000, 60_000), 60_000);
    }
}
