//! The Spark attempt protocol: one job submitted (or found, or reattached), recorded, waited on
//! with its driver log followed, and cancelled rather than orphaned when it must stop.
//!
//! The executor's Spark tasks and `bpg submit --wait` both run it, so submit, wait, logs and
//! cancel-on-interrupt behave the same everywhere.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, BackendExt, Error, JobStatus, LogOptions, Result, SparkJob, Submission, SubmitOptions,
    WaitOptions,
};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Time given to a followed log stream to deliver its last lines after the job ended.
pub(super) const LOG_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the job of a [`SparkAttempt`] came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// This attempt submitted it.
    New,
    /// An earlier process submitted it but stopped before recording it; its idempotency key found it.
    Found,
    /// An earlier process submitted and recorded it; this attempt only waits on it.
    Reattached,
}

/// What a [`SparkAttempt`] tells its caller while it runs.
#[async_trait]
pub trait AttemptObserver: Send + Sync {
    /// The attempt has its job, before it waits on it: the place to record the submission
    /// durably or print its id. Called once. An error ends the attempt as
    /// [`AttemptEnd::Failed`] and cancels the job.
    async fn submitted(&self, submission: &Submission, how: Submitted) -> Result<()>;

    /// A line of the job's driver log (only when the attempt follows logs).
    fn log_line(&self, line: String);

    /// Something the attempt did that its user should hear about: reattached to or cancelled a
    /// job, a log stream that ended early.
    fn note(&self, message: String);
}

/// How a [`SparkAttempt`] ended.
#[derive(Debug)]
pub enum AttemptEnd {
    /// The job reached a terminal state (succeeded or not: see [`JobStatus::state`]).
    Finished(JobStatus),
    /// Submitting, recording or waiting failed; a job that was accepted has been cancelled.
    Failed(Error),
    /// The deadline passed; the job has been cancelled.
    TimedOut,
    /// The cancellation token fired; the job has been cancelled.
    Cancelled,
}

/// What a [`SparkAttempt`] did: its job (when one was accepted or found) and how it ended.
#[derive(Debug)]
pub struct AttemptOutcome {
    /// The job's submission, if the backend accepted (or an earlier process recorded) one.
    pub submission: Option<Submission>,
    /// How the attempt ended.
    pub end: AttemptEnd,
}

/// How the attempt gets its job.
#[derive(Debug)]
enum Start {
    Submit,
    /// Look the idempotency key up first: an earlier process may have submitted it.
    FindFirst,
    Reattach(Submission),
}

/// One attempt to run a Spark job to its end, with one deadline for all of it.
///
/// [`SparkAttempt::run`] submits the job (with the [`SubmitOptions`]' idempotency key), tells the
/// [`AttemptObserver`] before it waits (so the submission can be recorded, and a restarted
/// process can [reattach](SparkAttempt::reattach) instead of submitting again), then waits for a
/// terminal state while following the driver log. When the deadline passes, the cancellation
/// token fires, or anything fails after the backend may have accepted the job, the job is
/// cancelled (found by its idempotency key if the submit itself was interrupted), so it is never
/// orphaned. Dropping the future instead leaves the job running, for a later reattach.
///
/// ```
/// use std::sync::Mutex;
/// use bpg_core::{AppType, JobState, Result, SimBackend, SparkJob, Submission, SubmitOptions};
/// use bpg_pipeline::{AttemptEnd, AttemptObserver, SparkAttempt, Submitted};
///
/// #[derive(Default)]
/// struct Print(Mutex<Vec<String>>);
///
/// #[async_trait::async_trait]
/// impl AttemptObserver for Print {
///     async fn submitted(&self, submission: &Submission, _how: Submitted) -> Result<()> {
///         self.0.lock().unwrap().push(format!("submitted {}", submission.id));
///         Ok(())
///     }
///     fn log_line(&self, line: String) { self.0.lock().unwrap().push(line); }
///     fn note(&self, message: String) { self.0.lock().unwrap().push(message); }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let sim = SimBackend::new();
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py")
///     .with_label("sim/duration", "30s")
///     .with_label("sim/log-lines", "2");
/// let seen = Print::default();
/// let outcome = SparkAttempt::new(&sim, &job, SubmitOptions::new())
///     .follow_logs(true)
///     .timeout(std::time::Duration::from_secs(600))
///     .run(&seen)
///     .await;
/// let AttemptEnd::Finished(status) = outcome.end else { panic!("{:?}", outcome.end) };
/// assert_eq!(status.state, JobState::Succeeded);
/// let seen = seen.0.into_inner().unwrap();
/// assert!(seen[0].starts_with("submitted "));
/// assert_eq!(seen.len(), 3); // the submission and two driver log lines
/// # }
/// ```
#[derive(Debug)]
pub struct SparkAttempt<'a> {
    backend: &'a dyn Backend,
    job: &'a SparkJob,
    options: SubmitOptions,
    wait: WaitOptions,
    follow_logs: bool,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    start: Start,
}

impl<'a> SparkAttempt<'a> {
    /// An attempt to run `job` on `backend`, submitted with `options`: give them an
    /// idempotency key, so an interrupted submit can be found and cancelled, and a restarted
    /// process can find what was accepted.
    pub fn new(backend: &'a dyn Backend, job: &'a SparkJob, options: SubmitOptions) -> Self {
        SparkAttempt {
            backend,
            job,
            options,
            wait: WaitOptions::default(),
            follow_logs: false,
            deadline: None,
            cancel: CancellationToken::new(),
            start: Start::Submit,
        }
    }

    /// How the job is waited on (poll interval, tolerated status errors). Its `timeout` is
    /// not used: the attempt's deadline ([`SparkAttempt::deadline`]) covers submit and wait.
    pub fn wait_options(mut self, options: WaitOptions) -> Self {
        self.wait = options;
        self
    }

    /// Follows the driver log into [`AttemptObserver::log_line`] while waiting (default off;
    /// nothing to follow on backends that cannot).
    pub fn follow_logs(mut self, follow: bool) -> Self {
        self.follow_logs = follow;
        self
    }

    /// The attempt must end by `at`, submit and wait included; then the job is cancelled.
    pub fn deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(at);
        self
    }

    /// The attempt must end within `limit` from now: [`SparkAttempt::deadline`] of now + limit.
    pub fn timeout(self, limit: Duration) -> Self {
        self.deadline(Instant::now() + limit)
    }

    /// Cancelling `token` ends the attempt and cancels its job.
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Waits on `submission`, submitted and recorded earlier, instead of submitting.
    pub fn reattach(mut self, submission: Submission) -> Self {
        self.start = Start::Reattach(submission);
        self
    }

    /// Looks the idempotency key up before submitting (on backends that can): an earlier
    /// process may have submitted the job without recording it.
    pub fn find_first(mut self) -> Self {
        self.start = Start::FindFirst;
        self
    }

    /// Runs the attempt to its end. See [`SparkAttempt`].
    pub async fn run(self, observer: &dyn AttemptObserver) -> AttemptOutcome {
        let submitted: OnceLock<Submission> = OnceLock::new();
        let end = {
            // Boxed: the wait and the log stream make a large future.
            let work = Box::pin(self.submit_and_wait(observer, &submitted));
            let stop = async {
                let deadline = async {
                    match self.deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = deadline => AttemptEnd::TimedOut,
                    _ = self.cancel.cancelled() => AttemptEnd::Cancelled,
                }
            };
            tokio::select! {
                result = work => match result {
                    Ok(status) => AttemptEnd::Finished(status),
                    Err(e) => AttemptEnd::Failed(e),
                },
                stop = stop => stop,
            }
        };
        if !matches!(end, AttemptEnd::Finished(_)) {
            self.cancel_job(submitted.get(), observer).await;
        }
        AttemptOutcome {
            submission: submitted.into_inner(),
            end,
        }
    }

    /// Gets the job (submitted, found or reattached), tells the observer, then waits.
    async fn submit_and_wait(
        &self,
        observer: &dyn AttemptObserver,
        submitted: &OnceLock<Submission>,
    ) -> Result<JobStatus> {
        let (submission, how) = match &self.start {
            Start::Reattach(submission) => {
                observer.note(format!("reattached to Spark job {}", submission.id));
                (submission.clone(), Submitted::Reattached)
            }
            start => {
                let found = match (start, &self.options.idempotency_key) {
                    (Start::FindFirst, Some(key)) if self.backend.capabilities().find => {
                        self.backend.find(key).await?
                    }
                    _ => None,
                };
                match found {
                    Some(found) => {
                        observer.note(format!(
                            "found Spark job {} submitted before the restart",
                            found.id
                        ));
                        (found, Submitted::Found)
                    }
                    None => (
                        self.backend.submit(self.job, &self.options).await?,
                        Submitted::New,
                    ),
                }
            }
        };
        let submission = submitted.get_or_init(|| submission);
        observer.submitted(submission, how).await?;
        match self.wait_with_logs(submission, observer).await {
            // Jobs of in-process backends (sim://, local://) end with the process that ran them.
            Err(Error::NotFound { .. }) if how == Submitted::Reattached => Err(Error::NotFound {
                what: format!(
                    "Spark job {} recorded before the restart: it no longer exists on {} (a job of an in-process backend such as sim:// or local:// ends with its runner); this try failed",
                    submission.id,
                    self.backend.name()
                ),
            }),
            other => other,
        }
    }

    async fn wait_with_logs(
        &self,
        submission: &Submission,
        observer: &dyn AttemptObserver,
    ) -> Result<JobStatus> {
        let mut options = self.wait.clone();
        options.timeout = None;
        let wait = self.backend.wait_for_terminal(&submission.id, &options);
        if !(self.follow_logs && self.backend.capabilities().follow_logs) {
            return wait.await;
        }
        let mut logs = Box::pin(self.follow(submission, observer));
        tokio::pin!(wait);
        let mut logs_done = false;
        let status = loop {
            tokio::select! {
                status = &mut wait => break status,
                _ = &mut logs, if !logs_done => logs_done = true,
            }
        };
        if !logs_done {
            let _ = tokio::time::timeout(LOG_DRAIN_GRACE, logs).await;
        }
        status
    }

    async fn follow(&self, submission: &Submission, observer: &dyn AttemptObserver) {
        match self
            .backend
            .logs(&submission.id, &LogOptions::follow())
            .await
        {
            Ok(mut lines) => {
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(line) => observer.log_line(line.text),
                        Err(e) => {
                            observer.note(format!("driver log stream ended: {e}"));
                            break;
                        }
                    }
                }
            }
            Err(e) => observer.note(format!("driver logs unavailable: {e}")),
        }
    }

    /// Cancels the attempt's job so it is never orphaned. When the submit itself was
    /// interrupted the backend may still have accepted it: the idempotency key finds it.
    async fn cancel_job(&self, submitted: Option<&Submission>, observer: &dyn AttemptObserver) {
        let backend = self.backend;
        let id = match (submitted, &self.options.idempotency_key) {
            (Some(s), _) => Some(s.id.clone()),
            (None, Some(key)) if backend.capabilities().find => match backend.find(key).await {
                Ok(found) => found.map(|s| s.id),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot look up an interrupted submission");
                    None
                }
            },
            (None, _) => {
                tracing::warn!(
                    job = %self.job.name,
                    backend = backend.name(),
                    "the submit did not complete and this backend cannot look submissions up by key: a job it accepted may keep running"
                );
                None
            }
        };
        if let Some(id) = id {
            match backend.cancel(&id).await {
                Ok(()) => observer.note(format!("cancelled Spark job {id}")),
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cancelling the Spark job failed");
                    observer.note(format!("cancelling Spark job {id} failed: {e}"));
                }
            }
        }
    }
}
