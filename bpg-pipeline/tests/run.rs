//! End-to-end runs on SimBackend under tokio's paused clock.

/// The connections of these tests: backends built in the test, by name.
type Backends = std::collections::HashMap<String, std::sync::Arc<dyn bpg_core::Backend>>;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    AppType, Backend, Capabilities, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream,
    SimBackend, SparkJob, Submission, SubmitOptions,
};
use bpg_pipeline::{
    CancelPolicy, Dag, DefaultArgs, Event, InMemoryRunStore, RetryPolicy, RunKey, RunState,
    RunStore, Runner, Task, TaskError, TaskKind, TaskState, TriggerRule, load_dag_file,
    retry_delay,
};
use chrono::TimeZone;
use serde_json::json;
use tokio::time::Instant;

fn data(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn logical_date() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap()
}

/// SimBackend that also remembers every job it was asked to submit, and can be slow to answer
/// a submit it has already accepted (like a gateway whose reply is lost in a slow network).
#[derive(Debug, Clone)]
struct Recording {
    sim: SimBackend,
    jobs: Arc<Mutex<Vec<SparkJob>>>,
    submit_reply_delay: Duration,
    /// Status lookups fail permanently (a revoked credential, say).
    status_forbidden: bool,
}

impl Recording {
    fn new() -> Self {
        Recording {
            sim: SimBackend::new(),
            jobs: Arc::default(),
            submit_reply_delay: Duration::ZERO,
            status_forbidden: false,
        }
    }

    fn job(&self, name_prefix: &str) -> SparkJob {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .find(|j| j.name.starts_with(name_prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no job named {name_prefix}*"))
    }
}

#[async_trait]
impl Backend for Recording {
    fn name(&self) -> &str {
        self.sim.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.sim.capabilities()
    }
    async fn submit(
        &self,
        job: &SparkJob,
        options: &SubmitOptions,
    ) -> bpg_core::Result<Submission> {
        self.jobs.lock().unwrap().push(job.clone());
        let submission = self.sim.submit(job, options).await?;
        tokio::time::sleep(self.submit_reply_delay).await;
        Ok(submission)
    }
    async fn status(&self, id: &JobId) -> bpg_core::Result<JobStatus> {
        if self.status_forbidden {
            return Err(bpg_core::Error::Forbidden {
                message: "token revoked".into(),
            });
        }
        self.sim.status(id).await
    }
    async fn logs(&self, id: &JobId, options: &LogOptions) -> bpg_core::Result<LogStream> {
        self.sim.logs(id, options).await
    }
    async fn cancel(&self, id: &JobId) -> bpg_core::Result<()> {
        self.sim.cancel(id).await
    }
    async fn find(&self, key: &IdempotencyKey) -> bpg_core::Result<Option<Submission>> {
        self.sim.find(key).await
    }
    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> bpg_core::Result<JobStatus> {
        if self.status_forbidden {
            return self.status(id).await;
        }
        self.sim.next_status(id, previous, poll_interval).await
    }
}

fn registry(backend: Arc<dyn Backend>) -> Backends {
    let mut r = Backends::new();
    r.insert("sim".to_string(), backend);
    r
}

fn set_label(dag: &mut Dag, task: &str, key: &str, value: &str) {
    let t = dag.tasks.iter_mut().find(|t| t.id == task).unwrap();
    match &mut t.kind {
        TaskKind::Spark(spark) => {
            spark.labels.insert(key.into(), value.into());
        }
        _ => panic!("{task} is not a spark task"),
    }
}

#[tokio::test(start_paused = true)]
async fn seed_pipeline_succeeds_with_templates_labels_and_xcom() {
    let dag = load_dag_file(data("seed_pipeline.yaml")).unwrap();
    let backend = Recording::new();
    let runner = Runner::new(dag, registry(Arc::new(backend.clone())))
        .run_id("manual__2025-05-01T00:00:00Z")
        .logical_date(logical_date());
    let mut events = runner.subscribe();
    let started = Instant::now();
    let report = runner.run().await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(
        report.state,
        RunState::Success,
        "{}",
        report.to_json_pretty()
    );
    for task in [
        "start",
        "calculate_pi",
        "word_count",
        "statistics_calc",
        "end",
    ] {
        assert_eq!(report.tasks[task].state, TaskState::Success, "{task}");
        assert_eq!(report.tasks[task].try_number, 1, "{task}");
    }
    assert_eq!(backend.sim.accepted_count(), 3);
    // word_count (2 min) is the longer branch, then statistics_calc (45 s).
    assert!(
        elapsed >= Duration::from_secs(165) && elapsed < Duration::from_secs(170),
        "{elapsed:?}"
    );

    // The report is DESIGN.md §8's shape exactly.
    let pi_id = report.tasks["calculate_pi"].submission_id.clone().unwrap();
    let wc_id = report.tasks["word_count"].submission_id.clone().unwrap();
    let stats_id = report.tasks["statistics_calc"]
        .submission_id
        .clone()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "dag_id": "seed_pipeline",
            "run_id": "manual__2025-05-01T00:00:00Z",
            "state": "success",
            "tasks": {
                "start": {"state": "success", "try_number": 1},
                "calculate_pi": {"state": "success", "try_number": 1, "submission_id": pi_id, "backend": "sim"},
                "word_count": {"state": "success", "try_number": 1, "submission_id": wc_id, "backend": "sim"},
                "statistics_calc": {"state": "success", "try_number": 1, "submission_id": stats_id, "backend": "sim"},
                "end": {"state": "success", "try_number": 1},
            }
        })
    );

    // Manifest file + templated args + task labels merged (the task's win).
    let pi = backend.job("calculate-pi");
    assert_eq!(pi.app_type, AppType::Python);
    assert_eq!(pi.arguments, vec!["100", "2025-05-01"]);
    assert_eq!(pi.label("team"), Some("analytics"));
    assert_eq!(pi.label("sim/duration"), Some("90s"));
    // Inline BPG request, templated.
    let wc = backend.job("word-count");
    assert_eq!(wc.arguments, vec!["s3a://datasets/corpus.txt"]);
    assert_eq!(wc.executor.instances, Some(2));
    // JSON file whose arguments read upstream XCom.
    let stats = backend.job("statistics-calc-20250501");
    assert_eq!(
        stats.arguments,
        vec![
            format!("--pi-job={pi_id}"),
            format!("--word-count-job={wc_id}"),
            "--run=manual__2025-05-01T00:00:00Z".to_string(),
        ]
    );

    // Events: run start/finish, driver log lines followed into the task log, state changes.
    let mut log_lines = 0;
    let mut states = Vec::new();
    let mut finished = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::TaskLog { task_id, .. } if &*task_id == "calculate_pi" => log_lines += 1,
            Event::TaskState { task_id, state, .. } if &*task_id == "statistics_calc" => {
                states.push(state)
            }
            Event::RunFinished { state } => finished = Some(state),
            _ => {}
        }
    }
    assert_eq!(log_lines, 3);
    assert_eq!(
        states,
        [
            TaskState::Scheduled,
            TaskState::Queued,
            TaskState::Running,
            TaskState::Success
        ]
    );
    assert_eq!(finished, Some(RunState::Success));
}

#[tokio::test(start_paused = true)]
async fn seed_pipeline_word_count_failure_fails_downstream_and_run() {
    let mut dag = load_dag_file(data("seed_pipeline.yaml")).unwrap();
    set_label(&mut dag, "word_count", "sim/outcome", "failed");
    let sim = SimBackend::new();
    let report = Runner::new(dag, registry(Arc::new(sim.clone())))
        .run_id("manual__2025-05-01T00:00:00Z")
        .logical_date(logical_date())
        .run()
        .await
        .unwrap();
    let pi_id = report.tasks["calculate_pi"].submission_id.clone().unwrap();
    let wc_id = report.tasks["word_count"].submission_id.clone().unwrap();
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "dag_id": "seed_pipeline",
            "run_id": "manual__2025-05-01T00:00:00Z",
            "state": "failed",
            "tasks": {
                "start": {"state": "success", "try_number": 1},
                "calculate_pi": {"state": "success", "try_number": 1, "submission_id": pi_id, "backend": "sim"},
                "word_count": {"state": "failed", "try_number": 1, "submission_id": wc_id, "backend": "sim"},
                "statistics_calc": {"state": "upstream_failed", "try_number": 0},
                "end": {"state": "upstream_failed", "try_number": 0},
            }
        })
    );
    assert_eq!(sim.accepted_count(), 2);
}

/// Start times of each attempt of `task`, from the event stream.
fn attempt_starts(events: &[(Instant, Event)], task: &str) -> Vec<Instant> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::TaskState {
                task_id,
                state: TaskState::Running,
                ..
            } if &**task_id == task => Some(*at),
            _ => None,
        })
        .collect()
}

async fn run_collecting(runner: Runner) -> (bpg_pipeline::RunReport, Vec<(Instant, Event)>) {
    let mut stream = runner.subscribe();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(e) = stream.recv().await {
            seen.push((Instant::now(), e));
        }
        seen
    });
    let report = runner.run().await.unwrap();
    (report, collector.await.unwrap())
}

fn flaky_dag(policy: RetryPolicy, fail_attempts: u32) -> Dag {
    let job = SparkJob::new("flaky", AppType::Scala, "3.5", "local:///flaky.jar")
        .with_main_class("Flaky")
        .with_label("sim/duration", "5s")
        .with_label("sim/fail-attempts", fail_attempts.to_string());
    let mut task = Task::spark("flaky", "sim", job)
        .retries(policy.retries)
        .retry_delay(policy.retry_delay)
        .retry_exponential_backoff(policy.exponential_backoff);
    if let Some(max) = policy.max_retry_delay {
        task = task.max_retry_delay(max);
    }
    Dag::builder("retries").task(task).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_delays_follow_retry_delay_without_backoff() {
    let policy = RetryPolicy {
        retries: 3,
        retry_delay: Duration::from_secs(10),
        exponential_backoff: false,
        max_retry_delay: None,
    };
    let sim = SimBackend::new();
    let (report, events) = run_collecting(Runner::new(
        flaky_dag(policy, 2),
        registry(Arc::new(sim.clone())),
    ))
    .await;
    assert_eq!(report.tasks["flaky"].state, TaskState::Success);
    assert_eq!(report.tasks["flaky"].try_number, 3);
    let starts = attempt_starts(&events, "flaky");
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 5 s of running, then exactly 10 s of retry delay.
    assert_eq!(gaps, vec![Duration::from_secs(15); 2]);
    // One Spark application per try (each try has its own idempotency key).
    assert_eq!(sim.accepted_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_delays_back_off_exponentially_and_are_capped() {
    let policy = RetryPolicy {
        retries: 5,
        retry_delay: Duration::from_secs(10),
        exponential_backoff: true,
        max_retry_delay: Some(Duration::from_secs(60)),
    };
    let (report, events) = run_collecting(
        Runner::new(flaky_dag(policy, 10), registry(Arc::new(SimBackend::new())))
            .logical_date(logical_date()),
    )
    .await;
    assert_eq!(report.tasks["flaky"].state, TaskState::Failed);
    assert_eq!(report.tasks["flaky"].try_number, 6, "retries + 1 attempts");
    assert_eq!(report.state, RunState::Failed);
    let announced: Vec<(u32, Duration)> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TaskRetry {
                try_number, delay, ..
            } => Some((*try_number, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(announced.len(), 5);
    let starts = attempt_starts(&events, "flaky");
    for (k, (try_number, delay)) in announced.iter().enumerate() {
        assert_eq!(*try_number, k as u32 + 1);
        // The delay actually waited is the one announced ...
        assert_eq!(starts[k + 1] - starts[k], Duration::from_secs(5) + *delay);
        // ... and is Airflow's: base 10·2^(n-1) s plus jitter below base, capped at 60 s.
        let base = Duration::from_secs(10 << k);
        let expected_band = (
            base.min(Duration::from_secs(60)),
            (base * 2).min(Duration::from_secs(60)),
        );
        assert!(
            *delay >= expected_band.0 && *delay <= expected_band.1,
            "try {try_number}: {delay:?} outside {expected_band:?}"
        );
        // Exactly: the jitter key is (dag_id, task_id, logical date), as in Airflow.
        assert_eq!(
            *delay,
            retry_delay(
                &policy,
                *try_number,
                "retries#flaky#2025-05-01T00:00:00+00:00"
            )
        );
    }
    // Tries 3.. are at the cap.
    assert!(
        announced[3..]
            .iter()
            .all(|(_, d)| *d == Duration::from_secs(60))
    );
}

fn long_job(name: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "local:///long.py").with_label("sim/duration", "1h")
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_run_cancels_every_running_job() {
    let dag = Dag::builder("cancel")
        .task(Task::empty("start"))
        .task(Task::spark("a", "sim", long_job("a")).depends_on(["start"]))
        .task(Task::spark("b", "sim", long_job("b")).depends_on(["start"]))
        .task(
            Task::spark("c", "sim", long_job("c"))
                .depends_on(["start"])
                .retries(3),
        )
        .task(Task::empty("end").depends_on(["a", "b", "c"]))
        .build()
        .unwrap();
    let sim = SimBackend::new();
    let runner = Runner::new(dag, registry(Arc::new(sim.clone())));
    let cancel = runner.cancellation_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(600)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let report = runner.run().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(601));
    assert_eq!(report.state, RunState::Failed);
    let mut cancelled: Vec<String> = sim
        .cancel_requests()
        .iter()
        .map(|j| j.to_string())
        .collect();
    cancelled.sort();
    let mut submitted: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| report.tasks[*t].submission_id.clone().unwrap())
        .collect();
    submitted.sort();
    assert_eq!(cancelled, submitted, "every running job got a cancel");
    for t in ["a", "b", "c"] {
        // A cancelled run does not retry.
        assert_eq!(report.tasks[t].state, TaskState::Failed, "{t}");
        assert_eq!(report.tasks[t].try_number, 1, "{t}");
    }
    assert_eq!(report.tasks["end"].state, TaskState::UpstreamFailed);
    assert_eq!(sim.running_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn leave_running_policy_keeps_jobs_for_reattach() {
    let dag = Dag::builder("detach")
        .task(Task::spark("a", "sim", long_job("a")))
        .task(Task::spark("b", "sim", long_job("b")))
        .build()
        .unwrap();
    let sim = SimBackend::new();
    let runner =
        Runner::new(dag, registry(Arc::new(sim.clone()))).on_cancel(CancelPolicy::LeaveRunning);
    let cancel = runner.cancellation_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        cancel.cancel();
    });
    let report = runner.run().await.unwrap();
    assert!(sim.cancel_requests().is_empty());
    assert_eq!(sim.running_count(), 2);
    for t in ["a", "b"] {
        assert_eq!(report.tasks[t].state, TaskState::Running, "{t}");
        assert!(report.tasks[t].submission_id.is_some());
    }
    // Not finished: the run stays `running`, for a resume to pick up.
    assert_eq!(report.state, RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn execution_timeout_covers_the_attempt_and_cancels_the_job_each_try() {
    let dag = Dag::builder("timeout")
        .task(
            Task::spark("slow", "sim", long_job("slow"))
                .execution_timeout(Duration::from_secs(30))
                .retries(1)
                .retry_delay(Duration::from_secs(5)),
        )
        .task(
            Task::empty("after")
                .depends_on(["slow"])
                .trigger_rule(TriggerRule::AllDone),
        )
        .build()
        .unwrap();
    let sim = SimBackend::new();
    let runner = Runner::new(dag, registry(Arc::new(sim.clone())));
    let mut events = runner.subscribe();
    let started = Instant::now();
    let report = runner.run().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(65));
    assert_eq!(report.tasks["slow"].state, TaskState::Failed);
    assert_eq!(report.tasks["slow"].try_number, 2);
    // The all_done leaf ran, so the run succeeds (Airflow 3's rule looks at leaves).
    assert_eq!(report.tasks["after"].state, TaskState::Success);
    assert_eq!(report.state, RunState::Success);
    assert_eq!(sim.accepted_count(), 2);
    assert_eq!(
        sim.cancel_requests().len(),
        2,
        "both timed-out tries were cancelled"
    );
    let mut failure = None;
    while let Some(e) = events.recv().await {
        if let Event::TaskState {
            state: TaskState::Failed,
            message,
            ..
        } = e
        {
            failure = message;
        }
    }
    assert_eq!(
        failure.as_deref(),
        Some("execution_timeout of 30s exceeded")
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_during_submit_still_cancels_the_accepted_job() {
    let backend = Recording {
        submit_reply_delay: Duration::from_secs(60),
        ..Recording::new()
    };
    let dag = Dag::builder("slow_submit")
        .task(Task::spark("t", "sim", long_job("t")).execution_timeout(Duration::from_secs(10)))
        .build()
        .unwrap();
    let report = Runner::new(dag, registry(Arc::new(backend.clone())))
        .run()
        .await
        .unwrap();
    assert_eq!(report.tasks["t"].state, TaskState::Failed);
    // The runner never saw the submission id, but found the job by its idempotency key.
    let accepted: Vec<JobId> = backend
        .sim
        .submissions()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(backend.sim.cancel_requests(), accepted);
    assert_eq!(backend.sim.running_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_fails_while_its_job_runs_cancels_the_job() {
    let backend = Recording {
        status_forbidden: true,
        ..Recording::new()
    };
    let dag = Dag::builder("lost_status")
        .task(Task::spark("t", "sim", long_job("t")))
        .build()
        .unwrap();
    let runner = Runner::new(dag, registry(Arc::new(backend.clone())));
    let mut events = runner.subscribe();
    let report = runner.run().await.unwrap();
    assert_eq!(report.tasks["t"].state, TaskState::Failed);
    let accepted: Vec<JobId> = backend
        .sim
        .submissions()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(backend.sim.cancel_requests(), accepted);
    let mut message = None;
    while let Some(e) = events.recv().await {
        if let Event::TaskState {
            state: TaskState::Failed,
            message: m,
            ..
        } = e
        {
            message = m;
        }
    }
    assert_eq!(message.as_deref(), Some("forbidden: token revoked"));
}

#[tokio::test(start_paused = true)]
async fn a_run_store_gets_each_submission_before_the_job_is_waited_on() {
    let dag = load_dag_file(data("seed_pipeline.yaml")).unwrap();
    let sim = SimBackend::new();
    let store = Arc::new(InMemoryRunStore::new());
    let runner = Runner::new(dag, registry(Arc::new(sim.clone())))
        .run_id("stored")
        .store(store.clone());
    let mut events = runner.subscribe();
    let key = RunKey {
        dag_id: "seed_pipeline".into(),
        run_id: "stored".into(),
    };
    let watcher = {
        let store = store.clone();
        let key = key.clone();
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut checked = 0;
            while let Some(e) = events.recv().await {
                if let Event::TaskSubmitted {
                    task_id,
                    submission_id,
                    ..
                } = e
                {
                    // The event follows the store write; the job has not ended yet.
                    let stored = store.load_run(&key).await.unwrap().unwrap();
                    let record = &stored.tasks[&*task_id].submissions[0];
                    assert_eq!(record.submission.id.as_str(), submission_id);
                    assert_eq!(record.connection, "sim");
                    let status = sim.status(&record.submission.id).await.unwrap();
                    assert!(!status.is_terminal(), "{task_id}: {status:?}");
                    checked += 1;
                }
            }
            checked
        })
    };
    let report = runner.run().await.unwrap();
    assert!(report.is_success());
    assert_eq!(watcher.await.unwrap(), 3);
    let stored = store.load_run(&key).await.unwrap().unwrap();
    assert_eq!(stored.run.state, RunState::Success);
    assert_eq!(stored.tasks["end"].state, TaskState::Success);
    assert_eq!(
        stored.xcom["word_count"]["submission_id"],
        json!(report.tasks["word_count"].submission_id.clone().unwrap())
    );
    assert_eq!(stored.xcom["word_count"]["state"], json!("COMPLETED"));
}

#[tokio::test(start_paused = true)]
async fn max_active_tasks_and_pools_limit_concurrency() {
    let ten_seconds = |name: &str| {
        SparkJob::new(name, AppType::Python, "3.5", "local:///x.py")
            .with_label("sim/duration", "10s")
    };
    // Six 10 s tasks, two at a time: 30 s.
    let mut b = Dag::builder("limits").max_active_tasks(2);
    for i in 0..6 {
        b = b.task(Task::spark(format!("t{i}"), "sim", ten_seconds("t")));
    }
    let started = Instant::now();
    let report = Runner::new(b.build().unwrap(), registry(Arc::new(SimBackend::new())))
        .run()
        .await
        .unwrap();
    assert!(report.is_success());
    assert_eq!(started.elapsed(), Duration::from_secs(30));

    // Three tasks share a one-slot pool; two others are free: 30 s, not 10 s.
    let dag = Dag::builder("pools")
        .pool("db", 1)
        .tasks((0..3).map(|i| Task::spark(format!("p{i}"), "sim", ten_seconds("p")).pool("db", 1)))
        .tasks((0..2).map(|i| Task::spark(format!("f{i}"), "sim", ten_seconds("f"))))
        .build()
        .unwrap();
    let started = Instant::now();
    let report = Runner::new(dag, registry(Arc::new(SimBackend::new())))
        .run()
        .await
        .unwrap();
    assert!(report.is_success());
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn function_tasks_push_and_pull_xcom_skip_and_fail_without_retry() {
    let dag = Dag::builder("functions")
        .task(Task::function("produce", |ctx| async move {
            ctx.log("producing");
            Ok(Some(json!({"rows": 42, "run": ctx.run_id()})))
        }))
        .task(
            Task::function("consume", |ctx| async move {
                let v = ctx
                    .xcom_pull("produce", "return_value")
                    .ok_or_else(|| TaskError::failed("no value"))?;
                ctx.xcom_push("doubled", json!(v["rows"].as_i64().unwrap_or(0) * 2));
                Ok(None)
            })
            .depends_on(["produce"]),
        )
        .task(Task::function("maybe", |_| async {
            Err(TaskError::Skipped("nothing new".into()))
        }))
        .task(Task::empty("after_maybe").depends_on(["maybe"]))
        .task(
            Task::function("fatal", |_| async {
                Err(TaskError::Fatal("bad input".into()))
            })
            .retries(3),
        )
        .task(
            Task::empty("alert")
                .depends_on(["fatal"])
                .trigger_rule(TriggerRule::OneFailed),
        )
        .task(
            Task::shell("report", "echo doubled={{ xcom('consume', 'doubled') }}")
                .depends_on(["consume"]),
        )
        .build()
        .unwrap();
    let (report, events) = run_collecting(Runner::new(dag, Backends::new()).run_id("r1")).await;
    let state = |t: &str| report.tasks[t].state;
    assert_eq!(state("produce"), TaskState::Success);
    assert_eq!(state("consume"), TaskState::Success);
    assert_eq!(state("maybe"), TaskState::Skipped);
    assert_eq!(state("after_maybe"), TaskState::Skipped);
    assert_eq!(state("fatal"), TaskState::Failed);
    assert_eq!(report.tasks["fatal"].try_number, 1, "Fatal is not retried");
    assert_eq!(state("alert"), TaskState::Success);
    assert_eq!(state("report"), TaskState::Success);
    // `fatal` is not a leaf (alert follows it) and every leaf succeeded or was skipped.
    assert_eq!(report.state, RunState::Success);
    let logs: Vec<(String, String)> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TaskLog { task_id, line, .. } => Some((task_id.to_string(), line.clone())),
            _ => None,
        })
        .collect();
    assert!(
        logs.contains(&("produce".into(), "producing".into())),
        "{logs:?}"
    );
    assert!(
        logs.contains(&("report".into(), "doubled=84".into())),
        "{logs:?}"
    );
}

#[tokio::test]
async fn command_tasks_log_output_fail_on_exit_code_and_are_killed_on_timeout() {
    let dag = Dag::builder("commands")
        .param("who", "world")
        .task(Task::shell(
            "hello",
            "echo hello {{ params.who }}; echo to-stderr >&2",
        ))
        .task(Task::command(
            "argv",
            ["sh", "-c", "echo $BPG_TASK_ID try $BPG_TRY_NUMBER; exit 3"],
        ))
        .task(
            Task::shell("slow", "sleep 30; echo never")
                .execution_timeout(Duration::from_millis(300)),
        )
        .task(Task::shell("bad_template", "echo {{ params.missing }}"))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (report, events) = run_collecting(Runner::new(dag, Backends::new())).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleep was killed"
    );
    assert_eq!(report.tasks["hello"].state, TaskState::Success);
    assert_eq!(report.tasks["argv"].state, TaskState::Failed);
    assert_eq!(report.tasks["slow"].state, TaskState::Failed);
    assert_eq!(report.tasks["bad_template"].state, TaskState::Failed);
    let mut logs = Vec::new();
    let mut failures = Vec::new();
    for (_, e) in &events {
        match e {
            Event::TaskLog { task_id, line, .. } => logs.push(format!("{task_id}: {line}")),
            Event::TaskState {
                task_id,
                state: TaskState::Failed,
                message: Some(m),
                ..
            } => failures.push(format!("{task_id}: {m}")),
            _ => {}
        }
    }
    logs.sort();
    assert_eq!(
        logs,
        vec!["argv: argv try 1", "hello: hello world", "hello: to-stderr"]
    );
    failures.sort();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(
        failures[0].starts_with("argv: command exited with exit status: 3"),
        "{failures:?}"
    );
    assert!(failures[1].contains("undefined"), "{failures:?}");
    assert_eq!(failures[2], "slow: execution_timeout of 300ms exceeded");
}

#[tokio::test(start_paused = true)]
async fn unknown_connections_are_located_errors() {
    let dag = load_dag_file(data("seed_pipeline.yaml")).unwrap();
    let err = Runner::new(dag, Backends::new())
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("seed_pipeline.yaml:20:17: error: tasks[1].connection: task \"calculate_pi\" uses unknown connection \"sim\""), "{err}");
    assert!(err.contains("BPG_CONN_SIM"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_dag_changed_into_a_cycle_after_building_is_refused_with_the_cycle() {
    let mut dag = load_dag_file(data("seed_pipeline.yaml")).unwrap();
    dag.tasks[0].depends_on.push("end".into());
    let err = Runner::new(dag, registry(Arc::new(SimBackend::new())))
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dependency cycle: start -> calculate_pi -> statistics_calc -> end -> start"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn healthtech_daily_retries_the_phi_job_and_skips_the_alert() {
    let dag = load_dag_file(data("healthtech_daily.yaml")).unwrap();
    let backend = Recording::new();
    let (report, events) = run_collecting(
        Runner::new(dag, registry(Arc::new(backend.clone()))).logical_date(logical_date()),
    )
    .await;
    let state = |t: &str| report.tasks[t].state;
    let failures: Vec<&Event> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| {
            matches!(
                e,
                Event::TaskState {
                    state: TaskState::Failed,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(report.state, RunState::Success, "{failures:?}");
    assert_eq!(state("patient_outcomes"), TaskState::Success);
    assert_eq!(report.tasks["patient_outcomes"].try_number, 2);
    assert_eq!(state("web_sessions"), TaskState::Success);
    assert_eq!(state("report"), TaskState::Success);
    assert_eq!(state("alert_on_failure"), TaskState::Skipped);
    assert_eq!(report.tasks["alert_on_failure"].try_number, 0);
    let phi = backend.job("patient-outcomes");
    assert_eq!(phi.label("data-classification"), Some("phi"));
    assert_eq!(phi.queue.as_deref(), Some("phi"));
    let web = backend.job("calculate-pi");
    assert_eq!(
        web.arguments,
        vec!["--region=us-west-2", "--date=2025-05-01"]
    );
    let report_line = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::TaskLog { task_id, line, .. } if &**task_id == "report" => Some(line.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        report_line,
        format!(
            "outcomes={} sessions={} run=manual__2025-05-01T00:00:00Z",
            report.tasks["patient_outcomes"]
                .submission_id
                .as_deref()
                .unwrap(),
            report.tasks["web_sessions"]
                .submission_id
                .as_deref()
                .unwrap()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn default_args_apply_to_tasks() {
    let dag = Dag::builder("defaults")
        .default_args(
            DefaultArgs::new()
                .retries(1)
                .retry_delay(Duration::from_secs(1)),
        )
        .task(Task::function("once_flaky", |ctx| async move {
            if ctx.try_number() == 1 {
                Err(TaskError::failed("first try fails"))
            } else {
                Ok(None)
            }
        }))
        .build()
        .unwrap();
    let report = Runner::new(dag, Backends::new()).run().await.unwrap();
    assert_eq!(report.tasks["once_flaky"].state, TaskState::Success);
    assert_eq!(report.tasks["once_flaky"].try_number, 2);
}

#[tokio::test]
async fn a_command_printing_bytes_that_are_not_utf8_is_read_to_the_end() {
    // Before, the line reader stopped at the bad line and the command could die of SIGPIPE.
    let dag = Dag::builder("not_utf8")
        .task(Task::shell(
            "latin1",
            "echo before; printf 'caf\\351 \\377\\n'; printf 'err \\376\\n' >&2; \
             i=0; while [ $i -lt 2000 ]; do echo after $i; i=$((i+1)); done; echo last",
        ))
        .build()
        .unwrap();
    let (report, events) = run_collecting(Runner::new(dag, Backends::new())).await;
    assert_eq!(report.tasks["latin1"].state, TaskState::Success);
    let logs: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TaskLog { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 2004, "every line arrived");
    assert!(logs.contains(&"before".to_owned()), "{logs:?}");
    assert!(
        logs.contains(&"caf\u{FFFD} \u{FFFD}".to_owned()),
        "{logs:?}"
    );
    assert!(logs.contains(&"err \u{FFFD}".to_owned()), "{logs:?}");
    assert!(logs.contains(&"after 1999".to_owned()));
    assert_eq!(logs.last().map(String::as_str), Some("last"));
}
