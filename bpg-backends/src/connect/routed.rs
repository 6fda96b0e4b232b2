//! `routed://` with `rules: rules.yaml`: a [`RoutedBackend`] over the connections the rules'
//! clusters name.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Error, Result};
use bpg_router::RoutingRules;

use super::Connection;
use super::factory::{BackendFactory, Settings, bad, in_connection, refuse_fields};
use crate::RoutedBackend;

/// Builds [`RoutedBackend`]s. Each cluster of the rules file names a connection of the same
/// registry, built (and shared) like any other; `user:` is the submitting user rules may match on;
/// option `seed` makes weighted routing reproducible.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoutedFactory;

/// The connection names `rules`' clusters use, in order, each once.
fn cluster_connections(rules: &RoutingRules) -> Vec<String> {
    let mut seen = BTreeSet::new();
    rules
        .cluster_ids()
        .filter_map(|cluster| rules.connection_of(cluster))
        .filter(|c| seen.insert(*c))
        .map(str::to_owned)
        .collect()
}

#[async_trait]
impl BackendFactory for RoutedFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["routed".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        refuse_fields(
            connection,
            &["password", "token", "region"],
            "a routed connection takes rules, user and option seed; its clusters' connections carry the credentials",
        )?;
        let url = &connection.url;
        if !url.host_str().unwrap_or("").is_empty()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
        {
            return Err(bad(
                connection,
                format!("`{url}`: expected routed:// (the clusters come from `rules:`)"),
            ));
        }
        let mut options = Settings::options(connection);
        let seed = match options.take("seed") {
            None => None,
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
                bad(
                    connection,
                    format!("option `seed: {s}`: expected a whole number"),
                )
            })?),
        };
        options.finish(&["seed"])?;
        let path = connection.rules.as_deref().ok_or_else(|| {
            bad(
                connection,
                "`routed://` needs `rules:` naming a routing rules file (relative to the connections file)",
            )
        })?;
        let rules = RoutingRules::from_file(path)
            .map_err(|d| bad(connection, format!("rules file: {d}")))?;

        let names = cluster_connections(&rules);
        let mut builder = RoutedBackend::builder(rules).name(connection.name.clone());
        for name in names {
            let backend = connections.backend(&name).await.map_err(|e| {
                let why = match e {
                    Error::Config { message } => message,
                    other => other.to_string(),
                };
                bad(
                    connection,
                    format!("cluster connection {name:?} of {}: {why}", path.display()),
                )
            })?;
            builder = builder.backend(name, backend);
        }
        if let Some(user) = &connection.user {
            builder = builder.user(user.clone());
        }
        if let Some(seed) = seed {
            builder = builder.seed(seed);
        }
        let backend = builder.build().map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}
