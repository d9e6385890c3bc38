//! The verdict of a run: one [`Check`] per invariant, with what was seen. A check
//! that does not hold is a violation; the harness never stops at the first one.

use serde::Serialize;

/// One invariant and whether it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub holds: bool,
    /// What was seen; for a violation, enough to start debugging.
    pub detail: String,
}

/// Checks gathered by a workload's verifier.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    pub fn add(&mut self, name: impl Into<String>, holds: bool, detail: impl Into<String>) {
        let check = Check {
            name: name.into(),
            holds,
            detail: detail.into(),
        };
        if !check.holds {
            tracing::error!(check = %check.name, detail = %check.detail, "invariant violated");
        }
        self.0.push(check);
    }

    pub fn violations(&self) -> usize {
        self.0.iter().filter(|c| !c.holds).count()
    }

    pub fn extend(&mut self, other: Checks) {
        self.0.extend(other.0);
    }
}

/// The ledger's own invariants (debits = credits, balance flags, gapless entry
/// seqs ending at the balances), as `ledger` states them.
pub async fn ledger_invariants(
    ledger: &ledger::Ledger,
    checks: &mut Checks,
) -> Result<(), ledger::LedgerError> {
    let totals = ledger.totals().await?;
    for (name, holds) in totals.invariants() {
        checks.add(
            format!("ledger: {name}"),
            holds,
            format!(
                "accounts {}, posted {}/{}, pending {}/{}, broken entries {}, breaking flags {}",
                totals.accounts,
                totals.debits_posted,
                totals.credits_posted,
                totals.debits_pending,
                totals.credits_pending,
                totals.accounts_with_broken_entries,
                totals.accounts_breaking_flags
            ),
        );
    }
    Ok(())
}
