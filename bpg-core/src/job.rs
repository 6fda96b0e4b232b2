//! The backend-neutral description of one Spark application.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::quantity::MemoryQuantity;

/// The language of a Spark application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppType {
    /// A Scala application (spark-operator's default).
    #[default]
    Scala,
    /// A Java application.
    Java,
    /// A PySpark application.
    Python,
    /// A SparkR application.
    R,
}

impl AppType {
    /// The name spark-operator and BPG use (`Scala`, `Java`, `Python`, `R`).
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Scala => "Scala",
            AppType::Java => "Java",
            AppType::Python => "Python",
            AppType::R => "R",
        }
    }

    /// Parses a type name case-insensitively, as BPG does.
    pub fn parse(s: &str) -> Option<AppType> {
        match s.to_ascii_lowercase().as_str() {
            "scala" => Some(AppType::Scala),
            "java" => Some(AppType::Java),
            "python" => Some(AppType::Python),
            "r" => Some(AppType::R),
            _ => None,
        }
    }

    /// Whether the application runs on the JVM (has a main class).
    pub fn is_jvm(self) -> bool {
        matches!(self, AppType::Scala | AppType::Java)
    }
}

impl fmt::Display for AppType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment variable of a driver or executor pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value (absent when the value comes from `value_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A Kubernetes `valueFrom` source, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
}

impl EnvVar {
    /// A variable with a literal value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }
}

/// Resources and pod settings of the driver or of each executor.
///
/// `instances` and `delete_on_termination` only mean something for executors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSpec {
    /// Number of cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Kubernetes CPU request (e.g. `500m`), when it differs from `cores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_request: Option<String>,
    /// Kubernetes CPU limit (e.g. `1200m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_limit: Option<String>,
    /// JVM heap (`spark.driver.memory` / `spark.executor.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryQuantity>,
    /// Non-heap memory overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overhead: Option<MemoryQuantity>,
    /// Executor count (executors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Pod image overriding the application image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Kubernetes service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Pod labels (routing labels live on [`SparkJob::labels`], not here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra JVM options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java_options: Option<String>,
    /// Kubernetes volume mounts, passed through untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<serde_json::Value>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Whether executor pods are deleted when they end (executors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    /// Pod settings the model does not name (affinity, tolerations, securityContext, ...), kept verbatim
    /// under their wire names so that no input is lost on the way to a backend.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Dependencies handed to `spark-submit` (`--jars`, `--files`, `--py-files`, `--packages`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependencies {
    /// `--jars`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jars: Vec<String>,
    /// `--files`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// `--py-files`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub py_files: Vec<String>,
    /// `--packages` (Maven coordinates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// `--exclude-packages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_packages: Vec<String>,
    /// `--repositories`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// `--archives`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<String>,
}

impl Dependencies {
    /// True when no dependency of any kind is listed.
    pub fn is_empty(&self) -> bool {
        self == &Dependencies::default()
    }
}

/// spark-operator restart policy (the runner owns retries, so `Never` is the sensible default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `Never`, `OnFailure` or `Always`.
    #[serde(rename = "type")]
    pub kind: String,
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

/// Spark dynamic allocation settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicAllocation {
    /// Whether dynamic allocation is on.
    pub enabled: bool,
    /// Executors at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_executors: Option<u32>,
    /// Lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_executors: Option<u32>,
    /// Upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_executors: Option<u32>,
    /// Shuffle tracking (spark-operator defaults it to true when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_tracking_enabled: Option<bool>,
    /// Shuffle tracking timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_tracking_timeout: Option<i64>,
}

/// One Spark application, independent of the backend that will run it.
///
/// Read it from a BPG `SubmitApplicationRequest` or a spark-operator `SparkApplication` manifest
/// (see [`crate::formats`]), or build it in code:
///
/// ```
/// use bpg_core::{AppType, MemoryQuantity, SparkJob};
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///opt/spark/examples/src/main/python/pi.py")
///     .with_label("data-classification", "phi")
///     .with_arguments(["100"]);
/// assert_eq!(job.label("data-classification"), Some("phi"));
/// assert_eq!(job.arguments, vec!["100".to_string()]);
/// let mut job = job;
/// job.executor.memory = Some(MemoryQuantity::from_gib(4));
/// assert_eq!(job.executor.memory.unwrap().to_kubernetes_string(), "4Gi");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SparkJob {
    /// Application name (`applicationName` in BPG, `metadata.name` in a manifest).
    pub name: String,
    /// Language.
    pub app_type: AppType,
    /// Spark version (a string: `"3.10"` is not `3.1`).
    pub spark_version: String,
    /// The jar, `.py` or `.R` entry point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_application_file: Option<String>,
    /// JVM main class (Scala/Java only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,
    /// Application arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// Driver pod.
    #[serde(default)]
    pub driver: PodSpec,
    /// Executor pods.
    #[serde(default)]
    pub executor: PodSpec,
    /// `--conf` entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spark_conf: BTreeMap<String, String>,
    /// Hadoop configuration (rendered as `spark.hadoop.*` where a format has no separate map).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hadoop_conf: BTreeMap<String, String>,
    /// Jars, files, packages.
    #[serde(default, skip_serializing_if = "Dependencies::is_empty")]
    pub deps: Dependencies,
    /// Container image for driver and executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Scheduler queue (BPG queue, YuniKorn queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Run executors on spot capacity.
    #[serde(default)]
    pub spot_instance: bool,
    /// Python major version (legacy spark-operator field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// spark-operator restart policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Dynamic allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_allocation: Option<DynamicAllocation>,
    /// Kubernetes volumes, passed through untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<serde_json::Value>,
    /// Delete the application this long after it terminates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_live_seconds: Option<i64>,
    /// Routing labels (`data-classification: phi`, `cost-profile: spot`, `sim/duration: 2s`): from a
    /// manifest's `metadata.labels`, a BPG request's `driver.labels`, or a pipeline task's `labels:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Application-level settings the model does not name (e.g. a manifest's `monitoring`,
    /// `sparkUIOptions`, `batchScheduler`), kept verbatim under their wire names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl SparkJob {
    /// A job with the four things every Spark application has; everything else at its default.
    pub fn new(
        name: impl Into<String>,
        app_type: AppType,
        spark_version: impl Into<String>,
        main_application_file: impl Into<String>,
    ) -> Self {
        SparkJob {
            name: name.into(),
            app_type,
            spark_version: spark_version.into(),
            main_application_file: Some(main_application_file.into()),
            ..SparkJob::default()
        }
    }

    /// Sets a routing label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the main class.
    pub fn with_main_class(mut self, main_class: impl Into<String>) -> Self {
        self.main_class = Some(main_class.into());
        self
    }

    /// Sets the application arguments.
    pub fn with_arguments<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.arguments = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets one `--conf` entry.
    pub fn with_spark_conf(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spark_conf.insert(key.into(), value.into());
        self
    }

    /// A routing label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Merges `labels` into the job's routing labels; the given ones win (a pipeline task's
    /// `labels:` override the application file's).
    pub fn merge_labels<'a>(&mut self, labels: impl IntoIterator<Item = (&'a String, &'a String)>) {
        for (k, v) in labels {
            self.labels.insert(k.clone(), v.clone());
        }
    }

    /// Executor count: `executor.instances`, else `spark.executor.instances`, else 1.
    pub fn executor_instances(&self) -> u32 {
        self.executor
            .instances
            .or_else(|| {
                self.spark_conf
                    .get("spark.executor.instances")
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(1)
    }

    /// Total cores requested: driver cores + instances × executor cores (1 core each when unset).
    pub fn total_cores(&self) -> u64 {
        u64::from(self.driver.cores.unwrap_or(1))
            + u64::from(self.executor_instances()) * u64::from(self.executor.cores.unwrap_or(1))
    }

    /// Total heap requested: driver memory + instances × executor memory (`1g` each when unset, as Spark does).
    pub fn total_memory(&self) -> MemoryQuantity {
        let one_g = MemoryQuantity::from_gib(1);
        let driver = self.driver.memory.unwrap_or(one_g).bytes();
        let executor = self.executor.memory.unwrap_or(one_g).bytes();
        MemoryQuantity::from_bytes(
            driver.saturating_add(executor.saturating_mul(u64::from(self.executor_instances()))),
        )
    }
}
