//! Where a run's progress is recorded: runs, task instances, Spark submissions and XCom.
//!
//! The executor records every submission *before* it waits on it, so a store that outlives the
//! process (a later durable implementation) can reattach to running jobs after a crash. The
//! in-memory store here keeps everything for the life of the process.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use bpg_core::{Result, Submission};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{RunState, TaskState};

/// Identifies one DAG run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    /// DAG id.
    pub dag_id: String,
    /// Run id.
    pub run_id: String,
}

/// A DAG run as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Which run.
    pub key: RunKey,
    /// Logical date.
    pub logical_date: DateTime<Utc>,
    /// Params the run was started with.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// State.
    pub state: RunState,
}

/// A Spark job one try of a task submitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// Connection it went through.
    pub connection: String,
    /// The try that submitted it.
    pub try_number: u32,
    /// What the backend answered.
    pub submission: Submission,
}

/// A task instance as stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// State.
    pub state: TaskState,
    /// Attempts started.
    pub try_number: u32,
    /// Submissions, one per try that reached the backend.
    pub submissions: Vec<SubmissionRecord>,
}

/// Everything stored about one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRun {
    /// The run.
    pub run: RunRecord,
    /// Task instances by task id.
    pub tasks: BTreeMap<String, TaskRecord>,
    /// XCom by task id, then key.
    pub xcom: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// Persists run progress. Implementations must be cheap to call once per state change.
#[async_trait]
pub trait RunStore: Send + Sync + fmt::Debug + 'static {
    /// Records a run starting (or restarting).
    async fn begin_run(&self, run: &RunRecord) -> Result<()>;
    /// Records a task's state and try number.
    async fn set_task_state(
        &self,
        run: &RunKey,
        task_id: &str,
        state: TaskState,
        try_number: u32,
    ) -> Result<()>;
    /// Records a submission; called after `submit` returns and before waiting on the job.
    async fn record_submission(
        &self,
        run: &RunKey,
        task_id: &str,
        record: &SubmissionRecord,
    ) -> Result<()>;
    /// Records an XCom value.
    async fn put_xcom(
        &self,
        run: &RunKey,
        task_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()>;
    /// Records the run's final state.
    async fn finish_run(&self, run: &RunKey, state: RunState) -> Result<()>;
    /// Everything stored about a run.
    async fn load_run(&self, run: &RunKey) -> Result<Option<StoredRun>>;
}

/// A [`RunStore`] in memory: the default, for runs that need not survive the process.
#[derive(Debug, Default)]
pub struct InMemoryRunStore {
    runs: Mutex<HashMap<RunKey, StoredRun>>,
}

impl InMemoryRunStore {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryRunStore::default()
    }

    fn with_run<T>(&self, key: &RunKey, f: impl FnOnce(&mut StoredRun) -> T) -> Result<T> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        match runs.get_mut(key) {
            Some(run) => Ok(f(run)),
            None => Err(bpg_core::Error::NotFound {
                what: format!("run {}/{} in the run store", key.dag_id, key.run_id),
            }),
        }
    }
}

fn task<'a>(run: &'a mut StoredRun, task_id: &str) -> &'a mut TaskRecord {
    if !run.tasks.contains_key(task_id) {
        run.tasks.insert(task_id.to_owned(), TaskRecord::default());
    }
    run.tasks.get_mut(task_id).expect("inserted above")
}

#[async_trait]
impl RunStore for InMemoryRunStore {
    async fn begin_run(&self, run: &RunRecord) -> Result<()> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = runs.entry(run.key.clone()).or_insert_with(|| StoredRun {
            run: run.clone(),
            tasks: BTreeMap::new(),
            xcom: BTreeMap::new(),
        });
        stored.run = run.clone();
        Ok(())
    }

    async fn set_task_state(
        &self,
        run: &RunKey,
        task_id: &str,
        state: TaskState,
        try_number: u32,
    ) -> Result<()> {
        self.with_run(run, |r| {
            let t = task(r, task_id);
            t.state = state;
            t.try_number = try_number;
        })
    }

    async fn record_submission(
        &self,
        run: &RunKey,
        task_id: &str,
        record: &SubmissionRecord,
    ) -> Result<()> {
        self.with_run(run, |r| task(r, task_id).submissions.push(record.clone()))
    }

    async fn put_xcom(
        &self,
        run: &RunKey,
        task_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        self.with_run(run, |r| {
            r.xcom
                .entry(task_id.to_owned())
                .or_default()
                .insert(key.to_owned(), value.clone());
        })
    }

    async fn finish_run(&self, run: &RunKey, state: RunState) -> Result<()> {
        self.with_run(run, |r| r.run.state = state)
    }

    async fn load_run(&self, run: &RunKey) -> Result<Option<StoredRun>> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(runs.get(run).cloned())
    }
}
