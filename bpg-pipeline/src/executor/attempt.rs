//! One attempt (try) of a task: its slots, its deadline, and the work of its kind.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::RunEnv;
use crate::context::{TaskContext, TaskError};
use crate::dag::{TaskFn, TaskKind};
use crate::scheduler::{AttemptOutcome, TaskIndex};

/// How an attempt ended, as the executor sees it.
pub(super) enum Ended {
    Outcome(AttemptOutcome),
    /// The run was cancelled; `started` tells whether the attempt had begun.
    Interrupted {
        started: bool,
    },
}

pub(super) struct AttemptResult {
    pub(super) ended: Ended,
    pub(super) message: Option<String>,
}

impl AttemptResult {
    pub(super) fn success() -> Self {
        AttemptResult {
            ended: Ended::Outcome(AttemptOutcome::Success),
            message: None,
        }
    }

    pub(super) fn failed(message: impl Into<String>) -> Self {
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

    pub(super) fn interrupted(started: bool) -> Self {
        AttemptResult {
            ended: Ended::Interrupted { started },
            message: Some("the run was cancelled".into()),
        }
    }
}

pub(super) enum Done {
    Attempt(TaskIndex, AttemptResult),
    /// `depends_on_past` is met: the task may start.
    PastMet(TaskIndex),
    /// `depends_on_past` cannot be met in this run; the message says why.
    PastBlocked(TaskIndex, String),
    RetryDue(TaskIndex),
    RetryCancelled,
}

pub(super) enum Notice {
    Started(TaskIndex),
}

/// Why an attempt stopped before its work finished.
pub(super) enum Stop {
    Timeout(Duration),
    Cancelled,
}

pub(super) struct Attempt {
    pub(super) env: Arc<RunEnv>,
    pub(super) index: TaskIndex,
    pub(super) try_number: u32,
    pub(super) notices: mpsc::UnboundedSender<Notice>,
}

impl Attempt {
    pub(super) fn task_id(&self) -> &Arc<str> {
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

    pub(super) async fn run(self) -> Done {
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
        let events = &self.env.events;
        let task_id = self.task_id().clone();
        if events.keeps_logs() {
            events.runner_line(
                &task_id,
                self.try_number,
                &format!("try {} started", self.try_number),
            );
        }
        let timeout = self.env.graph.settings(index).execution_timeout;
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        let result = AssertUnwindSafe(self.run_kind(deadline))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| AttemptResult::failed("the task panicked"));
        if events.keeps_logs() {
            let how = match &result.ended {
                Ended::Outcome(AttemptOutcome::Success) => "succeeded".to_owned(),
                Ended::Outcome(AttemptOutcome::Skipped) => "skipped itself".to_owned(),
                Ended::Outcome(AttemptOutcome::Failed { .. }) => "failed".to_owned(),
                Ended::Interrupted { .. } => "was interrupted".to_owned(),
            };
            let line = match &result.message {
                Some(m) => format!("try {} {how}: {m}", self.try_number),
                None => format!("try {} {how}", self.try_number),
            };
            events.runner_line(&task_id, self.try_number, &line);
            events.finish_log(&task_id, self.try_number);
        }
        Done::Attempt(index, result)
    }

    /// Resolves when the attempt must stop: its deadline passed or the run was cancelled.
    pub(super) async fn stopped(&self, deadline: Option<(Instant, Duration)>) -> Stop {
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

    pub(super) fn stop_result(stop: Stop) -> AttemptResult {
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
}
