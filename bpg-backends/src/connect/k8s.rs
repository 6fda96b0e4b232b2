//! `k8s://context/namespace`: a [`SparkKubernetesBackend`] (URL forms: [`K8sConfig`]).

use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Result};

use super::Connection;
use super::factory::{BackendFactory, Settings, bad, in_connection, refuse_fields, secret};
use crate::k8s::{K8sConfig, SparkKubernetesBackend};

/// Builds [`SparkKubernetesBackend`]s on one kubeconfig context and namespace, or the pod's
/// service account (`k8s://in-cluster/namespace`). `token_env`/`token_file` replace the kubeconfig
/// user's credentials; options `kubeconfig` (a file) and `context` (for context names that do
/// not fit in a URL host).
#[derive(Debug, Default, Clone, Copy)]
pub struct KubernetesFactory;

#[async_trait]
impl BackendFactory for KubernetesFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["k8s".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        refuse_fields(
            connection,
            &["user", "password", "region", "rules"],
            "a Kubernetes connection authenticates with its kubeconfig, or token_env/token_file",
        )?;
        let mut config = K8sConfig::from_url(connection.url.as_str())
            .map_err(|e| in_connection(connection, e))?;
        let mut options = Settings::options(connection);
        if let Some(path) = options.take("kubeconfig") {
            config = config.kubeconfig(path);
        }
        if let Some(context) = options.take("context") {
            if let Some(host) = &config.context {
                return Err(bad(
                    connection,
                    format!(
                        "the context is given twice (`{host}` in the URL, `{context}` as an option)"
                    ),
                ));
            }
            config = config.context(context);
        }
        options.finish(&["kubeconfig", "context"])?;
        if let Some(token) = &connection.token {
            config = config.token(secret(connection, "token", token)?);
        }
        let backend = SparkKubernetesBackend::connect(&config)
            .await
            .map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend.with_name(connection.name.clone())))
    }
}
