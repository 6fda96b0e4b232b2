//! Connections: names mapped to configured, resilient backends, like Airflow connections.
//!
//! A connection is a URL plus options, from a connections YAML file or a `BPG_CONN_<NAME>`
//! environment variable ([`ConnectionRegistry`]). The URL's scheme picks a [`BackendFactory`];
//! each backend owns its URL grammar ([`GatewayConfig::from_url`](crate::GatewayConfig::from_url),
//! `K8sConfig::from_url`, [`EmrConfig::from_url`](crate::EmrConfig::from_url)):
//!
//! | Scheme | Feature | Factory | Connection fields |
//! |---|---|---|---|
//! | `sim://?duration=1s&capacity=4` | (always) | [`SimFactory`] | URL parameters of [`bpg_core::SimScript`] |
//! | `bpg+https://[user@]host[:port]/skatev2`, `bpg+http://` | `gateway` | `GatewayFactory` | `user`, `password_env` or `token_env`/`token_file`; options `context_path`, `connect_timeout`, `request_timeout`, `log_poll_interval` |
//! | `k8s://context/namespace`, `k8s:///namespace`, `k8s://in-cluster/namespace` | `k8s` | `KubernetesFactory` | `token_env`/`token_file` (instead of the kubeconfig user); options `kubeconfig` (file), `context` |
//! | `emr://<virtual-cluster-id>?role=..&release=..` | `emr` | `EmrFactory` | `region`; `user` + `password_env` as static access key id + secret access key, `token_env`/`token_file` as session token |
//! | `local://?master=local[2]` | `local` | `LocalFactory` | URL parameters `master`, `spark_submit`, `working_dir`, `kill_grace` |
//! | `routed://` | (always) | [`RoutedFactory`] | `rules` (a bpg-router rules file whose clusters name other connections); `user`; option `seed` |
//!
//! Relative paths in options (`kubeconfig`, `spark_submit`, `working_dir`) are relative to the
//! current directory; `rules:` and `token_file:` are relative to the connections file. Secrets are
//! referenced ([`SecretRef`]), never written in a connections file.
//!
//! # Resilient by default
//!
//! Every backend built from a connection is wrapped, outside in, in tracing, retry, a per-call
//! timeout and (when set) a concurrency limit ([`Resilience`]):
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `retries` | 8 | retries of temporary errors (5xx, 429, dropped connections, timeouts): 200 ms doubling up to 30 s, jittered, or the server's `Retry-After`; `0` turns retrying off |
//! | `timeout` | 30s | deadline of one call; `none` turns it off |
//! | `max_concurrency` | unlimited | calls in flight against the backend |
//!
//! A submit is retried only with an idempotency key (the pipeline always has one): the retry first
//! asks the backend whether the earlier attempt was accepted ([`Backend::find`](bpg_core::Backend::find))
//! and resubmits only if not, so a lost answer never makes a second application.
//!
//! ```yaml
//! connections:
//!   bpg_connection: { url: "bpg+https://airflow@gateway.internal/skatev2", password_env: BPG_PASSWORD, retries: 3, timeout: 10s }
//!   analytics:      { url: "k8s://analytics-context/spark-jobs", max_concurrency: 16 }
//!   sim:            { url: "sim://?duration=1s&retries=0" }
//! ```
//!
//! ```
//! use bpg_backends::connect::ConnectionRegistry;
//! use bpg_core::{AppType, Backend, BackendExt, Connections, JobState, SparkJob, SubmitOptions, WaitOptions};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> bpg_core::Result<()> {
//! let mut registry = ConnectionRegistry::new();
//! registry
//!     .parse_yaml("connections:\n  sim: { url: \"sim://?duration=1s\", retries: 2 }\n", None)
//!     .expect("valid connections");
//! let sim = registry.backend("sim").await?;
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
//! let (_, status) = sim.submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default()).await?;
//! assert_eq!(status.state, JobState::Succeeded);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

mod connection;
#[cfg(feature = "emr")]
mod emr;
mod factory;
#[cfg(feature = "gateway")]
mod gateway;
#[cfg(feature = "k8s")]
mod k8s;
#[cfg(feature = "local")]
mod local;
mod registry;
mod routed;
mod sim;
#[cfg(test)]
mod tests;

pub use connection::{Connection, Resilience, SecretRef};
#[cfg(feature = "emr")]
pub use emr::EmrFactory;
pub use factory::BackendFactory;
#[cfg(feature = "gateway")]
pub use gateway::GatewayFactory;
#[cfg(feature = "k8s")]
pub use k8s::KubernetesFactory;
#[cfg(feature = "local")]
pub use local::LocalFactory;
pub use registry::{ConnectionRegistry, ENV_PREFIX};
pub use routed::RoutedFactory;
pub use sim::SimFactory;

/// One factory per backend this build has: `sim://` and `routed://` always, the others per cargo
/// feature. [`ConnectionRegistry::new`] registers them.
pub fn builtin_factories() -> Vec<Arc<dyn BackendFactory>> {
    // Pushed to per cargo feature; with none, nothing is.
    #[allow(unused_mut)]
    let mut factories: Vec<Arc<dyn BackendFactory>> =
        vec![Arc::new(SimFactory), Arc::new(RoutedFactory)];
    #[cfg(feature = "gateway")]
    factories.push(Arc::new(GatewayFactory));
    #[cfg(feature = "k8s")]
    factories.push(Arc::new(KubernetesFactory));
    #[cfg(feature = "emr")]
    factories.push(Arc::new(EmrFactory));
    #[cfg(feature = "local")]
    factories.push(Arc::new(LocalFactory));
    factories
}
