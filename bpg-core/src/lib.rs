//! # bpg-core
//!
//! The backend-neutral heart of bpg: the [`SparkJob`] model (read from BPG requests and
//! spark-operator manifests), canonical [`JobState`]s, the object-safe [`Backend`] trait with its
//! [`BackendExt`] conveniences, the one public [`Error`] enum, and [`SimBackend`], an in-memory
//! simulation of Spark clusters that needs no network and runs deterministically under tokio's
//! paused clock.
//!
//! This crate does no network I/O and never depends on an HTTP, Kubernetes or AWS client.
//!
//! ```
//! use bpg_core::{AppType, Backend, BackendExt, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> bpg_core::Result<()> {
//! let sim = SimBackend::new();
//! let job = SparkJob::new("word-count", AppType::Python, "3.5", "local:///app/wc.py")
//!     .with_label("sim/duration", "90s")
//!     .with_label("sim/log-lines", "3");
//! let (submission, status) = sim
//!     .submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default())
//!     .await?;
//! assert_eq!(status.state, JobState::Succeeded);
//! # let _ = submission;
//! # Ok(())
//! # }
//! ```

mod backend;
mod connections;
mod diagnostic;
mod error;
pub mod formats;
mod job;
pub mod process;
mod quantity;
mod sim;
mod state;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backend::{
    Backend, BackendExt, Capabilities, IdempotencyKey, JobId, LogLine, LogOptions, LogStream,
    Submission, SubmitOptions, WaitOptions,
};
pub use connections::Connections;
pub use diagnostic::{Diagnostic, Diagnostics, Severity, closest_match};
pub use error::{BoxError, Error, Result};
pub use job::{AppType, Dependencies, DynamicAllocation, EnvVar, PodSpec, RestartPolicy, SparkJob};
pub use quantity::{MemoryQuantity, QuantityError};
pub use sim::{SimBackend, SimBackendBuilder, SimOutcome, SimScript};
pub use state::{JobState, JobStatus};
