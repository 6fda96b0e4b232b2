//! BPG's response bodies, with the wire names of `bpg-openapi.yaml` (and of the hidden
//! `mySubmissions` / admin endpoints). Unknown fields are ignored so newer gateways keep working.

use std::collections::BTreeMap;

use bpg_core::formats::bpg::{Dependencies, DriverSpec, ExecutorSpec};
use bpg_core::{JobState, JobStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use bpg_core::formats::bpg::SubmitApplicationResponse;

fn epoch_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// `GET /spark/{id}/status` (`GetSubmissionStatusResponse`). Times are epoch milliseconds.
///
/// ```
/// use bpg_client::SubmissionStatus;
/// use bpg_core::JobState;
/// let s: SubmissionStatus = serde_json::from_str(
///     r#"{"creationTime":1662961198000,"duration":0,"applicationState":"UNKNOWN"}"#).unwrap();
/// assert_eq!(s.state(), JobState::Unknown);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionStatus {
    /// When the SparkApplication was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    /// Spark's application id, once the driver registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_application_id: Option<String>,
    /// spark-operator's execution attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_attempts: Option<i32>,
    /// When the application ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_time: Option<i64>,
    /// Run time so far (or in total), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// spark-operator's state (`SUBMITTED`, `RUNNING`, `COMPLETED`, ...; `UNKNOWN` before the first status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_state: Option<String>,
    /// Error detail (with BPG's hints appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_error_message: Option<String>,
    /// Spark UI link while running.
    #[serde(
        rename = "sparkUIUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spark_ui_url: Option<String>,
}

impl SubmissionStatus {
    /// The canonical state ([`JobState::from_bpg`]); a missing state is `Unknown`.
    pub fn state(&self) -> JobState {
        JobState::from_bpg(self.application_state.as_deref().unwrap_or("UNKNOWN"))
    }

    /// Whether a driver log can still grow: not after `COMPLETED`, `FAILED` or `SUBMISSION_FAILED`
    /// (no driver ran). This only ends a followed log; whether the job is over is
    /// [`JobState::is_terminal`] of [`Self::state`], where `SUBMISSION_FAILED` is not terminal
    /// because the operator may still resubmit or move it to `FAILED`.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.application_state.as_deref(),
            Some("COMPLETED" | "FAILED" | "SUBMISSION_FAILED")
        )
    }

    /// As a backend-neutral [`JobStatus`] (`started_at` is the creation time).
    pub fn to_job_status(&self) -> JobStatus {
        let native = self
            .application_state
            .clone()
            .unwrap_or_else(|| "UNKNOWN".into());
        let mut status = JobStatus::new(self.state(), native);
        status.message = self
            .application_error_message
            .clone()
            .filter(|m| !m.is_empty());
        status.spark_application_id = self.spark_application_id.clone();
        status.attempts = self.execution_attempts.and_then(|a| u32::try_from(a).ok());
        status.started_at = self.creation_time.and_then(epoch_ms);
        status.finished_at = self.termination_time.and_then(epoch_ms);
        status
    }
}

/// One submission in `GET /spark/mySubmissions` and `GET /admin/submissions` (`SubmissionSummary`):
/// the status fields plus who, where and how big.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionSummary {
    /// The submission id.
    #[serde(default)]
    pub submission_id: String,
    /// The proxy user it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `root.<queue>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The driver's `dag_name` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag_name: Option<String>,
    /// `spark.app.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// Spark version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_version: Option<String>,
    /// The application's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_arguments: Option<Vec<String>>,
    /// Driver cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_cores: Option<i64>,
    /// Driver memory in whole GiB (truncated).
    #[serde(
        rename = "driverMemoryGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub driver_memory_gb: Option<i64>,
    /// Executor count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_instances: Option<i64>,
    /// Cores per executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_cores: Option<i64>,
    /// Memory per executor in whole GiB.
    #[serde(
        rename = "executorMemoryGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub executor_memory_gb: Option<i64>,
    /// instances × executor cores + driver cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cores: Option<i64>,
    /// instances × executor GiB + driver GiB.
    #[serde(
        rename = "totalMemoryGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total_memory_gb: Option<i64>,
    /// The status fields.
    #[serde(flatten)]
    pub status: SubmissionStatus,
}

impl SubmissionSummary {
    /// The suffix of the submission id, parsed as [`SubmissionId`](crate::SubmissionId) does.
    pub fn suffix(&self) -> Option<String> {
        crate::SubmissionId::parse(&self.submission_id)
            .ok()
            .and_then(|id| id.suffix)
    }
}

/// `GET /spark/{id}/driver` (`GetDriverInfoResponse`); both fields are absent before the driver pod runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverInfo {
    /// Driver pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Pod start, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
}

/// `DELETE /spark/{id}` (`DeleteSubmissionResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteSubmissionResponse {
    /// The id that was deleted.
    #[serde(default)]
    pub submission_id: String,
}

/// `POST /s3/{name}` (`UploadS3Response`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    /// Where the artifact landed (`s3a://bucket/key` or `gs://bucket/key`).
    pub url: String,
}

/// `GET /healthcheck/status` (`HealthcheckResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcheckResponse {
    /// `OK`.
    #[serde(default)]
    pub status: String,
}

/// `GET /admin/version` (the OpenAPI says `string`; the body is a JSON object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Release version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Git commit it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Build time as BPG prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_time: Option<String>,
    /// Extensions a bpg-gateway serves beyond BPG's API (`batch-status`, `explain`); empty for a
    /// Java BPG.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

/// `GET /spark/{id}/spec` (`SparkApplicationSpec`): the SparkApplication spec as stored, with pod
/// `env` removed by BPG. Fields the OpenAPI does not list are kept in [`SparkApplicationSpec::extra`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SparkApplicationSpec {
    /// Application type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub app_type: Option<String>,
    /// Spark version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_version: Option<String>,
    /// The authenticated user that submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_user: Option<String>,
    /// The user the application runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_user: Option<String>,
    /// Image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Main class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,
    /// Entry point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_application_file: Option<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Driver pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverSpec>,
    /// Executor pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
    /// Dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps: Option<Dependencies>,
    /// Python version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// Everything else in the stored spec (`sparkConf`, `mode`, `timeToLiveSeconds`, ...).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_converts_to_job_status() {
        let s: SubmissionStatus = serde_json::from_str(
            r#"{"creationTime":1662961198000,"terminationTime":1662961258000,"duration":60000,
                "applicationState":"FAILED","applicationErrorMessage":"driver exited 1",
                "sparkApplicationId":"spark-1","executionAttempts":1,"newField":true}"#,
        )
        .unwrap();
        let job = s.to_job_status();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.native_state, "FAILED");
        assert_eq!(job.message.as_deref(), Some("driver exited 1"));
        assert_eq!(job.attempts, Some(1));
        assert_eq!(
            job.finished_at.unwrap() - job.started_at.unwrap(),
            chrono::Duration::seconds(60)
        );
        assert!(s.is_finished());
    }

    #[test]
    fn submission_failed_is_finished_for_the_client() {
        let s = SubmissionStatus {
            application_state: Some("SUBMISSION_FAILED".into()),
            ..Default::default()
        };
        assert!(s.is_finished());
        assert!(!SubmissionStatus::default().is_finished());
        assert_eq!(SubmissionStatus::default().state(), JobState::Unknown);
    }
}
