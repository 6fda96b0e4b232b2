//! [`InMemoryRunStore`]: the default run store, for runs that need not survive the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use bpg_core::Result;
use chrono::Utc;

use super::{
    RunKey, RunRecord, RunStore, RunTaskStates, StoredRun, SubmissionRecord, TaskRecord,
    TaskStateChange,
};
use crate::events::{RunState, TaskState};

/// A [`RunStore`] in memory: the default, for runs that need not survive the process.
#[derive(Debug, Default)]
pub struct InMemoryRunStore {
    runs: Mutex<HashMap<RunKey, RunData>>,
    pauses: Mutex<BTreeMap<String, bool>>,
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

    async fn load_task_states(&self, run: &RunKey) -> Result<Option<RunTaskStates>> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(runs
            .get(run)
            .map(|r| RunTaskStates::from_tasks(r.tasks.iter().map(|(id, t)| (id.as_str(), t)))))
    }

    async fn set_dag_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let mut pauses = self.pauses.lock().unwrap_or_else(PoisonError::into_inner);
        pauses.insert(dag_id.to_owned(), paused);
        Ok(())
    }

    async fn dag_pauses(&self) -> Result<BTreeMap<String, bool>> {
        Ok(self
            .pauses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
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
    use bpg_core::Submission;

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
