//! A deposit's life as one enum and one transition function. Every state change of
//! a deposit goes through [`DepositState::after`], which refuses illegal moves; the
//! database stores only [`DepositState::as_str`] names.
//!
//! This module does no I/O.

use serde::{Deserialize, Serialize};

/// The work stages of a deposit, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Compute,
    Repay,
    Suspend,
    Payout,
    Complete,
    /// Not a step forward: the compensating ledger transfers of a deposit whose
    /// rollback was decided (and committed) before.
    Compensate,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Compute,
        Stage::Repay,
        Stage::Suspend,
        Stage::Payout,
        Stage::Complete,
        Stage::Compensate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Compute => "compute",
            Stage::Repay => "repay",
            Stage::Suspend => "suspend",
            Stage::Payout => "payout",
            Stage::Complete => "complete",
            Stage::Compensate => "compensate",
        }
    }

    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The event kind that starts this stage.
    pub fn trigger_kind(self) -> &'static str {
        match self {
            Stage::Compute => KIND_DETECTED,
            Stage::Repay => KIND_COMPUTED,
            Stage::Suspend => KIND_REPAID,
            Stage::Payout => KIND_SUSPENDED,
            Stage::Complete => KIND_PAID_OUT,
            Stage::Compensate => KIND_ROLLING_BACK,
        }
    }

    /// The state a deposit must be in for this stage to run.
    pub fn ready_state(self) -> DepositState {
        match self {
            Stage::Compute => DepositState::Detected,
            Stage::Repay => DepositState::Computed,
            Stage::Suspend => DepositState::Repaid,
            Stage::Payout => DepositState::Suspended,
            Stage::Complete => DepositState::PaidOut,
            Stage::Compensate => DepositState::RollingBack,
        }
    }
}

pub const KIND_DETECTED: &str = "payroll.deposit_detected";
pub const KIND_COMPUTED: &str = "payroll.computed";
pub const KIND_REPAID: &str = "payroll.repaid";
pub const KIND_SUSPENDED: &str = "payroll.suspended";
pub const KIND_PAID_OUT: &str = "payroll.paid_out";
pub const KIND_ROLLING_BACK: &str = "payroll.rolling_back";
pub const KIND_ALERT: &str = "payroll.alert";

/// Where a deposit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepositState {
    Detected,
    Computed,
    Repaid,
    Suspended,
    PaidOut,
    Completed,
    /// A business failure at a stage; an operator retries or rolls back.
    Waiting,
    /// The rollback is decided (and committed); the compensating ledger transfers
    /// are the [`Stage::Compensate`] step's work.
    RollingBack,
    /// Completed stages were compensated; the deposit is never settled again.
    RolledBack,
    /// An operator settled the deposit by hand and said why; nothing moves it again.
    Resolved,
}

/// What can happen to a deposit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `stage` finished its work.
    Finished(Stage),
    /// `stage` hit a business failure and waits for an operator.
    Failed(Stage),
    /// An operator retries the stage the deposit waits at.
    Retry(Stage),
    /// The decision to compensate completed stages.
    RollBack,
    /// An operator marks the deposit settled by hand.
    Resolve,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Finished(_) => "finish a stage",
            Step::Failed(_) => "fail a stage",
            Step::Retry(_) => "retry",
            Step::RollBack => "roll back",
            Step::Resolve => "resolve",
        }
    }
}

impl DepositState {
    pub const ALL: [DepositState; 10] = [
        DepositState::Detected,
        DepositState::Computed,
        DepositState::Repaid,
        DepositState::Suspended,
        DepositState::PaidOut,
        DepositState::Completed,
        DepositState::Waiting,
        DepositState::RollingBack,
        DepositState::RolledBack,
        DepositState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DepositState::Detected => "detected",
            DepositState::Computed => "computed",
            DepositState::Repaid => "repaid",
            DepositState::Suspended => "suspended",
            DepositState::PaidOut => "paid_out",
            DepositState::Completed => "completed",
            DepositState::Waiting => "waiting",
            DepositState::RollingBack => "rolling_back",
            DepositState::RolledBack => "rolled_back",
            DepositState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<DepositState> {
        DepositState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The one transition function. `waiting_at` is the stage a waiting deposit
    /// stopped at; `None` means the move is illegal.
    pub fn after(self, step: Step, waiting_at: Option<Stage>) -> Option<DepositState> {
        use DepositState as S;
        match (self, step) {
            (state, Step::Finished(stage)) if state == stage.ready_state() => Some(match stage {
                Stage::Compute => S::Computed,
                Stage::Repay => S::Repaid,
                Stage::Suspend => S::Suspended,
                Stage::Payout => S::PaidOut,
                Stage::Complete => S::Completed,
                Stage::Compensate => S::RolledBack,
            }),
            // Compensation has no business failure: it is retried, or an operator
            // resolves the deposit.
            (state, Step::Failed(stage))
                if state == stage.ready_state() && stage != Stage::Compensate =>
            {
                Some(S::Waiting)
            }
            (S::Waiting, Step::Retry(stage)) if waiting_at == Some(stage) => {
                Some(stage.ready_state())
            }
            // A deposit not yet (fully) paid out may be rolled back: the decision
            // commits first, the compensation follows as its own step.
            (S::Waiting | S::Detected | S::Computed | S::Repaid | S::Suspended, Step::RollBack) => {
                Some(S::RollingBack)
            }
            (state, Step::Resolve) if !state.is_terminal() => Some(S::Resolved),
            _ => None,
        }
    }

    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DepositState::Completed | DepositState::RolledBack | DepositState::Resolved
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_move_in_order_and_nothing_skips_or_leaves_a_terminal_state() {
        let mut state = DepositState::Detected;
        for stage in Stage::ALL.into_iter().filter(|s| *s != Stage::Compensate) {
            assert_eq!(
                state.after(Step::Finished(Stage::Payout), None).is_some(),
                stage == Stage::Payout
            );
            state = state.after(Step::Finished(stage), None).unwrap();
        }
        assert_eq!(state, DepositState::Completed);
        for step in [
            Step::Finished(Stage::Compute),
            Step::Failed(Stage::Payout),
            Step::Retry(Stage::Payout),
            Step::RollBack,
            Step::Resolve,
        ] {
            assert_eq!(DepositState::Completed.after(step, None), None);
            assert_eq!(DepositState::RolledBack.after(step, None), None);
            assert_eq!(DepositState::Resolved.after(step, None), None);
        }
    }

    #[test]
    fn a_waiting_deposit_retries_only_its_own_stage_or_rolls_back() {
        let waiting = DepositState::Suspended
            .after(Step::Failed(Stage::Payout), None)
            .unwrap();
        assert_eq!(waiting, DepositState::Waiting);
        assert_eq!(
            waiting.after(Step::Retry(Stage::Repay), Some(Stage::Payout)),
            None
        );
        assert_eq!(
            waiting.after(Step::Retry(Stage::Payout), Some(Stage::Payout)),
            Some(DepositState::Suspended)
        );
        assert_eq!(
            waiting.after(Step::RollBack, Some(Stage::Payout)),
            Some(DepositState::RollingBack)
        );
        assert_eq!(DepositState::PaidOut.after(Step::RollBack, None), None);
    }

    #[test]
    fn a_rollback_is_decided_first_and_compensated_as_its_own_step() {
        let deciding = DepositState::Computed.after(Step::RollBack, None).unwrap();
        assert_eq!(deciding, DepositState::RollingBack);
        assert_eq!(deciding.after(Step::RollBack, None), None, "decided once");
        assert_eq!(deciding.after(Step::Failed(Stage::Compensate), None), None);
        assert_eq!(
            deciding.after(Step::Finished(Stage::Compensate), None),
            Some(DepositState::RolledBack)
        );
    }

    #[test]
    fn an_operator_can_resolve_any_unfinished_deposit_and_nothing_else() {
        for state in DepositState::ALL {
            assert_eq!(
                state.after(Step::Resolve, None).is_some(),
                !state.is_terminal(),
                "{state:?}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for state in DepositState::ALL {
            assert_eq!(DepositState::parse(state.as_str()), Some(state));
        }
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
    }
}
