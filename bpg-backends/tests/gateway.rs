//! The gateway backend against bpg-client's `MockGateway`: the bpg-core conformance kit, submits
//! whose answer is lost, cancel by DELETE, logs, auth from a connection URL.

#![cfg(feature = "gateway")]

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::gateway::{CANCELLED_NATIVE_STATE, GatewayBackend, GatewayConfig};
use bpg_backends::layers::{LayerExt, RetryLayer};
use bpg_client::mock::{Fault, MockCluster, MockGateway, Route};
use bpg_client::{BpgClient, RetryPolicy};
use bpg_core::formats::to_bpg_request;
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, BackendExt, Error, IdempotencyKey, JobId, JobState, LogOptions, SparkJob,
    SubmitOptions, WaitOptions,
};
use futures::StreamExt;
use secrecy::SecretString;

async fn mock(clusters: &[&str]) -> MockGateway {
    let mut builder = MockGateway::builder().max_log_hold(Duration::from_millis(300));
    for id in clusters {
        builder = builder.cluster(MockCluster::new(*id));
    }
    builder.start().await
}

/// The connection URL a pipeline would hold for this gateway, with `user` in it.
fn connection_url(gateway: &MockGateway, user: &str) -> String {
    gateway
        .uri()
        .replace("http://", &format!("bpg+http://{user}@"))
}

fn fast(config: GatewayConfig) -> GatewayConfig {
    config
        .retry(
            RetryPolicy::default()
                .backoff_between(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .log_poll_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_secs(5))
}

fn backend(gateway: &MockGateway) -> GatewayBackend {
    let config = GatewayConfig::from_url(&connection_url(gateway, "airflow"))
        .unwrap()
        .name("bpg-test");
    GatewayBackend::new(fast(config)).unwrap()
}

fn job(name: &str, duration: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "local:///opt/app/job.py")
        .with_label("sim/duration", duration)
        .with_label("sim/log-lines", "4")
}

fn key(name: &str) -> IdempotencyKey {
    testkit::unique_key(name)
}

fn wait() -> WaitOptions {
    WaitOptions::default()
        .poll_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(30))
}

#[tokio::test]
async fn conformance_kit_passes_against_the_mock_gateway() {
    let gateway = mock(&["spark-cluster-a"]).await;
    let backend: Arc<dyn Backend> = Arc::new(backend(&gateway));
    let base = SparkJob::new(
        "conformance",
        AppType::Python,
        "3.5",
        "local:///opt/app/conformance.py",
    );
    let jobs = ConformanceJobs {
        succeeds: base
            .clone()
            .with_label("sim/duration", "400ms")
            .with_label("sim/log-lines", "3")
            .with_label("sim/queue-delay", "100ms"),
        fails: base
            .clone()
            .with_label("sim/duration", "200ms")
            .with_label("sim/outcome", "failed")
            .with_label("sim/message", "conformance failure"),
        long_running: base.with_label("sim/duration", "1h"),
    };
    let options = ConformanceOptions {
        wait: WaitOptions::default()
            .poll_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(30)),
        unknown_id: JobId::new("spark-cluster-a-00000000000000000000000000000000"),
    };
    testkit::run_all(backend, &jobs, &options).await;
}

#[tokio::test]
async fn a_lost_submit_answer_is_found_again_and_a_retry_starts_nothing_new() {
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    let opts = SubmitOptions::new().with_idempotency_key(key("lost"));
    gateway.inject(Fault::drop_connection().on(Route::Submit).times(1));

    let first = backend.submit(&job("lost", "200ms"), &opts).await.unwrap();
    let accepted = gateway.submissions();
    assert_eq!(accepted.len(), 1, "the dropped submit was accepted once");
    assert_eq!(first.id.as_str(), accepted[0].id, "the backend found it");
    let posts = gateway.journal_for(Route::Submit);
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].status, None, "its answer was lost");

    let retried = backend.submit(&job("lost", "200ms"), &opts).await.unwrap();
    assert_eq!(retried.id, first.id);
    assert_eq!(gateway.accepted_count(), 1, "exactly one application");
    assert_eq!(
        gateway.journal_for(Route::Submit).len(),
        1,
        "no second POST"
    );
    let status = backend.wait_for_terminal(&first.id, &wait()).await.unwrap();
    assert_eq!(status.state, JobState::Succeeded);
}

#[tokio::test]
async fn a_retry_in_another_process_finds_the_submission_whose_answer_was_lost() {
    let gateway = mock(&["spark-a"]).await;
    let k = key("crashed");
    let spark_job = job("crashed", "200ms");

    // An earlier process sent the submit; the connection dropped after the gateway accepted it,
    // and it could not look (it crashed, or mySubmissions was down).
    let mut request = to_bpg_request(&spark_job);
    request.submission_id_suffix = Some(GatewayBackend::submission_id_suffix(&k));
    gateway.inject(Fault::drop_connection().on(Route::Submit).times(1));
    let lost = gateway
        .client("airflow")
        .submit(&request)
        .await
        .unwrap_err();
    assert!(lost.is_temporary(), "{lost:?}");
    assert_eq!(gateway.accepted_count(), 1);

    // The retry, through the retry layer, as a resumed pipeline runs it: an earlier attempt may
    // exist, so it looks first.
    let retrying = (Arc::new(backend(&gateway)) as Arc<dyn Backend>).layer(RetryLayer::new());
    let submission = retrying
        .find(&k)
        .await
        .unwrap()
        .expect("found by its suffix");
    assert_eq!(submission.id.as_str(), gateway.submissions()[0].id);
    assert_eq!(submission.idempotency_key.as_ref(), Some(&k));
    // Found once, it is remembered: submitting with the key again starts nothing new.
    let opts = SubmitOptions::new().with_idempotency_key(k.clone());
    assert_eq!(
        retrying.submit(&spark_job, &opts).await.unwrap().id,
        submission.id
    );
    assert_eq!(gateway.accepted_count(), 1, "exactly one application");
    assert_eq!(
        gateway.journal_for(Route::Submit).len(),
        1,
        "no second POST"
    );
    assert_eq!(
        retrying.find(&k).await.unwrap().map(|s| s.id),
        Some(submission.id)
    );
}

#[tokio::test]
async fn first_submits_do_not_list_the_users_submissions() {
    // Looking a key up lists every submission of the user: doing it before each first submit
    // would make a pipeline's submits quadratic in the number of jobs.
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    for i in 0..50 {
        let opts = SubmitOptions::new().with_idempotency_key(key(&format!("task-{i}")));
        backend
            .submit(&job(&format!("task-{i}"), "10ms"), &opts)
            .await
            .unwrap();
    }
    assert_eq!(gateway.accepted_count(), 50);
    assert_eq!(gateway.journal_for(Route::MySubmissions).len(), 0);
    // A lost answer is the case that needs a lookup: exactly one.
    gateway.inject(Fault::drop_connection().on(Route::Submit).times(1));
    let opts = SubmitOptions::new().with_idempotency_key(key("lost"));
    backend.submit(&job("lost", "10ms"), &opts).await.unwrap();
    assert_eq!(gateway.accepted_count(), 51);
    assert_eq!(gateway.journal_for(Route::MySubmissions).len(), 1);
}

#[tokio::test]
async fn a_submit_that_never_reached_the_gateway_fails_temporarily_and_is_retried() {
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    gateway.inject(Fault::status(503).on(Route::Submit).times(1));
    let opts = SubmitOptions::new().with_idempotency_key(key("unavailable"));
    let err = backend
        .submit(&job("unavailable", "100ms"), &opts)
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    assert_eq!(gateway.accepted_count(), 0);
    let submission = backend
        .submit(&job("unavailable", "100ms"), &opts)
        .await
        .unwrap();
    assert_eq!(gateway.accepted_count(), 1);
    assert_eq!(submission.id.as_str(), gateway.submissions()[0].id);
}

#[tokio::test]
async fn the_key_suffix_follows_the_jobs_own_suffix_and_clusters_may_contain_hyphens() {
    let gateway = mock(&["spark-cluster-a"]).await;
    let backend = backend(&gateway);
    let k = key("suffix");
    let mut spark_job = job("suffixed", "100ms").with_queue("analytics");
    spark_job
        .extra
        .insert("submissionIdSuffix".into(), "daily-pi".into());
    let opts = SubmitOptions::new()
        .with_idempotency_key(k.clone())
        .with_tag("team", "growth");
    let submission = backend.submit(&spark_job, &opts).await.unwrap();
    let digest = GatewayBackend::submission_id_suffix(&k);
    assert!(
        submission
            .id
            .as_str()
            .ends_with(&format!("-daily-pi-{digest}")),
        "{}",
        submission.id
    );
    assert_eq!(submission.cluster.as_deref(), Some("spark-cluster-a"));
    assert_eq!(submission.namespace.as_deref(), Some("analytics"));
    assert_eq!(submission.backend, "bpg-test");
    let body = gateway.journal_for(Route::Submit)[0].body_json().unwrap();
    assert_eq!(body["driver"]["labels"]["team"], "growth");

    // A fresh backend (another process) finds it by the key alone.
    let found = backend_in_new_process(&gateway).find(&k).await.unwrap();
    let found = found.expect("found by suffix");
    assert_eq!(found.id, submission.id);
    assert_eq!(found.namespace.as_deref(), Some("analytics"));
    assert_eq!(found.cluster.as_deref(), Some("spark-cluster-a"));
}

fn backend_in_new_process(gateway: &MockGateway) -> GatewayBackend {
    backend(gateway)
}

#[tokio::test]
async fn cancel_deletes_a_running_job_and_it_then_reads_cancelled() {
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    let submission = backend
        .submit(
            &job("long", "1h"),
            &SubmitOptions::new().with_idempotency_key(key("cancel")),
        )
        .await
        .unwrap();
    let mut running = false;
    for _ in 0..100 {
        if backend.status(&submission.id).await.unwrap().state == JobState::Running {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running, "the job starts");

    backend.cancel(&submission.id).await.unwrap();
    assert!(gateway.submission(submission.id.as_str()).unwrap().deleted);
    let status = backend.status(&submission.id).await.unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    assert_eq!(status.native_state, CANCELLED_NATIVE_STATE);
    backend.cancel(&submission.id).await.unwrap();

    // Another process never cancelled it: to it the job is simply gone.
    let err = backend_in_new_process(&gateway)
        .status(&submission.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn cancelling_a_finished_job_keeps_its_final_state() {
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    let submission = backend
        .submit(&job("quick", "50ms"), &SubmitOptions::new())
        .await
        .unwrap();
    backend
        .wait_for_terminal(&submission.id, &wait())
        .await
        .unwrap();
    backend.cancel(&submission.id).await.unwrap();
    assert!(!gateway.submission(submission.id.as_str()).unwrap().deleted);
    assert!(gateway.journal_for(Route::Delete).is_empty());
    assert_eq!(
        backend.status(&submission.id).await.unwrap().state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn logs_follow_resume_and_tail() {
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    let submission = backend
        .submit(&job("logs", "300ms"), &SubmitOptions::new())
        .await
        .unwrap();
    let texts = |options: LogOptions| {
        let backend = backend.clone();
        let id = submission.id.clone();
        async move {
            backend
                .logs(&id, &options)
                .await
                .unwrap()
                .map(|l| l.unwrap())
                .collect::<Vec<_>>()
                .await
        }
    };
    let followed = texts(LogOptions::follow()).await;
    assert_eq!(followed.len(), 4, "{followed:?}");
    let positions: Vec<u64> = followed.iter().map(|l| l.position).collect();
    assert_eq!(positions, [0, 1, 2, 3]);
    let tail = texts(LogOptions::snapshot().tail(2)).await;
    assert_eq!(tail, followed[2..]);
    let resumed = texts(LogOptions::snapshot().from_line(3)).await;
    assert_eq!(resumed, followed[3..]);
}

#[tokio::test]
async fn credentials_from_a_connection_url_and_a_secret_reach_the_gateway() {
    let gateway = MockGateway::builder()
        .allowed_users(["airflow"])
        .start()
        .await;
    let config = GatewayConfig::from_url(&connection_url(&gateway, "airflow"))
        .unwrap()
        .password(SecretString::from("s3cret-pw"));
    let backend = GatewayBackend::new(fast(config)).unwrap();
    assert!(!format!("{backend:?}").contains("s3cret"));
    let submission = backend
        .submit(
            &job("auth", "50ms"),
            &SubmitOptions::new().with_idempotency_key(key("auth")),
        )
        .await
        .unwrap();
    let post = &gateway.journal_for(Route::Submit)[0];
    assert_eq!(post.user.as_deref(), Some("airflow"));
    assert!(post.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(gateway.submissions()[0].user, "airflow");
    assert_eq!(submission.id.as_str(), gateway.submissions()[0].id);

    let stranger = GatewayConfig::from_url(&connection_url(&gateway, "mallory"))
        .unwrap()
        .password(SecretString::from("s3cret-pw"));
    let err = GatewayBackend::new(fast(stranger))
        .unwrap()
        .submit(&job("auth", "50ms"), &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[tokio::test]
async fn a_rejected_request_is_an_invalid_spec_and_is_not_retried() {
    let gateway = mock(&["spark-a"]).await;
    let backend = backend(&gateway);
    let unsupported = SparkJob::new("old", AppType::Python, "2.4", "local:///old.py");
    let err = backend
        .submit(
            &unsupported,
            &SubmitOptions::new().with_idempotency_key(key("invalid")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(err.to_string().contains("2.4"), "{err}");
    assert_eq!(gateway.journal_for(Route::Submit).len(), 1);
    assert_eq!(gateway.accepted_count(), 0);
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_temporary_error_naming_the_request() {
    let client = BpgClient::builder("http://127.0.0.1:9/skatev2")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let backend = GatewayBackend::from_client("down", client);
    let err = backend
        .status(&JobId::new("spark-a-00000000000000000000000000000000"))
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    assert!(err.to_string().contains("/skatev2/spark/"), "{err}");
}
