//! [`DagScheduler`]: a long-running service that creates runs of a set of DAGs on their schedules
//! (and on manual triggers), runs them with [`Runner`] against one [`RunStore`], and shuts down
//! gracefully.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bpg_core::{Connections, Diagnostic, Diagnostics, Error, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dag::Dag;
use crate::events::{RunState, TaskState};
use crate::executor::{CancelPolicy, Runner};
use crate::logs::TaskLogs;
use crate::report::RunReport;
use crate::schedule::{DagRunInfo, DataInterval, Schedule, ScheduleBounds, is_scheduled_run_id};
use crate::store::{InMemoryRunStore, RunKey, RunRecord, RunStore, TaskStateChange};

pub use crate::dag::DEFAULT_MAX_ACTIVE_RUNS;

/// A DAG with what the scheduler needs beyond the DAG itself: its parsed schedule, start and end
/// dates, catchup and `max_active_runs`.
#[derive(Clone, Debug)]
pub struct ScheduledDag {
    dag: Arc<Dag>,
    schedule: Option<Schedule>,
    bounds: ScheduleBounds,
    max_active_runs: usize,
}

impl ScheduledDag {
    /// Takes the schedule, `start_date`, `end_date`, `catchup` and `max_active_runs` from the
    /// DAG (the setters below override them). A DAG without a schedule runs only when
    /// triggered. An invalid schedule is an error naming the DAG's file and the `schedule` field.
    pub fn new(dag: impl Into<Arc<Dag>>) -> std::result::Result<Self, Diagnostics> {
        let dag = dag.into();
        let schedule = match &dag.schedule {
            Some(text) => match text.parse::<Schedule>() {
                Ok(schedule) => Some(schedule),
                Err(e) => {
                    let mut d = Diagnostic::error("schedule", e.to_string());
                    if let Some(file) = &dag.source.file {
                        d = d.with_file(file);
                    }
                    if let Some((line, column)) = dag.source.position("schedule") {
                        d = d.at(line, column);
                    }
                    return Err(Diagnostics::from(d));
                }
            },
            None => None,
        };
        Ok(ScheduledDag {
            bounds: ScheduleBounds {
                start_date: dag.start_date,
                end_date: dag.end_date,
                catchup: dag.catchup,
            },
            max_active_runs: dag.max_active_runs.max(1),
            dag,
            schedule,
        })
    }

    /// Loads every `*.yaml`/`*.yml` pipeline file of `dir` (not recursively), in name order.
    /// Every problem in every file is reported, and two files may not declare the same `dag_id`.
    pub fn load_dir(dir: impl AsRef<Path>) -> std::result::Result<Vec<ScheduledDag>, Diagnostics> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Diagnostics::from(
                Diagnostic::error("", format!("cannot read the pipeline folder: {e}"))
                    .with_file(dir),
            )
        })?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut problems = Diagnostics::new();
        let mut dags: Vec<ScheduledDag> = Vec::new();
        let mut seen: HashMap<String, std::path::PathBuf> = HashMap::new();
        for file in files {
            let loaded = crate::yaml::load_dag_file(&file).and_then(ScheduledDag::new);
            match loaded {
                Ok(dag) => match seen.get(&dag.dag.dag_id) {
                    Some(first) => problems.push(
                        Diagnostic::error(
                            "dag_id",
                            format!(
                                "dag_id {:?} is already declared in {}; each DAG needs its own id",
                                dag.dag.dag_id,
                                first.display()
                            ),
                        )
                        .with_file(&file),
                    ),
                    None => {
                        seen.insert(dag.dag.dag_id.clone(), file.clone());
                        dags.push(dag);
                    }
                },
                Err(d) => problems.0.extend(d.0),
            }
        }
        if problems.has_errors() {
            Err(problems)
        } else {
            Ok(dags)
        }
    }

    /// Replaces the schedule (`None`: manual triggers only).
    pub fn schedule(mut self, schedule: Option<Schedule>) -> Self {
        self.schedule = schedule;
        self
    }

    /// No interval starts before `date`; with `catchup`, intervals since `date` are run.
    pub fn start_date(mut self, date: DateTime<Utc>) -> Self {
        self.bounds.start_date = Some(date);
        self
    }

    /// No interval starts after `date`.
    pub fn end_date(mut self, date: DateTime<Utc>) -> Self {
        self.bounds.end_date = Some(date);
        self
    }

    /// Runs every missed interval since the start date, not only the latest (default: the DAG's
    /// `catchup`, off unless set).
    pub fn catchup(mut self, on: bool) -> Self {
        self.bounds.catchup = on;
        self
    }

    /// At most `n` runs of this DAG at once, scheduled and manual together (default 16; at
    /// least 1).
    pub fn max_active_runs(mut self, n: usize) -> Self {
        self.max_active_runs = n.max(1);
        self
    }

    /// The DAG.
    pub fn dag(&self) -> &Arc<Dag> {
        &self.dag
    }

    /// The schedule, if the DAG has one.
    pub fn parsed_schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The next scheduled run after the ones in `runs` (the DAG's stored runs), as the scheduler
    /// would create it at `now`: what Airflow shows as `next_dagrun`. `None` without a schedule
    /// or past the end date.
    pub fn next_run(&self, runs: &[RunRecord], now: DateTime<Utc>) -> Option<DagRunInfo> {
        let last = self.last_interval(runs);
        self.schedule
            .as_ref()?
            .next_dagrun_info(last.as_ref(), &self.bounds, now)
    }

    /// The data interval of the latest scheduled run among `runs`: where the schedule goes on.
    fn last_interval(&self, runs: &[RunRecord]) -> Option<DataInterval> {
        let schedule = self.schedule.as_ref()?;
        runs.iter()
            .filter(|r| is_scheduled_run_id(&r.key.run_id))
            .map(|r| r.logical_date)
            .max()
            .and_then(|date| schedule.interval_starting(date))
    }

    /// The scheduled run's data interval for a run at `logical_date` (`None` without a schedule).
    pub fn data_interval(&self, logical_date: DateTime<Utc>) -> Option<DataInterval> {
        self.schedule.as_ref()?.interval_starting(logical_date)
    }

    /// At most this many runs at once.
    pub fn active_runs_limit(&self) -> usize {
        self.max_active_runs
    }
}

/// A manual run to trigger through a [`SchedulerHandle`].
#[derive(Clone, Debug, Default)]
pub struct ManualRun {
    params: serde_json::Map<String, serde_json::Value>,
    logical_date: Option<DateTime<Utc>>,
    run_id: Option<String>,
}

impl ManualRun {
    /// A run with the DAG's params, at the current time.
    pub fn new() -> Self {
        ManualRun::default()
    }

    /// Overrides a DAG param for this run.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Sets the logical date (default: the time of the trigger).
    pub fn logical_date(mut self, date: DateTime<Utc>) -> Self {
        self.logical_date = Some(date);
        self
    }

    /// Sets the run id (default `manual__<logical date>`).
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
}

/// A request to the running scheduler loop.
enum Command {
    Trigger {
        dag_id: String,
        run: ManualRun,
        reply: oneshot::Sender<Result<String>>,
    },
    Pause {
        dag_id: String,
        paused: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Cancel {
        key: RunKey,
        reply: oneshot::Sender<Result<()>>,
    },
    Clear {
        key: RunKey,
        task_ids: Vec<String>,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A manual run waiting for its DAG's `max_active_runs` (or for the DAG to be unpaused). It is
/// not in the store until it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedRun {
    /// Run id.
    pub run_id: String,
    /// Logical date.
    pub logical_date: DateTime<Utc>,
    /// Params it was triggered with.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
}

/// What the scheduler loop shares with its handles: read by [`SchedulerHandle`]'s queries,
/// written only by the loop (and under one lock, so a query sees one moment).
#[derive(Debug, Default)]
struct Shared {
    paused: HashSet<String>,
    queued: HashMap<String, VecDeque<QueuedRun>>,
    /// Runs going, with how they were started (a run is here before its runner has stored it).
    active: HashMap<RunKey, QueuedRun>,
    /// How many times each run was started by this scheduler (a cleared run starts again).
    starts: HashMap<RunKey, u32>,
}

impl Shared {
    fn set_paused(&mut self, dag_id: String, paused: bool) {
        if paused {
            self.paused.insert(dag_id);
        } else {
            self.paused.remove(&dag_id);
        }
    }

    fn is_queued(&self, key: &RunKey) -> bool {
        self.queued
            .get(&key.dag_id)
            .is_some_and(|q| q.iter().any(|r| r.run_id == key.run_id))
    }
}

/// Drives a running [`DagScheduler`]: triggers, pauses, cancels and clears runs, and tells what
/// is queued and running. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Shared>>,
}

impl SchedulerHandle {
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Unavailable {
            message: "the DAG scheduler has stopped".into(),
        };
        self.tx.send(command(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a manual run of `dag_id` and returns its run id. It starts as soon as the DAG's
    /// `max_active_runs` allows (and the DAG is not paused). Errors for an unknown DAG, a run id
    /// already used, or a scheduler that has stopped.
    pub async fn trigger(&self, dag_id: &str, run: ManualRun) -> Result<String> {
        let dag_id = dag_id.to_owned();
        self.ask(|reply| Command::Trigger { dag_id, run, reply })
            .await
    }

    /// Pauses or unpauses a DAG, as Airflow's `is_paused`: a paused DAG creates no scheduled runs
    /// and starts no queued ones; runs already going go on. The pause is recorded in the run
    /// store, so a scheduler started again on the same store keeps it.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let dag_id = dag_id.to_owned();
        self.ask(|reply| Command::Pause {
            dag_id,
            paused,
            reply,
        })
        .await
    }

    /// Cancels a run (Airflow's "mark failed"): a running run stops its tasks and cancels their
    /// Spark jobs, whatever the shutdown policy, and ends `failed`; a queued run never starts and
    /// is recorded `failed`; a finished run is marked `failed`. Errors for an unknown run.
    pub async fn cancel_run(&self, dag_id: &str, run_id: &str) -> Result<()> {
        let key = RunKey::new(dag_id, run_id);
        self.ask(|reply| Command::Cancel { key, reply }).await
    }

    /// Clears tasks of a finished run (Airflow's `clearTaskInstances` for exactly `task_ids`;
    /// callers add downstream tasks themselves, with [`crate::Graph::downstream`]): they go back
    /// to `none` and the run runs again under its run id, each cleared task with a new try. Tasks
    /// not cleared keep their state. Errors for an unknown run or task, and for a run that is
    /// queued or running.
    pub async fn clear(&self, dag_id: &str, run_id: &str, task_ids: Vec<String>) -> Result<()> {
        let key = RunKey::new(dag_id, run_id);
        self.ask(|reply| Command::Clear {
            key,
            task_ids,
            reply,
        })
        .await
    }

    /// Whether the scheduler loop is still taking commands.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Whether `dag_id` is paused.
    pub fn is_paused(&self, dag_id: &str) -> bool {
        self.shared().paused.contains(dag_id)
    }

    /// The manual runs of `dag_id` waiting to start, oldest first.
    pub fn queued_runs(&self, dag_id: &str) -> Vec<QueuedRun> {
        self.shared()
            .queued
            .get(dag_id)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The runs of `dag_id` going now, with how they were started. A run is listed here from
    /// the moment it leaves the queue, before its runner has written it to the store.
    pub fn active_runs(&self, dag_id: &str) -> Vec<QueuedRun> {
        self.shared()
            .active
            .iter()
            .filter(|(k, _)| k.dag_id == dag_id)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// How many times this scheduler has started the run (0: never, as for runs of an earlier
    /// process). A cache of a finished run's tasks is good while this does not change.
    pub fn starts(&self, dag_id: &str, run_id: &str) -> u32 {
        let key = RunKey::new(dag_id, run_id);
        self.shared().starts.get(&key).copied().unwrap_or(0)
    }

    /// Whether the run is going in this scheduler now.
    pub fn is_active(&self, dag_id: &str, run_id: &str) -> bool {
        self.shared()
            .active
            .contains_key(&RunKey::new(dag_id, run_id))
    }
}

/// What the scheduler did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A run was created and started (or, at start-up, an unfinished run was resumed).
    RunStarted {
        /// DAG id.
        dag_id: String,
        /// Run id.
        run_id: String,
        /// Logical date.
        logical_date: DateTime<Utc>,
        /// The data interval, for scheduled runs.
        data_interval: Option<DataInterval>,
    },
    /// A run ended (or was interrupted by shutdown).
    RunFinished(Box<RunReport>),
    /// A run could not start (an unknown connection, a store that refused it).
    RunNotStarted {
        /// DAG id.
        dag_id: String,
        /// Run id.
        run_id: String,
        /// Why.
        error: String,
    },
}

/// Runs a set of DAGs on their schedules until asked to stop.
///
/// Times come from a clock that starts at the wall-clock time (or [`DagScheduler::start_time`])
/// and advances with tokio's clock, so tests on a paused clock see days pass in milliseconds.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use std::collections::HashMap;
/// use bpg_core::Backend;
/// use bpg_pipeline::{Dag, DagScheduler, InMemoryRunStore, RunStore, ScheduledDag, Task};
/// use chrono::{TimeZone, Utc};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let dag = Dag::builder("hourly").schedule("@hourly").task(Task::empty("tick")).build().unwrap();
/// let store = Arc::new(InMemoryRunStore::new());
/// // No Spark tasks, so no connections: an empty map of backends.
/// let scheduler = DagScheduler::new(HashMap::<String, Arc<dyn Backend>>::new())
///     .store(store.clone())
///     .start_time(Utc.with_ymd_and_hms(2025, 1, 1, 0, 30, 0).unwrap())
///     .dag(ScheduledDag::new(dag).unwrap());
/// let stop = CancellationToken::new();
/// let service = tokio::spawn(scheduler.run(stop.clone()));
/// tokio::time::sleep(Duration::from_secs(2 * 3600)).await; // 02:30 on the scheduler's clock
/// stop.cancel();
/// service.await.unwrap().unwrap();
/// // No catchup: at 00:30 the latest complete interval, [23:00, 00:00), runs at once; then
/// // [00:00, 01:00) runs at 01:00 and [01:00, 02:00) at 02:00.
/// let runs = store.list_runs("hourly").await.unwrap();
/// let ids: Vec<_> = runs.iter().map(|r| r.key.run_id.as_str()).collect();
/// assert_eq!(
///     ids,
///     [
///         "scheduled__2024-12-31T23:00:00Z",
///         "scheduled__2025-01-01T00:00:00Z",
///         "scheduled__2025-01-01T01:00:00Z",
///     ]
/// );
/// # }
/// ```
#[derive(Debug)]
pub struct DagScheduler {
    dags: Vec<ScheduledDag>,
    connections: Arc<dyn Connections>,
    store: Arc<dyn RunStore>,
    on_shutdown: CancelPolicy,
    start_time: Option<DateTime<Utc>>,
    resume_unfinished: bool,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<SchedulerEvent>,
    task_logs: Option<TaskLogs>,
}

/// The scheduler's clock: wall-clock time that advances with tokio's clock.
#[derive(Clone, Copy, Debug)]
struct Clock {
    base_utc: DateTime<Utc>,
    base_instant: Instant,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        self.base_utc + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        match (t - self.base_utc).to_std() {
            Ok(ahead) => self.base_instant + ahead,
            Err(_) => self.base_instant,
        }
    }
}

/// One DAG's state in the scheduler loop.
struct DagSlot {
    dag: ScheduledDag,
    /// The latest scheduled run's data interval.
    last: Option<DataInterval>,
    active: usize,
}

/// A run task's outcome.
type RunOutcome = Result<RunReport>;

impl DagScheduler {
    /// A scheduler with no DAGs yet, an in-memory store, and the shutdown policy
    /// [`CancelPolicy::CancelJobs`].
    pub fn new(connections: impl Connections + 'static) -> Self {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        DagScheduler {
            dags: Vec::new(),
            connections: Arc::new(connections),
            store: Arc::new(InMemoryRunStore::new()),
            on_shutdown: CancelPolicy::CancelJobs,
            start_time: None,
            resume_unfinished: true,
            commands_tx,
            commands,
            shared: Arc::default(),
            events: broadcast::channel(1024).0,
            task_logs: None,
        }
    }

    /// Keeps every run's task logs in `logs` (see [`Runner::task_logs`]).
    pub fn task_logs(mut self, logs: TaskLogs) -> Self {
        self.task_logs = Some(logs);
        self
    }

    /// Adds a DAG.
    pub fn dag(mut self, dag: ScheduledDag) -> Self {
        self.dags.push(dag);
        self
    }

    /// Adds DAGs (e.g. from [`ScheduledDag::load_dir`]).
    pub fn dags(mut self, dags: impl IntoIterator<Item = ScheduledDag>) -> Self {
        self.dags.extend(dags);
        self
    }

    /// Records runs in `store` (default: in memory). With a durable store the scheduler picks up
    /// where a previous one stopped: it never re-creates a scheduled interval already in the store.
    pub fn store(mut self, store: Arc<dyn RunStore>) -> Self {
        self.store = store;
        self
    }

    /// What stopping does to running Spark jobs: cancel them (default), or leave them running
    /// for a later scheduler or `bpg run --resume` on the same durable store to reattach.
    pub fn on_shutdown(mut self, policy: CancelPolicy) -> Self {
        self.on_shutdown = policy;
        self
    }

    /// The wall-clock time the scheduler starts at (default: now). Tests set it with a paused
    /// tokio clock to step through days.
    pub fn start_time(mut self, t: DateTime<Utc>) -> Self {
        self.start_time = Some(t);
        self
    }

    /// Whether runs the store holds as `running` at start-up (a scheduler stopped with
    /// [`CancelPolicy::LeaveRunning`], or one that crashed) are run again under their run ids
    /// (default: yes). They count towards `max_active_runs`.
    pub fn resume_unfinished(mut self, on: bool) -> Self {
        self.resume_unfinished = on;
        self
    }

    /// Starts with `dag_id` paused (see [`SchedulerHandle::set_paused`]) unless the run store
    /// holds a pause for it, which wins: as Airflow's `is_paused_upon_creation`, this is where a
    /// DAG starts, not what it is forced to.
    pub fn paused(self, dag_id: impl Into<String>) -> Self {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_paused(dag_id.into(), true);
        self
    }

    /// A handle for manual triggers, pauses, cancels and clears, usable while
    /// [`DagScheduler::run`] runs.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            tx: self.commands_tx.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Subscribes to what the scheduler does. Subscribe before [`DagScheduler::run`].
    pub fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.events.subscribe()
    }

    /// Runs until `shutdown` is cancelled, then stops the runs in flight as the shutdown policy
    /// says and returns once they have ended. Errors only when start-up fails (two DAGs with one
    /// id, a store that cannot be read).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let DagScheduler {
            dags,
            connections,
            store,
            on_shutdown,
            start_time,
            resume_unfinished,
            commands_tx,
            mut commands,
            shared,
            events,
            task_logs,
        } = self;
        drop(commands_tx);
        let clock = Clock {
            base_utc: start_time.unwrap_or_else(Utc::now),
            base_instant: Instant::now(),
        };
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, d) in dags.iter().enumerate() {
            if by_id.insert(d.dag.dag_id.clone(), i).is_some() {
                return Err(Error::Config {
                    message: format!("two DAGs have the id {:?}", d.dag.dag_id),
                });
            }
        }
        let mut ctx = Context {
            connections,
            store,
            on_shutdown,
            events,
            task_logs,
            shared,
            join: JoinSet::new(),
            tokens: HashMap::new(),
        };
        // A pause set through a handle outlives the process; the builder's `paused` holds for
        // DAGs the store has no pause for.
        for (dag_id, paused) in ctx.store.dag_pauses().await? {
            if by_id.contains_key(&dag_id) {
                ctx.lock().set_paused(dag_id, paused);
            }
        }
        let mut slots = Vec::with_capacity(dags.len());
        for (index, dag) in dags.into_iter().enumerate() {
            let runs = ctx.store.list_runs(&dag.dag.dag_id).await?;
            let last = dag.last_interval(&runs);
            let mut slot = DagSlot {
                dag,
                last,
                active: 0,
            };
            if resume_unfinished {
                for run in runs.into_iter().filter(|r| r.state == RunState::Running) {
                    tracing::info!(dag = %run.key.dag_id, run = %run.key.run_id, "resuming an unfinished run");
                    ctx.start(
                        index,
                        &mut slot,
                        run.key.run_id,
                        run.logical_date,
                        run.params,
                        None,
                    );
                }
            }
            slots.push(slot);
        }

        loop {
            let now = clock.now();
            let mut wake: Option<DateTime<Utc>> = None;
            for (index, slot) in slots.iter_mut().enumerate() {
                if ctx.lock().paused.contains(&slot.dag.dag.dag_id) {
                    continue;
                }
                while slot.active < slot.dag.max_active_runs {
                    // Out of the queue and into `active` at one moment, so a query always
                    // finds the run in one or the other (or, later, in the store).
                    let next = {
                        let mut shared = ctx.lock();
                        let next = shared
                            .queued
                            .get_mut(&slot.dag.dag.dag_id)
                            .and_then(|q| q.pop_front());
                        if let Some(run) = &next {
                            let key = RunKey::new(&slot.dag.dag.dag_id, &run.run_id);
                            shared.active.insert(key, run.clone());
                        }
                        next
                    };
                    let Some(queued) = next else {
                        break;
                    };
                    ctx.start(
                        index,
                        slot,
                        queued.run_id,
                        queued.logical_date,
                        queued.params,
                        None,
                    );
                }
                let Some(schedule) = slot.dag.schedule.clone() else {
                    continue;
                };
                while slot.active < slot.dag.max_active_runs {
                    let Some(info) =
                        schedule.next_dagrun_info(slot.last.as_ref(), &slot.dag.bounds, now)
                    else {
                        break;
                    };
                    if info.run_after > now {
                        wake = Some(wake.map_or(info.run_after, |w| w.min(info.run_after)));
                        break;
                    }
                    slot.last = Some(info.data_interval);
                    let run_id = crate::schedule::scheduled_run_id(info.logical_date);
                    ctx.start(
                        index,
                        slot,
                        run_id,
                        info.logical_date,
                        serde_json::Map::new(),
                        Some(info.data_interval),
                    );
                }
            }
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(clock.instant_at(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = ctx.join.join_next_with_id(), if !ctx.join.is_empty() => {
                    ctx.finished(&mut slots, done);
                }
                Some(command) = commands.recv() => {
                    ctx.command(&slots, &by_id, command, clock.now()).await;
                }
                _ = sleep => {}
            }
        }

        tracing::info!(policy = ?ctx.on_shutdown, runs = ctx.tokens.len(), "the DAG scheduler is stopping");
        commands.close();
        for run in ctx.tokens.values() {
            run.cancel.cancel();
        }
        while let Some(done) = ctx.join.join_next_with_id().await {
            ctx.finished(&mut slots, done);
        }
        Ok(())
    }
}

/// What starting and finishing runs needs.
struct Context {
    connections: Arc<dyn Connections>,
    store: Arc<dyn RunStore>,
    on_shutdown: CancelPolicy,
    events: broadcast::Sender<SchedulerEvent>,
    task_logs: Option<TaskLogs>,
    shared: Arc<Mutex<Shared>>,
    join: JoinSet<RunOutcome>,
    /// The runs in flight by task.
    tokens: HashMap<tokio::task::Id, ActiveRun>,
}

/// A run in flight.
struct ActiveRun {
    dag_index: usize,
    run_id: String,
    /// Stops it as the shutdown policy says.
    cancel: CancellationToken,
    /// Stops it and cancels its jobs (a user's cancel).
    abort: CancellationToken,
}

impl Context {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a handle's command.
    async fn command(
        &mut self,
        slots: &[DagSlot],
        by_id: &HashMap<String, usize>,
        command: Command,
        now: DateTime<Utc>,
    ) {
        let known = |dag_id: &str| {
            by_id.get(dag_id).copied().ok_or_else(|| Error::NotFound {
                what: format!("DAG {dag_id:?} in the scheduler"),
            })
        };
        match command {
            Command::Trigger { dag_id, run, reply } => {
                let answer = match known(&dag_id) {
                    Ok(_) => self.queue_manual(dag_id, run, now).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            Command::Pause {
                dag_id,
                paused,
                reply,
            } => {
                let answer = match known(&dag_id) {
                    // Stored first: a pause the store did not take is not made.
                    Ok(_) => self
                        .store
                        .set_dag_paused(&dag_id, paused)
                        .await
                        .map(|()| self.lock().set_paused(dag_id, paused)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            Command::Cancel { key, reply } => {
                let answer = match known(&key.dag_id) {
                    Ok(index) => self.cancel(index, key).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            Command::Clear {
                key,
                task_ids,
                reply,
            } => {
                let answer = match known(&key.dag_id) {
                    Ok(index) => self.clear(&slots[index], key, task_ids, now).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Checks and queues a manual run; answers its run id.
    async fn queue_manual(
        &self,
        dag_id: String,
        run: ManualRun,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let logical_date = run.logical_date.unwrap_or(now);
        let run_id = run.run_id.unwrap_or_else(|| {
            format!(
                "manual__{}",
                logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        });
        let key = RunKey::new(&dag_id, &run_id);
        let queued = self.lock().is_queued(&key);
        if queued || self.store.load_run(&key).await?.is_some() {
            return Err(Error::Conflict {
                message: format!("DAG {dag_id:?} already has a run {run_id:?}"),
            });
        }
        self.lock()
            .queued
            .entry(dag_id)
            .or_default()
            .push_back(QueuedRun {
                run_id: run_id.clone(),
                logical_date,
                params: run.params,
                queued_at: now,
            });
        Ok(run_id)
    }

    async fn cancel(&mut self, dag_index: usize, key: RunKey) -> Result<()> {
        if let Some(active) = self
            .tokens
            .values()
            .find(|r| r.dag_index == dag_index && r.run_id == key.run_id)
        {
            active.abort.cancel();
            return Ok(());
        }
        let queued = {
            let mut shared = self.lock();
            let q = shared.queued.entry(key.dag_id.clone()).or_default();
            let at = q.iter().position(|r| r.run_id == key.run_id);
            at.and_then(|i| q.remove(i))
        };
        if let Some(queued) = queued {
            // Recorded, so the cancelled run is listed as Airflow lists it: failed.
            self.store
                .begin_run(&RunRecord {
                    key: key.clone(),
                    logical_date: queued.logical_date,
                    params: queued.params,
                    state: RunState::Running,
                })
                .await?;
            return self.store.finish_run(&key, RunState::Failed).await;
        }
        match self.store.load_run(&key).await? {
            Some(_) => self.store.finish_run(&key, RunState::Failed).await,
            None => Err(Error::NotFound {
                what: format!("run {:?} of DAG {:?}", key.run_id, key.dag_id),
            }),
        }
    }

    async fn clear(
        &mut self,
        slot: &DagSlot,
        key: RunKey,
        task_ids: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let busy = {
            let shared = self.lock();
            shared.active.contains_key(&key) || shared.is_queued(&key)
        };
        if busy {
            return Err(Error::Conflict {
                message: format!(
                    "run {:?} of DAG {:?} is queued or running: cancel it or wait until it ends, then clear",
                    key.run_id, key.dag_id
                ),
            });
        }
        let Some(stored) = self.store.load_run(&key).await? else {
            return Err(Error::NotFound {
                what: format!("run {:?} of DAG {:?}", key.run_id, key.dag_id),
            });
        };
        if let Some(unknown) = task_ids.iter().find(|t| slot.dag.dag.task(t).is_none()) {
            return Err(Error::NotFound {
                what: format!("task {unknown:?} in DAG {:?}", key.dag_id),
            });
        }
        let changes: Vec<TaskStateChange<'_>> = task_ids
            .iter()
            .map(|t| TaskStateChange {
                task_id: t,
                state: TaskState::None,
                try_number: stored.tasks.get(t).map_or(0, |r| r.try_number),
            })
            .collect();
        self.store.set_task_states(&key, &changes).await?;
        // Run again under its id: the runner resumes it, keeping the tasks not cleared.
        self.lock()
            .queued
            .entry(key.dag_id.clone())
            .or_default()
            .push_front(QueuedRun {
                run_id: key.run_id,
                logical_date: stored.run.logical_date,
                params: stored.run.params,
                queued_at: now,
            });
        Ok(())
    }

    fn start(
        &mut self,
        index: usize,
        slot: &mut DagSlot,
        run_id: String,
        logical_date: DateTime<Utc>,
        params: serde_json::Map<String, serde_json::Value>,
        data_interval: Option<DataInterval>,
    ) {
        let dag = slot.dag.dag.clone();
        let mut runner = Runner::new(dag.clone(), self.connections.clone())
            .store(self.store.clone())
            .run_id(run_id.clone())
            .logical_date(logical_date)
            .on_cancel(self.on_shutdown);
        if let Some(logs) = &self.task_logs {
            runner = runner.task_logs(logs.clone());
        }
        let started_with = params.clone();
        for (k, v) in params {
            runner = runner.param(k, v);
        }
        let cancel = runner.cancellation_token();
        let abort = runner.abort_token();
        slot.active += 1;
        let key = RunKey::new(&dag.dag_id, &run_id);
        let mut shared = self.lock();
        *shared.starts.entry(key.clone()).or_default() += 1;
        // A queued run is there already, moved from the queue under the queue's lock.
        shared.active.entry(key).or_insert_with(|| QueuedRun {
            run_id: run_id.clone(),
            logical_date,
            params: started_with,
            queued_at: Utc::now(),
        });
        drop(shared);
        let _ = self.events.send(SchedulerEvent::RunStarted {
            dag_id: dag.dag_id.clone(),
            run_id: run_id.clone(),
            logical_date,
            data_interval,
        });
        let task = self.join.spawn(runner.run());
        self.tokens.insert(
            task.id(),
            ActiveRun {
                dag_index: index,
                run_id,
                cancel,
                abort,
            },
        );
    }

    fn finished(
        &mut self,
        slots: &mut [DagSlot],
        done: std::result::Result<(tokio::task::Id, RunOutcome), tokio::task::JoinError>,
    ) {
        let (id, result) = match done {
            Ok((id, result)) => (id, result),
            Err(e) => (
                e.id(),
                Err(Error::Cancelled {
                    what: format!("the run task ended: {e}"),
                }),
            ),
        };
        let Some(ActiveRun {
            dag_index: index,
            run_id,
            ..
        }) = self.tokens.remove(&id)
        else {
            return;
        };
        let slot = &mut slots[index];
        slot.active = slot.active.saturating_sub(1);
        self.lock()
            .active
            .remove(&RunKey::new(&slot.dag.dag.dag_id, &run_id));
        let event = match result {
            Ok(report) => SchedulerEvent::RunFinished(Box::new(report)),
            Err(e) => {
                tracing::warn!(dag = %slot.dag.dag.dag_id, run = %run_id, error = %e, "a run could not start");
                SchedulerEvent::RunNotStarted {
                    dag_id: slot.dag.dag.dag_id.clone(),
                    run_id,
                    error: e.to_string(),
                }
            }
        };
        let _ = self.events.send(event);
    }
}
