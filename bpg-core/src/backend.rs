//! The `Backend` trait every way of running Spark implements, and the types it speaks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::job::SparkJob;
use crate::state::JobStatus;

/// A backend's id for a submitted job (a BPG submission id, `namespace/name` of a
/// SparkApplication, an EMR job run id). Opaque to everyone but the backend that issued it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// Wraps a backend's id.
    pub fn new(id: impl Into<String>) -> Self {
        JobId(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        JobId(s.to_owned())
    }
}

impl From<String> for JobId {
    fn from(s: String) -> Self {
        JobId(s)
    }
}

/// A caller-chosen key that makes `submit` idempotent: a backend never creates a second Spark
/// application for a key it has already accepted.
///
/// The pipeline derives it from (dag, run, task, try); backends turn it into what their API
/// understands (an EMR `clientToken`, a Kubernetes resource name, a BPG submission id suffix)
/// through [`IdempotencyKey::digest`].
///
/// ```
/// use bpg_core::IdempotencyKey;
/// let k = IdempotencyKey::for_task("daily", "manual__2025-05-01", "pi", 1);
/// assert_eq!(k.as_str(), "daily/manual__2025-05-01/pi/1");
/// assert_eq!(k.digest(16).len(), 16);
/// assert_eq!(k.digest(16), IdempotencyKey::for_task("daily", "manual__2025-05-01", "pi", 1).digest(16));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A key from any string.
    pub fn new(key: impl Into<String>) -> Self {
        IdempotencyKey(key.into())
    }

    /// The key of one try of one task of one DAG run.
    pub fn for_task(dag_id: &str, run_id: &str, task_id: &str, try_number: u32) -> Self {
        IdempotencyKey(format!("{dag_id}/{run_id}/{task_id}/{try_number}"))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `len` (at most 64) lowercase hex digits of the key's SHA-256: safe in resource
    /// names, labels and tokens, and the same for the same key in every process.
    pub fn digest(&self, len: usize) -> String {
        let hash = Sha256::digest(self.0.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in hash {
            hex.push_str(&format!("{b:02x}"));
        }
        hex.truncate(len.min(64));
        hex
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options for [`Backend::submit`]. Built with methods so it can grow without breaking callers.
///
/// ```
/// use bpg_core::{IdempotencyKey, SubmitOptions};
/// let opts = SubmitOptions::new().with_idempotency_key(IdempotencyKey::new("dag/run/task/1"));
/// assert!(opts.idempotency_key.is_some());
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SubmitOptions {
    /// Makes the submit idempotent. Without one, a retried submit may start a second application.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Extra tags/labels for the backend's resource (not routing labels; those are on the job).
    pub tags: Vec<(String, String)>,
}

impl SubmitOptions {
    /// Default options: no key, no tags.
    pub fn new() -> Self {
        SubmitOptions::default()
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }
}

/// A job a backend accepted: its id and where it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The backend's id for the job.
    pub id: JobId,
    /// Name of the backend that accepted it.
    pub backend: String,
    /// Cluster it was sent to, when the backend knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Namespace or queue, when the backend knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The key it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// When the backend accepted it.
    pub submitted_at: DateTime<Utc>,
}

impl Submission {
    /// A submission accepted now.
    pub fn new(id: impl Into<JobId>, backend: impl Into<String>) -> Self {
        Submission {
            id: id.into(),
            backend: backend.into(),
            cluster: None,
            namespace: None,
            idempotency_key: None,
            submitted_at: Utc::now(),
        }
    }
}

/// Options for [`Backend::logs`].
///
/// ```
/// use bpg_core::LogOptions;
/// let follow_from_10 = LogOptions::follow().from_line(10);
/// assert!(follow_from_10.follow);
/// assert_eq!(follow_from_10.from_line, 10);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Keep the stream open until the job ends, yielding lines as they come.
    pub follow: bool,
    /// Skip lines before this position (0-based line number), to resume a dropped stream.
    pub from_line: u64,
    /// Only the last N lines (snapshot mode).
    pub tail: Option<u64>,
}

impl LogOptions {
    /// What is there now, then end.
    pub fn snapshot() -> Self {
        LogOptions::default()
    }

    /// Follow until the job ends.
    pub fn follow() -> Self {
        LogOptions {
            follow: true,
            ..LogOptions::default()
        }
    }

    /// Resume at line `n` (0-based).
    pub fn from_line(mut self, n: u64) -> Self {
        self.from_line = n;
        self
    }

    /// Only the last `n` lines.
    pub fn tail(mut self, n: u64) -> Self {
        self.tail = Some(n);
        self
    }
}

/// One line of driver output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// 0-based position in the driver's log; pass `position + 1` to [`LogOptions::from_line`] to resume.
    pub position: u64,
    /// The line, without its trailing newline.
    pub text: String,
}

/// An async stream of log lines.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

/// What a backend can do, as plain data so callers can decide before they try.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// `cancel` stops the job.
    pub cancel: bool,
    /// `logs` returns driver output.
    pub logs: bool,
    /// `logs` can follow a running job.
    pub follow_logs: bool,
    /// `submit` honours idempotency keys across processes (not just within this instance).
    pub idempotent_submit: bool,
    /// `find` can look up a submission by idempotency key.
    pub find: bool,
    /// `next_status` waits on the backend's change notifications instead of polling.
    pub watch: bool,
}

impl Capabilities {
    /// A backend that can do everything.
    pub fn all() -> Self {
        Capabilities {
            cancel: true,
            logs: true,
            follow_logs: true,
            idempotent_submit: true,
            find: true,
            watch: true,
        }
    }
}

/// A place Spark jobs run: a gateway, a Kubernetes cluster, EMR, a local `spark-submit`, a simulation.
///
/// Object-safe and used as `Arc<dyn Backend>`; conveniences live on [`BackendExt`]; middleware
/// layers wrap one `Arc<dyn Backend>` and return another.
///
/// ```
/// use std::sync::Arc;
/// use bpg_core::{AppType, Backend, BackendExt, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> bpg_core::Result<()> {
/// let backend: Arc<dyn Backend> = Arc::new(SimBackend::new());
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py").with_label("sim/duration", "2s");
/// let (submission, status) = backend
///     .submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default())
///     .await?;
/// assert_eq!(status.state, JobState::Succeeded);
/// println!("{} finished on {}", submission.id, submission.backend);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (its connection name, or a type name).
    fn name(&self) -> &str;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Starts `job`. With an idempotency key, a second call with the same key returns the first
    /// submission instead of starting another application.
    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission>;

    /// The job's current status.
    async fn status(&self, id: &JobId) -> Result<JobStatus>;

    /// Driver log lines, as a snapshot or followed until the job ends.
    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream>;

    /// Asks the backend to stop the job. Cancelling a job that already ended is not an error.
    async fn cancel(&self, id: &JobId) -> Result<()>;

    /// The submission made earlier with `key`, if this backend accepted one.
    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>>;

    /// Waits for the status to change from `previous` (or for about `poll_interval`), then returns
    /// the current status. The default polls; backends with change notifications (a Kubernetes
    /// watch, a simulation's clock) override it to return as soon as something happens.
    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        if previous.is_some() {
            tokio::time::sleep(poll_interval).await;
        }
        self.status(id).await
    }
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        (**self).submit(job, options).await
    }
    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        (**self).status(id).await
    }
    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        (**self).logs(id, options).await
    }
    async fn cancel(&self, id: &JobId) -> Result<()> {
        (**self).cancel(id).await
    }
    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        (**self).find(key).await
    }
    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        (**self).next_status(id, previous, poll_interval).await
    }
}

/// How [`BackendExt::wait_for_terminal`] waits.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitOptions {
    /// Time between status polls (backends that watch return sooner). Default 1 s.
    pub poll_interval: Duration,
    /// Give up after this long; `None` waits for ever. Default `None`.
    pub timeout: Option<Duration>,
    /// Cancel the job when the timeout passes. Default true: a job we stop waiting for is not left orphaned.
    pub cancel_on_timeout: bool,
    /// Consecutive temporary status errors tolerated before giving up. Default 5.
    pub max_status_errors: u32,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            poll_interval: Duration::from_secs(1),
            timeout: None,
            cancel_on_timeout: true,
            max_status_errors: 5,
        }
    }
}

impl WaitOptions {
    /// Sets the poll interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets whether a timeout cancels the job.
    pub fn cancel_on_timeout(mut self, cancel: bool) -> Self {
        self.cancel_on_timeout = cancel;
        self
    }
}

/// Conveniences every backend gets: waiting for a job to end, submitting and waiting in one call.
#[async_trait]
pub trait BackendExt: Backend {
    /// Polls (or watches) until the job reaches a terminal state, returning that status.
    ///
    /// Temporary status errors are tolerated up to `max_status_errors` in a row. When the timeout
    /// passes, the job is cancelled (if `cancel_on_timeout`) and [`Error::Timeout`] is returned.
    async fn wait_for_terminal(&self, id: &JobId, options: &WaitOptions) -> Result<JobStatus> {
        let wait = async {
            let mut previous: Option<JobStatus> = None;
            let mut errors = 0u32;
            loop {
                match self
                    .next_status(id, previous.as_ref(), options.poll_interval)
                    .await
                {
                    Ok(status) => {
                        errors = 0;
                        if status.is_terminal() {
                            return Ok(status);
                        }
                        previous = Some(status);
                    }
                    Err(e) if e.is_temporary() && errors < options.max_status_errors => {
                        errors += 1;
                        tracing::debug!(job = %id, error = %e, "temporary status error, retrying");
                        tokio::time::sleep(e.retry_after().unwrap_or(options.poll_interval)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        match options.timeout {
            None => wait.await,
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(result) => result,
                Err(_) => {
                    if options.cancel_on_timeout
                        && let Err(e) = self.cancel(id).await
                    {
                        tracing::warn!(job = %id, error = %e, "cancel after timeout failed");
                    }
                    Err(Error::Timeout {
                        what: format!("waiting for job {id}"),
                        after: limit,
                    })
                }
            },
        }
    }

    /// Submits `job` and waits for it to end. The timeout covers submit and wait together.
    async fn submit_and_wait(
        &self,
        job: &SparkJob,
        submit: &SubmitOptions,
        wait: &WaitOptions,
    ) -> Result<(Submission, JobStatus)> {
        let started = tokio::time::Instant::now();
        let submission = match wait.timeout {
            None => self.submit(job, submit).await?,
            Some(limit) => tokio::time::timeout(limit, self.submit(job, submit))
                .await
                .map_err(|_| Error::Timeout {
                    what: format!("submitting {}", job.name),
                    after: limit,
                })??,
        };
        let mut remaining = wait.clone();
        if let Some(limit) = wait.timeout {
            remaining.timeout = Some(limit.saturating_sub(started.elapsed()));
        }
        let status = self.wait_for_terminal(&submission.id, &remaining).await?;
        Ok((submission, status))
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}
