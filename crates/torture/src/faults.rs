//! Bank fault kinds by name and the fault matrix (kind × rate). Every kind maps
//! to a knob of the bank simulator (`bank::sim::FaultRates`); rates are percent
//! here and parts per million there.

use bank::sim::FaultRates;
use serde::Serialize;

use crate::TortureError;

/// One kind of bank misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Money moves, the caller sees a timeout.
    TimeoutAfterCommit,
    /// HTTP 500 before commit.
    ServerError,
    /// HTTP 429 before commit.
    RateLimited,
    /// The account is refused as frozen.
    Frozen,
    /// The holder's name is refused as changed.
    HolderRenamed,
    /// "Maintenance" before commit.
    Maintenance,
    /// The call takes longer than usual.
    Slow,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::TimeoutAfterCommit,
        FaultKind::ServerError,
        FaultKind::RateLimited,
        FaultKind::Frozen,
        FaultKind::HolderRenamed,
        FaultKind::Maintenance,
        FaultKind::Slow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TimeoutAfterCommit => "timeout",
            FaultKind::ServerError => "5xx",
            FaultKind::RateLimited => "429",
            FaultKind::Frozen => "frozen",
            FaultKind::HolderRenamed => "renamed",
            FaultKind::Maintenance => "maintenance",
            FaultKind::Slow => "slow",
        }
    }

    /// `all`, or a comma-separated list of names.
    pub fn parse_list(text: &str) -> Result<Vec<FaultKind>, TortureError> {
        if text == "all" {
            return Ok(FaultKind::ALL.to_vec());
        }
        if text.is_empty() || text == "none" {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|name| {
                FaultKind::ALL
                    .into_iter()
                    .find(|k| k.name() == name.trim())
                    .ok_or_else(|| {
                        TortureError::Invalid(format!(
                            "unknown fault {name:?}; one of: all, none, timeout, 5xx, 429, \
                             frozen, renamed, maintenance, slow"
                        ))
                    })
            })
            .collect()
    }
}

/// Percent rates the matrix runs at.
pub const MATRIX_RATES_PCT: [u32; 3] = [0, 10, 30];

/// The simulator's rates for `kinds`, each at `rate_pct` percent.
pub fn rates(kinds: &[FaultKind], rate_pct: u32) -> Result<FaultRates, TortureError> {
    if rate_pct > 100 {
        return Err(TortureError::Invalid(format!(
            "a fault rate is 0..=100 %, not {rate_pct}"
        )));
    }
    let ppm = rate_pct * 10_000;
    let mut rates = FaultRates::default();
    for kind in kinds {
        match kind {
            FaultKind::TimeoutAfterCommit => rates.timeout_after_commit_ppm = ppm,
            FaultKind::ServerError => rates.server_error_before_commit_ppm = ppm,
            FaultKind::RateLimited => rates.rate_limited_ppm = ppm,
            FaultKind::Frozen => rates.frozen_account_ppm = ppm,
            FaultKind::HolderRenamed => rates.holder_name_changed_ppm = ppm,
            FaultKind::Maintenance => rates.maintenance_ppm = ppm,
            FaultKind::Slow => rates.slow_ppm = ppm,
        }
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_by_name_and_refuse_unknown_names() {
        assert_eq!(FaultKind::parse_list("all").unwrap().len(), 7);
        assert_eq!(
            FaultKind::parse_list("timeout,429").unwrap(),
            vec![FaultKind::TimeoutAfterCommit, FaultKind::RateLimited]
        );
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        let error = FaultKind::parse_list("timeout,earthquake").unwrap_err();
        assert_eq!(error.code(), "torture_plan_invalid");
        let r = rates(&[FaultKind::Frozen, FaultKind::Slow], 30).unwrap();
        assert_eq!(r.frozen_account_ppm, 300_000);
        assert_eq!(r.slow_ppm, 300_000);
        assert_eq!(r.timeout_after_commit_ppm, 0);
        assert!(rates(&[], 101).is_err());
    }
}
