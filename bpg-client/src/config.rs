//! How a [`BpgClient`](crate::BpgClient) talks to its gateway: base URL and context path,
//! credentials, timeouts, TLS roots and retries.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

/// BPG's default context path (config `applicationContextPath`).
pub const DEFAULT_CONTEXT_PATH: &str = "/skatev2";
/// The hard-wired prefix of gateways built before May 2023.
pub const LEGACY_CONTEXT_PATH: &str = "/apiv2";
/// The header BPG's first auth filter reads the user name from.
pub const USER_ACCOUNT_HEADER: &str = "User-Account";

/// Credentials sent with every request. Secrets are [`SecretString`]s and never appear in
/// `Debug`, errors or logs.
///
/// BPG itself accepts HTTP Basic (it checks only the user name against its allow/block lists) or
/// the `User-Account` header set by an authenticating sidecar; a bearer token is for gateways
/// behind such a sidecar or proxy.
///
/// ```
/// use bpg_client::Auth;
/// let auth = Auth::basic("airflow", "hunter2");
/// assert!(!format!("{auth:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// User name (BPG's identity for the caller).
        user: String,
        /// Password (BPG ignores it; a proxy in front may not).
        password: SecretString,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// `User-Account: <name>`.
    UserAccount(String),
}

impl Auth {
    /// HTTP Basic credentials.
    pub fn basic(user: impl Into<String>, password: impl Into<String>) -> Self {
        Auth::Basic {
            user: user.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// A bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Auth::Bearer(SecretString::from(token.into()))
    }

    /// The `User-Account` header.
    pub fn user_account(name: impl Into<String>) -> Self {
        Auth::UserAccount(name.into())
    }

    /// The header to send, marked sensitive so HTTP-level logging hides it.
    pub(crate) fn header(&self) -> Result<Option<(HeaderName, HeaderValue)>, String> {
        let (name, value) = match self {
            Auth::None => return Ok(None),
            Auth::Basic { user, password } => {
                let pair = format!("{user}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                (AUTHORIZATION, format!("Basic {encoded}"))
            }
            Auth::Bearer(token) => (AUTHORIZATION, format!("Bearer {}", token.expose_secret())),
            Auth::UserAccount(name) => (HeaderName::from_static("user-account"), name.clone()),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            format!("the {name} credentials contain characters not allowed in an HTTP header")
        })?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    /// The user name the gateway will see, when the credentials carry one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Auth::Basic { user, .. } | Auth::UserAccount(user) => Some(user),
            Auth::None | Auth::Bearer(_) => None,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::UserAccount(name) => f.debug_tuple("UserAccount").field(name).finish(),
        }
    }
}

/// Retries for idempotent requests (every GET, and DELETE, which BPG answers 200 even for a
/// missing application). Only temporary failures are retried: 5xx, 429, connect errors, dropped
/// connections and timeouts. `POST /spark` is never retried: a retried submit could start a
/// second application, so that decision belongs to the caller (who can look for the first one by
/// its `submissionIdSuffix`).
///
/// ```
/// use std::time::Duration;
/// use bpg_client::RetryPolicy;
/// let p = RetryPolicy::default();
/// assert_eq!(p.max_retries, 3);
/// assert!(p.backoff(1, 1.0) <= Duration::from_millis(400));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Delay before the first retry; doubles on every further retry.
    pub initial_backoff: Duration,
    /// Upper bound of the exponential delay.
    pub max_backoff: Duration,
    /// Upper bound of a server's `Retry-After`; longer requests fail instead of waiting.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Sets the number of retries.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets the first delay and the cap of the exponential backoff.
    pub fn backoff_between(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets the longest `Retry-After` honoured.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The delay before retry number `retry` (1-based), scaled by `jitter` in `[0, 1]`
    /// (callers pass a random value in `[0.5, 1]` so that clients do not retry in lockstep).
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        full.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The delay before retry number `retry` given the server's `Retry-After`, or `None` when
    /// the retries are used up or the server asked for longer than `max_retry_after`.
    pub fn delay_before(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if retry > self.max_retries {
            return None;
        }
        match retry_after {
            Some(after) if after > self.max_retry_after => None,
            Some(after) => Some(after.max(self.backoff(retry, jitter))),
            None => Some(self.backoff(retry, jitter)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_headers() {
        let (name, value) = Auth::basic("alice", "pw").header().unwrap().unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Basic YWxpY2U6cHc=");
        assert!(value.is_sensitive());
        let (_, value) = Auth::bearer("tok").header().unwrap().unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer tok");
        let (name, value) = Auth::user_account("bob").header().unwrap().unwrap();
        assert_eq!(name.as_str(), "user-account");
        assert_eq!(value.to_str().unwrap(), "bob");
        assert!(Auth::None.header().unwrap().is_none());
        let err = Auth::bearer("bad\ntoken").header().unwrap_err();
        assert!(!err.contains("bad"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        for auth in [Auth::basic("alice", "s3cret-pw"), Auth::bearer("s3cret-pw")] {
            let debug = format!("{auth:?}");
            assert!(!debug.contains("s3cret"), "{debug}");
            assert!(debug.contains("redacted"), "{debug}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default()
            .backoff_between(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(350));
        assert_eq!(p.backoff(40, 1.0), Duration::from_millis(350));
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(100));
    }

    #[test]
    fn retry_after_wins_over_a_shorter_backoff_and_bounds_are_kept() {
        let p = RetryPolicy::default().max_retries(2);
        assert_eq!(
            p.delay_before(1, Some(Duration::from_secs(2)), 1.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.delay_before(3, None, 1.0), None);
        assert_eq!(
            p.delay_before(1, Some(Duration::from_secs(3600)), 1.0),
            None
        );
        assert_eq!(RetryPolicy::none().delay_before(1, None, 1.0), None);
    }
}
