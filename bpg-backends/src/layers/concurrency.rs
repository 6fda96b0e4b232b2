//! At most N calls in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};
use tokio::sync::Semaphore;

use super::Layer;

/// Lets at most `limit` calls run against the backend at once; the others wait their turn (in
/// arrival order). Protects an API server or gateway from a burst of pipeline tasks.
///
/// A permit is held for the whole call, including a `next_status` that waits for a change (it is a
/// request in flight too: a watch or a poll), and for opening a log stream but not for reading it.
/// One layer value applied to several backends shares its limit across them.
///
/// ```
/// use bpg_backends::layers::ConcurrencyLimitLayer;
/// let layer = ConcurrencyLimitLayer::new(8);
/// assert_eq!(layer.limit(), 8);
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limit: usize,
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `limit` calls at once (a limit of 0 is raised to 1, which would otherwise block for ever).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        ConcurrencyLimitLayer {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
        }
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Layer for ConcurrencyLimitLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(ConcurrencyLimitBackend {
            inner,
            permits: self.permits.clone(),
        })
    }
}

#[derive(Debug)]
struct ConcurrencyLimitBackend {
    inner: Arc<dyn Backend>,
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitBackend {
    async fn limited<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        // The semaphore is never closed, so acquiring only fails if that invariant breaks.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable {
                message: format!("{}: concurrency limiter closed", self.inner.name()),
            })?;
        call.await
    }
}

#[async_trait]
impl Backend for ConcurrencyLimitBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        self.limited(self.inner.submit(job, options)).await
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.limited(self.inner.status(id)).await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.limited(self.inner.logs(id, options)).await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.limited(self.inner.cancel(id)).await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.limited(self.inner.find(key)).await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.limited(self.inner.next_status(id, previous, poll_interval))
            .await
    }
}
