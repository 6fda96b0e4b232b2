//! The JSON run report (DESIGN.md §8), stable for scripts and tests.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::events::{RunState, TaskState};

/// One task's line in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Final (or, for an interrupted run, last) state.
    pub state: TaskState,
    /// Attempts started: 0 for a task that never ran, `retries + 1` when every attempt failed.
    pub try_number: u32,
    /// The last submission's id, for Spark tasks that reached their backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// The connection the Spark task used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// What a run did:
/// `{"dag_id": ..., "run_id": ..., "state": "success", "tasks": {"pi": {"state": "success", "try_number": 1, ...}}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// DAG id.
    pub dag_id: String,
    /// Run id.
    pub run_id: String,
    /// `success` or `failed`.
    pub state: RunState,
    /// Every task, by id.
    pub tasks: BTreeMap<String, TaskReport>,
}

impl RunReport {
    /// True when the run succeeded.
    pub fn is_success(&self) -> bool {
        self.state == RunState::Success
    }

    /// The report as pretty-printed JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report is always serialisable")
    }

    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_json_pretty() + "\n")
    }
}
