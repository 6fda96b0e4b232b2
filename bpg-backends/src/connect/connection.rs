//! [`Connection`]: one named, configured connection; [`SecretRef`]: where its secret comes from;
//! [`Resilience`]: the layers every backend built from it gets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bpg_core::{Error, Result};
use secrecy::SecretString;
use url::Url;

/// Where a secret comes from. Its value is read only when a backend is built, and never shown.
#[derive(Clone)]
pub enum SecretRef {
    /// An environment variable's value.
    Env(String),
    /// A file's contents (trailing newline trimmed).
    File(PathBuf),
    /// A value given directly (from a `BPG_CONN_*` URL's password, or set in code).
    Value(SecretString),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => f.debug_tuple("Env").field(name).finish(),
            SecretRef::File(path) => f.debug_tuple("File").field(path).finish(),
            SecretRef::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl SecretRef {
    /// Reads the secret.
    pub fn resolve(&self) -> Result<SecretString> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| Error::config(format!("environment variable {name} is not set"))),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretString::from(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| {
                    Error::config(format!("cannot read secret file {}: {e}", path.display()))
                }),
            SecretRef::Value(v) => Ok(v.clone()),
        }
    }
}

/// The middleware every backend built from a connection is wrapped in (see
/// [`layers`](crate::layers) for each): retries of temporary errors, a deadline per call, an
/// optional cap on calls in flight, and tracing.
///
/// Set per connection in the connections file (`retries: 2`, `timeout: 10s`,
/// `max_concurrency: 8`) or as URL parameters (`sim://?retries=0`), which the backend never sees.
///
/// ```
/// use std::time::Duration;
/// use bpg_backends::connect::Resilience;
/// let defaults = Resilience::default();
/// assert_eq!(defaults.retries, 8);
/// assert_eq!(defaults.timeout, Some(Duration::from_secs(30)));
/// assert_eq!(defaults.max_concurrency, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resilience {
    /// Retries after a failed call (temporary errors only: 5xx, 429, dropped connections,
    /// timeouts), with exponential backoff from 200 ms doubling up to 30 s, jittered, or the
    /// server's `Retry-After`. A submit is retried only with an idempotency key, after asking the
    /// backend whether the first attempt was accepted. Default 8 (about a minute of trying);
    /// 0 turns retrying off.
    pub retries: u32,
    /// Deadline of one call (for logs: of opening the stream). Default 30 s; `None` (written `0s`
    /// or `none`) means no deadline.
    pub timeout: Option<Duration>,
    /// At most this many calls in flight against the backend. Default unlimited.
    pub max_concurrency: Option<usize>,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            retries: 8,
            timeout: Some(Duration::from_secs(30)),
            max_concurrency: None,
        }
    }
}

/// The settings [`Resilience`] reads, as connection fields and URL parameters.
pub(crate) const RESILIENCE_KEYS: [&str; 3] = ["retries", "timeout", "max_concurrency"];

impl Resilience {
    /// Applies one setting (`key` one of `retries`, `timeout`, `max_concurrency`); the error says
    /// what was expected.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let value = value.trim();
        match key {
            "retries" => {
                self.retries = value.parse().map_err(|_| {
                    format!("`{key}: {value}`: expected a whole number (0 turns retrying off)")
                })?;
            }
            "timeout" => {
                self.timeout = match value {
                    "none" | "0" => None,
                    _ => match humantime::parse_duration(value) {
                        Ok(d) if d.is_zero() => None,
                        Ok(d) => Some(d),
                        Err(e) => {
                            return Err(format!(
                                "`{key}: {value}`: {e}; expected a duration such as 30s, or none"
                            ));
                        }
                    },
                };
            }
            "max_concurrency" => {
                self.max_concurrency = match value.parse::<usize>() {
                    Ok(0) | Err(_) => {
                        return Err(format!(
                            "`{key}: {value}`: expected a whole number of at least 1"
                        ));
                    }
                    Ok(n) => Some(n),
                };
            }
            other => return Err(format!("`{other}` is not a resilience setting")),
        }
        Ok(())
    }
}

/// One configured connection: what a [`BackendFactory`](super::BackendFactory) builds a backend
/// from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Connection {
    /// The connection's name.
    pub name: String,
    /// The URL, without any password (that is in [`Connection::password`]) and without the
    /// [`Resilience`] parameters (those are in [`Connection::resilience`]).
    pub url: Url,
    /// User name (from `user:` or the URL).
    pub user: Option<String>,
    /// Password (basic auth).
    pub password: Option<SecretRef>,
    /// Bearer token.
    pub token: Option<SecretRef>,
    /// Cloud region (EMR).
    pub region: Option<String>,
    /// Routing rules file (`routed://`), resolved against the connections file's directory.
    pub rules: Option<PathBuf>,
    /// Other backend-specific settings.
    pub options: BTreeMap<String, String>,
    /// The layers the built backend is wrapped in.
    pub resilience: Resilience,
}

impl Connection {
    /// A connection from a URL. A password in the URL is moved into [`Connection::password`];
    /// `retries`, `timeout` and `max_concurrency` parameters into [`Connection::resilience`].
    ///
    /// ```
    /// use bpg_backends::connect::Connection;
    /// let c = Connection::from_url("sim", "sim://?duration=2s&retries=0")?;
    /// assert_eq!(c.url.as_str(), "sim://?duration=2s");
    /// assert_eq!(c.resilience.retries, 0);
    /// # Ok::<(), bpg_core::Error>(())
    /// ```
    pub fn from_url(name: impl Into<String>, url: &str) -> Result<Self> {
        let name = name.into();
        let mut url = Url::parse(url).map_err(|e| {
            Error::config(format!(
                "connection {name:?}: invalid URL: {e} (expected e.g. \"sim://\", \"bpg+https://host/skatev2\", \"k8s://context/namespace\")"
            ))
        })?;
        let password = url
            .password()
            .map(|p| SecretRef::Value(SecretString::from(p.to_owned())));
        let _ = url.set_password(None);
        let user = (!url.username().is_empty()).then(|| url.username().to_owned());

        let mut resilience = Resilience::default();
        if url.query().is_some() {
            let mut kept = Vec::new();
            for (key, value) in url.query_pairs() {
                if RESILIENCE_KEYS.contains(&key.as_ref()) {
                    resilience.set(&key, &value).map_err(|why| {
                        Error::config(format!("connection {name:?}: URL parameter {why}"))
                    })?;
                } else {
                    kept.push((key.into_owned(), value.into_owned()));
                }
            }
            if kept.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        Ok(Connection {
            name,
            url,
            user,
            password,
            token: None,
            region: None,
            rules: None,
            options: BTreeMap::new(),
            resilience,
        })
    }

    /// The URL scheme (`sim`, `bpg+https`, `k8s`).
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resilience_parameters_leave_the_url() {
        let c = Connection::from_url(
            "a",
            "sim://?retries=2&duration=1s&timeout=5s&max_concurrency=3",
        )
        .unwrap();
        assert_eq!(c.url.as_str(), "sim://?duration=1s");
        assert_eq!(
            c.resilience,
            Resilience {
                retries: 2,
                timeout: Some(Duration::from_secs(5)),
                max_concurrency: Some(3)
            }
        );
        let c = Connection::from_url("a", "local://?timeout=none").unwrap();
        assert_eq!(c.url.as_str(), "local://");
        assert_eq!(c.resilience.timeout, None);
        for (url, expected) in [
            ("sim://?retries=-1", "expected a whole number"),
            ("sim://?timeout=soon", "expected a duration"),
            ("sim://?max_concurrency=0", "at least 1"),
        ] {
            let err = Connection::from_url("a", url).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains("connection \"a\""),
                "{url}: {err}"
            );
        }
    }
}
