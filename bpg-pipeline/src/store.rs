//! Where a run's progress is recorded: runs, task instances, Spark submissions and XCom.
//!
//! The executor records every submission *before* it waits on it, so a runner restarted on a
//! store that outlives the process ([`crate::SqliteRunStore`], or `PostgresRunStore` with the
//! `postgres` feature) resumes the run: see [`crate::Runner::store`]. The in-memory store here
//! keeps everything for the life of the process.

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
    /// When the current try started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    /// When the task last finished or failed a try (`up_for_retry` counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
}

impl TaskRecord {
    /// Applies a state change at `now`, keeping the timestamps every store keeps alike: a new
    /// running try sets `start_date` (and clears `end_date`); entering a finished state or
    /// `up_for_retry` sets `end_date`.
    pub fn apply(&mut self, state: TaskState, try_number: u32, now: DateTime<Utc>) {
        if state == TaskState::Running
            && (self.state != TaskState::Running || self.try_number != try_number)
        {
            self.start_date = Some(now);
            self.end_date = None;
        } else if ends_try(state) && !ends_try(self.state) {
            self.end_date = Some(now);
        }
        self.state = state;
        self.try_number = try_number;
    }
}

/// States that close a try: its `end_date` is set when it enters one.
pub(crate) fn ends_try(state: TaskState) -> bool {
    state.is_finished() || state == TaskState::UpForRetry
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

/// One task state change, for [`RunStore::set_task_states`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskStateChange<'a> {
    /// Task id.
    pub task_id: &'a str,
    /// New state.
    pub state: TaskState,
    /// Attempts started.
    pub try_number: u32,
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
    /// Records several task states at once (the executor calls this once per scheduling step).
    async fn set_task_states(&self, run: &RunKey, changes: &[TaskStateChange<'_>]) -> Result<()> {
        for c in changes {
            self.set_task_state(run, c.task_id, c.state, c.try_number)
                .await?;
        }
        Ok(())
    }
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
    /// Every run of `dag_id`, oldest logical date first (ties by run id).
    async fn list_runs(&self, dag_id: &str) -> Result<Vec<RunRecord>>;
    /// The same task's instance in the DAG's previous run (the run with the latest logical date
    /// before `run`'s), for `depends_on_past`. `None` when there is no previous run or it has no
    /// instance of the task; both let the task run, as in Airflow.
    async fn previous_task_instance(
        &self,
        run: &RunKey,
        task_id: &str,
    ) -> Result<Option<TaskRecord>>;
    /// Whether `task_id` may start in `run` under `depends_on_past`: its instance in the previous
    /// run succeeded or was skipped, or there is none (Airflow's rule).
    async fn depends_on_past_met(&self, run: &RunKey, task_id: &str) -> Result<bool> {
        Ok(self
            .previous_task_instance(run, task_id)
            .await?
            .is_none_or(|t| matches!(t.state, TaskState::Success | TaskState::Skipped)))
    }
}

/// A [`RunStore`] in memory: the default, for runs that need not survive the process.
#[derive(Debug, Default)]
pub struct InMemoryRunStore {
    runs: Mutex<HashMap<RunKey, RunData>>,
}

#[derive(Debug)]
struct RunData {
    run: RunRecord,
    tasks: HashMap<String, TaskRecord>,
    xcom: HashMap<String, Vec<(String, serde_json::Value)>>,
}

impl RunData {
    fn task(&mut self, task_id: &str) -> &mut TaskRecord {
        if !self.tasks.contains_key(task_id) {
            self.tasks.insert(task_id.to_owned(), TaskRecord::default());
        }
        self.tasks.get_mut(task_id).expect("inserted above")
    }
}

impl InMemoryRunStore {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryRunStore::default()
    }

    fn with_run<T>(&self, key: &RunKey, f: impl FnOnce(&mut RunData) -> T) -> Result<T> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        match runs.get_mut(key) {
            Some(run) => Ok(f(run)),
            None => Err(bpg_core::Error::NotFound {
                what: format!("run {}/{} in the run store", key.dag_id, key.run_id),
            }),
        }
    }
}

#[async_trait]
impl RunStore for InMemoryRunStore {
    async fn begin_run(&self, run: &RunRecord) -> Result<()> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        match runs.get_mut(&run.key) {
            Some(data) => data.run = run.clone(),
            None => {
                runs.insert(
                    run.key.clone(),
                    RunData {
                        run: run.clone(),
                        tasks: HashMap::new(),
                        xcom: HashMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    async fn set_task_state(
        &self,
        run: &RunKey,
        task_id: &str,
        state: TaskState,
        try_number: u32,
    ) -> Result<()> {
        let now = Utc::now();
        self.with_run(run, |r| r.task(task_id).apply(state, try_number, now))
    }

    async fn set_task_states(&self, run: &RunKey, changes: &[TaskStateChange<'_>]) -> Result<()> {
        self.with_run(run, |r| {
            let now = Utc::now();
            for c in changes {
                r.task(c.task_id).apply(c.state, c.try_number, now);
            }
        })
    }

    async fn record_submission(
        &self,
        run: &RunKey,
        task_id: &str,
        record: &SubmissionRecord,
    ) -> Result<()> {
        self.with_run(run, |r| {
            // One per try: recording a try's submission again (a reattach) replaces it.
            let submissions = &mut r.task(task_id).submissions;
            match submissions
                .iter_mut()
                .find(|s| s.try_number == record.try_number)
            {
                Some(existing) => *existing = record.clone(),
                None => submissions.push(record.clone()),
            }
        })
    }

    async fn put_xcom(
        &self,
        run: &RunKey,
        task_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        self.with_run(run, |r| {
            if !r.xcom.contains_key(task_id) {
                r.xcom.insert(task_id.to_owned(), Vec::new());
            }
            let values = r.xcom.get_mut(task_id).expect("inserted above");
            match values.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value.clone(),
                None => values.push((key.to_owned(), value.clone())),
            }
        })
    }

    async fn finish_run(&self, run: &RunKey, state: RunState) -> Result<()> {
        self.with_run(run, |r| r.run.state = state)
    }

    async fn load_run(&self, run: &RunKey) -> Result<Option<StoredRun>> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(runs.get(run).map(|r| StoredRun {
            run: r.run.clone(),
            tasks: r
                .tasks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            xcom: r
                .xcom
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                .collect(),
        }))
    }

    async fn list_runs(&self, dag_id: &str) -> Result<Vec<RunRecord>> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<RunRecord> = runs
            .values()
            .filter(|r| r.run.key.dag_id == dag_id)
            .map(|r| r.run.clone())
            .collect();
        list.sort_by(|a, b| (a.logical_date, &a.key.run_id).cmp(&(b.logical_date, &b.key.run_id)));
        Ok(list)
    }

    async fn previous_task_instance(
        &self,
        run: &RunKey,
        task_id: &str,
    ) -> Result<Option<TaskRecord>> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(this) = runs.get(run) else {
            return Err(bpg_core::Error::NotFound {
                what: format!("run {}/{} in the run store", run.dag_id, run.run_id),
            });
        };
        let date = this.run.logical_date;
        let previous = runs
            .values()
            .filter(|r| r.run.key.dag_id == run.dag_id && r.run.logical_date < date)
            .max_by(|a, b| {
                (a.run.logical_date, &a.run.key.run_id)
                    .cmp(&(b.run.logical_date, &b.run.key.run_id))
            });
        Ok(previous.and_then(|r| r.tasks.get(task_id).cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_states_submissions_and_xcom() {
        let store = InMemoryRunStore::new();
        let key = RunKey {
            dag_id: "d".into(),
            run_id: "r".into(),
        };
        assert!(
            store
                .set_task_state(&key, "a", TaskState::Running, 1)
                .await
                .is_err()
        );
        store
            .begin_run(&RunRecord {
                key: key.clone(),
                logical_date: Utc::now(),
                params: serde_json::Map::new(),
                state: RunState::Running,
            })
            .await
            .unwrap();
        store
            .set_task_states(
                &key,
                &[
                    TaskStateChange {
                        task_id: "a",
                        state: TaskState::Queued,
                        try_number: 1,
                    },
                    TaskStateChange {
                        task_id: "a",
                        state: TaskState::Running,
                        try_number: 1,
                    },
                ],
            )
            .await
            .unwrap();
        let submission = Submission::new("sim-000001", "sim");
        store
            .record_submission(
                &key,
                "a",
                &SubmissionRecord {
                    connection: "sim".into(),
                    try_number: 1,
                    submission: submission.clone(),
                },
            )
            .await
            .unwrap();
        store
            .put_xcom(&key, "a", "k", &serde_json::json!(1))
            .await
            .unwrap();
        store
            .put_xcom(&key, "a", "k", &serde_json::json!(2))
            .await
            .unwrap();
        store.finish_run(&key, RunState::Success).await.unwrap();
        let stored = store.load_run(&key).await.unwrap().unwrap();
        assert_eq!(stored.run.state, RunState::Success);
        assert_eq!(stored.tasks["a"].state, TaskState::Running);
        assert_eq!(stored.tasks["a"].submissions[0].submission, submission);
        assert_eq!(stored.xcom["a"]["k"], serde_json::json!(2));
    }
}
