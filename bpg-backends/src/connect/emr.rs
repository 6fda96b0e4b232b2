//! `emr://<virtual-cluster-id>?role=<role ARN>&release=<release label>[&...]`: an
//! [`EmrContainersBackend`] (every URL parameter of [`EmrConfig::from_url`]).

use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Result};
use secrecy::ExposeSecret;

use super::Connection;
use super::factory::{BackendFactory, Settings, bad, in_connection, refuse_fields, secret};
use crate::emr::{EmrConfig, EmrContainersBackend, StaticCredentials};

/// Builds [`EmrContainersBackend`]s. The connection's `region` applies when the URL has none.
/// Credentials come from the AWS default chain, or, as in Airflow's AWS connection, `user`
/// (access key id) with `password_env` (secret access key) and optionally `token_env`/`token_file`
/// (session token). No request is made until the first call.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmrFactory;

#[async_trait]
impl BackendFactory for EmrFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["emr".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        refuse_fields(
            connection,
            &["rules"],
            "an EMR connection takes region, user, password_env, token_env or token_file",
        )?;
        // The access key id sits in `user`, not in the URL: EmrConfig refuses URL credentials.
        let mut url = connection.url.clone();
        let _ = url.set_username("");
        let mut config =
            EmrConfig::from_url(url.as_str()).map_err(|e| in_connection(connection, e))?;
        if !connection.url.query_pairs().any(|(k, _)| k == "name") {
            config = config.name(connection.name.clone());
        }
        match (&config.region, &connection.region) {
            (Some(in_url), Some(given)) if in_url != given => {
                return Err(bad(
                    connection,
                    format!(
                        "region `{given}` differs from the URL's `region={in_url}`; give it once"
                    ),
                ));
            }
            (None, Some(given)) => config = config.region(given.clone()),
            _ => {}
        }
        match (&connection.user, &connection.password) {
            (Some(key_id), Some(secret_key)) => {
                let secret_key = secret(connection, "password", secret_key)?;
                let session = match &connection.token {
                    Some(t) => Some(secret(connection, "token", t)?.expose_secret().to_owned()),
                    None => None,
                };
                config = config.credentials(StaticCredentials::new(
                    key_id.clone(),
                    secret_key.expose_secret(),
                    session,
                ));
            }
            (None, None) if connection.token.is_none() => {}
            _ => {
                return Err(bad(
                    connection,
                    "static AWS credentials need both `user` (access key id) and `password_env` \
                     (secret access key), with token_env/token_file only for a session token; \
                     or give none to use the AWS default chain",
                ));
            }
        }
        Settings::options(connection).finish(&[])?;
        let backend = EmrContainersBackend::connect(config)
            .await
            .map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}
