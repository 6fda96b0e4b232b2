//! What a running task sees: its identity, run parameters, XCom, a log, and cancellation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::events::EventSink;
use crate::scheduler::{Graph, TaskIndex};

/// How a task attempt ended badly, as Airflow distinguishes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The attempt failed; retries apply.
    #[error("{0}")]
    Failed(String),
    /// The task failed and must not be retried (Airflow's `AirflowFailException`).
    #[error("{0} (not retried)")]
    Fatal(String),
    /// The task chose to skip itself (Airflow's `AirflowSkipException`).
    #[error("skipped: {0}")]
    Skipped(String),
}

impl TaskError {
    /// A retryable failure.
    pub fn failed(message: impl Into<String>) -> Self {
        TaskError::Failed(message.into())
    }
}

impl From<bpg_core::Error> for TaskError {
    fn from(e: bpg_core::Error) -> Self {
        TaskError::Failed(e.to_string())
    }
}

/// Values tasks of one run hand each other, keyed by (task id, key).
///
/// One slot per task of the DAG, found by the task's index: pushing from a running task costs
/// no lookup, and values of tasks the DAG does not have are refused.
#[derive(Debug)]
pub struct XComs {
    graph: Arc<Graph>,
    // Few keys per task: a short list beats a map per task.
    values: Mutex<Vec<TaskValues>>,
}

/// One task's XCom values, in push order.
type TaskValues = Vec<(Cow<'static, str>, serde_json::Value)>;

impl XComs {
    /// An empty set for the tasks of `graph`.
    pub(crate) fn new(graph: Arc<Graph>) -> Self {
        let values = Mutex::new(vec![Vec::new(); graph.len()]);
        XComs { graph, values }
    }

    /// Stores `value` under (`task_id`, `key`), replacing any earlier one. Returns false (and
    /// stores nothing) when the DAG has no task `task_id`.
    pub fn push(&self, task_id: &str, key: &str, value: serde_json::Value) -> bool {
        match self.graph.index_of(task_id) {
            Some(i) => {
                self.push_index(i, Cow::Owned(key.to_owned()), value);
                true
            }
            None => false,
        }
    }

    pub(crate) fn push_index(
        &self,
        task: TaskIndex,
        key: Cow<'static, str>,
        value: serde_json::Value,
    ) {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let list = &mut values[task];
        match list.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => list.push((key, value)),
        }
    }

    /// The string under (task index, `key`), if there is one.
    pub(crate) fn string_at(&self, task: TaskIndex, key: &str) -> Option<String> {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values[task]
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }

    /// The value under (`task_id`, `key`).
    pub fn pull(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        let i = self.graph.index_of(task_id)?;
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values[i]
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// Every value a task pushed.
    pub fn task_values(&self, task_id: &str) -> HashMap<String, serde_json::Value> {
        let Some(i) = self.graph.index_of(task_id) else {
            return HashMap::new();
        };
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values[i]
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

/// Identity of a DAG run, shared by its tasks.
#[derive(Debug)]
pub(crate) struct RunInfo {
    pub dag_id: Arc<str>,
    pub run_id: Arc<str>,
    pub logical_date: DateTime<Utc>,
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Handed to a Rust function task: who it is, the run's params and XCom, a log, and a token that is
/// cancelled when the attempt times out or the run is cancelled.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub(crate) run: Arc<RunInfo>,
    pub(crate) task_id: Arc<str>,
    pub(crate) task_index: TaskIndex,
    pub(crate) try_number: u32,
    pub(crate) xcoms: Arc<XComs>,
    pub(crate) events: EventSink,
    pub(crate) cancel: CancellationToken,
}

impl TaskContext {
    /// The DAG's id.
    pub fn dag_id(&self) -> &str {
        &self.run.dag_id
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// This task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// This attempt's number (1 for the first).
    pub fn try_number(&self) -> u32 {
        self.try_number
    }

    /// The run's logical date.
    pub fn logical_date(&self) -> DateTime<Utc> {
        self.run.logical_date
    }

    /// The logical date as `YYYY-MM-DD` (Airflow's `ds`).
    pub fn ds(&self) -> String {
        self.run.logical_date.format("%Y-%m-%d").to_string()
    }

    /// The run's params.
    pub fn params(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.run.params
    }

    /// A value another task pushed.
    pub fn xcom_pull(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.xcoms.pull(task_id, key)
    }

    /// Pushes a value for downstream tasks.
    pub fn xcom_push(&self, key: &str, value: serde_json::Value) {
        self.xcoms
            .push_index(self.task_index, Cow::Owned(key.to_owned()), value);
    }

    /// Writes a line to the task log.
    pub fn log(&self, line: impl Into<String>) {
        self.events.log(&self.task_id, self.try_number, line);
    }

    /// Cancelled when the attempt times out or the run is cancelled: long work should watch it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}
