//! How many times each `bank_tran_id` reached the simulator: every deposit or
//! withdraw transfer request it received, whatever became of it — answered with
//! success, a refusal or a transient error, refused 429 at the door, held past the
//! caller's timeout, or dropped before the simulator decided it (it rolled back
//! and had no effect; it is counted as received and, separately, as cut off). Over
//! HTTP a request is always decided, client there or not, as at a bank; only an
//! in-process caller that drops the future cuts one off. So "no id was submitted
//! twice" can fail for any second send, not only for a second decided one.
//!
//! In memory, shared by a simulator's clones, and bounded: past
//! [`SUBMISSIONS_TRACKED_MAX`] ids it stops tracking new ones and says so, rather
//! than forget and report a wrong count.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Distinct ids tracked at most.
pub const SUBMISSIONS_TRACKED_MAX: usize = 1 << 20;
/// Repeated ids one report lists at most.
pub const REPEATED_LISTED_MAX: usize = 1_000;

#[derive(Debug, Default)]
pub(crate) struct Submissions {
    seen: Mutex<Tracked>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    received: u32,
    cut_off: u32,
}

#[derive(Debug, Default)]
struct Tracked {
    counts: HashMap<String, Count>,
    submissions_total: u64,
    cut_off_total: u64,
    overflowed: bool,
}

/// One id that reached the bank more than once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeat {
    pub bank_tran_id: String,
    /// Times the request arrived, every answer (or none) included.
    pub received: u32,
    /// Of those, times its client hung up before the simulator decided it.
    pub cut_off: u32,
}

/// The answer of `GET /admin/submissions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionsReport {
    /// Distinct ids received.
    pub ids_total: u64,
    /// Every request received, repeats included.
    pub submissions_total: u64,
    /// Requests whose client hung up before the simulator decided them.
    pub cut_off_total: u64,
    /// Ids received at least twice (at most [`REPEATED_LISTED_MAX`], most
    /// received first).
    pub repeated: Vec<Repeat>,
    /// Ids received at least twice, all of them.
    pub repeated_total: u64,
    /// Ids received at least twice not counting the requests cut off before a
    /// decision: ids the bank really answered more than once.
    pub decided_twice_total: u64,
    /// More ids than [`SUBMISSIONS_TRACKED_MAX`] arrived; the counts are partial.
    pub overflowed: bool,
}

/// A request on its way through the simulator: counted as received when made;
/// dropped before [`Arrival::decided`] (its client hung up and the server dropped
/// the handler), it is also counted as cut off.
pub(crate) struct Arrival<'a> {
    submissions: &'a Submissions,
    bank_tran_id: String,
    decided: bool,
}

impl Arrival<'_> {
    /// The simulator decided the request (whatever it answered).
    pub(crate) fn decided(mut self) {
        self.decided = true;
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.decided {
            let mut seen = self.submissions.lock();
            seen.cut_off_total = seen.cut_off_total.saturating_add(1);
            seen.update(&self.bank_tran_id, |count| {
                count.cut_off = count.cut_off.saturating_add(1);
            });
        }
    }
}

impl Tracked {
    fn update(&mut self, bank_tran_id: &str, change: impl FnOnce(&mut Count)) {
        if let Some(count) = self.counts.get_mut(bank_tran_id) {
            change(count);
        } else if self.counts.len() < SUBMISSIONS_TRACKED_MAX {
            let mut count = Count::default();
            change(&mut count);
            self.counts.insert(bank_tran_id.to_owned(), count);
        } else {
            self.overflowed = true;
        }
    }
}

impl Submissions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        // A poisoned lock only means a panic elsewhere between two counter updates.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a request as received and follows it until it is decided.
    pub(crate) fn arrive(&self, bank_tran_id: &str) -> Arrival<'_> {
        self.count(bank_tran_id);
        Arrival {
            submissions: self,
            bank_tran_id: bank_tran_id.to_owned(),
            decided: false,
        }
    }

    /// Counts a request received and answered at once (refused at the door).
    pub(crate) fn count(&self, bank_tran_id: &str) {
        let mut seen = self.lock();
        seen.submissions_total = seen.submissions_total.saturating_add(1);
        seen.update(bank_tran_id, |count| {
            count.received = count.received.saturating_add(1);
        });
    }

    pub(crate) fn report(&self) -> SubmissionsReport {
        let seen = self.lock();
        let mut repeated: Vec<Repeat> = seen
            .counts
            .iter()
            .filter(|(_, count)| count.received > 1)
            .map(|(id, count)| Repeat {
                bank_tran_id: id.clone(),
                received: count.received,
                cut_off: count.cut_off,
            })
            .collect();
        let repeated_total = u64::try_from(repeated.len()).unwrap_or(u64::MAX);
        let decided_twice = repeated
            .iter()
            .filter(|r| r.received.saturating_sub(r.cut_off) > 1)
            .count();
        repeated.sort_by(|a, b| {
            b.received
                .cmp(&a.received)
                .then_with(|| a.bank_tran_id.cmp(&b.bank_tran_id))
        });
        repeated.truncate(REPEATED_LISTED_MAX);
        SubmissionsReport {
            ids_total: u64::try_from(seen.counts.len()).unwrap_or(u64::MAX),
            submissions_total: seen.submissions_total,
            cut_off_total: seen.cut_off_total,
            repeated,
            repeated_total,
            decided_twice_total: u64::try_from(decided_twice).unwrap_or(u64::MAX),
            overflowed: seen.overflowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_sent_twice_is_reported_with_its_count() {
        let submissions = Submissions::default();
        submissions.arrive("A").decided();
        submissions.arrive("B").decided();
        submissions.count("A");
        let report = submissions.report();
        assert_eq!((report.ids_total, report.submissions_total), (2, 3));
        assert_eq!(
            report.repeated,
            vec![Repeat {
                bank_tran_id: "A".to_owned(),
                received: 2,
                cut_off: 0
            }]
        );
        assert_eq!((report.repeated_total, report.decided_twice_total), (1, 1));
        assert!(!report.overflowed);
    }

    #[test]
    fn a_request_cut_off_before_its_decision_is_received_but_not_decided() {
        let submissions = Submissions::default();
        drop(submissions.arrive("A"));
        submissions.arrive("A").decided();
        let report = submissions.report();
        assert_eq!((report.submissions_total, report.cut_off_total), (2, 1));
        assert_eq!(report.repeated_total, 1, "the bank received it twice");
        assert_eq!(report.decided_twice_total, 0, "and decided it once");
        assert_eq!(report.repeated[0].cut_off, 1);
    }
}
