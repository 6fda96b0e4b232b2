//! # bpg-backends
//!
//! Ways to run Spark jobs behind the [`bpg_core::Backend`] trait, each behind its cargo feature, and
//! middleware [`layers`] that wrap any backend (retry, timeout, concurrency limit, tracing, fault
//! injection for tests).
//!
//! | Feature | Backend |
//! |---|---|
//! | `k8s` | `k8s::SparkKubernetesBackend`: `SparkApplication` resources on one cluster's API server |
//! | `k8s-mock` | `k8s::mock::MockApiServer`: a wiremock stand-in of that API server, for tests and examples |
//! | `local` | `local::LocalSparkBackend`: `spark-submit --master local[*]` on this machine |
//! | `emr` | `emr::EmrContainersBackend`: EMR on EKS job runs |
//! | `gateway` | `gateway::GatewayBackend`: a Batch Processing Gateway through bpg-client |
//! | (always) | [`routed::RoutedBackend`]: several named backends behind bpg-router rules |
//!
//! [`connect`] turns named connections (`bpg+https://`, `k8s://`, `emr://`, `local://`, `sim://`,
//! `routed://` URLs, from a connections file or `BPG_CONN_<NAME>` variables) into these backends,
//! each wrapped in retry, timeout and tracing layers by default.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bpg_core::{AppType, Backend, BackendExt, IdempotencyKey, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions};
//! use bpg_backends::layers::{LayerExt, RetryLayer, TimeoutLayer, TracingLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> bpg_core::Result<()> {
//! // Any backend (here the in-memory simulation) gets retries, deadlines and spans.
//! let backend = (Arc::new(SimBackend::new()) as Arc<dyn Backend>)
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))
//!     .layer(RetryLayer::new())
//!     .layer(TracingLayer::new());
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
//! let opts = SubmitOptions::new().with_idempotency_key(IdempotencyKey::for_task("daily", "run-1", "pi", 1));
//! let (submission, status) = backend.submit_and_wait(&job, &opts, &WaitOptions::default()).await?;
//! assert_eq!(status.state, JobState::Succeeded);
//! assert_eq!(backend.find(opts.idempotency_key.as_ref().unwrap()).await?, Some(submission));
//! # Ok(())
//! # }
//! ```

pub mod connect;
pub mod layers;
pub mod routed;
pub use routed::RoutedBackend;

#[cfg(feature = "k8s")]
pub mod k8s;

#[cfg(feature = "local")]
pub mod local;

#[cfg(feature = "emr")]
pub mod emr;
#[cfg(feature = "emr")]
pub use emr::{EmrConfig, EmrContainersBackend};

#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "gateway")]
pub use gateway::{GatewayBackend, GatewayConfig};
