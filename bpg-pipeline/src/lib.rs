//! # bpg-pipeline
//!
//! An embeddable DAG runner with Airflow's semantics, for pipelines of Spark jobs on any
//! [`bpg_core::Backend`].
//!
//! A [`Dag`] is built in Rust ([`Dag::builder`]) or loaded from YAML ([`load_dag_file`]); both are
//! validated with every problem reported at once. A pure [`scheduler::Scheduler`] decides what
//! runs (trigger rules, eager `upstream_failed`/`skipped` marking, retries with backoff) and a thin
//! async executor ([`Runner`]) runs it on the caller's tokio runtime; it never creates one.
//!
//! Spark tasks reach any backend through a named connection: any [`bpg_core::Connections`],
//! usually bpg-backends' `ConnectionRegistry` (a YAML file, `BPG_CONN_<NAME>` URLs, resilient
//! backends built per URL scheme), or a map of backends an application built itself. Application files,
//! arguments and commands are minijinja templates (`ds`, `ts`, `run_id`, `dag_id`, `task_id`,
//! `params`, `xcom(task, key)`). A run publishes [`Event`]s and ends with a [`RunReport`], the
//! JSON report of DESIGN.md §8. A [`RunStore`] records progress for durable runs.
//!
//! Each Spark task's try goes through [`SparkAttempt`]: submit with an idempotency key, record the
//! submission before waiting, follow the driver log, one deadline for all of it, and cancel the
//! job rather than orphan it. Applications use it for single jobs too (`bpg submit --wait` does).
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use bpg_core::{Backend, SimBackend};
//! use bpg_pipeline::{Event, Runner, RunState, TaskState, parse_dag};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let dag = parse_dag(r#"
//! dag_id: word_stats
//! default_args: { retries: 1, retry_delay: 30s }
//! params: { corpus: s3a://data/corpus.txt }
//! tasks:
//!   - { id: start, kind: empty }
//!   - id: word_count
//!     kind: spark
//!     connection: sim
//!     application:
//!       applicationName: word-count
//!       sparkVersion: "3.5"
//!       mainApplicationFile: local:///opt/jobs/wordcount.py
//!       arguments: ["{{ params.corpus }}", "{{ ds }}"]
//!     labels: { sim/duration: 2m, sim/fail-attempts: "1" }
//!     depends_on: [start]
//!   - id: report
//!     kind: command
//!     command: "echo counted by {{ xcom('word_count', 'submission_id') }}"
//!     depends_on: [word_count]
//! "#, None).unwrap();
//!
//! let sim = SimBackend::new();
//! let connections = HashMap::from([("sim".to_string(), Arc::new(sim.clone()) as Arc<dyn Backend>)]);
//! let runner = Runner::new(dag, connections).run_id("manual__1");
//! let mut events = runner.subscribe();
//! let report = runner.run().await.unwrap();
//!
//! assert_eq!(report.state, RunState::Success);
//! assert_eq!(report.tasks["word_count"].try_number, 2); // the first attempt failed
//! assert_eq!(sim.accepted_count(), 2);
//! let mut retries = 0;
//! while let Some(event) = events.recv().await {
//!     if let Event::TaskRetry { .. } = event { retries += 1; }
//! }
//! assert_eq!(retries, 1);
//! println!("{}", report.to_json_pretty());
//! # }
//! ```

mod context;
mod dag;
mod dag_scheduler;
mod events;
mod executor;
mod idhash;
pub mod logs;
mod report;
mod retry;
pub mod schedule;
pub mod scheduler;
pub mod store;
mod template;
mod validate;
mod yaml;

pub use dag_scheduler::{
    DEFAULT_MAX_ACTIVE_RUNS, DagScheduler, ManualRun, QueuedRun, ScheduledDag, SchedulerEvent,
    SchedulerHandle,
};
pub use executor::{
    AttemptEnd, AttemptObserver, AttemptOutcome, CancelPolicy, Runner, SparkAttempt, Submitted,
};
pub use report::{RunReport, TaskReport};
#[cfg(feature = "postgres")]
pub use store::PostgresRunStore;
#[cfg(feature = "sqlite")]
pub use store::SqliteRunStore;
pub use store::{
    InMemoryRunStore, PastDecision, RunKey, RunRecord, RunStore, RunTaskStates, StoredRun,
    SubmissionRecord, TaskRecord, TaskStateChange, TaskSummary,
};

pub use context::{TaskContext, TaskError, XComs};
pub use dag::{
    ApplicationSource, CommandLine, CommandTask, DEFAULT_MAX_ACTIVE_TASKS, Dag, DagBuilder,
    DefaultArgs, ResolvedSettings, RetryPolicy, SourceMap, SparkTask, Task, TaskFn, TaskFuture,
    TaskKind, TaskSettings, TriggerRule,
};
pub use events::{Event, EventStream, RunState, TaskState, UnknownState};
pub use retry::{MAX_RETRY_DELAY, retry_delay};
pub use validate::{DEFAULT_POOL, DEFAULT_POOL_SLOTS};
pub use yaml::{dag_to_yaml, load_dag_file, parse_dag};
