//! Retry timing, as Airflow computes it (`TaskInstance.next_retry_datetime`).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::dag::RetryPolicy;

/// Airflow's upper bound on any retry delay (`MAX_RETRY_DELAY`): 24 hours.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The delay after attempt `try_number` (1-based) failed.
///
/// Without backoff it is exactly `retry_delay` (capped by `max_retry_delay`). With backoff the base
/// is `ceil(retry_delay_seconds × 2^(try_number−1))` (at least 1 s), plus a deterministic jitter in
/// `[0, base)` derived from `jitter_key` and the try number, capped by 24 h and then by
/// `max_retry_delay`: the same inputs always give the same delay, and tasks retrying together
/// spread out.
///
/// ```
/// use std::time::Duration;
/// use bpg_pipeline::{RetryPolicy, retry_delay};
/// let policy = RetryPolicy { retries: 5, retry_delay: Duration::from_secs(10), exponential_backoff: true, max_retry_delay: None };
/// let third = retry_delay(&policy, 3, "daily#pi#2025-05-01");
/// assert!(third >= Duration::from_secs(40) && third < Duration::from_secs(80));
/// ```
pub fn retry_delay(policy: &RetryPolicy, try_number: u32, jitter_key: &str) -> Duration {
    let delay = if policy.exponential_backoff {
        let exponent = try_number.saturating_sub(1).min(63) as i32;
        let scaled = policy.retry_delay.as_secs_f64() * 2f64.powi(exponent);
        let base = scaled.min(MAX_RETRY_DELAY.as_secs_f64()).ceil().max(1.0) as u64;
        let mut hasher = Sha256::new();
        hasher.update(jitter_key.as_bytes());
        hasher.update(b"#");
        hasher.update(try_number.to_string().as_bytes());
        let hash = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        let jitter = u64::from_be_bytes(first) % base;
        Duration::from_secs(base + jitter).min(MAX_RETRY_DELAY)
    } else {
        policy.retry_delay
    };
    match policy.max_retry_delay {
        Some(max) => delay.min(max),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay_s: u64, backoff: bool, max: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            retries: 10,
            retry_delay: Duration::from_secs(delay_s),
            exponential_backoff: backoff,
            max_retry_delay: max.map(Duration::from_secs),
        }
    }

    #[test]
    fn without_backoff_every_delay_is_retry_delay_capped() {
        for t in 1..=6 {
            assert_eq!(
                retry_delay(&policy(30, false, None), t, "k"),
                Duration::from_secs(30)
            );
            assert_eq!(
                retry_delay(&policy(30, false, Some(10)), t, "k"),
                Duration::from_secs(10)
            );
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_band_and_is_deterministic() {
        let p = policy(10, true, None);
        for t in 1..=8u32 {
            let base = 10u64 << (t - 1);
            let d = retry_delay(&p, t, "dag#task#2025-05-01");
            assert!(
                d >= Duration::from_secs(base) && d < Duration::from_secs(2 * base),
                "try {t}: {d:?} not in [{base}, {})",
                2 * base
            );
            assert_eq!(d, retry_delay(&p, t, "dag#task#2025-05-01"));
        }
    }

    #[test]
    fn backoff_is_capped_by_max_retry_delay_and_24h() {
        let p = policy(10, true, Some(60));
        let delays: Vec<u64> = (1..=6).map(|t| retry_delay(&p, t, "x").as_secs()).collect();
        assert!(delays[..2].iter().all(|&d| d < 60), "{delays:?}");
        assert!(delays[3..].iter().all(|&d| d == 60), "{delays:?}");
        let huge = policy(3600, true, None);
        assert_eq!(retry_delay(&huge, 40, "x"), MAX_RETRY_DELAY);
    }

    #[test]
    fn sub_second_delay_has_one_second_floor_with_backoff() {
        let p = RetryPolicy {
            retry_delay: Duration::from_millis(100),
            ..policy(0, true, None)
        };
        assert_eq!(retry_delay(&p, 1, "k"), Duration::from_secs(1));
    }
}
