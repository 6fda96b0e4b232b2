//! # bpg-pipeline
//!
//! An embeddable DAG runner with Airflow's semantics, for pipelines of Spark jobs on any
//! [`bpg_core::Backend`].
//!
//! A [`Dag`] is built in Rust ([`Dag::builder`]) or loaded from YAML ([`load_dag_file`]); both are
//! validated with every problem reported at once. A pure [`scheduler::Scheduler`] decides what
//! runs (trigger rules, eager `upstream_failed`/`skipped` marking, retries with backoff) and a thin
//! async executor runs it on the caller's tokio runtime.

pub mod backend_factories;
mod connections;
mod context;
mod dag;
mod dag_scheduler;
mod events;
mod executor;
#[cfg(feature = "postgres")]
mod postgres_store;
mod report;
mod retry;
pub mod schedule;
pub mod scheduler;
mod sqlite_store;
mod store;
mod store_sql;
mod template;
mod validate;
mod yaml;

pub use connections::{
    BackendFactory, Connection, ConnectionRegistry, ENV_PREFIX, SecretRef, SimFactory,
};
pub use dag_scheduler::{
    DEFAULT_MAX_ACTIVE_RUNS, DagScheduler, ManualRun, ScheduledDag, SchedulerEvent, SchedulerHandle,
};
pub use executor::{CancelPolicy, Runner};
#[cfg(feature = "postgres")]
pub use postgres_store::PostgresRunStore;
pub use report::{RunReport, TaskReport};
pub use sqlite_store::SqliteRunStore;
pub use store::{
    InMemoryRunStore, RunKey, RunRecord, RunStore, StoredRun, SubmissionRecord, TaskRecord,
    TaskStateChange,
};

pub use context::{TaskContext, TaskError, XComs};
pub use dag::{
    ApplicationSource, CommandLine, CommandTask, DEFAULT_MAX_ACTIVE_TASKS, Dag, DagBuilder,
    DefaultArgs, RetryPolicy, SourceMap, SparkTask, Task, TaskFn, TaskFuture, TaskKind,
    TriggerRule,
};
pub use events::{Event, EventStream, RunState, TaskState};
pub use retry::{MAX_RETRY_DELAY, retry_delay};
pub use validate::{DEFAULT_POOL, DEFAULT_POOL_SLOTS};
pub use yaml::{load_dag_file, parse_dag};
