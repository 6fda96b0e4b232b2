//! A spark-operator `ScheduledSparkApplication` as a pipeline: one Spark task running its
//! template, the schedule as the pipeline's, `concurrencyPolicy` as `max_active_runs`.
//!
//! spark-operator's `@every <duration>` becomes the cron expression that fires as often, when
//! there is one (`@every 5m` is `*/5 * * * *`); the application runs through connection
//! `kubernetes_default`, whose skeleton URL carries the application's namespace.

use std::path::Path;

use bpg_core::Diagnostic;
use bpg_core::formats::parse_scheduled_application;
use bpg_pipeline::Dag;

use super::{ConnectionSkeleton, Conversion, cron_for_interval, inline_spark_task, sanitize_id};

/// The connection an imported ScheduledSparkApplication runs through (Airflow's name for the
/// cluster's connection, so DAGs imported beside it share it).
pub const CONNECTION: &str = "kubernetes_default";

/// Converts a ScheduledSparkApplication file.
pub fn convert(text: &str, file: &Path) -> Conversion {
    let mut conversion = Conversion::default();
    let scheduled = match parse_scheduled_application(text, Some(file)) {
        Ok(s) => s,
        Err(d) => {
            conversion.notes = d;
            return conversion;
        }
    };
    conversion.notes = scheduled.warnings.clone();
    let note = |message: String| Diagnostic::warning("", message).with_file(file);
    let schedule = match scheduled.schedule.strip_prefix("@every") {
        Some(every) => {
            let every = every.trim();
            match humantime::parse_duration(every)
                .ok()
                .and_then(|d| cron_for_interval(d.as_secs()))
            {
                Some(cron) => Some(cron),
                None => {
                    conversion.notes.push(note(format!(
                        "spec.schedule `@every {every}` has no cron form; the pipeline has no schedule: give it one"
                    )));
                    None
                }
            }
        }
        None => Some(scheduled.schedule.clone()),
    };
    let max_active_runs = match scheduled.concurrency_policy.as_deref() {
        Some("Forbid") => Some(1),
        Some("Replace") => {
            conversion.notes.push(note(
                "spec.concurrencyPolicy `Replace` cancels a running application when the next one is due; the pipeline waits for it instead (max_active_runs: 1)".into(),
            ));
            Some(1)
        }
        _ => None,
    };
    if scheduled.suspend {
        conversion.notes.push(note(
            "spec.suspend is true: the pipeline runs when a scheduler is started on it".into(),
        ));
    }
    let namespace = text_namespace(text).unwrap_or_else(|| "default".into());
    let id = sanitize_id(&scheduled.name);
    let task = inline_spark_task(&id, CONNECTION, scheduled.application.clone());
    let mut builder = Dag::builder(id).task(task);
    if let Some(schedule) = schedule {
        builder = builder.schedule(schedule);
    }
    if let Some(n) = max_active_runs {
        builder = builder.max_active_runs(n);
    }
    match builder.build() {
        Ok(dag) => conversion.dags.push(dag),
        Err(d) => {
            conversion.notes.0.extend(d.with_file(file).0);
            return conversion;
        }
    }
    conversion.connections.push(ConnectionSkeleton {
        name: CONNECTION.into(),
        url: format!("k8s://KUBE-CONTEXT/{namespace}"),
        note: format!(
            "the cluster {} ran on: put its kubeconfig context for KUBE-CONTEXT",
            file.display()
        ),
    });
    conversion
}

/// `metadata.namespace`, read loosely: the file has been parsed already.
fn text_namespace(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    value["metadata"]["namespace"].as_str().map(str::to_owned)
}
