//! The EMR on EKS backend against a wiremock stand-in of the `emr-containers` API: the bpg-core
//! conformance kit, the wire format of what it sends, and how API errors surface.

#![cfg(feature = "emr")]

#[path = "support/emr_standin.rs"]
mod emr_standin;

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::emr::{EmrConfig, EmrContainersBackend, IDEMPOTENCY_TAG, StaticCredentials};
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, Error, IdempotencyKey, JobId, JobState, LogOptions, SparkJob, SubmitOptions,
    WaitOptions,
};
use emr_standin::{EmrStandIn, Fault};

const VC: &str = "vc0conformance";
const REGION: &str = "us-east-1";
const ROLE: &str = "arn:aws:iam::123456789012:role/spark-jobs";
const STEP: Duration = Duration::from_millis(150);

fn config(endpoint: &str) -> EmrConfig {
    EmrConfig::new(VC, ROLE, "emr-7.2.0-latest")
        .name("emr-test")
        .region(REGION)
        .credentials(StaticCredentials::new(
            "AKIDSTANDIN",
            "standin-secret",
            None,
        ))
        .endpoint_url(endpoint)
        .sdk_max_attempts(1)
}

async fn backend(config: EmrConfig) -> EmrContainersBackend {
    EmrContainersBackend::connect(config)
        .await
        .expect("backend")
}

fn jobs() -> ConformanceJobs {
    let base = SparkJob::new("ok-pi", AppType::Python, "3.5", "s3://bucket/apps/pi.py")
        .with_arguments(["10"]);
    ConformanceJobs {
        succeeds: base.clone(),
        fails: SparkJob {
            name: "fail-pi".into(),
            ..base.clone()
        },
        long_running: SparkJob {
            name: "long-pi".into(),
            ..base
        },
    }
}

fn options() -> ConformanceOptions {
    ConformanceOptions {
        wait: WaitOptions::default()
            .poll_interval(Duration::from_millis(40))
            .timeout(Duration::from_secs(20)),
        ..ConformanceOptions::default()
    }
}

#[tokio::test]
async fn conformance_with_s3_logs() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let emr = backend(config(&standin.server.uri()).s3_logs("s3://logs-bucket/emr/")).await;
    assert!(!emr.capabilities().logs, "S3 logs cannot be streamed");
    testkit::run_all(Arc::new(emr.clone()), &jobs(), &options()).await;

    // The honest answer names the S3 prefix of this very job run.
    let run = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect("submit");
    let err = match emr.logs(&run.id, &LogOptions::snapshot()).await {
        Ok(_) => panic!("S3-only logs must not pretend to stream"),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(matches!(err, Error::Unsupported { .. }), "{message}");
    assert!(
        message.contains(&format!(
            "s3://logs-bucket/emr/{VC}/jobs/{}/containers/",
            run.id
        )),
        "{message}"
    );
}

#[cfg(feature = "emr-cloudwatch")]
#[tokio::test]
async fn conformance_with_cloudwatch_tailing() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let emr = backend(
        config(&standin.server.uri())
            .cloudwatch_logs("/emr/spark", Some("pipelines".into()))
            .log_poll_interval(Duration::from_millis(50)),
    )
    .await;
    assert!(emr.capabilities().follow_logs);
    testkit::run_all(Arc::new(emr.clone()), &jobs(), &options()).await;

    // Following a running job yields the line written so far, then the rest, then ends.
    let run = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect("submit");
    let lines = futures::StreamExt::collect::<Vec<_>>(
        emr.logs(&run.id, &LogOptions::follow())
            .await
            .expect("logs"),
    )
    .await;
    let texts: Vec<String> = lines.into_iter().map(|l| l.expect("line").text).collect();
    let expected: Vec<String> = (0..3)
        .map(|i| format!("driver line {i} of {}", run.id))
        .collect();
    assert_eq!(
        texts, expected,
        "only the driver's lines, each once, in order"
    );
    let last = futures::StreamExt::collect::<Vec<_>>(
        emr.logs(&run.id, &LogOptions::snapshot().tail(1))
            .await
            .expect("logs"),
    )
    .await;
    let last = last
        .into_iter()
        .map(|l| l.expect("line"))
        .collect::<Vec<_>>();
    assert_eq!((last.len(), last[0].position), (1, 2));
    assert!(
        standin.seen().iter().any(|r| r == "POST /"),
        "CloudWatch Logs calls went to the configured endpoint"
    );
}

#[tokio::test]
async fn start_job_run_request_carries_token_driver_monitoring_and_tags() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let emr = backend(
        config(&standin.server.uri())
            .s3_logs("s3://logs-bucket/emr")
            .persistent_app_ui(false)
            .job_max_attempts(2)
            .tag("team", "platform"),
    )
    .await;
    let key = IdempotencyKey::for_task("daily", "run-1", "pi", 1);
    let job = SparkJob::new("daily pi", AppType::Python, "3.5", "s3://bucket/apps/pi.py")
        .with_arguments(["100"])
        .with_spark_conf("spark.sql.shuffle.partitions", "200")
        .with_spark_conf("spark.driver.extraJavaOptions", "-Da=1 -Db=2");
    let submission = emr
        .submit(
            &job,
            &SubmitOptions::new()
                .with_idempotency_key(key.clone())
                .with_tag("dag", "daily"),
        )
        .await
        .expect("submit");
    assert_eq!(submission.backend, "emr-test");
    assert_eq!(submission.cluster.as_deref(), Some(VC));
    assert_eq!(submission.idempotency_key.as_ref(), Some(&key));

    let bodies = standin.start_bodies();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["clientToken"], key.digest(64));
    assert_eq!(body["name"], "daily-pi");
    assert_eq!(body["executionRoleArn"], ROLE);
    assert_eq!(body["releaseLabel"], "emr-7.2.0-latest");
    let driver = &body["jobDriver"]["sparkSubmitJobDriver"];
    assert_eq!(driver["entryPoint"], "s3://bucket/apps/pi.py");
    assert_eq!(driver["entryPointArguments"], serde_json::json!(["100"]));
    let params = driver["sparkSubmitParameters"]
        .as_str()
        .expect("sparkSubmitParameters");
    assert!(
        params.contains("--conf spark.sql.shuffle.partitions=200"),
        "{params}"
    );
    // A value with spaces cannot travel in sparkSubmitParameters: spark-defaults carries it.
    let defaults = &body["configurationOverrides"]["applicationConfiguration"][0];
    assert_eq!(defaults["classification"], "spark-defaults");
    assert_eq!(
        defaults["properties"]["spark.driver.extraJavaOptions"],
        "-Da=1 -Db=2"
    );
    let monitoring = &body["configurationOverrides"]["monitoringConfiguration"];
    assert_eq!(
        monitoring["s3MonitoringConfiguration"]["logUri"],
        "s3://logs-bucket/emr"
    );
    assert_eq!(monitoring["persistentAppUI"], "DISABLED");
    assert_eq!(body["retryPolicyConfiguration"]["maxAttempts"], 2);
    assert_eq!(body["tags"]["team"], "platform");
    assert_eq!(body["tags"]["dag"], "daily");
    assert_eq!(body["tags"][IDEMPOTENCY_TAG], key.digest(64));

    // The same key again reattaches (ListJobRuns) instead of starting a second run.
    let again = emr
        .submit(
            &job,
            &SubmitOptions::new().with_idempotency_key(key.clone()),
        )
        .await
        .expect("resubmit");
    assert_eq!(again.id, submission.id);
    assert_eq!((standin.run_count(), standin.start_calls()), (1, 1));
    assert!(
        standin
            .seen()
            .iter()
            .any(|r| r == &format!("GET /virtualclusters/{VC}/jobruns"))
    );
}

#[tokio::test]
async fn find_follows_list_pagination() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let emr = backend(config(&standin.server.uri())).await;
    let key = IdempotencyKey::new("oldest");
    let first = emr
        .submit(
            &jobs().succeeds,
            &SubmitOptions::new().with_idempotency_key(key.clone()),
        )
        .await
        .expect("submit");
    // Newer runs push the keyed one onto the stand-in's later list pages (two runs per page).
    for i in 0..5 {
        emr.submit(
            &jobs().succeeds,
            &SubmitOptions::new().with_idempotency_key(IdempotencyKey::new(format!("other-{i}"))),
        )
        .await
        .expect("submit");
    }
    let found = emr.find(&key).await.expect("find").expect("found");
    assert_eq!(found.id, first.id);
    assert_eq!(found.idempotency_key, Some(key));
}

#[tokio::test]
async fn full_queue_is_temporary_and_other_validation_errors_are_not() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let emr = backend(config(&standin.server.uri())).await;
    standin.fail_next_start(Fault {
        status: 400,
        error_type: "ValidationException",
        message: "Virtual cluster has reached maxInQueueJobRuns (queue is full)",
    });
    let err = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect_err("queue full");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_temporary());
    assert!(err.to_string().contains("maxInQueueJobRuns"), "{err}");

    standin.fail_next_start(Fault {
        status: 400,
        error_type: "ValidationException",
        message: "sparkSubmitParameters is too long",
    });
    let err = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect_err("invalid");
    assert!(!err.is_temporary(), "{err:?}");
    assert!(
        err.to_string()
            .contains("ValidationException: sparkSubmitParameters is too long"),
        "{err}"
    );

    standin.fail_next_start(Fault {
        status: 500,
        error_type: "InternalServerException",
        message: "try later",
    });
    let err = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect_err("500");
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_temporary(),
        "{err:?}"
    );

    standin.fail_next_start(Fault {
        status: 400,
        error_type: "ThrottlingException",
        message: "Rate exceeded",
    });
    let err = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect_err("throttled");
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");

    standin.fail_next_start(Fault {
        status: 403,
        error_type: "AccessDeniedException",
        message: "not allowed to pass role",
    });
    let err = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect_err("denied");
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    assert_eq!(standin.run_count(), 0, "no refused submit created a run");
}

#[tokio::test]
async fn unknown_virtual_cluster_and_job_run_are_not_found() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let mut elsewhere = config(&standin.server.uri());
    elsewhere.virtual_cluster_id = "vcelsewhere".into();
    let other = backend(elsewhere).await;
    let err = other
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect_err("no such vc");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("vcelsewhere"), "{err}");

    let emr = backend(config(&standin.server.uri())).await;
    let err = emr
        .status(&JobId::new("0000000000000000abc"))
        .await
        .expect_err("no such run");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let err = emr
        .cancel(&JobId::new("0000000000000000abc"))
        .await
        .expect_err("no such run");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn cancel_passes_through_cancel_pending() {
    let standin = EmrStandIn::start(VC, REGION, Duration::from_millis(400)).await;
    let emr = backend(config(&standin.server.uri())).await;
    let run = emr
        .submit(&jobs().long_running, &SubmitOptions::new())
        .await
        .expect("submit");
    emr.cancel(&run.id).await.expect("cancel");
    let status = emr.status(&run.id).await.expect("status");
    assert_eq!(
        (status.state, status.native_state.as_str()),
        (JobState::Cancelling, "CANCEL_PENDING")
    );
    assert!(!status.is_terminal());
    // Cancelling while EMR is still cancelling is not an error either.
    emr.cancel(&run.id).await.expect("cancel again");
}

#[tokio::test]
async fn unreachable_endpoint_is_temporary_and_named() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let emr = backend(config(&endpoint)).await;
    let err = emr
        .status(&JobId::new("0000000000000000abc"))
        .await
        .expect_err("unreachable");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
    assert!(!format!("{err:?}").contains("standin-secret"));
}

#[tokio::test]
async fn connection_url_builds_a_working_backend() {
    let standin = EmrStandIn::start(VC, REGION, STEP).await;
    let url = format!(
        "emr://{VC}?role={ROLE}&release=emr-7.2.0-latest&region={REGION}&endpoint={}&sdk_max_attempts=1&name=phi",
        standin.server.uri()
    );
    let emr = backend(
        EmrConfig::from_url(&url)
            .expect("url")
            .credentials(StaticCredentials::new(
                "AKIDSTANDIN",
                "standin-secret",
                None,
            )),
    )
    .await;
    assert_eq!(emr.name(), "phi");
    let run = emr
        .submit(&jobs().succeeds, &SubmitOptions::new())
        .await
        .expect("submit");
    assert_eq!(run.backend, "phi");
    assert!(
        !format!("{emr:?}").contains("standin-secret"),
        "Debug hides the secret"
    );
}
