//! The client against wiremock: every endpoint, each auth mode, both prefixes, error mapping,
//! retries, timeouts, streams. Real time (wiremock runs its own server), with tiny backoffs.

use std::collections::BTreeSet;
use std::time::Duration;

use bpg_client::{ApiError, Auth, BpgClient, LogRequest, RetryPolicy, SubmitBody};
use bpg_core::Error;
use bpg_core::formats::bpg::{DriverSpec, ExecutorSpec, SubmitApplicationRequest};
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ID: &str = "spark-cluster-a-9a2e2598d1ee4ff4b33ee7ebcdb63a6c";

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .max_retries(3)
        .backoff_between(Duration::from_millis(5), Duration::from_millis(20))
}

fn client(server: &MockServer, auth: Auth) -> BpgClient {
    BpgClient::builder(server.uri())
        .auth(auth)
        .retry(fast_retry())
        .request_timeout(Duration::from_secs(5))
        .log_poll_interval(Duration::from_millis(20))
        .build()
        .unwrap()
}

fn json_response(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn bpg_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"code": status, "message": format!("jakarta.ws.rs.WebApplicationException: {message}")}))
}

fn minimal_request() -> SubmitApplicationRequest {
    SubmitApplicationRequest {
        spark_version: Some("3.2".into()),
        main_application_file: Some("s3a://bpg/uploaded/foo/MinimalSparkApp.py".into()),
        submission_id_suffix: Some("daily-pi-1".into()),
        driver: Some(DriverSpec {
            cores: Some(1),
            memory: Some("2g".into()),
            ..Default::default()
        }),
        executor: Some(ExecutorSpec {
            instances: Some(1),
            cores: Some(1),
            memory: Some("2g".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `METHOD path?query [content-type]` and the body, for snapshots.
fn render(request: &Request) -> String {
    let mut out = format!("{} {}", request.method, request.url.path());
    if let Some(q) = request.url.query() {
        out.push_str(&format!("?{q}"));
    }
    if let Some(ct) = request.headers.get("content-type") {
        out.push_str(&format!("  [content-type: {}]", ct.to_str().unwrap()));
    }
    if !request.body.is_empty() {
        out.push_str(&format!("\n{}", String::from_utf8_lossy(&request.body)));
    }
    out
}

#[tokio::test]
async fn every_endpoint_sends_the_documented_request_and_parses_the_answer() {
    let server = MockServer::start().await;
    let p = |s: &str| format!("/skatev2{s}");
    Mock::given(method("POST"))
        .and(path(p("/spark")))
        .and(header("content-type", "application/json"))
        .respond_with(json_response(
            json!({"submissionId": format!("{ID}-daily-pi-1")}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path(p(&format!("/spark/{ID}/status"))))
        .respond_with(json_response(json!({"creationTime": 1, "duration": 0, "applicationState": "RUNNING", "sparkApplicationId": "spark-1"})))
        .mount(&server).await;
    Mock::given(method("GET"))
        .and(path(p(&format!("/spark/{ID}/spec"))))
        .respond_with(json_response(
            json!({"sparkVersion": "3.2", "driver": {"cores": 1}, "sparkConf": {"a": "b"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(p(&format!("/spark/{ID}/driver"))))
        .respond_with(json_response(
            json!({"podName": format!("{ID}-driver"), "startTime": 5}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(p(&format!("/spark/{ID}/describe"))))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "--- Spark Spec ---\nsparkVersion: '3.2'\n",
            "application/octet-stream",
        ))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(p(&format!("/spark/{ID}"))))
        .respond_with(json_response(json!({"submissionId": ID})))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path(p("/spark/mySubmissions")))
        .respond_with(json_response(json!({"submissions": [{"submissionId": format!("{ID}-daily-pi-1"), "applicationState": "RUNNING"}]})))
        .mount(&server).await;
    Mock::given(method("GET"))
        .and(path(p("/log")))
        .and(query_param("subId", ID))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("line 1\nline 2\n", "application/octet-stream"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(p("/s3/app.py")))
        .and(query_param("folder", "team/"))
        .and(query_param("content-length", "5"))
        .and(body_string("print"))
        .respond_with(json_response(
            json!({"url": "s3a://bpg/uploaded/team/app.py"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path(p("/admin/submissions"))).and(query_param("name", "pi"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!("{{\"submissionId\":\"{ID}\",\"applicationName\":\"pi\"}}\n\n{{\"submissionId\":\"{ID}-x\",\"applicationName\":\"pi\"}}\n"),
            "application/json"))
        .mount(&server).await;
    Mock::given(method("GET"))
        .and(path(p("/healthcheck/status")))
        .respond_with(json_response(json!({"status": "OK"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(p("/admin/version")))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "{\n  \"version\" : \"2.0\",\n  \"gitCommit\" : \"abc\"\n}\n",
            "application/json",
        ))
        .mount(&server)
        .await;

    let client = client(&server, Auth::basic("alice", "pw"));
    let submitted = client.submit(&minimal_request()).await.unwrap();
    assert_eq!(submitted.submission_id, format!("{ID}-daily-pi-1"));
    let yaml = "sparkVersion: \"3.2\"\nmainApplicationFile: s3a://bpg/x.py\n";
    Mock::given(method("POST"))
        .and(path(p("/spark")))
        .and(header("content-type", "application/yaml"))
        .respond_with(json_response(json!({"submissionId": ID})))
        .mount(&server)
        .await;
    assert_eq!(
        client
            .submit_body(SubmitBody::yaml(yaml))
            .await
            .unwrap()
            .submission_id,
        ID
    );

    let status = client.status(ID).await.unwrap();
    assert_eq!(status.state(), bpg_core::JobState::Running);
    let spec = client.spec(ID).await.unwrap();
    assert_eq!(spec.spark_version.as_deref(), Some("3.2"));
    assert_eq!(spec.extra["sparkConf"], json!({"a": "b"}));
    assert_eq!(client.driver_info(ID).await.unwrap().start_time, Some(5));
    assert!(
        client
            .describe(ID)
            .await
            .unwrap()
            .starts_with("--- Spark Spec ---")
    );
    assert_eq!(client.delete(ID).await.unwrap().submission_id, ID);
    let mine = client.my_submissions().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        client
            .find_by_suffix("daily-pi-1")
            .await
            .unwrap()
            .unwrap()
            .submission_id,
        format!("{ID}-daily-pi-1")
    );
    assert!(client.find_by_suffix("other").await.unwrap().is_none());
    let lines: Vec<String> = client
        .logs(&LogRequest::submission(ID))
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(lines, ["line 1", "line 2"]);
    assert_eq!(
        client
            .upload("app.py", Some("team/"), "print")
            .await
            .unwrap()
            .url,
        "s3a://bpg/uploaded/team/app.py"
    );
    let listed: Vec<String> = client
        .admin_submissions(Some("pi"))
        .await
        .unwrap()
        .map(|s| s.unwrap().submission_id)
        .collect()
        .await;
    assert_eq!(listed, [ID.to_owned(), format!("{ID}-x")]);
    assert_eq!(client.healthcheck().await.unwrap().status, "OK");
    assert_eq!(
        client.version().await.unwrap().git_commit.as_deref(),
        Some("abc")
    );

    let requests = server.received_requests().await.unwrap();
    // Every request carries the credentials and the log-only Client-Version header.
    for r in &requests {
        assert_eq!(
            r.headers.get("authorization").unwrap(),
            "Basic YWxpY2U6cHc="
        );
        assert!(
            r.headers
                .get("client-version")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("bpg-client/")
        );
    }
    // Query parameters are declared by the OpenAPI document for their path.
    let spec: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/bpg-openapi.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    for r in &requests {
        let below = r.url.path().strip_prefix("/skatev2").unwrap();
        let template = match below {
            "/log" => "/log",
            "/admin/submissions" => "/admin/submissions",
            p if p.starts_with("/s3/") => "/s3/{name}",
            _ => continue,
        };
        let declared: BTreeSet<&str> =
            spec["paths"][template][r.method.as_str().to_lowercase()]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
        for (name, _) in r.url.query_pairs() {
            assert!(
                declared.contains(&*name),
                "{template}: {name} is not in the spec"
            );
        }
    }
    let rendered: Vec<String> = requests.iter().map(render).collect();
    insta::assert_snapshot!("every_endpoint_requests", rendered.join("\n\n"));
}

#[tokio::test]
async fn submit_body_snapshots() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(json!({"submissionId": ID})))
        .mount(&server)
        .await;
    let client = client(&server, Auth::None);
    client.submit(&minimal_request()).await.unwrap();
    let request = SubmitApplicationRequest {
        application_name: Some("patient-outcomes".into()),
        queue: Some("phi".into()),
        spark_conf: Some([("spark.sql.shuffle.partitions".to_string(), "64".to_string())].into()),
        arguments: Some(vec!["--date".into(), "2025-05-01".into()]),
        main_class: Some("com.example.Outcomes".into()),
        ..minimal_request()
    };
    client.submit(&request).await.unwrap();
    let bodies: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    insta::assert_json_snapshot!("submit_minimal", bodies[0]);
    insta::assert_json_snapshot!("submit_jvm_with_conf", bodies[1]);
}

#[tokio::test]
async fn auth_modes_send_their_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_response(json!({"status": "OK"})))
        .mount(&server)
        .await;
    for auth in [
        Auth::basic("alice", "pw"),
        Auth::bearer("t0ken"),
        Auth::user_account("bob"),
        Auth::None,
    ] {
        client(&server, auth).healthcheck().await.unwrap();
    }
    let requests = server.received_requests().await.unwrap();
    let auth_of = |r: &Request| {
        (
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
            r.headers
                .get("user-account")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    assert_eq!(
        auth_of(&requests[0]),
        (Some("Basic YWxpY2U6cHc=".into()), None)
    );
    assert_eq!(auth_of(&requests[1]), (Some("Bearer t0ken".into()), None));
    assert_eq!(auth_of(&requests[2]), (None, Some("bob".into())));
    assert_eq!(auth_of(&requests[3]), (None, None));
}

#[tokio::test]
async fn both_prefixes_and_custom_context_paths() {
    let server = MockServer::start().await;
    Mock::given(path("/apiv2/healthcheck/status"))
        .respond_with(json_response(json!({"status": "OK"})))
        .mount(&server)
        .await;
    Mock::given(path("/skatev2/healthcheck/status"))
        .respond_with(json_response(json!({"status": "OK"})))
        .mount(&server)
        .await;
    Mock::given(path("/gw/bpg/healthcheck/status"))
        .respond_with(json_response(json!({"status": "OK"})))
        .mount(&server)
        .await;
    let default = BpgClient::builder(server.uri()).build().unwrap();
    let legacy = BpgClient::builder(server.uri())
        .context_path(bpg_client::LEGACY_CONTEXT_PATH)
        .build()
        .unwrap();
    let in_url = BpgClient::builder(format!("{}/apiv2/", server.uri()))
        .build()
        .unwrap();
    let custom = BpgClient::builder(server.uri())
        .context_path("gw/bpg/")
        .build()
        .unwrap();
    for c in [&default, &legacy, &in_url, &custom] {
        c.healthcheck().await.unwrap();
    }
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/skatev2/healthcheck/status",
            "/apiv2/healthcheck/status",
            "/apiv2/healthcheck/status",
            "/gw/bpg/healthcheck/status"
        ]
    );
}

#[tokio::test]
async fn error_statuses_map_to_core_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(bpg_error(400, "Spark version not supported: 3.9"))
        .mount(&server)
        .await;
    Mock::given(path(format!("/skatev2/spark/{ID}/spec")))
        .respond_with(bpg_error(
            400,
            "Cluster spark (in submissionId: x) not exists",
        ))
        .mount(&server)
        .await;
    Mock::given(path(format!("/skatev2/spark/{ID}/status")))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Basic realm=\"bpg\"")
                .set_body_json(json!({"code": "401", "message": "HTTP 401 Unauthorized."})),
        )
        .mount(&server)
        .await;
    Mock::given(path(format!("/skatev2/spark/{ID}/driver")))
        .respond_with(bpg_error(404, "not found"))
        .mount(&server)
        .await;
    Mock::given(path(format!("/skatev2/spark/{ID}/describe")))
        .respond_with(bpg_error(500, "The queue x does not exist."))
        .mount(&server)
        .await;
    Mock::given(path("/skatev2/healthcheck/status"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .mount(&server)
        .await;
    Mock::given(path("/skatev2/spark/mySubmissions"))
        .respond_with(
            bpg_error(
                429,
                "Too many requests for mySubmissions endpoint (limit: 20 requests per second)",
            )
            .insert_header("retry-after", "120"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/skatev2/admin/version"))
        .respond_with(bpg_error(403, "no"))
        .mount(&server)
        .await;
    Mock::given(path(format!("/skatev2/spark/{ID}")))
        .respond_with(bpg_error(409, "exists"))
        .mount(&server)
        .await;

    let client = BpgClient::builder(server.uri())
        .auth(Auth::basic("alice", "pw"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = client.submit(&minimal_request()).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidSpec(d) if d.to_string().contains("Spark version not supported: 3.9")),
        "{e}"
    );
    assert!(!e.is_temporary());
    let e = client.spec(ID).await.unwrap_err();
    let Error::Backend {
        source,
        temporary: false,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    let api = source.downcast_ref::<ApiError>().unwrap();
    assert_eq!((api.status, api.code.as_deref()), (400, Some("400")));
    let e = client.status(ID).await.unwrap_err();
    assert!(
        matches!(&e, Error::Unauthorized { message } if message.contains("HTTP 401 Unauthorized.")),
        "{e:?}"
    );
    assert!(!e.to_string().contains("pw") && !format!("{e:?}").contains("YWxpY2U6cHc"));
    let e = client.driver_info(ID).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { what } if what.contains(ID)),
        "{e:?}"
    );
    let e = client.describe(ID).await.unwrap_err();
    assert!(
        matches!(e, Error::Unavailable { .. }) && e.is_temporary(),
        "{e:?}"
    );
    let e = client.healthcheck().await.unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable { message } if message.contains("503") && message.contains("upstream down")),
        "{e:?}"
    );
    let e = client.my_submissions().await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert!(e.is_temporary());
    assert!(matches!(
        client.version().await.unwrap_err(),
        Error::Forbidden { .. }
    ));
    assert!(matches!(
        client.delete(ID).await.unwrap_err(),
        Error::Conflict { .. }
    ));
}

#[tokio::test]
async fn idempotent_gets_are_retried_on_503_honouring_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(bpg_error(503, "busy").insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(bpg_error(502, "bad gateway"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json_response(json!({"applicationState": "COMPLETED"})))
        .mount(&server)
        .await;
    let client = client(&server, Auth::None);
    let started = std::time::Instant::now();
    let status = client.status(ID).await.unwrap();
    assert_eq!(status.application_state.as_deref(), Some("COMPLETED"));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    // The 503's Retry-After (1 s) was waited for instead of the 5 ms backoff; the 502 had none.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn retries_give_up_after_the_policy_and_report_the_last_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(bpg_error(503, "still busy"))
        .mount(&server)
        .await;
    let e = client(&server, Auth::None).status(ID).await.unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable { message } if message.contains("still busy")),
        "{e:?}"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        4,
        "1 try + 3 retries"
    );
    // A Retry-After beyond the policy's bound is not waited for.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(bpg_error(503, "later").insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    client(&server, Auth::None).status(ID).await.unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn submit_is_never_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(bpg_error(503, "busy"))
        .mount(&server)
        .await;
    let e = client(&server, Auth::None)
        .submit(&minimal_request())
        .await
        .unwrap_err();
    assert!(e.is_temporary());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // Nor a client-side 4xx on any endpoint.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(bpg_error(404, "gone"))
        .mount(&server)
        .await;
    client(&server, Auth::None).status(ID).await.unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn timeouts_and_unreachable_servers_are_temporary() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_response(json!({})).set_delay(Duration::from_millis(500)))
        .mount(&server)
        .await;
    let slow = BpgClient::builder(server.uri())
        .request_timeout(Duration::from_millis(50))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = slow.status(ID).await.unwrap_err();
    assert!(
        matches!(e, Error::Timeout { .. }) && e.is_temporary(),
        "{e:?}"
    );

    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let gone = BpgClient::builder(format!("http://{addr}"))
        .auth(Auth::basic("alice", "hunter2"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = gone.healthcheck().await.unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable { message } if message.contains("GET /skatev2/healthcheck/status")),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_followed_log_stream_resumes_after_cuts_until_the_job_ends() {
    let server = MockServer::start().await;
    // Status: running twice, then completed.
    Mock::given(path(format!("/skatev2/spark/{ID}/status")))
        .respond_with(json_response(json!({"applicationState": "RUNNING"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/skatev2/spark/{ID}/status")))
        .respond_with(json_response(json!({"applicationState": "COMPLETED"})))
        .mount(&server)
        .await;
    // Log: a stream cut mid-line, then the log so far, then the whole log with BPG's closing newline.
    Mock::given(path("/skatev2/log"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("a\nb\npart", "application/octet-stream"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/skatev2/log"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("a\nb\npartial line\n\nc", "application/octet-stream"),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path("/skatev2/log"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("a\nb\npartial line\n\nc\nd\n\n", "application/octet-stream"),
        )
        .with_priority(3)
        .mount(&server)
        .await;
    let client = client(&server, Auth::None);
    let lines: Vec<(u64, String)> = client
        .logs(&LogRequest::submission(ID).follow())
        .await
        .unwrap()
        .map(|l| {
            let l = l.unwrap();
            (l.position, l.text)
        })
        .collect()
        .await;
    let expected: Vec<(u64, String)> = [
        (0, "a"),
        (1, "b"),
        (2, "partial line"),
        (3, ""),
        (4, "c"),
        (5, "d"),
    ]
    .map(|(p, t)| (p, t.to_owned()))
    .to_vec();
    assert_eq!(lines, expected);
    let logs = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/skatev2/log")
        .count();
    assert_eq!(logs, 3);
}

#[tokio::test]
async fn log_snapshots_resume_from_a_line_and_skip_the_no_logs_notice() {
    let server = MockServer::start().await;
    Mock::given(query_param("subId", ID))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("0\n1\n2\n3\n", "application/octet-stream"),
        )
        .mount(&server)
        .await;
    Mock::given(query_param("appId", "spark-0123456789abcdef0123456789abcdef")).respond_with(ResponseTemplate::new(200).set_body_raw(
        "Cannot find matched log files. Please try again in 5 minutes if this is a new job which was just started within 5 minutes.",
        "application/octet-stream")).mount(&server).await;
    let client = client(&server, Auth::None);
    let lines: Vec<String> = client
        .logs(&LogRequest::submission(ID).from_line(2))
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(lines, ["2", "3"]);
    let none: Vec<_> = client
        .logs(&LogRequest::application(
            "spark-0123456789abcdef0123456789abcdef",
        ))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());
    let e = client
        .logs(&LogRequest::application("spark-1").follow())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Unsupported { .. }));
}

#[tokio::test]
async fn invalid_configuration_is_reported_without_secrets() {
    let e = BpgClient::builder("https://admin:hunter2@gw.example")
        .build()
        .unwrap_err();
    assert!(
        matches!(e, Error::Config { .. }) && !e.to_string().contains("hunter2"),
        "{e}"
    );
    let e = BpgClient::builder("ftp://gw.example").build().unwrap_err();
    assert!(e.to_string().contains("http"), "{e}");
    let e = BpgClient::builder("not a url").build().unwrap_err();
    assert!(e.to_string().contains("not a url"), "{e}");
    let e = BpgClient::builder("https://gw.example")
        .ca_bundle_pem("garbage")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("CA bundle #1"), "{e}");
    let e = BpgClient::builder("https://gw.example")
        .auth(Auth::bearer("s3cret\nx"))
        .build()
        .unwrap_err();
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let client = BpgClient::builder("https://gw.example")
        .auth(Auth::basic("alice", "hunter2"))
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_custom_ca_bundle_is_accepted() {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-ca.pem"
    ))
    .unwrap();
    BpgClient::builder("https://gw.example")
        .ca_bundle_pem(pem)
        .build()
        .unwrap();
}

#[tokio::test]
async fn files_are_uploaded_as_a_stream_with_their_length() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/skatev2/s3/job.jar"))
        .respond_with(json_response(
            json!({"url": "s3a://bpg/uploaded/libs/job.jar"}),
        ))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.jar");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let client = client(&server, Auth::None);
    let uploaded = client.upload_file(&file, Some("libs")).await.unwrap();
    assert_eq!(uploaded.url, "s3a://bpg/uploaded/libs/job.jar");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].body, content);
    assert_eq!(
        requests[0].url.query(),
        Some("folder=libs&content-length=200000")
    );
    assert_eq!(requests[0].headers.get("content-length").unwrap(), "200000");

    let missing = dir.path().join("missing.jar");
    let e = client.upload_file(&missing, None).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config { message } if message.contains("missing.jar")),
        "{e:?}"
    );
}
