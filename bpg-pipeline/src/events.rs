//! What a run reports while it goes: state changes, retries and log lines.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::logs::{LogKey, TaskLogs};

/// A task instance's state, with Airflow's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not yet decided (Airflow's `none`).
    #[default]
    None,
    /// Its trigger rule passed; waiting for a free slot.
    Scheduled,
    /// Handed to the executor, waiting for `max_active_tasks` or pool slots.
    Queued,
    /// An attempt is running.
    Running,
    /// Failed with retries left; will run again after the retry delay.
    UpForRetry,
    /// Finished successfully.
    Success,
    /// Finished unsuccessfully with no retries left.
    Failed,
    /// Not run because its upstreams failed.
    UpstreamFailed,
    /// Not run, by its trigger rule or by its own choice.
    Skipped,
}

impl TaskState {
    /// Airflow's name (`upstream_failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::None => "none",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
        }
    }

    /// `success`, `failed`, `upstream_failed` or `skipped`: the task will not change again in this run.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
        )
    }
}

impl std::str::FromStr for TaskState {
    type Err = UnknownState;

    /// From Airflow's name, as [`TaskState::as_str`] writes it.
    fn from_str(name: &str) -> Result<Self, UnknownState> {
        Ok(match name {
            "none" => TaskState::None,
            "scheduled" => TaskState::Scheduled,
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "up_for_retry" => TaskState::UpForRetry,
            "success" => TaskState::Success,
            "failed" => TaskState::Failed,
            "upstream_failed" => TaskState::UpstreamFailed,
            "skipped" => TaskState::Skipped,
            _ => return Err(UnknownState(name.to_owned())),
        })
    }
}

/// A name that is not a [`TaskState`]'s.
///
/// ```
/// use bpg_pipeline::TaskState;
///
/// assert_eq!("up_for_retry".parse::<TaskState>().unwrap(), TaskState::UpForRetry);
/// assert_eq!("done".parse::<TaskState>().unwrap_err().to_string(), "unknown task state \"done\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownState(pub String);

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown task state {:?}", self.0)
    }
}

impl std::error::Error for UnknownState {}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DAG run's state, with Airflow's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Tasks are still to run.
    Running,
    /// Every leaf task succeeded or was skipped.
    Success,
    /// A leaf task failed or is upstream_failed, or the run was interrupted.
    Failed,
}

impl RunState {
    /// Airflow's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    RunStarted {
        /// DAG id.
        dag_id: Arc<str>,
        /// Run id.
        run_id: Arc<str>,
    },
    /// A task changed state.
    TaskState {
        /// Task id.
        task_id: Arc<str>,
        /// The new state.
        state: TaskState,
        /// Attempts started so far.
        try_number: u32,
        /// Why, for failures and skips.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A failed attempt will be retried.
    TaskRetry {
        /// Task id.
        task_id: Arc<str>,
        /// The attempt that failed.
        try_number: u32,
        /// Time until the next attempt.
        #[serde(with = "humantime_serde_compat")]
        delay: Duration,
        /// Why the attempt failed.
        error: String,
    },
    /// A Spark task's job was accepted by its backend.
    TaskSubmitted {
        /// Task id.
        task_id: Arc<str>,
        /// Attempt.
        try_number: u32,
        /// The backend's job id.
        submission_id: String,
        /// Connection name.
        connection: String,
    },
    /// A line of task output (driver log, process output, or a function's log).
    TaskLog {
        /// Task id.
        task_id: Arc<str>,
        /// Attempt.
        try_number: u32,
        /// The line.
        line: String,
    },
    /// The run finished.
    RunFinished {
        /// Final state.
        state: RunState,
    },
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A subscription to a run's events.
///
/// Slow subscribers that fall more than the channel capacity behind skip the oldest events
/// (counted in [`EventStream::missed`]) rather than slowing the run.
#[derive(Debug)]
pub struct EventStream {
    receiver: broadcast::Receiver<Event>,
    missed: u64,
}

impl EventStream {
    pub(crate) fn new(receiver: broadcast::Receiver<Event>) -> Self {
        EventStream {
            receiver,
            missed: 0,
        }
    }

    /// The next event; `None` once the run is over and every event was delivered.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Events skipped because this subscriber fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The events as a `Stream`.
    pub fn into_stream(self) -> impl Stream<Item = Event> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move { s.recv().await.map(|e| (e, s)) })
    }
}

/// Where the executor sends events, and task log lines to the run's stored logs. Cheap to
/// clone; sending with no subscriber costs almost nothing.
#[derive(Clone, Debug)]
pub(crate) struct EventSink {
    sender: broadcast::Sender<Event>,
    /// Where this run's task logs are kept, when they are.
    logs: Option<Arc<RunLogs>>,
}

/// A run's stored task logs.
#[derive(Debug)]
struct RunLogs {
    logs: TaskLogs,
    dag_id: Arc<str>,
    run_id: Arc<str>,
}

impl RunLogs {
    fn key(&self, task_id: &str, try_number: u32) -> LogKey {
        LogKey::new(&*self.dag_id, &*self.run_id, task_id, try_number)
    }
}

impl EventSink {
    pub(crate) fn new(capacity: usize) -> Self {
        EventSink {
            sender: broadcast::Sender::new(capacity.max(1)),
            logs: None,
        }
    }

    /// The same sink, also keeping every task log line of run `run_id` of `dag_id` in `logs`.
    pub(crate) fn with_logs(&self, logs: TaskLogs, dag_id: Arc<str>, run_id: Arc<str>) -> Self {
        EventSink {
            sender: self.sender.clone(),
            logs: Some(Arc::new(RunLogs {
                logs,
                dag_id,
                run_id,
            })),
        }
    }

    /// Whether task log lines are kept (so they are worth collecting with no subscriber).
    pub(crate) fn keeps_logs(&self) -> bool {
        self.logs.is_some()
    }

    /// A line of the runner's own about a try (when it started, how it ended): kept in the
    /// try's stored log, not sent as an event.
    pub(crate) fn runner_line(&self, task_id: &Arc<str>, try_number: u32, line: &str) {
        self.store_line(task_id, try_number, &format!("[bpg] {line}"));
    }

    /// The try is over: its stored log is closed.
    pub(crate) fn finish_log(&self, task_id: &Arc<str>, try_number: u32) {
        if let Some(l) = &self.logs {
            l.logs.finish(&l.key(task_id, try_number));
        }
    }

    fn store_line(&self, task_id: &Arc<str>, try_number: u32, line: &str) {
        if let Some(l) = &self.logs
            && let Err(e) = l.logs.append(&l.key(task_id, try_number), line)
        {
            tracing::warn!(task = %task_id, try_number, error = %e, "cannot keep a task log line");
        }
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        EventStream::new(self.sender.subscribe())
    }

    pub(crate) fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(crate) fn send(&self, event: Event) {
        // No subscriber is not an error: events are for whoever listens.
        let _ = self.sender.send(event);
    }

    pub(crate) fn log(&self, task_id: &Arc<str>, try_number: u32, line: impl Into<String>) {
        if self.logs.is_none() && !self.has_subscribers() {
            return;
        }
        let line = line.into();
        self.store_line(task_id, try_number, &line);
        if self.has_subscribers() {
            self.send(Event::TaskLog {
                task_id: task_id.clone(),
                try_number,
                line,
            });
        }
    }
}
