//! Time, injected. Code that needs the time takes a `&dyn Clock` (or an
//! `Arc<dyn Clock>`), so tests can stop and move it; only [`SystemClock`] reads the
//! real clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Stored as a 64-bit integer everywhere.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_ms(unix_ms: i64) -> Timestamp {
        Timestamp(unix_ms)
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// This instant plus `delta_ms` (negative moves back), saturating at the ends of
    /// time rather than wrapping.
    pub const fn plus_ms(self, delta_ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(delta_ms))
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn ms_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The source of "now" for everything in settle.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The machine's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still until a test moves it. Clones share one time.
#[derive(Clone, Debug, Default)]
pub struct TestClock {
    now_ms: Arc<AtomicI64>,
}

impl TestClock {
    pub fn at(start: Timestamp) -> TestClock {
        TestClock {
            now_ms: Arc::new(AtomicI64::new(start.0)),
        }
    }

    pub fn advance_ms(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.now_ms.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told_and_clones_share_time() {
        let clock = TestClock::at(Timestamp::from_unix_ms(1_000));
        let other = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_unix_ms(1_000));
        other.advance_ms(61_000);
        assert_eq!(clock.now().ms_since(Timestamp::from_unix_ms(1_000)), 61_000);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now().unix_ms() > 1_577_836_800_000);
    }
}
