//! Every endpoint of the API, good and bad input, against a scheduler on the simulated backend,
//! in process (the router as a tower service) on tokio's paused clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bpg_core::{AppType, Backend, SimBackend, SparkJob};
use bpg_pipeline::logs::TaskLogs;
use bpg_pipeline::{Dag, DagScheduler, InMemoryRunStore, RunStore, ScheduledDag, Task};
use bpg_scheduler_web::{Auth, SchedulerWeb};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const HEALTHTECH: &str = "healthtech_daily";

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines")
}

/// A DAG whose one Spark task runs for an hour: to cancel, and to find running.
fn slow_dag() -> ScheduledDag {
    let job = SparkJob::new("long", AppType::Python, "3.5", "local:///long.py")
        .with_label("sim/duration", "1h");
    let dag = Dag::builder("slow")
        .param("size", 3)
        .task(Task::spark("long", "bpg_connection", job))
        .task(Task::empty("after").depends_on(["long"]))
        .build()
        .unwrap();
    ScheduledDag::new(dag).unwrap()
}

struct Env {
    app: Router,
    stop: CancellationToken,
    service: tokio::task::JoinHandle<bpg_core::Result<()>>,
    sim: SimBackend,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(auth: Auth, store: Arc<dyn RunStore>, dir: tempfile::TempDir) -> Env {
        let sim = SimBackend::builder().name("sim").build();
        let mut dags = ScheduledDag::load_dir(examples()).unwrap();
        dags.push(slow_dag());
        let mut backends: HashMap<String, Arc<dyn Backend>> = HashMap::new();
        backends.insert("bpg_connection".into(), Arc::new(sim.clone()));
        let logs = TaskLogs::open(dir.path().join("logs")).unwrap();
        let scheduler = DagScheduler::new(backends)
            .store(store.clone())
            .task_logs(logs.clone())
            .dags(dags.iter().cloned());
        let app = SchedulerWeb::new(dags, store, scheduler.handle())
            .task_logs(logs)
            .auth(auth)
            .router();
        let stop = CancellationToken::new();
        let service = tokio::spawn(scheduler.run(stop.clone()));
        Env {
            app,
            stop,
            service,
            sim,
            _dir: dir,
        }
    }

    async fn open() -> Env {
        Env::start(
            Auth::open(),
            Arc::new(InMemoryRunStore::new()),
            tempfile::tempdir().unwrap(),
        )
        .await
    }

    async fn stop(self) {
        self.stop.cancel();
        self.service.await.unwrap().unwrap();
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let (status, text) = self.send(request.body(body).unwrap()).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, None).await
    }

    async fn ok(&self, method: Method, uri: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), uri, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {uri}: {value}");
        value
    }

    async fn trigger(&self, dag: &str, body: Value) -> String {
        let run = self
            .ok(
                Method::POST,
                &format!("/api/v2/dags/{dag}/dagRuns"),
                Some(body),
            )
            .await;
        run["dag_run_id"].as_str().unwrap().to_owned()
    }

    /// Polls the run (on the paused clock) until its state is one of `states`.
    async fn wait_run(&self, dag: &str, run_id: &str, states: &[&str]) -> Value {
        for _ in 0..2000 {
            let run = self.ok(Method::GET, &run_uri(dag, run_id), None).await;
            if states.contains(&run["state"].as_str().unwrap()) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {run_id} never reached {states:?}");
    }

    /// Polls a task instance (on the paused clock) until `done` holds for it.
    async fn wait_task(
        &self,
        dag: &str,
        run_id: &str,
        task: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..100 {
            let instance = self.task(dag, run_id, task).await;
            if done(&instance) {
                return instance;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{task} of {run_id} never got there");
    }

    async fn task(&self, dag: &str, run_id: &str, task: &str) -> Value {
        self.ok(
            Method::GET,
            &format!("{}/taskInstances/{task}", run_uri(dag, run_id)),
            None,
        )
        .await
    }
}

/// A run's URI (run ids hold `:` and `+`, which a path segment may hold when encoded).
fn run_uri(dag: &str, run_id: &str) -> String {
    format!("/api/v2/dags/{dag}/dagRuns/{}", encode(run_id))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn dags_list_get_pause_details_and_tasks() {
    let env = Env::open().await;
    let list = env.ok(Method::GET, "/api/v2/dags", None).await;
    assert_eq!(list["total_entries"], 2);
    let ids: Vec<&str> = list["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [HEALTHTECH, "slow"]);
    let page = env
        .ok(Method::GET, "/api/v2/dags?limit=1&offset=1", None)
        .await;
    assert_eq!(page["dags"][0]["dag_id"], "slow");
    let only = env
        .ok(Method::GET, "/api/v2/dags?dag_id_pattern=health", None)
        .await;
    assert_eq!(only["total_entries"], 1);

    let dag = env
        .ok(Method::GET, &format!("/api/v2/dags/{HEALTHTECH}"), None)
        .await;
    assert_eq!(dag["is_paused"], false);
    assert_eq!(dag["timetable_summary"], "0 2 * * *");
    assert!(dag["next_dagrun_run_after"].is_string(), "{dag}");
    assert_eq!(env.get("/api/v2/dags/nope").await.0, StatusCode::NOT_FOUND);

    let paused = env
        .ok(
            Method::PATCH,
            "/api/v2/dags/slow",
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(paused["is_paused"], true);
    let listed = env.ok(Method::GET, "/api/v2/dags?paused=true", None).await;
    assert_eq!(listed["dags"][0]["dag_id"], "slow");
    let (status, body) = env
        .call(
            Method::PATCH,
            "/api/v2/dags/slow",
            Some(json!({"is_paused": "yes"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("is_paused"),
        "{body}"
    );
    let (status, _) = env
        .call(
            Method::PATCH,
            "/api/v2/dags/nope",
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let details = env
        .ok(
            Method::GET,
            &format!("/api/v2/dags/{HEALTHTECH}/details"),
            None,
        )
        .await;
    assert_eq!(details["params"]["partitions"]["value"], 100);

    let tasks = env
        .ok(
            Method::GET,
            &format!("/api/v2/dags/{HEALTHTECH}/tasks"),
            None,
        )
        .await;
    assert_eq!(tasks["total_entries"], 5);
    let start = &tasks["tasks"][0];
    assert_eq!(start["task_id"], "start");
    assert_eq!(
        start["downstream_task_ids"],
        json!(["calculate_pi", "word_count"])
    );
    let pi = env
        .ok(
            Method::GET,
            &format!("/api/v2/dags/{HEALTHTECH}/tasks/calculate_pi"),
            None,
        )
        .await;
    assert_eq!(pi["operator_name"], "BPGOperator");
    assert_eq!(pi["retries"], 1);
    let (status, _) = env
        .get(&format!("/api/v2/dags/{HEALTHTECH}/tasks/nope"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let health = env.ok(Method::GET, "/api/v2/monitor/health", None).await;
    assert_eq!(health["metadatabase"]["status"], "healthy");
    assert_eq!(health["scheduler"]["status"], "healthy");
    let version = env.ok(Method::GET, "/api/v2/version", None).await;
    assert!(version["version"].as_str().unwrap().starts_with("bpg-"));
    assert_eq!(
        env.get("/api/v2/nothing/here").await.0,
        StatusCode::NOT_FOUND
    );
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn trigger_list_get_and_task_instances() {
    let env = Env::open().await;
    let run_id = env
        .trigger(
            HEALTHTECH,
            json!({"conf": {"partitions": 7}, "logical_date": "2026-12-01T00:00:00+00:00", "dag_run_id": "nightly:1"}),
        )
        .await;
    assert_eq!(run_id, "nightly:1");
    let run = env
        .wait_run(HEALTHTECH, &run_id, &["success", "failed"])
        .await;
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["conf"]["partitions"], 7);
    assert_eq!(run["logical_date"], "2026-12-01T00:00:00.000000Z");
    assert_eq!(run["run_type"], "manual");
    assert!(run["duration"].as_f64().unwrap() > 0.0, "{run}");

    let instances = env
        .ok(
            Method::GET,
            &format!("{}/taskInstances", run_uri(HEALTHTECH, &run_id)),
            None,
        )
        .await;
    assert_eq!(instances["total_entries"], 5);
    let pi = env.task(HEALTHTECH, &run_id, "calculate_pi").await;
    assert_eq!(pi["state"], "success");
    assert_eq!(pi["try_number"], 1);
    assert_eq!(pi["max_tries"], 1);
    assert!(pi["bpg_submission_id"].is_string(), "{pi}");
    assert_eq!(pi["bpg_connection"], "bpg_connection");
    // (Task timestamps are wall-clock times, so on the paused clock a duration is tiny.)
    assert!(pi["duration"].as_f64().unwrap() >= 0.0, "{pi}");
    let start = env.task(HEALTHTECH, &run_id, "start").await;
    assert!(start["bpg_submission_id"].is_null());
    assert!(
        env.sim
            .submissions()
            .iter()
            .any(|sub| sub.id.to_string() == pi["bpg_submission_id"].as_str().unwrap()),
        "the submission is the sim's"
    );

    // Two more: one scheduled-looking id to filter by run type, then lists.
    let second = env.trigger(HEALTHTECH, json!({})).await;
    env.wait_run(HEALTHTECH, &second, &["success"]).await;
    let all = env
        .ok(
            Method::GET,
            &format!("/api/v2/dags/{HEALTHTECH}/dagRuns?run_type=manual"),
            None,
        )
        .await;
    // (The daily schedule may add a scheduled run: lists are of manual runs.)
    assert_eq!(all["total_entries"], 2);
    assert_eq!(
        all["dag_runs"][0]["dag_run_id"], "nightly:1",
        "creation order"
    );
    let newest = env
        .ok(
            Method::GET,
            &format!(
                "/api/v2/dags/{HEALTHTECH}/dagRuns?run_type=manual&order_by=-logical_date&limit=1"
            ),
            None,
        )
        .await;
    assert_eq!(newest["dag_runs"][0]["dag_run_id"], second.as_str());
    assert_eq!(newest["total_entries"], 2);
    let before = env
        .ok(
            Method::GET,
            &format!(
                "/api/v2/dags/{HEALTHTECH}/dagRuns?run_type=manual&logical_date_lte={}",
                encode("2026-12-02T00:00:00Z")
            ),
            None,
        )
        .await;
    assert_eq!(before["total_entries"], 1);
    let failed = env
        .ok(
            Method::GET,
            &format!("/api/v2/dags/{HEALTHTECH}/dagRuns?state=failed&state=queued"),
            None,
        )
        .await;
    assert_eq!(failed["total_entries"], 0);
    let everywhere = env
        .ok(Method::GET, "/api/v2/dags/~/dagRuns?run_type=manual", None)
        .await;
    assert_eq!(everywhere["total_entries"], 2);

    // Bad input.
    let (status, body) = env
        .get(&format!(
            "/api/v2/dags/{HEALTHTECH}/dagRuns?order_by=colour"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = env
        .get(&format!("/api/v2/dags/{HEALTHTECH}/dagRuns?limit=many"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .get(&format!(
            "/api/v2/dags/{HEALTHTECH}/dagRuns?logical_date_gte=yesterday"
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        env.get("/api/v2/dags/nope/dagRuns").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get(&run_uri(HEALTHTECH, "no-such-run")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = env
        .get(&format!(
            "{}/taskInstances",
            run_uri(HEALTHTECH, "no-such-run")
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env
        .get(&format!(
            "{}/taskInstances/nope",
            run_uri(HEALTHTECH, &run_id)
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn bad_triggers_are_4xx_with_the_reason() {
    let env = Env::open().await;
    let uri = format!("/api/v2/dags/{HEALTHTECH}/dagRuns");
    for (body, status, needle) in [
        (
            json!({"conf": [1, 2]}),
            StatusCode::BAD_REQUEST,
            "conf: expected a JSON object",
        ),
        (
            json!({"conf": {"partitions": "many"}}),
            StatusCode::BAD_REQUEST,
            "conf.partitions: expected a number",
        ),
        (
            json!({"colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            json!({"logical_date": "last tuesday"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "logical_date",
        ),
        (
            json!({"dag_run_id": "a/b"}),
            StatusCode::BAD_REQUEST,
            "dag_run_id",
        ),
    ] {
        let (got, answer) = env.call(Method::POST, &uri, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    let (status, answer) = env
        .send(
            Request::post(&uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = env
        .call(Method::POST, "/api/v2/dags/nope/dagRuns", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.trigger(HEALTHTECH, json!({"dag_run_id": "once"})).await;
    let (status, answer) = env
        .call(Method::POST, &uri, Some(json!({"dag_run_id": "once"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn logs_pages_tail_text_and_stream() {
    let env = Env::open().await;
    let run_id = env.trigger(HEALTHTECH, json!({})).await;
    env.wait_run(HEALTHTECH, &run_id, &["success"]).await;
    let logs = format!(
        "{}/taskInstances/calculate_pi/logs",
        run_uri(HEALTHTECH, &run_id)
    );
    let page = env.ok(Method::GET, &format!("{logs}/1"), None).await;
    let lines: Vec<&str> = page["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"].as_str().unwrap())
        .collect();
    assert!(lines[0].starts_with("[bpg] try 1 started"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("[bpg] try 1 succeeded")),
        "{lines:?}"
    );
    assert!(lines.len() >= 4, "driver lines too: {lines:?}");
    let token = page["continuation_token"].as_str().unwrap();
    let next = env
        .ok(Method::GET, &format!("{logs}/1?token={token}"), None)
        .await;
    assert_eq!(next["content"], json!([]));
    let tail = env.ok(Method::GET, &format!("{logs}/1?tail=1"), None).await;
    assert_eq!(tail["content"].as_array().unwrap().len(), 1);
    assert_eq!(tail["content"][0]["event"], *lines.last().unwrap());
    assert_eq!(tail["continuation_token"], page["continuation_token"]);
    let (status, text) = env
        .send(
            Request::get(format!("{logs}/1?full_content=true"))
                .header(header::ACCEPT, "text/plain")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, format!("{}\n", lines.join("\n")));

    // Bad input.
    let (status, body) = env.get(&format!("{logs}/1?token=garbage")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(env.get(&format!("{logs}/2")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(env.get(&format!("{logs}/0")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        env.get(&format!("{logs}/one")).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (status, _) = env
        .get(&format!(
            "{}/taskInstances/calculate_pi/logs/1",
            run_uri(HEALTHTECH, "nope")
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The stream of a finished try: every line, then `end`; never gzipped, even when asked
    // (a compressor would hold live lines back).
    let (status, events) = env
        .send(
            Request::get(format!("{logs}/1/stream"))
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let data: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(&data[..lines.len()], &lines[..], "{events}");
    assert!(events.contains("event: end"), "{events}");
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_running_log_is_followed_live() {
    let env = Env::open().await;
    let run_id = env.trigger("slow", json!({})).await;
    env.wait_task("slow", &run_id, "long", |t| t["state"] == "running")
        .await;
    let stream_uri = format!(
        "{}/taskInstances/long/logs/1/stream",
        run_uri("slow", &run_id)
    );
    let response = env
        .app
        .clone()
        .oneshot(Request::get(&stream_uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body().into_data_stream();
    use futures::StreamExt;
    let first = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("[bpg] try 1 started"), "{first}");
    // Cancelling ends the try; the stream says so and ends.
    env.ok(
        Method::PATCH,
        &run_uri("slow", &run_id),
        Some(json!({"state": "failed"})),
    )
    .await;
    let mut rest = String::new();
    while let Some(chunk) = body.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("event: end"), "{rest}");
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_queue_pause_and_clear() {
    let env = Env::open().await;
    // Cancel a running run: its Spark job is cancelled and the run ends failed.
    let run_id = env.trigger("slow", json!({})).await;
    let long = env
        .wait_task("slow", &run_id, "long", |t| {
            t["state"] == "running" && t["bpg_submission_id"].is_string()
        })
        .await;
    let submission = &long["bpg_submission_id"];
    // A running run cannot be cleared.
    let (status, body) = env
        .call(
            Method::POST,
            "/api/v2/dags/slow/clearTaskInstances",
            Some(json!({"dag_run_id": run_id, "only_failed": false, "dry_run": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let cancelled = env
        .ok(
            Method::PATCH,
            &run_uri("slow", &run_id),
            Some(json!({"state": "failed"})),
        )
        .await;
    assert_eq!(cancelled["state"], "failed", "{cancelled}");
    assert!(
        env.sim
            .cancel_requests()
            .iter()
            .any(|id| id.to_string() == submission.as_str().unwrap()),
        "the Spark job was cancelled"
    );
    let long = env.task("slow", &run_id, "long").await;
    assert!(long["end_date"].is_string(), "{long}");
    let (status, _) = env
        .call(
            Method::PATCH,
            &run_uri("slow", &run_id),
            Some(json!({"state": "running"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .call(
            Method::PATCH,
            &run_uri("slow", "nope"),
            Some(json!({"state": "failed"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A paused DAG keeps a triggered run queued until it is unpaused.
    env.ok(
        Method::PATCH,
        "/api/v2/dags/slow",
        Some(json!({"is_paused": true})),
    )
    .await;
    let queued = env.trigger("slow", json!({"dag_run_id": "waits"})).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let run = env.ok(Method::GET, &run_uri("slow", &queued), None).await;
    assert_eq!(run["state"], "queued");
    let listed = env
        .ok(Method::GET, "/api/v2/dags/slow/dagRuns?state=queued", None)
        .await;
    assert_eq!(listed["total_entries"], 1);
    let instances = env
        .ok(
            Method::GET,
            &format!("{}/taskInstances", run_uri("slow", &queued)),
            None,
        )
        .await;
    assert!(instances["task_instances"][0]["state"].is_null());
    // Cancelling a queued run records it failed; it never starts.
    env.ok(
        Method::PATCH,
        &run_uri("slow", &queued),
        Some(json!({"state": "failed"})),
    )
    .await;
    env.ok(
        Method::PATCH,
        "/api/v2/dags/slow",
        Some(json!({"is_paused": false})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let run = env.ok(Method::GET, &run_uri("slow", &queued), None).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(env.task("slow", &queued, "long").await["try_number"], 0);

    // Clear: a dry run and only_failed (Airflow's defaults) change nothing on a successful run.
    let ok_run = env.trigger(HEALTHTECH, json!({})).await;
    env.wait_run(HEALTHTECH, &ok_run, &["success"]).await;
    let clear = format!("/api/v2/dags/{HEALTHTECH}/clearTaskInstances");
    let dry = env
        .ok(
            Method::POST,
            &clear,
            Some(json!({"dag_run_id": ok_run, "task_ids": ["statistics_calc"], "include_downstream": true, "only_failed": false})),
        )
        .await;
    assert_eq!(dry["total_entries"], 2, "{dry}");
    let none = env
        .ok(
            Method::POST,
            &clear,
            Some(json!({"dag_run_id": ok_run, "task_ids": ["statistics_calc"], "dry_run": false})),
        )
        .await;
    assert_eq!(none["total_entries"], 0);
    assert_eq!(
        env.task(HEALTHTECH, &ok_run, "statistics_calc").await["try_number"],
        1
    );
    let cleared = env
        .ok(
            Method::POST,
            &clear,
            Some(json!({"dag_run_id": ok_run, "task_ids": [["statistics_calc", -1]], "include_downstream": true, "only_failed": false, "dry_run": false})),
        )
        .await;
    let ids: Vec<&str> = cleared["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["statistics_calc", "end"]);
    let rerun = env
        .wait_run(HEALTHTECH, &ok_run, &["success", "failed"])
        .await;
    assert_eq!(rerun["state"], "success");
    env.wait_task(HEALTHTECH, &ok_run, "end", |t| t["state"] == "success")
        .await;
    let stats = env.task(HEALTHTECH, &ok_run, "statistics_calc").await;
    assert_eq!(stats["try_number"], 2, "{stats}");
    assert_eq!(stats["state"], "success");
    assert_eq!(
        env.task(HEALTHTECH, &ok_run, "calculate_pi").await["try_number"],
        1
    );
    let logs = format!(
        "{}/taskInstances/statistics_calc/logs",
        run_uri(HEALTHTECH, &ok_run)
    );
    let second = env.ok(Method::GET, &format!("{logs}/2"), None).await;
    assert_eq!(
        second["content"][0]["event"].as_str().unwrap().get(..19),
        Some("[bpg] try 2 started")
    );

    // Bad clears.
    for (body, status) in [
        (json!({"task_ids": ["end"]}), StatusCode::BAD_REQUEST),
        (
            json!({"dag_run_id": ok_run, "task_ids": ["nope"]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"dag_run_id": ok_run, "task_ids": [["end", 3]]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"dag_run_id": "nope", "only_failed": false, "dry_run": false}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"dag_run_id": ok_run, "include_future": true}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"dag_run_id": ok_run, "dry_run": "no"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (got, answer) = env.call(Method::POST, &clear, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn authentication_when_an_access_file_is_given() {
    let hash = bpg_gateway::auth::hash_password("pw");
    let (token, token_hash) = bpg_gateway::auth::new_token();
    let access = bpg_gateway::auth::Access::from_yaml(
        &format!("users:\n  ops: {{password: \"{hash}\", tokens: [\"{token_hash}\"]}}\n"),
        None,
    )
    .unwrap();
    let env = Env::start(
        Auth::users(access),
        Arc::new(InMemoryRunStore::new()),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let (status, body) = env.get("/api/v2/dags").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("/auth/token"));
    // Public: health, the API's description, the UI's page.
    assert_eq!(env.get("/api/v2/monitor/health").await.0, StatusCode::OK);
    let (status, spec) = env.get("/api/v2/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/api/v2/dags/{dag_id}/clearTaskInstances"].is_object());
    assert_eq!(env.get("/").await.0, StatusCode::OK);
    assert_eq!(env.get("/ui/api/dags").await.0, StatusCode::UNAUTHORIZED);

    let (status, _) = env
        .call(
            Method::POST,
            "/auth/token",
            Some(json!({"username": "ops", "password": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = env
        .call(
            Method::POST,
            "/auth/token",
            Some(json!({"username": "eve", "password": "pw"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = env
        .call(Method::POST, "/auth/token", Some(json!({"user": "ops"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let response = env
        .app
        .clone()
        .oneshot(
            Request::post("/auth/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"username": "ops", "password": "pw"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let jwt = serde_json::from_slice::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let with = |auth: &str| {
        Request::get("/api/v2/dags")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        env.send(with(&format!("Bearer {jwt}"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.send(with(&format!("Bearer {token}"))).await.0,
        StatusCode::OK
    );
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ops:pw");
    assert_eq!(
        env.send(with(&format!("Basic {basic}"))).await.0,
        StatusCode::OK
    );
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ops:no");
    assert_eq!(
        env.send(with(&format!("Basic {wrong}"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.send(with("Bearer forged.jwt.value")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(env.send(with("Digest x")).await.0, StatusCode::UNAUTHORIZED);

    // The cookie signs in reads; a change by cookie needs X-Requested-With (no cross-site posts).
    let cookie_pair = cookie.split(';').next().unwrap().to_owned();
    let read = Request::get("/ui/api/dags")
        .header(header::COOKIE, &cookie_pair)
        .body(Body::empty())
        .unwrap();
    assert_eq!(env.send(read).await.0, StatusCode::OK);
    let trigger = |xrw: bool| {
        let mut r = Request::post(format!("/api/v2/dags/{HEALTHTECH}/dagRuns"))
            .header(header::COOKIE, &cookie_pair)
            .header(header::CONTENT_TYPE, "application/json");
        if xrw {
            r = r.header("X-Requested-With", "bpg-ui");
        }
        r.body(Body::from("{}")).unwrap()
    };
    assert_eq!(env.send(trigger(false)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(env.send(trigger(true)).await.0, StatusCode::OK);

    // Guessing: after ten failed passwords in a minute (two above) the user waits, even with the
    // right one.
    let sign_in = |password: &str| Some(json!({"username": "ops", "password": password}));
    for _ in 0..8 {
        let (status, _) = env
            .call(Method::POST, "/auth/token", sign_in("guess"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = env.call(Method::POST, "/auth/token", sign_in("pw")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let basic_now = env.send(with(&format!("Basic {basic}"))).await.0;
    assert_eq!(basic_now, StatusCode::TOO_MANY_REQUESTS);
    // Tokens still work; once the minute is over, so does the password.
    assert_eq!(
        env.send(with(&format!("Bearer {jwt}"))).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    let (status, _) = env.call(Method::POST, "/auth/token", sign_in("pw")).await;
    assert_eq!(status, StatusCode::CREATED);
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ui_files_and_views() {
    let env = Env::open().await;
    let (status, page) = env
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/ui/app.js"), "the page loads the script");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external resource"
    );
    let (status, js) = env
        .send(Request::get("/ui/app.js").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("/ui/api/grid/"));
    assert_eq!(
        env.send(Request::get("/ui/app.css").body(Body::empty()).unwrap())
            .await
            .0,
        StatusCode::OK
    );

    let run_id = env.trigger(HEALTHTECH, json!({})).await;
    env.wait_run(HEALTHTECH, &run_id, &["success"]).await;
    let dags = env.ok(Method::GET, "/ui/api/dags", None).await;
    let healthtech = &dags["dags"][0];
    assert_eq!(healthtech["last_run"]["state"], "success");
    assert_eq!(healthtech["params"]["partitions"], 100);
    assert_eq!(healthtech["schedule"], "0 2 * * *");
    let grid = env
        .ok(Method::GET, &format!("/ui/api/grid/{HEALTHTECH}"), None)
        .await;
    assert_eq!(grid["tasks"].as_array().unwrap().len(), 5);
    assert_eq!(grid["tasks"][3]["upstream"], json!([1, 2]));
    assert_eq!(grid["runs"][0]["states"], "sssss");
    // gzipped for a client that asks.
    let response = env
        .app
        .clone()
        .oneshot(
            Request::get(format!("/ui/api/grid/{HEALTHTECH}"))
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut json).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), grid);
    assert_eq!(env.get("/ui/api/grid/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        env.get(&format!("/ui/api/grid/{HEALTHTECH}?runs=x"))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    env.stop().await;
}

#[tokio::test(start_paused = true)]
async fn runs_logs_and_pauses_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let keep = dir.path().to_owned();
    let store = Arc::new(bpg_pipeline::SqliteRunStore::open(&db).await.unwrap());
    let env = Env::start(Auth::open(), store, dir).await;
    let run_id = env
        .trigger(HEALTHTECH, json!({"conf": {"partitions": 3}}))
        .await;
    env.wait_run(HEALTHTECH, &run_id, &["success"]).await;
    let before = env
        .ok(
            Method::GET,
            &format!(
                "{}/taskInstances/calculate_pi/logs/1",
                run_uri(HEALTHTECH, &run_id)
            ),
            None,
        )
        .await;
    let dag_uri = format!("/api/v2/dags/{HEALTHTECH}");
    env.ok(Method::PATCH, &dag_uri, Some(json!({"is_paused": true})))
        .await;
    // Stop the scheduler; keep its directory.
    let Env {
        stop,
        service,
        _dir,
        ..
    } = env;
    stop.cancel();
    service.await.unwrap().unwrap();
    let dir = _dir;

    let store = Arc::new(bpg_pipeline::SqliteRunStore::open(&db).await.unwrap());
    let again = Env::start(Auth::open(), store, dir).await;
    // (The daily schedule adds a scheduled run of its own: only the manual one is checked.)
    let runs = again
        .ok(
            Method::GET,
            &format!("/api/v2/dags/{HEALTHTECH}/dagRuns?run_type=manual"),
            None,
        )
        .await;
    assert_eq!(runs["total_entries"], 1);
    assert_eq!(runs["dag_runs"][0]["dag_run_id"], run_id.as_str());
    assert_eq!(runs["dag_runs"][0]["state"], "success");
    assert_eq!(runs["dag_runs"][0]["conf"]["partitions"], 3);
    let after = again
        .ok(
            Method::GET,
            &format!(
                "{}/taskInstances/calculate_pi/logs/1",
                run_uri(HEALTHTECH, &run_id)
            ),
            None,
        )
        .await;
    assert_eq!(after["content"], before["content"]);
    assert!(keep.join("logs").exists());
    assert_eq!(
        again.ok(Method::GET, &dag_uri, None).await["is_paused"],
        true,
        "the pause outlives the restart"
    );
    again.stop().await;
}
