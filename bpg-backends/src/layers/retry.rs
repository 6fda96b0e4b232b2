//! Retries temporary errors with exponential backoff and jitter.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};
use futures::StreamExt;
use rand::Rng;

use super::{Layer, Operation};

/// Retries calls that failed with a temporary error ([`Error::is_temporary`]): exponential backoff
/// with jitter, or the server's `Retry-After` when it gave one. Permanent errors pass through at once.
///
/// `submit` is special, because retrying it blindly could start a second Spark application:
/// - without an idempotency key it is **never** retried;
/// - with one, each retry first asks the backend's [`find`](Backend::find) whether the earlier
///   attempt was accepted after all (its response lost), and returns that submission if so;
///   backends without `find` are retried only if they deduplicate keys themselves
///   ([`Capabilities::idempotent_submit`]).
///
/// Log streams are resumed: when a stream breaks with a temporary error, it is re-opened from the
/// position after the last line delivered, so the caller sees every line once.
///
/// ```
/// use std::time::Duration;
/// use bpg_backends::layers::RetryLayer;
/// let retry = RetryLayer::new()
///     .max_retries(6)
///     .initial_backoff(Duration::from_millis(100))
///     .max_backoff(Duration::from_secs(10));
/// assert_eq!(retry.backoff(0), Duration::from_millis(100));
/// assert_eq!(retry.backoff(3), Duration::from_millis(800));
/// assert_eq!(retry.backoff(20), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryLayer {
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    jitter: bool,
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer {
            max_retries: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl RetryLayer {
    /// Four retries, 200 ms doubling up to 30 s, with jitter.
    pub fn new() -> Self {
        RetryLayer::default()
    }

    /// Retries after the first attempt (0 disables retrying).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Delay before the first retry.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Upper bound of any computed delay (a server's `Retry-After` is honoured even if longer).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Growth factor between retries (values below 1 are treated as 1).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m.max(1.0);
        self
    }

    /// Turns jitter off, so delays are exactly [`backoff`](Self::backoff) (useful in tests).
    pub fn no_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The delay before retry number `retry` (0-based), before jitter: `initial × multiplier^retry`,
    /// capped at the maximum.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.min(64) as i32);
        let secs = self.initial_backoff.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The actual delay: the server's `Retry-After` if the error carries one, else the backoff with
    /// "equal jitter" (uniform between half and all of it), which spreads retrying clients apart.
    fn delay(&self, retry: u32, error: &Error) -> Duration {
        if let Some(after) = error.retry_after() {
            return after;
        }
        let base = self.backoff(retry);
        if !self.jitter || base.is_zero() {
            return base;
        }
        let half = base / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

impl Layer for RetryLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(RetryBackend {
            inner,
            policy: self.clone(),
        })
    }
}

#[derive(Debug)]
struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryLayer,
}

impl RetryBackend {
    async fn sleep_before_retry(&self, op: Operation, retry: u32, error: &Error) {
        let delay = self.policy.delay(retry, error);
        tracing::warn!(
            backend = self.inner.name(),
            op = op.as_str(),
            retry = retry + 1,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "temporary error, retrying"
        );
        tokio::time::sleep(delay).await;
    }

    async fn run<'a, T, F, Fut>(&'a self, op: Operation, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Err(e) if e.is_temporary() && retry < self.policy.max_retries => {
                    self.sleep_before_retry(op, retry, &e).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }

    async fn retry_submit(
        &self,
        job: &SparkJob,
        options: &SubmitOptions,
        key: &IdempotencyKey,
        mut error: Error,
    ) -> Result<Submission> {
        let caps = self.inner.capabilities();
        if !caps.find && !caps.idempotent_submit {
            return Err(error);
        }
        let mut retry = 0;
        while error.is_temporary() && retry < self.policy.max_retries {
            self.sleep_before_retry(Operation::Submit, retry, &error)
                .await;
            retry += 1;
            if caps.find {
                // The failed attempt may have been accepted with its response lost: look first.
                match self.inner.find(key).await {
                    Ok(Some(found)) => return Ok(found),
                    Ok(None) => {}
                    Err(e) => {
                        // Not knowing whether it exists, do not submit blind: retry the lookup.
                        error = e;
                        continue;
                    }
                }
            }
            match self.inner.submit(job, options).await {
                Ok(submission) => return Ok(submission),
                Err(e) => error = e,
            }
        }
        Err(error)
    }
}

#[async_trait]
impl Backend for RetryBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let error = match self.inner.submit(job, options).await {
            Ok(submission) => return Ok(submission),
            Err(e) => e,
        };
        match &options.idempotency_key {
            Some(key) if error.is_temporary() => self.retry_submit(job, options, key, error).await,
            // Without a key a retry could start a second application: hand the error back.
            _ => Err(error),
        }
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.run(Operation::Status, || self.inner.status(id)).await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        let stream = self
            .run(Operation::Logs, || self.inner.logs(id, options))
            .await?;
        Ok(resuming(
            self.inner.clone(),
            self.policy.clone(),
            id.clone(),
            options.clone(),
            stream,
        ))
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        // Cancelling is idempotent (cancelling an ended job is not an error), so it is safe to retry.
        self.run(Operation::Cancel, || self.inner.cancel(id)).await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.run(Operation::Find, || self.inner.find(key)).await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.run(Operation::NextStatus, || {
            self.inner.next_status(id, previous, poll_interval)
        })
        .await
    }
}

/// A log stream that re-opens itself from the next position after a temporary error.
fn resuming(
    inner: Arc<dyn Backend>,
    policy: RetryLayer,
    id: JobId,
    options: LogOptions,
    stream: LogStream,
) -> LogStream {
    struct Resume {
        inner: Arc<dyn Backend>,
        policy: RetryLayer,
        id: JobId,
        options: LogOptions,
        stream: Option<LogStream>,
        /// Position of the next line the caller has not seen.
        next: u64,
        /// Retries since the last line came through.
        retries: u32,
        done: bool,
    }
    let state = Resume {
        inner,
        policy,
        next: options.from_line,
        id,
        options,
        stream: Some(stream),
        retries: 0,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let error = match s.stream.as_mut() {
                Some(stream) => match stream.next().await {
                    Some(Ok(line)) => {
                        s.next = line.position + 1;
                        s.retries = 0;
                        return Some((Ok(line), s));
                    }
                    Some(Err(e)) => e,
                    None => return None,
                },
                None => {
                    let options = s.options.clone().from_line(s.next);
                    match s.inner.logs(&s.id, &options).await {
                        Ok(stream) => {
                            s.stream = Some(stream);
                            continue;
                        }
                        Err(e) => e,
                    }
                }
            };
            if !error.is_temporary() || s.retries >= s.policy.max_retries {
                s.done = true;
                return Some((Err(error), s));
            }
            let delay = s.policy.delay(s.retries, &error);
            tracing::warn!(
                backend = s.inner.name(),
                job = %s.id,
                resume_at = s.next,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "log stream broke, resuming"
            );
            s.stream = None;
            s.retries += 1;
            tokio::time::sleep(delay).await;
        }
    })
    .boxed()
}
