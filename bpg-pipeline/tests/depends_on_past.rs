//! `depends_on_past` across runs of one DAG, and the DAG-level scheduling fields (`start_date`,
//! `end_date`, `catchup`, `max_active_runs`) read from YAML and the builder, on tokio's paused
//! clock.

/// The connections of these tests: backends built in the test, by name.
type Backends = std::collections::HashMap<String, std::sync::Arc<dyn bpg_core::Backend>>;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bpg_core::{AppType, SimBackend, SparkJob};
use bpg_pipeline::{
    Dag, DagScheduler, DefaultArgs, InMemoryRunStore, RunReport, RunState, RunStore, Runner,
    ScheduledDag, Task, TaskError, TaskState, parse_dag,
};
use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).unwrap()
}

/// `load` (depends_on_past) fails on the logical dates in `fail_on`, then `publish` runs after it;
/// `audit` has no past dependency. `calls` counts `load`'s attempts.
fn dag(calls: &Arc<AtomicU32>, fail_on: &'static [u32]) -> Dag {
    let calls = calls.clone();
    Dag::builder("daily")
        .schedule("@daily")
        .start_date(day(1))
        .catchup(true)
        .max_active_runs(1)
        .default_args(DefaultArgs::new().depends_on_past(true))
        .task(Task::function("load", move |ctx| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let date = ctx.logical_date();
                if fail_on.iter().any(|&d| day(d) == date) {
                    Err(TaskError::failed("bad input"))
                } else {
                    Ok(None)
                }
            }
        }))
        .task(Task::empty("publish").depends_on(["load"]))
        .task(Task::empty("audit").depends_on_past(false))
        .build()
        .unwrap()
}

async fn run(dag: &Arc<Dag>, store: &Arc<InMemoryRunStore>, d: u32) -> RunReport {
    Runner::new(dag.clone(), Backends::new())
        .run_id(format!("scheduled__{d}"))
        .logical_date(day(d))
        .store(store.clone())
        .run()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_previous_instance_failed_does_not_run() {
    let calls = Arc::new(AtomicU32::new(0));
    let dag = Arc::new(dag(&calls, &[1]));
    let store = Arc::new(InMemoryRunStore::new());

    let first = run(&dag, &store, 1).await;
    assert_eq!(first.tasks["load"].state, TaskState::Failed);
    assert_eq!(first.state, RunState::Failed);

    let second = run(&dag, &store, 2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "load did not run on day 2");
    assert_eq!(second.tasks["load"].state, TaskState::None);
    assert_eq!(second.tasks["load"].try_number, 0);
    assert_eq!(second.tasks["publish"].state, TaskState::None);
    assert_eq!(second.tasks["audit"].state, TaskState::Success);
    assert_eq!(
        second.state,
        RunState::Failed,
        "a blocked run is not successful"
    );
    let stored = store
        .load_run(&bpg_pipeline::RunKey {
            dag_id: "daily".into(),
            run_id: "scheduled__2".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tasks["load"].state, TaskState::None);

    // Day 3's previous instance is day 2's, which never ran: still blocked.
    let third = run(&dag, &store, 3).await;
    assert_eq!(third.tasks["load"].state, TaskState::None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_previous_instance_succeeded_runs_and_the_first_run_always_does() {
    let calls = Arc::new(AtomicU32::new(0));
    let dag = Arc::new(dag(&calls, &[]));
    let store = Arc::new(InMemoryRunStore::new());
    for d in 1..=3 {
        let report = run(&dag, &store, d).await;
        assert_eq!(report.state, RunState::Success, "day {d}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_task_waits_while_its_previous_instance_is_still_running() {
    let sim = SimBackend::new();
    let mut connections = Backends::new();
    connections.insert("sim".to_string(), Arc::new(sim.clone()));
    let connections = Arc::new(connections);
    let job = SparkJob::new("long", AppType::Python, "3.5", "local:///long.py")
        .with_label("sim/duration", "30m");
    let dag = Arc::new(
        Dag::builder("daily")
            .task(Task::spark("long", "sim", job).depends_on_past(true))
            .build()
            .unwrap(),
    );
    let store = Arc::new(InMemoryRunStore::new());
    let start = |d: u32| {
        Runner::new(dag.clone(), connections.clone())
            .run_id(format!("scheduled__{d}"))
            .logical_date(day(d))
            .store(store.clone())
            .run()
    };
    let started = tokio::time::Instant::now();
    let first = tokio::spawn(start(1));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let second = start(2).await.unwrap();
    assert_eq!(second.state, RunState::Success);
    assert!(
        started.elapsed() >= Duration::from_secs(2 * 30 * 60),
        "day 2 waited for day 1's job, then ran its own: {:?}",
        started.elapsed()
    );
    assert_eq!(first.await.unwrap().unwrap().state, RunState::Success);
    assert_eq!(sim.accepted_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_takes_catchup_start_date_and_max_active_runs_from_the_dag() {
    let calls = Arc::new(AtomicU32::new(0));
    let store = Arc::new(InMemoryRunStore::new());
    // Jan 4, 06:00: three intervals to catch up, one at a time; day 2's load fails, so day 3's
    // is blocked by depends_on_past.
    let scheduler = DagScheduler::new(Backends::new())
        .store(store.clone())
        .start_time(day(4) + chrono::Duration::hours(6))
        .dag(ScheduledDag::new(dag(&calls, &[2])).unwrap());
    let stop = CancellationToken::new();
    let service = tokio::spawn(scheduler.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    stop.cancel();
    service.await.unwrap().unwrap();

    let runs = store.list_runs("daily").await.unwrap();
    let summary: Vec<_> = runs.iter().map(|r| (r.logical_date, r.state)).collect();
    assert_eq!(
        summary,
        [
            (day(1), RunState::Success),
            (day(2), RunState::Failed),
            (day(3), RunState::Failed),
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "day 3's load never ran");
    let third = store.load_run(&runs[2].key).await.unwrap().unwrap();
    assert_eq!(third.tasks["load"].state, TaskState::None);
    assert_eq!(third.tasks["audit"].state, TaskState::Success);
}

#[test]
fn yaml_carries_the_scheduling_fields_and_depends_on_past() {
    let dag = parse_dag(
        r#"
dag_id: daily
schedule: "0 2 * * *"
start_date: 2025-01-01
end_date: "2025-06-30T00:00:00Z"
catchup: true
max_active_runs: 3
default_args: { depends_on_past: true }
tasks:
  - { id: a, kind: empty }
  - { id: b, kind: empty, depends_on: [a], depends_on_past: false }
"#,
        None,
    )
    .unwrap();
    assert_eq!(dag.start_date, Some(day(1)));
    assert_eq!(
        dag.end_date,
        Some(Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap())
    );
    assert!(dag.catchup);
    assert_eq!(dag.max_active_runs, 3);
    assert!(dag.tasks[0].depends_on_past_with(&dag.default_args));
    assert!(!dag.tasks[1].depends_on_past_with(&dag.default_args));
    let again = parse_dag(&bpg_pipeline::dag_to_yaml(&dag).unwrap(), None).unwrap();
    assert_eq!(again.start_date, dag.start_date);
    assert_eq!(again.end_date, dag.end_date);
    assert_eq!(again.max_active_runs, 3);
    assert_eq!(again.default_args.depends_on_past, Some(true));
    assert_eq!(again.tasks[1].depends_on_past, Some(false));
}

#[test]
fn bad_schedules_and_dates_are_located_errors() {
    let path = std::path::Path::new("pipelines/daily.yaml");
    let errors = parse_dag(
        "dag_id: daily\nschedule: \"61 * * * *\"\nstart_date: yesterday\nmax_active_runs: 0\ntasks:\n  - { id: a, kind: empty }\n",
        Some(path),
    )
    .unwrap_err()
    .to_string();
    assert!(errors.contains("pipelines/daily.yaml:2"), "{errors}");
    assert!(errors.contains("schedule"), "{errors}");
    assert!(errors.contains("pipelines/daily.yaml:3"), "{errors}");
    assert!(errors.contains("\"yesterday\" is not a date"), "{errors}");
    assert!(errors.contains("max_active_runs"), "{errors}");

    let built = Dag::builder("d")
        .schedule("not a cron")
        .task(Task::empty("a"))
        .build()
        .unwrap_err()
        .to_string();
    assert!(built.contains("schedule"), "{built}");
}
