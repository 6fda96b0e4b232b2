//! Middleware layers: each wraps any `Arc<dyn Backend>` and returns another, adding one concern.
//!
//! | Layer | What it adds |
//! |---|---|
//! | [`TracingLayer`] | a `tracing` span per call (backend, operation, job id), outcome events |
//! | [`RetryLayer`] | retries temporary errors with exponential backoff and jitter, honours `Retry-After`; never re-submits without an idempotency key |
//! | [`TimeoutLayer`] | a deadline per call ([`Error::Timeout`](bpg_core::Error::Timeout), which is temporary) |
//! | [`ConcurrencyLimitLayer`] | at most N calls in flight against the backend |
//! | [`RateLimitLayer`] | at most N calls started per second, evenly spaced |
//! | [`FaultInjectionLayer`] | scripted errors, delays and lost responses per operation, for tests |
//!
//! # Ordering
//!
//! Layers apply inside out: the last one applied is the outermost. The recommended stack, from the
//! outside in, is
//!
//! ```text
//! TracingLayer → RetryLayer → TimeoutLayer → ConcurrencyLimitLayer → [RateLimitLayer] → [FaultInjectionLayer] → backend
//! ```
//!
//! - **Tracing outermost**: one span covers a whole logical call, retries included, and the retry
//!   layer's events ("retrying after ...") land inside it.
//! - **Retry outside timeout**: every attempt gets its own deadline, and an attempt that timed out
//!   (a temporary error) is retried. The other way round, one slow attempt would eat the whole budget.
//! - **Concurrency limit innermost**: it bounds requests actually in flight; backoff sleeps in the
//!   retry layer do not hold a permit. Waiting for a permit counts against the timeout, so a
//!   saturated backend shows up as timeouts (and retries) rather than unbounded queueing.
//! - **Rate limit inside the concurrency limit**: a call waiting for its turn holds its permit, so
//!   the two limits compose into "N at once, M per second"; like the concurrency limit, waiting
//!   counts against the timeout.
//! - **Fault injection closest to the backend**: injected faults look exactly like the backend's own.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bpg_core::{AppType, Backend, BackendExt, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions};
//! use bpg_backends::layers::{ConcurrencyLimitLayer, LayerExt, RetryLayer, TimeoutLayer, TracingLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> bpg_core::Result<()> {
//! let backend: Arc<dyn Backend> = Arc::new(SimBackend::new());
//! let backend = backend
//!     .layer(ConcurrencyLimitLayer::new(16))
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))
//!     .layer(RetryLayer::new())
//!     .layer(TracingLayer::new());
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
//! let (_, status) = backend.submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default()).await?;
//! assert_eq!(status.state, JobState::Succeeded);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use bpg_core::Backend;

mod concurrency;
mod fault;
mod rate;
mod retry;
mod timeout;
mod trace;

pub use concurrency::ConcurrencyLimitLayer;
pub use fault::{Fault, FaultInjectionLayer};
pub use rate::RateLimitLayer;
pub use retry::RetryLayer;
pub use timeout::TimeoutLayer;
pub use trace::TracingLayer;

/// Wraps a backend in one more concern and returns the wrapped backend.
pub trait Layer {
    /// Wraps `inner`.
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend>;
}

/// `backend.layer(l)`: applies a [`Layer`], so stacks read top to bottom (innermost first).
pub trait LayerExt {
    /// Wraps `self` in `layer`.
    fn layer<L: Layer>(self, layer: L) -> Arc<dyn Backend>;
}

impl LayerExt for Arc<dyn Backend> {
    fn layer<L: Layer>(self, layer: L) -> Arc<dyn Backend> {
        layer.layer(self)
    }
}

/// One operation of the [`Backend`] trait, as layers and fault scripts name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// [`Backend::submit`].
    Submit,
    /// [`Backend::status`].
    Status,
    /// [`Backend::logs`] (opening the stream).
    Logs,
    /// [`Backend::cancel`].
    Cancel,
    /// [`Backend::find`].
    Find,
    /// [`Backend::next_status`].
    NextStatus,
}

impl Operation {
    /// Lower-case name (`submit`, `next_status`), as used in spans and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Submit => "submit",
            Operation::Status => "status",
            Operation::Logs => "logs",
            Operation::Cancel => "cancel",
            Operation::Find => "find",
            Operation::NextStatus => "next_status",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
