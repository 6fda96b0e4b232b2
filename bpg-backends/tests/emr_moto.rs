//! Interoperability with a real `moto_server` (moto 5, installed by `.ci/run`): the EMR backend's
//! requests are what an AWS emr-containers server accepts, and its answers are read right.
//!
//! moto never advances job-run states, so the server is started through
//! `support/moto_emrc_progress.py`, which steps them over time. Without `moto_server` on PATH the
//! test prints why and passes only when `CI` is unset; under CI it fails.

#![cfg(feature = "emr")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_emrcontainers::types::{
    ContainerInfo, ContainerProvider, ContainerProviderType, EksInfo,
};
use bpg_backends::emr::{EmrConfig, EmrContainersBackend, StaticCredentials};
use bpg_core::{
    AppType, Backend, BackendExt, Error, IdempotencyKey, JobId, JobState, JobStatus, LogOptions,
    SparkJob, SubmitOptions, WaitOptions,
};

const REGION: &str = "us-east-1";
const ROLE: &str = "arn:aws:iam::123456789012:role/spark-jobs";

/// The Python interpreter next to `moto_server` on PATH (the venv that has moto).
fn moto_python() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let server = dir.join("moto_server");
        let python = dir.join("python");
        (server.is_file() && python.is_file()).then_some(python)
    })
}

/// A moto server on a free port, killed when dropped.
struct Moto {
    child: tokio::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start(python: &PathBuf) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("address")
            .port();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_emrc_progress.py");
        let child = tokio::process::Command::new(python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("EMRC_STEP_SECONDS", "0.4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_emrc_progress.py");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn job(name: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "s3://bucket/apps/pi.py").with_arguments(["10"])
}

async fn wait_for(emr: &EmrContainersBackend, id: &JobId, what: JobState) -> JobStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = emr.status(id).await.expect("status");
        if status.state == what {
            return status;
        }
        assert!(
            !status.is_terminal(),
            "{id} ended {status:?} before reaching {what}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} did not reach {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sdk_client(endpoint: &str) -> aws_sdk_emrcontainers::Client {
    aws_sdk_emrcontainers::Client::from_conf(
        aws_sdk_emrcontainers::Config::builder()
            .behavior_version(aws_sdk_emrcontainers::config::BehaviorVersion::latest())
            .region(aws_sdk_emrcontainers::config::Region::new(REGION))
            .credentials_provider(aws_sdk_emrcontainers::config::Credentials::new(
                "AKIDMOTO",
                "moto-secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(endpoint)
            .retry_config(aws_sdk_emrcontainers::config::retry::RetryConfig::disabled())
            .build(),
    )
}

/// A moto server with one virtual cluster, or `None` (after saying why) when moto is not
/// installed and `CI` is unset.
async fn moto_with_virtual_cluster() -> Option<(Moto, String)> {
    let Some(python) = moto_python() else {
        if std::env::var_os("CI").is_some() {
            panic!("moto_server is not on PATH; .ci/run installs it into $HOME/.cache/bpg-ci-venv");
        }
        eprintln!(
            "skipping: moto_server not on PATH (export PATH=$HOME/.cache/bpg-ci-venv/bin:$PATH)"
        );
        return None;
    };
    let moto = Moto::start(&python).await;
    // The backend only runs jobs; the virtual cluster is made with the plain SDK.
    let vc = sdk_client(&moto.endpoint)
        .create_virtual_cluster()
        .name("bpg-interop")
        .container_provider(
            ContainerProvider::builder()
                .r#type(ContainerProviderType::Eks)
                .id("eks-interop")
                .info(ContainerInfo::EksInfo(
                    EksInfo::builder().namespace("spark").build(),
                ))
                .build()
                .expect("provider"),
        )
        .send()
        .await
        .expect("create virtual cluster")
        .id
        .expect("vc id");
    Some((moto, vc))
}

#[tokio::test]
async fn submit_run_cancel_and_find_against_moto() {
    let Some((moto, vc)) = moto_with_virtual_cluster().await else {
        return;
    };
    let sdk = sdk_client(&moto.endpoint);

    let emr = EmrContainersBackend::connect(
        EmrConfig::new(&vc, ROLE, "emr-7.2.0-latest")
            .name("emr-moto")
            .region(REGION)
            .credentials(StaticCredentials::new("AKIDMOTO", "moto-secret", None))
            .endpoint_url(&moto.endpoint)
            .s3_logs("s3://logs-bucket/emr")
            .sdk_max_attempts(1),
    )
    .await
    .expect("backend");

    // Submit a long job: PENDING → SUBMITTED → RUNNING, then cancel: CANCELLED.
    let key = IdempotencyKey::for_task("interop", "run-1", "long", 1);
    let submission = emr
        .submit(
            &job("long-pi"),
            &SubmitOptions::new().with_idempotency_key(key.clone()),
        )
        .await
        .expect("submit");
    assert_eq!(submission.cluster.as_deref(), Some(vc.as_str()));
    let first = emr.status(&submission.id).await.expect("status");
    assert!(
        matches!(
            first.state,
            JobState::Pending | JobState::Submitted | JobState::Running
        ),
        "{first:?}"
    );
    wait_for(&emr, &submission.id, JobState::Running).await;
    emr.cancel(&submission.id).await.expect("cancel");
    let cancelled = wait_for(&emr, &submission.id, JobState::Cancelled).await;
    assert_eq!(cancelled.native_state, "CANCELLED");
    assert_eq!(
        cancelled.message.as_deref(),
        Some("JobRun CANCELLED successfully.")
    );
    emr.cancel(&submission.id)
        .await
        .expect("cancelling a cancelled run is not an error");

    // List/find: the key finds the run; resubmitting with it reattaches instead of starting
    // another (moto itself does not deduplicate clientToken).
    let found = emr.find(&key).await.expect("find").expect("found");
    assert_eq!(found.id, submission.id);
    let again = emr
        .submit(
            &job("long-pi"),
            &SubmitOptions::new().with_idempotency_key(key.clone()),
        )
        .await
        .expect("resubmit");
    assert_eq!(again.id, submission.id);
    assert_eq!(
        emr.find(&IdempotencyKey::new("never-used"))
            .await
            .expect("find"),
        None
    );
    let runs = sdk
        .list_job_runs()
        .virtual_cluster_id(&vc)
        .send()
        .await
        .expect("list")
        .job_runs
        .unwrap_or_default();
    assert_eq!(runs.len(), 1, "one job run for one key");
    assert_eq!(runs[0].client_token(), Some(key.digest(64).as_str()));

    // A job that runs to completion, and one that fails with moto's failure fields read back.
    let wait = WaitOptions::default()
        .poll_interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(20));
    let (_, done) = emr
        .submit_and_wait(&job("ok-pi"), &SubmitOptions::new(), &wait)
        .await
        .expect("run to completion");
    assert_eq!(
        (done.state, done.native_state.as_str()),
        (JobState::Succeeded, "COMPLETED")
    );
    let (_, failed) = emr
        .submit_and_wait(&job("fail-pi"), &SubmitOptions::new(), &wait)
        .await
        .expect("run to failure");
    assert_eq!(failed.state, JobState::Failed);
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("USER_ERROR")),
        "{failed:?}"
    );

    // Logs go to S3 here: the backend says where instead of pretending.
    let err = match emr.logs(&submission.id, &LogOptions::snapshot()).await {
        Ok(_) => panic!("S3-only logs must not pretend to stream"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains(&format!(
            "s3://logs-bucket/emr/{vc}/jobs/{}/",
            submission.id
        )),
        "{err}"
    );

    // Typed errors from moto: an unknown run, an unknown virtual cluster.
    let err = emr
        .status(&JobId::new("0000000000000000000"))
        .await
        .expect_err("unknown run");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let elsewhere = EmrContainersBackend::connect(
        EmrConfig::new("vcdoesnotexist", ROLE, "emr-7.2.0-latest")
            .region(REGION)
            .credentials(StaticCredentials::new("AKIDMOTO", "moto-secret", None))
            .endpoint_url(&moto.endpoint)
            .sdk_max_attempts(1),
    )
    .await
    .expect("backend");
    let err = elsewhere
        .submit(&job("ok-pi"), &SubmitOptions::new())
        .await
        .expect_err("unknown vc");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    moto.stop().await;
}

/// The driver's CloudWatch streams, as moto's CloudWatch Logs serves them, are found under the
/// job run's prefix and read in time order; executor and job-runner streams are left out.
#[cfg(feature = "emr-cloudwatch")]
#[tokio::test]
async fn driver_logs_are_tailed_from_moto_cloudwatch() {
    let Some((moto, vc)) = moto_with_virtual_cluster().await else {
        return;
    };
    let emr = EmrContainersBackend::connect(
        EmrConfig::new(&vc, ROLE, "emr-7.2.0-latest")
            .region(REGION)
            .credentials(StaticCredentials::new("AKIDMOTO", "moto-secret", None))
            .endpoint_url(&moto.endpoint)
            .cloudwatch_logs("/emr/bpg", Some("interop".into()))
            .log_poll_interval(Duration::from_millis(100))
            .sdk_max_attempts(1),
    )
    .await
    .expect("backend");
    let wait = WaitOptions::default()
        .poll_interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(20));
    let (run, done) = emr
        .submit_and_wait(&job("ok-pi"), &SubmitOptions::new(), &wait)
        .await
        .expect("run");
    assert_eq!(done.state, JobState::Succeeded);

    // What EMR's fluent-bit sidecar would have written for this run.
    let logs = aws_sdk_cloudwatchlogs::Client::from_conf(
        aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatchlogs::config::Region::new(REGION))
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                "AKIDMOTO",
                "moto-secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(&moto.endpoint)
            .build(),
    );
    logs.create_log_group()
        .log_group_name("/emr/bpg")
        .send()
        .await
        .expect("log group");
    let id = run.id.as_str();
    let base = format!("interop/{vc}/jobs/{id}/containers");
    let now = chrono::Utc::now().timestamp_millis();
    let streams = [
        (
            format!("{base}/spark-{id}/spark-{id}-driver/stdout"),
            vec![(1, "pi is roughly 3.14"), (3, "done")],
        ),
        (
            format!("{base}/spark-{id}/spark-{id}-driver/stderr"),
            vec![
                (0, "INFO SparkContext: starting"),
                (2, "INFO DAGScheduler: job 0 finished"),
            ],
        ),
        (
            format!("{base}/spark-{id}/spark-{id}-exec-1/stdout"),
            vec![(0, "executor line")],
        ),
        (
            format!("{base}/{id}-runner/stdout"),
            vec![(0, "job runner line")],
        ),
    ];
    for (stream, events) in &streams {
        logs.create_log_stream()
            .log_group_name("/emr/bpg")
            .log_stream_name(stream)
            .send()
            .await
            .expect("log stream");
        let mut put = logs
            .put_log_events()
            .log_group_name("/emr/bpg")
            .log_stream_name(stream);
        for (offset, message) in events {
            put = put.log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now + offset)
                    .message(*message)
                    .build()
                    .expect("event"),
            );
        }
        put.send().await.expect("put events");
    }

    let read = |options: LogOptions| {
        let emr = emr.clone();
        let id = run.id.clone();
        async move {
            let stream = emr.logs(&id, &options).await.expect("logs");
            futures::StreamExt::collect::<Vec<_>>(stream)
                .await
                .into_iter()
                .map(|l| l.expect("line"))
                .collect::<Vec<_>>()
        }
    };
    let all = read(LogOptions::snapshot()).await;
    let texts: Vec<&str> = all.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "INFO SparkContext: starting",
            "pi is roughly 3.14",
            "INFO DAGScheduler: job 0 finished",
            "done"
        ]
    );
    assert_eq!(
        all.iter().map(|l| l.position).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(read(LogOptions::snapshot().from_line(2)).await, all[2..]);
    let followed = tokio::time::timeout(Duration::from_secs(20), read(LogOptions::follow()))
        .await
        .expect("following a finished run ends");
    assert_eq!(followed, all);
    moto.stop().await;
}
