//! [`SparkJob`] → `spark-submit` argv, and the Spark properties every flat rendering shares.

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostic;
use crate::error::Error;
use crate::job::{PodSpec, SparkJob};

/// `sparkConf` plus what a flat `--conf` list must carry for fields other formats keep apart:
/// `hadoopConf` as `spark.hadoop.*` and dynamic allocation as `spark.dynamicAllocation.*`.
/// Entries written in `sparkConf` win.
pub(crate) fn effective_spark_conf(job: &SparkJob) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    for (k, v) in &job.hadoop_conf {
        conf.insert(format!("spark.hadoop.{k}"), v.clone());
    }
    if let Some(da) = &job.dynamic_allocation {
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                conf.insert(format!("spark.dynamicAllocation.{k}"), v);
            }
        };
        put("enabled", Some(da.enabled.to_string()));
        put(
            "initialExecutors",
            da.initial_executors.map(|v| v.to_string()),
        );
        put("minExecutors", da.min_executors.map(|v| v.to_string()));
        put("maxExecutors", da.max_executors.map(|v| v.to_string()));
        put(
            "shuffleTracking.enabled",
            da.shuffle_tracking_enabled.map(|v| v.to_string()),
        );
        put(
            "shuffleTracking.timeout",
            da.shuffle_tracking_timeout.map(|v| format!("{v}ms")),
        );
    }
    conf.extend(job.spark_conf.iter().map(|(k, v)| (k.clone(), v.clone())));
    conf
}

/// Driver/executor resources as Spark properties (memory in Spark notation).
pub(crate) fn resource_conf(job: &SparkJob) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    for (role, pod) in [("driver", &job.driver), ("executor", &job.executor)] {
        if let Some(c) = pod.cores {
            conf.insert(format!("spark.{role}.cores"), c.to_string());
        }
        if let Some(m) = pod.memory {
            conf.insert(format!("spark.{role}.memory"), m.to_spark_string());
        }
        if let Some(m) = pod.memory_overhead {
            conf.insert(format!("spark.{role}.memoryOverhead"), m.to_spark_string());
        }
        if let Some(o) = &pod.java_options {
            conf.insert(format!("spark.{role}.extraJavaOptions"), o.clone());
        }
    }
    if let Some(n) = job.executor.instances {
        conf.insert("spark.executor.instances".into(), n.to_string());
    }
    conf
}

/// Pod settings as `spark.kubernetes.*` properties (for spark-submit against Kubernetes and EMR
/// on EKS). Volumes and other pass-through pod fields have no flat form and are left out.
pub(crate) fn kubernetes_conf(job: &SparkJob) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    if let Some(image) = &job.image {
        conf.insert("spark.kubernetes.container.image".into(), image.clone());
    }
    if let Some(policy) = &job.image_pull_policy {
        conf.insert(
            "spark.kubernetes.container.image.pullPolicy".into(),
            policy.clone(),
        );
    }
    for (role, pod) in [("driver", &job.driver), ("executor", &job.executor)] {
        pod_conf(&mut conf, role, pod);
    }
    if let Some(delete) = job.executor.delete_on_termination {
        conf.insert(
            "spark.kubernetes.executor.deleteOnTermination".into(),
            delete.to_string(),
        );
    }
    conf
}

fn pod_conf(conf: &mut BTreeMap<String, String>, role: &str, pod: &PodSpec) {
    let k8s = format!("spark.kubernetes.{role}");
    if let Some(image) = &pod.image {
        conf.insert(format!("{k8s}.container.image"), image.clone());
    }
    if let Some(r) = &pod.core_request {
        conf.insert(format!("{k8s}.request.cores"), r.clone());
    }
    if let Some(l) = &pod.core_limit {
        conf.insert(format!("{k8s}.limit.cores"), l.clone());
    }
    if let Some(sa) = &pod.service_account {
        conf.insert(
            format!("spark.kubernetes.authenticate.{role}.serviceAccountName"),
            sa.clone(),
        );
    }
    for (k, v) in &pod.labels {
        conf.insert(format!("{k8s}.label.{k}"), v.clone());
    }
    for (k, v) in &pod.annotations {
        conf.insert(format!("{k8s}.annotation.{k}"), v.clone());
    }
    for (k, v) in &pod.node_selector {
        conf.insert(format!("{k8s}.node.selector.{k}"), v.clone());
    }
    for e in &pod.env {
        if let Some(v) = &e.value {
            let key = if role == "driver" {
                format!("spark.kubernetes.driverEnv.{}", e.name)
            } else {
                format!("spark.executorEnv.{}", e.name)
            };
            conf.insert(key, v.clone());
        } else if let Some(secret) = e.value_from.as_ref().and_then(|v| v.get("secretKeyRef"))
            && let (Some(name), Some(key)) = (
                secret.get("name").and_then(|v| v.as_str()),
                secret.get("key").and_then(|v| v.as_str()),
            )
        {
            // Spark's own form of an env var from a secret; other `valueFrom` sources have none.
            conf.insert(
                format!("{k8s}.secretKeyRef.{}", e.name),
                format!("{name}:{key}"),
            );
        }
    }
}

/// `--jars a,b`-style flags for the dependencies, in spark-submit's order.
pub(crate) fn deps_flags(job: &SparkJob) -> Vec<String> {
    let mut args = Vec::new();
    for (flag, list) in [
        ("--jars", &job.deps.jars),
        ("--py-files", &job.deps.py_files),
        ("--files", &job.deps.files),
        ("--archives", &job.deps.archives),
        ("--packages", &job.deps.packages),
        ("--exclude-packages", &job.deps.exclude_packages),
        ("--repositories", &job.deps.repositories),
    ] {
        if !list.is_empty() {
            args.push(flag.to_owned());
            args.push(list.join(","));
        }
    }
    args
}

pub(crate) fn require_main_file(job: &SparkJob) -> Result<&str, Error> {
    job.main_application_file
        .as_deref()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            Error::InvalidSpec(
                Diagnostic::error(
                    "mainApplicationFile",
                    "the job has no main application file to run",
                )
                .into(),
            )
        })
}

/// The arguments of `spark-submit` (without the program name) that run `job` on `master`
/// (`local[*]`, `k8s://https://host:6443`, `yarn`, ...).
///
/// Order: `--master`, `--name`, `--class`, dependency flags, `--driver-memory`, `--driver-cores`,
/// `--executor-memory`, `--executor-cores`, `--num-executors`, then one `--conf k=v` per property
/// (sorted; `sparkConf` with `hadoopConf` as `spark.hadoop.*`, dynamic allocation, memory
/// overhead and Java options, and — only for a `k8s://` master — the pod settings as
/// `spark.kubernetes.*`), then the application file and its arguments.
///
/// ```
/// use bpg_core::{AppType, SparkJob};
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "pi.py").with_arguments(["10"]);
/// let args = bpg_core::formats::to_spark_submit_args(&job, "local[2]").unwrap();
/// assert_eq!(args, ["--master", "local[2]", "--name", "pi", "pi.py", "10"]);
/// ```
pub fn to_spark_submit_args(job: &SparkJob, master: &str) -> Result<Vec<String>, Error> {
    let main_file = require_main_file(job)?;
    let mut args = vec!["--master".to_owned(), master.to_owned()];
    if !job.name.is_empty() {
        args.extend(["--name".to_owned(), job.name.clone()]);
    }
    if let Some(class) = &job.main_class {
        args.extend(["--class".to_owned(), class.clone()]);
    }
    args.extend(deps_flags(job));

    let mut conf = effective_spark_conf(job);
    let mut resources = resource_conf(job);
    for (flag, key) in [
        ("--driver-memory", "spark.driver.memory"),
        ("--driver-cores", "spark.driver.cores"),
        ("--executor-memory", "spark.executor.memory"),
        ("--executor-cores", "spark.executor.cores"),
        ("--num-executors", "spark.executor.instances"),
    ] {
        if let Some(v) = resources.remove(key) {
            args.extend([flag.to_owned(), v]);
        }
    }
    // Explicit sparkConf entries win over values derived from the model.
    for (k, v) in resources {
        conf.entry(k).or_insert(v);
    }
    if master.starts_with("k8s://") {
        for (k, v) in kubernetes_conf(job) {
            conf.entry(k).or_insert(v);
        }
    }
    for (k, v) in conf {
        args.extend(["--conf".to_owned(), format!("{k}={v}")]);
    }
    args.push(main_file.to_owned());
    args.extend(job.arguments.iter().cloned());
    Ok(args)
}
