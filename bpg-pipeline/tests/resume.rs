//! Resuming a run from its run store: finished tasks keep their outcomes, in-flight Spark jobs
//! are reattached (or found by idempotency key), and retries keep their schedule.

/// The connections of these tests: backends built in the test, by name.
type Backends = std::collections::HashMap<String, std::sync::Arc<dyn bpg_core::Backend>>;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bpg_core::{AppType, Backend, IdempotencyKey, SimBackend, SparkJob, SubmitOptions};
use bpg_pipeline::{
    CancelPolicy, Dag, Event, InMemoryRunStore, RunKey, RunRecord, RunState, RunStore, Runner,
    Task, TaskError, TaskState,
};
use chrono::TimeZone;
use tokio::time::Instant;

fn key() -> RunKey {
    RunKey {
        dag_id: "resume".into(),
        run_id: "manual__1".into(),
    }
}

fn spark(id: &str, duration: &str) -> Task {
    let job = SparkJob::new(id, AppType::Python, "3.5", "local:///job.py")
        .with_label("sim/duration", duration);
    Task::spark(id, "sim", job)
}

fn registry(sim: &SimBackend) -> Backends {
    let mut connections = Backends::new();
    connections.insert("sim".to_string(), Arc::new(sim.clone()));
    connections
}

/// A function task that counts its attempts and fails its first one.
fn counted(id: &str, calls: &Arc<AtomicU32>, fail_first: bool) -> Task {
    let calls = calls.clone();
    Task::function(id, move |ctx| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if fail_first && ctx.try_number() == 1 {
                Err(TaskError::failed("first try fails"))
            } else {
                Ok(None)
            }
        }
    })
}

/// Runs `runner` with [`CancelPolicy::LeaveRunning`] until `stop_at` matches an event, then
/// cancels it as a shut-down scheduler would.
async fn run_until(runner: Runner, stop_at: impl Fn(&Event) -> bool) -> bpg_pipeline::RunReport {
    let runner = runner.on_cancel(CancelPolicy::LeaveRunning);
    let mut events = runner.subscribe();
    let cancel = runner.cancellation_token();
    let run = tokio::spawn(runner.run());
    while let Some(event) = events.recv().await {
        if stop_at(&event) {
            break;
        }
    }
    cancel.cancel();
    run.await.unwrap().unwrap()
}

#[tokio::test(start_paused = true)]
async fn resume_reattaches_running_jobs_and_keeps_finished_outcomes() {
    let sim = SimBackend::new();
    let store: Arc<dyn RunStore> = Arc::new(InMemoryRunStore::new());
    let calls = Arc::new(AtomicU32::new(0));
    let dag = Arc::new(
        Dag::builder("resume")
            .task(counted("prepare", &calls, false))
            .task(spark("first", "10m").depends_on(["prepare"]))
            .task(spark("second", "10m").depends_on(["first"]))
            .build()
            .unwrap(),
    );
    let runner = Runner::new(dag.clone(), registry(&sim))
        .run_id("manual__1")
        .store(store.clone());
    let left = run_until(
        runner,
        |e| matches!(e, Event::TaskSubmitted { task_id, .. } if &**task_id == "first"),
    )
    .await;
    assert_eq!(left.state, RunState::Running);
    let stored = store.load_run(&key()).await.unwrap().unwrap();
    assert_eq!(stored.run.state, RunState::Running, "left to be resumed");
    assert_eq!(stored.tasks["first"].state, TaskState::Running);
    let first_job = stored.tasks["first"].submissions[0].submission.id.clone();
    assert_eq!(sim.running_count(), 1, "the job was left running");

    let resumed = Runner::new(dag, registry(&sim))
        .run_id("manual__1")
        .store(store.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(resumed.state, RunState::Success);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "prepare is not run again");
    assert_eq!(resumed.tasks["prepare"].state, TaskState::Success);
    assert_eq!(resumed.tasks["first"].try_number, 1);
    assert_eq!(
        resumed.tasks["first"].submission_id.as_deref(),
        Some(first_job.as_str()),
        "reattached to the recorded job"
    );
    assert_eq!(sim.accepted_count(), 2, "one job per Spark task");
    let after = store.load_run(&key()).await.unwrap().unwrap();
    assert_eq!(after.run.state, RunState::Success);
    // Restored tasks keep the timestamps of the tries that ran them.
    assert_eq!(
        after.tasks["prepare"].start_date,
        stored.tasks["prepare"].start_date
    );
    assert_eq!(
        after.tasks["prepare"].end_date,
        stored.tasks["prepare"].end_date
    );
    assert_eq!(
        after.tasks["first"].start_date,
        stored.tasks["first"].start_date
    );
}

#[tokio::test(start_paused = true)]
async fn resume_finds_a_submission_that_was_accepted_but_not_recorded() {
    let sim = SimBackend::new();
    let store: Arc<dyn RunStore> = Arc::new(InMemoryRunStore::new());
    let dag = Dag::builder("resume")
        .task(spark("only", "5m"))
        .build()
        .unwrap();
    // What a process killed between submit and record leaves: the task running its first try,
    // no submission in the store, and the job accepted by the backend under the try's key.
    store
        .begin_run(&RunRecord {
            key: key(),
            logical_date: chrono::Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap(),
            params: serde_json::Map::new(),
            state: RunState::Running,
        })
        .await
        .unwrap();
    store
        .set_task_state(&key(), "only", TaskState::Running, 1)
        .await
        .unwrap();
    let job = SparkJob::new("only", AppType::Python, "3.5", "local:///job.py")
        .with_label("sim/duration", "5m");
    let accepted = sim
        .submit(
            &job,
            &SubmitOptions::new().with_idempotency_key(IdempotencyKey::for_task(
                "resume",
                "manual__1",
                "only",
                1,
            )),
        )
        .await
        .unwrap();

    let report = Runner::new(dag, registry(&sim))
        .run_id("manual__1")
        .store(store.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(report.state, RunState::Success);
    assert_eq!(sim.accepted_count(), 1, "nothing resubmitted");
    assert_eq!(
        report.tasks["only"].submission_id.as_deref(),
        Some(accepted.id.as_str())
    );
    let stored = store.load_run(&key()).await.unwrap().unwrap();
    assert_eq!(
        stored.tasks["only"].submissions[0].submission.id,
        accepted.id
    );
}

#[tokio::test(start_paused = true)]
async fn resume_continues_a_retry_on_its_schedule() {
    let sim = SimBackend::new();
    let store: Arc<dyn RunStore> = Arc::new(InMemoryRunStore::new());
    let calls = Arc::new(AtomicU32::new(0));
    let dag = Arc::new(
        Dag::builder("resume")
            .task(
                counted("flaky", &calls, true)
                    .retries(2)
                    .retry_delay(Duration::from_secs(3600)),
            )
            .build()
            .unwrap(),
    );
    let runner = Runner::new(dag.clone(), registry(&sim))
        .run_id("manual__1")
        .store(store.clone());
    run_until(runner, |e| matches!(e, Event::TaskRetry { .. })).await;
    let stored = store.load_run(&key()).await.unwrap().unwrap();
    assert_eq!(stored.tasks["flaky"].state, TaskState::UpForRetry);
    assert_eq!(stored.tasks["flaky"].try_number, 1);

    let started = Instant::now();
    let report = Runner::new(dag, registry(&sim))
        .run_id("manual__1")
        .store(store)
        .run()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(report.state, RunState::Success);
    assert_eq!(
        report.tasks["flaky"].try_number, 2,
        "the second try, not a fresh first"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The retry delay counts from when the recorded try ended (moments ago, in real time).
    assert!(
        waited > Duration::from_secs(3590) && waited <= Duration::from_secs(3600),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recorded_job_gone_with_its_runner_fails_the_try_saying_so_and_retries_submit_again() {
    let store: Arc<dyn RunStore> = Arc::new(InMemoryRunStore::new());
    let dag = Arc::new(
        Dag::builder("resume")
            .task(
                spark("first", "10m")
                    .retries(1)
                    .retry_delay(Duration::from_secs(1)),
            )
            .build()
            .unwrap(),
    );
    // The first runner's simulated cluster lives in its process...
    let before = SimBackend::new();
    let left = run_until(
        Runner::new(dag.clone(), registry(&before))
            .run_id("manual__1")
            .store(store.clone()),
        |e| matches!(e, Event::TaskSubmitted { task_id, .. } if &**task_id == "first"),
    )
    .await;
    assert_eq!(left.state, RunState::Running);
    // ... and the restarted runner has a new one, which never heard of the recorded job.
    let after = SimBackend::new();
    let resumed = Runner::new(dag, registry(&after))
        .run_id("manual__1")
        .store(store.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(resumed.state, RunState::Success);
    assert_eq!(resumed.tasks["first"].try_number, 2);
    let stored = store.load_run(&key()).await.unwrap().unwrap();
    assert_eq!(stored.tasks["first"].submissions.len(), 2);
    assert_eq!(after.accepted_count(), 1, "the retry submitted it again");

    // Without retries, the task fails with a message that says what happened.
    let store: Arc<dyn RunStore> = Arc::new(InMemoryRunStore::new());
    let dag = Arc::new(
        Dag::builder("resume")
            .task(spark("first", "10m"))
            .build()
            .unwrap(),
    );
    let before = SimBackend::new();
    run_until(
        Runner::new(dag.clone(), registry(&before))
            .run_id("manual__1")
            .store(store.clone()),
        |e| matches!(e, Event::TaskSubmitted { .. }),
    )
    .await;
    let runner = Runner::new(dag, registry(&SimBackend::new()))
        .run_id("manual__1")
        .store(store);
    let mut events = runner.subscribe();
    let resumed = runner.run().await.unwrap();
    assert_eq!(resumed.tasks["first"].state, TaskState::Failed);
    let mut message = String::new();
    while let Some(event) = events.recv().await {
        if let Event::TaskState {
            state: TaskState::Failed,
            message: Some(m),
            ..
        } = event
        {
            message = m;
        }
    }
    assert!(
        message.contains("recorded before the restart") && message.contains("no longer exists"),
        "{message}"
    );
}
