//! The connection registry the commands share: a connections file, then `BPG_CONN_*` variables.

use std::path::Path;

use bpg_backends::connect::ConnectionRegistry;

use crate::failure::Failure;

/// Connections from `file` (when given) and the environment, with every backend factory this
/// build knows. A connection whose scheme has no factory fails when it is used, naming the
/// feature that provides it.
pub fn registry(file: Option<&Path>) -> Result<ConnectionRegistry, Failure> {
    let mut registry = ConnectionRegistry::new();
    if let Some(file) = file {
        registry
            .load_file(file)
            .map_err(|d| Failure::config_diagnostics(&d))?;
    }
    registry
        .load_env()
        .map_err(|d| Failure::config_diagnostics(&d))?;
    tracing::debug!(file = ?file, connections = ?registry.names(), "connections loaded");
    Ok(registry)
}
