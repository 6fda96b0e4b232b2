//! A `tracing` span around every call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};
use tracing::Instrument;

use super::{Layer, Operation};

/// Runs every call inside an `info` span named `bpg.backend` with fields `backend`, `op` and `job`
/// (the job id, or for `submit` the job name and, once accepted, the id), and records its outcome:
/// a `debug` event with the duration on success, an `info` event with the error and whether it is
/// temporary on failure (not `warn`: the error goes back to the caller, which reports it; a
/// not-found status check is no warning). Errors never carry credentials, so logging them is safe.
///
/// ```
/// use bpg_backends::layers::TracingLayer;
/// let _layer = TracingLayer::new();
/// ```
#[derive(Clone, Debug, Default)]
pub struct TracingLayer {
    _private: (),
}

impl TracingLayer {
    /// The layer.
    pub fn new() -> Self {
        TracingLayer::default()
    }
}

impl Layer for TracingLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(TracingBackend { inner })
    }
}

#[derive(Debug)]
struct TracingBackend {
    inner: Arc<dyn Backend>,
}

impl TracingBackend {
    fn span(&self, op: Operation, job: &(dyn std::fmt::Display + Sync)) -> tracing::Span {
        tracing::info_span!(
            "bpg.backend",
            backend = self.inner.name(),
            op = op.as_str(),
            job = %job,
            submission = tracing::field::Empty,
        )
    }

    async fn traced<T>(
        &self,
        span: tracing::Span,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        async move {
            let started = tokio::time::Instant::now();
            let result = call.await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(_) => tracing::debug!(elapsed_ms, "ok"),
                Err(e) => {
                    tracing::info!(elapsed_ms, error = %e, temporary = e.is_temporary(), "failed")
                }
            }
            result
        }
        .instrument(span)
        .await
    }
}

#[async_trait]
impl Backend for TracingBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let span = self.span(Operation::Submit, &job.name);
        let result = self
            .traced(span.clone(), self.inner.submit(job, options))
            .await;
        if let Ok(submission) = &result {
            span.record("submission", tracing::field::display(&submission.id));
        }
        result
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.traced(self.span(Operation::Status, id), self.inner.status(id))
            .await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.traced(self.span(Operation::Logs, id), self.inner.logs(id, options))
            .await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.traced(self.span(Operation::Cancel, id), self.inner.cancel(id))
            .await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.traced(self.span(Operation::Find, key), self.inner.find(key))
            .await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.traced(
            self.span(Operation::NextStatus, id),
            self.inner.next_status(id, previous, poll_interval),
        )
        .await
    }
}
