//! The thin async executor: runs one DAG run on the caller's tokio runtime.
//!
//! # The run loop
//!
//! [`Runner::run`] checks the DAG and its connections, builds each connection's backend once,
//! loads the run from the [`RunStore`] when it is there already (see *Resuming*), records the run
//! as `running`, and hands everything a run's attempts share ([`RunEnv`]) to the executor loop
//! (`run_loop.rs`). That loop is the only place that touches the pure [`Scheduler`]
//! (`scheduler.rs`, no I/O, no clock):
//!
//! 1. **Launch.** It pops every task the scheduler says is ready. `empty` tasks are decided on the
//!    spot; every other task becomes an [`attempt::Attempt`], spawned on a [`JoinSet`] only after
//!    its state change is published, so no event of an attempt precedes its `running` state.
//! 2. **Publish.** State changes the scheduler made are drained, written to the store in one call
//!    and sent as [`Event::TaskState`]s.
//! 3. **Wait** for the next of: the run's cancellation token, a notice from an attempt (it got its
//!    pool and `max_active_tasks` slots and is now running), or a finished member of the join set.
//!    A finished attempt's outcome goes back to the scheduler; when the scheduler answers
//!    *retry after `delay`*, a timer (one more join-set member, cancelled with the run) makes the
//!    task ready again when it fires.
//!
//! The loop ends when the join set is empty: nothing runs, no timer waits, nothing is ready.
//!
//! # Attempts
//!
//! An attempt (`attempt.rs`) first takes its pool slots and then a DAG-wide slot (semaphores),
//! then runs its kind under one deadline, its `execution_timeout`, counted from when it started:
//!
//! - `spark` (`spark.rs`): renders the application and builds the job, then runs the
//!   [`SparkAttempt`] protocol: submit with the try's idempotency key, record the submission
//!   before waiting on it, wait for the job to end while following its driver log, and cancel the
//!   job when the deadline passes or the run is cancelled, so it is never orphaned. `bpg submit
//!   --wait` runs the same protocol.
//! - `command` (`command.rs`): a local process in its own process group
//!   ([`bpg_core::process::ProcessGroup`]); its output lines become log events and the whole group
//!   is killed on timeout or cancellation.
//! - functions: the user's future, with its [`TaskContext`] cancelled when the attempt stops.
//!
//! # `depends_on_past`
//!
//! With a store, a task with `depends_on_past` waits before its first try (`past.rs`) until its
//! instance in the DAG's previous run is known to have succeeded or been skipped.
//!
//! # Resuming
//!
//! When the store holds the run already, `resume.rs` reads it back: finished tasks keep their
//! outcomes and XCom, `up_for_retry` tasks wait out what is left of their retry delay, and a
//! Spark try that was running is reattached to its recorded submission (or found by its
//! idempotency key) instead of being submitted again.
//!
//! # Cancelling
//!
//! Cancelling the run's token stops new launches and the retry timers. With
//! [`CancelPolicy::CancelJobs`] running attempts are told to stop (their Spark jobs are cancelled,
//! their process groups killed) and the loop collects their outcomes; with
//! [`CancelPolicy::LeaveRunning`] their futures are dropped and the run stays `running` in the
//! store for a later runner to resume.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bpg_core::{Backend, Connections, Diagnostics, Error, Result};
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
#[cfg(doc)]
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[cfg(doc)]
use crate::context::TaskContext;
use crate::context::{RunInfo, XComs};
use crate::dag::{Dag, TaskKind};
use crate::events::{Event, EventSink, EventStream, RunState};
use crate::logs::TaskLogs;
use crate::report::RunReport;
use crate::scheduler::{Graph, Scheduler, TaskIndex};
use crate::store::{RunKey, RunRecord, RunStore};
use crate::template::Templates;
use crate::validate::{self, DEFAULT_POOL, DEFAULT_POOL_SLOTS};

mod attempt;
mod command;
mod past;
mod resume;
mod run_loop;
mod spark;
mod spark_attempt;

use resume::{InFlight, Resume};
use run_loop::Executor;
pub use spark_attempt::{AttemptEnd, AttemptObserver, AttemptOutcome, SparkAttempt, Submitted};

/// What happens to running Spark jobs and processes when the run is cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CancelPolicy {
    /// Cancel every running job and kill every process (the default): nothing is orphaned.
    #[default]
    CancelJobs,
    /// Stop waiting and leave Spark jobs running, to be reattached from a durable run store.
    LeaveRunning,
}

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
    abort: CancellationToken,
    run_id: Option<String>,
    logical_date: Option<DateTime<Utc>>,
    params: serde_json::Map<String, serde_json::Value>,
    poll_interval: Duration,
    on_cancel: CancelPolicy,
    task_logs: Option<TaskLogs>,
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
            abort: CancellationToken::new(),
            run_id: None,
            logical_date: None,
            params: serde_json::Map::new(),
            poll_interval: Duration::from_secs(1),
            on_cancel: CancelPolicy::default(),
            task_logs: None,
        }
    }

    /// Keeps every try's log lines (Spark driver logs, command output, function logs, and the
    /// runner's own lines about each try) in `logs`, readable after the run and after a restart
    /// (see [`crate::logs`]). Spark tasks that follow their driver log do so even with no
    /// subscriber.
    pub fn task_logs(mut self, logs: TaskLogs) -> Self {
        self.task_logs = Some(logs);
        self
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

    /// A token that cancels the run *and its jobs*, whatever the [`CancelPolicy`]: a user's
    /// "cancel this run", as opposed to a service shutting down.
    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// Runs the DAG to the end (or until cancelled) and reports what happened.
    ///
    /// Errors only when the run cannot start: an unknown connection, a backend that cannot be
    /// built, a run store that refuses the run. Task failures are in the report.
    pub async fn run(self) -> Result<RunReport> {
        let dag = self.dag.clone();
        let graph = Arc::new(dag.compile());
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
        let task_pools = (0..graph.len())
            .map(|i| {
                let settings = graph.settings(i);
                settings
                    .pool
                    .as_ref()
                    .and_then(|p| pools.get(p).cloned())
                    .map(|s| (s, settings.pool_slots))
            })
            .collect();
        let events = match &self.task_logs {
            Some(logs) => {
                self.events
                    .with_logs(logs.clone(), run.dag_id.clone(), run.run_id.clone())
            }
            None => self.events.clone(),
        };
        let env = Arc::new(RunEnv {
            templates: Templates::new(run.clone(), xcoms.clone()),
            run,
            key,
            dag: dag.clone(),
            graph: graph.clone(),
            backends,
            xcoms,
            events,
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
        let past_gate = match &self.store {
            Some(_) if (0..graph.len()).any(|i| graph.settings(i).depends_on_past) => Some(
                (0..graph.len())
                    .map(|i| graph.settings(i).depends_on_past)
                    .collect(),
            ),
            // Without a store there are no previous runs: the dependency always passes.
            _ => None,
        };
        let scheduler = Scheduler::new(graph, logical_date.to_rfc3339());
        let mut executor = Executor::new(env, scheduler, self.cancel, self.on_cancel);
        executor.abort = self.abort;
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
