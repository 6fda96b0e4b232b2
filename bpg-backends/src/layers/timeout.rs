//! A deadline for every call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};

use super::{Layer, Operation};

/// Fails a call with [`Error::Timeout`] (a temporary error, so a [`RetryLayer`](super::RetryLayer)
/// outside retries it) when it takes longer than the deadline; the call's future is dropped, which
/// cancels its request.
///
/// `next_status` may legitimately wait up to its poll interval for a change, so its deadline is
/// the poll interval plus this one. For `logs` the deadline covers opening the stream, not
/// following it.
///
/// ```
/// use std::time::Duration;
/// use bpg_backends::layers::TimeoutLayer;
/// let layer = TimeoutLayer::new(Duration::from_secs(30));
/// assert_eq!(layer.timeout(), Duration::from_secs(30));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A deadline of `timeout` per call.
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer { timeout }
    }

    /// The deadline per call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Layer for TimeoutLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(TimeoutBackend {
            inner,
            timeout: self.timeout,
        })
    }
}

#[derive(Debug)]
struct TimeoutBackend {
    inner: Arc<dyn Backend>,
    timeout: Duration,
}

impl TimeoutBackend {
    async fn within<T>(
        &self,
        limit: Duration,
        op: Operation,
        subject: &(dyn std::fmt::Display + Sync),
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: format!("{} {op} {subject}", self.inner.name()),
                after: limit,
            }),
        }
    }
}

#[async_trait]
impl Backend for TimeoutBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        self.within(
            self.timeout,
            Operation::Submit,
            &job.name,
            self.inner.submit(job, options),
        )
        .await
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.within(self.timeout, Operation::Status, id, self.inner.status(id))
            .await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.within(
            self.timeout,
            Operation::Logs,
            id,
            self.inner.logs(id, options),
        )
        .await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.within(self.timeout, Operation::Cancel, id, self.inner.cancel(id))
            .await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.within(self.timeout, Operation::Find, key, self.inner.find(key))
            .await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.within(
            self.timeout.saturating_add(poll_interval),
            Operation::NextStatus,
            id,
            self.inner.next_status(id, previous, poll_interval),
        )
        .await
    }
}
