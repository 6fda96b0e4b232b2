//! `bpg import`: turns what users already have into bpg files.
//!
//! - A spark-operator `ScheduledSparkApplication` becomes a pipeline of one Spark task with its
//!   schedule ([`scheduled`]).
//! - An Airflow DAG file (`.py`) becomes one pipeline per DAG plus the connections it names
//!   ([`airflow`]), read statically: never executed, no Python needed.
//!
//! Each conversion is a function from a file to a [`Conversion`]: the pipelines (as
//! [`bpg_pipeline::Dag`]s, written with [`bpg_pipeline::dag_to_yaml`]), the connections they name
//! (skeletons whose URLs the user fills in; never secrets) and, located, what could not be
//! converted. This module writes them: `<dag_id>.yaml` per pipeline and one `connections.yaml`.

pub mod airflow;
pub mod scheduled;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use bpg_core::{Diagnostic, Diagnostics, Severity};
use bpg_pipeline::{ApplicationSource, Dag, TaskKind, dag_to_yaml, parse_dag};

/// A connection a converted pipeline names, with a URL to fill in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSkeleton {
    /// The connection's name (the pipeline's `connection:`).
    pub name: String,
    /// A URL of the right scheme; parts the source did not say are `UPPER-CASE` placeholders.
    pub url: String,
    /// Where the name came from and what to fill in, written as a comment.
    pub note: String,
}

/// What one input file became.
#[derive(Debug, Default)]
pub struct Conversion {
    /// The pipelines, valid. Application file paths are absolute until written.
    pub dags: Vec<Dag>,
    /// The connections they name.
    pub connections: Vec<ConnectionSkeleton>,
    /// What could not be converted (warnings: the rest converted; errors: a DAG was not).
    pub notes: Diagnostics,
    /// What was converted in another shape (a sensor folded into its Spark task), one line each.
    pub info: Vec<String>,
}

/// Options of `bpg import`.
pub struct ImportArgs<'a> {
    /// Where the files go.
    pub out: &'a Path,
    /// Whether anything left unconverted is an error (and the DAG is not written).
    pub strict: bool,
    /// The input files.
    pub files: &'a [PathBuf],
}

/// Converts every file, writes what converted, prints per file what it wrote and what it could
/// not convert. Exit 1 when nothing could be converted (or, with `--strict`, when anything
/// could not), 2 when the output folder cannot be written.
pub fn import(args: &ImportArgs<'_>) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(args.out) {
        eprintln!(
            "bpg: error: cannot create the output folder {}: {e}",
            args.out.display()
        );
        return ExitCode::from(2);
    }
    let mut written = 0usize;
    let mut failed = false;
    let mut connections: BTreeMap<String, ConnectionSkeleton> = BTreeMap::new();
    // dag_id -> the file it came from: two pipelines of one id would overwrite each other.
    let mut dag_ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in args.files {
        let mut conversion = convert_file(file);
        if args.strict {
            for d in &mut conversion.notes.0 {
                d.severity = Severity::Error;
            }
        }
        for d in &conversion.notes.0 {
            outln!("{d}");
        }
        for line in &conversion.info {
            outln!("{line}");
        }
        if args.strict && conversion.notes.has_errors() {
            outln!(
                "{}: nothing written (--strict and {} problem(s))",
                file.display(),
                conversion.notes.len()
            );
            failed = true;
            continue;
        }
        if conversion.dags.is_empty() {
            outln!("{}: nothing converted", file.display());
            failed = true;
            continue;
        }
        for dag in &conversion.dags {
            if let Some(first) = dag_ids.get(&dag.dag_id) {
                failed = true;
                outln!(
                    "{}: error: dag_id {:?} was already imported from {}; not written (rename one)",
                    file.display(),
                    dag.dag_id,
                    first.display()
                );
                continue;
            }
            dag_ids.insert(dag.dag_id.clone(), file.clone());
            match write_dag(dag, file, args.out) {
                Ok(path) => {
                    written += 1;
                    outln!(
                        "{}: wrote {} ({} tasks)",
                        file.display(),
                        path.display(),
                        dag.tasks.len()
                    );
                }
                Err(d) => {
                    failed = true;
                    for d in &d.0 {
                        outln!("{d}");
                    }
                }
            }
        }
        for c in conversion.connections {
            connections.entry(c.name.clone()).or_insert(c);
        }
    }
    if !connections.is_empty() {
        let path = args.out.join("connections.yaml");
        // A connections file from an earlier import may have its URLs filled in: keep them.
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let text = match merged_connections_yaml(&existing, &connections) {
            Ok(text) => text,
            Err(message) => {
                eprintln!("bpg: error: {}: {message}; not overwritten", path.display());
                return ExitCode::from(2);
            }
        };
        match std::fs::write(&path, text) {
            Ok(()) => {
                let names: Vec<&str> = connections.keys().map(String::as_str).collect();
                outln!(
                    "wrote {} ({}): fill in the URLs",
                    path.display(),
                    names.join(", ")
                );
            }
            Err(e) => {
                eprintln!("bpg: error: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if written == 0 || (args.strict && failed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Converts one file by its kind: `.py` an Airflow DAG file, anything else a
/// ScheduledSparkApplication.
pub fn convert_file(file: &Path) -> Conversion {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            let mut c = Conversion::default();
            c.notes
                .push(Diagnostic::error("", format!("cannot read the file: {e}")).with_file(file));
            return c;
        }
    };
    let is_python = file.extension().is_some_and(|e| e == "py");
    if is_python {
        airflow::convert(&text, file)
    } else {
        scheduled::convert(&text, file)
    }
}

/// Writes `dag` as `<out>/<dag_id>.yaml`, application files relative to it, and checks that what
/// was written loads back.
fn write_dag(dag: &Dag, source: &Path, out: &Path) -> Result<PathBuf, Diagnostics> {
    let mut dag = dag.clone();
    let out_abs = absolute(out);
    for task in &mut dag.tasks {
        if let TaskKind::Spark(spark) = &mut task.kind
            && let ApplicationSource::File(path) = &mut spark.application
        {
            *path = relative_to(path, &out_abs);
        }
    }
    let yaml = dag_to_yaml(&dag)?;
    let text = format!(
        "# Imported by `bpg import` from {}.\n{yaml}",
        source.display()
    );
    let path = out.join(format!("{}.yaml", dag.dag_id));
    parse_dag(&text, Some(&path))?;
    std::fs::write(&path, text).map_err(|e| {
        Diagnostics::from(Diagnostic::error("", format!("cannot write: {e}")).with_file(&path))
    })?;
    Ok(path)
}

/// The connections file: the entries of `existing` (an earlier import's, maybe filled in) as
/// they are, then each new connection with a comment saying what to fill in.
fn merged_connections_yaml(
    existing: &str,
    connections: &BTreeMap<String, ConnectionSkeleton>,
) -> Result<String, String> {
    let mut map = if existing.trim().is_empty() {
        serde_json::Map::new()
    } else {
        let value: serde_json::Value = serde_saphyr::from_str(existing)
            .map_err(|e| format!("cannot read it to add the new connections: {e}"))?;
        match value.get("connections") {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => return Err("it has no `connections:` mapping to add the new ones to".into()),
        }
    };
    let mut text = String::from(
        "# Connections the imported pipelines name. Fill in each URL (its UPPER-CASE parts); secrets are\n\
         # referenced (password_env, token_env, token_file), never written here.\n",
    );
    for c in connections.values() {
        if !map.contains_key(&c.name) {
            text.push_str(&format!("# {}: {}\n", c.name, c.note));
            map.insert(c.name.clone(), serde_json::json!({ "url": c.url }));
        }
    }
    let root = serde_json::json!({ "connections": map });
    serde_saphyr::to_string(&root)
        .map(|yaml| text + &yaml)
        .map_err(|e| format!("cannot write YAML: {e}"))
}

/// A cron expression that fires every `seconds`, when one does: intervals that divide an hour
/// (in minutes) or a day (in hours), and whole days, weeks of days excepted.
pub(crate) fn cron_for_interval(seconds: u64) -> Option<String> {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match seconds {
        0 => None,
        s if s == DAY => Some("@daily".into()),
        s if s == HOUR => Some("@hourly".into()),
        s if s.is_multiple_of(DAY) => None,
        s if s.is_multiple_of(HOUR) && DAY.is_multiple_of(s) => {
            Some(format!("0 */{} * * *", s / HOUR))
        }
        s if s.is_multiple_of(MINUTE) && HOUR.is_multiple_of(s) => {
            Some(format!("*/{} * * * *", s / MINUTE))
        }
        _ => None,
    }
}

/// A Spark task whose application is `application`, inline.
pub(crate) fn inline_spark_task(
    id: &str,
    connection: &str,
    application: serde_json::Value,
) -> bpg_pipeline::Task {
    let mut task = bpg_pipeline::Task::spark_file(id, connection, "");
    if let TaskKind::Spark(spark) = &mut task.kind {
        spark.application = ApplicationSource::Inline(application);
    }
    task
}

/// An id bpg accepts (letters, digits, `_`, `-`, `.`), from any name.
pub(crate) fn sanitize_id(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(250)
        .collect();
    if id.is_empty() { "imported".into() } else { id }
}

/// `path` made absolute against the current folder, `.` and `..` resolved.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `target` relative to folder `base` (both absolute), with `..` where needed.
fn relative_to(target: &Path, base: &Path) -> PathBuf {
    let target: Vec<Component> = target.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return target.iter().collect();
    }
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &target[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_of_the_output_folder() {
        assert_eq!(
            relative_to(Path::new("/a/dags/apps/pi.yaml"), Path::new("/a/out")),
            PathBuf::from("../dags/apps/pi.yaml")
        );
        assert_eq!(
            relative_to(Path::new("/a/out/pi.yaml"), Path::new("/a/out")),
            PathBuf::from("pi.yaml")
        );
        assert_eq!(
            absolute(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }

    #[test]
    fn intervals_become_cron_when_cron_can_say_them() {
        assert_eq!(cron_for_interval(180).as_deref(), Some("*/3 * * * *"));
        assert_eq!(cron_for_interval(3600).as_deref(), Some("@hourly"));
        assert_eq!(cron_for_interval(6 * 3600).as_deref(), Some("0 */6 * * *"));
        assert_eq!(cron_for_interval(86400).as_deref(), Some("@daily"));
        assert_eq!(cron_for_interval(7 * 60), None);
        assert_eq!(cron_for_interval(2 * 86400), None);
    }
}
