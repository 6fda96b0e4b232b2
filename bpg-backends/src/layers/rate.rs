//! At most N calls started per second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};
use tokio::time::Instant;

use super::Layer;

/// Starts at most `rate` calls per second against the backend, evenly spaced; a burst waits, in
/// arrival order. Protects an API server whose operator slows down under load (a spark-operator
/// with hundreds of applications in flight). Only the start of a call is paced: a `next_status`
/// that waits for a change, or a log being read, does not hold others back.
///
/// One layer value applied to several backends shares its pace across them.
///
/// ```
/// use std::sync::Arc;
/// use bpg_backends::layers::{LayerExt, RateLimitLayer};
/// use bpg_core::{AppType, Backend, SimBackend, SparkJob, SubmitOptions};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> bpg_core::Result<()> {
/// let backend = (Arc::new(SimBackend::new()) as Arc<dyn Backend>).layer(RateLimitLayer::per_second(10));
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
/// let started = tokio::time::Instant::now();
/// for _ in 0..11 {
///     backend.submit(&job, &SubmitOptions::new()).await?;
/// }
/// assert!(started.elapsed() >= std::time::Duration::from_secs(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    pace: Arc<Pace>,
}

#[derive(Debug)]
struct Pace {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    /// Waits for this call's turn.
    async fn turn(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

impl RateLimitLayer {
    /// At most `rate` calls per second (0 is raised to 1).
    pub fn per_second(rate: u32) -> Self {
        RateLimitLayer {
            pace: Arc::new(Pace {
                interval: Duration::from_secs(1) / rate.max(1),
                next: Mutex::new(None),
            }),
        }
    }

    /// Time between two calls.
    pub fn interval(&self) -> Duration {
        self.pace.interval
    }
}

impl Layer for RateLimitLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(RateLimitBackend {
            inner,
            pace: self.pace.clone(),
        })
    }
}

#[derive(Debug)]
struct RateLimitBackend {
    inner: Arc<dyn Backend>,
    pace: Arc<Pace>,
}

#[async_trait]
impl Backend for RateLimitBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        self.pace.turn().await;
        self.inner.submit(job, options).await
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.pace.turn().await;
        self.inner.status(id).await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.pace.turn().await;
        self.inner.logs(id, options).await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.pace.turn().await;
        self.inner.cancel(id).await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.pace.turn().await;
        self.inner.find(key).await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.pace.turn().await;
        self.inner.next_status(id, previous, poll_interval).await
    }
}
