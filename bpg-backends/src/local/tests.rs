//! Process management against a stand-in `spark-submit` (a shell script), so these run in
//! milliseconds; `tests/local_spark.rs` runs the real one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{AppType, BackendExt, JobState, WaitOptions};
use futures::StreamExt;

use super::*;

/// A spark-submit that logs its arguments to stderr, skips the `--flag value` pairs and runs the
/// application file as a shell script.
const FAKE_SPARK_SUBMIT: &str = r#"#!/bin/sh
echo "spark-submit $*" >&2
while [ $# -gt 0 ]; do case "$1" in --*) shift 2;; *) break;; esac; done
app="$1"; shift
exec sh "$app" "$@"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    backend: LocalSparkBackend,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let submit = write(dir.path(), "spark-submit", FAKE_SPARK_SUBMIT);
        std::fs::set_permissions(&submit, std::fs::Permissions::from_mode(0o755)).unwrap();
        write(
            dir.path(),
            "ok.sh",
            "echo \"Pi is roughly 3.14 ($*)\"\necho 'INFO SparkContext: stopped' >&2\n",
        );
        write(
            dir.path(),
            "fail.sh",
            "echo 'Traceback (most recent call last):' >&2\necho 'ValueError: no rows in input' >&2\necho 'INFO ShutdownHookManager: bye' >&2\nexit 1\n",
        );
        // A driver with a child of its own, both in the run's process group.
        write(
            dir.path(),
            "long.sh",
            "echo started\nsleep 300 &\nsleep 300\n",
        );
        let backend = LocalSparkBackend::builder()
            .spark_submit(submit)
            .master("local[2]")
            .kill_grace(Duration::from_secs(2))
            .build()
            .unwrap();
        Fixture { dir, backend }
    }

    fn job(&self, script: &str) -> SparkJob {
        let path = self.dir.path().join(script);
        SparkJob::new(script, AppType::Python, "4.0", path.to_string_lossy())
    }

    fn jobs(&self) -> ConformanceJobs {
        ConformanceJobs {
            succeeds: self.job("ok.sh"),
            fails: self.job("fail.sh"),
            long_running: self.job("long.sh"),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn wait() -> WaitOptions {
    WaitOptions::default()
        .poll_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(30))
}

/// Processes whose process group is `pgid` (from /proc).
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the parenthesised command name: state, ppid, pgrp.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}

async fn lines(backend: &LocalSparkBackend, id: &JobId, options: LogOptions) -> Vec<String> {
    backend
        .logs(id, &options)
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await
}

#[tokio::test]
async fn passes_the_conformance_kit_with_a_stand_in_spark_submit() {
    let f = Fixture::new();
    let options = ConformanceOptions {
        wait: wait(),
        ..ConformanceOptions::default()
    };
    testkit::run_all(Arc::new(f.backend.clone()), &f.jobs(), &options).await;
}

#[tokio::test]
async fn runs_spark_submit_with_the_master_and_collects_stdout_and_stderr() {
    let f = Fixture::new();
    let job = f
        .job("ok.sh")
        .with_arguments(["10"])
        .with_spark_conf("spark.ui.enabled", "false");
    let (submission, status) = f
        .backend
        .submit_and_wait(&job, &SubmitOptions::new(), &wait())
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.native_state, "exit 0");
    assert_eq!(submission.cluster.as_deref(), Some("local[2]"));
    let log = lines(&f.backend, &submission.id, LogOptions::snapshot()).await;
    let invocation = log.iter().find(|l| l.starts_with("spark-submit")).unwrap();
    assert!(
        invocation.starts_with(
            "spark-submit --master local[2] --name ok.sh --conf spark.ui.enabled=false"
        ),
        "{invocation}"
    );
    assert!(
        log.contains(&"Pi is roughly 3.14 (10)".to_owned()),
        "{log:?}"
    );
    assert!(
        log.contains(&"INFO SparkContext: stopped".to_owned()),
        "{log:?}"
    );
    let tail = lines(&f.backend, &submission.id, LogOptions::snapshot().tail(1)).await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0], *log.last().unwrap());
}

#[tokio::test]
async fn output_that_is_not_utf8_is_read_to_the_end() {
    let f = Fixture::new();
    write(
        f.dir.path(),
        "latin1.sh",
        "echo before\nprintf 'caf\\351\\n'\nprintf 'err \\377\\n' >&2\necho after\n",
    );
    let (submission, status) = f
        .backend
        .submit_and_wait(&f.job("latin1.sh"), &SubmitOptions::new(), &wait())
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    let log = lines(&f.backend, &submission.id, LogOptions::snapshot()).await;
    for line in ["before", "caf\u{FFFD}", "err \u{FFFD}", "after"] {
        assert!(log.contains(&line.to_owned()), "{line:?} in {log:?}");
    }
}

#[tokio::test]
async fn a_failed_run_reports_its_exit_code_and_the_error_line() {
    let f = Fixture::new();
    let (submission, status) = f
        .backend
        .submit_and_wait(&f.job("fail.sh"), &SubmitOptions::new(), &wait())
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.native_state, "exit 1");
    assert_eq!(
        status.message.as_deref(),
        Some("spark-submit exited with code 1: ValueError: no rows in input")
    );
    let log = lines(&f.backend, &submission.id, LogOptions::snapshot()).await;
    assert!(log.contains(&"ValueError: no rows in input".to_owned()));
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let f = Fixture::new();
    let submission = f
        .backend
        .submit(&f.job("long.sh"), &SubmitOptions::new())
        .await
        .unwrap();
    let pgid = f.backend.process_id(&submission.id).unwrap();
    // Wait for the driver to have started its child.
    let mut follow = f
        .backend
        .logs(&submission.id, &LogOptions::follow())
        .await
        .unwrap();
    while let Some(line) = follow.next().await {
        if line.unwrap().text == "started" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(group_members(pgid).len() >= 2, "driver and its child run");

    f.backend.cancel(&submission.id).await.unwrap();
    let status = f
        .backend
        .wait_for_terminal(&submission.id, &wait())
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    assert_eq!(
        group_members(pgid),
        Vec::<u32>::new(),
        "no process left behind"
    );
    // The follow stream ends with the run.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), follow.count())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn dropping_the_backend_kills_its_runs() {
    let f = Fixture::new();
    let submission = f
        .backend
        .submit(&f.job("long.sh"), &SubmitOptions::new())
        .await
        .unwrap();
    let pgid = f.backend.process_id(&submission.id).unwrap();
    drop(f.backend);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !group_members(pgid).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes survived the backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_key_one_run_for_the_backends_lifetime() {
    let f = Fixture::new();
    let key = IdempotencyKey::for_task("dag", "run", "ok", 1);
    let opts = SubmitOptions::new().with_idempotency_key(key.clone());
    let first = f.backend.submit(&f.job("ok.sh"), &opts).await.unwrap();
    let second = f.backend.submit(&f.job("ok.sh"), &opts).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(f.backend.submissions().len(), 1);
    assert_eq!(f.backend.find(&key).await.unwrap(), Some(first));
    assert!(
        !f.backend.capabilities().idempotent_submit,
        "not across processes"
    );
}

#[tokio::test]
async fn a_job_without_an_application_file_is_rejected_naming_the_field() {
    let f = Fixture::new();
    let mut job = f.job("ok.sh");
    job.main_application_file = None;
    let err = f
        .backend
        .submit(&job, &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("mainApplicationFile"), "{err}");
    assert!(f.backend.submissions().is_empty());
}

#[tokio::test]
async fn a_missing_spark_submit_is_an_error_not_a_panic() {
    let backend = LocalSparkBackend::builder()
        .spark_submit("/nonexistent/bin/spark-submit")
        .build()
        .unwrap();
    let job = SparkJob::new("x", AppType::Python, "4.0", "/tmp/x.py");
    let err = backend
        .submit(&job, &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot start spark-submit"),
        "{err}"
    );
    assert!(!err.is_temporary());
}
