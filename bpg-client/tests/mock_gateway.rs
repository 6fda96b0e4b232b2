//! MockGateway behaves like BPG: validation, ids, states over time, logs, listings, auth and
//! injected faults, observed through the real client.

use std::time::Duration;

use bpg_client::mock::{Fault, MockCluster, MockGateway, Route};
use bpg_client::{Auth, BpgClient, LogRequest, RetryPolicy, SubmissionId, SubmitBody};
use bpg_core::{Error, JobState, SimScript};
use futures::StreamExt;
use serde_json::{Value, json};

fn body(extra: Value) -> SubmitBody {
    let mut request = json!({
        "sparkVersion": "3.5",
        "mainApplicationFile": "local:///opt/app/pi.py",
        "driver": {"cores": 1, "memory": "2g", "env": [{"name": "TOKEN", "value": "secret"}]},
        "executor": {"instances": 2, "cores": 2, "memory": "4g"}
    });
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    SubmitBody::json(serde_json::to_vec(&request).unwrap())
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"cores": 1, "memory": "2g", "labels": labels})
}

async fn collect_logs(client: &BpgClient, request: LogRequest) -> Vec<String> {
    client
        .logs(&request)
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await
}

#[tokio::test]
async fn an_application_moves_through_its_states_on_the_mock_clock() {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("spark-cluster-a").spark_ui_url("https://ui.example"))
        .start()
        .await;
    let client = gateway.client("alice");
    let id = client
        .submit_body(body(json!({"submissionIdSuffix": "daily-pi-1", "applicationName": "pi",
            "driver": labels(&[("sim/queue-delay", "10s"), ("sim/duration", "60s"), ("dag_name", "daily")])})))
        .await
        .unwrap()
        .submission_id;
    let parsed = SubmissionId::parse(&id).unwrap();
    assert_eq!(
        (parsed.cluster.as_str(), parsed.suffix.as_deref()),
        ("spark-cluster-a", Some("daily-pi-1"))
    );

    let status = client.status(&id).await.unwrap();
    assert_eq!(status.application_state.as_deref(), Some("SUBMITTED"));
    assert_eq!(client.driver_info(&id).await.unwrap(), Default::default());

    gateway.advance(Duration::from_secs(20));
    let status = client.status(&id).await.unwrap();
    assert_eq!(status.state(), JobState::Running);
    assert!(
        status
            .spark_application_id
            .as_deref()
            .unwrap()
            .starts_with("spark-")
    );
    assert_eq!(
        status.spark_ui_url.as_deref(),
        Some(&*format!("https://ui.example/spark-jobs/{id}"))
    );
    assert_eq!(
        client.driver_info(&id).await.unwrap().pod_name,
        Some(format!("{id}-driver"))
    );

    gateway.advance(Duration::from_secs(60));
    let status = client.status(&id).await.unwrap();
    assert_eq!(status.application_state.as_deref(), Some("COMPLETED"));
    assert_eq!(status.duration, Some(70_000));
    assert_eq!(
        status.termination_time.unwrap() - status.creation_time.unwrap(),
        70_000
    );

    // spec: env stripped, app name in sparkConf, BPG's users.
    let spec = client.spec(&id).await.unwrap();
    assert_eq!(spec.proxy_user.as_deref(), Some("alice"));
    assert!(spec.driver.as_ref().unwrap().env.is_none());
    assert_eq!(spec.extra["sparkConf"]["spark.app.name"], json!("pi"));
    let describe = client.describe(&id).await.unwrap();
    assert!(describe.starts_with("--- Spark Spec ---\n"), "{describe}");
    assert!(
        describe.contains("SparkApplicationCompleted") && !describe.contains("secret"),
        "{describe}"
    );

    // Listings: the caller's own, and everyone's as NDJSON.
    let mine = client.my_submissions().await.unwrap();
    assert_eq!(mine.len(), 1);
    let summary = &mine[0];
    assert_eq!(
        (summary.queue.as_deref(), summary.dag_name.as_deref()),
        (Some("root.poc"), Some("daily"))
    );
    assert_eq!(
        (summary.total_cores, summary.total_memory_gb),
        (Some(5), Some(10))
    );
    assert!(
        gateway
            .client("bob")
            .my_submissions()
            .await
            .unwrap()
            .is_empty()
    );
    let all: Vec<_> = gateway
        .client("bob")
        .admin_submissions(Some("pi"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(all.len(), 1);
    let none: Vec<_> = client
        .admin_submissions(Some("other"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());

    // Delete: the SparkApplication is gone, so BPG answers 404 afterwards (and 200 to a second delete).
    assert_eq!(client.delete(&id).await.unwrap().submission_id, id);
    assert!(matches!(
        client.status(&id).await.unwrap_err(),
        Error::NotFound { .. }
    ));
    client.delete(&id).await.unwrap();
    assert!(gateway.submission(&id).unwrap().deleted);
    assert!(client.my_submissions().await.unwrap().is_empty());
}

#[tokio::test]
async fn submissions_are_validated_like_bpg() {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("analytics").spark_versions(["3.5"]))
        .max_executor_instances(10)
        .start()
        .await;
    let client = gateway.client("alice");
    let invalid = |e: Error| match e {
        Error::InvalidSpec(d) => d.to_string(),
        other => panic!("expected InvalidSpec, got {other:?}"),
    };
    let e = invalid(
        client
            .submit_body(body(json!({"annotations": {"a": "b"}})))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains("annotations") && e.contains("Unrecognized field"),
        "{e}"
    );
    let e = invalid(
        client
            .submit_body(SubmitBody::json(r#"{"mainApplicationFile":"x"}"#))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("Spark version not supported: null"), "{e}");
    let e = invalid(
        client
            .submit_body(body(json!({"sparkVersion": "3.9"})))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("Spark version not supported: 3.9"), "{e}");
    let e = invalid(
        client
            .submit_body(body(json!({"clusterId": "elsewhere"})))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains("Cluster with id elsewhere having Spark version 3.5 not found"),
        "{e}"
    );
    let e = invalid(
        client
            .submit_body(body(json!({"executor": {"instances": 11}})))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("exceeds"), "{e}");
    let e = invalid(
        client
            .submit_body(SubmitBody::json("{not json"))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("Failed to parse"), "{e}");
    let e = invalid(
        client
            .submit_body(body(json!({"driver": labels(&[("sim/duration", "soon")])})))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("labels.sim/duration"), "{e}");
    // Unit-less memory is a 500 in BPG; an uppercase suffix makes an invalid resource name (500 too).
    let e = client
        .submit_body(body(json!({"executor": {"memory": "2048"}})))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    let e = client
        .submit_body(body(json!({"submissionIdSuffix": "Daily"})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("RFC 1123"), "{e}");
    assert_eq!(gateway.accepted_count(), 0);

    // YAML bodies are read when the Content-Type says so.
    let yaml = "sparkVersion: \"3.5\"\nmainApplicationFile: local:///pi.py\nqueue: analytics\n";
    let id = client
        .submit_body(SubmitBody::yaml(yaml))
        .await
        .unwrap()
        .submission_id;
    assert_eq!(
        gateway.submission(&id).unwrap().request["queue"],
        json!("analytics")
    );
    // Nested unknown fields are ignored, as Jackson does for pod specs.
    client
        .submit_body(body(json!({"driver": {"tolerations": []}})))
        .await
        .unwrap();
    assert_eq!(gateway.accepted_count(), 2);
}

#[tokio::test]
async fn ids_for_unknown_clusters_get_bpgs_answers() {
    let gateway = MockGateway::start().await;
    let client = gateway.client("alice");
    let foreign = "other-0123456789abcdef0123456789abcdef";
    // /status wraps the 400 into a 500 (wire contract §1.3); the others answer 400.
    assert!(matches!(
        client.status(foreign).await.unwrap_err(),
        Error::Unavailable { .. }
    ));
    assert!(matches!(
        client.spec(foreign).await.unwrap_err(),
        Error::Backend {
            temporary: false,
            ..
        }
    ));
    assert!(matches!(
        client
            .spec("minikube-0123456789abcdef0123456789abcdef")
            .await
            .unwrap_err(),
        Error::NotFound { .. }
    ));
    assert!(matches!(
        client.delete("no-hex-part").await.unwrap_err(),
        Error::Backend { .. }
    ));
}

#[tokio::test]
async fn a_followed_log_stream_runs_until_the_job_ends() {
    let gateway = MockGateway::builder()
        .max_log_hold(Duration::from_millis(100))
        .start()
        .await;
    let client = gateway.client("alice");
    let id = client
        .submit_body(body(
            json!({"driver": labels(&[("sim/duration", "400ms"), ("sim/log-lines", "6")])}),
        ))
        .await
        .unwrap()
        .submission_id;
    let lines = collect_logs(&client, LogRequest::submission(&id).follow()).await;
    let expected: Vec<String> = (0..6)
        .map(|i| {
            SimScript {
                log_lines: 6,
                ..Default::default()
            }
            .log_line(i)
        })
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(
        client
            .status(&id)
            .await
            .unwrap()
            .application_state
            .as_deref(),
        Some("COMPLETED")
    );
    // The stream was cut by the hold several times and resumed without repeating a line.
    assert!(
        gateway.journal_for(Route::Log).len() >= 3,
        "{}",
        gateway.journal_for(Route::Log).len()
    );

    // A snapshot of the finished job is the archived log, from any line.
    let tail = collect_logs(&client, LogRequest::submission(&id).from_line(4)).await;
    assert_eq!(tail, expected[4..]);
}

#[tokio::test]
async fn a_failed_job_logs_its_error_and_logs_of_pending_jobs_are_empty() {
    let gateway = MockGateway::start().await;
    let client = gateway.client("alice");
    let failing = client
        .submit_body(body(json!({"driver": labels(&[("sim/duration", "1s"), ("sim/log-lines", "1"), ("sim/outcome", "failed"), ("sim/message", "OOM")])})))
        .await
        .unwrap()
        .submission_id;
    let pending = client
        .submit_body(body(
            json!({"driver": labels(&[("sim/queue-delay", "1h")])}),
        ))
        .await
        .unwrap()
        .submission_id;
    gateway.advance(Duration::from_secs(2));
    let lines = collect_logs(&client, LogRequest::submission(&failing).follow()).await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("ERROR simulated driver: OOM")
    );
    let status = client.status(&failing).await.unwrap();
    assert_eq!(
        (status.state(), status.application_error_message.as_deref()),
        (JobState::Failed, Some("OOM"))
    );
    assert!(
        collect_logs(&client, LogRequest::submission(&pending))
            .await
            .is_empty()
    );
    // By Spark application id too.
    let app_id = status.spark_application_id.unwrap();
    assert_eq!(
        collect_logs(&client, LogRequest::application(app_id))
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn a_dropped_submit_is_recorded_and_found_again_by_its_suffix() {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("phi-east-1"))
        .start()
        .await;
    gateway.inject(Fault::drop_connection().on(Route::Submit).times(1));
    let client = gateway.client("airflow");
    let e = client
        .submit_body(body(json!({"submissionIdSuffix": "k-3f2a"})))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unavailable { .. }) && e.is_temporary(),
        "{e:?}"
    );
    // The application exists although the client never heard of it.
    assert_eq!(gateway.accepted_count(), 1);
    let recorded = gateway.find_by_suffix("k-3f2a").unwrap();
    assert_eq!(recorded.cluster, "phi-east-1");
    let found = client.find_by_suffix("k-3f2a").await.unwrap().unwrap();
    assert_eq!(found.submission_id, recorded.id);
    assert_eq!(gateway.journal_for(Route::Submit)[0].status, None);
    // The fault was used up: the next submit is answered.
    client.submit_body(body(json!({}))).await.unwrap();
}

#[tokio::test]
async fn injected_errors_are_retried_for_gets_and_not_for_submits() {
    let gateway = MockGateway::start().await;
    let client = gateway.client("alice");
    let id = client
        .submit_body(body(json!({})))
        .await
        .unwrap()
        .submission_id;

    gateway.inject(Fault::status(503).on(Route::Status).times(2));
    assert!(client.status(&id).await.is_ok());
    let statuses: Vec<Option<u16>> = gateway
        .journal_for(Route::Status)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);

    gateway.inject(Fault::status(500).on(Route::Submit));
    assert!(
        client
            .submit_body(body(json!({})))
            .await
            .unwrap_err()
            .is_temporary()
    );
    assert_eq!(gateway.journal_for(Route::Submit).len(), 2);
    gateway.clear_faults();

    gateway.inject(Fault::status(429).retry_after(7).times(1));
    let e = gateway
        .client_builder()
        .auth(Auth::user_account("alice"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
        .healthcheck()
        .await
        .unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn fractional_faults_are_seeded_and_latency_hits_timeouts() {
    let gateway = MockGateway::builder().seed(7).start().await;
    gateway.inject(Fault::status(503).on(Route::Healthcheck).fraction(0.5));
    let client = gateway
        .client_builder()
        .auth(Auth::user_account("alice"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let mut failed = 0;
    for _ in 0..40 {
        if client.healthcheck().await.is_err() {
            failed += 1;
        }
    }
    assert!((8..=32).contains(&failed), "{failed} of 40 failed");
    gateway.clear_faults();

    gateway.inject(
        Fault::delay(Duration::from_millis(300))
            .on(Route::Version)
            .times(1),
    );
    let impatient = gateway
        .client_builder()
        .request_timeout(Duration::from_millis(50))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(
        impatient.version().await.unwrap_err(),
        Error::Timeout { .. }
    ));
    assert!(impatient.version().await.is_ok());
}

#[tokio::test]
async fn auth_modes_and_allowed_users() {
    let gateway = MockGateway::builder()
        .allowed_users(["alice", "svc"])
        .bearer_token("t0ken", "svc")
        .start()
        .await;
    let with = |auth: Auth| {
        gateway
            .client_builder()
            .auth(auth)
            .retry(RetryPolicy::none())
            .build()
            .unwrap()
    };
    with(Auth::basic("alice", "anything"))
        .healthcheck()
        .await
        .unwrap();
    with(Auth::user_account("alice"))
        .healthcheck()
        .await
        .unwrap();
    with(Auth::bearer("t0ken")).healthcheck().await.unwrap();
    for denied in [Auth::user_account("bob"), Auth::bearer("wrong"), Auth::None] {
        let e = with(denied).healthcheck().await.unwrap_err();
        assert!(
            matches!(&e, Error::Unauthorized { message } if message.contains("HTTP 401 Unauthorized.")),
            "{e:?}"
        );
    }
    // /admin/version is anonymous in BPG.
    with(Auth::None).version().await.unwrap();
    let journal = gateway.journal();
    let users: Vec<Option<&str>> = journal.iter().map(|e| e.user.as_deref()).collect();
    assert_eq!(users[..3], [Some("alice"), Some("alice"), Some("svc")]);
    assert_eq!(
        journal[0].header("authorization"),
        Some("Basic YWxpY2U6YW55dGhpbmc=")
    );
    assert!(!format!("{:?}", journal[0]).contains("YWxpY2U6YW55dGhpbmc="));
}

#[tokio::test]
async fn the_legacy_prefix_and_weighted_routing() {
    let gateway = MockGateway::builder()
        .context_path("/apiv2")
        .cluster(MockCluster::new("spark-cluster-a").weight(1))
        .cluster(MockCluster::new("spark-cluster-b").weight(3))
        .cluster(MockCluster::new("reserved").weight(0))
        .start()
        .await;
    assert!(gateway.uri().ends_with("/apiv2"));
    let client = gateway.client("alice");
    let modern = BpgClient::builder(gateway.server_uri())
        .auth(Auth::user_account("alice"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(
        modern.healthcheck().await.unwrap_err(),
        Error::NotFound { .. }
    ));
    for _ in 0..40 {
        client.submit_body(body(json!({}))).await.unwrap();
    }
    let on = |c: &str| {
        gateway
            .submissions()
            .iter()
            .filter(|s| s.cluster == c)
            .count()
    };
    assert_eq!(on("reserved"), 0);
    assert!(
        on("spark-cluster-b") > on("spark-cluster-a"),
        "{} vs {}",
        on("spark-cluster-b"),
        on("spark-cluster-a")
    );
    // A pinned cluster is reachable even with weight 0, and the id names it.
    let id = client
        .submit_body(body(json!({"clusterId": "reserved"})))
        .await
        .unwrap()
        .submission_id;
    assert_eq!(SubmissionId::cluster_of(&id).as_deref(), Some("reserved"));
    for s in gateway.submissions() {
        assert_eq!(SubmissionId::cluster_of(&s.id).unwrap(), s.cluster);
    }
}

#[tokio::test]
async fn fail_attempts_count_per_task_and_uploads_are_kept() {
    let gateway = MockGateway::start().await;
    let client = gateway.client("alice");
    let task = labels(&[
        ("dag_name", "daily"),
        ("task_name", "pi"),
        ("sim/fail-attempts", "1"),
        ("sim/duration", "1s"),
    ]);
    let first = client
        .submit_body(body(json!({"driver": task.clone()})))
        .await
        .unwrap()
        .submission_id;
    let second = client
        .submit_body(body(json!({"driver": task})))
        .await
        .unwrap()
        .submission_id;
    gateway.advance(Duration::from_secs(2));
    assert_eq!(
        client.status(&first).await.unwrap().state(),
        JobState::Failed
    );
    assert_eq!(
        client.status(&second).await.unwrap().state(),
        JobState::Succeeded
    );
    assert_eq!(gateway.submission(&second).unwrap().attempt, 2);

    let url = client
        .upload("app.py", Some("/team/"), "print(1)")
        .await
        .unwrap()
        .url;
    assert_eq!(url, "s3a://mock-bucket/uploaded/team/app.py");
    assert_eq!(gateway.uploads(), [(url, b"print(1)".to_vec())]);
}
