//! Spark tasks: the job an attempt submits (rendered, parsed, labelled), run through the
//! [`SparkAttempt`] protocol with the task's store, events and XCom as its observer.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    IdempotencyKey, JobState, Result, SparkJob, Submission, SubmitOptions, WaitOptions,
};
use tokio::time::Instant;

use super::InFlight;
use super::attempt::{Attempt, AttemptResult, Stop};
use super::spark_attempt::{AttemptEnd, AttemptObserver, SparkAttempt, Submitted};
use crate::dag::{ApplicationSource, SparkTask};
use crate::events::Event;
use crate::store::SubmissionRecord;
use crate::template::is_template;

impl Attempt {
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
                bpg_core::formats::application_from_value(&value)
                    .map(|parsed| parsed.job)
                    .map_err(|e| format!("inline application: {e}"))?
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

    pub(super) async fn run_spark(
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
        let in_flight = env
            .in_flight
            .as_ref()
            .and_then(|f| f[self.index].as_ref())
            .filter(|f| f.try_number == self.try_number);
        // Resuming: a recorded submission is waited on through the connection that made it.
        let (backend, reattach) = match in_flight {
            Some(InFlight {
                submission: Some((submission, recorded_backend)),
                ..
            }) => (recorded_backend.clone(), Some(submission.clone())),
            _ => (backend, None),
        };
        let mut attempt = SparkAttempt::new(
            backend.as_ref(),
            job,
            SubmitOptions::new().with_idempotency_key(key),
        )
        .wait_options(WaitOptions::default().poll_interval(env.poll_interval))
        .follow_logs(spark.follow_logs && (env.events.has_subscribers() || env.events.keeps_logs()))
        .cancel_on(env.jobs_cancel.clone());
        if let Some((at, _)) = deadline {
            attempt = attempt.deadline(at);
        }
        attempt = match reattach {
            Some(submission) => attempt.reattach(submission),
            // A try stopped between submit and record: the key finds what was accepted.
            None if in_flight.is_some() => attempt.find_first(),
            None => attempt,
        };
        let observer = TaskObserver {
            attempt: self,
            connection: &spark.connection,
        };
        // Boxed separately, so that each of the attempt's allocations stays small.
        let outcome = Box::pin(attempt.run(&observer)).await;
        match outcome.end {
            AttemptEnd::Finished(status) => {
                env.push_xcom(
                    self.index,
                    &task_id,
                    "state",
                    status.native_state.clone().into(),
                )
                .await;
                if let Some(app_id) = &status.spark_application_id {
                    env.push_xcom(
                        self.index,
                        &task_id,
                        "application_id",
                        app_id.clone().into(),
                    )
                    .await;
                }
                match status.state {
                    JobState::Succeeded => AttemptResult::success(),
                    state => AttemptResult::failed(format!(
                        "Spark job {} ended {state} ({}){}",
                        outcome
                            .submission
                            .as_ref()
                            .map(|s| s.id.as_str())
                            .unwrap_or_default(),
                        status.native_state,
                        status.message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                }
            }
            AttemptEnd::Failed(e) => AttemptResult::failed(e.to_string()),
            AttemptEnd::TimedOut => Self::stop_result(Stop::Timeout(
                deadline.map(|(_, limit)| limit).unwrap_or_default(),
            )),
            AttemptEnd::Cancelled => Self::stop_result(Stop::Cancelled),
        }
    }
}

/// A Spark task's view of its [`SparkAttempt`]: submissions recorded in the store before they
/// are waited on, published as events and XCom; log lines and notes as the task's log.
struct TaskObserver<'a> {
    attempt: &'a Attempt,
    connection: &'a str,
}

#[async_trait]
impl AttemptObserver for TaskObserver<'_> {
    async fn submitted(&self, submission: &Submission, how: Submitted) -> Result<()> {
        let attempt = self.attempt;
        let env = &attempt.env;
        let task_id = attempt.task_id();
        let id = submission.id.as_str().to_owned();
        if how != Submitted::Reattached {
            // Recorded before waiting, so a durable store can reattach after a crash.
            if let Some(store) = &env.store {
                store
                    .record_submission(
                        &env.key,
                        task_id,
                        &SubmissionRecord {
                            connection: self.connection.to_owned(),
                            try_number: attempt.try_number,
                            submission: submission.clone(),
                        },
                    )
                    .await?;
            }
            if env.events.has_subscribers() {
                env.events.send(Event::TaskSubmitted {
                    task_id: task_id.clone(),
                    try_number: attempt.try_number,
                    submission_id: id.clone(),
                    connection: self.connection.to_owned(),
                });
            }
        }
        // A reattached job's earlier process may have stopped before publishing it.
        env.push_xcom(attempt.index, task_id, "submission_id", id.into())
            .await;
        Ok(())
    }

    fn log_line(&self, line: String) {
        self.note(line);
    }

    fn note(&self, message: String) {
        let attempt = self.attempt;
        attempt
            .env
            .events
            .log(attempt.task_id(), attempt.try_number, message);
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
