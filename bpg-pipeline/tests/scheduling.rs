//! The DAG scheduler on tokio's paused clock: catchup on and off, max_active_runs, manual
//! triggers, shutdown policies, pipeline folders.

/// The connections of these tests: backends built in the test, by name.
type Backends = std::collections::HashMap<String, std::sync::Arc<dyn bpg_core::Backend>>;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpg_core::{AppType, SimBackend, SparkJob};
use bpg_pipeline::{
    CancelPolicy, Dag, DagScheduler, InMemoryRunStore, ManualRun, RunState, RunStore, ScheduledDag,
    SchedulerEvent, SqliteRunStore, Task, TaskState,
};
use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

/// What the DAG's one task saw, run by run.
#[derive(Default)]
struct Probe {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    seen: Mutex<Vec<(DateTime<Utc>, serde_json::Value)>>,
}

/// A daily DAG whose task takes `work` and records its logical date and `params.region`.
fn daily_dag(probe: &Arc<Probe>, work: Duration) -> Dag {
    let probe = probe.clone();
    Dag::builder("daily")
        .schedule("@daily")
        .param("region", "us-west-2")
        .task(Task::function("work", move |ctx| {
            let probe = probe.clone();
            async move {
                let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
                probe.most_at_once.fetch_max(now, Ordering::SeqCst);
                probe
                    .seen
                    .lock()
                    .unwrap()
                    .push((ctx.logical_date(), ctx.params()["region"].clone()));
                tokio::time::sleep(work).await;
                probe.running.fetch_sub(1, Ordering::SeqCst);
                Ok(None)
            }
        }))
        .build()
        .unwrap()
}

/// Runs `scheduler` for `span` of tokio time, then stops it.
async fn run_for(scheduler: DagScheduler, span: Duration) {
    let stop = CancellationToken::new();
    let service = tokio::spawn(scheduler.run(stop.clone()));
    tokio::time::sleep(span).await;
    stop.cancel();
    service.await.unwrap().unwrap();
}

async fn logical_dates(store: &dyn RunStore) -> Vec<(String, DateTime<Utc>, RunState)> {
    store
        .list_runs("daily")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.key.run_id, r.logical_date, r.state))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn catchup_runs_every_missed_interval_then_follows_the_schedule() {
    let probe = Arc::new(Probe::default());
    let store = Arc::new(InMemoryRunStore::new());
    let dag = ScheduledDag::new(daily_dag(&probe, HOUR))
        .unwrap()
        .start_date(day(1))
        .catchup(true);
    // Jan 5, 10:00: four intervals, [Jan 1, Jan 2) .. [Jan 4, Jan 5), are complete.
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(5) + chrono::Duration::hours(10))
        .dag(dag);
    // Until Jan 6, 16:00: [Jan 5, Jan 6) runs at Jan 6, 00:00.
    run_for(scheduler, 30 * HOUR).await;

    let runs = logical_dates(&*store).await;
    let expected: Vec<_> = (1..=5)
        .map(|d| {
            (
                format!("scheduled__2025-01-0{d}T00:00:00Z"),
                day(d),
                RunState::Success,
            )
        })
        .collect();
    assert_eq!(runs, expected);
    let mut seen: Vec<_> = probe.seen.lock().unwrap().iter().map(|s| s.0).collect();
    seen.sort();
    assert_eq!(seen, (1..=5).map(day).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn without_catchup_only_the_latest_interval_runs() {
    let probe = Arc::new(Probe::default());
    let store = Arc::new(InMemoryRunStore::new());
    // Catchup is off by default.
    let dag = ScheduledDag::new(daily_dag(&probe, HOUR))
        .unwrap()
        .start_date(day(1));
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(5) + chrono::Duration::hours(10))
        .dag(dag);
    run_for(scheduler, 30 * HOUR).await;

    let runs: Vec<_> = logical_dates(&*store)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(runs, [day(4), day(5)]);
}

#[tokio::test(start_paused = true)]
async fn max_active_runs_holds_back_catchup_runs_in_order() {
    let probe = Arc::new(Probe::default());
    let store = Arc::new(InMemoryRunStore::new());
    let dag = ScheduledDag::new(daily_dag(&probe, 3 * HOUR))
        .unwrap()
        .start_date(day(1))
        .catchup(true)
        .max_active_runs(2);
    // Jan 7, 01:00: six intervals to catch up, two at a time, three hours each.
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(7) + chrono::Duration::hours(1))
        .dag(dag);
    let mut events = scheduler.subscribe();
    run_for(scheduler, 10 * HOUR).await;

    assert_eq!(probe.most_at_once.load(Ordering::SeqCst), 2);
    let runs = logical_dates(&*store).await;
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r.2 == RunState::Success), "{runs:?}");
    // Started oldest first.
    let mut started = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let SchedulerEvent::RunStarted {
            logical_date,
            data_interval,
            ..
        } = event
        {
            let interval = data_interval.expect("scheduled runs have a data interval");
            assert_eq!(interval.start, logical_date);
            assert_eq!(interval.end, logical_date + chrono::Duration::days(1));
            started.push(logical_date);
        }
    }
    assert_eq!(started, (1..=6).map(day).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn manual_triggers_carry_params_and_respect_max_active_runs() {
    let probe = Arc::new(Probe::default());
    let store = Arc::new(InMemoryRunStore::new());
    let dag = ScheduledDag::new(daily_dag(&probe, 2 * HOUR))
        .unwrap()
        .schedule(None)
        .max_active_runs(1);
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(3))
        .dag(dag);
    let handle = scheduler.handle();
    let stop = CancellationToken::new();
    let service = tokio::spawn(scheduler.run(stop.clone()));

    let first = handle
        .trigger("daily", ManualRun::new().param("region", "eu-west-1"))
        .await
        .unwrap();
    assert_eq!(first, "manual__2025-01-03T00:00:00Z");
    let second = handle
        .trigger(
            "daily",
            ManualRun::new()
                .run_id("backfill_jan1")
                .logical_date(day(1)),
        )
        .await
        .unwrap();
    assert_eq!(second, "backfill_jan1");
    let duplicate = handle
        .trigger("daily", ManualRun::new().run_id("backfill_jan1"))
        .await
        .unwrap_err();
    assert!(
        duplicate.to_string().contains("already has a run"),
        "{duplicate}"
    );
    let unknown = handle
        .trigger("hourly", ManualRun::new())
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("hourly"), "{unknown}");

    tokio::time::sleep(5 * HOUR).await;
    stop.cancel();
    service.await.unwrap().unwrap();
    assert_eq!(probe.most_at_once.load(Ordering::SeqCst), 1);
    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (day(3), serde_json::json!("eu-west-1")),
            (day(1), serde_json::json!("us-west-2")),
        ]
    );
    let stored = store
        .load_run(&bpg_pipeline::RunKey {
            dag_id: "daily".into(),
            run_id: first,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.run.params["region"], "eu-west-1");
    assert_eq!(stored.run.state, RunState::Success);
    // A stopped scheduler refuses triggers.
    assert!(handle.trigger("daily", ManualRun::new()).await.is_err());
}

fn spark_dag(sim: &Arc<SimBackend>) -> (Dag, Backends) {
    let job = SparkJob::new("long", AppType::Python, "3.5", "local:///long.py")
        .with_label("sim/duration", "10h");
    let dag = Dag::builder("spark_daily")
        .schedule("@daily")
        .task(Task::spark("long", "sim", job))
        .build()
        .unwrap();
    let mut connections = Backends::new();
    connections.insert("sim".to_string(), sim.clone());
    (dag, connections)
}

#[tokio::test(start_paused = true)]
async fn shutting_down_cancels_running_spark_jobs_by_default() {
    let sim = Arc::new(SimBackend::new());
    let (dag, connections) = spark_dag(&sim);
    let store = Arc::new(InMemoryRunStore::new());
    let scheduler = DagScheduler::new(connections)
        .store(store.clone())
        .start_time(day(2) + chrono::Duration::hours(1))
        .dag(ScheduledDag::new(dag).unwrap());
    run_for(scheduler, HOUR).await;

    assert_eq!(sim.accepted_count(), 1);
    assert_eq!(sim.cancel_requests().len(), 1);
    assert_eq!(sim.running_count(), 0);
    let runs = store.list_runs("spark_daily").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Failed);
}

#[tokio::test(start_paused = true)]
async fn shutting_down_can_leave_spark_jobs_to_be_reattached() {
    let sim = Arc::new(SimBackend::new());
    let (dag, connections) = spark_dag(&sim);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteRunStore::open(dir.path().join("runs.db"))
            .await
            .unwrap(),
    );
    let scheduler = DagScheduler::new(connections)
        .store(store.clone())
        .on_shutdown(CancelPolicy::LeaveRunning)
        .start_time(day(2) + chrono::Duration::hours(1))
        .dag(ScheduledDag::new(dag).unwrap());
    run_for(scheduler, HOUR).await;

    assert_eq!(sim.accepted_count(), 1);
    assert!(sim.cancel_requests().is_empty());
    assert_eq!(sim.running_count(), 1);
    // The submission is in the store, for a later runner to reattach to.
    let run = store.list_runs("spark_daily").await.unwrap().remove(0);
    let stored = store.load_run(&run.key).await.unwrap().unwrap();
    assert_eq!(stored.tasks["long"].state, TaskState::Running);
    assert_eq!(
        stored.tasks["long"].submissions[0].submission.id,
        sim.submissions()[0].id
    );
    assert_eq!(stored.run.state, RunState::Running, "left for a restart");

    // A scheduler restarted on the store resumes the run: it waits on the same job.
    let (dag, connections) = spark_dag(&sim);
    let scheduler = DagScheduler::new(connections)
        .store(store.clone())
        .start_time(day(2) + chrono::Duration::hours(2))
        .dag(ScheduledDag::new(dag).unwrap());
    run_for(scheduler, 12 * HOUR).await;
    let resumed = store.load_run(&run.key).await.unwrap().unwrap();
    assert_eq!(resumed.run.state, RunState::Success);
    assert_eq!(resumed.tasks["long"].try_number, 1);
    assert_eq!(resumed.tasks["long"].submissions.len(), 1);
    assert_eq!(sim.accepted_count(), 1, "nothing submitted again");
}

#[tokio::test(start_paused = true)]
async fn a_restarted_scheduler_does_not_repeat_scheduled_intervals() {
    let probe = Arc::new(Probe::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let dag = || {
        ScheduledDag::new(daily_dag(&probe, HOUR))
            .unwrap()
            .start_date(day(1))
            .catchup(true)
    };
    let store = Arc::new(SqliteRunStore::open(&path).await.unwrap());
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(3) + chrono::Duration::hours(10))
        .dag(dag());
    run_for(scheduler, 2 * HOUR).await;
    assert_eq!(probe.seen.lock().unwrap().len(), 2);

    // Restarted two days later: only the intervals since the last scheduled run.
    let store = Arc::new(SqliteRunStore::open(&path).await.unwrap());
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(5) + chrono::Duration::hours(10))
        .dag(dag());
    run_for(scheduler, 2 * HOUR).await;
    let runs: Vec<_> = logical_dates(&*store)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(runs, (1..=4).map(day).collect::<Vec<_>>());
    assert_eq!(probe.seen.lock().unwrap().len(), 4);
}

#[test]
fn a_pipeline_folder_loads_every_dag_and_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "a.yaml",
        "dag_id: a\nschedule: \"@hourly\"\ncatchup: true\ntasks:\n  - id: t\n    kind: empty\n",
    );
    write("b.yml", "dag_id: b\ntasks:\n  - id: t\n    kind: empty\n");
    write("notes.txt", "not a pipeline");
    let dags = ScheduledDag::load_dir(dir.path()).unwrap();
    let ids: Vec<_> = dags.iter().map(|d| d.dag().dag_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(dags[0].parsed_schedule().unwrap().to_string(), "@hourly");
    assert!(dags[1].parsed_schedule().is_none());

    write(
        "c.yaml",
        "dag_id: c\nschedule: \"0 25 * * *\"\ntasks:\n  - id: t\n    kind: empty\n",
    );
    write("d.yaml", "dag_id: a\ntasks:\n  - id: t\n    kind: empty\n");
    let problems = ScheduledDag::load_dir(dir.path()).unwrap_err().to_string();
    assert!(problems.contains("c.yaml"), "{problems}");
    assert!(
        problems.contains("invalid schedule \"0 25 * * *\""),
        "{problems}"
    );
    assert!(problems.contains("d.yaml"), "{problems}");
    assert!(problems.contains("already declared in"), "{problems}");

    let missing = ScheduledDag::load_dir(dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
}

#[tokio::test(start_paused = true)]
async fn a_pause_set_through_the_handle_outlives_the_scheduler() {
    let probe = Arc::new(Probe::default());
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn RunStore> = Arc::new(
        SqliteRunStore::open(dir.path().join("runs.db"))
            .await
            .unwrap(),
    );
    let dag = || {
        ScheduledDag::new(daily_dag(&probe, HOUR))
            .unwrap()
            .start_date(day(1))
            .catchup(true)
    };

    // Paused before its first interval ends: no run is made, and the pause is stored.
    let first = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(1))
        .dag(dag());
    let handle = first.handle();
    let stop = CancellationToken::new();
    let service = tokio::spawn(first.run(stop.clone()));
    handle.set_paused("daily", true).await.unwrap();
    assert!(handle.is_paused("daily"));
    let err = handle.set_paused("nightly", true).await.unwrap_err();
    assert!(err.to_string().contains("nightly"), "{err}");
    tokio::time::sleep(30 * HOUR).await;
    stop.cancel();
    service.await.unwrap().unwrap();
    assert!(
        logical_dates(&*store).await.is_empty(),
        "a paused DAG made runs"
    );
    assert_eq!(store.dag_pauses().await.unwrap().get("daily"), Some(&true));
    assert!(!store.dag_pauses().await.unwrap().contains_key("nightly"));

    // A new scheduler on the same store, days later, starts with the DAG paused and runs
    // nothing.
    let again = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(5))
        .dag(dag());
    let handle = again.handle();
    let stop = CancellationToken::new();
    let service = tokio::spawn(again.run(stop.clone()));
    tokio::time::sleep(30 * HOUR).await;
    assert!(handle.is_paused("daily"));
    assert!(
        logical_dates(&*store).await.is_empty(),
        "a paused DAG made runs"
    );

    // Unpaused: the missed intervals run, and the next scheduler starts unpaused, even when
    // its builder says paused (the stored setting wins, as Airflow's is_paused_upon_creation).
    handle.set_paused("daily", false).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    stop.cancel();
    service.await.unwrap().unwrap();
    assert!(!logical_dates(&*store).await.is_empty());
    let third = DagScheduler::new(Backends::new())
        .store(store.clone())
        .dag(dag())
        .paused("daily");
    let handle = third.handle();
    let stop = CancellationToken::new();
    let service = tokio::spawn(third.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!handle.is_paused("daily"));
    stop.cancel();
    service.await.unwrap().unwrap();
}
