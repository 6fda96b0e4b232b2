//! Shared pieces of the runnable examples in `examples/`; run them with
//! `cargo run -p bpg-examples --example NAME`.
//!
//! - [`files`]: where the example pipeline, application, connections and rules files live.
//! - [`PinnedCluster`]: sends every job to one named cluster behind a BPG gateway.
//! - [`print_event`] and [`print_summary`]: how the examples show a run.
//!
//! ```
//! let pipeline = bpg_examples::files("pipelines/healthtech.yaml");
//! assert!(pipeline.exists());
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};
use bpg_pipeline::{Event, RunReport};

/// A path under the `examples/` directory (pipelines, apps, connections, rules), wherever the
/// example is run from.
pub fn files(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Pins every job to one cluster of a BPG gateway by setting BPG's `clusterId`; everything else
/// goes to the inner backend unchanged.
///
/// A gateway fronting several clusters picks one by weight; with client-side routing rules
/// ([`bpg_backends::RoutedBackend`]) each rules cluster is a connection, and this makes that
/// connection reach exactly its cluster.
#[derive(Debug)]
pub struct PinnedCluster {
    inner: Arc<dyn Backend>,
    cluster: String,
}

impl PinnedCluster {
    /// Pins jobs sent through `inner` to `cluster`.
    pub fn new(inner: Arc<dyn Backend>, cluster: impl Into<String>) -> Self {
        PinnedCluster {
            inner,
            cluster: cluster.into(),
        }
    }
}

#[async_trait]
impl Backend for PinnedCluster {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let mut job = job.clone();
        job.extra
            .insert("clusterId".to_owned(), self.cluster.clone().into());
        self.inner.submit(&job, options).await
    }
    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.inner.status(id).await
    }
    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.inner.logs(id, options).await
    }
    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.inner.cancel(id).await
    }
    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.inner.find(key).await
    }
    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.inner.next_status(id, previous, poll_interval).await
    }
}

/// Prints the events a person wants to see: submissions, finished tasks, retries and driver log
/// lines (prefixed by task id).
pub fn print_event(event: &Event) {
    match event {
        Event::TaskSubmitted {
            task_id,
            submission_id,
            ..
        } => println!("{task_id:<16} submitted as {submission_id}"),
        Event::TaskState {
            task_id,
            state,
            message,
            ..
        } if state.is_finished() => {
            let why = message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            println!("{task_id:<16} {state}{why}");
        }
        Event::TaskRetry {
            task_id,
            try_number,
            error,
            ..
        } => println!("{task_id:<16} try {try_number} failed ({error}), retrying"),
        Event::TaskLog { task_id, line, .. } => println!("  [{task_id}] {line}"),
        _ => {}
    }
}

/// Prints one line per task (state, attempts, submission) and the run's state.
pub fn print_summary(report: &RunReport) {
    println!(
        "\nrun {} {}: {}",
        report.dag_id, report.run_id, report.state
    );
    for (task_id, task) in &report.tasks {
        println!(
            "  {task_id:<16} {:<16} tries {}  {}",
            task.state.as_str(),
            task.try_number,
            task.submission_id.as_deref().unwrap_or("-")
        );
    }
}
