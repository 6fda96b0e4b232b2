//! [`EmrContainersBackend`]: runs Spark jobs on Amazon EMR on EKS through the `emr-containers` API
//! (StartJobRun, DescribeJobRun, CancelJobRun, ListJobRuns).
//!
//! - **Idempotency.** The submit's idempotency key becomes the job run's `clientToken` (its
//!   64-character digest) and a `bpg.idempotency-key` tag; before starting a run, `submit` looks for
//!   one with the same token (ListJobRuns over [`EmrConfig::find_window`]), so a retried submit
//!   reattaches even where the service does not deduplicate.
//! - **States** map through [`JobState::from_emr`]: `CANCEL_PENDING` is `Cancelling`, not terminal.
//! - **Back-pressure.** A `ValidationException` from a full virtual-cluster queue is
//!   [`Error::Unavailable`] (temporary); other validation failures are permanent.
//! - **Logs.** With a CloudWatch log group in the job run's monitoring configuration (and the
//!   `emr-cloudwatch` feature), `logs` tails the driver's streams. Otherwise it fails with
//!   [`Error::Unsupported`] naming where EMR puts the logs (the S3 prefix), rather than pretend.
//!
//! ```
//! use bpg_backends::emr::{EmrConfig, EmrContainersBackend, StaticCredentials};
//! use bpg_core::Backend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bpg_core::Result<()> {
//! let config = EmrConfig::from_url(
//!     "emr://abc123vc?role=arn:aws:iam::123456789012:role/spark&release=emr-7.2.0-latest&region=us-east-1",
//! )?
//! .credentials(StaticCredentials::new("AKIDEXAMPLE", "not-a-real-secret", None));
//! let emr = EmrContainersBackend::connect(config).await?;
//! assert_eq!(emr.name(), "emr");
//! assert!(emr.capabilities().idempotent_submit);
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod logs;
mod submit;

use std::fmt;

use async_trait::async_trait;
use aws_sdk_emrcontainers::types::JobRun;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobState, JobStatus, LogOptions,
    LogStream, Result, SparkJob, Submission, SubmitOptions,
};
use chrono::{DateTime, Utc};

pub use config::{EmrConfig, Monitoring, StaticCredentials};
use error::CallContext;

/// The tag carrying the idempotency key's digest on every job run submitted with one.
pub const IDEMPOTENCY_TAG: &str = "bpg.idempotency-key";

/// Length of the idempotency key digest used as `clientToken` (EMR allows 1 to 64 characters).
const CLIENT_TOKEN_LEN: usize = 64;

/// A [`Backend`] over one EMR on EKS virtual cluster.
///
/// Job ids are EMR job run ids; [`Submission::cluster`] is the virtual cluster id.
#[derive(Clone)]
pub struct EmrContainersBackend {
    config: EmrConfig,
    client: aws_sdk_emrcontainers::Client,
    #[cfg(feature = "emr-cloudwatch")]
    logs_client: aws_sdk_cloudwatchlogs::Client,
    /// Where requests go, for error messages.
    endpoint: String,
}

impl fmt::Debug for EmrContainersBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmrContainersBackend")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EmrContainersBackend {
    /// Builds the AWS clients from `config`: its region, profile, static credentials and endpoint
    /// where given, the default AWS chains (environment, shared files, web identity, ECS, instance
    /// metadata) for the rest. No request is made until the first call.
    pub async fn connect(config: EmrConfig) -> Result<Self> {
        config.validate()?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(credentials) = &config.credentials {
            loader = loader.credentials_provider(credentials.to_aws());
        }
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(attempts) = config.sdk_max_attempts {
            let retry = if attempts <= 1 {
                aws_config::retry::RetryConfig::disabled()
            } else {
                aws_config::retry::RetryConfig::standard().with_max_attempts(attempts)
            };
            loader = loader.retry_config(retry);
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(config, &sdk)
    }

    /// Builds the backend from an already loaded AWS [`SdkConfig`](aws_config::SdkConfig) (shared with
    /// the caller's other AWS clients). The region, credentials and endpoint of `sdk` apply;
    /// `config` supplies the virtual cluster and job-run settings.
    pub fn from_sdk_config(config: EmrConfig, sdk: &aws_config::SdkConfig) -> Result<Self> {
        config.validate()?;
        let Some(region) = sdk.region() else {
            return Err(Error::config(format!(
                "EMR backend `{}`: no AWS region; set `region=` on the connection or AWS_REGION",
                config.name
            )));
        };
        let endpoint = match sdk.endpoint_url() {
            Some(url) => url.to_owned(),
            None => format!("AWS {region}"),
        };
        Ok(EmrContainersBackend {
            client: aws_sdk_emrcontainers::Client::new(sdk),
            #[cfg(feature = "emr-cloudwatch")]
            logs_client: aws_sdk_cloudwatchlogs::Client::new(sdk),
            endpoint,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EmrConfig {
        &self.config
    }

    /// The underlying `emr-containers` client, for calls this backend does not wrap.
    pub fn client(&self) -> &aws_sdk_emrcontainers::Client {
        &self.client
    }

    fn ctx(&self, operation: &'static str, subject: String) -> CallContext<'_> {
        CallContext {
            backend: &self.config.name,
            operation,
            endpoint: &self.endpoint,
            subject,
        }
    }

    /// EMR job run ids are lowercase letters and digits; anything else cannot name one of ours.
    fn check_id(&self, id: &JobId) -> Result<()> {
        let s = id.as_str();
        if s.is_empty()
            || s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(Error::NotFound {
                what: format!(
                    "job run `{s}` in virtual cluster {} (EMR job run ids are lowercase letters and digits)",
                    self.config.virtual_cluster_id
                ),
            });
        }
        Ok(())
    }

    /// DescribeJobRun.
    async fn describe(&self, id: &JobId) -> Result<JobRun> {
        self.check_id(id)?;
        let ctx = self.ctx(
            "DescribeJobRun",
            format!(
                "job run {id} in virtual cluster {}",
                self.config.virtual_cluster_id
            ),
        );
        let out = self
            .client
            .describe_job_run()
            .virtual_cluster_id(&self.config.virtual_cluster_id)
            .id(id.as_str())
            .send()
            .await
            .map_err(|e| error::convert(&ctx, e))?;
        out.job_run.ok_or_else(|| {
            Error::backend(
                self.config.name.clone(),
                true,
                format!("DescribeJobRun for {id} returned no jobRun"),
            )
        })
    }

    /// Job runs whose `clientToken` or idempotency tag is `token`, oldest first; `name` (when the
    /// job is known) narrows the listing server-side.
    async fn runs_with_token(&self, token: &str, name: Option<&str>) -> Result<Vec<JobRun>> {
        let ctx = self.ctx(
            "ListJobRuns",
            format!("virtual cluster {}", self.config.virtual_cluster_id),
        );
        let window =
            chrono::Duration::from_std(self.config.find_window).unwrap_or(chrono::Duration::MAX);
        let after = Utc::now()
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut pages = self
            .client
            .list_job_runs()
            .virtual_cluster_id(&self.config.virtual_cluster_id)
            .created_after(aws_sdk_emrcontainers::primitives::DateTime::from_secs(
                after.timestamp(),
            ))
            .set_name(name.map(str::to_owned))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error::convert(&ctx, e))?;
            for run in page.job_runs.unwrap_or_default() {
                let tagged = run
                    .tags()
                    .and_then(|tags| tags.get(IDEMPOTENCY_TAG))
                    .is_some_and(|t| t == token);
                if run.client_token() == Some(token) || tagged {
                    found.push(run);
                }
            }
        }
        found.sort_by_key(|run| run.created_at().map(|t| (t.secs(), t.subsec_nanos())));
        Ok(found)
    }

    fn submission_of(&self, run: &JobRun, key: Option<&IdempotencyKey>) -> Result<Submission> {
        let id = run.id().ok_or_else(|| {
            Error::backend(
                self.config.name.clone(),
                false,
                "EMR returned a job run without an id",
            )
        })?;
        let mut submission = Submission::new(id, self.config.name.clone());
        submission.cluster = Some(
            run.virtual_cluster_id()
                .unwrap_or(&self.config.virtual_cluster_id)
                .to_owned(),
        );
        submission.idempotency_key = key.cloned();
        if let Some(created) = run.created_at().and_then(to_chrono) {
            submission.submitted_at = created;
        }
        Ok(submission)
    }
}

/// The canonical status of a job run.
fn job_status(run: &JobRun) -> JobStatus {
    let native = run.state().map(|s| s.as_str()).unwrap_or("").to_owned();
    let mut status = JobStatus::new(JobState::from_emr(&native), native);
    let reason = run.failure_reason().map(|r| r.as_str());
    status.message = match (reason, run.state_details()) {
        (Some(r), Some(d)) if !r.is_empty() => Some(format!("{r}: {d}")),
        (Some(r), None) if !r.is_empty() => Some(r.to_owned()),
        (_, Some(d)) if !d.is_empty() => Some(d.to_owned()),
        _ => None,
    };
    status.attempts = run
        .retry_policy_execution()
        .and_then(|e| u32::try_from(e.current_attempt_count()).ok());
    status.finished_at = run.finished_at().and_then(to_chrono);
    status
}

fn to_chrono(t: &aws_sdk_emrcontainers::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl Backend for EmrContainersBackend {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn capabilities(&self) -> Capabilities {
        let tail = cfg!(feature = "emr-cloudwatch")
            && self.config.monitoring.cloudwatch_log_group.is_some();
        let mut caps = Capabilities::default();
        caps.cancel = true;
        caps.logs = tail;
        caps.follow_logs = tail;
        caps.idempotent_submit = true;
        caps.find = true;
        caps
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        submit::submit(self, job, options).await
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        Ok(job_status(&self.describe(id).await?))
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        let run = self.describe(id).await?;
        logs::logs(self, run, options).await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.check_id(id)?;
        let ctx = self.ctx(
            "CancelJobRun",
            format!(
                "job run {id} in virtual cluster {}",
                self.config.virtual_cluster_id
            ),
        );
        let sent = self
            .client
            .cancel_job_run()
            .virtual_cluster_id(&self.config.virtual_cluster_id)
            .id(id.as_str())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = error::convert(&ctx, e);
                if matches!(err, Error::NotFound { .. }) || err.is_temporary() {
                    return Err(err);
                }
                // EMR refuses to cancel a run that already ended or is being cancelled
                // (ValidationException); for the caller that is success.
                match self.describe(id).await {
                    Ok(run) => {
                        let state = job_status(&run).state;
                        if state.is_terminal() || state == JobState::Cancelling {
                            Ok(())
                        } else {
                            Err(err)
                        }
                    }
                    Err(_) => Err(err),
                }
            }
        }
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let token = key.digest(CLIENT_TOKEN_LEN);
        match self.runs_with_token(&token, None).await?.first() {
            Some(run) => Ok(Some(self.submission_of(run, Some(key))?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_emrcontainers::types::{FailureReason, JobRunState, RetryPolicyExecution};

    #[test]
    fn a_missing_region_is_a_config_error() {
        let sdk = aws_config::SdkConfig::builder().build();
        let config = EmrConfig::new("vc1", "arn:aws:iam::1:role/r", "emr-7.2.0-latest");
        let err = EmrContainersBackend::from_sdk_config(config, &sdk).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("no AWS region"), "{err}");
    }

    #[test]
    fn job_run_maps_to_status() {
        let run = JobRun::builder()
            .id("0000000abc")
            .state(JobRunState::Failed)
            .failure_reason(FailureReason::UserError)
            .state_details("Job failed (simulated).")
            .retry_policy_execution(
                RetryPolicyExecution::builder()
                    .current_attempt_count(2)
                    .build()
                    .unwrap(),
            )
            .finished_at(aws_sdk_emrcontainers::primitives::DateTime::from_secs(
                1_700_000_000,
            ))
            .build();
        let status = job_status(&run);
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(status.native_state, "FAILED");
        assert_eq!(
            status.message.as_deref(),
            Some("USER_ERROR: Job failed (simulated).")
        );
        assert_eq!(status.attempts, Some(2));
        assert_eq!(
            status.finished_at.map(|t| t.timestamp()),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn cancel_pending_is_cancelling_and_unknown_states_are_unknown() {
        let pending = JobRun::builder().state(JobRunState::CancelPending).build();
        assert_eq!(job_status(&pending).state, JobState::Cancelling);
        assert!(!job_status(&pending).is_terminal());
        let novel = JobRun::builder()
            .state(JobRunState::from("HIBERNATING"))
            .build();
        let status = job_status(&novel);
        assert_eq!(
            (status.state, status.native_state.as_str()),
            (JobState::Unknown, "HIBERNATING")
        );
        assert_eq!(status.message, None);
    }
}
