//! What an [`EmrContainersBackend`](super::EmrContainersBackend) needs to know: where the EMR API
//! is, which credentials to use, and the job-run settings every submission shares.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bpg_core::{Error, Result};

/// Static AWS credentials. Prefer a profile, the environment or an instance role; these are for
/// tests and for callers that fetched credentials themselves. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id (not secret; shown in `Debug`).
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl StaticCredentials {
    /// Long-lived credentials, or temporary ones with their session token.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    pub(crate) fn to_aws(&self) -> aws_sdk_emrcontainers::config::Credentials {
        aws_sdk_emrcontainers::config::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "bpg-static",
        )
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Where EMR sends the job runs' logs (`configurationOverrides.monitoringConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Monitoring {
    /// CloudWatch Logs group the driver and executors log to; the only source that can be tailed
    /// while the job runs.
    pub cloudwatch_log_group: Option<String>,
    /// Prefix of the CloudWatch log stream names.
    pub cloudwatch_stream_prefix: Option<String>,
    /// S3 location (`s3://bucket/prefix`) EMR uploads logs to, with delay.
    pub s3_log_uri: Option<String>,
    /// Keep the Spark UI reachable from the EMR console after the job (`persistentAppUI`).
    pub persistent_app_ui: Option<bool>,
}

impl Monitoring {
    /// Whether any monitoring setting is given.
    pub fn is_empty(&self) -> bool {
        self == &Monitoring::default()
    }
}

/// Configuration of one [`EmrContainersBackend`](super::EmrContainersBackend): one EMR virtual
/// cluster, the AWS account access to reach it, and the job-run settings every submission shares.
///
/// Build it in code, or from a connection URL with [`EmrConfig::from_url`]:
///
/// ```
/// use bpg_backends::emr::EmrConfig;
/// let config = EmrConfig::from_url(
///     "emr://abc123vc?role=arn:aws:iam::123456789012:role/spark&release=emr-7.2.0-latest&region=eu-west-1",
/// )?;
/// assert_eq!(config, EmrConfig::new("abc123vc", "arn:aws:iam::123456789012:role/spark", "emr-7.2.0-latest")
///     .region("eu-west-1"));
/// # Ok::<(), bpg_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmrConfig {
    /// The backend's name (its connection name). Default `emr`.
    pub name: String,
    /// The EMR virtual cluster job runs go to (`[0-9a-z]+`, at most 64 characters).
    pub virtual_cluster_id: String,
    /// IAM role the job runs assume (`executionRoleArn`).
    pub execution_role_arn: String,
    /// EMR release (`emr-7.2.0-latest`).
    pub release_label: String,
    /// AWS region; `None` uses the environment / profile (`AWS_REGION`, `~/.aws/config`).
    pub region: Option<String>,
    /// Named profile of the shared AWS config and credentials files.
    pub profile: Option<String>,
    /// Static credentials; `None` uses the default chain (env, profile, web identity, ECS, IMDS).
    pub credentials: Option<StaticCredentials>,
    /// Endpoint override (a VPC endpoint, a local stand-in such as moto).
    pub endpoint_url: Option<String>,
    /// Where the job runs log to.
    pub monitoring: Monitoring,
    /// EMR-side driver attempts (`retryPolicyConfiguration.maxAttempts`). The runner owns retries,
    /// so the default is to leave it unset.
    pub job_max_attempts: Option<u32>,
    /// Tags added to every job run.
    pub tags: BTreeMap<String, String>,
    /// Attempts the AWS SDK makes per API call (its standard retry mode). `Some(1)` disables SDK
    /// retries (tests); `None` keeps the SDK default.
    pub sdk_max_attempts: Option<u32>,
    /// How far back `find` looks for a job run with the same idempotency key. Default 14 days.
    pub find_window: Duration,
    /// How often a followed CloudWatch log is polled. Default 2 s.
    pub log_poll_interval: Duration,
}

impl EmrConfig {
    /// The three settings every EMR job run needs; everything else at its default.
    pub fn new(
        virtual_cluster_id: impl Into<String>,
        execution_role_arn: impl Into<String>,
        release_label: impl Into<String>,
    ) -> Self {
        EmrConfig {
            name: "emr".to_owned(),
            virtual_cluster_id: virtual_cluster_id.into(),
            execution_role_arn: execution_role_arn.into(),
            release_label: release_label.into(),
            region: None,
            profile: None,
            credentials: None,
            endpoint_url: None,
            monitoring: Monitoring::default(),
            job_max_attempts: None,
            tags: BTreeMap::new(),
            sdk_max_attempts: None,
            find_window: Duration::from_secs(14 * 24 * 3600),
            log_poll_interval: Duration::from_secs(2),
        }
    }

    /// Sets the backend name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the named profile.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Sets static credentials.
    pub fn credentials(mut self, credentials: StaticCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets the endpoint override.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sends logs to a CloudWatch Logs group (and lets `logs` tail the driver).
    pub fn cloudwatch_logs(
        mut self,
        log_group: impl Into<String>,
        stream_prefix: Option<String>,
    ) -> Self {
        self.monitoring.cloudwatch_log_group = Some(log_group.into());
        self.monitoring.cloudwatch_stream_prefix = stream_prefix;
        self
    }

    /// Sends logs to S3 (`s3://bucket/prefix`).
    pub fn s3_logs(mut self, log_uri: impl Into<String>) -> Self {
        self.monitoring.s3_log_uri = Some(log_uri.into());
        self
    }

    /// Sets `persistentAppUI`.
    pub fn persistent_app_ui(mut self, enabled: bool) -> Self {
        self.monitoring.persistent_app_ui = Some(enabled);
        self
    }

    /// Sets EMR-side driver attempts.
    pub fn job_max_attempts(mut self, attempts: u32) -> Self {
        self.job_max_attempts = Some(attempts);
        self
    }

    /// Adds a tag to every job run.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the attempts per AWS API call (`1` disables SDK retries).
    pub fn sdk_max_attempts(mut self, attempts: u32) -> Self {
        self.sdk_max_attempts = Some(attempts);
        self
    }

    /// Sets how far back `find` looks.
    pub fn find_window(mut self, window: Duration) -> Self {
        self.find_window = window;
        self
    }

    /// Sets the CloudWatch poll interval of followed logs.
    pub fn log_poll_interval(mut self, interval: Duration) -> Self {
        self.log_poll_interval = interval;
        self
    }

    /// Reads a connection URL:
    /// `emr://<virtual-cluster-id>?role=<execution role ARN>&release=<release label>` plus optional
    /// `region`, `profile`, `endpoint`, `log_group`, `log_stream_prefix`, `s3_log_uri`,
    /// `persistent_app_ui` (`true`/`false`), `job_max_attempts`, `sdk_max_attempts` and `name`.
    ///
    /// Credentials are never read from a URL (URLs end up in logs): use a profile, the environment
    /// or an instance role.
    pub fn from_url(url: &str) -> Result<EmrConfig> {
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::config(format!(
                "EMR connection URL `{url}`: {e}; expected emr://<virtual-cluster-id>?role=<role ARN>&release=<release label>"
            ))
        })?;
        let shown = redacted(&parsed);
        let bad = |what: String| Error::config(format!("EMR connection URL `{shown}`: {what}"));
        if parsed.scheme() != "emr" {
            return Err(bad(format!(
                "scheme is `{}`, expected `emr`",
                parsed.scheme()
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials do not belong in a URL; use `profile=`, the environment or an instance role"
                    .to_owned(),
            ));
        }
        if parsed.port().is_some() || !matches!(parsed.path(), "" | "/") {
            return Err(bad(
                "expected only a virtual cluster id between `emr://` and `?`".to_owned(),
            ));
        }
        let Some(vc) = parsed.host_str().map(str::to_owned) else {
            return Err(bad(
                "expected emr://<virtual-cluster-id>?role=<role ARN>&release=<release label>"
                    .to_owned(),
            ));
        };
        let mut role = None;
        let mut release = None;
        let mut config = EmrConfig::new(vc, "", "");
        for (key, value) in parsed.query_pairs() {
            let value = value.into_owned();
            let number = |v: &str| {
                v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    bad(format!(
                        "`{key}={v}`: expected a whole number of at least 1"
                    ))
                })
            };
            match key.as_ref() {
                "role" => role = Some(value),
                "release" => release = Some(value),
                "region" => config.region = Some(value),
                "profile" => config.profile = Some(value),
                "endpoint" => config.endpoint_url = Some(value),
                "log_group" => config.monitoring.cloudwatch_log_group = Some(value),
                "log_stream_prefix" => config.monitoring.cloudwatch_stream_prefix = Some(value),
                "s3_log_uri" => config.monitoring.s3_log_uri = Some(value),
                "persistent_app_ui" => {
                    config.monitoring.persistent_app_ui = Some(match value.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(bad(format!(
                                "`persistent_app_ui={other}`: expected `true` or `false`"
                            )));
                        }
                    })
                }
                "job_max_attempts" => config.job_max_attempts = Some(number(&value)?),
                "sdk_max_attempts" => config.sdk_max_attempts = Some(number(&value)?),
                "name" => config.name = value,
                "access_key_id" | "secret_access_key" | "session_token" => {
                    return Err(bad(format!(
                        "`{key}`: credentials do not belong in a URL; use `profile=`, the environment or an instance role"
                    )));
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter `{other}`; expected one of role, release, region, profile, endpoint, \
                         log_group, log_stream_prefix, s3_log_uri, persistent_app_ui, job_max_attempts, \
                         sdk_max_attempts, name"
                    )));
                }
            }
        }
        config.execution_role_arn =
            role.ok_or_else(|| bad("missing `role=<execution role ARN>`".to_owned()))?;
        config.release_label = release.ok_or_else(|| {
            bad("missing `release=<release label, e.g. emr-7.2.0-latest>`".to_owned())
        })?;
        config.validate().map_err(|e| match e {
            Error::Config { message } => bad(message),
            other => other,
        })?;
        Ok(config)
    }

    /// Checks the settings EMR would otherwise reject on the first submit.
    pub fn validate(&self) -> Result<()> {
        let vc = &self.virtual_cluster_id;
        if vc.is_empty()
            || vc.len() > 64
            || !vc
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return Err(Error::config(format!(
                "virtual cluster id `{vc}`: expected 1 to 64 lowercase letters and digits"
            )));
        }
        if !self.execution_role_arn.starts_with("arn:") {
            return Err(Error::config(format!(
                "execution role `{}`: expected an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                self.execution_role_arn
            )));
        }
        if !self.release_label.starts_with("emr-") {
            return Err(Error::config(format!(
                "release label `{}`: expected an EMR release such as emr-7.2.0-latest",
                self.release_label
            )));
        }
        if let Some(uri) = &self.monitoring.s3_log_uri
            && !uri.starts_with("s3://")
        {
            return Err(Error::config(format!(
                "S3 log URI `{uri}`: expected s3://<bucket>/<prefix>"
            )));
        }
        if let Some(endpoint) = &self.endpoint_url {
            url::Url::parse(endpoint).map_err(|e| {
                Error::config(format!(
                    "endpoint `{endpoint}`: {e}; expected an http(s) URL"
                ))
            })?;
        }
        if self.name.is_empty() {
            return Err(Error::config("backend name is empty"));
        }
        Ok(())
    }
}

/// Names of URL parameters whose values are never shown.
const SECRET_PARAMETERS: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];

/// The URL as it may appear in an error: without user info and secret parameter values.
fn redacted(url: &url::Url) -> String {
    let has_secret = !url.username().is_empty()
        || url.password().is_some()
        || url
            .query_pairs()
            .any(|(k, _)| SECRET_PARAMETERS.contains(&k.as_ref()));
    if !has_secret {
        return url.as_str().to_owned();
    }
    let mut shown = url.clone();
    // Both only fail for URLs that cannot have user info, which then has none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SECRET_PARAMETERS.contains(&k.as_ref()) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/spark";

    #[test]
    fn url_maps_every_parameter() {
        let config = EmrConfig::from_url(&format!(
            "emr://vc0123?role={ROLE}&release=emr-7.2.0-latest&region=eu-west-1&profile=prod\
             &endpoint=http://127.0.0.1:5000&log_group=/emr/spark&log_stream_prefix=pipelines\
             &s3_log_uri=s3://logs/emr&persistent_app_ui=false&job_max_attempts=2&sdk_max_attempts=1&name=phi"
        ))
        .unwrap();
        let expected = EmrConfig::new("vc0123", ROLE, "emr-7.2.0-latest")
            .name("phi")
            .region("eu-west-1")
            .profile("prod")
            .endpoint_url("http://127.0.0.1:5000")
            .cloudwatch_logs("/emr/spark", Some("pipelines".into()))
            .s3_logs("s3://logs/emr")
            .persistent_app_ui(false)
            .job_max_attempts(2)
            .sdk_max_attempts(1);
        assert_eq!(config, expected);
    }

    #[test]
    fn percent_encoded_values_are_decoded() {
        let config = EmrConfig::from_url(
            "emr://vc1?role=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa&release=emr-6.15.0-latest",
        )
        .unwrap();
        assert_eq!(config.execution_role_arn, "arn:aws:iam::1:role/a");
    }

    #[test]
    fn bad_urls_name_what_is_wrong() {
        let cases = [
            ("emr:/", "expected emr://"),
            (
                "s3://vc1?role=arn:x&release=emr-7.2.0-latest",
                "scheme is `s3`",
            ),
            ("emr://vc1?release=emr-7.2.0-latest", "missing `role="),
            (
                &format!("emr://vc1?role={ROLE}") as &str,
                "missing `release=",
            ),
            (
                &format!("emr://vc1?role={ROLE}&release=emr-7.2.0-latest&colour=red"),
                "unknown parameter `colour`",
            ),
            (
                &format!("emr://VC_1?role={ROLE}&release=emr-7.2.0-latest"),
                "virtual cluster id `VC_1`",
            ),
            (
                &format!("emr://?role={ROLE}&release=emr-7.2.0-latest"),
                "expected emr://<virtual-cluster-id>",
            ),
            (
                "emr://vc1?role=spark&release=emr-7.2.0-latest",
                "expected an IAM role ARN",
            ),
            (
                &format!("emr://vc1?role={ROLE}&release=7.2"),
                "expected an EMR release",
            ),
            (
                &format!("emr://vc1?role={ROLE}&release=emr-7.2.0-latest&job_max_attempts=0"),
                "`job_max_attempts=0`",
            ),
            (
                &format!("emr://vc1?role={ROLE}&release=emr-7.2.0-latest&persistent_app_ui=yes"),
                "expected `true` or `false`",
            ),
            (
                &format!("emr://vc1?role={ROLE}&release=emr-7.2.0-latest&s3_log_uri=/tmp/x"),
                "expected s3://",
            ),
            (
                &format!("emr://vc1/jobs?role={ROLE}&release=emr-7.2.0-latest"),
                "only a virtual cluster id",
            ),
        ];
        for (url, expected) in cases {
            let message = EmrConfig::from_url(url).unwrap_err().to_string();
            assert!(message.contains(expected), "{url}: {message}");
            assert!(message.contains("EMR connection URL"), "{url}: {message}");
        }
    }

    #[test]
    fn credentials_in_a_url_are_refused_without_echoing_them() {
        for url in [
            format!("emr://AKID:topsecret@vc1?role={ROLE}&release=emr-7.2.0-latest"),
            format!("emr://vc1?role={ROLE}&release=emr-7.2.0-latest&secret_access_key=topsecret"),
        ] {
            let message = EmrConfig::from_url(&url).unwrap_err().to_string();
            assert!(
                message.contains("credentials do not belong in a URL"),
                "{message}"
            );
            assert!(!message.contains("topsecret"), "{message}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config =
            EmrConfig::new("vc1", ROLE, "emr-7.2.0-latest").credentials(StaticCredentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI",
                Some("sessiontoken123".into()),
            ));
        let debug = format!("{config:?}");
        assert!(debug.contains("AKIDEXAMPLE"));
        assert!(
            !debug.contains("wJalrXUtnFEMI") && !debug.contains("sessiontoken123"),
            "{debug}"
        );
    }
}
