//! Where a run's progress is recorded: runs, task instances, Spark submissions and XCom.
//!
//! The executor records every submission *before* it waits on it, so a runner restarted on a
//! store that outlives the process resumes the run: see [`crate::Runner::store`].
//!
//! | Store | Feature | For |
//! |---|---|---|
//! | [`InMemoryRunStore`] | (always) | runs that need not survive the process (the default) |
//! | `SqliteRunStore` | `sqlite` (default) | durable runs of one runner, in one file |
//! | `PostgresRunStore` | `postgres` | several runners sharing state |
//!
//! A store of your own implements [`RunStore`] and proves it with the suite of the `testkit`
//! feature (`bpg_pipeline::store::testkit::run_store_suite`), which every store here passes.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bpg_core::{Result, Submission};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{RunState, TaskState};

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use memory::InMemoryRunStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresRunStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteRunStore;

/// Identifies one DAG run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    /// DAG id.
    pub dag_id: String,
    /// Run id.
    pub run_id: String,
}

impl RunKey {
    /// Run `run_id` of DAG `dag_id`.
    pub fn new(dag_id: impl Into<String>, run_id: impl Into<String>) -> Self {
        RunKey {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
        }
    }
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

/// What a grid of runs × tasks shows of one run: each task's state, and when its first task
/// started and its last ended. Lighter to read than a [`StoredRun`]: no submissions, XComs or
/// per-task times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunTaskStates {
    /// The run's task instances, by task id.
    pub tasks: Vec<TaskSummary>,
    /// The earliest `start_date` of its tasks.
    pub first_start: Option<DateTime<Utc>>,
    /// The latest `end_date` of its tasks.
    pub last_end: Option<DateTime<Utc>>,
}

impl RunTaskStates {
    /// The summary of task instances, as every store answers [`RunStore::load_task_states`]
    /// (sorted by task id whatever order they come in).
    ///
    /// ```
    /// use bpg_pipeline::{RunTaskStates, TaskRecord, TaskState};
    ///
    /// let done = TaskRecord { state: TaskState::Success, try_number: 1, ..Default::default() };
    /// let states = RunTaskStates::from_tasks([("b", &done), ("a", &TaskRecord::default())]);
    /// assert_eq!(states.tasks[0].task_id, "a");
    /// assert_eq!(states.tasks[1].state, TaskState::Success);
    /// ```
    pub fn from_tasks<'a>(tasks: impl IntoIterator<Item = (&'a str, &'a TaskRecord)>) -> Self {
        let mut states = RunTaskStates::default();
        for (task_id, t) in tasks {
            states.tasks.push(TaskSummary {
                task_id: task_id.to_owned(),
                state: t.state,
                try_number: t.try_number,
            });
            states.first_start = match (states.first_start, t.start_date) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            states.last_end = states.last_end.max(t.end_date);
        }
        states
            .tasks
            .sort_unstable_by(|a, b| a.task_id.cmp(&b.task_id));
        states
    }
}

/// One task instance's state, in a [`RunTaskStates`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSummary {
    /// Task id.
    pub task_id: String,
    /// State.
    pub state: TaskState,
    /// Attempts started.
    pub try_number: u32,
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
    /// Each task's state in `run` and the run's first start and last end, or `None` for an
    /// unknown run; what [`RunTaskStates::from_tasks`] makes of [`RunStore::load_run`] (the default),
    /// which stores override to read less.
    async fn load_task_states(&self, run: &RunKey) -> Result<Option<RunTaskStates>> {
        Ok(self
            .load_run(run)
            .await?
            .map(|r| RunTaskStates::from_tasks(r.tasks.iter().map(|(id, t)| (id.as_str(), t)))))
    }
    /// Records whether `dag_id` is paused (see [`crate::SchedulerHandle::set_paused`]), so a
    /// scheduler started again on this store keeps it.
    async fn set_dag_paused(&self, dag_id: &str, paused: bool) -> Result<()>;
    /// Every DAG whose pause was recorded, with it.
    async fn dag_pauses(&self) -> Result<BTreeMap<String, bool>>;
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
    /// What `depends_on_past` (Airflow's rule) says about `task_id` in `run`: see
    /// [`PastDecision`]. The one place the rule lives; stores need not override it.
    async fn depends_on_past(&self, run: &RunKey, task_id: &str) -> Result<PastDecision> {
        let Some(previous) = self.previous_task_instance(run, task_id).await? else {
            return Ok(PastDecision::Met);
        };
        match previous.state {
            TaskState::Success | TaskState::Skipped => Ok(PastDecision::Met),
            state if state.is_finished() => Ok(PastDecision::Blocked(format!(
                "its instance in the previous run ended {state}"
            ))),
            state => {
                // Unfinished: it may still finish while its run is going.
                let runs = self.list_runs(&run.dag_id).await?;
                let logical_date = runs.iter().find(|r| r.key == *run).map(|r| r.logical_date);
                let previous_run = runs
                    .into_iter()
                    .filter(|r| logical_date.is_some_and(|d| r.logical_date < d))
                    .max_by(|a, b| a.logical_date.cmp(&b.logical_date));
                Ok(match previous_run {
                    Some(r) if r.state == RunState::Running => PastDecision::Wait,
                    _ => PastDecision::Blocked(format!(
                        "the previous run ended with this task {state}"
                    )),
                })
            }
        }
    }
}

/// Whether a task with `depends_on_past` may start, from the same task's instance in the DAG's
/// previous run (the run with the latest logical date before this one's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PastDecision {
    /// It may start: the previous instance succeeded or was skipped, or there is none.
    Met,
    /// It cannot start in this run; the message says why.
    Blocked(String),
    /// The previous instance has not finished and its run is still going: ask again later.
    Wait,
}
