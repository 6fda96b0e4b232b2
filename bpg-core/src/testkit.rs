//! Conformance kit: async checks any [`Backend`] implementation runs in its own tests to prove the
//! trait contract (feature `testkit`).
//!
//! Each check panics with a message naming the broken rule, like an `assert!`. Call them one by one
//! or all at once with [`run_all`]:
//!
//! ```
//! use std::sync::Arc;
//! use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
//! use bpg_core::SimBackend;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let backend = Arc::new(SimBackend::new());
//! testkit::run_all(backend, &ConformanceJobs::simulated(), &ConformanceOptions::default()).await;
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;

use crate::backend::{
    Backend, BackendExt, IdempotencyKey, JobId, LogLine, LogOptions, SubmitOptions, WaitOptions,
};
use crate::error::Error;
use crate::job::{AppType, SparkJob};
use crate::state::{JobState, JobStatus};

/// The three jobs the kit submits; each backend supplies ones it can run.
#[derive(Clone, Debug)]
pub struct ConformanceJobs {
    /// Runs to success and writes at least one driver log line.
    pub succeeds: SparkJob,
    /// Runs and fails.
    pub fails: SparkJob,
    /// Runs long enough (tens of seconds or more) to be cancelled while running.
    pub long_running: SparkJob,
}

impl ConformanceJobs {
    /// Jobs scripted with `sim/*` labels, for [`crate::SimBackend`] and stand-ins that reuse its scripting.
    pub fn simulated() -> Self {
        let base = SparkJob::new(
            "conformance",
            AppType::Python,
            "3.5",
            "local:///opt/app/conformance.py",
        );
        ConformanceJobs {
            succeeds: base
                .clone()
                .with_label("sim/duration", "3s")
                .with_label("sim/log-lines", "3")
                .with_label("sim/queue-delay", "1s"),
            fails: base
                .clone()
                .with_label("sim/duration", "2s")
                .with_label("sim/outcome", "failed")
                .with_label("sim/message", "conformance failure"),
            long_running: base.with_label("sim/duration", "1h"),
        }
    }
}

/// How the kit waits.
#[derive(Clone, Debug)]
pub struct ConformanceOptions {
    /// Poll interval and overall timeout for each wait.
    pub wait: WaitOptions,
    /// An id this backend has never issued (for the not-found check).
    pub unknown_id: JobId,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions {
            wait: WaitOptions::default()
                .poll_interval(Duration::from_millis(500))
                .timeout(Duration::from_secs(300)),
            unknown_id: JobId::new("conformance-00000000000000000000000000000000"),
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A key no earlier test run used.
pub fn unique_key(label: &str) -> IdempotencyKey {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    IdempotencyKey::new(format!(
        "testkit/{label}/{}-{nanos}-{n}",
        std::process::id()
    ))
}

/// Polls until `pred` holds for the status, or panics after the wait timeout.
async fn wait_until(
    backend: &dyn Backend,
    id: &JobId,
    wait: &WaitOptions,
    what: &str,
    pred: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let limit = wait.timeout.unwrap_or(Duration::from_secs(300));
    let poll = async {
        let mut previous: Option<JobStatus> = None;
        loop {
            let status = backend
                .next_status(id, previous.as_ref(), wait.poll_interval)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: status of {id} failed while waiting for {what}: {e}",
                        backend.name()
                    )
                });
            if pred(&status) {
                return status;
            }
            assert!(
                !status.is_terminal(),
                "{}: job {id} ended {:?} ({}) while waiting for {what}",
                backend.name(),
                status.state,
                status.native_state
            );
            previous = Some(status);
        }
    };
    tokio::time::timeout(limit, poll).await.unwrap_or_else(|_| {
        panic!(
            "{}: {id} did not reach {what} within {limit:?}",
            backend.name()
        )
    })
}

/// submit → status progresses (never leaves a terminal state) → `Succeeded`. Returns the job id.
pub async fn submit_runs_to_success(
    backend: &dyn Backend,
    jobs: &ConformanceJobs,
    options: &ConformanceOptions,
) -> JobId {
    let submission = backend
        .submit(
            &jobs.succeeds,
            &SubmitOptions::new().with_idempotency_key(unique_key("success")),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: submit failed: {e}", backend.name()));
    assert_eq!(
        submission.backend,
        backend.name(),
        "a submission names the backend that accepted it"
    );
    let first = backend
        .status(&submission.id)
        .await
        .unwrap_or_else(|e| panic!("{}: status right after submit failed: {e}", backend.name()));
    assert!(
        !first.native_state.is_empty() || first.state == JobState::Pending,
        "native state is kept"
    );
    let done = backend
        .wait_for_terminal(&submission.id, &options.wait)
        .await
        .unwrap_or_else(|e| panic!("{}: waiting for success failed: {e}", backend.name()));
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "{}: job ended {done:?}",
        backend.name()
    );
    let again = backend
        .status(&submission.id)
        .await
        .expect("status of a finished job");
    assert_eq!(again.state, JobState::Succeeded, "terminal means terminal");
    submission.id
}

/// A failing job ends `Failed`, with a message or at least a native state explaining it.
pub async fn failure_is_reported(
    backend: &dyn Backend,
    jobs: &ConformanceJobs,
    options: &ConformanceOptions,
) {
    let submission = backend
        .submit(
            &jobs.fails,
            &SubmitOptions::new().with_idempotency_key(unique_key("failure")),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: submit failed: {e}", backend.name()));
    let done = backend
        .wait_for_terminal(&submission.id, &options.wait)
        .await
        .unwrap_or_else(|e| panic!("{}: waiting for failure failed: {e}", backend.name()));
    assert_eq!(
        done.state,
        JobState::Failed,
        "{}: job ended {done:?}",
        backend.name()
    );
    assert!(
        !done.native_state.is_empty(),
        "a failed status keeps the backend's native state"
    );
}

/// A running job can be cancelled; it ends `Cancelled`; cancelling again is not an error.
pub async fn cancel_stops_a_running_job(
    backend: &dyn Backend,
    jobs: &ConformanceJobs,
    options: &ConformanceOptions,
) {
    if !backend.capabilities().cancel {
        let submission = backend
            .submit(&jobs.succeeds, &SubmitOptions::new())
            .await
            .expect("submit");
        let err = backend
            .cancel(&submission.id)
            .await
            .expect_err("cancel without the capability must fail");
        assert!(
            matches!(err, Error::Unsupported { .. }),
            "expected Unsupported, got {err}"
        );
        return;
    }
    let submission = backend
        .submit(
            &jobs.long_running,
            &SubmitOptions::new().with_idempotency_key(unique_key("cancel")),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: submit failed: {e}", backend.name()));
    wait_until(backend, &submission.id, &options.wait, "Running", |s| {
        s.state == JobState::Running
    })
    .await;
    backend
        .cancel(&submission.id)
        .await
        .unwrap_or_else(|e| panic!("{}: cancel failed: {e}", backend.name()));
    let done = wait_until(backend, &submission.id, &options.wait, "Cancelled", |s| {
        s.state == JobState::Cancelled
    })
    .await;
    assert_eq!(done.state, JobState::Cancelled);
    backend.cancel(&submission.id).await.unwrap_or_else(|e| {
        panic!(
            "{}: cancelling an ended job must not fail: {e}",
            backend.name()
        )
    });
}

/// Driver logs of a finished job: a snapshot with positions from 0, resumable from a position;
/// following a finished job ends. Without the capability, `logs` answers `Unsupported`.
pub async fn logs_are_readable(backend: &dyn Backend, finished: &JobId) {
    if !backend.capabilities().logs {
        let err = match backend.logs(finished, &LogOptions::snapshot()).await {
            Ok(_) => panic!("{}: logs without the capability must fail", backend.name()),
            Err(e) => e,
        };
        assert!(
            matches!(err, Error::Unsupported { .. }),
            "expected Unsupported, got {err}"
        );
        return;
    }
    let collect = |options: LogOptions| async move {
        let stream = backend
            .logs(finished, &options)
            .await
            .unwrap_or_else(|e| panic!("{}: logs failed: {e}", backend.name()));
        stream
            .map(|l| l.unwrap_or_else(|e| panic!("log stream error: {e}")))
            .collect::<Vec<LogLine>>()
            .await
    };
    let all = collect(LogOptions::snapshot()).await;
    assert!(
        !all.is_empty(),
        "{}: a finished job that wrote output has log lines",
        backend.name()
    );
    for (i, line) in all.iter().enumerate() {
        assert_eq!(line.position, i as u64, "positions count lines from 0");
    }
    let resume_at = all.len() as u64 / 2;
    let rest = collect(LogOptions::snapshot().from_line(resume_at)).await;
    assert_eq!(
        rest.as_slice(),
        &all[resume_at as usize..],
        "resuming yields exactly the remaining lines"
    );
    if backend.capabilities().follow_logs {
        let followed =
            tokio::time::timeout(Duration::from_secs(120), collect(LogOptions::follow()))
                .await
                .expect("following a finished job's log ends");
        assert_eq!(
            followed.len(),
            all.len(),
            "following a finished job yields its whole log once"
        );
    }
}

/// Submitting twice with one key creates one application; `find` returns it; an unused key finds nothing.
pub async fn idempotent_submit(
    backend: &dyn Backend,
    jobs: &ConformanceJobs,
    options: &ConformanceOptions,
) {
    let key = unique_key("idempotent");
    let opts = SubmitOptions::new().with_idempotency_key(key.clone());
    let first = backend
        .submit(&jobs.succeeds, &opts)
        .await
        .expect("first submit");
    let second = backend
        .submit(&jobs.succeeds, &opts)
        .await
        .expect("second submit with the same key");
    assert_eq!(
        first.id,
        second.id,
        "{}: a repeated key must not start a second application",
        backend.name()
    );
    if backend.capabilities().find {
        let found = backend
            .find(&key)
            .await
            .expect("find")
            .expect("find returns the submission");
        assert_eq!(found.id, first.id);
        assert!(
            backend
                .find(&unique_key("never-used"))
                .await
                .expect("find")
                .is_none(),
            "an unused key finds nothing"
        );
    } else {
        let err = backend
            .find(&key)
            .await
            .expect_err("find without the capability must fail");
        assert!(
            matches!(err, Error::Unsupported { .. }),
            "expected Unsupported, got {err}"
        );
    }
    backend
        .wait_for_terminal(&first.id, &options.wait)
        .await
        .expect("the job still finishes");
}

/// Status of an id the backend never issued is `NotFound`.
pub async fn unknown_job_is_not_found(backend: &dyn Backend, options: &ConformanceOptions) {
    match backend.status(&options.unknown_id).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!(
            "{}: status of an unknown id must be NotFound, got {other:?}",
            backend.name()
        ),
    }
}

/// Every check, in order.
pub async fn run_all(
    backend: Arc<dyn Backend>,
    jobs: &ConformanceJobs,
    options: &ConformanceOptions,
) {
    let b = backend.as_ref();
    let finished = submit_runs_to_success(b, jobs, options).await;
    logs_are_readable(b, &finished).await;
    failure_is_reported(b, jobs, options).await;
    cancel_stops_a_running_job(b, jobs, options).await;
    idempotent_submit(b, jobs, options).await;
    unknown_job_is_not_found(b, options).await;
}
