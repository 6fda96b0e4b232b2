//! The YAML pipeline format (DESIGN.md §7), loaded into the same [`Dag`] the builder makes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bpg_core::{Diagnostic, Diagnostics};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

use crate::dag::{
    ApplicationSource, CommandLine, CommandTask, DEFAULT_MAX_ACTIVE_RUNS, DEFAULT_MAX_ACTIVE_TASKS,
    Dag, SourceMap, SparkTask, Task, TaskKind, TaskSettings, TriggerRule,
};

/// A duration as written: `30s`, `2h`, `1h 30m`, `1500ms`, or a number of seconds.
#[derive(Debug, Clone)]
struct RawDuration(String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or \"2h\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration(format!("{v}s")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration(format!("{v}s")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration(format!("{}ms", (v * 1000.0).round())))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDag {
    dag_id: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    start_date: Option<Spanned<String>>,
    #[serde(default)]
    end_date: Option<Spanned<String>>,
    #[serde(default)]
    catchup: Option<bool>,
    #[serde(default)]
    max_active_runs: Option<Spanned<usize>>,
    #[serde(default)]
    default_args: Option<RawDefaultArgs>,
    #[serde(default)]
    max_active_tasks: Option<Spanned<usize>>,
    #[serde(default)]
    pools: BTreeMap<String, Spanned<u32>>,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    tasks: Spanned<Vec<Spanned<RawTask>>>,
}

/// Declares a raw YAML struct holding every [`TaskSettings`] key, plus the fields given: so
/// `default_args:` and tasks take the same settings, read by one [`Loader::settings`].
macro_rules! with_task_settings {
    ($(#[$meta:meta])* struct $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        struct $name {
            #[serde(default)]
            retries: Option<u32>,
            #[serde(default)]
            retry_delay: Option<Spanned<RawDuration>>,
            #[serde(default)]
            retry_exponential_backoff: Option<bool>,
            #[serde(default)]
            max_retry_delay: Option<Spanned<RawDuration>>,
            #[serde(default)]
            execution_timeout: Option<Spanned<RawDuration>>,
            #[serde(default)]
            trigger_rule: Option<TriggerRule>,
            #[serde(default)]
            pool: Option<Spanned<String>>,
            #[serde(default)]
            pool_slots: Option<Spanned<u32>>,
            #[serde(default)]
            depends_on_past: Option<bool>,
            $($extra)*
        }

        impl $name {
            fn settings(&self) -> RawSettings<'_> {
                RawSettings {
                    retries: self.retries,
                    retry_delay: &self.retry_delay,
                    retry_exponential_backoff: self.retry_exponential_backoff,
                    max_retry_delay: &self.max_retry_delay,
                    execution_timeout: &self.execution_timeout,
                    trigger_rule: self.trigger_rule,
                    pool: &self.pool,
                    pool_slots: &self.pool_slots,
                    depends_on_past: self.depends_on_past,
                }
            }
        }
    };
}

/// The settings keys of a raw task or `default_args`, as read.
struct RawSettings<'a> {
    retries: Option<u32>,
    retry_delay: &'a Option<Spanned<RawDuration>>,
    retry_exponential_backoff: Option<bool>,
    max_retry_delay: &'a Option<Spanned<RawDuration>>,
    execution_timeout: &'a Option<Spanned<RawDuration>>,
    trigger_rule: Option<TriggerRule>,
    pool: &'a Option<Spanned<String>>,
    pool_slots: &'a Option<Spanned<u32>>,
    depends_on_past: Option<bool>,
}

with_task_settings! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawDefaultArgs {}
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Empty,
    Spark,
    Command,
}

with_task_settings! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawTask {
        id: Spanned<String>,
        kind: Spanned<RawKind>,
        #[serde(default)]
        depends_on: Vec<Spanned<String>>,
        // spark
        #[serde(default)]
        connection: Option<Spanned<String>>,
        #[serde(default)]
        application: Option<Spanned<serde_json::Value>>,
        #[serde(default)]
        application_file: Option<Spanned<String>>,
        #[serde(default)]
        args: Option<Spanned<Vec<String>>>,
        #[serde(default)]
        labels: Option<Spanned<BTreeMap<String, String>>>,
        #[serde(default)]
        follow_logs: Option<Spanned<bool>>,
        // command
        #[serde(default)]
        command: Option<Spanned<CommandLine>>,
        #[serde(default)]
        env: Option<Spanned<BTreeMap<String, String>>>,
        #[serde(default)]
        cwd: Option<Spanned<String>>,
    }
}

fn pos<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

struct Loader<'a> {
    file: Option<&'a Path>,
    base_dir: Option<PathBuf>,
    source: SourceMap,
    diagnostics: Diagnostics,
}

impl Loader<'_> {
    fn error(&mut self, field: String, at: (usize, usize), message: String) {
        let mut d = Diagnostic::error(field, message).at(at.0, at.1);
        if let Some(file) = self.file {
            d = d.with_file(file);
        }
        self.diagnostics.push(d);
    }

    fn mark<T>(&mut self, field: String, s: &Spanned<T>) {
        self.source.positions.insert(field, pos(s));
    }

    fn duration(&mut self, field: String, raw: &Option<Spanned<RawDuration>>) -> Option<Duration> {
        let raw = raw.as_ref()?;
        self.mark(field.clone(), raw);
        match humantime::parse_duration(raw.value.0.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    field,
                    pos(raw),
                    format!(
                        "{:?} is not a duration ({e}): expected e.g. \"30s\", \"5m\", \"2h\" or a number of seconds",
                        raw.value.0
                    ),
                );
                None
            }
        }
    }

    /// The settings of a task or of `default_args`; `prefix` is `tasks[i]` or `default_args`.
    fn settings(&mut self, prefix: &str, raw: RawSettings<'_>) -> TaskSettings {
        if let Some(p) = raw.pool {
            self.mark(format!("{prefix}.pool"), p);
        }
        if let Some(p) = raw.pool_slots {
            self.mark(format!("{prefix}.pool_slots"), p);
        }
        TaskSettings {
            retries: raw.retries,
            retry_delay: self.duration(format!("{prefix}.retry_delay"), raw.retry_delay),
            retry_exponential_backoff: raw.retry_exponential_backoff,
            max_retry_delay: self
                .duration(format!("{prefix}.max_retry_delay"), raw.max_retry_delay),
            execution_timeout: self
                .duration(format!("{prefix}.execution_timeout"), raw.execution_timeout),
            trigger_rule: raw.trigger_rule,
            pool: raw.pool.as_ref().map(|p| p.value.clone()),
            pool_slots: raw.pool_slots.as_ref().map(|p| p.value),
            depends_on_past: raw.depends_on_past,
        }
    }

    /// An RFC 3339 time, or a date (midnight UTC).
    fn date(&mut self, field: &str, raw: &Option<Spanned<String>>) -> Option<DateTime<Utc>> {
        let raw = raw.as_ref()?;
        self.mark(field.to_owned(), raw);
        let text = raw.value.trim();
        let parsed = DateTime::parse_from_rfc3339(text)
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc())
            });
        if parsed.is_none() {
            self.error(
                field.to_owned(),
                pos(raw),
                format!(
                    "{text:?} is not a date: expected e.g. \"2025-01-01\" or \"2025-01-01T02:00:00Z\""
                ),
            );
        }
        parsed
    }

    fn not_for_kind<T>(&mut self, i: usize, name: &str, value: &Option<Spanned<T>>, kind: &str) {
        if let Some(v) = value {
            self.error(
                format!("tasks[{i}].{name}"),
                pos(v),
                format!("`{name}` does not apply to a task of kind `{kind}`"),
            );
        }
    }

    fn task(&mut self, i: usize, raw: &Spanned<RawTask>) -> Task {
        let t = &raw.value;
        self.source
            .positions
            .insert(format!("tasks[{i}]"), pos(raw));
        self.mark(format!("tasks[{i}].id"), &t.id);
        for (j, dep) in t.depends_on.iter().enumerate() {
            self.mark(format!("tasks[{i}].depends_on[{j}]"), dep);
        }
        if let Some(first) = t.depends_on.first() {
            self.mark(format!("tasks[{i}].depends_on"), first);
        }
        let kind = match t.kind.value {
            RawKind::Empty => {
                for (name, v) in [
                    ("connection", t.connection.as_ref().map(pos)),
                    ("application", t.application.as_ref().map(pos)),
                    ("application_file", t.application_file.as_ref().map(pos)),
                    ("args", t.args.as_ref().map(pos)),
                    ("labels", t.labels.as_ref().map(pos)),
                    ("follow_logs", t.follow_logs.as_ref().map(pos)),
                    ("command", t.command.as_ref().map(pos)),
                    ("env", t.env.as_ref().map(pos)),
                    ("cwd", t.cwd.as_ref().map(pos)),
                ] {
                    if let Some(at) = v {
                        self.error(
                            format!("tasks[{i}].{name}"),
                            at,
                            format!("`{name}` does not apply to a task of kind `empty`"),
                        );
                    }
                }
                TaskKind::Empty
            }
            RawKind::Spark => self.spark(i, raw),
            RawKind::Command => {
                self.not_for_kind(i, "connection", &t.connection, "command");
                self.not_for_kind(i, "application", &t.application, "command");
                self.not_for_kind(i, "application_file", &t.application_file, "command");
                self.not_for_kind(i, "args", &t.args, "command");
                self.not_for_kind(i, "labels", &t.labels, "command");
                self.not_for_kind(i, "follow_logs", &t.follow_logs, "command");
                let command = match &t.command {
                    Some(c) => {
                        self.mark(format!("tasks[{i}].command"), c);
                        c.value.clone()
                    }
                    // Validation reports the missing command, once.
                    None => CommandLine::Argv(Vec::new()),
                };
                TaskKind::Command(CommandTask {
                    command,
                    env: t.env.as_ref().map(|e| e.value.clone()).unwrap_or_default(),
                    cwd: t.cwd.as_ref().map(|c| PathBuf::from(&c.value)),
                })
            }
        };
        let mut task = Task::empty(t.id.value.clone());
        task.kind = kind;
        task.depends_on = t.depends_on.iter().map(|d| d.value.clone()).collect();
        task.settings = self.settings(&format!("tasks[{i}]"), t.settings());
        task
    }

    fn spark(&mut self, i: usize, raw: &Spanned<RawTask>) -> TaskKind {
        let t = &raw.value;
        self.not_for_kind(i, "command", &t.command, "spark");
        self.not_for_kind(i, "env", &t.env, "spark");
        self.not_for_kind(i, "cwd", &t.cwd, "spark");
        let connection = match &t.connection {
            Some(c) => {
                self.mark(format!("tasks[{i}].connection"), c);
                c.value.clone()
            }
            None => {
                self.error(
                    format!("tasks[{i}].connection"),
                    pos(raw),
                    "a spark task needs `connection:` (the name of a connection)".into(),
                );
                String::new()
            }
        };
        let application = match (&t.application, &t.application_file) {
            (Some(inline), None) => {
                self.mark(format!("tasks[{i}].application"), inline);
                if !inline.value.is_object() {
                    self.error(
                        format!("tasks[{i}].application"),
                        pos(inline),
                        "expected a mapping: a BPG request or a SparkApplication manifest".into(),
                    );
                }
                ApplicationSource::Inline(inline.value.clone())
            }
            (None, Some(file)) => {
                self.mark(format!("tasks[{i}].application_file"), file);
                let path = PathBuf::from(&file.value);
                let resolved = match &self.base_dir {
                    Some(base) if path.is_relative() => base.join(&path),
                    _ => path.clone(),
                };
                if !resolved.is_file() {
                    self.error(
                        format!("tasks[{i}].application_file"),
                        pos(file),
                        format!("application file {} does not exist", resolved.display()),
                    );
                }
                ApplicationSource::File(path)
            }
            (Some(inline), Some(_)) => {
                self.error(
                    format!("tasks[{i}].application"),
                    pos(inline),
                    "give either `application` or `application_file`, not both".into(),
                );
                ApplicationSource::Inline(inline.value.clone())
            }
            (None, None) => {
                self.error(
                    format!("tasks[{i}]"),
                    pos(raw),
                    "a spark task needs `application:` (inline) or `application_file:`".into(),
                );
                ApplicationSource::Inline(serde_json::Value::Null)
            }
        };
        TaskKind::Spark(SparkTask {
            connection,
            application,
            args: t.args.as_ref().map(|a| a.value.clone()),
            labels: t
                .labels
                .as_ref()
                .map(|l| l.value.clone())
                .unwrap_or_default(),
            follow_logs: t.follow_logs.as_ref().is_none_or(|f| f.value),
        })
    }
}

/// Parses a pipeline from YAML text and validates it. `file` names the source in diagnostics and
/// is the base for relative application files and command `cwd`s.
///
/// ```
/// let dag = bpg_pipeline::parse_dag(r#"
/// dag_id: hello
/// default_args: { retries: 1, retry_delay: 10s }
/// tasks:
///   - { id: start, kind: empty }
///   - { id: greet, kind: command, command: "echo hello {{ ds }}", depends_on: [start] }
/// "#, None).unwrap();
/// assert_eq!(dag.tasks[1].depends_on, vec!["start".to_string()]);
/// ```
pub fn parse_dag(text: &str, file: Option<&Path>) -> Result<Dag, Diagnostics> {
    let raw: RawDag = serde_saphyr::from_str(text).map_err(|e| {
        let d = Diagnostic::from_yaml_error(&e, text);
        Diagnostics::from(match file {
            Some(f) => d.with_file(f),
            None => d,
        })
    })?;
    let base_dir = file.and_then(|f| f.parent()).map(|p| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    });
    let mut loader = Loader {
        file,
        base_dir: base_dir.clone(),
        source: SourceMap {
            file: file.map(Path::to_path_buf),
            positions: BTreeMap::new(),
        },
        diagnostics: Diagnostics::new(),
    };
    loader.mark("dag_id".into(), &raw.dag_id);
    loader.mark("tasks".into(), &raw.tasks);
    if let Some(m) = &raw.max_active_tasks {
        loader.mark("max_active_tasks".into(), m);
    }
    if let Some(m) = &raw.max_active_runs {
        loader.mark("max_active_runs".into(), m);
    }
    if let Some(s) = &raw.schedule {
        loader.mark("schedule".into(), s);
    }
    let start_date = loader.date("start_date", &raw.start_date);
    let end_date = loader.date("end_date", &raw.end_date);
    for (name, slots) in &raw.pools {
        loader.mark(format!("pools.{name}"), slots);
    }
    let default_args = match &raw.default_args {
        None => TaskSettings::default(),
        Some(d) => loader.settings("default_args", d.settings()),
    };
    let tasks = raw
        .tasks
        .value
        .iter()
        .enumerate()
        .map(|(i, t)| loader.task(i, t))
        .collect();
    let dag = Dag {
        dag_id: raw.dag_id.value,
        description: raw.description,
        schedule: raw.schedule.map(|s| s.value),
        start_date,
        end_date,
        catchup: raw.catchup.unwrap_or(false),
        max_active_runs: raw
            .max_active_runs
            .map_or(DEFAULT_MAX_ACTIVE_RUNS, |m| m.value),
        default_args,
        max_active_tasks: raw
            .max_active_tasks
            .map_or(DEFAULT_MAX_ACTIVE_TASKS, |m| m.value),
        pools: raw.pools.into_iter().map(|(k, v)| (k, v.value)).collect(),
        params: raw.params,
        tasks,
        base_dir,
        source: loader.source,
    };
    let mut diagnostics = loader.diagnostics;
    diagnostics.0.extend(dag.validate());
    diagnostics
        .0
        .extend(crate::validate::check_applications(&dag, Some(text)));
    if diagnostics.has_errors() {
        Err(diagnostics)
    } else {
        Ok(dag)
    }
}

/// Reads, parses and validates a pipeline file.
pub fn load_dag_file(path: impl AsRef<Path>) -> Result<Dag, Diagnostics> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::from(
            Diagnostic::error("", format!("cannot read pipeline file: {e}")).with_file(path),
        )
    })?;
    parse_dag(&text, Some(path))
}

fn duration_text(d: Duration) -> serde_json::Value {
    humantime::format_duration(d).to_string().into()
}

/// Writes `dag` in the YAML pipeline format, so a DAG built in Rust can be kept as a file and
/// loaded back with [`parse_dag`] into an equivalent DAG. A Spark job built in Rust is written
/// inline as a BPG request. Rust function tasks have no YAML form: they are reported as errors.
///
/// ```
/// use bpg_pipeline::{Dag, Task, TriggerRule, dag_to_yaml, parse_dag};
/// let dag = Dag::builder("roundtrip")
///     .task(Task::empty("start"))
///     .task(Task::shell("hello", "echo {{ ds }}").depends_on(["start"]).trigger_rule(TriggerRule::AllDone))
///     .build()
///     .unwrap();
/// let yaml = dag_to_yaml(&dag).unwrap();
/// let again = parse_dag(&yaml, None).unwrap();
/// assert_eq!(again.tasks[1].settings.trigger_rule, Some(TriggerRule::AllDone));
/// ```
pub fn dag_to_yaml(dag: &Dag) -> Result<String, Diagnostics> {
    use serde_json::{Map, Value, json};
    let mut problems = Diagnostics::new();
    let mut root = Map::new();
    root.insert("dag_id".into(), dag.dag_id.clone().into());
    if let Some(d) = &dag.description {
        root.insert("description".into(), d.clone().into());
    }
    if let Some(s) = &dag.schedule {
        root.insert("schedule".into(), s.clone().into());
    }
    if let Some(d) = dag.start_date {
        root.insert("start_date".into(), d.to_rfc3339().into());
    }
    if let Some(d) = dag.end_date {
        root.insert("end_date".into(), d.to_rfc3339().into());
    }
    if dag.catchup {
        root.insert("catchup".into(), true.into());
    }
    if dag.max_active_runs != DEFAULT_MAX_ACTIVE_RUNS {
        root.insert("max_active_runs".into(), dag.max_active_runs.into());
    }
    let mut defaults = Map::new();
    insert_settings(&mut defaults, &dag.default_args);
    if !defaults.is_empty() {
        root.insert("default_args".into(), defaults.into());
    }
    if dag.max_active_tasks != DEFAULT_MAX_ACTIVE_TASKS {
        root.insert("max_active_tasks".into(), dag.max_active_tasks.into());
    }
    if !dag.pools.is_empty() {
        root.insert("pools".into(), json!(dag.pools));
    }
    if !dag.params.is_empty() {
        root.insert("params".into(), dag.params.clone().into());
    }
    let mut tasks = Vec::with_capacity(dag.tasks.len());
    for (i, task) in dag.tasks.iter().enumerate() {
        let mut t = Map::new();
        t.insert("id".into(), task.id.clone().into());
        t.insert("kind".into(), task.kind.name().into());
        match &task.kind {
            TaskKind::Empty => {}
            TaskKind::Spark(spark) => {
                t.insert("connection".into(), spark.connection.clone().into());
                match &spark.application {
                    ApplicationSource::File(path) => {
                        t.insert("application_file".into(), path.display().to_string().into());
                    }
                    ApplicationSource::Inline(value) => {
                        t.insert("application".into(), value.clone());
                    }
                    ApplicationSource::Job(job) => {
                        let request = bpg_core::formats::to_bpg_request(job);
                        t.insert("application".into(), json!(request));
                    }
                }
                if let Some(args) = &spark.args {
                    t.insert("args".into(), json!(args));
                }
                if !spark.labels.is_empty() {
                    t.insert("labels".into(), json!(spark.labels));
                }
                if !spark.follow_logs {
                    t.insert("follow_logs".into(), false.into());
                }
            }
            TaskKind::Command(command) => {
                t.insert("command".into(), json!(command.command));
                if !command.env.is_empty() {
                    t.insert("env".into(), json!(command.env));
                }
                if let Some(cwd) = &command.cwd {
                    t.insert("cwd".into(), cwd.display().to_string().into());
                }
            }
            TaskKind::Function(_) => problems.push(Diagnostic::error(
                format!("tasks[{i}]"),
                format!("task {:?} is a Rust function and has no YAML form", task.id),
            )),
        }
        if !task.depends_on.is_empty() {
            t.insert("depends_on".into(), json!(task.depends_on));
        }
        insert_settings(&mut t, &task.settings);
        tasks.push(Value::Object(t));
    }
    root.insert("tasks".into(), tasks.into());
    if problems.has_errors() {
        return Err(problems);
    }
    serde_saphyr::to_string(&Value::Object(root))
        .map_err(|e| Diagnostics::from(Diagnostic::error("", format!("cannot write YAML: {e}"))))
}

/// Writes the settings of a task or of `default_args` (the same keys for both), those set only.
fn insert_settings(map: &mut serde_json::Map<String, serde_json::Value>, settings: &TaskSettings) {
    if let Some(rule) = settings.trigger_rule {
        map.insert("trigger_rule".into(), rule.as_str().into());
    }
    if let Some(v) = settings.retries {
        map.insert("retries".into(), v.into());
    }
    if let Some(v) = settings.retry_delay {
        map.insert("retry_delay".into(), duration_text(v));
    }
    if let Some(v) = settings.retry_exponential_backoff {
        map.insert("retry_exponential_backoff".into(), v.into());
    }
    if let Some(v) = settings.max_retry_delay {
        map.insert("max_retry_delay".into(), duration_text(v));
    }
    if let Some(v) = settings.execution_timeout {
        map.insert("execution_timeout".into(), duration_text(v));
    }
    if let Some(pool) = &settings.pool {
        map.insert("pool".into(), pool.clone().into());
    }
    if let Some(slots) = settings.pool_slots {
        map.insert("pool_slots".into(), slots.into());
    }
    if let Some(v) = settings.depends_on_past {
        map.insert("depends_on_past".into(), v.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_semantic_problem_is_reported_with_its_line() {
        let text = "\
dag_id: broken
default_args: { retry_delay: soon }
tasks:
  - id: a
    kind: empty
    depends_on: [c]
  - id: b
    kind: empty
    depends_on: [a]
  - id: c
    kind: empty
    depends_on: [b]
  - id: a
    kind: spark
    connection: sim
    application_file: nope.yaml
    env: { X: y }
  - id: d
    kind: command
    depends_on: [ghost]
    execution_timeout: forever
";
        let err = parse_dag(text, Some(Path::new("dags/broken.yaml"))).unwrap_err();
        let lines: Vec<String> = err.errors().map(|d| d.to_string()).collect();
        let expect = [
            "dags/broken.yaml:2:30: error: default_args.retry_delay: \"soon\" is not a duration",
            "dags/broken.yaml:17:10: error: tasks[3].env: `env` does not apply to a task of kind `spark`",
            "dags/broken.yaml:16:23: error: tasks[3].application_file: application file dags/nope.yaml does not exist",
            "dags/broken.yaml:21:24: error: tasks[4].execution_timeout: \"forever\" is not a duration",
            "dags/broken.yaml:13:9: error: tasks[3].id: duplicate task id \"a\"",
            "dags/broken.yaml:20:18: error: tasks[4].depends_on[0]: task \"d\" depends on unknown task \"ghost\"",
            "dags/broken.yaml:18:5: error: tasks[4].command: a command task needs a non-empty `command:`",
            "dags/broken.yaml:6:18: error: tasks[0].depends_on: dependency cycle: a -> b -> c -> a",
        ];
        assert_eq!(lines.len(), expect.len(), "{lines:#?}");
        for (line, want) in lines.iter().zip(expect) {
            assert!(
                line.starts_with(want),
                "{line}\n  does not start with\n{want}"
            );
        }
    }

    #[test]
    fn applications_are_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "sparkVersion: \"3.5\"\nmainApplicationFile: local:///x.py\ndriver: {memory: lots}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("templated.yaml"),
            "sparkVersion: \"3.5\"\nmainApplicationFile: local:///{{ params.app }}.py\n",
        )
        .unwrap();
        let pipeline = dir.path().join("p.yaml");
        std::fs::write(
            &pipeline,
            "\
dag_id: apps
tasks:
  - {id: file, kind: spark, connection: sim, application_file: bad.yaml}
  - {id: templated, kind: spark, connection: sim, application_file: templated.yaml}
  - id: inline
    kind: spark
    connection: sim
    application: {sparkVersion: \"3.5\", mainApplicationFile: x.py, executor: {instances: many}}
",
        )
        .unwrap();
        let err = load_dag_file(&pipeline).unwrap_err();
        let lines: Vec<String> = err.errors().map(|d| d.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].contains("bad.yaml:3:") && lines[0].contains("driver.memory"),
            "{lines:#?}"
        );
        // Inline applications are read from the pipeline's own text: the error is at `many`.
        assert!(
            lines[1].contains("p.yaml:8:89: error: tasks[2].application.executor.instances"),
            "{lines:#?}"
        );
        let block = dir.path().join("block.yaml");
        std::fs::write(
            &block,
            "dag_id: apps\ntasks:\n  - id: inline\n    kind: spark\n    connection: sim\n    application:\n      sparkVersion: \"3.5\"\n      driver:\n        memory: lots\n",
        )
        .unwrap();
        let err = load_dag_file(&block).unwrap_err();
        let lines: Vec<String> = err.errors().map(|d| d.to_string()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("block.yaml:9:17: error: tasks[0].application.driver.memory")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(
                |l| l.contains("block.yaml:7:7: error: tasks[0].application")
                    && l.contains("mainApplicationFile")
            ),
            "{lines:#?}"
        );
    }

    #[test]
    fn builder_dag_round_trips_through_yaml() {
        let job = bpg_core::SparkJob::new("pi", bpg_core::AppType::Python, "3.5", "local:///pi.py")
            .with_arguments(["{{ ds }}"]);
        let dag = Dag::builder("round")
            .description("every field")
            .schedule("0 2 * * *")
            .default_args(
                TaskSettings::new()
                    .retries(2)
                    .retry_delay(Duration::from_secs(90))
                    .execution_timeout(Duration::from_secs(7200))
                    .trigger_rule(TriggerRule::NoneFailed),
            )
            .max_active_tasks(3)
            .pool("spark", 2)
            .param("region", "us-west-2")
            .task(Task::empty("start"))
            .task(
                Task::spark("pi", "sim", job)
                    .label("sim/duration", "5s")
                    .depends_on(["start"])
                    .pool("spark", 2)
                    .retry_exponential_backoff(true)
                    .max_retry_delay(Duration::from_secs(600)),
            )
            .task(
                Task::command("sh", ["echo", "{{ params.region }}"])
                    .env("A", "b")
                    .depends_on(["pi"])
                    .trigger_rule(TriggerRule::AllDone),
            )
            .build()
            .unwrap();
        let yaml = dag_to_yaml(&dag).unwrap();
        let again = parse_dag(&yaml, None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(again.dag_id, dag.dag_id);
        assert_eq!(again.description, dag.description);
        assert_eq!(again.schedule, dag.schedule);
        assert_eq!(again.default_args, dag.default_args);
        assert_eq!(again.max_active_tasks, dag.max_active_tasks);
        assert_eq!(again.pools, dag.pools);
        assert_eq!(again.params, dag.params);
        for (a, b) in again.tasks.iter().zip(&dag.tasks) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.depends_on, b.depends_on);
            assert_eq!(a.settings, b.settings);
        }
        match &again.tasks[1].kind {
            TaskKind::Spark(spark) => {
                assert_eq!(spark.labels["sim/duration"], "5s");
                let ApplicationSource::Inline(app) = &spark.application else {
                    panic!("a Rust job is written inline");
                };
                assert_eq!(app["mainApplicationFile"], "local:///pi.py");
                assert_eq!(app["arguments"][0], "{{ ds }}");
            }
            other => panic!("{other:?}"),
        }
        match (&again.tasks[2].kind, &dag.tasks[2].kind) {
            (TaskKind::Command(a), TaskKind::Command(b)) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        let with_fn = Dag::builder("f")
            .task(Task::function("f", |_| async { Ok(None) }))
            .build()
            .unwrap();
        assert!(
            dag_to_yaml(&with_fn)
                .unwrap_err()
                .to_string()
                .contains("Rust function")
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_location() {
        let text = "dag_id: x\ntasks:\n  - id: a\n    kind: empty\n    depens_on: [b]\n";
        let err = parse_dag(text, Some(Path::new("p.yaml"))).unwrap_err();
        let d = err.errors().next().unwrap();
        assert_eq!(d.line, Some(5), "{err}");
        assert!(d.message.contains("depens_on"), "{err}");
    }

    #[test]
    fn wrong_types_and_unknown_rules_are_errors() {
        let err = parse_dag(
            "dag_id: x\ntasks:\n  - {id: a, kind: empty, trigger_rule: sometimes}\n",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = parse_dag("dag_id: x\nmax_active_tasks: many\ntasks: []\n", None).unwrap_err();
        assert_eq!(err.errors().next().unwrap().line, Some(2), "{err}");
    }

    #[test]
    fn yaml_and_builder_give_the_same_dag() {
        let yaml = parse_dag(
            "\
dag_id: same
default_args: { retries: 2, retry_delay: 30s, retry_exponential_backoff: true, execution_timeout: 2h }
max_active_tasks: 4
params: { region: us-west-2 }
tasks:
  - { id: start, kind: empty }
  - { id: sh, kind: command, command: [echo, '{{ params.region }}'], depends_on: [start], trigger_rule: all_done, retries: 0 }
",
            None,
        )
        .unwrap();
        let built = Dag::builder("same")
            .default_args(
                TaskSettings::new()
                    .retries(2)
                    .retry_delay(Duration::from_secs(30))
                    .retry_exponential_backoff(true)
                    .execution_timeout(Duration::from_secs(7200)),
            )
            .max_active_tasks(4)
            .param("region", "us-west-2")
            .task(Task::empty("start"))
            .task(
                Task::command("sh", ["echo", "{{ params.region }}"])
                    .depends_on(["start"])
                    .trigger_rule(TriggerRule::AllDone)
                    .retries(0),
            )
            .build()
            .unwrap();
        assert_eq!(yaml.default_args, built.default_args);
        assert_eq!(yaml.max_active_tasks, built.max_active_tasks);
        assert_eq!(yaml.params, built.params);
        for (a, b) in yaml.tasks.iter().zip(&built.tasks) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.depends_on, b.depends_on);
            assert_eq!(a.settings, b.settings);
            assert_eq!(a.kind.name(), b.kind.name());
        }
        match (&yaml.tasks[1].kind, &built.tasks[1].kind) {
            (TaskKind::Command(a), TaskKind::Command(b)) => assert_eq!(a, b),
            _ => panic!("expected command tasks"),
        }
    }

    #[test]
    fn default_args_take_every_task_setting_and_tasks_override_them() {
        let dag = parse_dag(
            "dag_id: s\npools: { spark: 4 }\ndefault_args: { retries: 3, retry_delay: 10s, retry_exponential_backoff: true, max_retry_delay: 1m, execution_timeout: 2h, trigger_rule: all_done, pool: spark, pool_slots: 2, depends_on_past: false }\ntasks:\n  - { id: a, kind: empty }\n  - { id: b, kind: empty, depends_on: [a], retries: 0, pool_slots: 1, trigger_rule: all_success }\n",
            None,
        )
        .unwrap();
        let graph = dag.compile();
        let (a, b) = (graph.settings(0), graph.settings(1));
        assert_eq!(a.retry.retries, 3);
        assert_eq!(a.retry.max_retry_delay, Some(Duration::from_secs(60)));
        assert!(a.retry.exponential_backoff);
        assert_eq!(a.execution_timeout, Some(Duration::from_secs(7200)));
        assert_eq!((a.trigger_rule, a.pool_slots), (TriggerRule::AllDone, 2));
        assert_eq!(
            (b.retry.retries, b.retry.retry_delay),
            (0, Duration::from_secs(10))
        );
        assert_eq!(
            (b.trigger_rule, b.pool.as_deref(), b.pool_slots),
            (TriggerRule::AllSuccess, Some("spark"), 1)
        );
        // Written back, default_args and tasks keep what each set.
        let again = parse_dag(&dag_to_yaml(&dag).unwrap(), None).unwrap();
        assert_eq!(again.default_args, dag.default_args);
        assert_eq!(again.tasks[1].settings, dag.tasks[1].settings);
        // The same keys, the same errors, located.
        let err = parse_dag(
            "dag_id: s\ndefault_args: { pool_slot: 2 }\ntasks:\n  - { id: a, kind: empty }\n",
            Some(Path::new("s.yaml")),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("s.yaml:2:") && err.contains("pool_slot"),
            "{err}"
        );
        let err = parse_dag(
            "dag_id: s\ndefault_args: { pool_slots: 0 }\ntasks:\n  - { id: a, kind: empty }\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("pool_slots") && err.contains("at least 1"),
            "{err}"
        );
    }
}
