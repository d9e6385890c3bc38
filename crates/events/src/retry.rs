//! How long to wait before trying a failed event again, and when to give up. The
//! delays come from `backon`'s exponential backoff with jitter; this module only
//! configures it and never sleeps itself.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::outbox::EventsError;

/// Retry settings shared by every transport.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Failed attempts after which the event goes to the dead-letter table.
    pub retry_attempts_max: u32,
    /// The first delay; each next one doubles, up to `backoff_max_ms`.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Spread delays randomly so that many failing keys do not retry in step.
    pub jitter: bool,
    /// A fixed jitter seed makes the delays reproducible in tests.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            retry_attempts_max: 8,
            backoff_min_ms: 100,
            backoff_max_ms: 30_000,
            jitter: true,
            jitter_seed: None,
        }
    }
}

impl RetryPolicy {
    /// Millisecond-scale delays for tests.
    pub fn fast_for_tests(retry_attempts_max: u32) -> RetryPolicy {
        RetryPolicy {
            retry_attempts_max,
            backoff_min_ms: 1,
            backoff_max_ms: 8,
            jitter: true,
            jitter_seed: Some(7),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), EventsError> {
        if self.retry_attempts_max == 0 {
            return Err(EventsError::InvalidConfig(
                "retry_attempts_max must be at least 1".into(),
            ));
        }
        if self.backoff_min_ms > self.backoff_max_ms {
            return Err(EventsError::InvalidConfig(
                "backoff_min_ms must not exceed backoff_max_ms".into(),
            ));
        }
        Ok(())
    }

    /// The delays between attempts: `retry_attempts_max - 1` of them.
    pub(crate) fn backoff(&self) -> ExponentialBackoff {
        let mut builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.backoff_min_ms))
            .with_max_delay(Duration::from_millis(self.backoff_max_ms))
            .with_factor(2.0)
            .with_max_times(self.retry_attempts_max.saturating_sub(1) as usize);
        if self.jitter {
            builder = match self.jitter_seed {
                Some(seed) => builder.with_jitter_seed(seed),
                None => builder.with_jitter(),
            };
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_gives_one_delay_fewer_than_attempts_and_grows() {
        let policy = RetryPolicy {
            retry_attempts_max: 4,
            backoff_min_ms: 10,
            backoff_max_ms: 1_000,
            jitter: false,
            jitter_seed: None,
        };
        let delays: Vec<u128> = policy.backoff().map(|d| d.as_millis()).collect();
        assert_eq!(delays.len(), 3);
        assert_eq!(delays[0], 10);
        assert!(
            delays[1] >= 19 && delays[1] <= 20 && delays[2] >= 39 && delays[2] <= 40,
            "{delays:?}"
        );
    }

    #[test]
    fn zero_attempts_is_refused() {
        let policy = RetryPolicy {
            retry_attempts_max: 0,
            ..RetryPolicy::default()
        };
        assert!(policy.validate().is_err());
    }
}
