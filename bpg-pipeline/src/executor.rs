//! The thin async executor: runs a DAG on the caller's tokio runtime, one [`tokio::task`] per
//! attempt, with semaphores for `max_active_tasks` and pools and a cancellation token.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bpg_core::{
    Backend, BackendExt, Connections, Diagnostics, Error, IdempotencyKey, JobState, JobStatus,
    LogOptions, Result, SparkJob, Submission, SubmitOptions, WaitOptions,
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::{RunInfo, TaskContext, TaskError, XComs};
use crate::dag::{ApplicationSource, CommandLine, CommandTask, Dag, SparkTask, TaskFn, TaskKind};
use crate::events::{Event, EventSink, EventStream, RunState, TaskState};
use crate::report::{RunReport, TaskReport};
use crate::scheduler::{AfterAttempt, AttemptOutcome, Graph, Resumed, Scheduler, TaskIndex};
use crate::store::{RunKey, RunRecord, RunStore, StoredRun, SubmissionRecord, TaskStateChange};
use crate::template::{Templates, is_template};
use crate::validate::{self, DEFAULT_POOL, DEFAULT_POOL_SLOTS};

/// What happens to running Spark jobs and processes when the run is cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CancelPolicy {
    /// Cancel every running job and kill every process (the default): nothing is orphaned.
    #[default]
    CancelJobs,
    /// Stop waiting and leave Spark jobs running, to be reattached from a durable run store.
    LeaveRunning,
}

/// Time given to a followed log stream to deliver its last lines after the job ended.
const LOG_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs one DAG run.
///
/// ```
/// use std::sync::Arc;
/// use bpg_core::{AppType, SimBackend, SparkJob};
/// use std::collections::HashMap;
/// use bpg_core::Backend;
/// use bpg_pipeline::{Dag, Runner, Task, TaskState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py").with_label("sim/duration", "30s");
/// let dag = Dag::builder("example")
///     .task(Task::empty("start"))
///     .task(Task::spark("pi", "sim", job).depends_on(["start"]))
///     .build()
///     .unwrap();
/// // Any bpg_core::Connections: bpg-backends' ConnectionRegistry, or a map of built backends.
/// let connections = HashMap::from([("sim".to_string(), Arc::new(SimBackend::new()) as Arc<dyn Backend>)]);
/// let report = Runner::new(dag, connections).run_id("manual__1").run().await.unwrap();
/// assert!(report.is_success());
/// assert_eq!(report.tasks["pi"].state, TaskState::Success);
/// assert_eq!(report.tasks["pi"].backend.as_deref(), Some("sim"));
/// # }
/// ```
#[derive(Debug)]
pub struct Runner {
    dag: Arc<Dag>,
    connections: Arc<dyn Connections>,
    store: Option<Arc<dyn RunStore>>,
    events: EventSink,
    cancel: CancellationToken,
    run_id: Option<String>,
    logical_date: Option<DateTime<Utc>>,
    params: serde_json::Map<String, serde_json::Value>,
    poll_interval: Duration,
    on_cancel: CancelPolicy,
}

impl Runner {
    /// A runner for one run of `dag`, with Spark tasks' connections from `connections`.
    pub fn new(dag: impl Into<Arc<Dag>>, connections: impl Connections + 'static) -> Self {
        Runner {
            dag: dag.into(),
            connections: Arc::new(connections),
            store: None,
            events: EventSink::new(4096),
            cancel: CancellationToken::new(),
            run_id: None,
            logical_date: None,
            params: serde_json::Map::new(),
            poll_interval: Duration::from_secs(1),
            on_cancel: CancelPolicy::default(),
        }
    }

    /// Sets the run id (default `manual__<logical date>`).
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Sets the logical date (default: now).
    pub fn logical_date(mut self, date: DateTime<Utc>) -> Self {
        self.logical_date = Some(date);
        self
    }

    /// Overrides a DAG param for this run.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// How often Spark job status is polled, for backends that cannot watch (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Records progress (task states, submissions before they are waited on, XCom) in `store`.
    ///
    /// Without one (the default) the run's state lives only in the runner's memory, which is
    /// all a run that need not survive its process needs; pass a [`crate::InMemoryRunStore`] to
    /// inspect it afterwards, or a durable store to resume after a crash.
    ///
    /// **Resuming.** When the store already holds this run (same DAG id and [`Runner::run_id`]),
    /// the runner continues it instead of starting over, with the stored logical date and params
    /// (unless set here): finished tasks keep their recorded outcomes and XCom and do not run
    /// again; a Spark try whose submission was recorded is reattached (waited on through the
    /// recorded connection, never submitted again); a try stopped between submit and record
    /// looks its job up by idempotency key before submitting; a task that was `up_for_retry`
    /// starts its next try when its retry delay, counted from the recorded end of the failed
    /// try, has passed. A command or function task that was running runs that try again (its
    /// process died with the runner). Tasks with `depends_on_past` are gated on the store too.
    pub fn store(mut self, store: Arc<dyn RunStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// What cancelling the run does to running jobs (default: cancel them). With
    /// [`CancelPolicy::LeaveRunning`] the run is not finished: the store keeps it `running`
    /// (with its tasks' states and submissions) for a later runner to resume, and the report
    /// says `running`.
    pub fn on_cancel(mut self, policy: CancelPolicy) -> Self {
        self.on_cancel = policy;
        self
    }

    /// Keeps up to `capacity` undelivered events per subscriber (default 4096); slower
    /// subscribers skip the oldest.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.events = EventSink::new(capacity);
        self
    }

    /// Subscribes to the run's events. Subscribe before [`Runner::run`] to see them all.
    pub fn subscribe(&self) -> EventStream {
        self.events.subscribe()
    }

    /// A token that cancels the run: no new tasks start, and running ones are stopped as the
    /// [`CancelPolicy`] says. [`Runner::run`] then returns the report of the interrupted run.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs the DAG to the end (or until cancelled) and reports what happened.
    ///
    /// Errors only when the run cannot start: an unknown connection, a backend that cannot be
    /// built, a run store that refuses the run. Task failures are in the report.
    pub async fn run(self) -> Result<RunReport> {
        let dag = self.dag.clone();
        let graph = Arc::new(Graph::new(&dag));
        // Built DAGs were validated already; the full validation runs again only to explain a
        // DAG changed since into something that cannot run.
        let mut problems = if validate::runnable(&dag, &graph) {
            Diagnostics::new()
        } else {
            dag.validate()
        };
        problems
            .0
            .extend(dag.check_connections(|name| self.connections.contains(name)));
        if problems.has_errors() {
            return Err(Error::InvalidSpec(problems));
        }

        let mut backends_by_name: HashMap<&str, Arc<dyn Backend>> = HashMap::new();
        let mut backends = Vec::with_capacity(dag.tasks.len());
        for task in &dag.tasks {
            backends.push(match &task.kind {
                TaskKind::Spark(spark) => {
                    let name = spark.connection.as_str();
                    if !backends_by_name.contains_key(name) {
                        backends_by_name.insert(name, self.connections.backend(name).await?);
                    }
                    backends_by_name.get(name).cloned()
                }
                _ => None,
            });
        }

        // Without a run id there is nothing to resume: the default id is new each time.
        let stored = match (&self.store, &self.run_id) {
            (Some(store), Some(run_id)) => {
                store
                    .load_run(&RunKey {
                        dag_id: dag.dag_id.clone(),
                        run_id: run_id.clone(),
                    })
                    .await?
            }
            _ => None,
        };
        // A resumed run keeps its logical date and params: templates and idempotency keys
        // render as they did in the process that started it.
        let logical_date = self
            .logical_date
            .or(stored.as_ref().map(|s| s.run.logical_date))
            .unwrap_or_else(Utc::now);
        let run_id = self.run_id.clone().unwrap_or_else(|| {
            format!(
                "manual__{}",
                logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        });
        let mut params = dag.params.clone();
        if let Some(stored) = &stored {
            params.extend(stored.run.params.clone());
        }
        params.extend(self.params.clone());
        let run = Arc::new(RunInfo {
            dag_id: Arc::from(dag.dag_id.as_str()),
            run_id: Arc::from(run_id.as_str()),
            logical_date,
            params: params.clone(),
        });
        let key = RunKey {
            dag_id: dag.dag_id.clone(),
            run_id: run_id.clone(),
        };
        if let Some(store) = &self.store {
            store
                .begin_run(&RunRecord {
                    key: key.clone(),
                    logical_date,
                    params,
                    state: RunState::Running,
                })
                .await?;
        }

        let xcoms = Arc::new(XComs::new(graph.clone()));
        let resume = match stored {
            Some(stored) => Some(Box::new(
                Resume::new(
                    &dag,
                    &graph,
                    stored,
                    &xcoms,
                    &backends,
                    self.connections.as_ref(),
                )
                .await,
            )),
            None => None,
        };
        let mut pools: HashMap<String, Arc<Semaphore>> = dag
            .pools
            .iter()
            .map(|(name, slots)| (name.clone(), Arc::new(Semaphore::new(*slots as usize))))
            .collect();
        pools
            .entry(DEFAULT_POOL.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(DEFAULT_POOL_SLOTS as usize)));
        let task_pools = dag
            .tasks
            .iter()
            .map(|t| {
                t.pool
                    .as_ref()
                    .or(dag.default_args.pool.as_ref())
                    .and_then(|p| pools.get(p).cloned())
                    .map(|s| (s, t.pool_slots))
            })
            .collect();
        let env = Arc::new(RunEnv {
            templates: Templates::new(run.clone(), xcoms.clone()),
            run,
            key,
            dag: dag.clone(),
            graph: graph.clone(),
            backends,
            xcoms,
            events: self.events.clone(),
            store: self.store.clone(),
            active: Arc::new(Semaphore::new(dag.max_active_tasks)),
            task_pools,
            poll_interval: self.poll_interval,
            jobs_cancel: CancellationToken::new(),
            in_flight: resume.as_ref().map(|r| r.in_flight.clone()),
        });
        env.events.send(Event::RunStarted {
            dag_id: env.run.dag_id.clone(),
            run_id: env.run.run_id.clone(),
        });
        let scheduler = Scheduler::new(graph, logical_date.to_rfc3339());
        let past_gate = match &self.store {
            Some(_)
                if dag
                    .tasks
                    .iter()
                    .any(|t| t.depends_on_past_with(&dag.default_args)) =>
            {
                Some(
                    dag.tasks
                        .iter()
                        .map(|t| t.depends_on_past_with(&dag.default_args))
                        .collect(),
                )
            }
            // Without a store there are no previous runs: the dependency always passes.
            _ => None,
        };
        let mut executor = Executor::new(env, scheduler, self.cancel, self.on_cancel);
        executor.resume = resume;
        executor.past_gate = past_gate;
        executor.drive().await
    }
}

/// Everything a run's attempts share.
pub(crate) struct RunEnv {
    run: Arc<RunInfo>,
    key: RunKey,
    dag: Arc<Dag>,
    graph: Arc<Graph>,
    backends: Vec<Option<Arc<dyn Backend>>>,
    xcoms: Arc<XComs>,
    templates: Templates,
    events: EventSink,
    store: Option<Arc<dyn RunStore>>,
    active: Arc<Semaphore>,
    task_pools: Vec<Option<(Arc<Semaphore>, u32)>>,
    poll_interval: Duration,
    /// Cancelled (with [`CancelPolicy::CancelJobs`]) to make running attempts cancel their jobs.
    jobs_cancel: CancellationToken,
    /// When resuming: per task, the try an earlier process had in flight.
    in_flight: Option<Arc<[Option<InFlight>]>>,
}

/// A Spark try an earlier process of the run had started.
#[derive(Clone)]
struct InFlight {
    try_number: u32,
    /// Its recorded submission and the backend of the connection it went through; `None` when
    /// the process stopped before recording it (the idempotency key finds it then).
    submission: Option<(Submission, Arc<dyn Backend>)>,
}

/// A task's recorded state, try number and when that try ended.
type RecordedTask = (TaskState, u32, Option<DateTime<Utc>>);

/// What the store held about a run being resumed.
struct Resume {
    /// Per task: what was recorded.
    tasks: Vec<Option<RecordedTask>>,
    /// Tasks restored since the last publish whose replayed `scheduled`/`queued` changes are
    /// not published.
    replayed: Vec<TaskIndex>,
    in_flight: Arc<[Option<InFlight>]>,
}

impl Resume {
    /// Reads `stored` into per-task slots, restores its XCom, and resolves the backends of
    /// recorded submissions (the recorded connection, which a changed DAG may no longer use).
    async fn new(
        dag: &Dag,
        graph: &Graph,
        stored: StoredRun,
        xcoms: &XComs,
        backends: &[Option<Arc<dyn Backend>>],
        connections: &dyn Connections,
    ) -> Self {
        let n = graph.len();
        let mut tasks = vec![None; n];
        let mut in_flight = vec![None; n];
        for (task_id, values) in stored.xcom {
            for (key, value) in values {
                xcoms.push(&task_id, &key, value);
            }
        }
        for (task_id, record) in stored.tasks {
            let Some(i) = graph.index_of(&task_id) else {
                continue;
            };
            tasks[i] = Some((record.state, record.try_number, record.end_date));
            let TaskKind::Spark(spark) = &dag.tasks[i].kind else {
                continue;
            };
            if !matches!(record.state, TaskState::Queued | TaskState::Running) {
                continue;
            }
            let recorded = record
                .submissions
                .into_iter()
                .find(|s| s.try_number == record.try_number);
            let submission = match recorded {
                Some(s) if s.connection == spark.connection => {
                    backends[i].clone().map(|b| (s.submission, b))
                }
                Some(s) => match connections.backend(&s.connection).await {
                    Ok(b) => Some((s.submission, b)),
                    Err(e) => {
                        tracing::warn!(task = %task_id, connection = %s.connection, error = %e,
                            "cannot reach the connection of a recorded submission; looking it up by key");
                        None
                    }
                },
                None => None,
            };
            in_flight[i] = Some(InFlight {
                try_number: record.try_number,
                submission,
            });
        }
        Resume {
            tasks,
            replayed: Vec::new(),
            in_flight: in_flight.into(),
        }
    }
}

impl RunEnv {
    async fn push_xcom(
        &self,
        task: TaskIndex,
        task_id: &Arc<str>,
        key: &'static str,
        value: serde_json::Value,
    ) {
        if let Some(store) = &self.store
            && let Err(e) = store.put_xcom(&self.key, task_id, key, &value).await
        {
            tracing::warn!(task = %task_id, key, error = %e, "run store refused an XCom value");
        }
        self.xcoms.push_index(task, Cow::Borrowed(key), value);
    }
}

/// How an attempt ended, as the executor sees it.
enum Ended {
    Outcome(AttemptOutcome),
    /// The run was cancelled; `started` tells whether the attempt had begun.
    Interrupted {
        started: bool,
    },
}

struct AttemptResult {
    ended: Ended,
    message: Option<String>,
}

impl AttemptResult {
    fn success() -> Self {
        AttemptResult {
            ended: Ended::Outcome(AttemptOutcome::Success),
            message: None,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        AttemptResult {
            ended: Ended::Outcome(AttemptOutcome::Failed { retryable: true }),
            message: Some(message.into()),
        }
    }

    fn from_task_error(e: TaskError) -> Self {
        let (outcome, message) = match e {
            TaskError::Failed(m) => (AttemptOutcome::Failed { retryable: true }, m),
            TaskError::Fatal(m) => (AttemptOutcome::Failed { retryable: false }, m),
            TaskError::Skipped(m) => (AttemptOutcome::Skipped, m),
        };
        AttemptResult {
            ended: Ended::Outcome(outcome),
            message: Some(message),
        }
    }

    fn interrupted(started: bool) -> Self {
        AttemptResult {
            ended: Ended::Interrupted { started },
            message: Some("the run was cancelled".into()),
        }
    }
}

enum Done {
    Attempt(TaskIndex, AttemptResult),
    /// `depends_on_past` is met: the task may start.
    PastMet(TaskIndex),
    /// `depends_on_past` cannot be met in this run; the message says why.
    PastBlocked(TaskIndex, String),
    RetryDue(TaskIndex),
    RetryCancelled,
}

enum Notice {
    Started(TaskIndex),
}

/// Why an attempt stopped before its work finished.
enum Stop {
    Timeout(Duration),
    Cancelled,
}

struct Attempt {
    env: Arc<RunEnv>,
    index: TaskIndex,
    try_number: u32,
    notices: mpsc::UnboundedSender<Notice>,
}

impl Attempt {
    fn task_id(&self) -> &Arc<str> {
        self.env.graph.id(self.index)
    }

    async fn permits(&self) -> Option<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)> {
        // Pool first, then the DAG-wide slot: a task never holds a DAG slot while it waits for its pool.
        let pool = match &self.env.task_pools[self.index] {
            Some((pool, slots)) => Some(pool.clone().acquire_many_owned(*slots).await.ok()?),
            None => None,
        };
        let active = self.env.active.clone().acquire_owned().await.ok()?;
        Some((active, pool))
    }

    async fn run(self) -> Done {
        let index = self.index;
        let permits = tokio::select! {
            biased;
            _ = self.env.jobs_cancel.cancelled() => {
                return Done::Attempt(index, AttemptResult::interrupted(false));
            }
            p = self.permits() => p,
        };
        let Some(_permits) = permits else {
            return Done::Attempt(index, AttemptResult::failed("task slots are closed"));
        };
        let _ = self.notices.send(Notice::Started(index));
        let timeout = self.env.dag.tasks[index].execution_timeout.or(self
            .env
            .dag
            .default_args
            .execution_timeout);
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        let result = AssertUnwindSafe(self.run_kind(deadline))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| AttemptResult::failed("the task panicked"));
        Done::Attempt(index, result)
    }

    /// Resolves when the attempt must stop: its deadline passed or the run was cancelled.
    async fn stopped(&self, deadline: Option<(Instant, Duration)>) -> Stop {
        let timeout = async {
            match deadline {
                Some((at, limit)) => {
                    tokio::time::sleep_until(at).await;
                    limit
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            limit = timeout => Stop::Timeout(limit),
            _ = self.env.jobs_cancel.cancelled() => Stop::Cancelled,
        }
    }

    fn stop_result(stop: Stop) -> AttemptResult {
        match stop {
            Stop::Timeout(limit) => AttemptResult::failed(format!(
                "execution_timeout of {} exceeded",
                humantime::format_duration(limit)
            )),
            Stop::Cancelled => AttemptResult::interrupted(true),
        }
    }

    /// The attempt's work, boxed per kind: the spawned future stays small (it is copied into its
    /// task), and each attempt allocates only what its own kind needs.
    fn run_kind(&self, deadline: Option<(Instant, Duration)>) -> BoxFuture<'_, AttemptResult> {
        match &self.env.dag.tasks[self.index].kind {
            TaskKind::Empty => Box::pin(std::future::ready(AttemptResult::success())),
            TaskKind::Spark(spark) => Box::pin(self.run_spark(spark, deadline)),
            TaskKind::Command(command) => Box::pin(self.run_command(command, deadline)),
            TaskKind::Function(f) => Box::pin(self.run_function(f, deadline)),
        }
    }

    async fn run_function(
        &self,
        f: &TaskFn,
        deadline: Option<(Instant, Duration)>,
    ) -> AttemptResult {
        let ctx = TaskContext {
            run: self.env.run.clone(),
            task_id: self.task_id().clone(),
            task_index: self.index,
            try_number: self.try_number,
            xcoms: self.env.xcoms.clone(),
            events: self.env.events.clone(),
            cancel: CancellationToken::new(),
        };
        let cancel = ctx.cancel.clone();
        let work = (f.0)(ctx);
        let ended = tokio::select! {
            r = work => Ok(r),
            stop = self.stopped(deadline) => Err(stop),
        };
        match ended {
            Ok(Ok(value)) => {
                if let Some(value) = value {
                    self.env
                        .push_xcom(self.index, self.task_id(), "return_value", value)
                        .await;
                }
                AttemptResult::success()
            }
            Ok(Err(e)) => AttemptResult::from_task_error(e),
            Err(stop) => {
                cancel.cancel();
                Self::stop_result(stop)
            }
        }
    }

    /// The job this attempt submits: the application (rendered, parsed), args, and task labels.
    async fn build_job(&self, spark: &SparkTask) -> std::result::Result<Box<SparkJob>, String> {
        let env = &self.env;
        let task_id = self.task_id();
        let mut job = match &spark.application {
            ApplicationSource::Job(job) => {
                let mut job = (**job).clone();
                for arg in &mut job.arguments {
                    if let Cow::Owned(s) = env.templates.render(arg, task_id, self.try_number)? {
                        *arg = s;
                    }
                }
                job
            }
            ApplicationSource::File(path) => {
                let resolved = env.dag.resolve_path(path);
                let text = tokio::fs::read_to_string(&resolved).await.map_err(|e| {
                    format!("cannot read application file {}: {e}", resolved.display())
                })?;
                let text = env.templates.render(&text, task_id, self.try_number)?;
                parse_application(&text, Some(&resolved))?
            }
            ApplicationSource::Inline(value) => {
                let mut value = value.clone();
                env.templates
                    .render_json(&mut value, task_id, self.try_number)?;
                let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
                parse_application(&text, None).map_err(|e| format!("inline application: {e}"))?
            }
        };
        if let Some(args) = &spark.args {
            job.arguments = args
                .iter()
                .map(|a| {
                    env.templates
                        .render(a, task_id, self.try_number)
                        .map(Cow::into_owned)
                })
                .collect::<std::result::Result<_, _>>()?;
        }
        job.merge_labels(&spark.labels);
        Ok(Box::new(job))
    }

    async fn run_spark(
        &self,
        spark: &SparkTask,
        deadline: Option<(Instant, Duration)>,
    ) -> AttemptResult {
        let env = self.env.clone();
        let Some(backend) = env.backends[self.index].clone() else {
            return AttemptResult::failed(format!(
                "connection {:?} is not available",
                spark.connection
            ));
        };
        let task_id = self.task_id().clone();
        // Boxed when built: a SparkJob is large, and this future is kept small.
        let built: Box<SparkJob>;
        let job: &SparkJob = match plain_job(spark) {
            Some(job) => job,
            None => match Box::pin(self.build_job(spark)).await {
                Ok(job) => {
                    built = job;
                    &built
                }
                Err(message) => return AttemptResult::failed(message),
            },
        };
        let key =
            IdempotencyKey::for_task(&env.run.dag_id, &env.run.run_id, &task_id, self.try_number);
        let options = SubmitOptions::new().with_idempotency_key(key);
        let submitted: OnceLock<Submission> = OnceLock::new();

        // Boxed separately, so that each of the attempt's allocations stays small.
        let work = Box::pin(self.submit_and_wait(spark, &backend, job, &options, &submitted));
        let ended = tokio::select! {
            r = work => Ok(r),
            stop = Box::pin(self.stopped(deadline)) => Err(stop),
        };
        match ended {
            Ok(Ok(status)) => {
                let id = submitted
                    .get()
                    .map(|s| s.id.to_string())
                    .unwrap_or_default();
                match status.state {
                    JobState::Succeeded => AttemptResult::success(),
                    state => AttemptResult::failed(format!(
                        "Spark job {id} ended {state} ({}){}",
                        status.native_state,
                        status.message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                }
            }
            Ok(Err(e)) => {
                self.cancel_job(&backend, submitted.get(), &options).await;
                AttemptResult::failed(e.to_string())
            }
            Err(stop) => {
                self.cancel_job(&backend, submitted.get(), &options).await;
                Self::stop_result(stop)
            }
        }
    }

    /// Submits, records the submission (before waiting on it), publishes its id, then waits for
    /// the job to end while following its driver log.
    async fn submit_and_wait(
        &self,
        spark: &SparkTask,
        backend: &Arc<dyn Backend>,
        job: &SparkJob,
        options: &SubmitOptions,
        submitted: &OnceLock<Submission>,
    ) -> Result<JobStatus> {
        let env = &self.env;
        let task_id = self.task_id();
        let in_flight = env
            .in_flight
            .as_ref()
            .and_then(|f| f[self.index].as_ref())
            .filter(|f| f.try_number == self.try_number);
        if let Some(InFlight {
            submission: Some((submission, recorded_backend)),
            ..
        }) = in_flight
        {
            // Resuming: this try's job was submitted and recorded by an earlier process.
            let submission = submitted.get_or_init(|| submission.clone());
            env.events.log(
                task_id,
                self.try_number,
                format!("reattached to Spark job {}", submission.id),
            );
            // The earlier process may have stopped before publishing it.
            env.push_xcom(
                self.index,
                task_id,
                "submission_id",
                submission.id.as_str().into(),
            )
            .await;
            return self
                .follow_submission(spark, recorded_backend, submission)
                .await;
        }
        // Resuming a try stopped between submit and record: the key finds what was accepted.
        let found = match (in_flight, &options.idempotency_key) {
            (Some(_), Some(key)) if backend.capabilities().find => backend.find(key).await?,
            _ => None,
        };
        let submission = match found {
            Some(found) => {
                env.events.log(
                    task_id,
                    self.try_number,
                    format!("found Spark job {} submitted before the restart", found.id),
                );
                found
            }
            None => backend.submit(job, options).await?,
        };
        let submission = submitted.get_or_init(|| submission);
        // Recorded before waiting, so a durable store can reattach after a crash.
        if let Some(store) = &env.store {
            store
                .record_submission(
                    &env.key,
                    task_id,
                    &SubmissionRecord {
                        connection: spark.connection.clone(),
                        try_number: self.try_number,
                        submission: submission.clone(),
                    },
                )
                .await?;
        }
        let id = submission.id.as_str().to_owned();
        if env.events.has_subscribers() {
            env.events.send(Event::TaskSubmitted {
                task_id: task_id.clone(),
                try_number: self.try_number,
                submission_id: id.clone(),
                connection: spark.connection.clone(),
            });
        }
        env.push_xcom(self.index, task_id, "submission_id", id.into())
            .await;
        self.follow_submission(spark, backend, submission).await
    }

    /// Waits for a submitted job to end, then publishes its final state and application id.
    async fn follow_submission(
        &self,
        spark: &SparkTask,
        backend: &Arc<dyn Backend>,
        submission: &Submission,
    ) -> Result<JobStatus> {
        let env = &self.env;
        let task_id = self.task_id();
        let status = self.wait_with_logs(spark, backend, submission).await?;
        env.push_xcom(
            self.index,
            task_id,
            "state",
            status.native_state.clone().into(),
        )
        .await;
        if let Some(app_id) = &status.spark_application_id {
            env.push_xcom(self.index, task_id, "application_id", app_id.clone().into())
                .await;
        }
        Ok(status)
    }

    /// Cancels the attempt's job so it is never orphaned. When the submit itself was interrupted
    /// the backend may still have accepted it: the idempotency key finds it.
    async fn cancel_job(
        &self,
        backend: &Arc<dyn Backend>,
        submitted: Option<&Submission>,
        options: &SubmitOptions,
    ) {
        let id = match (submitted, &options.idempotency_key) {
            (Some(s), _) => Some(s.id.clone()),
            (None, Some(key)) if backend.capabilities().find => match backend.find(key).await {
                Ok(found) => found.map(|s| s.id),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot look up an interrupted submission");
                    None
                }
            },
            (None, _) => {
                tracing::warn!(
                    task = %self.task_id(),
                    backend = backend.name(),
                    "the submit did not complete and this backend cannot look submissions up by key: a job it accepted may keep running"
                );
                None
            }
        };
        if let Some(id) = id {
            if let Err(e) = backend.cancel(&id).await {
                tracing::warn!(job = %id, error = %e, "cancelling the Spark job failed");
                self.env.events.log(
                    self.task_id(),
                    self.try_number,
                    format!("cancelling Spark job {id} failed: {e}"),
                );
            } else {
                self.env.events.log(
                    self.task_id(),
                    self.try_number,
                    format!("cancelled Spark job {id}"),
                );
            }
        }
    }

    async fn wait_with_logs(
        &self,
        spark: &SparkTask,
        backend: &Arc<dyn Backend>,
        submission: &Submission,
    ) -> Result<JobStatus> {
        let options = WaitOptions::default().poll_interval(self.env.poll_interval);
        let wait = backend.wait_for_terminal(&submission.id, &options);
        let follow = spark.follow_logs
            && self.env.events.has_subscribers()
            && backend.capabilities().follow_logs;
        if !follow {
            return wait.await;
        }
        let mut logs = Box::pin(self.follow_logs(backend, submission));
        tokio::pin!(wait);
        let mut logs_done = false;
        let status = loop {
            tokio::select! {
                status = &mut wait => break status,
                _ = &mut logs, if !logs_done => logs_done = true,
            }
        };
        if !logs_done {
            let _ = tokio::time::timeout(LOG_DRAIN_GRACE, logs).await;
        }
        status
    }

    async fn follow_logs(&self, backend: &Arc<dyn Backend>, submission: &Submission) {
        let task_id = self.task_id();
        match backend.logs(&submission.id, &LogOptions::follow()).await {
            Ok(mut lines) => {
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(line) => self.env.events.log(task_id, self.try_number, line.text),
                        Err(e) => {
                            self.env.events.log(
                                task_id,
                                self.try_number,
                                format!("driver log stream ended: {e}"),
                            );
                            break;
                        }
                    }
                }
            }
            Err(e) => self.env.events.log(
                task_id,
                self.try_number,
                format!("driver logs unavailable: {e}"),
            ),
        }
    }

    async fn run_command(
        &self,
        task: &CommandTask,
        deadline: Option<(Instant, Duration)>,
    ) -> AttemptResult {
        let env = &self.env;
        let task_id = self.task_id().clone();
        let render = |s: &str| {
            env.templates
                .render(s, &task_id, self.try_number)
                .map(|c| c.into_owned())
        };
        let mut command = match &task.command {
            CommandLine::Shell(line) => match render(line) {
                Ok(line) => {
                    let mut c = tokio::process::Command::new("sh");
                    c.arg("-c").arg(line);
                    c
                }
                Err(e) => return AttemptResult::failed(e),
            },
            CommandLine::Argv(argv) => {
                let argv: std::result::Result<Vec<String>, String> =
                    argv.iter().map(|a| render(a)).collect();
                match argv {
                    Ok(argv) if !argv.is_empty() => {
                        let mut c = tokio::process::Command::new(&argv[0]);
                        c.args(&argv[1..]);
                        c
                    }
                    Ok(_) => return AttemptResult::failed("empty command"),
                    Err(e) => return AttemptResult::failed(e),
                }
            }
        };
        for (k, v) in &task.env {
            match render(v) {
                Ok(v) => {
                    command.env(k, v);
                }
                Err(e) => return AttemptResult::failed(e),
            }
        }
        command
            .env("BPG_DAG_ID", env.run.dag_id.as_ref())
            .env("BPG_RUN_ID", env.run.run_id.as_ref())
            .env("BPG_TASK_ID", task_id.as_ref())
            .env("BPG_TRY_NUMBER", self.try_number.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = task
            .cwd
            .as_deref()
            .map(|d| env.dag.resolve_path(d))
            .or(env.dag.base_dir.clone())
        {
            command.current_dir(dir);
        }
        #[cfg(unix)]
        command.process_group(0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return AttemptResult::failed(format!("cannot start command: {e}")),
        };
        let pump = {
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let events = env.events.clone();
            let task_id = task_id.clone();
            let try_number = self.try_number;
            tokio::spawn(async move {
                futures::join!(
                    pump_lines(stdout, &events, &task_id, try_number),
                    pump_lines(stderr, &events, &task_id, try_number)
                );
            })
        };
        let ended = tokio::select! {
            status = child.wait() => Ok(status),
            stop = self.stopped(deadline) => Err(stop),
        };
        let result = match ended {
            Ok(Ok(status)) if status.success() => AttemptResult::success(),
            Ok(Ok(status)) => AttemptResult::failed(format!("command exited with {status}")),
            Ok(Err(e)) => AttemptResult::failed(format!("waiting for the command failed: {e}")),
            Err(stop) => {
                kill_process_group(&mut child).await;
                Self::stop_result(stop)
            }
        };
        // Output still buffered is delivered; a grandchild holding the pipes open is not waited for.
        let abort = pump.abort_handle();
        if tokio::time::timeout(LOG_DRAIN_GRACE, pump).await.is_err() {
            abort.abort();
        }
        result
    }
}

async fn pump_lines<R: tokio::io::AsyncRead + Unpin>(
    reader: Option<R>,
    events: &EventSink,
    task_id: &Arc<str>,
    try_number: u32,
) {
    use tokio::io::AsyncBufReadExt;
    let Some(reader) = reader else { return };
    let mut lines = tokio::io::BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        events.log(task_id, try_number, line);
    }
}

async fn kill_process_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // The whole group: `sh -c` children must not outlive the task.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Waits until task `i`'s `depends_on_past` is decided: met when the same task's instance in the
/// DAG's previous run succeeded or was skipped (or there is none); blocked when it ended
/// otherwise, or its run ended without it finishing. While the previous run is still going, the
/// instance is looked at again every poll interval.
async fn past_met(
    env: Arc<RunEnv>,
    store: Arc<dyn RunStore>,
    i: TaskIndex,
    stop: CancellationToken,
) -> Done {
    let task_id = env.graph.id(i).clone();
    loop {
        let previous = match store.previous_task_instance(&env.key, &task_id).await {
            Ok(previous) => previous,
            Err(e) => {
                return Done::PastBlocked(
                    i,
                    format!("depends_on_past: cannot read the previous run: {e}"),
                );
            }
        };
        let Some(previous) = previous else {
            return Done::PastMet(i);
        };
        match previous.state {
            TaskState::Success | TaskState::Skipped => return Done::PastMet(i),
            state if state.is_finished() => {
                return Done::PastBlocked(
                    i,
                    format!("depends_on_past: its instance in the previous run ended {state}"),
                );
            }
            state => {
                let previous_run = match store.list_runs(&env.key.dag_id).await {
                    Ok(runs) => runs
                        .into_iter()
                        .filter(|r| r.logical_date < env.run.logical_date)
                        .max_by(|a, b| a.logical_date.cmp(&b.logical_date)),
                    Err(e) => {
                        return Done::PastBlocked(
                            i,
                            format!("depends_on_past: cannot read the previous run: {e}"),
                        );
                    }
                };
                if previous_run.is_none_or(|r| r.state != RunState::Running) {
                    return Done::PastBlocked(
                        i,
                        format!("depends_on_past: the previous run ended with this task {state}"),
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(env.poll_interval) => {}
            _ = stop.cancelled() => return Done::RetryCancelled,
        }
    }
}

/// A job built in Rust with nothing to render or merge: used as it is, without a copy.
fn plain_job(spark: &SparkTask) -> Option<&SparkJob> {
    match &spark.application {
        ApplicationSource::Job(job)
            if spark.args.is_none()
                && spark.labels.is_empty()
                && !job.arguments.iter().any(|a| is_template(a)) =>
        {
            Some(job)
        }
        _ => None,
    }
}

fn parse_application(text: &str, file: Option<&Path>) -> std::result::Result<SparkJob, String> {
    bpg_core::formats::parse_application(text, file)
        .map(|parsed| parsed.job)
        .map_err(|d| d.to_string())
}

/// The executor loop: feeds the scheduler, spawns attempts and timers, publishes changes.
struct Executor {
    env: Arc<RunEnv>,
    scheduler: Scheduler,
    cancel: CancellationToken,
    on_cancel: CancelPolicy,
    join: JoinSet<Done>,
    notices_tx: mpsc::UnboundedSender<Notice>,
    notices: mpsc::UnboundedReceiver<Notice>,
    messages: Vec<Option<String>>,
    changes: Vec<(TaskIndex, TaskState)>,
    timer_cancel: CancellationToken,
    /// Set when resuming a run: what an earlier process recorded.
    resume: Option<Box<Resume>>,
    /// Set when some task has `depends_on_past` (and there is a store): per task, whether its
    /// previous-run instance must still be checked before it first starts.
    past_gate: Option<Box<[bool]>>,
    /// Attempts launched but not yet spawned: they start only after their `running` state is
    /// published, so no event of theirs (a submission, a log line) precedes it.
    to_spawn: Vec<Attempt>,
}

impl Executor {
    fn new(
        env: Arc<RunEnv>,
        scheduler: Scheduler,
        cancel: CancellationToken,
        on_cancel: CancelPolicy,
    ) -> Self {
        let n = env.graph.len();
        let (notices_tx, notices) = mpsc::unbounded_channel();
        Executor {
            env,
            scheduler,
            cancel,
            on_cancel,
            join: JoinSet::new(),
            notices_tx,
            notices,
            messages: vec![None; n],
            changes: Vec::new(),
            timer_cancel: CancellationToken::new(),
            resume: None,
            past_gate: None,
            to_spawn: Vec::new(),
        }
    }

    async fn drive(mut self) -> Result<RunReport> {
        let mut cancelled = false;
        loop {
            self.launch_ready();
            self.publish().await;
            for attempt in self.to_spawn.drain(..) {
                self.join.spawn(attempt.run());
            }
            if self.join.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    cancelled = true;
                    break;
                }
                Some(notice) = self.notices.recv() => self.notice(notice),
                Some(done) = self.join.join_next() => self.done(done),
            }
        }
        if cancelled {
            self.timer_cancel.cancel();
            match self.on_cancel {
                CancelPolicy::CancelJobs => self.env.jobs_cancel.cancel(),
                CancelPolicy::LeaveRunning => self.join.abort_all(),
            }
            while let Some(done) = self.join.join_next().await {
                while let Ok(notice) = self.notices.try_recv() {
                    self.notice(notice);
                }
                self.done(done);
            }
            while let Ok(notice) = self.notices.try_recv() {
                self.notice(notice);
            }
            self.publish().await;
        }
        let left_running = cancelled && self.on_cancel == CancelPolicy::LeaveRunning;
        let state = match self.scheduler.run_state() {
            // Left to be resumed: the store keeps the run `running`.
            RunState::Running if left_running => RunState::Running,
            RunState::Running => RunState::Failed,
            state => state,
        };
        if let Some(store) = &self.env.store
            && !(left_running && state == RunState::Running)
            && let Err(e) = store.finish_run(&self.env.key, state).await
        {
            tracing::warn!(error = %e, "run store refused the run's final state");
        }
        self.env.events.send(Event::RunFinished { state });
        Ok(self.report(state))
    }

    fn launch_ready(&mut self) {
        if self.cancel.is_cancelled() {
            return;
        }
        while let Some(i) = self.scheduler.pop_ready() {
            if let Some(resume) = &mut self.resume
                && let Some((stored, try_number, ended)) = resume.tasks[i].take()
            {
                if !matches!(stored, TaskState::None | TaskState::Scheduled) {
                    // Replaying it made it `scheduled` again: not news, and the store keeps
                    // the recorded try's timestamps.
                    resume.replayed.push(i);
                }
                match self.scheduler.resume(i, stored, try_number) {
                    Resumed::Finished(_) => continue,
                    Resumed::Retry { delay } => {
                        // The retry schedule continues from when the recorded try ended.
                        let elapsed = ended
                            .and_then(|at| (Utc::now() - at).to_std().ok())
                            .unwrap_or_default();
                        self.retry_after(i, delay.saturating_sub(elapsed));
                        continue;
                    }
                    Resumed::Continue => {}
                }
            }
            if let Some(gate) = &mut self.past_gate
                && std::mem::take(&mut gate[i])
                && let Some(store) = &self.env.store
            {
                self.join.spawn(past_met(
                    self.env.clone(),
                    store.clone(),
                    i,
                    self.timer_cancel.clone(),
                ));
                continue;
            }
            self.launch(i);
        }
    }

    /// Starts an attempt of task `i`, taken from the ready queue.
    fn launch(&mut self, i: TaskIndex) {
        if matches!(self.env.dag.tasks[i].kind, TaskKind::Empty) {
            // Like Airflow's EmptyOperator: decided by the scheduler, never sent to a worker.
            self.scheduler.attempt_started(i);
            self.scheduler.attempt_finished(i, AttemptOutcome::Success);
            return;
        }
        let attempt = Attempt {
            env: self.env.clone(),
            index: i,
            try_number: self.scheduler.try_number(i),
            notices: self.notices_tx.clone(),
        };
        self.to_spawn.push(attempt);
    }

    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Started(i) => self.scheduler.attempt_started(i),
        }
    }

    fn done(&mut self, done: std::result::Result<Done, tokio::task::JoinError>) {
        let Ok(done) = done else {
            // Aborted on purpose (CancelPolicy::LeaveRunning): the task keeps its last state.
            return;
        };
        match done {
            Done::Attempt(i, result) => {
                // The attempt's Started notice is sent before it ends: apply it first.
                while let Ok(notice) = self.notices.try_recv() {
                    self.notice(notice);
                }
                self.messages[i] = result.message;
                let outcome = match result.ended {
                    Ended::Outcome(outcome) => outcome,
                    Ended::Interrupted { started: false } => return,
                    Ended::Interrupted { started: true } => {
                        AttemptOutcome::Failed { retryable: false }
                    }
                };
                if let AfterAttempt::Retry { delay } = self.scheduler.attempt_finished(i, outcome) {
                    let task_id = self.env.graph.id(i).clone();
                    let try_number = self.scheduler.try_number(i);
                    if self.env.events.has_subscribers() {
                        self.env.events.send(Event::TaskRetry {
                            task_id,
                            try_number,
                            delay,
                            error: self.messages[i].clone().unwrap_or_default(),
                        });
                    }
                    self.retry_after(i, delay);
                }
            }
            Done::RetryDue(i) => self.scheduler.retry_due(i),
            Done::PastMet(i) => {
                if !self.cancel.is_cancelled() {
                    self.launch(i);
                }
            }
            Done::PastBlocked(i, message) => {
                self.messages[i] = Some(message);
                self.scheduler.block(i);
            }
            Done::RetryCancelled => {}
        }
    }

    fn retry_after(&mut self, i: TaskIndex, delay: Duration) {
        let cancel = self.timer_cancel.clone();
        self.join.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => Done::RetryDue(i),
                _ = cancel.cancelled() => Done::RetryCancelled,
            }
        });
    }

    async fn publish(&mut self) {
        self.scheduler.drain_changes_into(&mut self.changes);
        if self.changes.is_empty() {
            return;
        }
        let mut changes = std::mem::take(&mut self.changes);
        if let Some(resume) = &mut self.resume
            && !resume.replayed.is_empty()
        {
            let mut replayed = vec![false; self.env.graph.len()];
            for i in resume.replayed.drain(..) {
                replayed[i] = true;
            }
            changes.retain(|&(i, state)| {
                !(replayed[i] && matches!(state, TaskState::Scheduled | TaskState::Queued))
            });
        }
        if let Some(store) = &self.env.store {
            let records: Vec<TaskStateChange<'_>> = changes
                .iter()
                .map(|&(i, state)| TaskStateChange {
                    task_id: self.env.graph.id(i),
                    state,
                    try_number: self.scheduler.try_number(i),
                })
                .collect();
            if let Err(e) = store.set_task_states(&self.env.key, &records).await {
                tracing::warn!(error = %e, "run store refused task states");
            }
        }
        if self.env.events.has_subscribers() {
            for &(i, state) in &changes {
                let try_number = self.scheduler.try_number(i);
                let task_id = self.env.graph.id(i);
                let message = match state {
                    TaskState::Failed
                    | TaskState::UpForRetry
                    | TaskState::Skipped
                    | TaskState::None => self.messages[i].clone(),
                    _ => None,
                };
                self.env.events.send(Event::TaskState {
                    task_id: task_id.clone(),
                    state,
                    try_number,
                    message,
                });
            }
        }
        self.changes = changes;
    }

    fn report(&self, state: RunState) -> RunReport {
        let dag = &self.env.dag;
        let tasks = dag
            .tasks
            .iter()
            .enumerate()
            .map(|(i, task)| {
                // A Spark task's last submission is its `submission_id` XCom.
                let (submission_id, backend) = match &task.kind {
                    TaskKind::Spark(spark) => match self.env.xcoms.string_at(i, "submission_id") {
                        Some(id) => (Some(id), Some(spark.connection.clone())),
                        None => (None, None),
                    },
                    _ => (None, None),
                };
                (
                    task.id.clone(),
                    TaskReport {
                        state: self.scheduler.state(i),
                        try_number: self.scheduler.try_number(i),
                        submission_id,
                        backend,
                    },
                )
            })
            .collect();
        RunReport {
            dag_id: dag.dag_id.clone(),
            run_id: self.env.run.run_id.to_string(),
            state,
            tasks,
        }
    }
}
