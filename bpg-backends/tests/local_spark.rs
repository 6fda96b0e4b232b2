//! `LocalSparkBackend` against the real `spark-submit` (PySpark, installed by `.ci/run`).
//!
//! Each run starts a JVM (7-15 s), so one test shares its runs between the conformance kit and our
//! own assertions. Without `spark-submit` the test is skipped with a message, unless `CI` is set.
#![cfg(feature = "local")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bpg_backends::local::LocalSparkBackend;
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, BackendExt, JobState, LogOptions, SparkJob, SubmitOptions, WaitOptions,
};
use futures::StreamExt;

fn app(name: &str) -> SparkJob {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/spark_apps")
        .join(name);
    SparkJob::new(name, AppType::Python, "4.0", path.to_string_lossy())
}

fn backend() -> Option<LocalSparkBackend> {
    let built = LocalSparkBackend::builder()
        .master("local[2]")
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .kill_grace(Duration::from_secs(5))
        .build();
    match built {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the real spark-submit test (CI is unset): {e}");
            None
        }
        Err(e) => panic!("CI is set but spark-submit is missing: {e}"),
    }
}

/// Live (non-zombie) processes in process group `pgid`, from /proc.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}

async fn log_text(backend: &LocalSparkBackend, id: &bpg_core::JobId) -> Vec<String> {
    let stream = backend.logs(id, &LogOptions::snapshot()).await.unwrap();
    stream.map(|l| l.unwrap().text).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_spark_submit_succeeds_fails_and_cancels() {
    let Some(local) = backend() else { return };
    let shared: Arc<dyn Backend> = Arc::new(local.clone());
    let b = shared.as_ref();
    let jobs = ConformanceJobs {
        succeeds: app("ok.py"),
        fails: app("fail.py"),
        long_running: app("long.py"),
    };
    let options = ConformanceOptions {
        wait: WaitOptions::default()
            .poll_interval(Duration::from_millis(200))
            .timeout(Duration::from_secs(240)),
        ..ConformanceOptions::default()
    };

    // Run 1: success; its log carries the app's stdout and Spark's stderr, positions resumable.
    let finished = testkit::submit_runs_to_success(b, &jobs, &options).await;
    testkit::logs_are_readable(b, &finished).await;
    let log = log_text(&local, &finished).await;
    assert!(
        log.iter().any(|l| l == "bpg-ok sum=499500"),
        "app output in the log: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("SparkContext")),
        "driver logging in the log"
    );

    // Runs 2 and 3 side by side: a failure, and a keyed success submitted twice.
    tokio::join!(
        testkit::failure_is_reported(b, &jobs, &options),
        testkit::idempotent_submit(b, &jobs, &options),
    );
    let mut failed = None;
    for s in local.submissions() {
        if local.status(&s.id).await.unwrap().state == JobState::Failed {
            failed = Some(s);
        }
    }
    let failed = failed.expect("the failed run");
    let status = local.status(&failed.id).await.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("RuntimeError: bpg-fail: the input table is empty"),
        "{message}"
    );
    let log = log_text(&local, &failed.id).await;
    assert!(
        log.iter()
            .any(|l| l.contains("bpg-fail: the input table is empty")),
        "error in the log"
    );

    // Run 4: the kit's cancel; then ours, once the driver is really running Python code.
    testkit::cancel_stops_a_running_job(b, &jobs, &options).await;
    let long = local
        .submit(&jobs.long_running, &SubmitOptions::new())
        .await
        .unwrap();
    let pgid = local.process_id(&long.id).unwrap();
    let mut follow = local.logs(&long.id, &LogOptions::follow()).await.unwrap();
    let started = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = follow.next().await {
            if line.unwrap().text == "bpg-long started" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "the long app started");
    assert!(
        group_members(pgid).len() >= 2,
        "spark-submit's JVM and the Python driver run"
    );
    local.cancel(&long.id).await.unwrap();
    let done = local
        .wait_for_terminal(&long.id, &options.wait)
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(
        group_members(pgid),
        Vec::<u32>::new(),
        "no process left behind"
    );
    for s in local.submissions() {
        let pid = local.process_id(&s.id).unwrap();
        assert_eq!(
            group_members(pid),
            Vec::<u32>::new(),
            "{} left processes",
            s.id
        );
    }
    testkit::unknown_job_is_not_found(b, &options).await;
}
