//! Plugging in your own backend: implement `bpg_core::Backend`, give it a URL scheme with a
//! `BackendFactory`, and every pipeline can use it through a connection, like the built-in ones.
//!
//! The backend here, `InProcessBackend`, runs each "Spark job" as a tokio task in this process:
//! it estimates pi for applications whose file is `pi.py`, counts words for `wordcount.py`, and
//! echoes its arguments otherwise, writing driver log lines as it goes. It keeps what the trait
//! contract asks for: idempotent submits (`find` by key), status, followed logs, cancel.
//! Check your own backend with the conformance kit: `bpg_core::testkit::run_all` (feature `testkit`).
//!
//! Run with `cargo run -p bpg-examples --example custom_backend`. It runs the healthtech pipeline
//! (`examples/pipelines/healthtech.yaml`) with `bpg_connection` set to `inproc://`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bpg_backends::connect::{BackendFactory, Connection, ConnectionRegistry};
use bpg_core::Connections;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobState, JobStatus, LogLine, LogOptions,
    LogStream, Result, SparkJob, Submission, SubmitOptions,
};
use bpg_examples::{files, print_event, print_summary};
use bpg_pipeline::{Runner, load_dag_file};
use futures::StreamExt;

/// One job's record.
#[derive(Debug)]
struct Run {
    submission: Submission,
    status: JobStatus,
    log: Vec<String>,
    task: Option<tokio::task::AbortHandle>,
}

#[derive(Debug, Default)]
struct State {
    runs: HashMap<JobId, Run>,
    by_key: HashMap<IdempotencyKey, JobId>,
    next: u64,
}

/// Runs jobs as tokio tasks in this process.
#[derive(Debug, Clone)]
struct InProcessBackend {
    name: String,
    state: Arc<Mutex<State>>,
}

impl InProcessBackend {
    fn new(name: impl Into<String>) -> Self {
        InProcessBackend {
            name: name.into(),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, id: &JobId, change: impl FnOnce(&mut Run)) {
        if let Some(run) = self.lock().runs.get_mut(id) {
            change(run);
        }
    }

    fn not_found(id: &JobId) -> Error {
        Error::NotFound {
            what: format!("in-process job {id}"),
        }
    }

    /// The job's work: what a Spark driver would do, in miniature.
    async fn work(&self, id: JobId, job: SparkJob) {
        let log = |line: String| self.update(&id, |run| run.log.push(line));
        self.update(&id, |run| {
            run.status = JobStatus::new(JobState::Running, "RUNNING")
        });
        log(format!(
            "starting {} with arguments {:?}",
            job.name, job.arguments
        ));
        let file = job
            .main_application_file
            .as_deref()
            .and_then(|f| f.rsplit('/').next())
            .unwrap_or_default();
        let outcome = match file {
            "pi.py" => {
                let partitions: u64 = job
                    .arguments
                    .first()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(10);
                let pi = estimate_pi(partitions * 10_000);
                log(format!("Pi is roughly {pi:.5} ({partitions} partitions)"));
                Ok(())
            }
            "wordcount.py" => {
                let words = job
                    .arguments
                    .iter()
                    .flat_map(|a| a.split(['/', '.', '-']))
                    .count();
                log(format!("counted {words} words"));
                Ok(())
            }
            _ if job.arguments.iter().any(|a| a.contains("--fail")) => {
                Err("asked to fail".to_owned())
            }
            _ => {
                log(format!("processed {} inputs", job.arguments.len()));
                Ok(())
            }
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.update(&id, |run| {
            run.status = match outcome {
                Ok(()) => JobStatus::new(JobState::Succeeded, "SUCCEEDED"),
                Err(m) => JobStatus::new(JobState::Failed, "FAILED").with_message(m),
            };
            run.task = None;
        });
    }
}

/// Monte Carlo estimate with a fixed linear congruential sequence (reproducible, no RNG crate).
fn estimate_pi(samples: u64) -> f64 {
    let mut x: u64 = 42;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let inside = (0..samples)
        .filter(|_| {
            let (a, b) = (next(), next());
            a * a + b * b <= 1.0
        })
        .count();
    4.0 * inside as f64 / samples as f64
}

#[async_trait]
impl Backend for InProcessBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.cancel = true;
        c.logs = true;
        c.follow_logs = true;
        c.find = true;
        c
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let id = {
            let mut state = self.lock();
            if let Some(key) = &options.idempotency_key
                && let Some(id) = state.by_key.get(key)
                && let Some(run) = state.runs.get(id)
            {
                return Ok(run.submission.clone());
            }
            state.next += 1;
            let id = JobId::new(format!("{}-{:04}", self.name, state.next));
            let mut submission = Submission::new(id.clone(), self.name.clone());
            submission.idempotency_key = options.idempotency_key.clone();
            if let Some(key) = &options.idempotency_key {
                state.by_key.insert(key.clone(), id.clone());
            }
            state.runs.insert(
                id.clone(),
                Run {
                    submission,
                    status: JobStatus::new(JobState::Submitted, "SUBMITTED"),
                    log: Vec::new(),
                    task: None,
                },
            );
            id
        };
        let (worker, job_id, job) = (self.clone(), id.clone(), job.clone());
        let handle = tokio::spawn(async move { worker.work(job_id, job).await });
        self.update(&id, |run| run.task = Some(handle.abort_handle()));
        Ok(self.lock().runs[&id].submission.clone())
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        let state = self.lock();
        let run = state.runs.get(id).ok_or_else(|| Self::not_found(id))?;
        Ok(run.status.clone())
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        if !self.lock().runs.contains_key(id) {
            return Err(Self::not_found(id));
        }
        // Follow by polling our own record until the job ends; a snapshot is one pass.
        let backend = self.clone();
        let (id, follow) = (id.clone(), options.follow);
        let start = options.from_line;
        let lines = futures::stream::unfold((start, false), move |(next, done)| {
            let backend = backend.clone();
            let id = id.clone();
            async move {
                loop {
                    if done {
                        return None;
                    }
                    let (line, finished) = {
                        let state = backend.lock();
                        let run = state.runs.get(&id)?;
                        (
                            run.log.get(next as usize).cloned(),
                            run.status.is_terminal(),
                        )
                    };
                    match line {
                        Some(text) => {
                            let line = LogLine {
                                position: next,
                                text,
                            };
                            return Some((Ok(line), (next + 1, false)));
                        }
                        None if finished || !follow => return None,
                        None => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        });
        Ok(lines.boxed())
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        let mut state = self.lock();
        let run = state.runs.get_mut(id).ok_or_else(|| Self::not_found(id))?;
        if !run.status.is_terminal() {
            if let Some(task) = run.task.take() {
                task.abort();
            }
            run.status = JobStatus::new(JobState::Cancelled, "CANCELLED");
        }
        Ok(())
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let state = self.lock();
        Ok(state
            .by_key
            .get(key)
            .and_then(|id| state.runs.get(id))
            .map(|run| run.submission.clone()))
    }
}

/// Makes `inproc://` connections.
struct InProcessFactory;

#[async_trait]
impl BackendFactory for InProcessFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["inproc".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(InProcessBackend::new(connection.name.clone())))
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut connections = ConnectionRegistry::new();
    connections.register_factory(Arc::new(InProcessFactory));
    // In a connections file: `bpg_connection: { url: "inproc://" }`, once the factory is registered.
    connections.insert(Connection::from_url("bpg_connection", "inproc://")?);

    let dag = load_dag_file(files("pipelines/healthtech.yaml")).map_err(|d| d.to_string())?;
    let runner = Runner::new(dag, connections).poll_interval(Duration::from_millis(50));
    let mut events = runner.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            print_event(&event);
        }
    });
    let report = runner.run().await?;
    printer.await?;
    print_summary(&report);
    if !report.is_success() {
        return Err(format!("run {} failed", report.run_id).into());
    }
    Ok(())
}
