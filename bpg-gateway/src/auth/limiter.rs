//! Counting per key (a user name, an address) for the limits of [`super`]: failed sign-ins in a
//! window, and requests as a token bucket. Both read tokio's clock, so tests pause it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Keys kept before expired ones are swept: a flood of new keys costs bounded memory.
const SWEEP_AT: usize = 10_000;

/// Failures per key in a fixed window; past `limit`, the key waits until its window ends.
///
/// ```
/// use std::time::Duration;
/// use bpg_gateway::auth::limiter::FailureWindow;
/// let failures = FailureWindow::new(2, Duration::from_secs(60));
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// failures.fail("alice");
/// assert!(failures.blocked("alice").is_none());
/// failures.fail("alice");
/// assert!(failures.blocked("alice").is_some());
/// # });
/// ```
#[derive(Debug)]
pub struct FailureWindow {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailureWindow {
    /// `limit` failures per key in each `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureWindow {
            limit,
            window,
            seen: Mutex::default(),
        }
    }

    /// How long `key` must wait, when it has failed `limit` times in its window.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = seen.get(key)?;
        let ends = *start + self.window;
        let now = Instant::now();
        (*count >= self.limit && ends > now).then(|| ends - now)
    }

    /// Counts a failure of `key`.
    pub fn fail(&self, key: &str) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= SWEEP_AT {
            seen.retain(|_, (start, _)| *start + self.window > now);
        }
        let entry = seen.entry(key.to_owned()).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// A token bucket per key: `rate` requests a second, bursts up to `burst`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (Instant, f64)>>,
}

impl RateLimiter {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `key`; when there is none, how long until there is.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            let full = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, (at, _)| now.duration_since(*at) < full);
        }
        let (at, tokens) = buckets.entry(key.to_owned()).or_insert((now, self.burst));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_block_a_key_until_its_window_ends() {
        let w = FailureWindow::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            w.fail("alice");
        }
        assert_eq!(w.blocked("alice"), None, "two failures are under the limit");
        w.fail("alice");
        assert_eq!(w.blocked("alice"), Some(Duration::from_secs(60)));
        assert_eq!(w.blocked("bob"), None, "keys are counted apart");
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(w.blocked("alice"), Some(Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(w.blocked("alice"), None);
        w.fail("alice");
        assert_eq!(w.blocked("alice"), None, "a new window starts from zero");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_the_rate() {
        let r = RateLimiter::new(10, 20);
        for i in 0..20 {
            assert!(r.take("alice").is_ok(), "request {i} of the burst");
        }
        let wait = r.take("alice").unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            r.take("bob").is_ok(),
            "another user has a bucket of their own"
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(r.take("alice").is_ok());
        assert!(r.take("alice").is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..20 {
            assert!(r.take("alice").is_ok());
        }
        assert!(
            r.take("alice").is_err(),
            "the bucket holds no more than the burst"
        );
    }
}
