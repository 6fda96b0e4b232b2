//! The canonical job state, and the mapping from every backend's native states.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a Spark job is in its life, the same for every backend.
///
/// Terminal means terminal: a state the backend may still move on from (spark-operator's
/// `SUBMISSION_FAILED` and `FAILING`, which its restart policy may retry) is not terminal.
///
/// ```
/// use bpg_core::JobState;
/// assert!(JobState::from_spark_operator("COMPLETED").is_terminal());
/// assert!(!JobState::from_spark_operator("SUBMISSION_FAILED").is_terminal());
/// assert_eq!(JobState::from_emr("CANCEL_PENDING"), JobState::Cancelling);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not yet handed to the cluster (or waiting for a rerun).
    Pending,
    /// On the cluster, waiting for the driver to start.
    Submitted,
    /// The driver is running (or finishing up).
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully.
    Failed,
    /// A cancel was requested and is in progress.
    Cancelling,
    /// Cancelled.
    Cancelled,
    /// The backend does not know right now (e.g. transient node trouble); not a failure.
    Unknown,
}

impl JobState {
    /// `Succeeded`, `Failed` or `Cancelled`: the backend will not change it again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// True only for `Succeeded`.
    pub fn is_success(self) -> bool {
        self == JobState::Succeeded
    }

    /// Lower-case name (`running`, `succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Submitted => "submitted",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelling => "cancelling",
            JobState::Cancelled => "cancelled",
            JobState::Unknown => "unknown",
        }
    }

    /// Maps a spark-operator `status.applicationState.state` (kubeflow `v1beta2`).
    ///
    /// Only `COMPLETED` and `FAILED` are terminal. `SUBMISSION_FAILED` and `PENDING_RERUN` wait on the
    /// operator's restart policy (`Pending`); `SUCCEEDING` and `FAILING` are the operator finishing
    /// up (`Running`); the new state `""` is `Pending`; suspension is `Pending` until resumed.
    pub fn from_spark_operator(native: &str) -> JobState {
        match native {
            "" | "NEW" | "PENDING_RERUN" | "SUBMISSION_FAILED" | "INVALIDATING" | "SUSPENDED"
            | "SUSPENDING" | "RESUMING" => JobState::Pending,
            "SUBMITTED" => JobState::Submitted,
            "RUNNING" | "SUCCEEDING" | "FAILING" => JobState::Running,
            "COMPLETED" => JobState::Succeeded,
            "FAILED" => JobState::Failed,
            _ => JobState::Unknown,
        }
    }

    /// Maps a BPG `applicationState`. BPG relays spark-operator's state, and answers `UNKNOWN`
    /// when the application has no status yet (normal right after submit).
    pub fn from_bpg(native: &str) -> JobState {
        JobState::from_spark_operator(native)
    }

    /// Maps an EMR on EKS job run state. `CANCEL_PENDING` is `Cancelling`, not terminal.
    pub fn from_emr(native: &str) -> JobState {
        match native {
            "PENDING" => JobState::Pending,
            "SUBMITTED" => JobState::Submitted,
            "RUNNING" => JobState::Running,
            "COMPLETED" => JobState::Succeeded,
            "FAILED" => JobState::Failed,
            "CANCEL_PENDING" => JobState::Cancelling,
            "CANCELLED" => JobState::Cancelled,
            _ => JobState::Unknown,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a backend knows about one job right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Canonical state.
    pub state: JobState,
    /// The backend's own state string (`RUNNING`, `CANCEL_PENDING`, `exit 1`), kept for users and XCom.
    pub native_state: String,
    /// Error or state detail from the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Spark's application id (`spark-...`), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_application_id: Option<String>,
    /// Attempts the backend itself made (spark-operator `executionAttempts`, EMR retry attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// When the backend reports the job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the backend reports the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobStatus {
    /// A status with just a state and its native name.
    pub fn new(state: JobState, native_state: impl Into<String>) -> Self {
        JobStatus {
            state,
            native_state: native_state.into(),
            message: None,
            spark_application_id: None,
            attempts: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Whether the state is terminal.
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_operator_table() {
        let table = [
            ("", JobState::Pending, false),
            ("SUBMITTED", JobState::Submitted, false),
            ("RUNNING", JobState::Running, false),
            ("SUCCEEDING", JobState::Running, false),
            ("FAILING", JobState::Running, false),
            ("PENDING_RERUN", JobState::Pending, false),
            ("INVALIDATING", JobState::Pending, false),
            ("SUBMISSION_FAILED", JobState::Pending, false),
            ("SUSPENDING", JobState::Pending, false),
            ("SUSPENDED", JobState::Pending, false),
            ("RESUMING", JobState::Pending, false),
            ("UNKNOWN", JobState::Unknown, false),
            ("COMPLETED", JobState::Succeeded, true),
            ("FAILED", JobState::Failed, true),
            ("SOMETHING_NEW", JobState::Unknown, false),
        ];
        for (native, state, terminal) in table {
            assert_eq!(JobState::from_spark_operator(native), state, "{native:?}");
            assert_eq!(JobState::from_bpg(native), state, "{native:?}");
            assert_eq!(state.is_terminal(), terminal, "{native:?}");
        }
    }

    #[test]
    fn emr_table() {
        let table = [
            ("PENDING", JobState::Pending, false),
            ("SUBMITTED", JobState::Submitted, false),
            ("RUNNING", JobState::Running, false),
            ("COMPLETED", JobState::Succeeded, true),
            ("FAILED", JobState::Failed, true),
            ("CANCEL_PENDING", JobState::Cancelling, false),
            ("CANCELLED", JobState::Cancelled, true),
            ("NEW_STATE", JobState::Unknown, false),
        ];
        for (native, state, terminal) in table {
            assert_eq!(JobState::from_emr(native), state, "{native:?}");
            assert_eq!(state.is_terminal(), terminal, "{native:?}");
        }
    }
}
