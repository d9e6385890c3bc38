//! How many times each `bank_tran_id` was submitted to the simulator (a deposit
//! or withdraw transfer request it decided, whatever it answered; a request whose
//! client hung up before the decision rolled back, had no effect and is not
//! counted), so a test can prove that no process sent an id twice. In memory, shared by a
//! simulator's clones, and bounded: past [`SUBMISSIONS_TRACKED_MAX`] ids it stops
//! tracking new ones and says so, rather than forget and report a wrong count.

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

#[derive(Debug, Default)]
struct Tracked {
    counts: HashMap<String, u32>,
    submissions_total: u64,
    overflowed: bool,
}

/// The answer of `GET /admin/submissions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionsReport {
    /// Distinct ids submitted.
    pub ids_total: u64,
    /// Every submission, repeats included.
    pub submissions_total: u64,
    /// Ids submitted at least twice, with their count (at most
    /// [`REPEATED_LISTED_MAX`], most submitted first).
    pub repeated: Vec<(String, u32)>,
    /// Ids submitted at least twice, all of them.
    pub repeated_total: u64,
    /// More ids than [`SUBMISSIONS_TRACKED_MAX`] arrived; the counts are partial.
    pub overflowed: bool,
}

impl Submissions {
    pub(crate) fn count(&self, bank_tran_id: &str) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.submissions_total = seen.submissions_total.saturating_add(1);
        if let Some(count) = seen.counts.get_mut(bank_tran_id) {
            *count = count.saturating_add(1);
        } else if seen.counts.len() < SUBMISSIONS_TRACKED_MAX {
            seen.counts.insert(bank_tran_id.to_owned(), 1);
        } else {
            seen.overflowed = true;
        }
    }

    pub(crate) fn report(&self) -> SubmissionsReport {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut repeated: Vec<(String, u32)> = seen
            .counts
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(id, count)| (id.clone(), *count))
            .collect();
        let repeated_total = u64::try_from(repeated.len()).unwrap_or(u64::MAX);
        repeated.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        repeated.truncate(REPEATED_LISTED_MAX);
        SubmissionsReport {
            ids_total: u64::try_from(seen.counts.len()).unwrap_or(u64::MAX),
            submissions_total: seen.submissions_total,
            repeated,
            repeated_total,
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
        submissions.count("A");
        submissions.count("B");
        submissions.count("A");
        let report = submissions.report();
        assert_eq!((report.ids_total, report.submissions_total), (2, 3));
        assert_eq!(report.repeated, vec![("A".to_owned(), 2)]);
        assert_eq!(report.repeated_total, 1);
        assert!(!report.overflowed);
    }
}
