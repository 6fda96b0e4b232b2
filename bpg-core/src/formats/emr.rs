//! [`SparkJob`] → the job-specific parts of an EMR on EKS `StartJobRun` request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::job::SparkJob;

use super::submit::{
    deps_flags, effective_spark_conf, kubernetes_conf, require_main_file, resource_conf,
};

/// The parts of `StartJobRun` that come from the job (the backend adds virtual cluster, role,
/// release label, client token and monitoring).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmrStartJobRun {
    /// Job run name: the job's name limited to EMR's `[.\-_/#A-Za-z0-9]`, at most 64 characters;
    /// empty when the job has no name (leave `name` unset then).
    pub name: String,
    /// `jobDriver.sparkSubmitJobDriver.entryPoint`: the main application file.
    pub entry_point: String,
    /// `entryPointArguments`.
    pub entry_point_arguments: Vec<String>,
    /// `sparkSubmitParameters`: `--class`, dependency flags and one `--conf k=v` per resource
    /// setting and `sparkConf` entry.
    pub spark_submit_parameters: String,
    /// `configurationOverrides.applicationConfiguration`: a `spark-defaults` classification with the
    /// pod settings as `spark.kubernetes.*` properties, plus any property whose value contains
    /// whitespace (which `sparkSubmitParameters` cannot carry).
    pub configuration_overrides: Vec<EmrConfiguration>,
}

/// One `applicationConfiguration` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmrConfiguration {
    /// E.g. `spark-defaults`.
    pub classification: String,
    /// Properties of that classification.
    pub properties: BTreeMap<String, String>,
}

/// Renders a job as EMR `StartJobRun` parts. Fails when the job has no main application file.
///
/// ```
/// use bpg_core::{AppType, SparkJob};
/// let job = SparkJob::new("etl", AppType::Scala, "3.5", "s3://b/etl.jar")
///     .with_main_class("com.example.Etl")
///     .with_spark_conf("spark.sql.shuffle.partitions", "200");
/// let run = bpg_core::formats::to_emr_start_job_run(&job).unwrap();
/// assert_eq!(run.entry_point, "s3://b/etl.jar");
/// assert_eq!(
///     run.spark_submit_parameters,
///     "--class com.example.Etl --conf spark.sql.shuffle.partitions=200"
/// );
/// ```
pub fn to_emr_start_job_run(job: &SparkJob) -> Result<EmrStartJobRun, Error> {
    let entry_point = require_main_file(job)?.to_owned();
    let mut params: Vec<String> = Vec::new();
    if let Some(class) = &job.main_class {
        params.extend(["--class".to_owned(), class.clone()]);
    }
    params.extend(deps_flags(job));

    let mut conf = effective_spark_conf(job);
    for (k, v) in resource_conf(job) {
        conf.entry(k).or_insert(v);
    }
    let mut defaults = BTreeMap::new();
    for (k, v) in conf {
        // sparkSubmitParameters is split on whitespace; such values go to spark-defaults instead.
        if v.chars().any(char::is_whitespace) || v.is_empty() {
            defaults.insert(k, v);
        } else {
            params.extend(["--conf".to_owned(), format!("{k}={v}")]);
        }
    }
    for (k, v) in kubernetes_conf(job) {
        defaults.entry(k).or_insert(v);
    }
    let configuration_overrides = if defaults.is_empty() {
        Vec::new()
    } else {
        vec![EmrConfiguration {
            classification: "spark-defaults".to_owned(),
            properties: defaults,
        }]
    };
    Ok(EmrStartJobRun {
        name: emr_name(&job.name),
        entry_point,
        entry_point_arguments: job.arguments.clone(),
        spark_submit_parameters: params.join(" "),
        configuration_overrides,
    })
}

fn emr_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_/#".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}
