//! The run-store test suite (feature `testkit`): what every [`RunStore`] must do, as one async
//! function a store's own tests call ([`run_store_suite`]), plus the record builders it uses.
//! In memory, SQLite and PostgreSQL stores all pass it.

use std::sync::Arc;

use bpg_core::{Error, Submission};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::{PastDecision, RunKey, RunRecord, RunStore, SubmissionRecord, TaskStateChange};
use crate::events::{RunState, TaskState};

/// The key of run `run_id` of `dag_id`.
pub fn key(dag_id: &str, run_id: &str) -> RunKey {
    RunKey {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
    }
}

/// Midnight UTC of January `d`, 2025.
pub fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).unwrap()
}

/// A running run of `key` at `logical_date`, with two params.
pub fn run(key: &RunKey, logical_date: DateTime<Utc>) -> RunRecord {
    let mut params = serde_json::Map::new();
    params.insert("region".into(), json!("us-west-2"));
    params.insert("n".into(), json!(3));
    RunRecord {
        key: key.clone(),
        logical_date,
        params,
        state: RunState::Running,
    }
}

/// A state change of `task_id`.
pub fn change(task_id: &str, state: TaskState, try_number: u32) -> TaskStateChange<'_> {
    TaskStateChange {
        task_id,
        state,
        try_number,
    }
}

/// Try `try_number` of `task`'s submission to a simulated cluster.
pub fn submission(task: &str, try_number: u32) -> SubmissionRecord {
    let mut submission = Submission::new(format!("sim-{task}-{try_number}"), "sim");
    submission.cluster = Some("analytics".into());
    submission.submitted_at = day(1) + chrono::Duration::milliseconds(i64::from(try_number) * 1500);
    submission.idempotency_key = Some(bpg_core::IdempotencyKey::for_task(
        "d", "r", task, try_number,
    ));
    SubmissionRecord {
        connection: "sim_conn".into(),
        try_number,
        submission,
    }
}

/// Runs every check of the suite against `store`. `dag` prefixes the DAG ids it writes, so a store
/// shared between runs of the suite (a database) never sees another run's rows. Panics, naming
/// the check, on the first store behaviour that breaks the [`RunStore`] contract.
///
/// ```
/// use std::sync::Arc;
/// use bpg_pipeline::InMemoryRunStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// bpg_pipeline::store::testkit::run_store_suite(Arc::new(InMemoryRunStore::new()), "doc").await;
/// # }
/// ```
pub async fn run_store_suite(store: Arc<dyn RunStore>, dag: &str) {
    records_a_run_and_reads_it_back(&*store, &format!("{dag}_roundtrip")).await;
    unknown_runs_are_not_found(&*store, &format!("{dag}_unknown")).await;
    restarting_a_run_keeps_its_progress(&*store, &format!("{dag}_restart")).await;
    retries_move_the_timestamps_and_keep_every_submission(&*store, &format!("{dag}_retry")).await;
    runs_are_listed_by_logical_date(&*store, &format!("{dag}_list")).await;
    previous_task_instance_follows_logical_dates(&*store, &format!("{dag}_past")).await;
    pauses_are_kept_per_dag(&*store, &format!("{dag}_pause")).await;
}

async fn pauses_are_kept_per_dag(store: &dyn RunStore, dag: &str) {
    let (paused, unpaused, never) = (format!("{dag}_a"), format!("{dag}_b"), format!("{dag}_c"));
    store.set_dag_paused(&paused, true).await.unwrap();
    store.set_dag_paused(&unpaused, true).await.unwrap();
    store.set_dag_paused(&unpaused, false).await.unwrap();
    store.set_dag_paused(&paused, true).await.unwrap();
    let pauses = store.dag_pauses().await.unwrap();
    assert_eq!(pauses.get(&paused), Some(&true));
    assert_eq!(pauses.get(&unpaused), Some(&false), "the last setting wins");
    assert_eq!(pauses.get(&never), None, "a DAG never set has no entry");
}

async fn records_a_run_and_reads_it_back(store: &dyn RunStore, dag: &str) {
    let k = key(dag, "manual__1");
    let before = Utc::now();
    store.begin_run(&run(&k, day(1))).await.unwrap();
    store
        .set_task_states(
            &k,
            &[
                change("start", TaskState::Success, 0),
                change("spark", TaskState::Queued, 1),
                change("spark", TaskState::Running, 1),
                change("never", TaskState::UpstreamFailed, 0),
            ],
        )
        .await
        .unwrap();
    store
        .record_submission(&k, "spark", &submission("spark", 1))
        .await
        .unwrap();
    store
        .put_xcom(&k, "spark", "submission_id", &json!("sim-spark-1"))
        .await
        .unwrap();
    store
        .put_xcom(&k, "spark", "state", &json!("RUNNING"))
        .await
        .unwrap();
    store
        .put_xcom(
            &k,
            "spark",
            "state",
            &json!({"final": "COMPLETED", "n": [1, 2]}),
        )
        .await
        .unwrap();

    let stored = store.load_run(&k).await.unwrap().expect("the run");
    assert_eq!(stored.run, run(&k, day(1)));
    let spark = &stored.tasks["spark"];
    assert_eq!((spark.state, spark.try_number), (TaskState::Running, 1));
    assert_eq!(spark.submissions, vec![submission("spark", 1)]);
    let started = spark.start_date.expect("a running task has a start date");
    assert!(started >= before - chrono::Duration::seconds(1));
    assert_eq!(spark.end_date, None);
    assert_eq!(stored.tasks["never"].state, TaskState::UpstreamFailed);
    assert!(stored.tasks["never"].end_date.is_some());
    assert_eq!(stored.xcom["spark"]["submission_id"], json!("sim-spark-1"));
    assert_eq!(
        stored.xcom["spark"]["state"],
        json!({"final": "COMPLETED", "n": [1, 2]})
    );

    store
        .set_task_state(&k, "spark", TaskState::Success, 1)
        .await
        .unwrap();
    store.finish_run(&k, RunState::Success).await.unwrap();
    let stored = store.load_run(&k).await.unwrap().unwrap();
    assert_eq!(stored.run.state, RunState::Success);
    let spark = &stored.tasks["spark"];
    assert_eq!(spark.state, TaskState::Success);
    assert_eq!(spark.start_date, Some(started), "finishing keeps the start");
    assert!(spark.end_date.unwrap() >= started);
    task_states_agree_with_the_run(store, &k).await;
}

/// [`RunStore::load_task_states`] says what [`RunStore::load_run`] says, in task id order.
async fn task_states_agree_with_the_run(store: &dyn RunStore, k: &RunKey) {
    let stored = store.load_run(k).await.unwrap().expect("the run");
    let states = store.load_task_states(k).await.unwrap().expect("the run");
    let ids: Vec<&str> = states.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(
        ids,
        stored.tasks.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for t in &states.tasks {
        let record = &stored.tasks[&t.task_id];
        assert_eq!(
            (t.state, t.try_number),
            (record.state, record.try_number),
            "{}",
            t.task_id
        );
    }
    let starts = stored.tasks.values().filter_map(|t| t.start_date);
    assert_eq!(states.first_start, starts.min());
    let ends = stored.tasks.values().filter_map(|t| t.end_date);
    assert_eq!(states.last_end, ends.max());
}

async fn unknown_runs_are_not_found(store: &dyn RunStore, dag: &str) {
    let k = key(dag, "nope");
    assert!(store.load_run(&k).await.unwrap().is_none());
    assert!(store.load_task_states(&k).await.unwrap().is_none());
    let not_found = |r: bpg_core::Result<()>| matches!(r, Err(Error::NotFound { .. }));
    assert!(not_found(
        store.set_task_state(&k, "a", TaskState::Running, 1).await
    ));
    assert!(not_found(
        store
            .set_task_states(&k, &[change("a", TaskState::Running, 1)])
            .await
    ));
    assert!(not_found(
        store.record_submission(&k, "a", &submission("a", 1)).await
    ));
    assert!(not_found(store.put_xcom(&k, "a", "k", &json!(1)).await));
    assert!(not_found(store.finish_run(&k, RunState::Failed).await));
    assert!(matches!(
        store.previous_task_instance(&k, "a").await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.list_runs(dag).await.unwrap().is_empty());
}

async fn restarting_a_run_keeps_its_progress(store: &dyn RunStore, dag: &str) {
    let k = key(dag, "scheduled__2025-01-01T00:00:00Z");
    store.begin_run(&run(&k, day(1))).await.unwrap();
    store
        .set_task_state(&k, "spark", TaskState::Running, 1)
        .await
        .unwrap();
    store
        .record_submission(&k, "spark", &submission("spark", 1))
        .await
        .unwrap();
    store.put_xcom(&k, "spark", "k", &json!(1)).await.unwrap();
    store.finish_run(&k, RunState::Failed).await.unwrap();

    // A runner resuming the run begins it again: the run is running, the progress is kept.
    store.begin_run(&run(&k, day(1))).await.unwrap();
    let stored = store.load_run(&k).await.unwrap().unwrap();
    assert_eq!(stored.run.state, RunState::Running);
    assert_eq!(stored.tasks["spark"].state, TaskState::Running);
    assert_eq!(stored.tasks["spark"].submissions.len(), 1);
    assert_eq!(stored.xcom["spark"]["k"], json!(1));

    // Recording the same try's submission again (a reattach) replaces it, never duplicates it.
    let mut again = submission("spark", 1);
    again.submission.namespace = Some("spark-jobs".into());
    store.record_submission(&k, "spark", &again).await.unwrap();
    let stored = store.load_run(&k).await.unwrap().unwrap();
    assert_eq!(stored.tasks["spark"].submissions, vec![again]);
}

async fn retries_move_the_timestamps_and_keep_every_submission(store: &dyn RunStore, dag: &str) {
    let k = key(dag, "manual__retry");
    store.begin_run(&run(&k, day(1))).await.unwrap();
    store
        .set_task_state(&k, "spark", TaskState::Running, 1)
        .await
        .unwrap();
    store
        .record_submission(&k, "spark", &submission("spark", 1))
        .await
        .unwrap();
    let first = store.load_run(&k).await.unwrap().unwrap().tasks["spark"].clone();
    store
        .set_task_state(&k, "spark", TaskState::UpForRetry, 1)
        .await
        .unwrap();
    let waiting = store.load_run(&k).await.unwrap().unwrap().tasks["spark"].clone();
    assert_eq!(waiting.state, TaskState::UpForRetry);
    assert_eq!(waiting.start_date, first.start_date);
    let failed_at = waiting.end_date.expect("up_for_retry ends the try");

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .set_task_states(
            &k,
            &[
                change("spark", TaskState::Queued, 2),
                change("spark", TaskState::Running, 2),
            ],
        )
        .await
        .unwrap();
    store
        .record_submission(&k, "spark", &submission("spark", 2))
        .await
        .unwrap();
    let second = store.load_run(&k).await.unwrap().unwrap().tasks["spark"].clone();
    assert_eq!((second.state, second.try_number), (TaskState::Running, 2));
    assert!(second.start_date.unwrap() >= failed_at);
    assert_eq!(second.end_date, None, "a new try is not finished");
    assert_eq!(
        second.submissions,
        vec![submission("spark", 1), submission("spark", 2)]
    );
    // Running again in the same try keeps its start.
    store
        .set_task_state(&k, "spark", TaskState::Running, 2)
        .await
        .unwrap();
    let same = store.load_run(&k).await.unwrap().unwrap().tasks["spark"].clone();
    assert_eq!(same.start_date, second.start_date);
    task_states_agree_with_the_run(store, &k).await;
}

async fn runs_are_listed_by_logical_date(store: &dyn RunStore, dag: &str) {
    // Inserted out of order, as a backfill or a manual trigger would.
    for (run_id, d) in [
        ("scheduled__3", 3),
        ("scheduled__1", 1),
        ("manual__b", 2),
        ("manual__a", 2),
    ] {
        store
            .begin_run(&run(&key(dag, run_id), day(d)))
            .await
            .unwrap();
    }
    store
        .begin_run(&run(&key(&format!("{dag}_other"), "x"), day(2)))
        .await
        .unwrap();
    store
        .finish_run(&key(dag, "scheduled__1"), RunState::Success)
        .await
        .unwrap();
    let runs = store.list_runs(dag).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.key.run_id.as_str()).collect();
    assert_eq!(
        ids,
        ["scheduled__1", "manual__a", "manual__b", "scheduled__3"]
    );
    assert_eq!(runs[0].state, RunState::Success);
    assert_eq!(runs[3].state, RunState::Running);
    assert_eq!(runs[3].logical_date, day(3));
    assert_eq!(runs[3].params["region"], json!("us-west-2"));
}

async fn previous_task_instance_follows_logical_dates(store: &dyn RunStore, dag: &str) {
    let first = key(dag, "scheduled__1");
    let second = key(dag, "scheduled__2");
    let third = key(dag, "scheduled__3");
    // The third run is created before the second (a backfill of day 2 after day 3 ran).
    store.begin_run(&run(&first, day(1))).await.unwrap();
    store.begin_run(&run(&third, day(3))).await.unwrap();
    assert_eq!(
        store.previous_task_instance(&first, "t").await.unwrap(),
        None
    );
    store
        .set_task_states(
            &first,
            &[
                change("t", TaskState::Running, 1),
                change("t", TaskState::Failed, 1),
            ],
        )
        .await
        .unwrap();
    let previous = store
        .previous_task_instance(&third, "t")
        .await
        .unwrap()
        .expect("day 1 is before day 3");
    assert_eq!(
        (previous.state, previous.try_number),
        (TaskState::Failed, 1)
    );

    store.begin_run(&run(&second, day(2))).await.unwrap();
    store
        .set_task_state(&second, "t", TaskState::Success, 1)
        .await
        .unwrap();
    let previous = store.previous_task_instance(&third, "t").await.unwrap();
    assert_eq!(previous.map(|t| t.state), Some(TaskState::Success));
    let previous = store.previous_task_instance(&second, "t").await.unwrap();
    assert_eq!(previous.map(|t| t.state), Some(TaskState::Failed));
    // The previous run has no instance of a task added since: the dependency passes.
    assert_eq!(
        store.previous_task_instance(&third, "new").await.unwrap(),
        None
    );
    // depends_on_past: day 2 waits on day 1's failure, day 3 follows day 2's success; the first
    // run and a new task have nothing to wait for.
    let met = |d: PastDecision| d == PastDecision::Met;
    assert_eq!(
        store.depends_on_past(&second, "t").await.unwrap(),
        PastDecision::Blocked("its instance in the previous run ended failed".into())
    );
    assert!(met(store.depends_on_past(&third, "t").await.unwrap()));
    assert!(met(store.depends_on_past(&first, "t").await.unwrap()));
    assert!(met(store.depends_on_past(&third, "new").await.unwrap()));
    store
        .set_task_state(&second, "t", TaskState::Skipped, 0)
        .await
        .unwrap();
    assert!(met(store.depends_on_past(&third, "t").await.unwrap()));
    store
        .set_task_state(&second, "t", TaskState::UpstreamFailed, 0)
        .await
        .unwrap();
    assert!(!met(store.depends_on_past(&third, "t").await.unwrap()));
    // Unfinished in a run still going: wait; in a run that ended: blocked.
    store
        .set_task_state(&second, "t", TaskState::Running, 1)
        .await
        .unwrap();
    assert_eq!(
        store.depends_on_past(&third, "t").await.unwrap(),
        PastDecision::Wait
    );
    store.finish_run(&second, RunState::Failed).await.unwrap();
    assert_eq!(
        store.depends_on_past(&third, "t").await.unwrap(),
        PastDecision::Blocked("the previous run ended with this task running".into())
    );
    // Other DAGs' runs never count.
    let other = key(&format!("{dag}_other"), "scheduled__9");
    store.begin_run(&run(&other, day(9))).await.unwrap();
    assert_eq!(
        store.previous_task_instance(&other, "t").await.unwrap(),
        None
    );
}
