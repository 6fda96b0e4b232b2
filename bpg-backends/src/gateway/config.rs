//! [`GatewayConfig`]: where a [`GatewayBackend`](super::GatewayBackend) finds its gateway and how it
//! authenticates, built in code or read from a `bpg+https://user@host/skatev2` connection URL.

use std::fmt;
use std::time::Duration;

use bpg_client::{Auth, BpgClient, BpgClientBuilder, RetryPolicy};
use bpg_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};

/// The backend name when none is set.
pub const DEFAULT_NAME: &str = "gateway";

/// Configuration of one [`GatewayBackend`](super::GatewayBackend): its name, the
/// [`BpgClientBuilder`] of its client (URL and context path, timeouts, retries, TLS roots, log
/// poll interval: every client option, with the client's defaults), and the credentials.
///
/// Credentials never come from a URL (URLs end up in logs and run records): the URL may carry the
/// user name, the password or token is set with [`GatewayConfig::password`] or
/// [`GatewayConfig::token`] from wherever the secret lives. The parts arrive separately and are
/// combined into the client's [`Auth`] when the client is built ([`GatewayConfig::auth`]).
///
/// ```
/// use std::time::Duration;
/// use bpg_backends::gateway::GatewayConfig;
/// use secrecy::SecretString;
///
/// let config = GatewayConfig::from_url("bpg+https://airflow@gateway.internal/skatev2")?
///     .password(SecretString::from("from-a-secret-store"))
///     .request_timeout(Duration::from_secs(5));
/// assert_eq!(config.url(), "https://gateway.internal/skatev2");
/// assert_eq!(config.user.as_deref(), Some("airflow"));
/// assert_eq!(config.builder.get_request_timeout(), Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("from-a-secret-store"));
/// # Ok::<(), bpg_core::Error>(())
/// ```
///
/// Options the conveniences below do not cover are set on the builder itself:
///
/// ```
/// use bpg_backends::gateway::GatewayConfig;
///
/// let mut config = GatewayConfig::from_url("bpg+https://airflow@gateway.internal")?.name("bpg");
/// config.builder = config.builder.client_version("airflow-provider/1.0");
/// assert_eq!(config.builder.get_client_version(), "airflow-provider/1.0");
/// # Ok::<(), bpg_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The backend's name (its connection name). Default `gateway`.
    pub name: String,
    /// The client's options. Its URL is `http(s)://host[:port][/context-path]`; without a path the
    /// client uses `/skatev2`. Its [`Auth`] is used only when none of `user`, `password` and
    /// `token` is set.
    pub builder: BpgClientBuilder,
    /// The user BPG sees (Basic auth user, or the `User-Account` header without a password).
    pub user: Option<String>,
    /// Basic-auth password (BPG ignores it; a proxy in front may not).
    pub password: Option<SecretString>,
    /// Bearer token, for gateways behind an authenticating proxy.
    pub token: Option<SecretString>,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("GatewayConfig")
            .field("name", &self.name)
            .field("builder", &self.builder)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .finish()
    }
}

impl GatewayConfig {
    /// A gateway at `url` (`https://host/skatev2`), no credentials, the client's default options.
    pub fn new(url: impl Into<String>) -> Self {
        GatewayConfig::from_builder(BpgClient::builder(url))
    }

    /// A gateway reached with a client `builder` already set up (for example
    /// `MockGateway::client_builder`), under the default name and without further credentials.
    pub fn from_builder(builder: BpgClientBuilder) -> Self {
        GatewayConfig {
            name: DEFAULT_NAME.to_owned(),
            builder,
            user: None,
            password: None,
            token: None,
        }
    }

    /// Reads a connection URL: `bpg+https://[user@]host[:port][/context-path]` or `bpg+http://...`
    /// (plain `https://` and `http://` are accepted too). The user name may be in the URL; a
    /// password may not (set it with [`GatewayConfig::password`]), and neither may a query.
    ///
    /// ```
    /// use bpg_backends::gateway::GatewayConfig;
    /// let c = GatewayConfig::from_url("bpg+http://127.0.0.1:8080/apiv2")?;
    /// assert_eq!((c.url(), c.user.as_deref()), ("http://127.0.0.1:8080/apiv2", None));
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

    /// The gateway's `http(s)://` URL (the builder's).
    pub fn url(&self) -> &str {
        self.builder.url()
    }

    /// Sets the backend name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
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

    /// Sets the context path (overrides the URL's path): [`BpgClientBuilder::context_path`].
    pub fn context_path(mut self, path: impl Into<String>) -> Self {
        self.builder = self.builder.context_path(path);
        self
    }

    /// Sets the connect timeout: [`BpgClientBuilder::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.connect_timeout(timeout);
        self
    }

    /// Sets the request timeout: [`BpgClientBuilder::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.request_timeout(timeout);
        self
    }

    /// Sets the retry policy of idempotent requests: [`BpgClientBuilder::retry`]. Submits are
    /// never retried blindly: the backend looks for the first one instead.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.builder = self.builder.retry(retry);
        self
    }

    /// Sets the status poll interval of followed logs: [`BpgClientBuilder::log_poll_interval`].
    pub fn log_poll_interval(mut self, interval: Duration) -> Self {
        self.builder = self.builder.log_poll_interval(interval);
        self
    }

    /// Trusts the CA certificates of a PEM bundle in addition to the system's roots:
    /// [`BpgClientBuilder::ca_bundle_pem`].
    pub fn ca_bundle_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.builder = self.builder.ca_bundle_pem(pem);
        self
    }

    /// The credentials sent: a token as `Bearer`; a user with a password as Basic; a user alone
    /// as the `User-Account` header (BPG's header for callers authenticated by a sidecar); with
    /// none of them, the builder's own [`Auth`].
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
            (None, None, None) => Ok(self.builder.get_auth().clone()),
        }
    }

    /// Builds the [`BpgClient`] this configuration describes.
    pub fn client(&self) -> Result<BpgClient> {
        let auth = self.auth()?;
        self.builder
            .clone()
            .auth(auth)
            .build()
            .map_err(|e| match e {
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
            assert_eq!(config.url(), url, "{input}");
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
        assert!(debug.contains("alice"), "{debug}");
        assert!(debug.contains("request_timeout"), "{debug}");

        // Nor the secrets of an Auth set on the wrapped builder.
        for auth in [
            Auth::basic("bob", "s3cret-basic"),
            Auth::bearer("s3cret-bearer"),
        ] {
            let config = GatewayConfig::from_builder(BpgClient::builder("https://gw").auth(auth));
            let debug = format!("{config:?}");
            assert!(!debug.contains("s3cret"), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }

    #[test]
    fn client_options_live_in_the_wrapped_builder() {
        let config = GatewayConfig::from_url("bpg+https://alice@gw/skatev2")
            .unwrap()
            .name("analytics")
            .context_path("/apiv2")
            .connect_timeout(Duration::from_secs(3))
            .request_timeout(Duration::from_secs(4))
            .retry(RetryPolicy::none())
            .log_poll_interval(Duration::from_millis(50))
            .ca_bundle_pem(b"pem".to_vec());
        let builder = &config.builder;
        assert_eq!(builder.url(), "https://gw/skatev2");
        assert_eq!(builder.get_context_path(), Some("/apiv2"));
        assert_eq!(builder.get_connect_timeout(), Duration::from_secs(3));
        assert_eq!(builder.get_request_timeout(), Duration::from_secs(4));
        assert_eq!(builder.get_retry(), &RetryPolicy::none());
        assert_eq!(builder.get_log_poll_interval(), Duration::from_millis(50));
        assert_eq!(builder.get_ca_bundles().len(), 1);
        // The defaults are the client's.
        let defaults = GatewayConfig::new("https://gw");
        let client_defaults = BpgClient::builder("https://gw");
        assert_eq!(
            format!("{:?}", defaults.builder),
            format!("{client_defaults:?}")
        );
        let client = GatewayConfig::new("https://gw")
            .context_path("/apiv2")
            .client()
            .unwrap();
        assert_eq!(client.base_url().as_str(), "https://gw/apiv2");
    }

    #[test]
    fn the_builders_auth_is_used_when_no_credentials_are_set() {
        let builder = BpgClient::builder("https://gw").auth(Auth::user_account("svc"));
        let config = GatewayConfig::from_builder(builder);
        assert!(matches!(config.auth().unwrap(), Auth::UserAccount(u) if u == "svc"));
        assert_eq!(config.client().unwrap().auth().user(), Some("svc"));
        // Credentials set on the config win.
        let config = config.user("alice");
        assert_eq!(config.client().unwrap().auth().user(), Some("alice"));
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
