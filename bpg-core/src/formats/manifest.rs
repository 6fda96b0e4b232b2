//! spark-operator `SparkApplication` (v1beta2) manifest ⇄ [`SparkJob`].

use serde_json::{Map, Value, json};

use crate::job::{AppType, DynamicAllocation, PodSpec, SparkJob};

use super::documents::other_kind_message;
use super::pod::{self, Flavor, Role, insert_opt, warn_unknown};
use super::tree::{Node, NodeValue, Report, Scalar, suggestion};

/// The only manifest API version read and written.
pub const SPARK_OPERATOR_API_VERSION: &str = "sparkoperator.k8s.io/v1beta2";

/// `spec` fields the model keeps in [`SparkJob::extra`] verbatim.
const SPEC_PASS_THROUGH: &[&str] = &[
    "mode",
    "proxyUser",
    "imagePullSecrets",
    "sparkConfigMap",
    "hadoopConfigMap",
    "nodeSelector",
    "failureRetries",
    "retryInterval",
    "memoryOverheadFactor",
    "monitoring",
    "batchScheduler",
    "sparkUIOptions",
    "driverIngressOptions",
    "suspend",
    "driverPodDisruptionBudget",
];

/// `spec` fields the model names.
const SPEC_MODELLED: &[&str] = &[
    "type",
    "sparkVersion",
    "image",
    "imagePullPolicy",
    "mainClass",
    "mainApplicationFile",
    "arguments",
    "sparkConf",
    "hadoopConf",
    "volumes",
    "driver",
    "executor",
    "deps",
    "restartPolicy",
    "pythonVersion",
    "timeToLiveSeconds",
    "dynamicAllocation",
    "batchSchedulerOptions",
];

/// Metadata the API server owns; a manifest saved with `kubectl get -o yaml` has them.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

pub(crate) fn job_from_manifest(root: &Node, report: &mut Report<'_>) -> Option<SparkJob> {
    let Some(mut top) = report.fields("", root) else {
        if root.is_null() {
            report.expected("", root, "a SparkApplication manifest (a mapping)");
        }
        return None;
    };
    let errors_before = report.diagnostics.errors().count();
    let api_version = top.take("apiVersion");
    // The kind first: another kind has another schema, and its name says what the file is.
    match top.take("kind") {
        Some(n) => {
            if let Some(v) = report.string("kind", n)
                && v != "SparkApplication"
            {
                let version = api_version.and_then(|a| match &a.value {
                    NodeValue::Scalar(Scalar::Str(s), _) => Some(s.as_str()),
                    _ => None,
                });
                report.error("kind", n.pos, other_kind_message(&v, version));
                return None;
            }
        }
        None => report.error(
            "kind",
            root.pos,
            "missing required field `kind` (\"SparkApplication\")",
        ),
    }
    match api_version {
        Some(n) => {
            if let Some(v) = report.string("apiVersion", n)
                && v != SPARK_OPERATOR_API_VERSION
            {
                report.error(
                    "apiVersion",
                    n.pos,
                    format!("expected {SPARK_OPERATOR_API_VERSION:?}, found {v:?}"),
                );
            }
        }
        None => report.error(
            "apiVersion",
            root.pos,
            format!("missing required field `apiVersion` ({SPARK_OPERATOR_API_VERSION:?})"),
        ),
    }

    if report.diagnostics.errors().count() > errors_before {
        // Another kind or version has another schema: checking its spec would only add noise.
        return None;
    }
    let mut job = SparkJob::default();
    if let Some(n) = top.take("metadata")
        && let Some(mut meta) = report.fields("metadata", n)
    {
        if let Some(n) = meta.take("name") {
            job.name = report.string("metadata.name", n).unwrap_or_default();
        }
        // Where the application runs is the backend's decision.
        let _ = meta.take("namespace");
        if let Some(n) = meta.take("labels") {
            job.labels = report.string_map("metadata.labels", n);
        }
        for name in SERVER_METADATA {
            let _ = meta.take(name);
        }
        let mut rest = Map::new();
        for (key, node) in meta.rest() {
            rest.insert(key.name.clone(), node.to_json());
        }
        if !rest.is_empty() {
            job.extra.insert("metadata".into(), Value::Object(rest));
        }
    }
    // A manifest saved from the cluster carries its status; it is not input.
    let _ = top.take("status");

    match top.take("spec") {
        Some(n) => {
            if let Some(spec) = report.fields("spec", n) {
                read_spec(report, spec, n, &mut job);
            }
        }
        None => report.error("spec", root.pos, "missing required field `spec`"),
    }
    for (key, _) in top.rest() {
        report.warning(
            &key.name,
            key.pos,
            format!(
                "unknown field `{}`: a SparkApplication has apiVersion, kind, metadata and spec; it is ignored{}",
                key.name,
                suggestion(&key.name, &["apiVersion", "kind", "metadata", "spec"])
            ),
        );
    }
    Some(job)
}

fn read_spec(
    report: &mut Report<'_>,
    mut spec: super::tree::Fields<'_>,
    spec_node: &Node,
    job: &mut SparkJob,
) {
    job.app_type = match spec.take("type") {
        Some(n) => match report.string("spec.type", n) {
            // spark-operator's enum is case-sensitive.
            Some(t) => match AppType::parse(&t).filter(|a| a.as_str() == t) {
                Some(a) => a,
                None => {
                    report.error(
                        "spec.type",
                        n.pos,
                        format!("expected one of Scala, Java, Python, R, found {t:?}"),
                    );
                    AppType::default()
                }
            },
            None => AppType::default(),
        },
        None => AppType::Scala,
    };
    match spec.take("sparkVersion") {
        Some(n) => {
            if let Some(v) = report.version("spec.sparkVersion", n) {
                job.spark_version = v;
            }
        }
        None => report.error(
            "spec.sparkVersion",
            spec_node.pos,
            "missing required field `sparkVersion` (a string such as \"3.5.1\")",
        ),
    }
    match spec.take("mainApplicationFile") {
        Some(n) => job.main_application_file = report.string("spec.mainApplicationFile", n),
        None => report.error(
            "spec.mainApplicationFile",
            spec_node.pos,
            "missing required field `mainApplicationFile` (the jar, .py or .R to run)",
        ),
    }
    if let Some(n) = spec.take("image") {
        job.image = report.string("spec.image", n);
    }
    if let Some(n) = spec.take("imagePullPolicy") {
        job.image_pull_policy = report.string("spec.imagePullPolicy", n);
    }
    if let Some(n) = spec.take("mainClass") {
        job.main_class = report.string("spec.mainClass", n);
    }
    if let Some(n) = spec.take("arguments") {
        job.arguments = report.string_list("spec.arguments", n);
    }
    if let Some(n) = spec.take("sparkConf") {
        job.spark_conf = report.string_map("spec.sparkConf", n);
    }
    if let Some(n) = spec.take("hadoopConf") {
        job.hadoop_conf = report.string_map("spec.hadoopConf", n);
    }
    if let Some(n) = spec.take("volumes") {
        job.volumes = report.object_list("spec.volumes", n);
    }
    if let Some(n) = spec.take("deps") {
        job.deps = pod::read_deps(report, "spec.deps", n);
    }
    if let Some(n) = spec.take("restartPolicy") {
        job.restart_policy = pod::read_restart_policy(report, "spec.restartPolicy", n);
    }
    if let Some(n) = spec.take("pythonVersion") {
        job.python_version = report.string("spec.pythonVersion", n);
    }
    if let Some(n) = spec.take("timeToLiveSeconds") {
        job.time_to_live_seconds =
            report.integer::<i64>("spec.timeToLiveSeconds", n, "a number of seconds");
    }
    if let Some(n) = spec.take("dynamicAllocation") {
        job.dynamic_allocation = read_dynamic_allocation(report, n);
    }
    if let Some(n) = spec.take("batchSchedulerOptions")
        && let Some(mut options) = report.fields("spec.batchSchedulerOptions", n)
    {
        if let Some(q) = options.take("queue") {
            job.queue = report.string("spec.batchSchedulerOptions.queue", q);
        }
        let rest: Map<String, Value> = options
            .rest()
            .map(|(k, v)| (k.name.clone(), v.to_json()))
            .collect();
        if !rest.is_empty() {
            job.extra
                .insert("batchSchedulerOptions".into(), Value::Object(rest));
        }
    }
    match spec.take("driver") {
        Some(n) => {
            if let Some(f) = report.fields("spec.driver", n) {
                job.driver = pod::read_pod(report, f, Flavor::Manifest, Role::Driver);
            }
        }
        None => report.error(
            "spec.driver",
            spec_node.pos,
            "missing required field `driver` (at least `{}`)",
        ),
    }
    match spec.take("executor") {
        Some(n) => {
            if let Some(f) = report.fields("spec.executor", n) {
                job.executor = pod::read_pod(report, f, Flavor::Manifest, Role::Executor);
            }
        }
        None => report.error(
            "spec.executor",
            spec_node.pos,
            "missing required field `executor` (at least `{}`)",
        ),
    }
    for name in SPEC_PASS_THROUGH {
        if let Some(n) = spec.take(name) {
            job.extra.insert((*name).to_owned(), n.to_json());
        }
    }
    let known: Vec<&str> = SPEC_MODELLED
        .iter()
        .chain(SPEC_PASS_THROUGH)
        .copied()
        .collect();
    for (key, node) in spec.rest() {
        report.warning(
            &format!("spec.{}", key.name),
            key.pos,
            format!(
                "unknown field `{}`: not a spark-operator v1beta2 field; the API server may drop it{}",
                key.name,
                suggestion(&key.name, &known)
            ),
        );
        if !node.is_null() {
            job.extra.insert(key.name.clone(), node.to_json());
        }
    }
}

const DYNAMIC_ALLOCATION_FIELDS: &[&str] = &[
    "enabled",
    "initialExecutors",
    "minExecutors",
    "maxExecutors",
    "shuffleTrackingEnabled",
    "shuffleTrackingTimeout",
];

fn read_dynamic_allocation(report: &mut Report<'_>, node: &Node) -> Option<DynamicAllocation> {
    let path = "spec.dynamicAllocation";
    let mut f = report.fields(path, node)?;
    let mut da = DynamicAllocation::default();
    if let Some(n) = f.take("enabled") {
        da.enabled = report.boolean(&f.path("enabled"), n).unwrap_or(false);
    }
    let mut count = |name: &str, report: &mut Report<'_>| {
        f.take(name).and_then(|n| {
            report.integer::<u32>(&format!("{path}.{name}"), n, "a non-negative integer")
        })
    };
    da.initial_executors = count("initialExecutors", report);
    da.min_executors = count("minExecutors", report);
    da.max_executors = count("maxExecutors", report);
    if let Some(n) = f.take("shuffleTrackingEnabled") {
        da.shuffle_tracking_enabled = report.boolean(&f.path("shuffleTrackingEnabled"), n);
    }
    if let Some(n) = f.take("shuffleTrackingTimeout") {
        da.shuffle_tracking_timeout =
            report.integer::<i64>(&f.path("shuffleTrackingTimeout"), n, "milliseconds");
    }
    if let (Some(min), Some(max)) = (da.min_executors, da.max_executors)
        && min > max
    {
        report.error(
            path,
            node.pos,
            format!("minExecutors ({min}) is greater than maxExecutors ({max})"),
        );
    }
    warn_unknown(report, &f, DYNAMIC_ALLOCATION_FIELDS, "dynamicAllocation");
    Some(da)
}

/// Renders a job as a spark-operator `SparkApplication` named `name` in `namespace`.
///
/// Routing labels become `metadata.labels`; memory is written in Spark notation (`2g`, `1536m`);
/// `restartPolicy` defaults to `{type: Never}` because the runner owns retries; the queue becomes
/// `batchSchedulerOptions.queue`; `extra` settings are added where the model has no field (they
/// never override a modelled one). When `name` differs from the job's name, `spark.app.name` is
/// set to the job's name (unless `sparkConf` sets it) so Spark's UI still shows it.
/// `spotInstance` has no manifest field and is not rendered.
///
/// ```
/// use bpg_core::{AppType, SparkJob};
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py").with_label("team", "data");
/// let m = bpg_core::formats::to_manifest(&job, "pi", "spark-jobs");
/// assert_eq!(m["metadata"]["labels"]["team"], "data");
/// assert_eq!(m["spec"]["restartPolicy"]["type"], "Never");
/// ```
pub fn to_manifest(job: &SparkJob, name: &str, namespace: &str) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), name.into());
    metadata.insert("namespace".into(), namespace.into());
    if !job.labels.is_empty() {
        metadata.insert("labels".into(), json!(job.labels));
    }
    if let Some(Value::Object(extra)) = job.extra.get("metadata") {
        for (k, v) in extra {
            metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    let mut spec = Map::new();
    spec.insert("type".into(), job.app_type.as_str().into());
    spec.insert("sparkVersion".into(), job.spark_version.clone().into());
    insert_opt(&mut spec, "mode", job.extra.get("mode").cloned());
    insert_opt(&mut spec, "image", job.image.clone());
    insert_opt(&mut spec, "imagePullPolicy", job.image_pull_policy.clone());
    insert_opt(&mut spec, "mainClass", job.main_class.clone());
    insert_opt(
        &mut spec,
        "mainApplicationFile",
        job.main_application_file.clone(),
    );
    if !job.arguments.is_empty() {
        spec.insert("arguments".into(), json!(job.arguments));
    }
    let mut spark_conf = job.spark_conf.clone();
    if name != job.name && !job.name.is_empty() {
        spark_conf
            .entry("spark.app.name".into())
            .or_insert_with(|| job.name.clone());
    }
    if !spark_conf.is_empty() {
        spec.insert("sparkConf".into(), json!(spark_conf));
    }
    if !job.hadoop_conf.is_empty() {
        spec.insert("hadoopConf".into(), json!(job.hadoop_conf));
    }
    let deps = pod::deps_json(&job.deps);
    if !deps.is_empty() {
        spec.insert("deps".into(), Value::Object(deps));
    }
    if !job.volumes.is_empty() {
        spec.insert("volumes".into(), Value::Array(job.volumes.clone()));
    }
    spec.insert(
        "restartPolicy".into(),
        pod::restart_policy_json(job.restart_policy.as_ref()),
    );
    insert_opt(&mut spec, "pythonVersion", job.python_version.clone());
    insert_opt(&mut spec, "timeToLiveSeconds", job.time_to_live_seconds);
    if let Some(da) = &job.dynamic_allocation {
        let mut m = Map::new();
        m.insert("enabled".into(), da.enabled.into());
        insert_opt(&mut m, "initialExecutors", da.initial_executors);
        insert_opt(&mut m, "minExecutors", da.min_executors);
        insert_opt(&mut m, "maxExecutors", da.max_executors);
        insert_opt(
            &mut m,
            "shuffleTrackingEnabled",
            da.shuffle_tracking_enabled,
        );
        insert_opt(
            &mut m,
            "shuffleTrackingTimeout",
            da.shuffle_tracking_timeout,
        );
        spec.insert("dynamicAllocation".into(), Value::Object(m));
    }
    let mut scheduler_options = match job.extra.get("batchSchedulerOptions") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(queue) = &job.queue {
        scheduler_options.insert("queue".into(), queue.clone().into());
    }
    if !scheduler_options.is_empty() {
        spec.insert(
            "batchSchedulerOptions".into(),
            Value::Object(scheduler_options),
        );
    }
    spec.insert("driver".into(), pod_json(&job.driver, Role::Driver));
    spec.insert("executor".into(), pod_json(&job.executor, Role::Executor));
    for (k, v) in &job.extra {
        if k != "metadata" {
            spec.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    json!({
        "apiVersion": SPARK_OPERATOR_API_VERSION,
        "kind": "SparkApplication",
        "metadata": metadata,
        "spec": spec,
    })
}

fn pod_json(pod: &PodSpec, role: Role) -> Value {
    let mut m = Map::new();
    insert_opt(&mut m, "cores", pod.cores);
    insert_opt(&mut m, "coreRequest", pod.core_request.clone());
    insert_opt(&mut m, "coreLimit", pod.core_limit.clone());
    insert_opt(&mut m, "memory", pod.memory.map(|q| q.to_spark_string()));
    insert_opt(
        &mut m,
        "memoryOverhead",
        pod.memory_overhead.map(|q| q.to_spark_string()),
    );
    if role == Role::Executor {
        insert_opt(&mut m, "instances", pod.instances);
    }
    insert_opt(&mut m, "image", pod.image.clone());
    insert_opt(&mut m, "serviceAccount", pod.service_account.clone());
    if !pod.env.is_empty() {
        m.insert("env".into(), pod::env_json(&pod.env));
    }
    if !pod.labels.is_empty() {
        m.insert("labels".into(), json!(pod.labels));
    }
    if !pod.annotations.is_empty() {
        m.insert("annotations".into(), json!(pod.annotations));
    }
    insert_opt(&mut m, "javaOptions", pod.java_options.clone());
    if !pod.volume_mounts.is_empty() {
        m.insert(
            "volumeMounts".into(),
            Value::Array(pod.volume_mounts.clone()),
        );
    }
    if !pod.node_selector.is_empty() {
        m.insert("nodeSelector".into(), json!(pod.node_selector));
    }
    if role == Role::Executor {
        insert_opt(&mut m, "deleteOnTermination", pod.delete_on_termination);
    }
    for (k, v) in &pod.extra {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(m)
}
