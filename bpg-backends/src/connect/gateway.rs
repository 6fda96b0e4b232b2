//! `bpg+https://[user@]host[:port][/context-path]` and `bpg+http://`: a [`GatewayBackend`].

use std::sync::Arc;

use async_trait::async_trait;
use bpg_client::RetryPolicy;
use bpg_core::{Backend, Connections, Result};

use super::Connection;
use super::factory::{BackendFactory, Settings, bad, in_connection, refuse_fields, secret};
use crate::gateway::{GatewayBackend, GatewayConfig};

/// Builds [`GatewayBackend`]s. The user comes from the URL or `user:`; the secret from
/// `password_env` (Basic auth) or `token_env`/`token_file` (bearer token). Options:
/// `context_path`, `connect_timeout`, `request_timeout`, `log_poll_interval` (durations such as
/// `30s`).
///
/// The client's own retries are off: the connection's [`RetryLayer`](crate::layers::RetryLayer)
/// retries every call, so a request is never retried twice over.
#[derive(Debug, Default, Clone, Copy)]
pub struct GatewayFactory;

#[async_trait]
impl BackendFactory for GatewayFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["bpg+http".to_owned(), "bpg+https".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        let config = self.config(connection)?;
        let backend = GatewayBackend::new(config).map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}

impl GatewayFactory {
    /// The [`GatewayConfig`] of a `bpg+http(s)://` connection (what [`BackendFactory::create`]
    /// builds its backend from), for callers that need the gateway's own client.
    pub fn config(&self, connection: &Connection) -> Result<GatewayConfig> {
        refuse_fields(
            connection,
            &["region", "rules"],
            "a gateway connection takes user, password_env, token_env or token_file",
        )?;
        let mut config = GatewayConfig::from_url(connection.url.as_str())
            .map_err(|e| in_connection(connection, e))?
            .name(connection.name.clone())
            .retry(RetryPolicy::none());
        // `user:` from the file wins over the URL's (which GatewayConfig already percent-decoded).
        if let Some(user) = &connection.user
            && user != connection.url.username()
        {
            config = config.user(user.clone());
        }
        if let Some(password) = &connection.password {
            if connection.user.is_none() {
                return Err(bad(
                    connection,
                    "a password needs a user: put it in the URL (bpg+https://user@host/skatev2) or set `user:`",
                ));
            }
            config = config.password(secret(connection, "password", password)?);
        }
        if let Some(token) = &connection.token {
            config = config.token(secret(connection, "token", token)?);
        }
        let mut options = Settings::options(connection);
        if let Some(path) = options.take("context_path") {
            config = config.context_path(path);
        }
        if let Some(t) = options.duration("connect_timeout")? {
            config = config.connect_timeout(t);
        }
        if let Some(t) = options.duration("request_timeout")? {
            config = config.request_timeout(t);
        }
        if let Some(t) = options.duration("log_poll_interval")? {
            config = config.log_poll_interval(t);
        }
        options.finish(&[
            "context_path",
            "connect_timeout",
            "request_timeout",
            "log_poll_interval",
        ])?;
        Ok(config)
    }
}
