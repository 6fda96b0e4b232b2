//! [`BackendFactory`] and what every factory shares: errors that name the connection, secrets
//! read without showing them, and settings taken one by one with leftovers refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Error, Result};

use super::connection::{Connection, SecretRef};

/// Builds backends for one or more URL schemes. bpg-backends has one per backend (see the
/// [module docs](super)); applications can register their own with
/// [`ConnectionRegistry::register_factory`](super::ConnectionRegistry::register_factory).
#[async_trait]
pub trait BackendFactory: Send + Sync + 'static {
    /// The URL schemes this factory handles (`["k8s"]`, `["bpg+http", "bpg+https"]`).
    fn schemes(&self) -> Vec<String>;

    /// Builds the backend for `connection`. `connections` resolves other connections by name (a
    /// routed backend's clusters name them). The registry wraps what this returns in the
    /// connection's [`Resilience`](super::Resilience) layers.
    async fn create(
        &self,
        connection: &Connection,
        connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>>;
}

/// A configuration error about `connection`.
pub(crate) fn bad(connection: &Connection, message: impl std::fmt::Display) -> Error {
    Error::config(format!("connection {:?}: {message}", connection.name))
}

/// Puts the connection's name in front of a configuration error from a backend constructor.
pub(crate) fn in_connection(connection: &Connection, error: Error) -> Error {
    match error {
        Error::Config { message } => bad(connection, message),
        Error::InvalidSpec(d) => bad(connection, d),
        other => other,
    }
}

/// Reads a secret; the error names the connection field it came from, never the value.
#[cfg_attr(
    not(any(feature = "gateway", feature = "k8s", feature = "emr")),
    allow(dead_code)
)]
pub(crate) fn secret(
    connection: &Connection,
    field: &str,
    reference: &SecretRef,
) -> Result<secrecy::SecretString> {
    reference.resolve().map_err(|e| {
        let why = match e {
            Error::Config { message } => message,
            other => other.to_string(),
        };
        let from = match reference {
            SecretRef::Env(_) => format!("{field}_env"),
            SecretRef::File(_) => format!("{field}_file"),
            SecretRef::Value(_) => format!("the URL's {field}"),
        };
        bad(connection, format!("{from}: {why} (expected the {field})"))
    })
}

/// Refuses connection fields a scheme has no use for, rather than ignore them.
pub(crate) fn refuse_fields(connection: &Connection, fields: &[&str], hint: &str) -> Result<()> {
    let given: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| match *f {
            "user" => connection.user.is_some(),
            "password" => connection.password.is_some(),
            "token" => connection.token.is_some(),
            "region" => connection.region.is_some(),
            "rules" => connection.rules.is_some(),
            _ => false,
        })
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(bad(
        connection,
        format!(
            "`{}://` connections do not take {}; {hint}",
            connection.scheme(),
            given.join(", ")
        ),
    ))
}

/// Key/value settings (a connection's `options`, or a URL query) taken one by one; whatever is
/// left over is an error naming the keys expected.
pub(crate) struct Settings<'a> {
    connection: &'a Connection,
    what: &'static str,
    values: BTreeMap<String, String>,
}

#[cfg_attr(not(any(feature = "local", feature = "gateway")), allow(dead_code))]
impl<'a> Settings<'a> {
    /// The connection's `options`.
    pub(crate) fn options(connection: &'a Connection) -> Self {
        Settings {
            connection,
            what: "option",
            values: connection.options.clone(),
        }
    }

    /// The connection URL's query parameters; a parameter given twice is an error.
    pub(crate) fn query(connection: &'a Connection) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (key, value) in connection.url.query_pairs() {
            if values.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(bad(
                    connection,
                    format!("URL parameter `{key}` is given twice"),
                ));
            }
        }
        Ok(Settings {
            connection,
            what: "URL parameter",
            values,
        })
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    pub(crate) fn duration(&mut self, key: &str) -> Result<Option<std::time::Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => humantime::parse_duration(v.trim()).map(Some).map_err(|e| {
                let given = match self.what {
                    "option" => format!("option `{key}: {v}`"),
                    _ => format!("{} `{key}={v}`", self.what),
                };
                bad(
                    self.connection,
                    format!("{given}: {e}; expected a duration such as 30s or 500ms"),
                )
            }),
        }
    }

    /// Fails on keys nobody took.
    pub(crate) fn finish(self, expected: &[&str]) -> Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let unknown: Vec<&str> = self.values.keys().map(String::as_str).collect();
        Err(bad(
            self.connection,
            format!(
                "unknown {} {} for `{}://`; expected {}",
                self.what,
                unknown.join(", "),
                self.connection.scheme(),
                if expected.is_empty() {
                    "none".to_owned()
                } else {
                    format!("one of {}", expected.join(", "))
                }
            ),
        ))
    }
}
