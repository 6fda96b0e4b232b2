//! The SQLite run store survives SIGKILL at any point: a child process (this test binary, re-run)
//! writes runs, states, submissions and XCom as fast as it can and acknowledges each step; the
//! parent kills it at varying points, reopens the file and checks that every acknowledged write is
//! there and that no batch was half-applied.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use bpg_core::Submission;
use bpg_pipeline::{
    RunKey, RunRecord, RunState, RunStore, SqliteRunStore, SubmissionRecord, TaskState,
    TaskStateChange,
};
use chrono::{TimeZone, Utc};

const CHILD_ENV: &str = "BPG_STORE_CRASH_CHILD";

fn key() -> RunKey {
    RunKey {
        dag_id: "crash".into(),
        run_id: "manual__1".into(),
    }
}

/// The writer: step `i` records one batch of two task states, the submission of try `i` and XCom
/// `n = i`, then prints `ack i`.
async fn write_until_killed(path: &Path) {
    let store = SqliteRunStore::open(path).await.unwrap();
    let k = key();
    store
        .begin_run(&RunRecord {
            key: k.clone(),
            logical_date: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            params: serde_json::Map::new(),
            state: RunState::Running,
        })
        .await
        .unwrap();
    println!("ack 0");
    for i in 1u32.. {
        let a = format!("a{i}");
        let b = format!("b{i}");
        store
            .set_task_states(
                &k,
                &[
                    TaskStateChange {
                        task_id: &a,
                        state: TaskState::Running,
                        try_number: i,
                    },
                    TaskStateChange {
                        task_id: &b,
                        state: TaskState::Success,
                        try_number: i,
                    },
                ],
            )
            .await
            .unwrap();
        store
            .record_submission(
                &k,
                "spark",
                &SubmissionRecord {
                    connection: "sim".into(),
                    try_number: i,
                    submission: Submission::new(format!("sim-{i}"), "sim"),
                },
            )
            .await
            .unwrap();
        store
            .put_xcom(&k, "spark", "n", &serde_json::json!(i))
            .await
            .unwrap();
        println!("ack {i}");
    }
}

/// One binary, two roles (`harness = false`): the writer when [`CHILD_ENV`] names a file, else the
/// test that runs and kills writers.
fn main() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(write_until_killed(Path::new(&path)));
        return;
    }
    sqlite_store_survives_sigkill_at_any_point();
    println!("test sqlite_store_survives_sigkill_at_any_point ... ok");
    println!("1 passed, 0 failed");
}

fn sqlite_store_survives_sigkill_at_any_point() {
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Kill points in acknowledged steps; -1: as soon as the process started (mid-open or
    // mid-migration, before any acknowledgement).
    for (round, kill_after) in [-1i64, 0, 1, 2, 3, 5, 8, 13, 21, 34]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("runs-{round}.db"));
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked: i64 = -1;
        if kill_after >= 0 {
            let stdout = child.stdout.take().unwrap();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if let Some(n) = line.strip_prefix("ack ") {
                    acked = n.parse().unwrap();
                    if acked >= kill_after {
                        break;
                    }
                }
            }
        }
        // Child::kill is SIGKILL on Unix: no destructor, no flush, no rollback runs.
        child.kill().unwrap();
        child.wait().unwrap();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(check_after_crash(&path, acked));
    }
}

async fn check_after_crash(path: &Path, acked: i64) {
    let store = SqliteRunStore::open(path)
        .await
        .unwrap_or_else(|e| panic!("reopening after SIGKILL (acked {acked}): {e}"));
    let Some(stored) = store.load_run(&key()).await.unwrap() else {
        assert!(acked < 0, "the acknowledged run is missing");
        return;
    };
    // Batches are all or nothing: a{i} and b{i} come together.
    let steps = stored.tasks.keys().filter(|t| t.starts_with('a')).count() as i64;
    for i in 1..=steps {
        assert_eq!(stored.tasks[&format!("a{i}")].state, TaskState::Running);
        assert_eq!(stored.tasks[&format!("b{i}")].state, TaskState::Success);
        assert_eq!(stored.tasks[&format!("b{i}")].try_number, i as u32);
    }
    assert_eq!(
        stored.tasks.keys().filter(|t| t.starts_with('b')).count() as i64,
        steps
    );
    // Everything acknowledged is there, in order; at most the step in flight is partly there.
    assert!(steps >= acked, "steps {steps} < acknowledged {acked}");
    assert!(
        steps <= acked.max(0) + 1,
        "steps {steps} > acknowledged {acked} + 1"
    );
    let submissions = &stored
        .tasks
        .get("spark")
        .map(|t| t.submissions.clone())
        .unwrap_or_default();
    let tries: Vec<u32> = submissions.iter().map(|s| s.try_number).collect();
    assert_eq!(tries, (1..=tries.len() as u32).collect::<Vec<_>>());
    assert!(tries.len() as i64 >= acked && tries.len() as i64 <= steps);
    let n = stored
        .xcom
        .get("spark")
        .map(|x| x["n"].as_i64().unwrap())
        .unwrap_or(0);
    assert!(
        n >= acked && n <= tries.len() as i64,
        "xcom {n}, acked {acked}"
    );
}
