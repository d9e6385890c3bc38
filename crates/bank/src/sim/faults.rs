//! Deterministic fault and latency decisions. Each decision comes from an RNG
//! seeded by the simulator's seed and the request's key (a `bank_tran_id`, or a call
//! counter for calls that have none), so a run replays identically whatever order
//! requests arrive in.
//!
//! A 5xx before commit is transient, as a real one is: it is drawn from the seed,
//! the key *and* the attempt (how many times this simulator has seen the key), so
//! retrying the same `bank_tran_id` can succeed. [`Attempts`] is the only state
//! here; it never touches the simulator's database.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Probabilities in parts per million (1_000_000 = always), so configs stay integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultRates {
    /// Money moves, then the caller sees a timeout (the server holds the answer past
    /// the client's timeout).
    pub timeout_after_commit_ppm: u32,
    /// HTTP 500 before anything is committed.
    pub server_error_before_commit_ppm: u32,
    /// The account is refused as frozen (without changing the stored flag).
    pub frozen_account_ppm: u32,
    /// The holder's name is refused as changed.
    pub holder_name_changed_ppm: u32,
    /// HTTP 429 before anything is committed, as from a bank-side throttle the
    /// caller cannot see coming. Transient: drawn per attempt, like a 5xx.
    pub rate_limited_ppm: u32,
    /// The bank answers "maintenance" before anything is committed. Transient:
    /// drawn per attempt (a short outage, not the configured daily window).
    pub maintenance_ppm: u32,
    /// The call takes `SimConfig::slow_extra_ms` longer than its drawn latency.
    pub slow_ppm: u32,
}

pub const PPM_ALWAYS: u32 = 1_000_000;

/// The decisions for one call, drawn in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub latency_ms: u64,
    pub server_error_before_commit: bool,
    pub frozen_account: bool,
    pub holder_name_changed: bool,
    pub timeout_after_commit: bool,
    pub rate_limited: bool,
    pub maintenance: bool,
    pub slow: bool,
}

/// 64-bit FNV-1a: small, fixed and the same in every process.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Keys counted before the counts start over; bounds the simulator's memory. A
/// restart of the counts only makes one retried key replay its first 5xx roll.
pub const ATTEMPTS_TRACKED_MAX: usize = 1 << 20;

/// How many times each key has been seen, so a retry of the same `bank_tran_id`
/// draws a fresh 5xx roll. Shared by a simulator's clones.
#[derive(Debug, Default)]
pub struct Attempts {
    seen: Mutex<HashMap<String, u32>>,
}

impl Attempts {
    /// The attempt number of this call for `key`: 0 the first time, then 1, 2, …
    pub fn next(&self, key: &str) -> u32 {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= ATTEMPTS_TRACKED_MAX && !seen.contains_key(key) {
            seen.clear();
        }
        let count = seen.entry(key.to_owned()).or_insert(0);
        let attempt = *count;
        *count = count.saturating_add(1);
        attempt
    }
}

/// Counts of faults a simulator injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultsInjected {
    pub timeout_after_commit: u64,
    pub server_error_before_commit: u64,
    pub frozen_account: u64,
    pub holder_name_changed: u64,
    pub rate_limited: u64,
    pub maintenance: u64,
    pub slow: u64,
}

impl FaultsInjected {
    pub fn total(&self) -> u64 {
        self.timeout_after_commit
            + self.server_error_before_commit
            + self.frozen_account
            + self.holder_name_changed
            + self.rate_limited
            + self.maintenance
            + self.slow
    }
}

/// The live counters behind [`FaultsInjected`]; shared by a simulator's clones.
#[derive(Debug, Default)]
pub(crate) struct InjectedCounters {
    pub timeout_after_commit: std::sync::atomic::AtomicU64,
    pub server_error_before_commit: std::sync::atomic::AtomicU64,
    pub frozen_account: std::sync::atomic::AtomicU64,
    pub holder_name_changed: std::sync::atomic::AtomicU64,
    pub rate_limited: std::sync::atomic::AtomicU64,
    pub maintenance: std::sync::atomic::AtomicU64,
    pub slow: std::sync::atomic::AtomicU64,
}

impl InjectedCounters {
    pub fn count(&self, counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> FaultsInjected {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        FaultsInjected {
            timeout_after_commit: get(&self.timeout_after_commit),
            server_error_before_commit: get(&self.server_error_before_commit),
            frozen_account: get(&self.frozen_account),
            holder_name_changed: get(&self.holder_name_changed),
            rate_limited: get(&self.rate_limited),
            maintenance: get(&self.maintenance),
            slow: get(&self.slow),
        }
    }
}

/// The decisions for the `attempt`-th call with `key` (0 for the first). Everything
/// but the 5xx roll depends on the seed and key only; the 5xx roll of a retry
/// (attempt > 0) is drawn afresh from seed, key and attempt.
pub fn decide(
    seed: u64,
    key: &str,
    attempt: u32,
    latency_ms_min: u64,
    latency_ms_max: u64,
    rates: &FaultRates,
) -> Decision {
    let mut rng = SmallRng::seed_from_u64(seed ^ fnv1a64(key.as_bytes()));
    let latency_ms = if latency_ms_max > latency_ms_min {
        rng.random_range(latency_ms_min..=latency_ms_max)
    } else {
        latency_ms_min
    };
    let mut roll = |ppm: u32| rng.random_range(0..PPM_ALWAYS) < ppm;
    let first_server_error = roll(rates.server_error_before_commit_ppm);
    let frozen_account = roll(rates.frozen_account_ppm);
    let holder_name_changed = roll(rates.holder_name_changed_ppm);
    let timeout_after_commit = roll(rates.timeout_after_commit_ppm);
    // Drawn after the older faults, so adding these knobs changed no earlier draw.
    let slow = roll(rates.slow_ppm);
    let first_rate_limited = roll(rates.rate_limited_ppm);
    let first_maintenance = roll(rates.maintenance_ppm);
    let decision = Decision {
        latency_ms,
        server_error_before_commit: first_server_error,
        frozen_account,
        holder_name_changed,
        timeout_after_commit,
        rate_limited: first_rate_limited,
        maintenance: first_maintenance,
        slow,
    };
    if attempt == 0 {
        return decision;
    }
    let mut retry_key = key.as_bytes().to_vec();
    retry_key.extend_from_slice(&attempt.to_le_bytes());
    let mut retry_rng = SmallRng::seed_from_u64(seed ^ fnv1a64(&retry_key).rotate_left(17));
    let mut retry_roll = |ppm: u32| retry_rng.random_range(0..PPM_ALWAYS) < ppm;
    Decision {
        server_error_before_commit: retry_roll(rates.server_error_before_commit_ppm),
        rate_limited: retry_roll(rates.rate_limited_ppm),
        maintenance: retry_roll(rates.maintenance_ppm),
        ..decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_id_gets_a_fresh_server_error_roll_deterministically() {
        let rates = FaultRates {
            server_error_before_commit_ppm: 500_000,
            ..FaultRates::default()
        };
        let attempts = Attempts::default();
        let mut recovered = 0;
        for n in 0..1_000 {
            let key = format!("M202500001U{n:09}");
            let first = decide(7, &key, attempts.next(&key), 0, 0, &rates);
            if !first.server_error_before_commit {
                continue;
            }
            let second = decide(7, &key, attempts.next(&key), 0, 0, &rates);
            assert_eq!(
                second,
                decide(7, &key, 1, 0, 0, &rates),
                "replays identically"
            );
            if !second.server_error_before_commit {
                recovered += 1;
            }
        }
        assert!(
            (200..300).contains(&recovered),
            "about half of 50 %: {recovered}"
        );
    }

    #[test]
    fn decisions_depend_only_on_seed_and_key() {
        let rates = FaultRates {
            timeout_after_commit_ppm: 300_000,
            server_error_before_commit_ppm: 300_000,
            frozen_account_ppm: 300_000,
            holder_name_changed_ppm: 300_000,
            ..FaultRates::default()
        };
        let a = decide(7, "M202500001U000000001", 0, 2_000, 3_000, &rates);
        assert_eq!(
            a,
            decide(7, "M202500001U000000001", 0, 2_000, 3_000, &rates)
        );
        assert!((2_000..=3_000).contains(&a.latency_ms));
        let timeouts = (0..10_000)
            .filter(|n| decide(7, &format!("key{n}"), 0, 0, 0, &rates).timeout_after_commit)
            .count();
        assert!((2_700..3_300).contains(&timeouts), "about 30 %: {timeouts}");
        assert!(!decide(7, "x", 0, 0, 0, &FaultRates::default()).frozen_account);
        let always = FaultRates {
            frozen_account_ppm: PPM_ALWAYS,
            ..FaultRates::default()
        };
        assert!(decide(9, "y", 0, 0, 0, &always).frozen_account);
    }
}
