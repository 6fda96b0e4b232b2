//! The file formats a [`SparkJob`] is read from and rendered to.
//!
//! **Reading.** Application files are either a BPG `SubmitApplicationRequest` or a spark-operator
//! `SparkApplication` manifest (`sparkoperator.k8s.io/v1beta2`), each in JSON or YAML.
//! [`parse_application`] tells them apart (a document with `apiVersion`/`kind` is a manifest);
//! [`parse_bpg_request`] and [`parse_manifest`] read one format. Every problem found is reported
//! at once as [`Diagnostics`] naming file, line, column, field path and what was expected. Unknown
//! fields are errors at the top level of a BPG request (BPG answers 400) and warnings everywhere
//! else (BPG ignores unknown nested fields; operators add manifest fields over time); unknown
//! fields in warnings are kept in [`SparkJob::extra`] / [`PodSpec::extra`](crate::PodSpec::extra)
//! so nothing is lost on the way to a backend.
//!
//! **Writing.** Pure functions, one per target: [`to_bpg_request`] (and [`to_bpg_json`]),
//! [`to_manifest`], [`to_emr_start_job_run`] and [`to_spark_submit_args`].
//!
//! **Field mapping.** Routing labels ([`SparkJob::labels`]) are a BPG request's `driver.labels`
//! and a manifest's `metadata.labels`; a manifest's `spec.driver.labels` are the driver pod's own
//! labels ([`PodSpec::labels`](crate::PodSpec::labels)). BPG has no `hadoopConf` and no
//! `dynamicAllocation`, so they travel to BPG as `spark.hadoop.*` and `spark.dynamicAllocation.*`
//! entries of `sparkConf`. A spark-operator `batchSchedulerOptions.queue` is [`SparkJob::queue`].
//! A `restartPolicy` of `{type: Never}` without retry settings is the default and reads as `None`.
//!
//! ```
//! use bpg_core::formats::{parse_application, to_manifest};
//!
//! let yaml = r#"
//! sparkVersion: "3.5"
//! mainApplicationFile: local:///opt/app/pi.py
//! driver: {cores: 1, memory: 2g, labels: {data-classification: phi}}
//! executor: {instances: 2, memory: 4Gi}
//! "#;
//! let parsed = parse_application(yaml, None).unwrap();
//! assert_eq!(parsed.job.label("data-classification"), Some("phi"));
//! let manifest = to_manifest(&parsed.job, "pi-1", "spark");
//! assert_eq!(manifest["spec"]["executor"]["memory"], "4g");
//!
//! let bad = "sparkVersion: 3.10\nmainApplicationFile: x.py\ndriver: {memory: lots}\n";
//! let errors = parse_application(bad, None).unwrap_err();
//! assert_eq!(errors.len(), 2);
//! assert_eq!(errors.0[0].line, Some(1));
//! assert_eq!(errors.0[1].field, "driver.memory");
//! ```

pub mod bpg;
mod documents;
mod emr;
mod manifest;
mod pod;
mod request;
mod submit;
mod tree;

use std::path::Path;

pub use documents::{ScheduledApplication, parse_scheduled_application};
pub use emr::{EmrConfiguration, EmrStartJobRun, to_emr_start_job_run};
pub use manifest::{SPARK_OPERATOR_API_VERSION, to_manifest};
pub use request::{to_bpg_json, to_bpg_request};
pub use submit::to_spark_submit_args;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::job::SparkJob;
use tree::Report;

/// The syntax of an input document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// JSON.
    Json,
    /// YAML (1.2; JSON documents are YAML too).
    Yaml,
}

impl InputKind {
    /// From a file extension: `.json` is JSON, `.yaml`/`.yml` YAML, anything else unknown.
    pub fn from_path(path: &Path) -> Option<InputKind> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(InputKind::Json),
            "yaml" | "yml" => Some(InputKind::Yaml),
            _ => None,
        }
    }

    /// From content: a document whose first non-blank character is `{` is JSON, anything else YAML.
    pub fn detect(text: &str) -> InputKind {
        if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{')
        {
            InputKind::Json
        } else {
            InputKind::Yaml
        }
    }
}

/// A job read from a file, with the warnings found on the way (unknown manifest fields, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The job.
    pub job: SparkJob,
    /// Problems that did not stop reading it.
    pub warnings: Diagnostics,
}

/// Reads a BPG `SubmitApplicationRequest`.
///
/// Errors (every one found, with warnings alongside) when the document is malformed, a field has
/// the wrong type, a memory quantity is invalid, `sparkVersion` or `mainApplicationFile` is
/// missing, an unknown top-level field is present (BPG rejects those), or `restartPolicy.type` is
/// `Always`.
pub fn parse_bpg_request(
    text: &str,
    kind: InputKind,
    file: Option<&Path>,
) -> Result<Parsed, Diagnostics> {
    parse_with(text, kind, file, request::job_from_request)
}

/// Reads a spark-operator `SparkApplication` manifest (`apiVersion: sparkoperator.k8s.io/v1beta2`).
///
/// The namespace and server-owned metadata (`uid`, `resourceVersion`, ...) and `status` are
/// ignored: where the application runs is the backend's decision.
pub fn parse_manifest(
    text: &str,
    kind: InputKind,
    file: Option<&Path>,
) -> Result<Parsed, Diagnostics> {
    parse_with(text, kind, file, manifest::job_from_manifest)
}

/// Reads either format, JSON or YAML: a document with `apiVersion` or `kind` is a manifest,
/// one with a top-level `spark:` Airflow's `template_spec` format (the SparkApplication plus the
/// `kubernetes:` pod settings, carried into the job), anything else a BPG request. The syntax
/// comes from `file`'s extension (`.json`, `.yaml`, `.yml`), else from the content.
///
/// A YAML file of several documents (`---`) is read for its one Spark application; the other
/// documents (ConfigMaps, Secrets, ...) are named in a warning with their lines. Two applications
/// in one file are an error naming both. A manifest of another kind (a `Deployment`, a
/// `ScheduledSparkApplication`, ...) is an error that names the kind and what to do instead.
pub fn parse_application(text: &str, file: Option<&Path>) -> Result<Parsed, Diagnostics> {
    let mut report = Report::new(file);
    let parsed = match file.and_then(InputKind::from_path) {
        Some(kind) => tree::parse_documents(text, kind),
        // Guessed from content: `{` may also open a YAML flow mapping, so fall back to YAML
        // before reporting the JSON error.
        None => match InputKind::detect(text) {
            InputKind::Json => tree::parse_document(text, InputKind::Json)
                .map(|n| vec![n])
                .or_else(|json_error| {
                    tree::parse_documents(text, InputKind::Yaml).map_err(|_| json_error)
                }),
            InputKind::Yaml => tree::parse_documents(text, InputKind::Yaml),
        },
    };
    let docs = match parsed {
        Ok(docs) => docs,
        Err(d) => {
            report.push(d);
            return Err(report.diagnostics);
        }
    };
    let job = documents::select(&docs, &mut report)
        .and_then(|root| documents::read_application(root, &mut report));
    finish(job, report)
}

/// Reads the Spark application embedded in a larger YAML document, the mapping that starts at
/// `line`:`column` of `text` (a pipeline task's inline `application:`), with the reader of
/// [`parse_application`]: every diagnostic points into that document, its field relative to the
/// application.
///
/// ```
/// let pipeline = "tasks:\n  - id: pi\n    application:\n      sparkVersion: \"3.5\"\n      mainApplicationFile: pi.py\n      executor: { instances: many }\n";
/// let err = bpg_core::formats::parse_embedded_application(pipeline, None, 4, 7).unwrap_err();
/// let d = err.errors().next().unwrap();
/// assert_eq!((d.line, d.field.as_str()), (Some(6), "executor.instances"));
/// ```
pub fn parse_embedded_application(
    text: &str,
    file: Option<&Path>,
    line: usize,
    column: usize,
) -> Result<Parsed, Diagnostics> {
    let mut report = Report::new(file);
    let at = tree::Pos { line, column };
    let docs = match tree::parse_documents(text, InputKind::Yaml) {
        Ok(docs) => docs,
        Err(d) => {
            report.push(d);
            return Err(report.diagnostics);
        }
    };
    let Some(root) = docs.iter().find_map(|d| d.mapping_at(at)) else {
        report.error(
            "",
            at,
            "expected a mapping here: a BPG request or a SparkApplication manifest",
        );
        return Err(report.diagnostics);
    };
    let job = documents::read_application(root, &mut report);
    finish(job, report)
}

/// Reads a Spark application from an already parsed value (an inline application whose templates
/// were rendered), with the reader of [`parse_application`] and no text in between.
///
/// ```
/// let app = serde_json::json!({"sparkVersion": "3.5", "mainApplicationFile": "pi.py", "driver": {"memory": "2g"}});
/// let parsed = bpg_core::formats::application_from_value(&app).unwrap();
/// assert_eq!(parsed.job.spark_version, "3.5");
/// ```
pub fn application_from_value(value: &serde_json::Value) -> Result<Parsed, Diagnostics> {
    let mut report = Report::new(None);
    let job = documents::read_application(&tree::Node::from_json(value), &mut report);
    finish(job, report)
}

/// Reads an application file of either format (see [`parse_application`]).
pub fn load_application_file(path: impl AsRef<Path>) -> Result<Parsed, Diagnostics> {
    let path = path.as_ref();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_application(&text, Some(path)),
        Err(e) => Err(Diagnostic::error("", format!("cannot read the file: {e}"))
            .with_file(path)
            .into()),
    }
}

fn parse_with(
    text: &str,
    kind: InputKind,
    file: Option<&Path>,
    read: fn(&tree::Node, &mut Report<'_>) -> Option<SparkJob>,
) -> Result<Parsed, Diagnostics> {
    let mut report = Report::new(file);
    match tree::parse_document(text, kind) {
        Ok(root) => finish(read(&root, &mut report), report),
        Err(d) => {
            report.push(d);
            Err(report.diagnostics)
        }
    }
}

fn finish(job: Option<SparkJob>, report: Report<'_>) -> Result<Parsed, Diagnostics> {
    let mut diagnostics = report.diagnostics;
    // Document order reads best; problems without a place (missing fields) come first.
    diagnostics
        .0
        .sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
    match job {
        Some(job) if !diagnostics.has_errors() => Ok(Parsed {
            job,
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}
