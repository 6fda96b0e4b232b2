//! BPG `SubmitApplicationRequest` ⇄ [`SparkJob`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::job::{AppType, PodSpec, SparkJob};

use super::bpg::REQUEST_FIELDS;
use super::bpg::{self, DriverSpec, ExecutorSpec, SubmitApplicationRequest};
use super::pod::{self, Flavor, Role};
use super::tree::{Node, Report, suggestion};

/// BPG-only settings the model keeps in [`SparkJob::extra`] under their wire names.
const EXTRA_STRINGS: &[&str] = &["submissionIdSuffix", "clusterId", "mode"];
const EXTRA_NUMBERS: &[&str] = &[
    "overheadFactor",
    "driverOverheadFactor",
    "executorOverheadFactor",
];

pub(crate) fn job_from_request(root: &Node, report: &mut Report<'_>) -> Option<SparkJob> {
    let Some(mut fields) = report.fields("", root) else {
        if root.is_null() {
            report.expected("", root, "a SubmitApplicationRequest mapping");
        }
        return None;
    };
    let mut job = SparkJob::default();

    match fields.take("sparkVersion") {
        Some(n) => {
            if let Some(v) = report.version("sparkVersion", n) {
                job.spark_version = v;
            }
        }
        None => report.error(
            "sparkVersion",
            root.pos,
            "missing required field `sparkVersion` (a string such as \"3.5\")",
        ),
    }
    match fields.take("mainApplicationFile") {
        Some(n) => job.main_application_file = report.string("mainApplicationFile", n),
        None => report.error(
            "mainApplicationFile",
            root.pos,
            "missing required field `mainApplicationFile` (the jar or .py to run)",
        ),
    }
    if let Some(n) = fields.take("applicationName") {
        job.name = report.string("applicationName", n).unwrap_or_default();
    }
    if let Some(n) = fields.take("mainClass") {
        job.main_class = report.string("mainClass", n);
    }
    job.app_type = match fields.take("type") {
        Some(n) => match report.string("type", n) {
            Some(t) => AppType::parse(&t).unwrap_or_else(|| {
                report.error(
                    "type",
                    n.pos,
                    format!("expected one of Java, Scala, Python, R, found {t:?}"),
                );
                AppType::default()
            }),
            None => AppType::default(),
        },
        // BPG's rule: a main class means a JVM job.
        None if job.main_class.as_deref().is_some_and(|c| !c.is_empty()) => AppType::Java,
        None => AppType::Python,
    };
    if let Some(n) = fields.take("image") {
        job.image = report.string("image", n);
    }
    if let Some(n) = fields.take("spotInstance") {
        job.spot_instance = report.boolean("spotInstance", n).unwrap_or(false);
    }
    if let Some(n) = fields.take("arguments") {
        job.arguments = report.string_list("arguments", n);
    }
    if let Some(n) = fields.take("pythonVersion") {
        job.python_version = report.string("pythonVersion", n);
    }
    if let Some(n) = fields.take("queue") {
        job.queue = report.string("queue", n);
    }
    if let Some(n) = fields.take("sparkConf") {
        job.spark_conf = report.string_map("sparkConf", n);
    }
    if let Some(n) = fields.take("deps") {
        job.deps = pod::read_deps(report, "deps", n);
    }
    if let Some(n) = fields.take("volumes") {
        job.volumes = report.object_list("volumes", n);
    }
    if let Some(n) = fields.take("imagePullPolicy") {
        job.image_pull_policy = report.string("imagePullPolicy", n);
    }
    if let Some(n) = fields.take("restartPolicy") {
        job.restart_policy = pod::read_restart_policy(report, "restartPolicy", n);
    }
    if let Some((key, _)) = fields.take_entry("queueToken") {
        report.warning(
            "queueToken",
            key.pos,
            "a queue token is a credential and is not kept with the job; configure it on the BPG connection instead",
        );
    }
    for name in EXTRA_STRINGS {
        if let Some(n) = fields.take(name)
            && let Some(v) = report.string(name, n)
        {
            job.extra.insert((*name).to_owned(), Value::String(v));
        }
    }
    for name in EXTRA_NUMBERS {
        if let Some(n) = fields.take(name)
            && report.float(name, n).is_some()
        {
            job.extra.insert((*name).to_owned(), n.to_json());
        }
    }
    if let Some(n) = fields.take("driver")
        && let Some(f) = report.fields("driver", n)
    {
        job.driver = pod::read_pod(report, f, Flavor::Bpg, Role::Driver);
        // In a BPG request the driver's labels are bpg's routing labels.
        job.labels = std::mem::take(&mut job.driver.labels);
    }
    if let Some(n) = fields.take("executor")
        && let Some(f) = report.fields("executor", n)
    {
        job.executor = pod::read_pod(report, f, Flavor::Bpg, Role::Executor);
    }

    for (key, _) in fields.rest() {
        let message = if key.name == "annotations" {
            "BPG rejects a top-level `annotations` field (400) although its OpenAPI document lists one; put annotations under `driver.annotations` or `executor.annotations`".to_owned()
        } else if key.name == "apiVersion" || key.name == "kind" || key.name == "spec" {
            format!(
                "unknown field `{}`: this looks like a SparkApplication manifest; read it as one",
                key.name
            )
        } else {
            format!(
                "unknown field `{}`: BPG rejects unknown top-level fields{}",
                key.name,
                suggestion(&key.name, REQUEST_FIELDS)
            )
        };
        report.error(&key.name, key.pos, message);
    }
    Some(job)
}

/// Renders a job as the body of BPG's `POST /spark`.
///
/// Routing labels go to `driver.labels` (merged over the driver pod's own labels), `hadoopConf`
/// and dynamic allocation become `spark.hadoop.*` / `spark.dynamicAllocation.*` entries of
/// `sparkConf` (explicit `sparkConf` entries win), `coreLimit` is given in whole cores as BPG
/// requires (`1200m` becomes `2`), and the BPG-only `extra` settings
/// (`submissionIdSuffix`, `clusterId`, `mode`, the overhead factors) come back as fields. What BPG
/// cannot carry is left out: `timeToLiveSeconds` (the gateway sets it), pod `nodeSelector` goes to
/// the pod's unknown fields (BPG ignores those), and other application-level `extra` settings are
/// dropped (BPG would reject them). The queue token is never set here.
///
/// ```
/// use bpg_core::{AppType, SparkJob};
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py").with_label("cost-profile", "spot");
/// let request = bpg_core::formats::to_bpg_request(&job);
/// assert_eq!(request.driver.unwrap().labels.unwrap()["cost-profile"], "spot");
/// ```
pub fn to_bpg_request(job: &SparkJob) -> SubmitApplicationRequest {
    let extra_str = |key: &str| {
        job.extra
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let extra_f64 = |key: &str| job.extra.get(key).and_then(Value::as_f64);

    let mut driver_labels = job.driver.labels.clone();
    driver_labels.extend(job.labels.iter().map(|(k, v)| (k.clone(), v.clone())));

    SubmitApplicationRequest {
        submission_id_suffix: extra_str("submissionIdSuffix"),
        application_name: non_empty(&job.name),
        app_type: Some(job.app_type.as_str().to_owned()),
        image: job.image.clone(),
        spot_instance: job.spot_instance.then_some(true),
        spark_version: Some(job.spark_version.clone()),
        main_class: job.main_class.clone(),
        main_application_file: job.main_application_file.clone(),
        arguments: non_empty_vec(&job.arguments),
        driver: Some(driver_spec(&job.driver, driver_labels)),
        executor: Some(executor_spec(&job.executor)),
        deps: (!job.deps.is_empty()).then(|| bpg::Dependencies {
            jars: non_empty_vec(&job.deps.jars),
            files: non_empty_vec(&job.deps.files),
            py_files: non_empty_vec(&job.deps.py_files),
            packages: non_empty_vec(&job.deps.packages),
            exclude_packages: non_empty_vec(&job.deps.exclude_packages),
            repositories: non_empty_vec(&job.deps.repositories),
            archives: non_empty_vec(&job.deps.archives),
        }),
        python_version: job.python_version.clone(),
        queue: job.queue.clone(),
        spark_conf: {
            let conf = super::submit::effective_spark_conf(job);
            (!conf.is_empty()).then_some(conf)
        },
        queue_token: None,
        cluster_id: extra_str("clusterId"),
        volumes: non_empty_vec(&job.volumes),
        image_pull_policy: job.image_pull_policy.clone(),
        restart_policy: job.restart_policy.as_ref().map(|p| bpg::RestartPolicy {
            kind: Some(p.kind.clone()),
            on_submission_failure_retries: p.on_submission_failure_retries,
            on_failure_retries: p.on_failure_retries,
            on_submission_failure_retry_interval: p.on_submission_failure_retry_interval,
            on_failure_retry_interval: p.on_failure_retry_interval,
        }),
        mode: extra_str("mode"),
        overhead_factor: extra_f64("overheadFactor"),
        driver_overhead_factor: extra_f64("driverOverheadFactor"),
        executor_overhead_factor: extra_f64("executorOverheadFactor"),
    }
}

/// [`to_bpg_request`] as pretty-printed JSON, ready for `POST /spark`.
pub fn to_bpg_json(job: &SparkJob) -> String {
    // Serializing plain strings, numbers and maps cannot fail.
    serde_json::to_string_pretty(&to_bpg_request(job)).unwrap_or_default()
}

/// BPG reads `coreLimit` as a bare number of whole cores (`"1500m"` makes it fail with 500), so
/// Kubernetes millicores are rounded up to whole cores; a limit it cannot read is left out (BPG then
/// derives one from `cores`).
fn bpg_core_limit(limit: &str) -> Option<String> {
    let limit = limit.trim();
    if !limit.is_empty() && limit.bytes().all(|b| b.is_ascii_digit()) {
        return Some(limit.to_owned());
    }
    let cores = match limit.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => limit.parse::<f64>().ok()?,
    };
    (cores.is_finite() && cores > 0.0).then(|| format!("{}", cores.ceil().max(1.0) as u64))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn non_empty_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn non_empty_map(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

fn env(pod: &PodSpec) -> Option<Vec<bpg::EnvVar>> {
    (!pod.env.is_empty()).then(|| {
        pod.env
            .iter()
            .map(|e| bpg::EnvVar {
                name: e.name.clone(),
                value: e.value.clone(),
                value_from: e.value_from.clone(),
            })
            .collect()
    })
}

/// Splits a pod's `extra` into the fields BPG names and the rest (which BPG ignores).
struct PodExtra {
    named: BTreeMap<String, Value>,
    rest: BTreeMap<String, Value>,
}

fn split_extra(pod: &PodSpec, named: &[&str]) -> PodExtra {
    let mut out = PodExtra {
        named: BTreeMap::new(),
        rest: BTreeMap::new(),
    };
    for (k, v) in &pod.extra {
        if named.contains(&k.as_str()) {
            out.named.insert(k.clone(), v.clone());
        } else {
            out.rest.insert(k.clone(), v.clone());
        }
    }
    if !pod.node_selector.is_empty() {
        out.rest.insert(
            "nodeSelector".to_owned(),
            serde_json::to_value(&pod.node_selector).unwrap_or_default(),
        );
    }
    out
}

fn driver_spec(pod: &PodSpec, labels: BTreeMap<String, String>) -> DriverSpec {
    let mut extra = split_extra(
        pod,
        &[
            "terminationGracePeriodSeconds",
            "securityContext",
            "affinity",
            "dnsConfig",
            "podName",
            "kubernetesMaster",
        ],
    );
    let mut take = |k: &str| extra.named.remove(k);
    DriverSpec {
        cores: pod.cores,
        core_request: pod.core_request.clone(),
        core_limit: pod.core_limit.as_deref().and_then(bpg_core_limit),
        memory: pod.memory.map(|m| m.to_spark_string()),
        memory_overhead: pod.memory_overhead.map(|m| m.to_spark_string()),
        image: pod.image.clone(),
        env: env(pod),
        labels: non_empty_map(&labels),
        annotations: non_empty_map(&pod.annotations),
        termination_grace_period_seconds: take("terminationGracePeriodSeconds")
            .and_then(|v| v.as_i64()),
        service_account: pod.service_account.clone(),
        volume_mounts: non_empty_vec(&pod.volume_mounts),
        security_context: take("securityContext"),
        affinity: take("affinity"),
        dns_config: take("dnsConfig"),
        java_options: pod.java_options.clone(),
        pod_name: take("podName").and_then(|v| v.as_str().map(str::to_owned)),
        kubernetes_master: take("kubernetesMaster").and_then(|v| v.as_str().map(str::to_owned)),
        extra: extra.rest,
    }
}

fn executor_spec(pod: &PodSpec) -> ExecutorSpec {
    let mut extra = split_extra(
        pod,
        &[
            "terminationGracePeriodSeconds",
            "securityContext",
            "affinity",
            "dnsConfig",
        ],
    );
    let mut take = |k: &str| extra.named.remove(k);
    ExecutorSpec {
        cores: pod.cores,
        core_request: pod.core_request.clone(),
        core_limit: pod.core_limit.as_deref().and_then(bpg_core_limit),
        memory: pod.memory.map(|m| m.to_spark_string()),
        memory_overhead: pod.memory_overhead.map(|m| m.to_spark_string()),
        image: pod.image.clone(),
        env: env(pod),
        labels: non_empty_map(&pod.labels),
        annotations: non_empty_map(&pod.annotations),
        instances: pod.instances,
        termination_grace_period_seconds: take("terminationGracePeriodSeconds")
            .and_then(|v| v.as_i64()),
        service_account: pod.service_account.clone(),
        volume_mounts: non_empty_vec(&pod.volume_mounts),
        security_context: take("securityContext"),
        affinity: take("affinity"),
        dns_config: take("dnsConfig"),
        java_options: pod.java_options.clone(),
        delete_on_termination: pod.delete_on_termination,
        extra: extra.rest,
    }
}

#[cfg(test)]
mod tests {
    use super::bpg_core_limit;

    #[test]
    fn core_limits_become_whole_cores_for_bpg() {
        for (given, sent) in [
            ("1500", Some("1500")),
            ("2", Some("2")),
            ("1200m", Some("2")),
            ("2000m", Some("2")),
            ("100m", Some("1")),
            ("1.5", Some("2")),
            ("lots", None),
            ("0m", None),
        ] {
            assert_eq!(bpg_core_limit(given).as_deref(), sent, "{given}");
        }
    }
}
