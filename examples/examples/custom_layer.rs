//! Plugging in your own middleware: a `Layer` wraps any `Arc<dyn Backend>` and returns another,
//! adding one concern, and stacks with the built-in layers (retry, timeout, tracing, ...).
//!
//! The layer here, `GuardrailLayer`, is a platform team's policy in front of every backend: it
//! stamps a `team` label on jobs that have none, refuses jobs that ask for more executors than
//! allowed (before anything reaches a cluster), and keeps an audit trail of submits and cancels.
//!
//! Run with `cargo run -p bpg-examples --example custom_layer`. No services needed: the backend
//! is `SimBackend`, and the pipeline is `examples/pipelines/healthtech.yaml`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bpg_backends::connect::ConnectionRegistry;
use bpg_backends::layers::{Layer, LayerExt, RetryLayer, TimeoutLayer, TracingLayer};
use bpg_core::{
    AppType, Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream,
    Result, SimBackend, SparkJob, Submission, SubmitOptions,
};
use bpg_examples::{files, print_event, print_summary};
use bpg_pipeline::{Runner, load_dag_file};

/// What the guardrail records.
type AuditTrail = Arc<Mutex<Vec<String>>>;

/// The policy: default team label, executor ceiling, audit trail.
#[derive(Clone, Debug)]
struct GuardrailLayer {
    team: String,
    max_executors: u32,
    audit: AuditTrail,
}

impl Layer for GuardrailLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Guardrail {
            inner,
            policy: self.clone(),
        })
    }
}

/// A backend wrapped by [`GuardrailLayer`].
#[derive(Debug)]
struct Guardrail {
    inner: Arc<dyn Backend>,
    policy: GuardrailLayer,
}

impl Guardrail {
    fn record(&self, entry: String) {
        self.policy
            .audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }
}

#[async_trait]
impl Backend for Guardrail {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let executors = job.executor.instances.unwrap_or(1);
        if executors > self.policy.max_executors {
            self.record(format!("refused {}: {executors} executors", job.name));
            // Denied is permanent: retry layers above do not try again.
            return Err(Error::Denied {
                reason: format!(
                    "{} asks for {executors} executors; the limit is {}",
                    job.name, self.policy.max_executors
                ),
            });
        }
        let mut job = job.clone();
        if !job.labels.contains_key("team") {
            job.labels
                .insert("team".to_owned(), self.policy.team.clone());
        }
        let submission = self.inner.submit(&job, options).await?;
        self.record(format!(
            "submitted {} as {} (team {})",
            job.name, submission.id, job.labels["team"]
        ));
        Ok(submission)
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.inner.status(id).await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.inner.logs(id, options).await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.record(format!("cancel requested for {id}"));
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

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let audit = AuditTrail::default();
    let sim: Arc<dyn Backend> = Arc::new(SimBackend::builder().name("bpg_connection").build());
    // Innermost first: the guardrail sits next to the backend, so every retry passes it too.
    let backend = sim
        .layer(GuardrailLayer {
            team: "platform".to_owned(),
            max_executors: 4,
            audit: audit.clone(),
        })
        .layer(TimeoutLayer::new(Duration::from_secs(30)))
        .layer(RetryLayer::new())
        .layer(TracingLayer::new());

    let mut greedy = SparkJob::new("greedy", AppType::Python, "3.5", "local:///greedy.py");
    greedy.executor.instances = Some(50);
    match backend.submit(&greedy, &SubmitOptions::new()).await {
        Err(e) => println!("greedy job refused before reaching a cluster: {e}\n"),
        Ok(s) => return Err(format!("greedy job was accepted as {}", s.id).into()),
    }

    let dag = load_dag_file(files("pipelines/healthtech.yaml")).map_err(|d| d.to_string())?;
    let mut connections = ConnectionRegistry::new();
    connections.insert_backend("bpg_connection", backend);
    let runner = Runner::new(dag, connections);
    let mut events = runner.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            print_event(&event);
        }
    });
    let report = runner.run().await?;
    printer.await?;
    print_summary(&report);

    println!("\naudit trail:");
    for entry in audit.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        println!("  {entry}");
    }
    if !report.is_success() {
        return Err(format!("run {} failed", report.run_id).into());
    }
    Ok(())
}
