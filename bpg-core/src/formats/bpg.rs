//! The BPG `POST /spark` request body (`SubmitApplicationRequest`) as it travels on the wire.
//!
//! Field names are exactly the camelCase names of `bpg-openapi.yaml`, plus the fields the gateway
//! accepts but the OpenAPI document hides (`sparkConf`, `queueToken`, `clusterId`, `volumes`,
//! `imagePullPolicy`, `restartPolicy`, `mode`, the overhead factors, and the pod fields `labels`,
//! `serviceAccount`, `volumeMounts`, ...). `None` fields are left out when serializing, as the Java
//! server does. The OpenAPI document's top-level `annotations` property has no Java field behind it
//! (BPG answers 400 to it), so it does not exist here.
//!
//! ```
//! use bpg_core::formats::bpg::{DriverSpec, ExecutorSpec, SubmitApplicationRequest};
//! let request = SubmitApplicationRequest {
//!     spark_version: Some("3.2".into()),
//!     main_application_file: Some("s3a://bpg/uploaded/foo/MinimalSparkApp.py".into()),
//!     driver: Some(DriverSpec { cores: Some(1), memory: Some("2g".into()), ..Default::default() }),
//!     executor: Some(ExecutorSpec {
//!         instances: Some(1),
//!         cores: Some(1),
//!         memory: Some("2g".into()),
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! assert_eq!(
//!     serde_json::to_string(&request).unwrap(),
//!     r#"{"sparkVersion":"3.2","mainApplicationFile":"s3a://bpg/uploaded/foo/MinimalSparkApp.py","driver":{"cores":1,"memory":"2g"},"executor":{"cores":1,"memory":"2g","instances":1}}"#
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every top-level field BPG's Java `SubmitApplicationRequest` has, documented and hidden; BPG
/// answers 400 to any other.
pub const REQUEST_FIELDS: &[&str] = &[
    "submissionIdSuffix",
    "applicationName",
    "type",
    "image",
    "spotInstance",
    "sparkVersion",
    "mainClass",
    "mainApplicationFile",
    "arguments",
    "driver",
    "executor",
    "deps",
    "pythonVersion",
    "queue",
    "sparkConf",
    "queueToken",
    "clusterId",
    "volumes",
    "imagePullPolicy",
    "restartPolicy",
    "mode",
    "overheadFactor",
    "driverOverheadFactor",
    "executorOverheadFactor",
];

/// Body of BPG's `POST /spark` (Java `api/SubmitApplicationRequest`).
///
/// Unknown top-level fields are rejected when deserializing, as BPG does (400). `Debug` never shows
/// the queue token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitApplicationRequest {
    /// Appended as `-<suffix>` to the submission id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id_suffix: Option<String>,
    /// Application name; BPG sets `spark.app.name` and the CR label `applicationName` from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// `Java`, `Scala`, `Python` or `R`; BPG guesses from `mainClass` when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub app_type: Option<String>,
    /// Custom image (otherwise resolved from the gateway's `sparkImages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Schedule executors on spot nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_instance: Option<bool>,
    /// Spark version, e.g. `"3.2"` (a string: `3.10` is not `3.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_version: Option<String>,
    /// JVM main class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,
    /// Jar or `.py` entry point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_application_file: Option<String>,
    /// Application arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Driver pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverSpec>,
    /// Executor pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
    /// Dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps: Option<Dependencies>,
    /// Legacy Python major version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// Queue name (may be hierarchical, `parent.child`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Spark configuration (hidden from the OpenAPI document). Special keys: `bpg.maxRunningMillis`,
    /// `spark.executor.instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_conf: Option<BTreeMap<String, String>>,
    /// HS256 JWT required by `secure` queues (hidden). A credential: never shown by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_token: Option<String>,
    /// Pins the target cluster, bypassing queue routing (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Kubernetes volumes `[{name, hostPath{path,type}, configMap{name}}]` (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Value>>,
    /// Image pull policy (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// spark-operator restart policy (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Deploy mode (hidden; BPG parses it and always uses `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Memory overhead factor (hidden; parsed and ignored by BPG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_factor: Option<f64>,
    /// Driver memory overhead factor (hidden; parsed and ignored by BPG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_overhead_factor: Option<f64>,
    /// Executor memory overhead factor (hidden; parsed and ignored by BPG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_overhead_factor: Option<f64>,
}

impl fmt::Debug for SubmitApplicationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitApplicationRequest")
            .field("submission_id_suffix", &self.submission_id_suffix)
            .field("application_name", &self.application_name)
            .field("app_type", &self.app_type)
            .field("image", &self.image)
            .field("spot_instance", &self.spot_instance)
            .field("spark_version", &self.spark_version)
            .field("main_class", &self.main_class)
            .field("main_application_file", &self.main_application_file)
            .field("arguments", &self.arguments)
            .field("driver", &self.driver)
            .field("executor", &self.executor)
            .field("deps", &self.deps)
            .field("python_version", &self.python_version)
            .field("queue", &self.queue)
            .field("spark_conf", &self.spark_conf)
            .field(
                "queue_token",
                &self.queue_token.as_ref().map(|_| "<redacted>"),
            )
            .field("cluster_id", &self.cluster_id)
            .field("volumes", &self.volumes)
            .field("image_pull_policy", &self.image_pull_policy)
            .field("restart_policy", &self.restart_policy)
            .field("mode", &self.mode)
            .field("overhead_factor", &self.overhead_factor)
            .field("driver_overhead_factor", &self.driver_overhead_factor)
            .field("executor_overhead_factor", &self.executor_overhead_factor)
            .finish()
    }
}

/// The driver pod of a [`SubmitApplicationRequest`] (Java `operator/DriverSpec`).
///
/// BPG ignores fields it does not know; they are kept in [`DriverSpec::extra`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverSpec {
    /// Cores (BPG default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// CPU request, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_request: Option<String>,
    /// CPU limit; BPG wants a plain integer string of millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_limit: Option<String>,
    /// Heap in Spark notation (`2g`; BPG default `1g`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Memory overhead in Spark notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overhead: Option<String>,
    /// Pod image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Pod labels (hidden); bpg keeps its routing labels here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Pod termination grace period (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Service account (hidden; BPG defaults it to the cluster's `sparkServiceAccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Volume mounts `[{name, readOnly, mountPath, subPath}]` (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<Value>>,
    /// Container security context (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// Node affinity (hidden; when given, BPG injects no queue/zone affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Value>,
    /// Pod DNS config (hidden; BPG does not copy it for the driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<Value>,
    /// Extra JVM options (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java_options: Option<String>,
    /// Driver pod name (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Kubernetes master URL (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_master: Option<String>,
    /// Fields BPG does not know (it ignores them), under their wire names.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// The executor pods of a [`SubmitApplicationRequest`] (Java `operator/ExecutorSpec`).
///
/// BPG ignores fields it does not know; they are kept in [`ExecutorSpec::extra`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorSpec {
    /// Cores per executor (BPG default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// CPU request, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_request: Option<String>,
    /// CPU limit; BPG wants a plain integer string of millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_limit: Option<String>,
    /// Heap per executor in Spark notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Memory overhead in Spark notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overhead: Option<String>,
    /// Pod image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Pod labels (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Executor count (BPG default 1, at most the queue's `maxExecutorInstances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Pod termination grace period (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Service account (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Volume mounts (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<Value>>,
    /// Container security context (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// Node affinity (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Value>,
    /// Pod DNS config (hidden; BPG overwrites it for executors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<Value>,
    /// Extra JVM options (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java_options: Option<String>,
    /// Delete executor pods when they end (hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    /// Fields BPG does not know (it ignores them), under their wire names.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// An environment variable (`{name, value, valueFrom}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Kubernetes `valueFrom` source (`{fieldRef: {fieldPath}}`), passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Value>,
}

/// Dependencies (Java `operator/Dependencies`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependencies {
    /// Jars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jars: Option<Vec<String>>,
    /// Files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Python files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub py_files: Option<Vec<String>>,
    /// Maven coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<String>>,
    /// Excluded Maven coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_packages: Option<Vec<String>>,
    /// Maven repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    /// Archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archives: Option<Vec<String>>,
}

/// spark-operator restart policy, passed through by BPG (hidden).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    /// `Never`, `OnFailure` or `Always`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Retries after a submission failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_submission_failure_retries: Option<i32>,
    /// Retries after a run failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure_retries: Option<i32>,
    /// Seconds between submission retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_submission_failure_retry_interval: Option<i64>,
    /// Seconds between run retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure_retry_interval: Option<i64>,
}

/// BPG's answer to `POST /spark` and `DELETE /spark/{id}`: `{"submissionId": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitApplicationResponse {
    /// `<clusterId>-<32 hex>[-<suffix>]`.
    pub submission_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_annotations_and_unknown_top_level_fields_are_rejected() {
        let err = serde_json::from_str::<SubmitApplicationRequest>(
            r#"{"sparkVersion":"3.2","annotations":{"a":"b"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("annotations"), "{err}");
    }

    #[test]
    fn hidden_fields_use_wire_names_and_nested_unknowns_are_kept() {
        let body = r#"{"sparkVersion":"3.2","queueToken":"t","clusterId":"c1","imagePullPolicy":"Always","mode":"cluster","overheadFactor":0.2,"restartPolicy":{"type":"OnFailure","onFailureRetries":2},"driver":{"serviceAccount":"spark","labels":{"a":"b"},"volumeMounts":[{"name":"v","mountPath":"/d"}],"tolerations":[]}}"#;
        let request: SubmitApplicationRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.cluster_id.as_deref(), Some("c1"));
        let driver = request.driver.as_ref().unwrap();
        assert_eq!(driver.service_account.as_deref(), Some("spark"));
        assert!(driver.extra.contains_key("tolerations"));
        let back: Value = serde_json::to_value(&request).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(body).unwrap());
    }

    #[test]
    fn debug_hides_the_queue_token() {
        let request = SubmitApplicationRequest {
            queue_token: Some("eyJhbGciOiJIUzI1NiJ9.secret".into()),
            ..Default::default()
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
