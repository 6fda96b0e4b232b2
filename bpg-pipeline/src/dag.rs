//! The DAG model: tasks, their kinds, dependencies, trigger rules and retry settings, and the
//! builder that makes one in Rust. The YAML loader ([`crate::yaml`]) produces the same [`Dag`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bpg_core::{Diagnostics, SparkJob};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::context::{TaskContext, TaskError};
use crate::scheduler::Graph;
use crate::validate;

/// When a task runs, given the outcomes of its direct upstream tasks (Airflow's trigger rules).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream succeeded (the default).
    #[default]
    AllSuccess,
    /// Every upstream failed or is upstream_failed.
    AllFailed,
    /// Every upstream finished, whatever the outcome.
    AllDone,
    /// Every non-skipped upstream finished and at least one succeeded.
    AllDoneMinOneSuccess,
    /// Every upstream was skipped.
    AllSkipped,
    /// At least one upstream succeeded (fires without waiting for the rest).
    OneSuccess,
    /// At least one upstream failed or is upstream_failed (fires without waiting).
    OneFailed,
    /// At least one upstream succeeded or failed (fires without waiting).
    OneDone,
    /// Every upstream finished and none failed (success or skipped).
    NoneFailed,
    /// As `none_failed`, plus at least one upstream succeeded.
    NoneFailedMinOneSuccess,
    /// Every upstream finished and none was skipped.
    NoneSkipped,
    /// Runs at once, whatever the upstreams do.
    Always,
}

impl TriggerRule {
    /// Every rule, in declaration order.
    pub const ALL: [TriggerRule; 12] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllDoneMinOneSuccess,
        TriggerRule::AllSkipped,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::Always,
    ];

    /// Airflow's name (`all_success`).
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllDoneMinOneSuccess => "all_done_min_one_success",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::Always => "always",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often and how soon a failed task is tried again (Airflow's `retries`, `retry_delay`,
/// `retry_exponential_backoff`, `max_retry_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; a task runs at most `retries + 1` times.
    pub retries: u32,
    /// Delay before a retry (the base of the backoff). Airflow's default: 300 s.
    pub retry_delay: Duration,
    /// Double the delay with each try, with Airflow's deterministic jitter.
    pub exponential_backoff: bool,
    /// Upper bound on any delay.
    pub max_retry_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            retry_delay: Duration::from_secs(300),
            exponential_backoff: false,
            max_retry_delay: None,
        }
    }
}

/// A task's settings, Airflow's `BaseOperator` arguments: set on a task, or on the DAG's
/// `default_args` for every task that does not set its own. One type for both, in Rust and in
/// YAML (`default_args:` takes the same keys as a task). Unset (`None`) means "inherit", then
/// Airflow's default; [`Dag::compile`] resolves them once into [`ResolvedSettings`].
///
/// ```
/// use std::time::Duration;
/// use bpg_pipeline::{TaskSettings, TriggerRule};
/// let defaults = TaskSettings::new().retries(2).retry_delay(Duration::from_secs(30)).pool("spark");
/// let task = TaskSettings::new().retries(5).trigger_rule(TriggerRule::AllDone);
/// let resolved = task.or(&defaults).resolve();
/// assert_eq!(resolved.retry.retries, 5);
/// assert_eq!(resolved.retry.retry_delay, Duration::from_secs(30));
/// assert_eq!(resolved.trigger_rule, TriggerRule::AllDone);
/// assert_eq!((resolved.pool.as_deref(), resolved.pool_slots), (Some("spark"), 1));
/// assert!(!resolved.depends_on_past);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskSettings {
    /// Retries after a failed try (Airflow default 0).
    pub retries: Option<u32>,
    /// Delay before a retry (default 300 s).
    pub retry_delay: Option<Duration>,
    /// Double the delay with each try, with Airflow's deterministic jitter (default off).
    pub retry_exponential_backoff: Option<bool>,
    /// Upper bound on any retry delay.
    pub max_retry_delay: Option<Duration>,
    /// One deadline over each whole attempt (default none).
    pub execution_timeout: Option<Duration>,
    /// When the task runs, given its upstreams (default `all_success`).
    pub trigger_rule: Option<TriggerRule>,
    /// Pool the task takes slots from (none: only `max_active_tasks` limits it).
    pub pool: Option<String>,
    /// Slots taken from the pool (default 1).
    pub pool_slots: Option<u32>,
    /// Runs only if this task's instance in the DAG's previous run succeeded or was skipped
    /// (default off). See [`Task::depends_on_past`].
    pub depends_on_past: Option<bool>,
}

/// `default_args`: the [`TaskSettings`] every task of a DAG inherits.
pub type DefaultArgs = TaskSettings;

impl TaskSettings {
    /// Nothing set: everything inherited.
    pub fn new() -> Self {
        TaskSettings::default()
    }

    /// Sets `retries`.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Sets `retry_delay`.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = Some(delay);
        self
    }

    /// Sets `retry_exponential_backoff`.
    pub fn retry_exponential_backoff(mut self, on: bool) -> Self {
        self.retry_exponential_backoff = Some(on);
        self
    }

    /// Sets `max_retry_delay`.
    pub fn max_retry_delay(mut self, max: Duration) -> Self {
        self.max_retry_delay = Some(max);
        self
    }

    /// Sets `execution_timeout`.
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.execution_timeout = Some(timeout);
        self
    }

    /// Sets `trigger_rule`.
    pub fn trigger_rule(mut self, rule: TriggerRule) -> Self {
        self.trigger_rule = Some(rule);
        self
    }

    /// Sets `pool`.
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// Sets `pool_slots`.
    pub fn pool_slots(mut self, slots: u32) -> Self {
        self.pool_slots = Some(slots);
        self
    }

    /// Sets `depends_on_past`.
    pub fn depends_on_past(mut self, on: bool) -> Self {
        self.depends_on_past = Some(on);
        self
    }

    /// These settings, with `defaults` filling in what they leave unset.
    pub fn or(&self, defaults: &TaskSettings) -> TaskSettings {
        TaskSettings {
            retries: self.retries.or(defaults.retries),
            retry_delay: self.retry_delay.or(defaults.retry_delay),
            retry_exponential_backoff: self
                .retry_exponential_backoff
                .or(defaults.retry_exponential_backoff),
            max_retry_delay: self.max_retry_delay.or(defaults.max_retry_delay),
            execution_timeout: self.execution_timeout.or(defaults.execution_timeout),
            trigger_rule: self.trigger_rule.or(defaults.trigger_rule),
            pool: self.pool.clone().or_else(|| defaults.pool.clone()),
            pool_slots: self.pool_slots.or(defaults.pool_slots),
            depends_on_past: self.depends_on_past.or(defaults.depends_on_past),
        }
    }

    /// What these settings come to with Airflow's defaults for whatever is unset.
    pub fn resolve(&self) -> ResolvedSettings {
        let base = RetryPolicy::default();
        ResolvedSettings {
            retry: RetryPolicy {
                retries: self.retries.unwrap_or(base.retries),
                retry_delay: self.retry_delay.unwrap_or(base.retry_delay),
                exponential_backoff: self
                    .retry_exponential_backoff
                    .unwrap_or(base.exponential_backoff),
                max_retry_delay: self.max_retry_delay,
            },
            execution_timeout: self.execution_timeout,
            trigger_rule: self.trigger_rule.unwrap_or_default(),
            pool: self.pool.clone(),
            pool_slots: self.pool_slots.unwrap_or(1),
            depends_on_past: self.depends_on_past.unwrap_or(false),
        }
    }
}

/// A task's settings after `default_args` and Airflow's defaults: what the scheduler and the
/// executor read (from [`Dag::compile`]'s graph).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedSettings {
    /// Retries and their delays.
    pub retry: RetryPolicy,
    /// One deadline over each whole attempt.
    pub execution_timeout: Option<Duration>,
    /// When the task runs, given its upstreams.
    pub trigger_rule: TriggerRule,
    /// Pool the task takes slots from.
    pub pool: Option<String>,
    /// Slots taken from the pool.
    pub pool_slots: u32,
    /// Gated on the previous run's instance.
    pub depends_on_past: bool,
}

/// Where a Spark task's application comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplicationSource {
    /// A job built in Rust.
    Job(Box<SparkJob>),
    /// An inline BPG request or SparkApplication manifest (from YAML), templated at run time.
    Inline(serde_json::Value),
    /// A file holding a BPG request or SparkApplication manifest, templated at run time.
    /// Relative paths are resolved against the DAG file's directory.
    File(PathBuf),
}

/// A task that runs one Spark application through a named connection.
///
/// Each try submits with the idempotency key `dag_id/run_id/task_id/try`, follows the driver log
/// into the task log (when someone subscribes to the run's events), and pushes XCom values
/// `submission_id`, `state` (the backend's final native state) and `application_id` (Spark's
/// application id, when the backend knows it). The job is cancelled when the attempt times out,
/// the run is cancelled, or the task fails while the job still runs: never left orphaned.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SparkTask {
    /// Connection name, resolved through the runner's [`bpg_core::Connections`].
    pub connection: String,
    /// The application.
    pub application: ApplicationSource,
    /// Replaces the application's arguments when set; each is a template.
    pub args: Option<Vec<String>>,
    /// Merged into the job's labels; the task's win.
    pub labels: BTreeMap<String, String>,
    /// Stream driver logs into the task log (when the backend can).
    pub follow_logs: bool,
}

/// The process a command task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// A line for `sh -c`.
    Shell(String),
    /// A program and its arguments, without a shell.
    Argv(Vec<String>),
}

/// A task that runs a local process; its stdout and stderr lines are the task log.
///
/// The process gets `BPG_DAG_ID`, `BPG_RUN_ID`, `BPG_TASK_ID` and `BPG_TRY_NUMBER` in its
/// environment, runs in its own process group, and the whole group is killed on timeout or
/// cancellation. Processes run in real time: under tokio's paused test clock an
/// `execution_timeout` fires as soon as the runtime is otherwise idle.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandTask {
    /// What to run; every part is a template.
    pub command: CommandLine,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory (relative to the DAG file's directory).
    pub cwd: Option<PathBuf>,
}

/// The future a Rust function task returns: an optional value pushed to XCom as `return_value`.
pub type TaskFuture = BoxFuture<'static, Result<Option<serde_json::Value>, TaskError>>;

/// A Rust async function run as a task.
#[derive(Clone)]
pub struct TaskFn(pub(crate) Arc<dyn Fn(TaskContext) -> TaskFuture + Send + Sync>);

impl fmt::Debug for TaskFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskFn(..)")
    }
}

/// What a task does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TaskKind {
    /// Nothing: succeeds at once (for structure, like Airflow's `EmptyOperator`).
    Empty,
    /// A Spark application.
    Spark(SparkTask),
    /// A local process.
    Command(CommandTask),
    /// A Rust async function.
    Function(TaskFn),
}

impl TaskKind {
    /// `empty`, `spark`, `command` or `function`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Empty => "empty",
            TaskKind::Spark(_) => "spark",
            TaskKind::Command(_) => "command",
            TaskKind::Function(_) => "function",
        }
    }
}

/// One task of a DAG, as declared (settings not given here come from the DAG's default args).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Task {
    /// Unique id within the DAG.
    pub id: String,
    /// What it does.
    pub kind: TaskKind,
    /// Direct upstream task ids.
    pub depends_on: Vec<String>,
    /// Its settings; what it leaves unset comes from the DAG's `default_args`.
    pub settings: TaskSettings,
}

impl Task {
    fn new(id: impl Into<String>, kind: TaskKind) -> Self {
        Task {
            id: id.into(),
            kind,
            depends_on: Vec::new(),
            settings: TaskSettings::default(),
        }
    }

    /// A task that does nothing.
    pub fn empty(id: impl Into<String>) -> Self {
        Task::new(id, TaskKind::Empty)
    }

    /// A Spark task running `job` through `connection`.
    pub fn spark(id: impl Into<String>, connection: impl Into<String>, job: SparkJob) -> Self {
        Task::new(
            id,
            TaskKind::Spark(SparkTask {
                connection: connection.into(),
                application: ApplicationSource::Job(Box::new(job)),
                args: None,
                labels: BTreeMap::new(),
                follow_logs: true,
            }),
        )
    }

    /// A Spark task whose application is read from `path` (a BPG request or a SparkApplication
    /// manifest, templated).
    pub fn spark_file(
        id: impl Into<String>,
        connection: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> Self {
        Task::new(
            id,
            TaskKind::Spark(SparkTask {
                connection: connection.into(),
                application: ApplicationSource::File(path.into()),
                args: None,
                labels: BTreeMap::new(),
                follow_logs: true,
            }),
        )
    }

    /// A task running `sh -c line`.
    pub fn shell(id: impl Into<String>, line: impl Into<String>) -> Self {
        Task::new(
            id,
            TaskKind::Command(CommandTask {
                command: CommandLine::Shell(line.into()),
                env: BTreeMap::new(),
                cwd: None,
            }),
        )
    }

    /// A task running a program with arguments, without a shell.
    pub fn command<I, S>(id: impl Into<String>, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Task::new(
            id,
            TaskKind::Command(CommandTask {
                command: CommandLine::Argv(argv.into_iter().map(Into::into).collect()),
                env: BTreeMap::new(),
                cwd: None,
            }),
        )
    }

    /// A task running a Rust async function. Its `Ok(Some(value))` is pushed to XCom as
    /// `return_value`; [`TaskError::Skipped`] skips the task and [`TaskError::Fatal`] fails it without retry.
    pub fn function<F, Fut>(id: impl Into<String>, f: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<serde_json::Value>, TaskError>> + Send + 'static,
    {
        let f = Arc::new(move |ctx: TaskContext| -> TaskFuture { Box::pin(f(ctx)) });
        Task::new(id, TaskKind::Function(TaskFn(f)))
    }

    /// Adds upstream tasks.
    pub fn depends_on<I, S>(mut self, upstream: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on.extend(upstream.into_iter().map(Into::into));
        self
    }

    /// Sets the trigger rule.
    pub fn trigger_rule(mut self, rule: TriggerRule) -> Self {
        self.settings.trigger_rule = Some(rule);
        self
    }

    /// Sets `retries`.
    pub fn retries(mut self, retries: u32) -> Self {
        self.settings.retries = Some(retries);
        self
    }

    /// Sets `retry_delay`.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.settings.retry_delay = Some(delay);
        self
    }

    /// Sets `retry_exponential_backoff`.
    pub fn retry_exponential_backoff(mut self, on: bool) -> Self {
        self.settings.retry_exponential_backoff = Some(on);
        self
    }

    /// Sets `depends_on_past` (Airflow's): the task runs only if its instance in the DAG's
    /// previous run (the run with the latest earlier logical date in the run store) succeeded
    /// or was skipped; with no previous run, or no instance of it there, it runs.
    ///
    /// While the previous instance is still unfinished the task waits for it. When it ended
    /// otherwise (failed, upstream_failed) the task is blocked: Airflow leaves such a task
    /// without state until someone clears the past; a run here ends instead, with the task
    /// (and what depends on it) in state `none` and the run `failed`. Without a run store
    /// there are no previous runs, so the dependency always passes.
    pub fn depends_on_past(mut self, on: bool) -> Self {
        self.settings.depends_on_past = Some(on);
        self
    }

    /// Sets `max_retry_delay`.
    pub fn max_retry_delay(mut self, max: Duration) -> Self {
        self.settings.max_retry_delay = Some(max);
        self
    }

    /// Sets `execution_timeout`.
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.settings.execution_timeout = Some(timeout);
        self
    }

    /// Takes `slots` slots of `pool` while running. Pools are declared on the DAG; the implicit
    /// `default_pool` (128 slots) exists too. A task in no pool (here or in the default args) is
    /// limited only by `max_active_tasks`.
    pub fn pool(mut self, pool: impl Into<String>, slots: u32) -> Self {
        self.settings.pool = Some(pool.into());
        self.settings.pool_slots = Some(slots);
        self
    }

    /// Adds a label merged into a Spark task's job (the task's labels win); ignored by other kinds.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let TaskKind::Spark(spark) = &mut self.kind {
            spark.labels.insert(key.into(), value.into());
        }
        self
    }

    /// Replaces a Spark task's application arguments (templates); ignored by other kinds.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if let TaskKind::Spark(spark) = &mut self.kind {
            spark.args = Some(args.into_iter().map(Into::into).collect());
        }
        self
    }

    /// Sets an environment variable of a command task; ignored by other kinds.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let TaskKind::Command(command) = &mut self.kind {
            command.env.insert(key.into(), value.into());
        }
        self
    }
}

/// Where in a source file each part of a DAG was declared, for located diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMap {
    /// The file.
    pub file: Option<PathBuf>,
    /// Dotted field path (`tasks[2].depends_on[0]`) → 1-based (line, column).
    pub positions: BTreeMap<String, (usize, usize)>,
}

impl SourceMap {
    /// Position of `field`, or of the nearest enclosing field that has one.
    pub fn position(&self, field: &str) -> Option<(usize, usize)> {
        let mut path = field;
        loop {
            if let Some(p) = self.positions.get(path) {
                return Some(*p);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// Default for `max_active_tasks` (Airflow's `max_active_tasks_per_dag`).
pub const DEFAULT_MAX_ACTIVE_TASKS: usize = 16;

/// Default for `max_active_runs` (Airflow's `max_active_runs_per_dag`).
pub const DEFAULT_MAX_ACTIVE_RUNS: usize = 16;

/// A pipeline: tasks and the edges between them, with DAG-wide settings.
///
/// Build one with [`Dag::builder`] or load one with [`crate::load_dag_file`]; both validate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Dag {
    /// The DAG's id.
    pub dag_id: String,
    /// Human description.
    pub description: Option<String>,
    /// Cron expression or preset (`@daily`), checked with [`crate::schedule::Schedule`] when
    /// the DAG is built or loaded. Used by schedulers; a single run ignores it.
    pub schedule: Option<String>,
    /// No scheduled interval starts before this; with `catchup`, the intervals since it run.
    pub start_date: Option<DateTime<Utc>>,
    /// No scheduled interval starts after this.
    pub end_date: Option<DateTime<Utc>>,
    /// Catch up missed intervals (Airflow 3 default: off).
    pub catchup: bool,
    /// At most this many runs of the DAG at once, scheduled and manual together.
    pub max_active_runs: usize,
    /// Settings tasks inherit.
    pub default_args: TaskSettings,
    /// At most this many tasks run at once.
    pub max_active_tasks: usize,
    /// Pools and their slot counts.
    pub pools: BTreeMap<String, u32>,
    /// Run parameters available to templates as `params`.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The tasks, in declaration order.
    pub tasks: Vec<Task>,
    /// Directory relative paths (application files, command `cwd`) are resolved against.
    pub base_dir: Option<PathBuf>,
    /// Where the DAG was declared, when it came from a file.
    pub source: SourceMap,
}

impl Dag {
    /// Starts building a DAG.
    pub fn builder(dag_id: impl Into<String>) -> DagBuilder {
        DagBuilder {
            dag: Dag {
                dag_id: dag_id.into(),
                description: None,
                schedule: None,
                start_date: None,
                end_date: None,
                catchup: false,
                max_active_runs: DEFAULT_MAX_ACTIVE_RUNS,
                default_args: TaskSettings::default(),
                max_active_tasks: DEFAULT_MAX_ACTIVE_TASKS,
                pools: BTreeMap::new(),
                params: serde_json::Map::new(),
                tasks: Vec::new(),
                base_dir: None,
                source: SourceMap::default(),
            },
        }
    }

    /// The DAG as the scheduler and the executor read it: tasks by index, edges, and every task's
    /// settings resolved once ([`TaskSettings::or`] its `default_args`, then Airflow's defaults).
    ///
    /// ```
    /// use bpg_pipeline::{Dag, TaskSettings, Task, TriggerRule};
    /// let dag = Dag::builder("d")
    ///     .default_args(TaskSettings::new().retries(2))
    ///     .task(Task::empty("a"))
    ///     .task(Task::empty("b").depends_on(["a"]).retries(0).trigger_rule(TriggerRule::AllDone))
    ///     .build()
    ///     .unwrap();
    /// let graph = dag.compile();
    /// let b = graph.index_of("b").unwrap();
    /// assert_eq!(graph.settings(graph.index_of("a").unwrap()).retry.retries, 2);
    /// assert_eq!(graph.settings(b).retry.retries, 0);
    /// assert_eq!(graph.trigger_rule(b), TriggerRule::AllDone);
    /// ```
    pub fn compile(&self) -> Graph {
        Graph::new(self)
    }

    /// Every problem with the DAG: duplicate ids, unknown dependencies, cycles (with their task
    /// ids), unknown pools, invalid settings. Connections are checked by
    /// [`Dag::check_connections`].
    pub fn validate(&self) -> Diagnostics {
        validate::validate(self)
    }

    /// Errors in Spark tasks' application files and inline applications (each parsed as a BPG
    /// request or SparkApplication manifest); templated ones are checked when they run.
    /// [`crate::load_dag_file`] and [`crate::parse_dag`] include these.
    pub fn check_applications(&self) -> Diagnostics {
        validate::check_applications(self, None)
    }

    /// Errors for Spark tasks naming connections `known` does not know.
    pub fn check_connections(&self, known: impl Fn(&str) -> bool) -> Diagnostics {
        validate::check_connections(self, known)
    }

    /// The task with `id`.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// Resolves a path relative to the DAG's base directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Builds a [`Dag`] in Rust.
///
/// ```
/// use std::time::Duration;
/// use bpg_pipeline::{Dag, DefaultArgs, Task, TriggerRule};
///
/// let dag = Dag::builder("daily")
///     .default_args(DefaultArgs::new().retries(2).retry_delay(Duration::from_secs(30)))
///     .task(Task::empty("start"))
///     .task(Task::shell("hello", "echo hello {{ ds }}").depends_on(["start"]))
///     .task(Task::empty("end").depends_on(["hello"]).trigger_rule(TriggerRule::AllDone))
///     .build()
///     .unwrap();
/// assert_eq!(dag.tasks.len(), 3);
/// ```
#[derive(Debug)]
pub struct DagBuilder {
    dag: Dag,
}

impl DagBuilder {
    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.dag.description = Some(text.into());
        self
    }

    /// Sets the schedule: a cron expression or a preset such as `@daily`.
    pub fn schedule(mut self, cron: impl Into<String>) -> Self {
        self.dag.schedule = Some(cron.into());
        self
    }

    /// Sets `start_date`: no scheduled interval starts before it.
    pub fn start_date(mut self, date: DateTime<Utc>) -> Self {
        self.dag.start_date = Some(date);
        self
    }

    /// Sets `end_date`: no scheduled interval starts after it.
    pub fn end_date(mut self, date: DateTime<Utc>) -> Self {
        self.dag.end_date = Some(date);
        self
    }

    /// Sets `catchup`: run every missed interval since `start_date`, not only the latest.
    pub fn catchup(mut self, on: bool) -> Self {
        self.dag.catchup = on;
        self
    }

    /// Sets `max_active_runs` (default 16).
    pub fn max_active_runs(mut self, n: usize) -> Self {
        self.dag.max_active_runs = n;
        self
    }

    /// Sets the default args.
    pub fn default_args(mut self, args: TaskSettings) -> Self {
        self.dag.default_args = args;
        self
    }

    /// Sets `max_active_tasks`.
    pub fn max_active_tasks(mut self, n: usize) -> Self {
        self.dag.max_active_tasks = n;
        self
    }

    /// Declares a pool with `slots` slots.
    pub fn pool(mut self, name: impl Into<String>, slots: u32) -> Self {
        self.dag.pools.insert(name.into(), slots);
        self
    }

    /// Sets a run parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.dag.params.insert(key.into(), value.into());
        self
    }

    /// Sets the directory relative paths are resolved against.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dag.base_dir = Some(dir.into());
        self
    }

    /// Adds a task.
    pub fn task(mut self, task: Task) -> Self {
        self.dag.tasks.push(task);
        self
    }

    /// Adds tasks.
    pub fn tasks(mut self, tasks: impl IntoIterator<Item = Task>) -> Self {
        self.dag.tasks.extend(tasks);
        self
    }

    /// Validates and returns the DAG, or every problem found.
    pub fn build(self) -> Result<Dag, Diagnostics> {
        let diagnostics = self.dag.validate();
        if diagnostics.has_errors() {
            Err(diagnostics)
        } else {
            Ok(self.dag)
        }
    }
}
