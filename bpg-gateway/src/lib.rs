//! # bpg-gateway
//!
//! The Batch Processing Gateway as a service: BPG's REST API (`/skatev2`, with `/apiv2` as an
//! alias) in front of many Spark clusters, for an unchanged Airflow `BPGOperator`, `curl` scripts
//! and bpg's own [`GatewayBackend`](bpg_backends::gateway::GatewayBackend). Jobs are routed by
//! [`bpg_router`] rules with their isolation constraints enforced on every submit (a pinned
//! `clusterId` included); clusters are connections (`k8s://`, `emr://`, `local://`, `sim://`,
//! another `bpg+https://` gateway); submissions are recorded in a [`store`] (SQLite, or PostgreSQL for replicas) before the
//! cluster is called, so a crash neither loses nor duplicates an application.
//!
//! It keeps BPG's wire contract (bodies, content types, error bodies, status codes) and fixes
//! BPG's bugs: cluster ids may contain `-`, malformed ids are a 400 (not a 500), a log that does
//! not exist is a 404, `SUBMISSION_FAILED` without retries left ends `FAILED`, unit-less memory is
//! a 400, a repeated `submissionIdSuffix` returns the first submission.
//!
//! Our extensions, advertised in `/admin/version`'s `extensions`: `POST /spark/statuses` (many
//! statuses in one call), `GET /spark/{id}/explain` (the routing decision and what a waiting job
//! waits for), the `Idempotency-Key` header.
//!
//! [`Gateway::router`] is an axum [`Router`](axum::Router) an application can mount or serve;
//! [`Gateway::serve`] serves it with graceful shutdown. `bpg gateway` runs it from a config file.
//!
//! ```
//! use std::sync::Arc;
//! use bpg_client::{BpgClient, Auth, SubmitBody};
//! use bpg_core::{Backend, SimBackend};
//! use bpg_gateway::Gateway;
//! use bpg_router::RoutingRules;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rules = RoutingRules::from_yaml(r#"
//! clusters:
//!   - {id: analytics, connection: spot}
//!   - {id: datascience, connection: compliant, tags: {phi-compliant: "true"}}
//! constraints:
//!   - {name: phi-isolation, when: {labels: {data-classification: phi}}, require_tags: {phi-compliant: "true"}}
//! rules:
//!   - {name: phi, match: {labels: {data-classification: phi}}, route: {clusters: [datascience]}}
//! default: {clusters: [analytics]}
//! "#, None).map_err(|d| d.to_string())?;
//! let gateway = Gateway::builder(rules)
//!     .backend("spot", Arc::new(SimBackend::builder().name("spot").build()))
//!     .backend("compliant", Arc::new(SimBackend::builder().name("compliant").build()))
//!     .build()
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/skatev2", listener.local_addr()?);
//! tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
//!
//! let client = BpgClient::builder(&url).auth(Auth::user_account("alice")).build()?;
//! let phi = client.submit_body(SubmitBody::json(r#"{"sparkVersion": "3.5",
//!     "mainApplicationFile": "local:///claims.py",
//!     "driver": {"labels": {"data-classification": "phi", "sim/duration": "1s"}}}"#)).await?;
//! assert!(phi.submission_id.starts_with("datascience-"));
//! // Pinning a non-compliant cluster does not get around the constraint.
//! let pinned = client.submit_body(SubmitBody::json(r#"{"sparkVersion": "3.5",
//!     "mainApplicationFile": "local:///claims.py", "clusterId": "analytics",
//!     "driver": {"labels": {"data-classification": "phi"}}}"#)).await.unwrap_err();
//! assert!(pinned.to_string().contains("phi-isolation"), "{pinned}");
//! gateway.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
pub mod auth;
pub mod config;
mod error;
pub mod ids;
mod metrics;
mod openapi;
mod serve;
mod service;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bpg_core::{Backend, Connections, Error, Result};
use bpg_router::RoutingRules;

pub use api::{AIRFLOW_SYSTEM_ACCOUNT, EXTENSIONS, MAX_BATCH};
pub use error::ApiError;
pub use serve::{Tls, TlsFiles, serve};
pub use service::{ClusterSettings, Settings, SparkImage};
pub use store::{SqliteStore, SubmissionStore};

use auth::Access;
use service::Inner;

/// A running gateway: its clusters, store and followers. Cheap to clone; see the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// Builds a [`Gateway`]; start with [`Gateway::builder`].
pub struct GatewayBuilder {
    rules: Arc<RoutingRules>,
    backends: BTreeMap<String, Arc<dyn Backend>>,
    connections: Option<Arc<dyn Connections>>,
    settings: Settings,
    store: Option<Arc<dyn SubmissionStore>>,
    access: Option<Access>,
    seed: Option<u64>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// The backend behind connection `name` (a cluster's `connection` in the rules).
    pub fn backend(mut self, name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.backends.insert(name.into(), backend);
        self
    }

    /// Where connections not given with [`GatewayBuilder::backend`] come from (a
    /// `ConnectionRegistry`, or any map of backends).
    pub fn connections(mut self, connections: Arc<dyn Connections>) -> Self {
        self.connections = Some(connections);
        self
    }

    /// The settings (default: [`Settings::default`]).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The store (default: SQLite in memory).
    pub fn store(mut self, store: Arc<dyn SubmissionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Who may call and what they may do (see [`auth`]). Without one the gateway runs in
    /// development mode: any user name is taken at its word.
    pub fn access(mut self, access: Access) -> Self {
        self.access = Some(access);
        self
    }

    /// Seeds weighted routing, for reproducible placements.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Builds the backend of every cluster, then dispatches again and follows what the store holds
    /// unfinished from an earlier run.
    pub async fn build(self) -> Result<Gateway> {
        let mut clusters = BTreeMap::new();
        for id in self.rules.cluster_ids() {
            let connection = self.rules.connection_of(id).unwrap_or(id).to_owned();
            let backend = match self.backends.get(&connection) {
                Some(b) => b.clone(),
                None => match &self.connections {
                    Some(c) => c.backend(&connection).await.map_err(|e| {
                        Error::config(format!("cluster {id}: connection {connection}: {e}"))
                    })?,
                    None => {
                        return Err(Error::config(format!(
                            "cluster {id} uses connection {connection}, which has no backend"
                        )));
                    }
                },
            };
            let limits = self.settings.clusters.get(id).cloned().unwrap_or_default();
            let backend = match limits.max_calls_per_second {
                Some(rate) => bpg_backends::layers::LayerExt::layer(
                    backend,
                    bpg_backends::layers::RateLimitLayer::per_second(rate),
                ),
                None => backend,
            };
            clusters.insert(
                id.to_owned(),
                Inner::cluster(id, backend, limits.max_in_flight),
            );
        }
        for id in self.settings.clusters.keys() {
            if !clusters.contains_key(id) {
                return Err(Error::config(format!(
                    "settings are given for cluster {id}, which the rules do not have"
                )));
            }
        }
        let store = match self.store {
            Some(s) => s,
            None => Arc::new(SqliteStore::in_memory()?),
        };
        let inner = Arc::new(Inner::new(
            self.settings,
            self.rules,
            clusters,
            store,
            self.access,
            self.seed,
        ));
        let resumed = inner.reconcile(true).await?;
        if resumed > 0 {
            tracing::info!(
                submissions = resumed,
                "resumed unfinished submissions from the store"
            );
        }
        inner.tasks.spawn(inner.clone().keep_leases());
        Ok(Gateway { inner })
    }
}

impl Gateway {
    /// A builder over routing rules; every cluster's connection needs a backend.
    pub fn builder(rules: impl Into<Arc<RoutingRules>>) -> GatewayBuilder {
        GatewayBuilder {
            rules: rules.into(),
            backends: BTreeMap::new(),
            connections: None,
            settings: Settings::default(),
            store: None,
            access: None,
            seed: None,
        }
    }

    /// The HTTP API as a router to serve or mount.
    pub fn router(&self) -> axum::Router {
        api::router(self.inner.clone())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SubmissionStore> {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Whether the gateway runs without authentication (no access file: development mode).
    pub fn is_dev_mode(&self) -> bool {
        self.inner.auth.is_dev()
    }

    /// Puts a new access file in place (as `bpg gateway` does on SIGHUP): requests from now on
    /// are checked against it, and remembered password checks are forgotten.
    pub fn reload_access(&self, access: Access) {
        self.inner.auth.replace(access);
    }

    /// Cluster ids.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.inner.clusters.keys().map(String::as_str)
    }

    /// Serves the router on `listener` until `shutdown` resolves, then drains: followed log
    /// streams end cleanly, requests in flight are answered, background work stops (and resumes
    /// from the store on the next start).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, None, shutdown).await
    }

    /// [`Gateway::serve`] over HTTPS: TLS with rustls from `tls`'s PEM files.
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        tls: Tls,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, Some(tls), shutdown).await
    }

    async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<Tls>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.inner.shutdown.clone();
        let stop = async move {
            shutdown.await;
            token.cancel();
        };
        let result = serve::serve(
            self.router(),
            listener,
            tls,
            self.inner.settings.limits.header_read_timeout,
            stop,
        )
        .await;
        self.shutdown().await;
        result
    }

    /// Stops background work (dispatches, followers) and waits for it to end, then gives this
    /// gateway's leases up so that a restart, or another replica, takes its submissions over at
    /// once.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if let Err(e) = self
            .inner
            .store
            .release_leases(&self.inner.settings.replica)
            .await
        {
            tracing::warn!(error = %e, "cannot give leases up; they run out by themselves");
        }
    }

    /// This gateway's name among replicas sharing its store.
    pub fn replica(&self) -> &str {
        &self.inner.settings.replica
    }
}
