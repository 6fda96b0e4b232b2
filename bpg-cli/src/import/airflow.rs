//! Airflow DAG files (`.py`) as pipelines, read statically with a Python parser: the file is
//! never executed and no Python is needed.
//!
//! **Read:** `with DAG(...)`, `x = DAG(...)` (tasks given `dag=x`) and `@dag` functions;
//! `default_args` dicts; `schedule`/`schedule_interval` (cron, presets, `None`, `timedelta`),
//! `start_date`, `end_date`, `catchup`, `params` (`Param(default)` too), `max_active_runs`,
//! `max_active_tasks`; per task `retries`, `retry_delay`, `retry_exponential_backoff`,
//! `max_retry_delay`, `execution_timeout`, `trigger_rule`, `pool`, `pool_slots`,
//! `depends_on_past`; dependencies by `>>`, `<<`, lists, `chain()`, `cross_downstream()`,
//! `set_upstream`/`set_downstream`; module-level constants, string concatenation and f-strings
//! of constants. Jinja (`{{ ds }}`) stays a template: bpg renders the same variables.
//!
//! **Operators:** `SparkKubernetesOperator` (`application_file`, `template_spec`, `namespace`,
//! `kubernetes_conn_id`) with a following `SparkKubernetesSensor` folded into it (a bpg Spark
//! task waits for its application); `EmrContainerOperator` (`job_driver`,
//! `configuration_overrides`, `release_label`, `execution_role_arn`, `virtual_cluster_id`,
//! `aws_conn_id`) as a BPG request on an `emr://` connection, `EmrContainerSensor` folded the same
//! way; the seed's `BPGOperator` (`application_file`, `application_content`, `connection_id`);
//! `EmptyOperator`/`DummyOperator`; `BashOperator` as a command task.
//!
//! **Everything else** (other operators, loops, calls that cannot be evaluated) is reported with
//! `file:line:col` and what to do, and the rest of the DAG converts: an operator bpg cannot run
//! becomes an empty task of the same id, so the graph and its trigger rules stay as they were.
//! A DAG with a located error (no tasks, a cycle, an unknown task in a dependency) is not
//! converted; a Python syntax error converts nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bpg_core::Diagnostic;
use bpg_pipeline::{Dag, Task, TaskKind, TaskSettings, TriggerRule};
use chrono::{DateTime, TimeZone, Utc};
use rustpython_parser::Parse;
use rustpython_parser::ast::{self, Constant, Expr, Operator, Ranged, Stmt};
use rustpython_parser::text_size::TextSize;
use serde_json::{Value, json};

use super::{
    ConnectionSkeleton, Conversion, absolute, cron_for_interval, inline_spark_task, sanitize_id,
};

/// Converts the DAGs of one Airflow DAG file.
pub fn convert(text: &str, file: &Path) -> Conversion {
    let mut reader = Reader::new(text, file);
    match ast::Suite::parse(text, &file.display().to_string()) {
        Ok(body) => reader.module(&body),
        Err(e) => {
            let message = format!("Python syntax error: {}", e.error);
            reader.error(e.offset, message);
            return reader.conversion;
        }
    }
    reader.finish()
}

/// A value a DAG file computes, as far as it can be known without running it.
#[derive(Clone, Debug)]
enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    Duration(Duration),
    Date(DateTime<Utc>),
    /// A task: (DAG index, task index).
    Task(usize, usize),
    /// A DAG: its index.
    Dag(usize),
}

impl Py {
    fn describe(&self) -> &'static str {
        match self {
            Py::None => "None",
            Py::Bool(_) => "a boolean",
            Py::Int(_) => "an integer",
            Py::Float(_) => "a number",
            Py::Str(_) => "a string",
            Py::List(_) => "a list",
            Py::Dict(_) => "a dict",
            Py::Duration(_) => "a timedelta",
            Py::Date(_) => "a datetime",
            Py::Task(..) => "a task",
            Py::Dag(_) => "a DAG",
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Py::None => Value::Null,
            Py::Bool(b) => json!(b),
            Py::Int(i) => json!(i),
            Py::Float(f) => json!(f),
            Py::Str(s) => json!(s),
            Py::List(items) => Value::Array(items.iter().map(Py::to_json).collect()),
            Py::Dict(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
            Py::Duration(d) => json!(humantime::format_duration(*d).to_string()),
            Py::Date(d) => json!(d.to_rfc3339()),
            Py::Task(..) | Py::Dag(_) => Value::Null,
        }
    }

    fn key_text(&self) -> String {
        match self {
            Py::Str(s) => s.clone(),
            other => match other.to_json() {
                Value::String(s) => s,
                v => v.to_string(),
            },
        }
    }
}

/// Why a value cannot be known, and where.
#[derive(Clone, Debug)]
struct Unknown {
    at: TextSize,
    message: String,
    /// A name Python itself would not find: an error, not a gap.
    name_error: bool,
}

impl Unknown {
    fn new(at: TextSize, message: impl Into<String>) -> Self {
        Unknown {
            at,
            message: message.into(),
            name_error: false,
        }
    }
}

type Eval = Result<Py, Unknown>;

#[derive(Clone, Debug)]
enum Binding {
    Value(Py),
    /// Assigned, but not to anything this reader can evaluate.
    Unknown(Unknown),
    /// A `@dag` function (its DAG already read).
    DagFunction,
    /// A TaskFlow `@task` function: calling it makes a task of this id.
    TaskFunction(String),
}

/// What a sensor waits for.
#[derive(Clone, Debug)]
struct Sensor {
    class: &'static str,
    /// The task id named by `xcom_pull(task_ids=...)` in the sensor's arguments, if any.
    target: Option<String>,
}

struct TaskDraft {
    task: Task,
    at: TextSize,
    sensor: Option<Sensor>,
}

struct DagDraft {
    at: TextSize,
    dag_id: String,
    description: Option<String>,
    schedule: Option<String>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    catchup: Option<bool>,
    max_active_runs: Option<usize>,
    max_active_tasks: Option<usize>,
    params: serde_json::Map<String, Value>,
    default_args: TaskSettings,
    tasks: Vec<TaskDraft>,
    /// (upstream, downstream) task indexes.
    edges: Vec<(usize, usize)>,
    pools: BTreeSet<String>,
    /// A located error was reported: the DAG is not converted.
    failed: bool,
}

/// Keyword arguments every operator takes that change nothing about how its task runs.
const COSMETIC_TASK_KWARGS: &[&str] = &[
    "owner",
    "email",
    "email_on_failure",
    "email_on_retry",
    "doc",
    "doc_md",
    "doc_json",
    "doc_yaml",
    "doc_rst",
    "queue",
    "priority_weight",
    "weight_rule",
    "do_xcom_push",
    "multiple_outputs",
    "task_display_name",
];

/// Keyword arguments of `DAG(...)`/`@dag` that change nothing about how runs go.
const COSMETIC_DAG_KWARGS: &[&str] = &[
    "tags",
    "doc_md",
    "default_view",
    "orientation",
    "owner_links",
    "is_paused_upon_creation",
    "access_control",
    "dag_display_name",
];

struct Reader<'a> {
    text: &'a str,
    file: &'a Path,
    dir: PathBuf,
    /// Local name -> imported name (last dotted part).
    imports: HashMap<String, String>,
    scopes: Vec<HashMap<String, Binding>>,
    dags: Vec<DagDraft>,
    /// The DAG `with DAG(...)` or a `@dag` function is building.
    current: Vec<usize>,
    conversion: Conversion,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        let dir = absolute(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Reader {
            text,
            file,
            dir,
            imports: HashMap::new(),
            scopes: vec![HashMap::new()],
            dags: Vec::new(),
            current: Vec::new(),
            conversion: Conversion::default(),
        }
    }

    // ---- reporting ---------------------------------------------------------------------------

    fn place(&self, at: TextSize) -> (usize, usize) {
        let offset = usize::from(at).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    fn diagnostic(&self, at: TextSize, message: String, error: bool) -> Diagnostic {
        let (line, column) = self.place(at);
        let d = if error {
            Diagnostic::error("", message)
        } else {
            Diagnostic::warning("", message)
        };
        d.with_file(self.file).at(line, column)
    }

    /// Something not converted; the rest is.
    fn warn(&mut self, at: TextSize, message: impl Into<String>) {
        let d = self.diagnostic(at, message.into(), false);
        self.conversion.notes.push(d);
    }

    fn error(&mut self, at: TextSize, message: impl Into<String>) {
        let d = self.diagnostic(at, message.into(), true);
        self.conversion.notes.push(d);
    }

    /// An error that stops the current DAG (or the file's DAGs when outside one).
    fn dag_error(&mut self, at: TextSize, message: impl Into<String>) {
        self.error(at, message);
        match self.current.last() {
            Some(&d) => self.dags[d].failed = true,
            None => self.dags.iter_mut().for_each(|d| d.failed = true),
        }
    }

    fn unknown(&mut self, u: Unknown, what: &str) {
        if u.name_error {
            self.dag_error(u.at, format!("{what}: {}", u.message));
        } else {
            self.warn(u.at, format!("{what} is not converted: {}", u.message));
        }
    }

    // ---- names -------------------------------------------------------------------------------

    fn bind(&mut self, name: &str, binding: Binding) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_owned(), binding);
        }
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    /// The name a call's callee is known by: the imported name, else as written (last part).
    fn callee(&self, func: &Expr) -> Option<String> {
        match func {
            Expr::Name(n) => Some(
                self.imports
                    .get(n.id.as_str())
                    .cloned()
                    .unwrap_or_else(|| n.id.to_string()),
            ),
            Expr::Attribute(a) => Some(a.attr.to_string()),
            _ => None,
        }
    }

    // ---- statements --------------------------------------------------------------------------

    fn module(&mut self, body: &[Stmt]) {
        self.statements(body);
    }

    fn statements(&mut self, body: &[Stmt]) {
        for stmt in body {
            self.statement(stmt);
        }
    }

    fn statement(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::Import(i) => {
                for alias in &i.names {
                    let full = alias.name.as_str();
                    let local = match &alias.asname {
                        Some(a) => a.to_string(),
                        None => full.split('.').next().unwrap_or(full).to_owned(),
                    };
                    let last = full.rsplit('.').next().unwrap_or(full).to_owned();
                    self.imports.insert(local, last);
                }
            }
            Stmt::ImportFrom(i) => {
                for alias in &i.names {
                    let local = alias.asname.as_ref().unwrap_or(&alias.name).to_string();
                    self.imports.insert(local, alias.name.to_string());
                }
            }
            Stmt::Assign(a) => self.assign(&a.targets, &a.value, stmt.start()),
            Stmt::AnnAssign(a) => {
                if let Some(value) = &a.value {
                    self.assign(std::slice::from_ref(&a.target), value, stmt.start());
                }
            }
            Stmt::Expr(e) => {
                if let Expr::Constant(_) = e.value.as_ref() {
                    return; // a docstring
                }
                if let Err(u) = self.value(&e.value) {
                    let what = match e.value.as_ref() {
                        Expr::BinOp(b) if matches!(b.op, Operator::RShift | Operator::LShift) => {
                            "a dependency"
                        }
                        Expr::Call(_) => "this call",
                        _ => "this statement",
                    };
                    self.unknown(u, what);
                }
            }
            Stmt::With(w) => self.with(w),
            Stmt::FunctionDef(f) => self.function(f),
            Stmt::Pass(_) => {}
            other => {
                let what = statement_kind(other);
                if self.current.is_empty() {
                    // Module-level code outside any DAG does not shape one.
                    if matches!(other, Stmt::ClassDef(_) | Stmt::AsyncFunctionDef(_)) {
                        return;
                    }
                }
                self.warn(
                    other.start(),
                    format!(
                        "{what} is not converted: tasks and dependencies made in it are missing; write them out as plain statements"
                    ),
                );
            }
        }
    }

    fn assign(&mut self, targets: &[Expr], value: &Expr, at: TextSize) {
        let result = self.value(value);
        for target in targets {
            match target {
                Expr::Name(n) => {
                    let binding = match &result {
                        Ok(v) => Binding::Value(v.clone()),
                        Err(u) => Binding::Unknown(u.clone()),
                    };
                    self.bind(n.id.as_str(), binding);
                }
                _ => {
                    if !self.current.is_empty() {
                        self.warn(
                            at,
                            "an assignment to something other than a name is not converted",
                        );
                    }
                }
            }
        }
        if let Err(u) = result
            && (!self.current.is_empty() || u.name_error || self.makes_task(value))
        {
            self.unknown(u, "this assignment");
        }
    }

    /// Whether an expression calls an operator (its failure to convert is worth reporting).
    fn makes_task(&self, e: &Expr) -> bool {
        match e {
            Expr::Call(c) => self
                .callee(&c.func)
                .is_some_and(|n| n.ends_with("Operator") || n.ends_with("Sensor") || n == "DAG"),
            _ => false,
        }
    }

    fn with(&mut self, w: &ast::StmtWith) {
        let mut pushed = 0;
        for item in &w.items {
            let is_dag = matches!(&item.context_expr, Expr::Call(c) if self.callee(&c.func).as_deref() == Some("DAG"));
            if is_dag {
                match self.value(&item.context_expr) {
                    Ok(Py::Dag(d)) => {
                        if let Some(Expr::Name(n)) = item.optional_vars.as_deref() {
                            self.bind(n.id.as_str(), Binding::Value(Py::Dag(d)));
                        }
                        self.current.push(d);
                        pushed += 1;
                    }
                    Ok(_) => {}
                    Err(u) => self.unknown(u, "this DAG"),
                }
            } else {
                let what = match &item.context_expr {
                    Expr::Call(c) => self.callee(&c.func).unwrap_or_else(|| "this".into()),
                    _ => "this".into(),
                };
                self.warn(
                    item.context_expr.start(),
                    format!(
                        "`with {what}(...)` is not converted (a TaskGroup's tasks are converted without its prefix on their ids); the statements in it are read"
                    ),
                );
            }
        }
        self.statements(&w.body);
        for _ in 0..pushed {
            self.current.pop();
        }
    }

    fn function(&mut self, f: &ast::StmtFunctionDef) {
        for decorator in &f.decorator_list {
            let (func, call) = match decorator {
                Expr::Call(c) => (c.func.as_ref(), Some(c)),
                other => (other, None),
            };
            let name = self.callee(func).unwrap_or_default();
            let dotted_task = matches!(func, Expr::Attribute(a) if matches!(a.value.as_ref(), Expr::Name(n) if self.imports.get(n.id.as_str()).map(String::as_str) == Some("task")));
            if name == "dag" {
                let d = self.new_dag(f.name.as_str(), decorator.start(), call, None);
                self.bind(f.name.as_str(), Binding::DagFunction);
                self.current.push(d);
                self.scopes.push(HashMap::new());
                self.statements(&f.body);
                self.scopes.pop();
                self.current.pop();
                return;
            }
            if name == "task" || dotted_task {
                let task_id = call
                    .and_then(|c| {
                        c.keywords
                            .iter()
                            .find(|k| k.arg.as_deref() == Some("task_id"))
                    })
                    .and_then(|k| match &k.value {
                        Expr::Constant(c) => match &c.value {
                            Constant::Str(s) => Some(s.clone()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .unwrap_or_else(|| f.name.to_string());
                self.bind(f.name.as_str(), Binding::TaskFunction(task_id));
                return;
            }
        }
        let message = format!(
            "`{}` is a Python function; calls to it cannot be evaluated",
            f.name
        );
        self.bind(
            f.name.as_str(),
            Binding::Unknown(Unknown::new(f.start(), message)),
        );
    }

    // ---- expressions -------------------------------------------------------------------------

    fn value(&mut self, e: &Expr) -> Eval {
        match e {
            Expr::Constant(c) => constant(&c.value, e.start()),
            Expr::JoinedStr(j) => {
                let mut out = String::new();
                for part in &j.values {
                    match part {
                        Expr::Constant(c) => match &c.value {
                            Constant::Str(s) => out.push_str(s),
                            _ => {
                                return Err(Unknown::new(
                                    part.start(),
                                    "an f-string part that is not text",
                                ));
                            }
                        },
                        Expr::FormattedValue(f) => {
                            if f.format_spec.is_some() {
                                return Err(Unknown::new(part.start(), "an f-string format spec"));
                            }
                            let v = self.value(&f.value)?;
                            out.push_str(&text_of(&v, part.start())?);
                        }
                        other => return Err(Unknown::new(other.start(), "an f-string part")),
                    }
                }
                Ok(Py::Str(out))
            }
            Expr::Name(n) => match self.lookup(n.id.as_str()) {
                Some(Binding::Value(v)) => Ok(v.clone()),
                Some(Binding::Unknown(u)) => {
                    let (line, _) = self.place(u.at);
                    Err(Unknown {
                        at: e.start(),
                        message: format!(
                            "`{}` (line {line}) cannot be evaluated: {}",
                            n.id, u.message
                        ),
                        name_error: false,
                    })
                }
                Some(Binding::DagFunction) | Some(Binding::TaskFunction(_)) => {
                    Err(Unknown::new(e.start(), format!("`{}` is a function", n.id)))
                }
                None if n.id.as_str() == "None" => Ok(Py::None),
                None if self.imports.contains_key(n.id.as_str()) => Err(Unknown::new(
                    e.start(),
                    format!("`{}` is imported, not a value this reader knows", n.id),
                )),
                None => Err(Unknown {
                    at: e.start(),
                    message: format!(
                        "unknown name `{}`: no task or constant of that name is defined before this line",
                        n.id
                    ),
                    name_error: true,
                }),
            },
            Expr::List(l) => self.values(&l.elts).map(Py::List),
            Expr::Tuple(t) => self.values(&t.elts).map(Py::List),
            Expr::Dict(d) => {
                let mut entries = Vec::new();
                for (k, v) in d.keys.iter().zip(&d.values) {
                    let Some(k) = k else {
                        return Err(Unknown::new(v.start(), "`**` in a dict"));
                    };
                    entries.push((self.value(k)?, self.value(v)?));
                }
                Ok(Py::Dict(entries))
            }
            Expr::UnaryOp(u) if matches!(u.op, ast::UnaryOp::USub) => {
                match self.value(&u.operand)? {
                    Py::Int(i) => i
                        .checked_neg()
                        .map(Py::Int)
                        .ok_or_else(|| Unknown::new(e.start(), "an integer too large")),
                    Py::Float(f) => Ok(Py::Float(-f)),
                    other => Err(Unknown::new(
                        e.start(),
                        format!("`-` of {}", other.describe()),
                    )),
                }
            }
            Expr::BinOp(b) => self.binop(b),
            Expr::Call(c) => self.call(c),
            Expr::Subscript(sub) => {
                let container = self.value(&sub.value)?;
                let index = self.value(&sub.slice)?;
                let found = match (&container, &index) {
                    (Py::Dict(entries), key) => entries
                        .iter()
                        .find(|(k, _)| k.key_text() == key.key_text())
                        .map(|(_, v)| v.clone()),
                    (Py::List(items), Py::Int(i)) => {
                        usize::try_from(*i).ok().and_then(|i| items.get(i).cloned())
                    }
                    _ => None,
                };
                found.ok_or_else(|| {
                    Unknown::new(
                        e.start(),
                        format!("{} has no item {}", container.describe(), index.key_text()),
                    )
                })
            }
            Expr::Attribute(a) => {
                // `TriggerRule.ALL_DONE` and the like: enum members are their lower-case names.
                if let Expr::Name(n) = a.value.as_ref()
                    && self.imports.get(n.id.as_str()).map(String::as_str) == Some("TriggerRule")
                {
                    return Ok(Py::Str(a.attr.to_lowercase()));
                }
                Err(Unknown::new(
                    e.start(),
                    format!("the attribute `.{}`", a.attr),
                ))
            }
            other => Err(Unknown::new(
                other.start(),
                format!(
                    "{} cannot be evaluated without running the file",
                    expression_kind(other)
                ),
            )),
        }
    }

    fn values(&mut self, items: &[Expr]) -> Result<Vec<Py>, Unknown> {
        items.iter().map(|i| self.value(i)).collect()
    }

    fn binop(&mut self, b: &ast::ExprBinOp) -> Eval {
        let left = self.value(&b.left)?;
        let right = self.value(&b.right)?;
        match (b.op, &left, &right) {
            (Operator::RShift, _, _) => {
                self.depend(&left, &right, b.range.start())?;
                Ok(right)
            }
            (Operator::LShift, _, _) => {
                self.depend(&right, &left, b.range.start())?;
                Ok(right)
            }
            (Operator::Add, Py::Str(l), Py::Str(r)) => Ok(Py::Str(format!("{l}{r}"))),
            (Operator::Add, Py::Int(l), Py::Int(r)) if l.checked_add(*r).is_some() => {
                Ok(Py::Int(l + r))
            }
            (Operator::Mult, Py::Int(l), Py::Int(r)) if l.checked_mul(*r).is_some() => {
                Ok(Py::Int(l * r))
            }
            (Operator::Add, Py::List(l), Py::List(r)) => {
                Ok(Py::List(l.iter().chain(r).cloned().collect()))
            }
            (Operator::Add | Operator::Sub, Py::Date(d), Py::Duration(t)) => {
                let t = chrono::Duration::from_std(*t).ok();
                let date = match b.op {
                    Operator::Add => t.and_then(|t| d.checked_add_signed(t)),
                    _ => t.and_then(|t| d.checked_sub_signed(t)),
                };
                date.map(Py::Date)
                    .ok_or_else(|| Unknown::new(b.range.start(), "a date out of range"))
            }
            (op, l, r) => Err(Unknown::new(
                b.range.start(),
                format!("`{op:?}` of {} and {}", l.describe(), r.describe()),
            )),
        }
    }

    /// Tasks of a value that must be tasks (a task or a list of them).
    fn tasks_of(v: &Py, at: TextSize) -> Result<Vec<(usize, usize)>, Unknown> {
        match v {
            Py::Task(d, t) => Ok(vec![(*d, *t)]),
            Py::List(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(Self::tasks_of(i, at)?);
                }
                Ok(out)
            }
            other => Err(Unknown::new(
                at,
                format!("expected tasks in a dependency, found {}", other.describe()),
            )),
        }
    }

    /// Every task of `upstream` before every task of `downstream`.
    fn depend(&mut self, upstream: &Py, downstream: &Py, at: TextSize) -> Result<(), Unknown> {
        let ups = Self::tasks_of(upstream, at)?;
        let downs = Self::tasks_of(downstream, at)?;
        for &(du, u) in &ups {
            for &(dd, d) in &downs {
                if du != dd {
                    return Err(Unknown::new(at, "a dependency between tasks of two DAGs"));
                }
                self.dags[du].edges.push((u, d));
            }
        }
        Ok(())
    }

    fn call(&mut self, c: &ast::ExprCall) -> Eval {
        let at = c.range.start();
        // Methods of tasks.
        if let Expr::Attribute(a) = c.func.as_ref()
            && matches!(a.attr.as_str(), "set_upstream" | "set_downstream")
        {
            let task = self.value(&a.value)?;
            let other = match c.args.first() {
                Some(arg) => self.value(arg)?,
                None => {
                    return Err(Unknown::new(
                        at,
                        format!("`{}` without an argument", a.attr),
                    ));
                }
            };
            if a.attr.as_str() == "set_downstream" {
                self.depend(&task, &other, at)?;
            } else {
                self.depend(&other, &task, at)?;
            }
            return Ok(Py::None);
        }
        if let Expr::Name(n) = c.func.as_ref() {
            match self.lookup(n.id.as_str()).cloned() {
                Some(Binding::DagFunction) => return Ok(Py::None),
                Some(Binding::TaskFunction(task_id)) => {
                    let d = self.dag_for(None, at)?;
                    let t = self.add_task(d, Task::empty(sanitize_id(&task_id)), at, None);
                    self.warn(
                        at,
                        format!("TaskFlow task `{task_id}` runs Python code and is not converted: it is an empty task here; make it a command task that runs the code"),
                    );
                    return Ok(Py::Task(d, t));
                }
                _ => {}
            }
        }
        let Some(name) = self.callee(&c.func) else {
            return Err(Unknown::new(at, "a call of a computed function"));
        };
        match name.as_str() {
            "DAG" => {
                let id = match c.args.first() {
                    Some(arg) => Some(text_of(&self.value(arg)?, arg.start())?),
                    None => None,
                };
                Ok(Py::Dag(self.new_dag("", at, Some(c), id)))
            }
            "timedelta" => self.timedelta(c),
            "datetime" => self.datetime(c),
            "Param" => match (c.args.first(), keyword(c, "default")) {
                (Some(v), _) | (None, Some(v)) => self.value(v),
                (None, None) => Ok(Py::None),
            },
            "chain" => {
                let items = self.values(&c.args)?;
                for pair in items.windows(2) {
                    match (&pair[0], &pair[1]) {
                        (Py::List(a), Py::List(b)) => {
                            if a.len() != b.len() {
                                return Err(Unknown::new(
                                    at,
                                    format!(
                                        "`chain()` of lists of different lengths ({} and {}), which Airflow refuses",
                                        a.len(),
                                        b.len()
                                    ),
                                ));
                            }
                            for (x, y) in a.iter().zip(b) {
                                self.depend(x, y, at)?;
                            }
                        }
                        (a, b) => self.depend(a, b, at)?,
                    }
                }
                Ok(Py::None)
            }
            "cross_downstream" => {
                let items = self.values(&c.args)?;
                if let [from, to] = items.as_slice() {
                    self.depend(from, to, at)?;
                    Ok(Py::None)
                } else {
                    Err(Unknown::new(at, "`cross_downstream()` takes two lists"))
                }
            }
            other
                if other.ends_with("Operator")
                    || other.ends_with("Sensor")
                    || other == "BPGOperator" =>
            {
                self.operator(other, c)
            }
            other => Err(Unknown::new(
                at,
                format!(
                    "a call to `{other}()`, which cannot be evaluated without running the file"
                ),
            )),
        }
    }

    fn timedelta(&mut self, c: &ast::ExprCall) -> Eval {
        const POSITIONAL: &[&str] = &[
            "days",
            "seconds",
            "microseconds",
            "milliseconds",
            "minutes",
            "hours",
            "weeks",
        ];
        let mut seconds = 0f64;
        let mut add = |unit: &str, v: f64| {
            seconds += v * match unit {
                "weeks" => 7.0 * 86400.0,
                "days" => 86400.0,
                "hours" => 3600.0,
                "minutes" => 60.0,
                "seconds" => 1.0,
                "milliseconds" => 0.001,
                _ => 0.000_001,
            };
        };
        for (i, arg) in c.args.iter().enumerate() {
            let v = number(&self.value(arg)?, arg.start())?;
            add(POSITIONAL.get(i).copied().unwrap_or("microseconds"), v);
        }
        for k in &c.keywords {
            let unit = k.arg.as_deref().unwrap_or_default();
            if !POSITIONAL.contains(&unit) {
                return Err(Unknown::new(
                    k.range.start(),
                    format!("`timedelta({unit}=...)`"),
                ));
            }
            let v = number(&self.value(&k.value)?, k.value.start())?;
            add(unit, v);
        }
        Duration::try_from_secs_f64(seconds)
            .map(Py::Duration)
            .map_err(|_| Unknown::new(c.range.start(), "a negative or too long timedelta"))
    }

    fn datetime(&mut self, c: &ast::ExprCall) -> Eval {
        let at = c.range.start();
        let mut parts = [0i64, 1, 1, 0, 0, 0];
        const NAMES: &[&str] = &["year", "month", "day", "hour", "minute", "second"];
        for (i, arg) in c.args.iter().enumerate().take(6) {
            parts[i] = integer(&self.value(arg)?, arg.start())?;
        }
        for k in &c.keywords {
            let name = k.arg.as_deref().unwrap_or_default();
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                parts[i] = integer(&self.value(&k.value)?, k.value.start())?;
            } else if matches!(name, "tz" | "tzinfo") {
                let tz = self.value(&k.value);
                if !matches!(&tz, Ok(Py::Str(s)) if s.eq_ignore_ascii_case("utc")) {
                    self.warn(
                        k.range.start(),
                        "a time zone other than UTC is not converted: the date is read as UTC",
                    );
                }
            } else {
                return Err(Unknown::new(
                    k.range.start(),
                    format!("`datetime({name}=...)`"),
                ));
            }
        }
        if c.args.len() < 3 && !c.keywords.iter().any(|k| k.arg.as_deref() == Some("day")) {
            return Err(Unknown::new(at, "a datetime without year, month and day"));
        }
        let [y, mo, d, h, mi, s] = parts;
        let date = Utc
            .with_ymd_and_hms(
                i32::try_from(y).unwrap_or(0),
                u32::try_from(mo).unwrap_or(0),
                u32::try_from(d).unwrap_or(0),
                u32::try_from(h).unwrap_or(0),
                u32::try_from(mi).unwrap_or(0),
                u32::try_from(s).unwrap_or(0),
            )
            .single();
        date.map(Py::Date)
            .ok_or_else(|| Unknown::new(at, format!("{y}-{mo}-{d} {h}:{mi}:{s} is not a date")))
    }

    // ---- DAGs --------------------------------------------------------------------------------

    /// Reads `DAG(...)`/`@dag(...)` arguments into a new DAG draft.
    fn new_dag(
        &mut self,
        default_id: &str,
        at: TextSize,
        call: Option<&ast::ExprCall>,
        id: Option<String>,
    ) -> usize {
        let mut draft = DagDraft {
            at,
            dag_id: id.unwrap_or_else(|| default_id.to_owned()),
            description: None,
            schedule: None,
            start_date: None,
            end_date: None,
            catchup: None,
            max_active_runs: None,
            max_active_tasks: None,
            params: serde_json::Map::new(),
            default_args: TaskSettings::default(),
            tasks: Vec::new(),
            edges: Vec::new(),
            pools: BTreeSet::new(),
            failed: false,
        };
        let index = self.dags.len();
        let keywords: Vec<&ast::Keyword> = call
            .map(|c| c.keywords.iter().collect())
            .unwrap_or_default();
        for k in keywords {
            let Some(name) = k.arg.as_deref() else {
                self.warn(k.range.start(), "`**kwargs` of a DAG are not converted");
                continue;
            };
            let kat = k.value.start();
            let value = match self.value(&k.value) {
                Ok(v) => v,
                Err(u) => {
                    self.unknown(u, &format!("`{name}` of the DAG"));
                    continue;
                }
            };
            match name {
                "dag_id" => match value {
                    Py::Str(s) => draft.dag_id = s,
                    other => self.warn(
                        kat,
                        format!("`dag_id` is {}, expected a string", other.describe()),
                    ),
                },
                "description" => draft.description = Some(text_of(&value, kat).unwrap_or_default()),
                "schedule" | "schedule_interval" => draft.schedule = self.schedule(&value, kat),
                "start_date" => draft.start_date = self.date(&value, kat, name),
                "end_date" => draft.end_date = self.date(&value, kat, name),
                "catchup" => draft.catchup = self.boolean(&value, kat, name),
                "max_active_runs" => draft.max_active_runs = self.count(&value, kat, name),
                "max_active_tasks" | "concurrency" => {
                    draft.max_active_tasks = self.count(&value, kat, name)
                }
                "params" => match value.to_json() {
                    Value::Object(map) => draft.params = map,
                    _ => self.warn(
                        kat,
                        format!("`params` is {}, expected a dict", value.describe()),
                    ),
                },
                "default_args" => match value {
                    Py::Dict(entries) => self.default_args(&mut draft, &entries, kat),
                    other => self.warn(
                        kat,
                        format!("`default_args` is {}, expected a dict", other.describe()),
                    ),
                },
                other if COSMETIC_DAG_KWARGS.contains(&other) => {}
                other => self.warn(
                    k.range.start(),
                    format!(
                        "`{other}` of the DAG is not converted: bpg pipelines have no such setting"
                    ),
                ),
            }
        }
        if draft.dag_id.is_empty() {
            self.error(at, "a DAG without a dag_id");
            draft.failed = true;
        }
        self.dags.push(draft);
        index
    }

    fn default_args(&mut self, draft: &mut DagDraft, entries: &[(Py, Py)], at: TextSize) {
        for (key, value) in entries {
            let key = key.key_text();
            match key.as_str() {
                k if COMMON_TASK_KWARGS.contains(&k) => {
                    self.task_setting(&mut draft.default_args, k, value, at, &mut draft.pools)
                }
                "start_date" => {
                    if draft.start_date.is_none() {
                        draft.start_date = self.date(value, at, &key);
                    }
                }
                "end_date" => {
                    if draft.end_date.is_none() {
                        draft.end_date = self.date(value, at, &key);
                    }
                }
                k if COSMETIC_TASK_KWARGS.contains(&k) => {}
                other => self.warn(
                    at,
                    format!(
                        "default_args `{other}` is not converted: bpg tasks have no such setting"
                    ),
                ),
            }
        }
    }

    fn schedule(&mut self, value: &Py, at: TextSize) -> Option<String> {
        match value {
            Py::None => None,
            Py::Str(s) => {
                match s.parse::<bpg_pipeline::schedule::Schedule>() {
                    Ok(_) => Some(s.clone()),
                    Err(e) => {
                        self.warn(at, format!("schedule {s:?} is not converted ({e}); the pipeline has no schedule"));
                        None
                    }
                }
            }
            Py::Duration(d) => match cron_for_interval(d.as_secs()) {
                Some(cron) => {
                    self.warn(at, format!("schedule timedelta({}) is written as {cron:?}: Airflow counts a timedelta from start_date, cron from the clock", humantime::format_duration(*d)));
                    Some(cron)
                }
                None => {
                    self.warn(at, format!("schedule timedelta({}) has no cron form; the pipeline has no schedule: give it one", humantime::format_duration(*d)));
                    None
                }
            },
            other => {
                self.warn(at, format!("a schedule of {} (datasets, timetables) is not converted; the pipeline has no schedule", other.describe()));
                None
            }
        }
    }

    fn date(&mut self, value: &Py, at: TextSize, what: &str) -> Option<DateTime<Utc>> {
        match value {
            Py::Date(d) => Some(*d),
            Py::None => None,
            Py::Str(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(d) => Some(d.with_timezone(&Utc)),
                Err(_) => {
                    self.warn(
                        at,
                        format!("`{what}` {s:?} is not an RFC 3339 date; not converted"),
                    );
                    None
                }
            },
            other => {
                self.warn(
                    at,
                    format!(
                        "`{what}` is {}, expected a datetime; not converted",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, value: &Py, at: TextSize, what: &str) -> Option<bool> {
        match value {
            Py::Bool(b) => Some(*b),
            other => {
                self.warn(
                    at,
                    format!(
                        "`{what}` is {}, expected True or False; not converted",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn count(&mut self, value: &Py, at: TextSize, what: &str) -> Option<usize> {
        match value {
            Py::Int(i) if *i >= 0 => usize::try_from(*i).ok(),
            other => {
                self.warn(
                    at,
                    format!(
                        "`{what}` is {}, expected a non-negative integer; not converted",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, value: &Py, at: TextSize, what: &str) -> Option<Duration> {
        match value {
            Py::Duration(d) => Some(*d),
            // Airflow reads a number as seconds.
            Py::Int(i) if *i >= 0 => Some(Duration::from_secs(i.unsigned_abs())),
            Py::Float(f) if Duration::try_from_secs_f64(*f).is_ok() => {
                Duration::try_from_secs_f64(*f).ok()
            }
            other => {
                self.warn(
                    at,
                    format!(
                        "`{what}` is {}, expected a timedelta or seconds; not converted",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn trigger_rule(&mut self, value: &Py, at: TextSize) -> Option<TriggerRule> {
        let text = match value {
            Py::Str(s) => s.clone(),
            other => {
                self.warn(
                    at,
                    format!(
                        "`trigger_rule` is {}, expected a string; not converted",
                        other.describe()
                    ),
                );
                return None;
            }
        };
        match serde_json::from_value::<TriggerRule>(Value::String(text.clone())) {
            Ok(rule) => Some(rule),
            Err(_) => {
                self.warn(at, format!("trigger rule {text:?} is not converted: bpg has no such rule; the task uses all_success"));
                None
            }
        }
    }

    /// The DAG a task goes to: its `dag=` argument, else the enclosing `with DAG`/`@dag`.
    fn dag_for(&self, explicit: Option<&Py>, at: TextSize) -> Result<usize, Unknown> {
        match explicit {
            Some(Py::Dag(d)) => Ok(*d),
            Some(other) => Err(Unknown::new(
                at,
                format!("`dag=` is {}, expected a DAG", other.describe()),
            )),
            None => self.current.last().copied().ok_or_else(|| {
                Unknown::new(
                    at,
                    "a task outside any DAG (no `with DAG(...)`, `@dag` or `dag=`)",
                )
            }),
        }
    }

    fn add_task(&mut self, d: usize, task: Task, at: TextSize, sensor: Option<Sensor>) -> usize {
        let dag = &mut self.dags[d];
        dag.tasks.push(TaskDraft { task, at, sensor });
        dag.tasks.len() - 1
    }

    // ---- operators ---------------------------------------------------------------------------

    fn operator(&mut self, class: &str, c: &ast::ExprCall) -> Eval {
        let at = c.range.start();
        // Every keyword evaluated once; those that cannot be are reported by name.
        let mut kwargs: BTreeMap<String, (Py, TextSize)> = BTreeMap::new();
        let mut failed: Vec<(String, Unknown)> = Vec::new();
        for k in &c.keywords {
            let Some(name) = k.arg.as_deref() else {
                failed.push((
                    "**kwargs".into(),
                    Unknown::new(k.range.start(), "`**` arguments"),
                ));
                continue;
            };
            match self.value(&k.value) {
                Ok(v) => {
                    kwargs.insert(name.to_owned(), (v, k.value.start()));
                }
                Err(u) => failed.push((name.to_owned(), u)),
            }
        }
        let task_id = match kwargs.remove("task_id") {
            Some((Py::Str(s), _)) => s,
            Some((other, at)) => {
                return Err(Unknown::new(
                    at,
                    format!("`task_id` is {}, expected a string", other.describe()),
                ));
            }
            None => {
                if let Some((_, u)) = failed.iter().find(|(n, _)| n == "task_id") {
                    return Err(u.clone());
                }
                return Err(Unknown::new(at, format!("`{class}` without a task_id")));
            }
        };
        let d = self.dag_for(kwargs.remove("dag").map(|(v, _)| v).as_ref(), at)?;
        if !SUPPORTED_OPERATORS.contains(&class) {
            // The operator becomes an empty task: only the settings an empty task has matter.
            failed.retain(|(name, _)| COMMON_TASK_KWARGS.contains(&name.as_str()));
        }
        for (name, u) in failed {
            if u.name_error {
                self.dags[d].failed = true;
                self.error(u.at, format!("`{name}` of task `{task_id}`: {}", u.message));
            } else {
                self.warn(
                    u.at,
                    format!(
                        "`{name}` of task `{task_id}` is not converted: {}",
                        u.message
                    ),
                );
            }
        }
        let id = sanitize_id(&task_id);
        if id != task_id {
            self.warn(at, format!("task id {task_id:?} is written {id:?}: bpg ids are letters, digits, '_', '-' and '.'"));
        }
        let (task, sensor, used) = self.operator_task(class, &id, &mut kwargs, at);
        let task = self.common_task_settings(d, task, &id, &mut kwargs);
        for (name, (_, kat)) in kwargs {
            if !used.contains(&name.as_str()) && !COSMETIC_TASK_KWARGS.contains(&name.as_str()) {
                self.warn(kat, format!("`{name}` of task `{id}` ({class}) is not converted: bpg has no such setting"));
            }
        }
        let t = self.add_task(d, task, at, sensor);
        Ok(Py::Task(d, t))
    }

    /// The task an operator becomes, the sensor it is, and the keywords it read or knowingly
    /// ignores.
    fn operator_task(
        &mut self,
        class: &str,
        id: &str,
        kwargs: &mut BTreeMap<String, (Py, TextSize)>,
        at: TextSize,
    ) -> (Task, Option<Sensor>, Vec<&'static str>) {
        match class {
            "EmptyOperator" | "DummyOperator" => (Task::empty(id), None, vec![]),
            "BashOperator" => {
                let command = match kwargs.remove("bash_command") {
                    Some((Py::Str(s), _)) => s,
                    Some((other, kat)) => {
                        self.warn(kat, format!("`bash_command` of task `{id}` is {}, expected a string; it is an empty task here", other.describe()));
                        return (Task::empty(id), None, vec![]);
                    }
                    None => {
                        self.warn(
                            at,
                            format!(
                                "BashOperator `{id}` without a bash_command is an empty task here"
                            ),
                        );
                        return (Task::empty(id), None, vec![]);
                    }
                };
                let mut task = Task::shell(id, command);
                if let Some((Py::Dict(env), kat)) = kwargs.remove("env") {
                    for (k, v) in env {
                        match text_of(&v, kat) {
                            Ok(v) => task = task.env(k.key_text(), v),
                            Err(u) => self.warn(
                                u.at,
                                format!(
                                    "env `{}` of task `{id}` is not converted: {}",
                                    k.key_text(),
                                    u.message
                                ),
                            ),
                        }
                    }
                }
                if let Some((Py::Str(cwd), _)) = kwargs.remove("cwd")
                    && let TaskKind::Command(command) = &mut task.kind
                {
                    command.cwd = Some(PathBuf::from(cwd));
                }
                (
                    task,
                    None,
                    vec!["append_env", "output_encoding", "skip_on_exit_code"],
                )
            }
            "SparkKubernetesOperator" => {
                let conn = self.conn_id(kwargs, "kubernetes_conn_id", "kubernetes_default");
                let namespace = match kwargs.remove("namespace") {
                    Some((Py::Str(s), _)) => s,
                    _ => "default".into(),
                };
                self.connection(&conn, format!("k8s://KUBE-CONTEXT/{namespace}"), "a Kubernetes cluster with spark-operator: put its kubeconfig context for KUBE-CONTEXT".into());
                let image = kwargs.remove("image");
                let code_path = kwargs.remove("code_path");
                let task = if let Some((file, kat)) = kwargs.remove("application_file") {
                    self.application_file(id, &conn, &file, kat)
                } else if let Some((spec, kat)) = kwargs.remove("template_spec") {
                    let mut value = spec.to_json();
                    if !value.is_object() {
                        self.warn(kat, format!("`template_spec` of task `{id}` is {}, expected a dict; it is an empty task here", spec.describe()));
                        return (Task::empty(id), None, vec![]);
                    }
                    // The operator's `image` and `code_path` fill the template, as in Airflow.
                    if let Some((Py::Str(image), _)) = image {
                        value["spark"]["spec"]["image"] = json!(image);
                    }
                    if let Some((Py::Str(code), _)) = code_path {
                        value["spark"]["spec"]["mainApplicationFile"] = json!(code);
                    }
                    inline_spark_task(id, &conn, value)
                } else {
                    self.warn(at, format!("SparkKubernetesOperator `{id}` has neither application_file nor template_spec; it is an empty task here"));
                    return (Task::empty(id), None, vec![]);
                };
                (task, None, SPARK_K8S_IGNORED.to_vec())
            }
            "SparkKubernetesSensor" | "EmrContainerSensor" => {
                let key = if class == "EmrContainerSensor" {
                    "job_id"
                } else {
                    "application_name"
                };
                let target = match kwargs.remove(key) {
                    Some((Py::Str(s), _)) => xcom_task_id(&s),
                    _ => None,
                };
                let sensor = Sensor {
                    class: if class == "EmrContainerSensor" {
                        "EmrContainerSensor"
                    } else {
                        "SparkKubernetesSensor"
                    },
                    target,
                };
                (Task::empty(id), Some(sensor), SENSOR_IGNORED.to_vec())
            }
            "EmrContainerOperator" => self.emr(id, kwargs, at),
            "BPGOperator" => {
                let conn = match kwargs.remove("connection_id") {
                    Some((Py::Str(s), _)) => s,
                    _ => {
                        self.warn(
                            at,
                            format!(
                                "BPGOperator `{id}` names no connection_id; it uses `bpg_default`"
                            ),
                        );
                        "bpg_default".into()
                    }
                };
                self.connection(&conn, "bpg+https://GATEWAY-HOST/skatev2".into(), "a Batch Processing Gateway: put its host for GATEWAY-HOST (user and password_env if it asks)".into());
                let task = if let Some((file, kat)) = kwargs.remove("application_file") {
                    self.application_file(id, &conn, &file, kat)
                } else if let Some((content, kat)) = kwargs.remove("application_content") {
                    match &content {
                        Py::Str(text) => match parse_content(text) {
                            Some(value) => inline_spark_task(id, &conn, value),
                            None => {
                                self.warn(kat, format!("`application_content` of task `{id}` is neither JSON nor YAML; it is an empty task here"));
                                return (Task::empty(id), None, vec![]);
                            }
                        },
                        Py::Dict(_) => inline_spark_task(id, &conn, content.to_json()),
                        other => {
                            self.warn(kat, format!("`application_content` of task `{id}` is {}; it is an empty task here", other.describe()));
                            return (Task::empty(id), None, vec![]);
                        }
                    }
                } else {
                    self.warn(at, format!("BPGOperator `{id}` has neither application_file nor application_content; it is an empty task here"));
                    return (Task::empty(id), None, vec![]);
                };
                (task, None, vec!["poll_interval", "timeout", "log_output"])
            }
            other => {
                self.warn(at, format!("`{other}` is not converted: task `{id}` is an empty task here, so its dependencies and trigger rules stay; replace it with a spark or command task"));
                // Its own arguments mean nothing to an empty task.
                kwargs.retain(|k, _| COMMON_TASK_KWARGS.contains(&k.as_str()));
                (Task::empty(id), None, vec![])
            }
        }
    }

    fn conn_id(
        &mut self,
        kwargs: &mut BTreeMap<String, (Py, TextSize)>,
        key: &str,
        default: &str,
    ) -> String {
        match kwargs.remove(key) {
            Some((Py::Str(s), _)) => s,
            Some((other, kat)) => {
                self.warn(
                    kat,
                    format!(
                        "`{key}` is {}, expected a string; `{default}` is used",
                        other.describe()
                    ),
                );
                default.to_owned()
            }
            None => default.to_owned(),
        }
    }

    fn connection(&mut self, name: &str, url: String, note: String) {
        if !self.conversion.connections.iter().any(|c| c.name == name) {
            self.conversion.connections.push(ConnectionSkeleton {
                name: name.to_owned(),
                url,
                note,
            });
        }
    }

    fn application_file(&mut self, id: &str, conn: &str, file: &Py, at: TextSize) -> Task {
        let Py::Str(path) = file else {
            self.warn(at, format!("`application_file` of task `{id}` is {}, expected a path; it is an empty task here", file.describe()));
            return Task::empty(id);
        };
        // Airflow takes a string that is not a file name as the application itself.
        let is_path =
            !path.contains('\n') && [".yaml", ".yml", ".json"].iter().any(|e| path.ends_with(e));
        if !is_path {
            return match parse_content(path) {
                Some(value) => inline_spark_task(id, conn, value),
                None => {
                    self.warn(at, format!("`application_file` of task `{id}` is neither a .yaml/.json path nor an application; it is an empty task here"));
                    Task::empty(id)
                }
            };
        }
        // Relative to the DAG file's folder (Airflow's template search path).
        let resolved = absolute(&self.dir.join(path));
        if !resolved.is_file() {
            self.warn(
                at,
                format!(
                    "application file {} of task `{id}` does not exist (yet)",
                    resolved.display()
                ),
            );
        }
        Task::spark_file(id, conn, resolved)
    }

    fn emr(
        &mut self,
        id: &str,
        kwargs: &mut BTreeMap<String, (Py, TextSize)>,
        at: TextSize,
    ) -> (Task, Option<Sensor>, Vec<&'static str>) {
        let conn = self.conn_id(kwargs, "aws_conn_id", "aws_default");
        let text =
            |kwargs: &mut BTreeMap<String, (Py, TextSize)>, key: &str| match kwargs.remove(key) {
                Some((Py::Str(s), _)) if !s.contains("{{") => Some(s),
                _ => None,
            };
        let vc = text(kwargs, "virtual_cluster_id");
        let role = text(kwargs, "execution_role_arn");
        let release = text(kwargs, "release_label");
        let name = text(kwargs, "name");
        let mut url = format!(
            "emr://{}?role={}&release={}",
            vc.as_deref().unwrap_or("VIRTUAL-CLUSTER-ID"),
            role.as_deref().unwrap_or("EXECUTION-ROLE-ARN"),
            release.as_deref().unwrap_or("RELEASE-LABEL")
        );
        url.push_str("&region=AWS-REGION");
        self.connection(&conn, url, "EMR on EKS: put the AWS region for AWS-REGION (and any other UPPER-CASE part); credentials come from the AWS default chain".into());
        let Some((driver, dat)) = kwargs.remove("job_driver") else {
            self.warn(
                at,
                format!("EmrContainerOperator `{id}` has no job_driver; it is an empty task here"),
            );
            return (Task::empty(id), None, vec![]);
        };
        let driver = driver.to_json();
        let submit = &driver["sparkSubmitJobDriver"];
        let Some(entry_point) = submit["entryPoint"].as_str() else {
            self.warn(dat, format!("job_driver of task `{id}` has no sparkSubmitJobDriver.entryPoint; it is an empty task here"));
            return (Task::empty(id), None, vec![]);
        };
        let mut request = serde_json::Map::new();
        if let Some(name) = &name {
            request.insert("applicationName".into(), json!(name));
        }
        let spark_version = match release.as_deref().and_then(spark_version_of_release) {
            Some(v) => v,
            None => {
                self.warn(at, format!("the Spark version of task `{id}` is not known from its release label; \"3.5\" is written: check it"));
                "3.5"
            }
        };
        request.insert("sparkVersion".into(), json!(spark_version));
        let app_type = if entry_point.ends_with(".py") {
            "Python"
        } else {
            "Scala"
        };
        request.insert("type".into(), json!(app_type));
        request.insert("mainApplicationFile".into(), json!(entry_point));
        if let Some(args) = submit["entryPointArguments"].as_array() {
            request.insert("arguments".into(), Value::Array(args.clone()));
        }
        let mut conf = serde_json::Map::new();
        let mut deps = serde_json::Map::new();
        if let Some(params) = submit["sparkSubmitParameters"].as_str() {
            let words: Vec<&str> = params.split_whitespace().collect();
            let mut i = 0;
            while i < words.len() {
                let flag = words[i];
                let value = words.get(i + 1).copied();
                i += 2;
                match (flag, value) {
                    ("--conf", Some(kv)) => {
                        if let Some((k, v)) = kv.split_once('=') {
                            conf.insert(k.to_owned(), json!(v));
                        }
                    }
                    ("--class", Some(c)) => {
                        request.insert("mainClass".into(), json!(c));
                    }
                    (
                        "--jars" | "--py-files" | "--files" | "--packages" | "--archives",
                        Some(list),
                    ) => {
                        let key = match flag {
                            "--jars" => "jars",
                            "--py-files" => "pyFiles",
                            "--files" => "files",
                            "--packages" => "packages",
                            _ => "archives",
                        };
                        deps.insert(key.into(), json!(list.split(',').collect::<Vec<_>>()));
                    }
                    ("--driver-memory", Some(v)) => {
                        conf.insert("spark.driver.memory".into(), json!(v));
                    }
                    ("--driver-cores", Some(v)) => {
                        conf.insert("spark.driver.cores".into(), json!(v));
                    }
                    ("--executor-memory", Some(v)) => {
                        conf.insert("spark.executor.memory".into(), json!(v));
                    }
                    ("--executor-cores", Some(v)) => {
                        conf.insert("spark.executor.cores".into(), json!(v));
                    }
                    ("--num-executors", Some(v)) => {
                        conf.insert("spark.executor.instances".into(), json!(v));
                    }
                    ("--name", Some(_)) => {}
                    (other, _) => {
                        i -= 1;
                        self.warn(
                            dat,
                            format!(
                                "sparkSubmitParameters `{other}` of task `{id}` is not converted"
                            ),
                        );
                    }
                }
            }
        }
        if let Some((overrides, oat)) = kwargs.remove("configuration_overrides") {
            let overrides = overrides.to_json();
            for c in overrides["applicationConfiguration"]
                .as_array()
                .into_iter()
                .flatten()
            {
                match c["classification"].as_str() {
                    Some("spark-defaults") => {
                        for (k, v) in c["properties"].as_object().into_iter().flatten() {
                            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                            conf.entry(k.clone()).or_insert(json!(v));
                        }
                    }
                    other => self.warn(oat, format!("configuration classification {:?} of task `{id}` is not converted: only spark-defaults has a place in an application", other.unwrap_or("?"))),
                }
            }
            if overrides.get("monitoringConfiguration").is_some() {
                self.warn(oat, format!("monitoringConfiguration of task `{id}` is not converted: logging is a setting of the EMR connection in bpg"));
            }
        }
        if !conf.is_empty() {
            request.insert("sparkConf".into(), Value::Object(conf));
        }
        if !deps.is_empty() {
            request.insert("deps".into(), Value::Object(deps));
        }
        (
            inline_spark_task(id, &conn, Value::Object(request)),
            None,
            vec![
                "wait_for_completion",
                "poll_interval",
                "max_polling_attempts",
                "max_tries",
                "client_request_token",
                "tags",
                "deferrable",
            ],
        )
    }

    /// Retries, timeouts, trigger rule, pool and depends_on_past, which every operator takes.
    fn common_task_settings(
        &mut self,
        d: usize,
        mut task: Task,
        id: &str,
        kwargs: &mut BTreeMap<String, (Py, TextSize)>,
    ) -> Task {
        for key in COMMON_TASK_KWARGS {
            let Some((value, at)) = kwargs.remove(*key) else {
                continue;
            };
            if *key == "pool"
                && let Err(u) = text_of(&value, at)
            {
                self.warn(
                    u.at,
                    format!("`pool` of task `{id}` is not converted: {}", u.message),
                );
                continue;
            }
            let mut pools = std::mem::take(&mut self.dags[d].pools);
            self.task_setting(&mut task.settings, key, &value, at, &mut pools);
            self.dags[d].pools = pools;
        }
        task
    }

    /// Reads one of [`COMMON_TASK_KWARGS`] into `settings`, whether it was given to an operator
    /// or in `default_args` (the same keys, one reader); a pool named is added to `pools`.
    fn task_setting(
        &mut self,
        settings: &mut TaskSettings,
        key: &str,
        value: &Py,
        at: TextSize,
        pools: &mut BTreeSet<String>,
    ) {
        match key {
            "retries" => settings.retries = self.count(value, at, key).map(|n| n as u32),
            "retry_delay" => settings.retry_delay = self.duration(value, at, key),
            "retry_exponential_backoff" => {
                settings.retry_exponential_backoff = self.boolean(value, at, key)
            }
            "max_retry_delay" => settings.max_retry_delay = self.duration(value, at, key),
            "execution_timeout" => settings.execution_timeout = self.duration(value, at, key),
            "trigger_rule" => settings.trigger_rule = self.trigger_rule(value, at),
            "pool" => {
                settings.pool = text_of(value, at).ok();
                pools.extend(settings.pool.clone());
            }
            "pool_slots" => settings.pool_slots = self.count(value, at, key).map(|n| n as u32),
            "depends_on_past" => settings.depends_on_past = self.boolean(value, at, key),
            _ => {}
        }
    }

    // ---- the end -----------------------------------------------------------------------------

    fn finish(mut self) -> Conversion {
        let dags = std::mem::take(&mut self.dags);
        for draft in dags {
            if let Some(dag) = self.build(draft) {
                self.conversion.dags.push(dag);
            }
        }
        if self.conversion.dags.is_empty() && !self.conversion.notes.has_errors() {
            let d = Diagnostic::error(
                "",
                "no DAG found: expected `with DAG(...)`, `DAG(...)` or an `@dag` function",
            )
            .with_file(self.file);
            self.conversion.notes.push(d);
        }
        self.conversion
    }

    fn build(&mut self, mut draft: DagDraft) -> Option<Dag> {
        if draft.failed {
            return None;
        }
        if draft.tasks.is_empty() {
            self.error(
                draft.at,
                format!("DAG `{}` has no tasks; not converted", draft.dag_id),
            );
            return None;
        }
        self.fold_sensors(&mut draft);
        let mut tasks: Vec<Option<Task>> =
            draft.tasks.iter().map(|t| Some(t.task.clone())).collect();
        let mut edges = draft.edges.clone();
        edges.dedup();
        for (u, d) in edges {
            let upstream = draft.tasks[u].task.id.clone();
            if let Some(Some(task)) = tasks.get_mut(d)
                && !task.depends_on.contains(&upstream)
            {
                task.depends_on.push(upstream);
            }
        }
        let dag_id = sanitize_id(&draft.dag_id);
        let mut builder = Dag::builder(dag_id.clone()).default_args(draft.default_args.clone());
        if let Some(d) = draft.description.clone() {
            builder = builder.description(d);
        }
        if let Some(s) = draft.schedule.clone() {
            builder = builder.schedule(s);
            if draft.catchup.is_none() && draft.start_date.is_some() {
                self.warn(draft.at, format!("DAG `{dag_id}` does not set catchup: Airflow 2 catches up by default, bpg (like Airflow 3) does not; set `catchup: true` if it should"));
            }
        }
        if let Some(d) = draft.start_date {
            builder = builder.start_date(d);
        }
        if let Some(d) = draft.end_date {
            builder = builder.end_date(d);
        }
        if let Some(c) = draft.catchup {
            builder = builder.catchup(c);
        }
        if let Some(n) = draft.max_active_runs {
            builder = builder.max_active_runs(n);
        }
        if let Some(n) = draft.max_active_tasks {
            builder = builder.max_active_tasks(n);
        }
        for pool in &draft.pools {
            if pool != bpg_pipeline::DEFAULT_POOL {
                self.warn(draft.at, format!("pool `{pool}` is declared with {} slots (Airflow's default_pool size): set the slots it has in Airflow", bpg_pipeline::DEFAULT_POOL_SLOTS));
                builder = builder.pool(pool.clone(), bpg_pipeline::DEFAULT_POOL_SLOTS);
            }
        }
        for (k, v) in &draft.params {
            builder = builder.param(k.clone(), v.clone());
        }
        builder = builder.tasks(tasks.into_iter().flatten());
        match builder.build() {
            Ok(dag) => Some(dag),
            Err(problems) => {
                for p in problems.errors() {
                    self.error(
                        draft.at,
                        format!(
                            "DAG `{dag_id}`: {}{}",
                            if p.field.is_empty() {
                                String::new()
                            } else {
                                format!("{}: ", p.field)
                            },
                            p.message
                        ),
                    );
                }
                None
            }
        }
    }

    /// A sensor that waits for a Spark task's application is that task's own waiting in bpg: it
    /// is taken out and its downstream tasks depend on the Spark task instead.
    fn fold_sensors(&mut self, draft: &mut DagDraft) {
        let mut removed: Vec<usize> = Vec::new();
        for s in 0..draft.tasks.len() {
            let Some(sensor) = draft.tasks[s].sensor.clone() else {
                continue;
            };
            let upstream: Vec<usize> = draft
                .edges
                .iter()
                .filter(|(_, d)| *d == s)
                .map(|(u, _)| *u)
                .collect();
            let is_spark = |t: usize| matches!(draft.tasks[t].task.kind, TaskKind::Spark(_));
            let target = match &sensor.target {
                Some(id) => draft
                    .tasks
                    .iter()
                    .position(|t| &t.task.id == id)
                    .filter(|t| is_spark(*t)),
                None => match upstream.as_slice() {
                    [u] if is_spark(*u) => Some(*u),
                    _ => None,
                },
            };
            let sensor_id = draft.tasks[s].task.id.clone();
            let Some(target) = target else {
                self.warn(draft.tasks[s].at, format!("{} `{sensor_id}`: the Spark task it waits for cannot be told; it is an empty task here", sensor.class));
                continue;
            };
            let target_id = draft.tasks[target].task.id.clone();
            self.conversion.info.push(format!(
                "{}:{}: {} `{sensor_id}` folded into `{target_id}` (a bpg Spark task waits for its application)",
                self.file.display(),
                self.place(draft.tasks[s].at).0,
                sensor.class
            ));
            let mut edges = Vec::new();
            for &(u, d) in &draft.edges {
                match (u == s, d == s) {
                    (false, false) => edges.push((u, d)),
                    (true, false) => edges.push((target, d)),
                    (false, true) if u != target => edges.push((u, target)),
                    _ => {}
                }
            }
            draft.edges = edges;
            removed.push(s);
        }
        // Remove folded sensors, renumbering the edges.
        let keep: Vec<usize> = (0..draft.tasks.len())
            .filter(|i| !removed.contains(i))
            .collect();
        let renumber: HashMap<usize, usize> = keep
            .iter()
            .enumerate()
            .map(|(new, old)| (*old, new))
            .collect();
        draft.edges = draft
            .edges
            .iter()
            .filter_map(|(u, d)| Some((*renumber.get(u)?, *renumber.get(d)?)))
            .collect();
        let mut index = 0;
        draft.tasks.retain(|_| {
            let kept = !removed.contains(&index);
            index += 1;
            kept
        });
    }
}

/// The operators converted into tasks of their own kind.
const SUPPORTED_OPERATORS: &[&str] = &[
    "EmptyOperator",
    "DummyOperator",
    "BashOperator",
    "SparkKubernetesOperator",
    "SparkKubernetesSensor",
    "EmrContainerOperator",
    "EmrContainerSensor",
    "BPGOperator",
];

/// Keywords every operator takes that bpg tasks have.
const COMMON_TASK_KWARGS: &[&str] = &[
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "trigger_rule",
    "pool",
    "pool_slots",
    "depends_on_past",
];

/// SparkKubernetesOperator keywords about how Airflow talks to the cluster: the connection and
/// the bpg task do that.
const SPARK_K8S_IGNORED: &[&str] = &[
    "get_logs",
    "do_xcom_push",
    "delete_on_termination",
    "reattach_on_restart",
    "in_cluster",
    "config_file",
    "cluster_context",
    "watch",
    "random_name_suffix",
    "success_run_history_limit",
    "startup_timeout_seconds",
    "log_events_on_failure",
    "name",
    "api_group",
    "api_version",
    "plural",
    "deferrable",
];

const SENSOR_IGNORED: &[&str] = &[
    "namespace",
    "kubernetes_conn_id",
    "aws_conn_id",
    "virtual_cluster_id",
    "attach_log",
    "container_name",
    "api_group",
    "api_version",
    "poke_interval",
    "timeout",
    "mode",
    "max_retries",
    "poll_interval",
    "deferrable",
];

fn constant(c: &Constant, at: TextSize) -> Eval {
    match c {
        Constant::None => Ok(Py::None),
        Constant::Bool(b) => Ok(Py::Bool(*b)),
        Constant::Str(s) => Ok(Py::Str(s.clone())),
        Constant::Int(i) => i
            .to_string()
            .parse()
            .map(Py::Int)
            .map_err(|_| Unknown::new(at, "an integer too large")),
        Constant::Float(f) => Ok(Py::Float(*f)),
        Constant::Tuple(items) => items
            .iter()
            .map(|i| constant(i, at))
            .collect::<Result<_, _>>()
            .map(Py::List),
        _ => Err(Unknown::new(at, "a constant of another type")),
    }
}

fn text_of(v: &Py, at: TextSize) -> Result<String, Unknown> {
    match v {
        Py::Str(s) => Ok(s.clone()),
        Py::Int(i) => Ok(i.to_string()),
        Py::Float(f) => Ok(f.to_string()),
        Py::Bool(b) => Ok(if *b { "True" } else { "False" }.into()),
        other => Err(Unknown::new(at, format!("{} as text", other.describe()))),
    }
}

fn number(v: &Py, at: TextSize) -> Result<f64, Unknown> {
    match v {
        Py::Int(i) => Ok(*i as f64),
        Py::Float(f) => Ok(*f),
        other => Err(Unknown::new(
            at,
            format!("expected a number, found {}", other.describe()),
        )),
    }
}

fn integer(v: &Py, at: TextSize) -> Result<i64, Unknown> {
    match v {
        Py::Int(i) => Ok(*i),
        other => Err(Unknown::new(
            at,
            format!("expected an integer, found {}", other.describe()),
        )),
    }
}

fn keyword<'e>(c: &'e ast::ExprCall, name: &str) -> Option<&'e Expr> {
    c.keywords
        .iter()
        .find(|k| k.arg.as_deref() == Some(name))
        .map(|k| &k.value)
}

/// An application given as text: JSON, else YAML (a mapping).
fn parse_content(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .or_else(|| serde_saphyr::from_str::<Value>(text).ok())
        .filter(Value::is_object)
}

/// The task id of `xcom_pull(task_ids='x')` in a template, if any.
fn xcom_task_id(text: &str) -> Option<String> {
    let rest = &text[text.find("task_ids")? + "task_ids".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &rest[1..];
    Some(rest[..rest.find(quote)?].to_owned())
}

/// The Spark version an EMR release ships (the minor version bpg routes on).
fn spark_version_of_release(label: &str) -> Option<&'static str> {
    let version = label.strip_prefix("emr-")?;
    let mut parts = version.split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(match (major, minor) {
        (7, _) => "3.5",
        (6, 12..) => "3.4",
        (6, 9..=11) => "3.3",
        (6, 5..=8) => "3.2",
        (6, 3..=4) => "3.1",
        (6, _) => "3.0",
        (5, _) => "2.4",
        _ => return None,
    })
}

fn statement_kind(stmt: &Stmt) -> &'static str {
    match stmt {
        Stmt::For(_) | Stmt::AsyncFor(_) => "a `for` loop",
        Stmt::While(_) => "a `while` loop",
        Stmt::If(_) => "an `if` statement",
        Stmt::Try(_) | Stmt::TryStar(_) => "a `try` statement",
        Stmt::ClassDef(_) => "a class definition",
        Stmt::Match(_) => "a `match` statement",
        Stmt::AugAssign(_) => "an augmented assignment",
        _ => "this statement",
    }
}

fn expression_kind(e: &Expr) -> &'static str {
    match e {
        Expr::ListComp(_) | Expr::DictComp(_) | Expr::SetComp(_) | Expr::GeneratorExp(_) => {
            "a comprehension"
        }
        Expr::Subscript(_) => "a subscript",
        Expr::Lambda(_) => "a lambda",
        Expr::IfExp(_) => "a conditional expression",
        Expr::Compare(_) | Expr::BoolOp(_) => "a comparison",
        _ => "this expression",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_text(text: &str) -> Conversion {
        convert(text, Path::new("dag.py"))
    }

    #[test]
    fn constants_params_and_every_dependency_form_are_read() {
        let c = convert_text(
            r#"
from airflow import DAG
from airflow.models.param import Param
from airflow.operators.empty import EmptyOperator as Nothing
from airflow.operators.bash import BashOperator

PREFIX = "daily"
SUFFIX = "_v" + str(2) if False else "_v2"
BASE = {"bucket": "s3://data", "days": [1, 2]}
dag = DAG(PREFIX + "_pipe", schedule_interval="@weekly", catchup=False,
          params={"bucket": Param(BASE["bucket"], type="string"), "n": -3})
a = Nothing(task_id="a", dag=dag)
b = Nothing(task_id=f"b_{BASE['days'][1]}", dag=dag)
c = BashOperator(task_id="c", bash_command=f"echo {PREFIX} {{{{ ds }}}}", dag=dag)
d = Nothing(task_id="d", dag=dag)
[b, c] << a
d.set_upstream(c)
"#,
        );
        let errors: Vec<String> = c.notes.errors().map(ToString::to_string).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let dag = &c.dags[0];
        assert_eq!(dag.dag_id, "daily_pipe");
        assert_eq!(dag.schedule.as_deref(), Some("@weekly"));
        assert_eq!(dag.params["bucket"], "s3://data");
        assert_eq!(dag.params["n"], -3);
        let ids: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "b_2", "c", "d"]);
        assert_eq!(dag.tasks[1].depends_on, ["a"]);
        assert_eq!(dag.tasks[3].depends_on, ["c"]);
        let TaskKind::Command(command) = &dag.tasks[2].kind else {
            panic!("c is a command task")
        };
        assert_eq!(
            command.command,
            bpg_pipeline::CommandLine::Shell("echo daily {{ ds }}".into())
        );
        // SUFFIX's conditional expression is not needed by any task: not reported.
        assert!(c.notes.is_empty(), "{}", c.notes);
    }

    #[test]
    fn no_input_makes_the_reader_panic() {
        let files = [
            include_str!("../../tests/data/import/dags/spark_on_k8s.py"),
            include_str!("../../tests/data/import/dags/retries_and_rules.py"),
            "x = timedelta(days=1e300)\ny = -(-9223372036854775807 - 1)\nz = 9223372036854775807 * 2\n\
             with DAG('d', start_date=datetime(9999, 12, 31) + timedelta(days=9)) as dag:\n    \
             a = EmptyOperator(task_id='a', retry_delay=1e300)\n",
        ];
        for text in files {
            // Every prefix: unterminated strings, half statements, dangling operators.
            for end in (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .step_by(11)
            {
                let _ = convert_text(&text[..end]);
            }
        }
    }

    #[test]
    fn xcom_pulls_name_their_task() {
        assert_eq!(
            xcom_task_id("{{ task_instance.xcom_pull(task_ids='submit')['metadata']['name'] }}")
                .as_deref(),
            Some("submit")
        );
        assert_eq!(
            xcom_task_id("{{ ti.xcom_pull(task_ids = \"run\") }}").as_deref(),
            Some("run")
        );
        assert_eq!(xcom_task_id("spark-pi"), None);
    }

    #[test]
    fn emr_releases_name_their_spark_version() {
        assert_eq!(spark_version_of_release("emr-7.2.0-latest"), Some("3.5"));
        assert_eq!(spark_version_of_release("emr-6.15.0-latest"), Some("3.4"));
        assert_eq!(spark_version_of_release("emr-6.10.0-latest"), Some("3.3"));
        assert_eq!(spark_version_of_release("custom"), None);
    }
}
