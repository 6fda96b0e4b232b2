//! `SparkKubernetesBackend` against `MockApiServer`, the wiremock stand-in of an API server with
//! the spark-operator behind it. Real HTTP, so real (short) time.
#![cfg(feature = "k8s-mock")]

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::k8s::mock::{DeleteRequest, MockApiServer};
use bpg_backends::k8s::{IDEMPOTENCY_LABEL, SparkKubernetesBackend};
use bpg_backends::layers::{LayerExt, RetryLayer};
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, BackendExt, Error, IdempotencyKey, JobState, LogOptions, RestartPolicy,
    SparkJob, SubmitOptions, WaitOptions,
};
use futures::StreamExt;

fn job(name: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "local:///opt/app/job.py")
}

fn wait() -> WaitOptions {
    WaitOptions::default()
        .poll_interval(Duration::from_millis(200))
        .timeout(Duration::from_secs(60))
}

fn keyed(task: &str) -> SubmitOptions {
    SubmitOptions::new().with_idempotency_key(IdempotencyKey::for_task("dag", "run-1", task, 1))
}

#[tokio::test]
async fn passes_the_conformance_kit() {
    let server = MockApiServer::start().await;
    let backend = Arc::new(server.backend().unwrap());
    let options = ConformanceOptions {
        wait: wait(),
        ..ConformanceOptions::default()
    };
    testkit::run_all(backend, &ConformanceJobs::simulated(), &options).await;
    // The kit's cancel went out as a foreground delete, and nothing was ever updated in place.
    let deletes = server.delete_requests();
    assert!(!deletes.is_empty());
    assert!(
        deletes
            .iter()
            .all(|d| d.propagation_policy.as_deref() == Some("Foreground"))
    );
    let requests = server.received_requests().await;
    assert!(
        requests
            .iter()
            .all(|r| !matches!(r.method.as_str(), "PUT" | "PATCH"))
    );
}

#[tokio::test]
async fn waiting_watches_the_application_through_submitted_running_completed() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let job = job("pi")
        .with_label("sim/queue-delay", "5s")
        .with_label("sim/duration", "5s");
    let submission = backend.submit(&job, &SubmitOptions::new()).await.unwrap();
    assert_eq!(submission.namespace.as_deref(), Some("spark-jobs"));
    assert!(submission.id.as_str().starts_with("spark-jobs/pi-"));

    let mut seen = Vec::new();
    let mut previous = None;
    loop {
        let status = backend
            .next_status(&submission.id, previous.as_ref(), Duration::from_secs(2))
            .await
            .unwrap();
        seen.push(status.native_state.clone());
        if status.is_terminal() {
            assert_eq!(status.state, JobState::Succeeded);
            assert!(
                status
                    .spark_application_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("spark-"))
            );
            assert_eq!(status.attempts, Some(1));
            assert!(status.finished_at.is_some());
            break;
        }
        previous = Some(status);
    }
    assert_eq!(seen, ["SUBMITTED", "RUNNING", "COMPLETED"]);

    // Followed through the namespace's view: watches of the namespace (no field selector),
    // no polling of the application.
    let requests = server.received_requests().await;
    let watches: Vec<_> = requests.iter().filter(|r| is_watch(r)).collect();
    assert!(!watches.is_empty());
    for w in watches {
        assert_eq!(
            w.url.path(),
            "/apis/sparkoperator.k8s.io/v1beta2/namespaces/spark-jobs/sparkapplications"
        );
        assert!(!w.url.query_pairs().any(|(k, _)| k == "fieldSelector"));
    }
    let name = submission.id.as_str().split_once('/').unwrap().1;
    let gets = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path().ends_with(&format!("/{name}")))
        .count();
    assert!(gets <= 1, "{gets} reads of the application");
}

fn is_watch(r: &wiremock::Request) -> bool {
    r.url
        .query_pairs()
        .any(|(k, v)| k == "watch" && v == "true")
}

#[tokio::test]
async fn following_many_jobs_costs_one_watch_of_the_namespace_not_one_per_job() {
    let server = MockApiServer::start().await;
    let backend = Arc::new(server.backend().unwrap());
    let jobs = 50;
    let mut ids = Vec::new();
    for i in 0..jobs {
        let job = job(&format!("many-{i}"))
            .with_label("sim/queue-delay", "5s")
            .with_label("sim/duration", "5s");
        ids.push(
            backend
                .submit(&job, &SubmitOptions::new())
                .await
                .unwrap()
                .id,
        );
    }
    let before = server.received_requests().await.len();
    let followers = ids.into_iter().map(|id| {
        let backend = backend.clone();
        async move {
            let mut seen = Vec::new();
            let mut previous = backend.status(&id).await.unwrap();
            seen.push(previous.native_state.clone());
            while !previous.is_terminal() {
                let status = backend
                    .next_status(&id, Some(&previous), Duration::from_secs(2))
                    .await
                    .unwrap();
                if status != previous {
                    seen.push(status.native_state.clone());
                }
                previous = status;
            }
            assert_eq!(previous.state, JobState::Succeeded);
            seen
        }
    });
    for seen in futures::future::join_all(followers).await {
        // Never backwards, whatever the order of reads.
        assert_eq!(seen.last().map(String::as_str), Some("COMPLETED"));
        assert!(
            !seen
                .windows(2)
                .any(|w| w[0] == "RUNNING" && w[1] == "SUBMITTED"),
            "{seen:?}"
        );
    }
    let requests = server.received_requests().await.split_off(before);
    let watches = requests.iter().filter(|r| is_watch(r)).count();
    let lists = requests
        .iter()
        .filter(|r| {
            r.method.as_str() == "GET"
                && !is_watch(r)
                && r.url.path().ends_with("/sparkapplications")
        })
        .count();
    let reads = requests.len() - watches - lists;
    // 50 jobs × 2 changes each: one watch per job and change would be 100 requests. The view
    // needs one list and fewer watches than jobs: the stand-in ends a watch at each change (a
    // real API server does not), so their number follows how many moments the changes fall on
    // (about 5 on a quiet machine, 35 on a loaded one), not the number of followers. The reads
    // are the 50 first `status` calls.
    assert_eq!(lists, 1, "{requests:#?}");
    assert!(watches < jobs, "{watches} watches for {jobs} jobs");
    assert!(reads <= jobs, "{reads} reads for {jobs} jobs");
}

#[tokio::test]
async fn one_watch_stream_can_carry_every_transition() {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, WatchEvent, WatchParams};
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let submission = backend
        .submit(&job("pi"), &SubmitOptions::new())
        .await
        .unwrap();
    let name = submission.id.as_str().split_once('/').unwrap().1.to_owned();
    // The created object's version, before the operator touched it.
    let created = server.received_requests().await;
    let created: serde_json::Value = serde_json::from_slice(&created[0].body).unwrap();
    assert!(
        created["metadata"]["labels"]
            .get(IDEMPOTENCY_LABEL)
            .is_none(),
        "no key, no key label"
    );
    backend
        .wait_for_terminal(&submission.id, &wait())
        .await
        .unwrap();

    let client = kube::Client::try_from(server.config()).unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "sparkoperator.k8s.io",
        "v1beta2",
        "SparkApplication",
    ));
    let apps: Api<DynamicObject> = Api::namespaced_with(client, "spark-jobs", &ar);
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(5);
    let events: Vec<_> = apps.watch(&params, "1").await.unwrap().collect().await;
    let states: Vec<String> = events
        .into_iter()
        .map(|e| match e.unwrap() {
            WatchEvent::Modified(o) | WatchEvent::Added(o) => o.data["status"]["applicationState"]
                ["state"]
                .as_str()
                .unwrap()
                .to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(states, ["SUBMITTED", "RUNNING", "COMPLETED"]);
}

#[tokio::test]
async fn a_failed_application_reports_the_operators_error_message() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let job = job("etl").with_label("sim/outcome", "failed").with_label(
        "sim/message",
        "driver container failed with ExitCode: 1, Reason: Error",
    );
    let (submission, status) = backend
        .submit_and_wait(&job, &SubmitOptions::new(), &wait())
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.native_state, "FAILED");
    assert_eq!(
        status.message.as_deref(),
        Some("driver container failed with ExitCode: 1, Reason: Error")
    );
    let lines: Vec<String> = backend
        .logs(&submission.id, &LogOptions::snapshot().tail(1))
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("SparkException: driver container failed"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_retried_submit_adopts_the_application_with_its_key() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let first = backend
        .submit(&job("daily-etl"), &keyed("etl"))
        .await
        .unwrap();
    // The response was "lost"; the caller submits again with the same key.
    let again = backend
        .submit(&job("daily-etl"), &keyed("etl"))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(
        again.idempotency_key,
        Some(IdempotencyKey::for_task("dag", "run-1", "etl", 1))
    );
    assert_eq!(server.created_count(), 1);
    let requests = server.received_requests().await;
    let posts = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 2, "the second create hit 409 and was adopted");
    assert!(
        requests
            .iter()
            .all(|r| !matches!(r.method.as_str(), "PUT" | "PATCH")),
        "never updated"
    );

    let found = backend
        .find(&IdempotencyKey::for_task("dag", "run-1", "etl", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);
    let name = first.id.as_str().split_once('/').unwrap().1;
    let app = server.application(name).unwrap();
    assert_eq!(
        app["metadata"]["annotations"][IDEMPOTENCY_LABEL], "dag/run-1/etl/1",
        "the key itself is kept as an annotation"
    );
}

#[tokio::test]
async fn a_name_taken_by_an_application_without_our_key_is_a_conflict() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let key = IdempotencyKey::for_task("dag", "run-1", "etl", 1);
    let name = SparkKubernetesBackend::resource_name("etl", Some(&key));
    // Somebody else's application already has the name.
    backend
        .submit(&job("etl"), &SubmitOptions::new())
        .await
        .unwrap();
    let client = kube::Client::try_from(server.config()).unwrap();
    let ar = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "sparkoperator.k8s.io",
        "v1beta2",
        "SparkApplication",
    ));
    let apps: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client, "spark-jobs", &ar);
    let mut other = bpg_core::formats::to_manifest(&job("etl"), &name, "spark-jobs");
    other["metadata"]["labels"] = serde_json::json!({"owner": "someone-else"});
    apps.create(&Default::default(), &serde_json::from_value(other).unwrap())
        .await
        .unwrap();

    let err = backend
        .submit(&job("etl"), &SubmitOptions::new().with_idempotency_key(key))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
}

#[tokio::test]
async fn cancel_deletes_with_foreground_propagation_and_reads_as_cancelled() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let submission = backend
        .submit(
            &job("stream").with_label("sim/duration", "1h"),
            &SubmitOptions::new(),
        )
        .await
        .unwrap();
    let name = submission.id.as_str().split_once('/').unwrap().1.to_owned();
    backend.cancel(&submission.id).await.unwrap();
    assert_eq!(
        server.delete_requests(),
        vec![DeleteRequest {
            namespace: "spark-jobs".into(),
            name: name.clone(),
            propagation_policy: Some("Foreground".into()),
        }]
    );
    // Pods are still going: the application is marked for deletion.
    assert_eq!(
        backend.status(&submission.id).await.unwrap().state,
        JobState::Cancelling
    );
    let done = backend
        .wait_for_terminal(&submission.id, &wait())
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Cancelled);
    assert!(server.application(&name).is_none(), "gone from the cluster");
    backend.cancel(&submission.id).await.unwrap();
    assert_eq!(
        server.delete_requests().len(),
        1,
        "cancelling again deletes nothing"
    );
}

#[tokio::test]
async fn cancelling_a_finished_application_keeps_it_and_its_logs() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let (submission, _) = backend
        .submit_and_wait(&job("pi"), &SubmitOptions::new(), &wait())
        .await
        .unwrap();
    backend.cancel(&submission.id).await.unwrap();
    assert!(server.delete_requests().is_empty());
    assert_eq!(
        backend.status(&submission.id).await.unwrap().state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn following_logs_resumes_a_dropped_stream_without_duplicates() {
    let server = MockApiServer::start().await;
    // 8 simulated seconds at 250 ms each: two seconds of driver output, so the followed
    // stream closes (as real connections do) and is re-opened at least once.
    server.time_scale(Duration::from_millis(250));
    let backend = server.backend().unwrap();
    let job = job("wc")
        .with_label("sim/duration", "8s")
        .with_label("sim/log-lines", "12");
    let submission = backend.submit(&job, &SubmitOptions::new()).await.unwrap();
    server.drop_next_log_stream_after(2);

    let followed: Vec<_> = backend
        .logs(&submission.id, &LogOptions::follow())
        .await
        .unwrap()
        .map(|l| l.unwrap())
        .collect()
        .await;
    let snapshot: Vec<_> = backend
        .logs(&submission.id, &LogOptions::snapshot())
        .await
        .unwrap()
        .map(|l| l.unwrap())
        .collect()
        .await;
    assert_eq!(snapshot.len(), 14, "first line, 12 stages, last line");
    assert_eq!(
        followed, snapshot,
        "every line once, in order, with its position"
    );

    let log_requests: Vec<_> = server
        .received_requests()
        .await
        .into_iter()
        .filter(|r| r.url.path().ends_with("/log"))
        .collect();
    assert!(log_requests.len() >= 3, "the dropped stream was re-opened");
    for r in &log_requests {
        assert!(
            r.url
                .path()
                .starts_with("/api/v1/namespaces/spark-jobs/pods/wc-")
        );
        assert!(r.url.path().ends_with("-driver/log"));
        let container = r
            .url
            .query_pairs()
            .find(|(k, _)| k == "container")
            .unwrap()
            .1;
        assert_eq!(container, "spark-kubernetes-driver");
    }

    let resumed: Vec<_> = backend
        .logs(&submission.id, &LogOptions::follow().from_line(10))
        .await
        .unwrap()
        .map(|l| l.unwrap())
        .collect()
        .await;
    assert_eq!(resumed, snapshot[10..]);
}

#[tokio::test]
async fn next_status_polls_when_the_watch_fails() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let submission = backend
        .submit(
            &job("pi").with_label("sim/duration", "1h"),
            &SubmitOptions::new(),
        )
        .await
        .unwrap();
    let first = backend.status(&submission.id).await.unwrap();
    let first = if first.state == JobState::Submitted {
        backend
            .next_status(&submission.id, Some(&first), Duration::from_secs(2))
            .await
            .unwrap()
    } else {
        first
    };
    assert_eq!(first.state, JobState::Running);
    server.fail_next_watches(1, 503);
    let started = std::time::Instant::now();
    let again = backend
        .next_status(&submission.id, Some(&first), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(again.state, JobState::Running);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited a poll interval"
    );
}

#[tokio::test]
async fn api_errors_map_to_the_core_error_kinds() {
    let server = MockApiServer::start().await;
    let backend = server.backend().unwrap();
    let missing = backend.status(&"spark-jobs/nope".into()).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");

    server.fail_next(1, 503);
    let unavailable = backend.status(&"spark-jobs/nope".into()).await.unwrap_err();
    assert!(
        matches!(unavailable, Error::Unavailable { .. }),
        "{unavailable}"
    );
    assert!(unavailable.is_temporary());

    // kube's own retry is off in tests; the retry layer handles it.
    let retried = (Arc::new(backend.clone()) as Arc<dyn Backend>)
        .layer(RetryLayer::new().initial_backoff(Duration::from_millis(10)));
    server.fail_next(2, 503);
    let submission = retried.submit(&job("pi"), &keyed("pi")).await.unwrap();
    assert_eq!(server.created_count(), 1);
    assert!(retried.status(&submission.id).await.is_ok());

    let mut always = job("forever");
    always.restart_policy = Some(RestartPolicy {
        kind: "Always".into(),
        ..RestartPolicy::default()
    });
    let err = backend
        .submit(&always, &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("restartPolicy.type"), "{err}");

    // The API server's own validation (422 Invalid) names what it rejected.
    server.fail_next(1, 422);
    let err = backend
        .submit(&job("x"), &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("injected 422"), "{err}");
}

#[tokio::test]
async fn built_from_a_kubeconfig_context_and_namespace() {
    let server = MockApiServer::start_in("analytics").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, server.kubeconfig("phi-cluster")).unwrap();

    let backend = SparkKubernetesBackend::from_kubeconfig_file(&path, Some("phi-cluster"), None)
        .await
        .unwrap();
    assert_eq!(backend.namespace(), "analytics", "the context's namespace");
    let submission = backend
        .submit(&job("pi"), &SubmitOptions::new())
        .await
        .unwrap();
    assert_eq!(submission.cluster.as_deref(), Some("phi-cluster"));
    assert!(submission.id.as_str().starts_with("analytics/"));

    let err = SparkKubernetesBackend::from_kubeconfig_file(&path, Some("no-such-context"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let err = SparkKubernetesBackend::from_kubeconfig_file(dir.path().join("missing"), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let debug = format!("{backend:?}");
    assert!(
        debug.contains("phi-cluster") && debug.contains("analytics"),
        "{debug}"
    );
}

#[tokio::test]
async fn credentials_stay_out_of_debug_and_errors() {
    let server = MockApiServer::start().await;
    let mut config = server.config();
    config.auth_info.token = Some("sekrit-bearer-token".to_owned().into());
    let backend = SparkKubernetesBackend::from_config(config).unwrap();
    assert!(!format!("{backend:?}").contains("sekrit"));
    server.fail_next(1, 401);
    let err = backend.status(&"spark-jobs/pi".into()).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(!err.to_string().contains("sekrit") && !format!("{err:?}").contains("sekrit"));
    // The token did go to the server, as a bearer token.
    let requests = server.received_requests().await;
    let auth = requests[0].headers.get("authorization").unwrap();
    assert_eq!(auth.to_str().unwrap(), "Bearer sekrit-bearer-token");
}

#[test]
fn in_cluster_outside_a_pod_is_a_configuration_error() {
    match SparkKubernetesBackend::in_cluster() {
        Ok(backend) => assert!(
            std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
            "in-cluster config without a pod environment: {backend:?}"
        ),
        Err(err) => {
            assert!(matches!(err, Error::Config { .. }), "{err}");
            assert!(
                err.to_string().contains("not running in a Kubernetes pod"),
                "{err}"
            );
        }
    }
}
