//! StartJobRun from a [`SparkJob`].

use std::collections::BTreeMap;

use aws_sdk_emrcontainers::types::{
    CloudWatchMonitoringConfiguration, Configuration, ConfigurationOverrides, JobDriver,
    MonitoringConfiguration, PersistentAppUi, RetryPolicyConfiguration, S3MonitoringConfiguration,
    SparkSubmitJobDriver,
};
use bpg_core::formats::EmrConfiguration;
use bpg_core::{Error, Result, SparkJob, Submission, SubmitOptions};

use super::error::{self, CallContext};
use super::{CLIENT_TOKEN_LEN, EmrContainersBackend, IDEMPOTENCY_TAG, config::Monitoring};

/// EMR allows at most 50 tags per job run.
const MAX_TAGS: usize = 50;

/// The monitoring configuration of every run, from the backend's settings.
pub(crate) fn monitoring(m: &Monitoring) -> Result<Option<MonitoringConfiguration>> {
    if m.is_empty() {
        return Ok(None);
    }
    let built = |e: aws_sdk_emrcontainers::error::BuildError| {
        Error::config(format!("EMR monitoring configuration: {e}"))
    };
    let mut b = MonitoringConfiguration::builder();
    if let Some(group) = &m.cloudwatch_log_group {
        b = b.cloud_watch_monitoring_configuration(
            CloudWatchMonitoringConfiguration::builder()
                .log_group_name(group)
                .set_log_stream_name_prefix(m.cloudwatch_stream_prefix.clone())
                .build()
                .map_err(built)?,
        );
    }
    if let Some(uri) = &m.s3_log_uri {
        b = b.s3_monitoring_configuration(
            S3MonitoringConfiguration::builder()
                .log_uri(uri)
                .build()
                .map_err(built)?,
        );
    }
    if let Some(ui) = m.persistent_app_ui {
        b = b.persistent_app_ui(if ui {
            PersistentAppUi::Enabled
        } else {
            PersistentAppUi::Disabled
        });
    }
    Ok(Some(b.build()))
}

/// Tags of one run: the backend's, the submit's, and the idempotency digest (which wins).
pub(crate) fn tags(
    config_tags: &BTreeMap<String, String>,
    options: &SubmitOptions,
    token: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let mut tags = config_tags.clone();
    for (k, v) in &options.tags {
        tags.insert(k.clone(), v.clone());
    }
    if let Some(token) = token {
        tags.insert(IDEMPOTENCY_TAG.to_owned(), token.to_owned());
    }
    if tags.len() > MAX_TAGS {
        return Err(Error::config(format!(
            "EMR job runs take at most {MAX_TAGS} tags; this submit has {} (connection tags, submit tags and `{IDEMPOTENCY_TAG}`)",
            tags.len()
        )));
    }
    Ok(tags)
}

/// The SDK form of one rendered `applicationConfiguration` entry.
fn configuration(entry: &EmrConfiguration, job: &str) -> Result<Configuration> {
    let mut b = Configuration::builder().classification(&entry.classification);
    for (k, v) in &entry.properties {
        b = b.properties(k, v);
    }
    b.build().map_err(|e| {
        Error::config(format!(
            "EMR applicationConfiguration `{}` of {job}: {e}",
            entry.classification
        ))
    })
}

pub(crate) async fn submit(
    backend: &EmrContainersBackend,
    job: &SparkJob,
    options: &SubmitOptions,
) -> Result<Submission> {
    let key = options.idempotency_key.as_ref();
    let token = key.map(|k| k.digest(CLIENT_TOKEN_LEN));
    let config = &backend.config;
    let parts = bpg_core::formats::to_emr_start_job_run(job)?;
    if let Some(token) = &token {
        // EMR deduplicates on clientToken for an undocumented time; looking first makes a retry
        // reattach whatever that window is (and against stand-ins that do not deduplicate).
        if let Some(run) = backend
            .runs_with_token(
                token,
                (!parts.name.is_empty()).then_some(parts.name.as_str()),
            )
            .await?
            .first()
        {
            tracing::debug!(job = %job.name, id = ?run.id(), "reattaching to the job run of this idempotency key");
            return backend.submission_of(run, key);
        }
    }
    let mut driver = SparkSubmitJobDriver::builder()
        .entry_point(&parts.entry_point)
        .set_entry_point_arguments(
            (!parts.entry_point_arguments.is_empty()).then(|| parts.entry_point_arguments.clone()),
        );
    if !parts.spark_submit_parameters.is_empty() {
        driver = driver.spark_submit_parameters(&parts.spark_submit_parameters);
    }
    let driver = driver
        .build()
        .map_err(|e| Error::config(format!("EMR job driver of {}: {e}", job.name)))?;
    let mut overrides = ConfigurationOverrides::builder();
    let mut any_override = false;
    for entry in &parts.configuration_overrides {
        overrides = overrides.application_configuration(configuration(entry, &job.name)?);
        any_override = true;
    }
    if let Some(m) = monitoring(&config.monitoring)? {
        overrides = overrides.monitoring_configuration(m);
        any_override = true;
    }
    let mut request = backend
        .client
        .start_job_run()
        .virtual_cluster_id(&config.virtual_cluster_id)
        .set_name((!parts.name.is_empty()).then(|| parts.name.clone()))
        .execution_role_arn(&config.execution_role_arn)
        .release_label(&config.release_label)
        .job_driver(JobDriver::builder().spark_submit_job_driver(driver).build())
        .set_configuration_overrides(any_override.then(|| overrides.build()))
        .set_client_token(token.clone());
    for (k, v) in tags(&config.tags, options, token.as_deref())? {
        request = request.tags(k, v);
    }
    if let Some(attempts) = config.job_max_attempts {
        request = request.retry_policy_configuration(
            RetryPolicyConfiguration::builder()
                .max_attempts(i32::try_from(attempts).unwrap_or(i32::MAX))
                .build()
                .map_err(|e| Error::config(format!("EMR retry policy: {e}")))?,
        );
    }
    let ctx = CallContext {
        backend: &config.name,
        operation: "StartJobRun",
        endpoint: &backend.endpoint,
        subject: format!("virtual cluster {}", config.virtual_cluster_id),
    };
    let out = request.send().await.map_err(|e| error::convert(&ctx, e))?;
    let id = out.id.ok_or_else(|| {
        Error::backend(
            config.name.clone(),
            false,
            "StartJobRun returned no job run id",
        )
    })?;
    let mut submission = Submission::new(id, config.name.clone());
    submission.cluster = Some(
        out.virtual_cluster_id
            .unwrap_or_else(|| config.virtual_cluster_id.clone()),
    );
    submission.idempotency_key = key.cloned();
    Ok(submission)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpg_core::IdempotencyKey;

    #[test]
    fn idempotency_tag_wins_and_tag_count_is_bounded() {
        let key = IdempotencyKey::new("dag/run/task/1");
        let token = key.digest(CLIENT_TOKEN_LEN);
        let options = SubmitOptions::new()
            .with_idempotency_key(key)
            .with_tag(IDEMPOTENCY_TAG, "forged")
            .with_tag("team", "phi");
        let config_tags = BTreeMap::from([("team".to_owned(), "platform".to_owned())]);
        let tags = tags(&config_tags, &options, Some(&token)).unwrap();
        assert_eq!(tags[IDEMPOTENCY_TAG], token);
        assert_eq!(tags["team"], "phi");
        let many: BTreeMap<String, String> =
            (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
        let err = super::tags(&many, &SubmitOptions::new(), Some(&token)).unwrap_err();
        assert!(err.to_string().contains("at most 50 tags"), "{err}");
    }

    #[test]
    fn monitoring_is_omitted_when_unset_and_complete_when_set() {
        assert_eq!(monitoring(&Monitoring::default()).unwrap(), None);
        let m = Monitoring {
            cloudwatch_log_group: Some("/emr/spark".into()),
            cloudwatch_stream_prefix: Some("pipelines".into()),
            s3_log_uri: Some("s3://logs/emr".into()),
            persistent_app_ui: Some(true),
        };
        let built = monitoring(&m).unwrap().expect("configured");
        let cw = built
            .cloud_watch_monitoring_configuration()
            .expect("cloudwatch");
        assert_eq!(
            (cw.log_group_name(), cw.log_stream_name_prefix()),
            ("/emr/spark", Some("pipelines"))
        );
        assert_eq!(
            built.s3_monitoring_configuration().map(|s| s.log_uri()),
            Some("s3://logs/emr")
        );
        assert_eq!(built.persistent_app_ui(), Some(&PersistentAppUi::Enabled));
    }
}
