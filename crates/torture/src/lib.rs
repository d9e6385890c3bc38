//! settle's reliability suite. It turns "no won lost, doubled or invented, whatever
//! happens" into numbers:
//!
//! - [`harness`]: the crash harness. A workload runs in a child `settle` process
//!   that the parent SIGKILLs at seeded random moments (or that kills itself at a
//!   named fail point), restarts, and kills again; the bank simulator and the
//!   stores outlive every child. At the end [`check`] holds every invariant of
//!   DESIGN.md against the stores and the simulator's statement.
//! - [`child`]: what the child process runs for each [`Workload`]; it resumes from
//!   the stores alone, as a restarted production process would.
//! - [`faults`]: named bank fault kinds and rates, the fault matrix.
//! - [`simulation`]: a deterministic, in-process run of the fee modules under a
//!   seeded clock, seeded bank faults and a seeded schedule; one seed gives one
//!   trace hash.
//!
//! This crate never changes how settle works; it only drives the public APIs of
//! the domain crates and reads their answers. It never hides a violation: every
//! check that fails is reported with what it saw.

mod bank_side;
mod channel_workload;
pub mod check;
pub mod child;
pub mod cluster;
mod cluster_check;
mod cluster_load;
mod cluster_procs;
mod error;
pub mod faults;
mod fees_workload;
pub mod harness;
mod installation;
pub mod nats_server;
mod payroll_workload;
mod relay_workload;
pub mod scratch;
pub mod simulation;

pub use error::TortureError;

use serde::Serialize;

/// What the child process does between kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Fee settlement: Record / Pay / Verify / Withdraw in a seeded random order,
    /// day after day, through the bank simulator over HTTP.
    Fees,
    /// Channel transfers through a core that loses answers, settled by the
    /// reconciler after the late window.
    Channel,
    /// Ledger transfers' outbox rows relayed to a private NATS JetStream (which
    /// the parent restarts) and consumed by a durable worker per partition.
    Relay,
    /// Salaries through the payroll stages (compute → repay → suspend → pay
    /// out → complete), killed mid-stage.
    Payroll,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Fees,
        Workload::Channel,
        Workload::Relay,
        Workload::Payroll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Fees => "fees",
            Workload::Channel => "channel",
            Workload::Relay => "relay",
            Workload::Payroll => "payroll",
        }
    }

    /// Whether the child has a named fail point (else only timed kills).
    pub fn has_failpoint(self) -> bool {
        matches!(self, Workload::Fees | Workload::Channel)
    }

    pub fn parse(text: &str) -> Result<Workload, TortureError> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == text)
            .ok_or_else(|| {
                TortureError::Invalid(format!(
                    "unknown workload {text:?}; one of: fees, channel, relay, payroll"
                ))
            })
    }
}
