//! The executor loop: feeds the pure scheduler, spawns attempts and retry timers, publishes
//! state changes to the store and the event stream, and finishes the run (see the module docs of
//! [`super`]).

use std::sync::Arc;
use std::time::Duration;

use bpg_core::Result;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::{Attempt, Done, Ended, Notice};
use super::past::past_met;
use super::resume::Resume;
use super::{CancelPolicy, RunEnv};
use crate::dag::TaskKind;
use crate::events::{Event, RunState, TaskState};
use crate::report::{RunReport, TaskReport};
use crate::scheduler::{AfterAttempt, AttemptOutcome, Resumed, Scheduler, TaskIndex};
use crate::store::TaskStateChange;

/// The executor loop: feeds the scheduler, spawns attempts and timers, publishes changes.
pub(super) struct Executor {
    env: Arc<RunEnv>,
    scheduler: Scheduler,
    cancel: CancellationToken,
    /// Cancels the run and its jobs whatever `on_cancel` says ([`super::Runner::abort_token`]).
    pub(super) abort: CancellationToken,
    on_cancel: CancelPolicy,
    join: JoinSet<Done>,
    notices_tx: mpsc::UnboundedSender<Notice>,
    notices: mpsc::UnboundedReceiver<Notice>,
    messages: Vec<Option<String>>,
    changes: Vec<(TaskIndex, TaskState)>,
    timer_cancel: CancellationToken,
    /// Set when resuming a run: what an earlier process recorded.
    pub(super) resume: Option<Box<Resume>>,
    /// Set when some task has `depends_on_past` (and there is a store): per task, whether its
    /// previous-run instance must still be checked before it first starts.
    pub(super) past_gate: Option<Box<[bool]>>,
    /// Attempts launched but not yet spawned: they start only after their `running` state is
    /// published, so no event of theirs (a submission, a log line) precedes it.
    to_spawn: Vec<Attempt>,
}

impl Executor {
    pub(super) fn new(
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
            abort: CancellationToken::new(),
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

    pub(super) async fn drive(mut self) -> Result<RunReport> {
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
                _ = self.abort.cancelled() => {
                    cancelled = true;
                    self.on_cancel = CancelPolicy::CancelJobs;
                    break;
                }
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
        if self.cancel.is_cancelled() || self.abort.is_cancelled() {
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
