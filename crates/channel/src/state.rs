//! A channel transfer's life: the states and the one transition function that
//! refuses every illegal move. No other code decides what state follows which.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a channel transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Stored; the core has not been called yet.
    Requested,
    /// Handed to the core; no answer yet.
    Sent,
    /// The core did not answer in time: it may or may not have applied it.
    Unknown,
    /// The core applied it: money moved, once.
    Succeeded,
    /// The core refused it, or it can no longer be applied: no money moved.
    Failed,
}

/// What happened to a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateEvent {
    /// The service is about to call the core.
    Send,
    /// The call got no answer (timeout, broken connection).
    TimedOut,
    /// The core says it applied the transfer.
    Applied,
    /// The core says it refused or failed the transfer.
    Refused,
    /// The core has never seen it and the late window is over: it never will apply it.
    GaveUp,
}

/// A move the transition function refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {from} transfer cannot take {event:?}")]
pub struct IllegalMove {
    pub from: TransferState,
    pub event: StateEvent,
}

impl TransferState {
    /// The one transition function. Terminal states never move; an `unknown`
    /// transfer is never sent again; only the core's word (or the closed late
    /// window) ends an in-flight transfer.
    pub fn after(self, event: StateEvent) -> Result<TransferState, IllegalMove> {
        use StateEvent as E;
        use TransferState as S;
        match (self, event) {
            (S::Requested, E::Send) => Ok(S::Sent),
            (S::Sent, E::TimedOut) => Ok(S::Unknown),
            (S::Requested | S::Sent | S::Unknown, E::Applied) => Ok(S::Succeeded),
            (S::Requested | S::Sent | S::Unknown, E::Refused | E::GaveUp) => Ok(S::Failed),
            (from, event) => Err(IllegalMove { from, event }),
        }
    }

    /// `requested`, `sent` or `unknown`: the user may not start another transfer.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            TransferState::Requested | TransferState::Sent | TransferState::Unknown
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TransferState::Requested => "requested",
            TransferState::Sent => "sent",
            TransferState::Unknown => "unknown",
            TransferState::Succeeded => "succeeded",
            TransferState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<TransferState> {
        ALL_STATES.iter().copied().find(|s| s.name() == text)
    }
}

const ALL_STATES: [TransferState; 5] = [
    TransferState::Requested,
    TransferState::Sent,
    TransferState::Unknown,
    TransferState::Succeeded,
    TransferState::Failed,
];

impl fmt::Display for TransferState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StateEvent as E;
    use TransferState as S;

    const ALL_EVENTS: [StateEvent; 5] = [E::Send, E::TimedOut, E::Applied, E::Refused, E::GaveUp];

    #[test]
    fn the_happy_paths_are_legal() {
        assert_eq!(S::Requested.after(E::Send), Ok(S::Sent));
        assert_eq!(S::Sent.after(E::Applied), Ok(S::Succeeded));
        assert_eq!(S::Sent.after(E::Refused), Ok(S::Failed));
        assert_eq!(S::Sent.after(E::TimedOut), Ok(S::Unknown));
        assert_eq!(S::Unknown.after(E::Applied), Ok(S::Succeeded));
        assert_eq!(S::Unknown.after(E::GaveUp), Ok(S::Failed));
    }

    #[test]
    fn terminal_states_never_move_and_unknown_is_never_resent() {
        for event in ALL_EVENTS {
            assert!(S::Succeeded.after(event).is_err(), "{event:?}");
            assert!(S::Failed.after(event).is_err(), "{event:?}");
        }
        assert!(S::Unknown.after(E::Send).is_err());
        assert!(S::Unknown.after(E::TimedOut).is_err());
        assert!(S::Requested.after(E::TimedOut).is_err());
        assert!(S::Sent.after(E::Send).is_err());
    }

    #[test]
    fn every_state_name_round_trips_and_only_three_are_in_flight() {
        for state in ALL_STATES {
            assert_eq!(TransferState::parse(state.name()), Some(state));
        }
        let in_flight: Vec<_> = ALL_STATES.iter().filter(|s| s.is_in_flight()).collect();
        assert_eq!(in_flight, [&S::Requested, &S::Sent, &S::Unknown]);
    }
}
