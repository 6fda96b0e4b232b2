//! bpg scheduler's API and UI:
//! - the grid's JSON (`GET /ui/api/grid/{dag}`) for a 10,000-task DAG × 25 runs, from SQLite and
//!   from memory (goal: under 200 ms);
//! - the time from an upstream task's success to its downstream's Spark submission, over 200
//!   runs of a two-task chain on the simulated backend with a SQLite store (goal: p99 under 50 ms).
//!
//! The grid's paint in a browser is measured by `bpg-scheduler-web/tests/browser/grid-paint.mjs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bpg_core::{AppType, Backend, SimBackend, SparkJob};
use bpg_pipeline::{
    Dag, DagScheduler, Event, InMemoryRunStore, RunKey, RunRecord, RunState, RunStore, Runner,
    ScheduledDag, SqliteRunStore, Task, TaskState, TaskStateChange,
};
use bpg_scheduler_web::SchedulerWeb;
use chrono::TimeZone;
use criterion::Criterion;
use tower::ServiceExt;

const TASKS: usize = 10_000;
const RUNS: usize = 25;

/// 100 layers of 100 tasks, each task depending on one of the layer before.
fn big_dag() -> Dag {
    let mut b = Dag::builder("big");
    for i in 0..TASKS {
        let mut t = Task::empty(format!("t{i:05}"));
        if i >= 100 {
            t = t.depends_on([format!("t{:05}", i - 100)]);
        }
        b = b.task(t);
    }
    b.build().expect("dag")
}

async fn fill(store: &dyn RunStore, dag: &Dag) {
    for r in 0..RUNS {
        let key = RunKey {
            dag_id: dag.dag_id.clone(),
            run_id: format!("manual__{r:02}"),
        };
        store
            .begin_run(&RunRecord {
                key: key.clone(),
                logical_date: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                    + chrono::Duration::days(r as i64),
                params: Default::default(),
                state: RunState::Running,
            })
            .await
            .expect("begin");
        let changes: Vec<TaskStateChange<'_>> = dag
            .tasks
            .iter()
            .map(|t| TaskStateChange {
                task_id: &t.id,
                state: TaskState::Success,
                try_number: 1,
            })
            .collect();
        store.set_task_states(&key, &changes).await.expect("states");
        store
            .finish_run(&key, RunState::Success)
            .await
            .expect("finish");
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dag = big_dag();
    let dir = tempfile::tempdir().expect("dir");
    let sqlite: Arc<dyn RunStore> = rt.block_on(async {
        Arc::new(
            SqliteRunStore::open(dir.path().join("runs.db"))
                .await
                .expect("sqlite"),
        )
    });
    let memory: Arc<dyn RunStore> = Arc::new(InMemoryRunStore::new());
    rt.block_on(fill(sqlite.as_ref(), &dag));
    rt.block_on(fill(memory.as_ref(), &dag));

    let mut g = c.benchmark_group("scheduler_web");
    g.sample_size(20);
    for (name, store) in [
        ("grid_10k_tasks_25_runs_sqlite", sqlite),
        ("grid_10k_tasks_25_runs_memory", memory),
    ] {
        let scheduled = ScheduledDag::new(dag.clone()).expect("scheduled");
        let scheduler = DagScheduler::new(HashMap::<String, Arc<dyn Backend>>::new())
            .store(store.clone())
            .dag(scheduled.clone());
        let store_for_cold = store.clone();
        let app = SchedulerWeb::new([scheduled], store, scheduler.handle()).router();
        let get = |app: axum::Router| async move {
            let r = app
                .oneshot(
                    Request::get("/ui/api/grid/big?runs=25")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
                .len()
        };
        let bytes = rt.block_on(get(app.clone()));
        let gzipped = rt.block_on(async {
            let r = app
                .clone()
                .oneshot(
                    Request::get("/ui/api/grid/big?runs=25")
                        .header("accept-encoding", "gzip")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
                .len()
        });
        eprintln!("{name}: {bytes} bytes of JSON, {gzipped} gzipped");
        // Cold: a fresh server, every run read from the store.
        g.bench_function(format!("{name}_cold"), |b| {
            b.to_async(&rt).iter_batched(
                || {
                    SchedulerWeb::new(
                        [ScheduledDag::new(dag.clone()).expect("dag")],
                        store_for_cold.clone(),
                        scheduler.handle(),
                    )
                    .router()
                },
                get,
                criterion::BatchSize::PerIteration,
            )
        });
        // Warm: what the UI's polling costs once finished runs' columns are cached.
        g.bench_function(format!("{name}_warm"), |b| {
            b.to_async(&rt).iter(|| get(app.clone()))
        });
        drop(scheduler);
    }
    g.finish();

    // Upstream success → downstream submission.
    let latencies = rt.block_on(async {
        let sim = SimBackend::builder().name("sim").build();
        let store: Arc<dyn RunStore> = Arc::new(
            SqliteRunStore::open(dir.path().join("chain.db"))
                .await
                .expect("sqlite"),
        );
        let job = |id: &str| {
            SparkJob::new(id, AppType::Python, "3.5", "local:///job.py")
                .with_label("sim/duration", "20ms")
        };
        let chain = Arc::new(
            Dag::builder("chain")
                .task(Task::spark("a", "sim", job("a")))
                .task(Task::spark("b", "sim", job("b")).depends_on(["a"]))
                .build()
                .expect("dag"),
        );
        let mut latencies = Vec::new();
        for i in 0..200 {
            let mut backends: HashMap<String, Arc<dyn Backend>> = HashMap::new();
            backends.insert("sim".into(), Arc::new(sim.clone()));
            let runner = Runner::new(chain.clone(), backends)
                .store(store.clone())
                .run_id(format!("manual__{i}"))
                .poll_interval(Duration::from_millis(10));
            let mut events = runner.subscribe();
            let run = tokio::spawn(runner.run());
            let mut a_done = None;
            while let Some(event) = events.recv().await {
                match &event {
                    Event::TaskState {
                        task_id,
                        state: TaskState::Success,
                        ..
                    } if &**task_id == "a" => a_done = Some(Instant::now()),
                    Event::TaskSubmitted { task_id, .. } if &**task_id == "b" => {
                        if let Some(at) = a_done {
                            latencies.push(at.elapsed());
                        }
                    }
                    Event::RunFinished { .. } => break,
                    _ => {}
                }
            }
            run.await.expect("join").expect("run");
        }
        latencies
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    eprintln!(
        "upstream success -> downstream submission over {} runs: p50 {:?}, p99 {:?}, max {:?}",
        sorted.len(),
        pct(0.5),
        pct(0.99),
        sorted.last().copied().unwrap_or_default()
    );
}
