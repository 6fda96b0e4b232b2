//! `sim://?duration=1s&capacity=4`: a [`SimBackend`] (see [`bpg_core::SimScript`] for the
//! parameters).

use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Result, SimBackend};

use super::Connection;
use super::factory::{BackendFactory, bad};

/// Builds [`SimBackend`]s for `sim://` connections; always registered.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimFactory;

#[async_trait]
impl BackendFactory for SimFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["sim".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        let builder = SimBackend::builder()
            .name(connection.name.clone())
            .query(connection.url.query().unwrap_or(""))
            .map_err(|d| bad(connection, d))?;
        Ok(Arc::new(builder.build()))
    }
}
