//! [`Connections`]: backends by name, as a pipeline or a routed backend resolves them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Backend, Error, Result};

/// Resolves connection names (what a pipeline task's `connection:` or a routing rule's cluster
/// names) to backends.
///
/// bpg-backends' `ConnectionRegistry` builds them from URLs and connection files; a plain map of
/// already built backends is one too, which is all an embedding application or a test needs.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use bpg_core::{Backend, Connections, SimBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let connections = HashMap::from([("sim".to_string(), Arc::new(SimBackend::new()) as Arc<dyn Backend>)]);
/// assert!(connections.contains("sim"));
/// assert_eq!(connections.backend("sim").await.unwrap().name(), "sim");
/// let err = connections.backend("emr").await.unwrap_err().to_string();
/// assert!(err.contains("unknown connection \"emr\""), "{err}");
/// # }
/// ```
#[async_trait]
pub trait Connections: fmt::Debug + Send + Sync {
    /// True when `name` is a connection (its backend may not be built yet).
    fn contains(&self, name: &str) -> bool;

    /// The backend of connection `name`, built on first use where that applies.
    async fn backend(&self, name: &str) -> Result<Arc<dyn Backend>>;
}

fn unknown(name: &str) -> Error {
    Error::config(format!("unknown connection {name:?}"))
}

#[async_trait]
impl Connections for HashMap<String, Arc<dyn Backend>> {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }

    async fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.get(name).cloned().ok_or_else(|| unknown(name))
    }
}

#[async_trait]
impl Connections for BTreeMap<String, Arc<dyn Backend>> {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }

    async fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.get(name).cloned().ok_or_else(|| unknown(name))
    }
}

#[async_trait]
impl<T: Connections + ?Sized> Connections for Arc<T> {
    fn contains(&self, name: &str) -> bool {
        (**self).contains(name)
    }

    async fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        (**self).backend(name).await
    }
}
