//! [`GatewayConfig`]: where a [`GatewayBackend`](super::GatewayBackend) finds its gateway and how it
//! authenticates, built in code or read from a `bpg+https://user@host/skatev2` connection URL.

use std::fmt;
use std::time::Duration;

use bpg_client::{Auth, BpgClient, RetryPolicy};
use bpg_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};

/// The backend name when none is set.
pub const DEFAULT_NAME: &str = "gateway";

/// Configuration of one [`GatewayBackend`](super::GatewayBackend): the gateway URL (with its context
/// path), the user and a secret, and the client's timings.
///
/// Credentials never come from a URL (URLs end up in logs and run records): the URL may carry the
/// user name, the password or token is set with [`GatewayConfig::password`] or
/// [`GatewayConfig::token`] from wherever the secret lives.
///
/// ```
/// use bpg_backends::gateway::GatewayConfig;
/// use secrecy::SecretString;
///
/// let config = GatewayConfig::from_url("bpg+https://airflow@gateway.internal/skatev2")?
///     .password(SecretString::from("from-a-secret-store"));
/// assert_eq!(config.url, "https://gateway.internal/skatev2");
/// assert_eq!(config.user.as_deref(), Some("airflow"));
/// assert!(!format!("{config:?}").contains("from-a-secret-store"));
/// # Ok::<(), bpg_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The backend's name (its connection name). Default `gateway`.
    pub name: String,
    /// `http(s)://host[:port][/context-path]`; without a path the client uses `/skatev2`.
    pub url: String,
    /// Overrides the URL's path as the context path (`/apiv2` for older gateways).
    pub context_path: Option<String>,
    /// The user BPG sees (Basic auth user, or the `User-Account` header without a password).
    pub user: Option<String>,
    /// Basic-auth password (BPG ignores it; a proxy in front may not).
    pub password: Option<SecretString>,
    /// Bearer token, for gateways behind an authenticating proxy.
    pub token: Option<SecretString>,
    /// Time to establish a connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Deadline of one request (for streamed logs: of the response headers). Default 30 s.
    pub request_timeout: Duration,
    /// Retries of idempotent requests (status, logs, mySubmissions, delete). Submits are never
    /// retried blindly: the backend looks for the first one instead.
    pub retry: RetryPolicy,
    /// Pause between status checks while following a log. Default 1 s.
    pub log_poll_interval: Duration,
    /// Extra CA certificates (PEM bundles) to trust.
    pub ca_bundles: Vec<Vec<u8>>,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("GatewayConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("context_path", &self.context_path)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("log_poll_interval", &self.log_poll_interval)
            .field("ca_bundles", &self.ca_bundles.len())
            .finish()
    }
}

impl GatewayConfig {
    /// A gateway at `url` (`https://host/skatev2`), no credentials, default timings.
    pub fn new(url: impl Into<String>) -> Self {
        GatewayConfig {
            name: DEFAULT_NAME.to_owned(),
            url: url.into(),
            context_path: None,
            user: None,
            password: None,
            token: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            log_poll_interval: Duration::from_secs(1),
            ca_bundles: Vec::new(),
        }
    }

    /// Reads a connection URL: `bpg+https://[user@]host[:port][/context-path]` or `bpg+http://...`
    /// (plain `https://` and `http://` are accepted too). The user name may be in the URL; a
    /// password may not (set it with [`GatewayConfig::password`]), and neither may a query.
    ///
    /// ```
    /// use bpg_backends::gateway::GatewayConfig;
    /// let c = GatewayConfig::from_url("bpg+http://127.0.0.1:8080/apiv2")?;
    /// assert_eq!((c.url.as_str(), c.user), ("http://127.0.0.1:8080/apiv2", None));
    /// let err = GatewayConfig::from_url("bpg+https://bob:hunter2@gw/skatev2").unwrap_err();
    /// assert!(!err.to_string().contains("hunter2"));
    /// # Ok::<(), bpg_core::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<GatewayConfig> {
        const EXPECTED: &str = "expected bpg+https://[user@]host[:port][/context-path]";
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::config(format!(
                "gateway connection URL `{}`: {e}; {EXPECTED}",
                redact_unparsed(url)
            ))
        })?;
        let mut shown_url = parsed.clone();
        let _ = shown_url.set_password(None);
        let shown = shown_url.to_string();
        let bad = |what: &str| Error::config(format!("gateway connection URL `{shown}`: {what}"));
        let http_scheme = match parsed.scheme() {
            "bpg+https" | "https" => "https",
            "bpg+http" | "http" => "http",
            other => {
                return Err(bad(&format!(
                    "scheme is `{other}`, expected `bpg+https` or `bpg+http`"
                )));
            }
        };
        if parsed.password().is_some() {
            return Err(bad(
                "a password does not belong in the URL (URLs end up in logs); pass it as a secret \
                 (GatewayConfig::password, or `password_env` in the connections file)",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(&format!("expected no query or fragment; {EXPECTED}")));
        }
        let host = match parsed.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(bad(&format!("no host; {EXPECTED}"))),
        };
        let user = match parsed.username() {
            "" => None,
            // Percent-decoded; `+` is kept literally (it is not a space in userinfo).
            raw => Some(
                url::form_urlencoded::parse(format!("u={}", raw.replace('+', "%2B")).as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| raw.to_owned()),
            ),
        };
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = parsed.path().trim_end_matches('/');
        let http = format!("{http_scheme}://{host}{port}{path}");
        // Re-parse as http(s) so that the host and port are checked as for any web URL.
        url::Url::parse(&http).map_err(|e| bad(&format!("{e}; {EXPECTED}")))?;
        let mut config = GatewayConfig::new(http);
        config.user = user;
        Ok(config)
    }

    /// Sets the backend name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the context path (overrides the URL's path).
    pub fn context_path(mut self, path: impl Into<String>) -> Self {
        self.context_path = Some(path.into());
        self
    }

    /// Sets the user name.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the Basic-auth password (needs a user): a [`SecretString`], or a `String` to wrap in one.
    pub fn password(mut self, password: impl Into<SecretString>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets a bearer token (sent instead of Basic auth).
    pub fn token(mut self, token: impl Into<SecretString>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the retry policy of idempotent requests.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the status poll interval of followed logs.
    pub fn log_poll_interval(mut self, interval: Duration) -> Self {
        self.log_poll_interval = interval;
        self
    }

    /// Trusts the CA certificates of a PEM bundle in addition to the system's roots.
    pub fn ca_bundle_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_bundles.push(pem.into());
        self
    }

    /// The credentials sent: a token as `Bearer`; a user with a password as Basic; a user alone
    /// as the `User-Account` header (BPG's header for callers authenticated by a sidecar).
    pub fn auth(&self) -> Result<Auth> {
        match (&self.user, &self.password, &self.token) {
            (_, Some(_), Some(_)) => Err(Error::config(format!(
                "gateway `{}`: both a password and a token are set; use one",
                self.name
            ))),
            (_, None, Some(token)) => Ok(Auth::bearer(token.expose_secret())),
            (Some(user), Some(password), None) => {
                Ok(Auth::basic(user.clone(), password.expose_secret()))
            }
            (None, Some(_), None) => Err(Error::config(format!(
                "gateway `{}`: a password is set but no user; put the user in the URL \
                 (bpg+https://user@host/skatev2) or set it with GatewayConfig::user",
                self.name
            ))),
            (Some(user), None, None) => Ok(Auth::user_account(user.clone())),
            (None, None, None) => Ok(Auth::None),
        }
    }

    /// Builds the [`BpgClient`] this configuration describes.
    pub fn client(&self) -> Result<BpgClient> {
        let mut builder = BpgClient::builder(self.url.clone())
            .auth(self.auth()?)
            .connect_timeout(self.connect_timeout)
            .request_timeout(self.request_timeout)
            .retry(self.retry.clone())
            .log_poll_interval(self.log_poll_interval);
        if let Some(path) = &self.context_path {
            builder = builder.context_path(path.clone());
        }
        for pem in &self.ca_bundles {
            builder = builder.ca_bundle_pem(pem.clone());
        }
        builder.build().map_err(|e| match e {
            Error::Config { message } => {
                Error::config(format!("gateway `{}`: {message}", self.name))
            }
            other => other,
        })
    }
}

/// A URL that did not parse, for messages: anything between `://` and the last `@` removed.
fn redact_unparsed(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}<credentials removed>{}", &url[..start + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_urls_become_http_urls_and_a_user() {
        let cases = [
            (
                "bpg+https://airflow@gateway.internal/skatev2",
                "https://gateway.internal/skatev2",
                Some("airflow"),
            ),
            (
                "bpg+http://127.0.0.1:18080/skatev2/",
                "http://127.0.0.1:18080/skatev2",
                None,
            ),
            ("bpg+https://gw.example", "https://gw.example", None),
            ("https://gw.example/apiv2", "https://gw.example/apiv2", None),
            (
                "bpg+https://svc%40corp+1@gw:8443/skatev2",
                "https://gw:8443/skatev2",
                Some("svc@corp+1"),
            ),
        ];
        for (input, url, user) in cases {
            let config = GatewayConfig::from_url(input).unwrap();
            assert_eq!(config.url, url, "{input}");
            assert_eq!(config.user.as_deref(), user, "{input}");
            assert_eq!(config.name, DEFAULT_NAME);
        }
    }

    #[test]
    fn bad_urls_are_config_errors_that_say_what_was_expected() {
        let cases = [
            ("k8s://ctx/ns", "expected `bpg+https` or `bpg+http`"),
            ("bpg+https://gw/skatev2?timeout=3", "no query"),
            ("not a url", "expected bpg+https://"),
            ("bpg+https:///skatev2", "no host"),
        ];
        for (input, expected) in cases {
            let err = GatewayConfig::from_url(input).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{input}: {err:?}");
            assert!(err.to_string().contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn passwords_in_urls_are_refused_without_being_repeated() {
        for input in [
            "bpg+https://bob:hunter2@gw/skatev2",
            "bpg+https://bob:hunter2@gw:notaport/skatev2",
        ] {
            let err = GatewayConfig::from_url(input).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = GatewayConfig::from_url("bpg+https://bob:hunter2@gw/skatev2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pass it as a secret"), "{err}");
    }

    #[test]
    fn auth_follows_the_secrets_given() {
        let base = GatewayConfig::from_url("bpg+https://alice@gw/skatev2").unwrap();
        assert!(matches!(base.auth().unwrap(), Auth::UserAccount(u) if u == "alice"));
        let basic = base.clone().password(SecretString::from("pw"));
        assert!(matches!(basic.auth().unwrap(), Auth::Basic { user, .. } if user == "alice"));
        let bearer = GatewayConfig::new("https://gw").token(SecretString::from("tok"));
        assert!(matches!(bearer.auth().unwrap(), Auth::Bearer(_)));
        let both = basic.clone().token(SecretString::from("tok"));
        assert!(both.auth().is_err());
        let orphan = GatewayConfig::new("https://gw").password(SecretString::from("pw"));
        assert!(orphan.auth().unwrap_err().to_string().contains("no user"));
        assert!(matches!(
            GatewayConfig::new("https://gw").auth().unwrap(),
            Auth::None
        ));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config = GatewayConfig::from_url("bpg+https://alice@gw/skatev2")
            .unwrap()
            .password(SecretString::from("s3cret-pw"))
            .token(SecretString::from("s3cret-token"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn client_errors_name_the_backend() {
        let err = GatewayConfig::new("ftp://gw")
            .name("analytics")
            .client()
            .unwrap_err();
        assert!(err.to_string().contains("gateway `analytics`"), "{err}");
    }
}
