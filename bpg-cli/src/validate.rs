//! `bpg validate`: checks files of every kind bpg reads, telling the kinds apart by content.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bpg_backends::connect::ConnectionRegistry;
use bpg_core::formats::{parse_application, parse_scheduled_application};
use bpg_core::{Diagnostic, Diagnostics};
use bpg_pipeline::{ApplicationSource, Dag, TaskKind, load_dag_file};
use bpg_router::RoutingRules;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A BPG request or SparkApplication manifest.
    Application,
    /// A pipeline (`dag_id:`, `tasks:`).
    Pipeline,
    /// A connections file (`connections:`).
    Connections,
    /// Routing rules (`clusters:`, `rules:`, `constraints:`).
    Rules,
    /// A spark-operator `ScheduledSparkApplication`: `bpg import` turns it into a pipeline.
    ScheduledApplication,
    /// A gateway configuration: BPG's own (`sparkClusters:`, or Helm values holding it under
    /// `plainConfig:`) or ours (`gateway:`, `rules:`, `connections:`).
    GatewayConfig,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Application => "application",
            FileKind::Pipeline => "pipeline",
            FileKind::Connections => "connections",
            FileKind::Rules => "routing rules",
            FileKind::ScheduledApplication => "scheduled application",
            FileKind::GatewayConfig => "gateway configuration",
        }
    }
}

/// The kind of file `text` is, from its top-level keys. Works on malformed files too: only lines
/// that start a top-level key are looked at, so a syntax error further down still gets the
/// right parser (and its located message).
pub fn detect(text: &str) -> FileKind {
    let keys = top_level_keys(text);
    let has = |k: &str| keys.iter().any(|key| key == k);
    if has("kind") && top_level_value(text, "kind") == Some("ScheduledSparkApplication") {
        FileKind::ScheduledApplication
    } else if bpg_gateway::config::detect(text).is_some() {
        FileKind::GatewayConfig
    } else if has("apiVersion") || has("kind") || has("sparkVersion") || has("mainApplicationFile")
    {
        FileKind::Application
    } else if has("dag_id") || has("tasks") {
        FileKind::Pipeline
    } else if has("connections") {
        FileKind::Connections
    } else if has("clusters") || has("rules") || has("constraints") || has("queues") {
        FileKind::Rules
    } else {
        FileKind::Application
    }
}

/// The plain scalar value of a top-level `key: value` line.
fn top_level_value<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim_matches(['"', '\'']) == key).then(|| v.trim().trim_matches(['"', '\'']))
    })
}

fn top_level_keys(text: &str) -> Vec<String> {
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('{') {
        // JSON: the keys of the outer object, when it parses; a broken JSON file is an application.
        return match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
    }
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']) && !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_owned())
        })
        .collect()
}

/// One file's verdict.
struct Checked {
    kind: FileKind,
    diagnostics: Diagnostics,
    summary: String,
    /// The pipeline, when the file is a valid one.
    dag: Option<Dag>,
    /// Connection names, when the file is a valid connections file.
    connections: Vec<String>,
}

/// Checks every file, prints every problem, and exits 1 when any file is invalid.
///
/// When connections files are among the files, the pipelines' Spark tasks must name connections
/// they (or `BPG_CONN_*` variables) define.
pub fn validate(files: &[PathBuf], quiet: bool) -> ExitCode {
    let mut checked: Vec<Checked> = files.iter().map(|f| check_file(f)).collect();
    if checked.iter().any(|c| c.kind == FileKind::Connections) {
        let mut env = ConnectionRegistry::new();
        // Invalid variables are reported by the commands that use them; names are enough here.
        let _ = env.load_env();
        let known: Vec<String> = checked
            .iter()
            .flat_map(|c| c.connections.iter().cloned())
            .chain(env.names())
            .collect();
        for c in &mut checked {
            if let Some(dag) = &c.dag {
                let unknown = dag.check_connections(|name| known.iter().any(|k| k == name));
                c.diagnostics.0.extend(unknown.0);
            }
        }
    }
    let mut invalid = 0usize;
    for (file, c) in files.iter().zip(&checked) {
        for d in &c.diagnostics.0 {
            outln!("{d}");
        }
        if c.diagnostics.has_errors() {
            invalid += 1;
        } else if !quiet {
            outln!("{}: ok ({}{})", file.display(), c.kind.name(), c.summary);
        }
    }
    if invalid > 0 {
        if !quiet {
            outln!("{invalid} of {} files invalid", files.len());
        }
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_file(file: &Path) -> Checked {
    let mut checked = Checked {
        kind: FileKind::Application,
        diagnostics: Diagnostics::new(),
        summary: String::new(),
        dag: None,
        connections: Vec::new(),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            let d = Diagnostic::error("", format!("cannot read the file: {e}")).with_file(file);
            checked.diagnostics.push(d);
            return checked;
        }
    };
    if file.extension().is_some_and(|e| e == "py") {
        let d = Diagnostic::error(
            "",
            "an Airflow DAG file (Python) is not checked as it is: `bpg import FILE` converts it into pipelines",
        )
        .with_file(file);
        checked.diagnostics.push(d);
        return checked;
    }
    checked.kind = detect(&text);
    match checked.kind {
        FileKind::Application => match parse_application(&text, Some(file)) {
            Ok(parsed) => {
                checked.diagnostics = parsed.warnings;
                if !parsed.job.name.is_empty() {
                    checked.summary = format!(", {}", parsed.job.name);
                }
            }
            Err(d) => checked.diagnostics = d,
        },
        FileKind::ScheduledApplication => match parse_scheduled_application(&text, Some(file)) {
            Ok(s) => {
                checked.diagnostics = s.warnings;
                checked.summary = format!(
                    ", {} on schedule {:?}; `bpg import {}` turns it into a pipeline",
                    s.name,
                    s.schedule,
                    file.display()
                );
            }
            Err(d) => checked.diagnostics = d,
        },
        FileKind::GatewayConfig => {
            match bpg_gateway::config::GatewayConfig::from_yaml(&text, Some(file)) {
                Ok(config) => {
                    let ids: Vec<&str> = config.rules.cluster_ids().collect();
                    let kind = match config.kind {
                        bpg_gateway::config::ConfigKind::Bpg => "BPG's format",
                        bpg_gateway::config::ConfigKind::Gateway => "bpg's format",
                    };
                    checked.summary = format!(" ({kind}), clusters {}", ids.join(", "));
                    checked.diagnostics = config.warnings;
                }
                Err(d) => checked.diagnostics = d,
            }
        }
        FileKind::Pipeline => match load_dag_file(file) {
            Ok(dag) => {
                checked.diagnostics = check_applications(&dag);
                checked.summary = format!(", {} with {} tasks", dag.dag_id, dag.tasks.len());
                checked.dag = Some(dag);
            }
            Err(d) => checked.diagnostics = d,
        },
        FileKind::Connections => {
            let mut registry = ConnectionRegistry::new();
            match registry.parse_yaml(&text, Some(file)) {
                Ok(r) => {
                    checked.connections = r.names();
                    checked.summary = format!(", {}", checked.connections.join(", "));
                }
                Err(d) => checked.diagnostics = d,
            }
        }
        FileKind::Rules => match RoutingRules::from_yaml(&text, Some(file)) {
            Ok(rules) => {
                let ids: Vec<&str> = rules.cluster_ids().collect();
                checked.summary = format!(", clusters {}", ids.join(", "));
            }
            Err(d) => checked.diagnostics = d,
        },
    }
    checked
}

/// Checks the applications a valid pipeline's Spark tasks name. They are templates rendered at run
/// time; one that does not parse before rendering but holds template syntax is only a warning.
fn check_applications(dag: &Dag) -> Diagnostics {
    let mut out = Diagnostics::new();
    let pipeline_file = dag.source.file.clone();
    for (i, task) in dag.tasks.iter().enumerate() {
        let TaskKind::Spark(spark) = &task.kind else {
            continue;
        };
        let (text, file, field) = match &spark.application {
            ApplicationSource::File(path) => {
                let path = dag.resolve_path(path);
                let field = format!("tasks[{i}].application_file");
                match std::fs::read_to_string(&path) {
                    Ok(text) => (text, Some(path), field),
                    Err(e) => {
                        out.push(located(
                            dag,
                            &field,
                            format!("cannot read application file {}: {e}", path.display()),
                            Diagnostic::error,
                        ));
                        continue;
                    }
                }
            }
            ApplicationSource::Inline(value) => {
                (value.to_string(), None, format!("tasks[{i}].application"))
            }
            ApplicationSource::Job(_) => continue,
        };
        if let Err(errors) = parse_application(&text, file.as_deref()) {
            if text.contains("{{") || text.contains("{%") {
                out.push(located(
                    dag,
                    &field,
                    format!(
                        "the application holds templates and does not parse before rendering; it is checked when the task runs ({} problem(s) now)",
                        errors.errors().count()
                    ),
                    Diagnostic::warning,
                ));
                continue;
            }
            for mut d in errors.0 {
                if file.is_none() {
                    // Inline: point at the task's `application:` in the pipeline file.
                    let at = dag.source.position(&field);
                    d.file = pipeline_file.clone();
                    d.line = at.map(|p| p.0);
                    d.column = at.map(|p| p.1);
                    d.field = format!("{field}.{}", d.field)
                        .trim_end_matches('.')
                        .to_owned();
                }
                out.push(d);
            }
        }
    }
    out
}

/// A diagnostic at `field` of the pipeline file; `make` is `Diagnostic::error` or `Diagnostic::warning`.
fn located(
    dag: &Dag,
    field: &str,
    message: String,
    make: fn(String, String) -> Diagnostic,
) -> Diagnostic {
    let mut d = make(field.to_owned(), message);
    if let Some(f) = &dag.source.file {
        d = d.with_file(f);
    }
    if let Some((line, column)) = dag.source.position(field) {
        d = d.at(line, column);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_kind_by_its_top_level_keys() {
        assert_eq!(detect("dag_id: x\ntasks: []\n"), FileKind::Pipeline);
        assert_eq!(detect("# c\ntasks:\n  - id: a\n"), FileKind::Pipeline);
        assert_eq!(
            detect("connections:\n  a: {url: \"sim://\"}\n"),
            FileKind::Connections
        );
        assert_eq!(detect("clusters: []\nrules: []\n"), FileKind::Rules);
        assert_eq!(
            detect("apiVersion: sparkoperator.k8s.io/v1beta2\nkind: SparkApplication\n"),
            FileKind::Application
        );
        assert_eq!(detect("{\"sparkVersion\": \"3.5\"}"), FileKind::Application);
        assert_eq!(detect("{\"connections\": {}}"), FileKind::Connections);
        // A malformed file still goes to the parser that reports its syntax error, located.
        assert_eq!(detect("dag_id: x\ntasks: [\n"), FileKind::Pipeline);
        assert_eq!(detect("{ broken json"), FileKind::Application);
        // Keys nested under a manifest's spec do not make it a pipeline.
        assert_eq!(
            detect("kind: SparkApplication\nspec:\n  tasks: 1\n"),
            FileKind::Application
        );
    }
}
