//! The `bpg` binary against a Batch Processing Gateway: `MockGateway` in this process, the CLI in
//! another, connected by a `bpg+http://` connection URL. Covers the job lifecycle across
//! processes (submit, status, logs, cancel) and an unreachable gateway.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bpg_client::mock::{Fault, MockCluster, MockGateway, Route};

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bpg-cli lives in the workspace")
        .to_path_buf()
}

/// Runs `bpg args...` with connection `gw` at `url`, off the async runtime (the mock keeps serving).
async fn bpg(url: &str, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bpg"));
        command.args(&args).current_dir(workspace_root());
        for (key, _) in std::env::vars() {
            if key.starts_with("BPG_CONN") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .env("BPG_CONN_GW", &url)
            .env("BPG_CONN_GATEWAY", &url);
        let out = command.output().expect("the bpg binary runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("the bpg process was waited for")
}

async fn gateway() -> (MockGateway, String) {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("analytics"))
        .start()
        .await;
    let url = gateway.uri().replace("http://", "bpg+http://alice@");
    (gateway, url)
}

/// Gateway submission ids (`<cluster>-<32 hex>[-suffix]`) change from run to run.
macro_rules! assert_redacted_snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![
            (r"\banalytics-[0-9a-f]{32}(-[0-9a-f]+)?\b", "[SUBMISSION]"),
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        ]}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_status_logs_across_processes() {
    let (gateway, url) = gateway().await;
    let submitted = bpg(
        &url,
        &[
            "submit",
            "--connection",
            "gw",
            "bpg-cli/tests/data/logging-app.yaml",
            "--wait",
            "--follow-logs",
        ],
    )
    .await;
    assert_eq!(submitted.code, 0, "{}", submitted.transcript());
    let id = submitted
        .stdout
        .lines()
        .next()
        .expect("the id first")
        .to_owned();
    assert_eq!(
        gateway.submission(&id).map(|s| s.user),
        Some("alice".to_owned())
    );

    let status = bpg(&url, &["status", "--connection", "gw", &id]).await;
    assert_eq!(status.code, 0, "{}", status.transcript());
    let logs = bpg(&url, &["logs", "--connection", "gw", &id]).await;
    assert_eq!(logs.code, 0, "{}", logs.transcript());
    assert_eq!(logs.stdout.lines().count(), 3, "{}", logs.transcript());
    assert_redacted_snapshot!(
        "gateway_submit_status_logs",
        format!(
            "{}\n{}\n{}",
            submitted.transcript(),
            status.transcript(),
            logs.transcript()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_a_running_application() {
    let (gateway, url) = gateway().await;
    let submitted = bpg(
        &url,
        &[
            "submit",
            "--connection",
            "gw",
            "bpg-cli/tests/data/long-app.yaml",
        ],
    )
    .await;
    assert_eq!(submitted.code, 0, "{}", submitted.transcript());
    let id = submitted.stdout.trim().to_owned();
    let cancel = bpg(&url, &["cancel", "--connection", "gw", &id]).await;
    assert_eq!(cancel.code, 0, "{}", cancel.transcript());
    assert_eq!(gateway.submission(&id).map(|s| s.deleted), Some(true));
    // BPG forgets a deleted application: another process finds nothing.
    let status = bpg(&url, &["status", "--connection", "gw", &id]).await;
    assert_eq!(status.code, 1, "{}", status.transcript());
    assert_redacted_snapshot!(
        "gateway_cancel",
        format!("{}\n{}", cancel.transcript(), status.transcript())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_pipeline_through_the_gateway() {
    let (gateway, url) = gateway().await;
    let out = bpg(
        &url,
        &["run", "--quiet", "bpg-cli/tests/data/unreachable.yaml"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.transcript());
    assert_eq!(gateway.submissions().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_fails_the_job_not_the_configuration() {
    // Port 1 on localhost: nothing listens, the connection is refused. Without retries (by
    // default a connection retries for about a minute first).
    let url = "bpg+http://alice@127.0.0.1:1/skatev2?retries=0";
    let submit = bpg(
        url,
        &[
            "submit",
            "--connection",
            "gw",
            "bpg-cli/tests/data/logging-app.yaml",
        ],
    )
    .await;
    assert_eq!(submit.code, 1, "{}", submit.transcript());
    assert!(submit.stderr.contains("127.0.0.1:1"), "{}", submit.stderr);

    let status = bpg(
        url,
        &[
            "status",
            "--connection",
            "gw",
            "analytics-0123456789abcdef0123456789abcdef",
        ],
    )
    .await;
    assert_eq!(status.code, 1, "{}", status.transcript());

    let run = bpg(url, &["run", "bpg-cli/tests/data/unreachable.yaml"]).await;
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stdout.contains("pi      failed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("report  upstream_failed"),
        "{}",
        run.stdout
    );
    // A password in a connection variable's URL is a secret: never echoed.
    let secret_url = "bpg+http://alice:hunter2@127.0.0.1:1/skatev2?retries=0";
    let with_secret = bpg(
        secret_url,
        &[
            "submit",
            "--connection",
            "gw",
            "bpg-cli/tests/data/logging-app.yaml",
        ],
    )
    .await;
    assert_eq!(with_secret.code, 1, "{}", with_secret.transcript());
    assert!(
        !with_secret.transcript().contains("hunter2"),
        "{}",
        with_secret.transcript()
    );

    assert_redacted_snapshot!(
        "gateway_unreachable",
        format!("{}\n{}", submit.transcript(), status.transcript())
    );
}

/// When [`run_and_kill`] kills the runner.
#[derive(Clone, Copy, Debug)]
enum KillWhen {
    /// It printed a stderr line containing this.
    Line(&'static str),
    /// This long after it printed `run ... started`.
    AfterStart(Duration),
    /// The gateway holds more than this many applications (a submit was accepted; with a delayed
    /// answer, the runner has not heard of it yet).
    Accepted(usize),
}

/// How a runner process ended.
struct Ended {
    /// Killed by [`run_and_kill`] (false: it exited by itself first).
    killed: bool,
    code: i32,
    stderr: String,
}

/// Starts `bpg args...` with connection `gateway` at `url`, and kills it with SIGKILL (a crash:
/// no clean-up runs) when `when` says, unless it exits first.
async fn run_and_kill(
    gateway: &Arc<MockGateway>,
    url: &str,
    args: &[&str],
    when: KillWhen,
) -> Ended {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;

    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (url, gateway) = (url.to_owned(), gateway.clone());
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bpg"))
            .args(&args)
            .current_dir(workspace_root())
            .env_remove("RUST_LOG")
            .env("BPG_CONN_GATEWAY", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bpg starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let mut started: Option<std::time::Instant> = None;
        let killed = loop {
            match lines.recv_timeout(Duration::from_millis(2)) {
                Ok(line) => {
                    if started.is_none() && line.contains(" run ") && line.ends_with(" started") {
                        started = Some(std::time::Instant::now());
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Its stderr closed: it is exiting by itself.
                Err(mpsc::RecvTimeoutError::Disconnected) => break false,
            }
            let now = match when {
                KillWhen::Line(marker) => seen.last().is_some_and(|l| l.contains(marker)),
                KillWhen::AfterStart(after) => started.is_some_and(|t| t.elapsed() >= after),
                KillWhen::Accepted(n) => gateway.submissions().len() > n,
            };
            if now {
                child.kill().expect("SIGKILL the runner");
                break true;
            }
        };
        let status = child.wait().expect("the runner is waited for");
        let _ = reader.join();
        seen.extend(lines.try_iter());
        Ended {
            killed,
            code: status.code().unwrap_or(-1),
            stderr: seen.join("\n"),
        }
    })
    .await
    .expect("the bpg process was waited for")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_crash_reattaches_instead_of_resubmitting() {
    let (gateway, url) = gateway().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("runs.db");
    let db = db.to_str().expect("utf-8 temp path");
    let report_path = dir.path().join("r.json");
    let gateway = Arc::new(gateway);
    let submitted = run_and_kill(
        &gateway,
        &url,
        &[
            "run",
            "bpg-cli/tests/data/resumable.yaml",
            "--state",
            db,
            "--run-id",
            "r1",
        ],
        KillWhen::Line("crunch submitted"),
    )
    .await;
    assert!(submitted.killed, "{}", submitted.stderr);
    let submitted = submitted.stderr;
    assert_eq!(gateway.submissions().len(), 1, "{submitted}");
    let first_id = gateway.submissions()[0].id.clone();
    assert!(submitted.contains(&first_id), "{submitted}");

    let resumed = bpg(
        &url,
        &[
            "run",
            "bpg-cli/tests/data/resumable.yaml",
            "--state",
            db,
            "--run-id",
            "r1",
            "--resume",
            "--json",
            report_path.to_str().expect("utf-8 temp path"),
        ],
    )
    .await;
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    assert_eq!(
        gateway.submissions().len(),
        1,
        "the resumed run found the job instead of submitting it again"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["run_id"], "r1");
    assert_eq!(report["state"], "success", "{report}");
    assert_eq!(
        report["tasks"]["crunch"]["submission_id"],
        first_id.as_str()
    );
}

/// The crash test: a runner is SIGKILLed at 20 points of a five-Spark-task run (after a
/// submission was recorded, between a submit the gateway accepted and its answer, and at times
/// spread over the run), restarted with `--resume` each time until the run finishes, while the
/// gateway fails a tenth of all calls (503s, lost answers, delays). Every task succeeds and the
/// gateway holds exactly one application per Spark task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_then_resume_finishes_without_duplicate_submissions() {
    const SPARK_TASKS: usize = 5;
    let (gateway, url) = gateway().await;
    gateway.inject(Fault::status(503).fraction(0.035));
    gateway.inject(Fault::drop_connection().fraction(0.035));
    gateway.inject(Fault::delay(Duration::from_millis(300)).fraction(0.03));
    let gateway = Arc::new(gateway);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("runs.db");
    let report_path = dir.path().join("report.json");
    let (db, report_arg) = (
        db.to_str().expect("utf-8 temp path"),
        report_path.to_str().expect("utf-8 temp path"),
    );
    // Two kills at fixed points of the run, the rest at times spread over what remains of it.
    let timed = [
        0, 10, 30, 50, 20, 70, 40, 90, 15, 60, 110, 25, 80, 130, 45, 100, 35, 150,
    ];
    let kills: Vec<KillWhen> = [
        KillWhen::Line("extract_a submitted"),
        // With the next submit's answer held back, killed once the gateway has accepted it.
        KillWhen::Accepted(usize::MAX),
    ]
    .into_iter()
    .chain(
        timed
            .into_iter()
            .map(|ms| KillWhen::AfterStart(Duration::from_millis(ms))),
    )
    .collect();
    assert_eq!(kills.len(), 20);
    let mut transcript = String::new();
    let mut finished = None;
    for (round, when) in kills.into_iter().map(Some).chain([None]).enumerate() {
        let mut args = vec![
            "run",
            "bpg-cli/tests/data/crash.yaml",
            "--state",
            db,
            "--run-id",
            "r1",
            "--poll-interval",
            "50ms",
            "--json",
            report_arg,
        ];
        if round > 0 {
            args.push("--resume");
        }
        let when = match when {
            Some(KillWhen::Accepted(_)) => {
                gateway.inject(
                    Fault::delay(Duration::from_secs(2))
                        .on(Route::Submit)
                        .times(1),
                );
                KillWhen::Accepted(gateway.submissions().len())
            }
            Some(when) => when,
            // The last round runs to the end.
            None => KillWhen::Line("\u{0}never printed"),
        };
        let ended = run_and_kill(&gateway, &url, &args, when).await;
        transcript.push_str(&format!(
            "--- round {round} ({when:?}): killed {}, exit {}\n{}\n",
            ended.killed, ended.code, ended.stderr
        ));
        assert!(
            gateway.submissions().len() <= SPARK_TASKS,
            "a duplicate submission after round {round}\n{transcript}"
        );
        if !ended.killed {
            assert_eq!(ended.code, 0, "{transcript}");
            finished = Some(round);
            break;
        }
    }
    let finished = finished.unwrap_or_else(|| panic!("the run never finished\n{transcript}"));
    // The first two kills are at fixed points; on a loaded machine the run may outpace a few of
    // the timed ones, but never most of them.
    assert!(finished >= 12, "killed only {finished} times\n{transcript}");
    eprintln!("the run finished after {finished} kills");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["state"], "success", "{report}\n{transcript}");
    let tasks = report["tasks"].as_object().expect("tasks in the report");
    assert_eq!(tasks.len(), SPARK_TASKS + 1);
    for (id, task) in tasks {
        assert_eq!(task["state"], "success", "{id}: {task}\n{transcript}");
    }
    let submissions = gateway.submissions();
    assert_eq!(
        submissions.len(),
        SPARK_TASKS,
        "one application per Spark task\n{transcript}"
    );
    // And each task's reported submission is its one application.
    let mut reported: Vec<&str> = tasks
        .values()
        .filter_map(|t| t["submission_id"].as_str())
        .collect();
    let mut accepted: Vec<&str> = submissions.iter().map(|s| s.id.as_str()).collect();
    reported.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(reported, accepted, "{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_submit_wait_cancels_the_job_instead_of_orphaning_it() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let (gateway, url) = gateway().await;
    let (code, id, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bpg"))
            .args([
                "submit",
                "--connection",
                "gw",
                "bpg-cli/tests/data/long-app.yaml",
                "--wait",
            ])
            .current_dir(workspace_root())
            .env_remove("RUST_LOG")
            .env("BPG_CONN_GW", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bpg starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut id = String::new();
        stdout.read_line(&mut id).expect("the id first");
        // Ctrl-C, as a terminal sends it.
        let interrupted = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(interrupted.success());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr)
            .expect("stderr is read");
        let status = child.wait().expect("bpg is waited for");
        (status.code(), id.trim().to_owned(), stderr)
    })
    .await
    .expect("the bpg process was waited for");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cancelled Spark job {id}")),
        "{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    let submission = gateway.submission(&id).expect("the job was submitted");
    assert!(submission.deleted, "the job was cancelled at the gateway");
}
