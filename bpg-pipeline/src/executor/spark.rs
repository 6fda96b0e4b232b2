//! Spark tasks: the job an attempt submits, and the attempt protocol around it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bpg_core::{
    Backend, BackendExt, IdempotencyKey, JobState, JobStatus, LogOptions, Result, SparkJob,
    Submission, SubmitOptions, WaitOptions,
};
use futures::StreamExt;
use tokio::time::Instant;

use super::attempt::{Attempt, AttemptResult};
use super::{InFlight, LOG_DRAIN_GRACE};
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
