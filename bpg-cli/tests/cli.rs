//! The `bpg` binary end to end: output (snapshots, volatile parts redacted) and exit codes for
//! every command, good input and bad. Runs from the workspace root so paths in output are stable.

mod common;

use std::process::Command;

use common::{Output, bpg_in, workspace_root};

/// Runs `bpg args...` from the workspace root with a clean environment for connections and
/// logging.
fn bpg_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    bpg_in(&workspace_root(), args, env)
}

fn bpg(args: &[&str]) -> Output {
    bpg_with_env(args, &[])
}

/// Timestamps, run ids, durations and submission ids change from run to run.
macro_rules! assert_redacted_snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIME]"),
            (r" +\d+(ms|\.\d+s)\b", " [DURATION]"),
            (r"\b(bpg_connection|sim)-\d{6}\b", "[SUBMISSION]"),
        ]}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[test]
fn validate_accepts_every_example_file() {
    let out = bpg(&[
        "validate",
        "examples/apps/calculate-pi.yaml",
        "examples/apps/word-count.json",
        "examples/apps/statistics-calc.yaml",
        "examples/pipelines/healthtech.yaml",
        "examples/connections/sim.yaml",
        "examples/connections/gateway.yaml",
        "examples/connections/k8s.yaml",
        "examples/connections/routed.yaml",
        "examples/rules/healthtech.yaml",
    ]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("validate_examples", out.transcript());
}

#[test]
fn validate_reports_every_problem_located_and_exits_1() {
    let out = bpg(&[
        "validate",
        "bpg-cli/tests/data/malformed-app.yaml",
        "bpg-cli/tests/data/wrong-types-app.json",
        "bpg-cli/tests/data/cyclic.yaml",
        "bpg-cli/tests/data/bad-connections.yaml",
        "bpg-cli/tests/data/leaky-rules.yaml",
        "bpg-cli/tests/data/failing.yaml",
        "bpg-cli/tests/data/does-not-exist.yaml",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        !out.stdout.contains("hunter2"),
        "a password in a connections file must never be echoed"
    );
    insta::assert_snapshot!("validate_invalid", out.transcript());
}

#[test]
fn validate_without_files_is_a_usage_error() {
    let out = bpg(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(out.stderr.contains("FILES"), "{}", out.stderr);
}

#[test]
fn route_explains_a_phi_job_going_to_the_compliant_cluster() {
    let out = bpg(&[
        "route",
        "--rules",
        "examples/rules/healthtech.yaml",
        "examples/apps/statistics-calc.yaml",
        "--explain",
    ]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("route_explain", out.transcript());
}

#[test]
fn route_json_is_the_decision_with_its_explanation() {
    let out = bpg(&[
        "route",
        "--rules",
        "examples/rules/healthtech.yaml",
        "examples/apps/word-count.json",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    let decision: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(decision["cluster"], "analytics");
    assert_eq!(decision["rule"], "default");
    insta::assert_snapshot!("route_json", out.stdout);
}

#[test]
fn route_denied_job_exits_1_with_the_explanation() {
    let out = bpg(&[
        "route",
        "--rules",
        "bpg-cli/tests/data/deny-rules.yaml",
        "examples/apps/statistics-calc.yaml",
        "--explain",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    insta::assert_snapshot!("route_denied", out.transcript());
}

#[test]
fn route_with_invalid_rules_is_a_configuration_error() {
    let out = bpg(&[
        "route",
        "--rules",
        "bpg-cli/tests/data/leaky-rules.yaml",
        "examples/apps/statistics-calc.yaml",
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    insta::assert_snapshot!("route_invalid_rules", out.transcript());
}

#[test]
fn route_with_a_malformed_application_exits_1() {
    let out = bpg(&[
        "route",
        "--rules",
        "examples/rules/healthtech.yaml",
        "bpg-cli/tests/data/malformed-app.yaml",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    insta::assert_snapshot!("route_malformed_app", out.transcript());
}

#[test]
fn route_without_rules_is_a_usage_error() {
    let out = bpg(&["route", "examples/apps/word-count.json"]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(out.stderr.contains("--rules"), "{}", out.stderr);
}

#[test]
fn submit_wait_follow_logs_on_a_sim_connection() {
    let out = bpg_with_env(
        &[
            "submit",
            "--connection",
            "sim",
            "bpg-cli/tests/data/logging-app.yaml",
            "--wait",
            "--follow-logs",
        ],
        &[("BPG_CONN_SIM", "sim://")],
    );
    assert_eq!(out.code, 0, "{}", out.transcript());
    assert_redacted_snapshot!("submit_wait_logs", out.transcript());
}

#[test]
fn submit_wait_for_a_failing_job_exits_1() {
    let out = bpg(&[
        "submit",
        "--connections",
        "bpg-cli/tests/data/sim.yaml",
        "--connection",
        "sim",
        "bpg-cli/tests/data/failing-app.yaml",
        "--wait",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert_redacted_snapshot!("submit_failing", out.transcript());
}

#[test]
fn submit_to_an_unknown_connection_is_a_configuration_error() {
    let out = bpg(&[
        "submit",
        "--connections",
        "bpg-cli/tests/data/sim.yaml",
        "--connection",
        "nowhere",
        "examples/apps/word-count.json",
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    insta::assert_snapshot!("submit_unknown_connection", out.transcript());
}

#[test]
fn submit_with_a_malformed_application_exits_1_before_connecting() {
    let out = bpg(&[
        "submit",
        "--connection",
        "nowhere",
        "bpg-cli/tests/data/wrong-types-app.json",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    insta::assert_snapshot!("submit_malformed", out.transcript());
}

#[test]
fn submit_with_a_broken_connections_file_is_a_configuration_error() {
    let out = bpg(&[
        "submit",
        "--connections",
        "bpg-cli/tests/data/bad-connections.yaml",
        "--connection",
        "gateway",
        "examples/apps/word-count.json",
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    insta::assert_snapshot!("submit_bad_connections", out.transcript());
}

#[test]
fn status_logs_cancel_of_an_unknown_job_exit_1() {
    // A simulated backend lives in one process, so a fresh one knows no jobs: the not-found path.
    let env = [("BPG_CONN_SIM", "sim://")];
    let status = bpg_with_env(&["status", "--connection", "sim", "sim-999999"], &env);
    let logs = bpg_with_env(&["logs", "--connection", "sim", "sim-999999"], &env);
    let cancel = bpg_with_env(&["cancel", "--connection", "sim", "sim-999999"], &env);
    for out in [&status, &logs, &cancel] {
        assert_eq!(out.code, 1, "{}", out.transcript());
    }
    insta::assert_snapshot!(
        "status_logs_cancel_unknown_job",
        format!(
            "{}\n{}\n{}",
            status.transcript(),
            logs.transcript(),
            cancel.transcript()
        )
    );
}

#[test]
fn status_with_an_unknown_connection_is_a_configuration_error() {
    for command in ["status", "logs", "cancel"] {
        let out = bpg(&[command, "--connection", "nowhere", "some-id"]);
        assert_eq!(out.code, 2, "{command}: {}", out.transcript());
        assert!(
            out.stderr.contains("unknown connection \"nowhere\""),
            "{}",
            out.stderr
        );
    }
}

/// The issue's acceptance check: the example pipeline on the simulated connection succeeds.
#[test]
fn run_healthtech_example_on_sim_succeeds_with_every_task_success() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("r.json");
    let report_arg = report_path.to_str().expect("utf-8 temp path");
    let out = bpg(&[
        "run",
        "examples/pipelines/healthtech.yaml",
        "--connections",
        "examples/connections/sim.yaml",
        "--json",
        report_arg,
    ]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["state"], "success");
    let tasks = report["tasks"].as_object().expect("tasks object");
    assert_eq!(tasks.len(), 5);
    for (id, task) in tasks {
        assert_eq!(task["state"], "success", "task {id}: {task}");
        assert_eq!(task["try_number"], 1, "task {id}: {task}");
    }
    assert_eq!(tasks["statistics_calc"]["backend"], "bpg_connection");
    // Not a terminal: plain timestamped lines, task log lines prefixed by the task id.
    assert!(
        out.stderr
            .lines()
            .any(|l| l.ends_with("Z run healthtech_daily")
                || l.contains(" run healthtech_daily manual__")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(" [calculate_pi] ") && l.as_bytes()[0].is_ascii_digit()),
        "{}",
        out.stderr
    );
    assert_redacted_snapshot!("run_healthtech_summary", out.stdout);
    assert_redacted_snapshot!(
        "run_healthtech_report",
        serde_json::to_string_pretty(&report).expect("json")
    );
}

#[test]
fn run_with_a_run_id_and_quiet_prints_nothing_and_names_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("r.json");
    let out = bpg(&[
        "run",
        "--quiet",
        "examples/pipelines/healthtech.yaml",
        "--connections",
        "examples/connections/sim.yaml",
        "--run-id",
        "backfill__2025-05-01",
        "--json",
        report_path.to_str().expect("utf-8 temp path"),
    ]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["run_id"], "backfill__2025-05-01");
}

#[test]
fn run_with_a_failing_task_exits_1_and_reports_upstream_failed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("r.json");
    let out = bpg(&[
        "run",
        "bpg-cli/tests/data/failing.yaml",
        "--connections",
        "bpg-cli/tests/data/sim.yaml",
        "--json",
        report_path.to_str().expect("utf-8 temp path"),
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        out.stderr
            .contains("extract try 1 failed, retrying in 100ms"),
        "{}",
        out.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_redacted_snapshot!("run_failing_summary", out.stdout);
    assert_redacted_snapshot!(
        "run_failing_report",
        serde_json::to_string_pretty(&report).expect("json")
    );
}

#[test]
fn run_a_cyclic_pipeline_exits_1_naming_the_cycle() {
    let out = bpg(&["run", "bpg-cli/tests/data/cyclic.yaml"]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    insta::assert_snapshot!("run_cyclic", out.transcript());
}

#[test]
fn run_with_an_unknown_connection_is_a_configuration_error() {
    let out = bpg(&[
        "run",
        "bpg-cli/tests/data/unknown-connection.yaml",
        "--connections",
        "bpg-cli/tests/data/sim.yaml",
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    insta::assert_snapshot!("run_unknown_connection", out.transcript());
}

#[test]
fn run_with_a_connection_from_the_environment() {
    let out = bpg_with_env(
        &["run", "--quiet", "examples/pipelines/healthtech.yaml"],
        &[("BPG_CONN_BPG_CONNECTION", "sim://?duration=50ms")],
    );
    assert_eq!(out.code, 0, "{}", out.transcript());
}

#[test]
fn run_with_state_records_the_run_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("runs.db");
    let db_arg = db.to_str().expect("utf-8 temp path");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--quiet",
            "examples/pipelines/healthtech.yaml",
            "--connections",
            "examples/connections/sim.yaml",
            "--state",
            db_arg,
            "--run-id",
            "daily-1",
        ];
        args.extend_from_slice(extra);
        bpg(&args)
    };
    let first = run(&[]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert!(db.exists());

    let again = run(&[]);
    assert_eq!(again.code, 2, "{}", again.transcript());
    assert!(
        again
            .stderr
            .contains("run daily-1 of healthtech_daily is already in")
            && again.stderr.contains("(state success)"),
        "{}",
        again.stderr
    );

    // A finished run has nothing to resume.
    let resume = run(&["--resume"]);
    assert_eq!(resume.code, 2, "{}", resume.transcript());
    assert!(
        resume
            .stderr
            .contains("already finished (success); nothing to resume"),
        "{}",
        resume.stderr
    );
}

#[test]
fn run_resume_of_an_unknown_run_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("runs.db");
    let out = bpg(&[
        "run",
        "examples/pipelines/healthtech.yaml",
        "--connections",
        "examples/connections/sim.yaml",
        "--state",
        db.to_str().expect("utf-8 temp path"),
        "--run-id",
        "never-ran",
        "--resume",
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(
        out.stderr
            .contains("--resume: no run never-ran of healthtech_daily in"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_with_a_state_file_that_is_not_sqlite_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_a_db,
        "these are not the runs you are looking for\n".repeat(100),
    )
    .expect("write temp file");
    let out = bpg(&[
        "run",
        "examples/pipelines/healthtech.yaml",
        "--connections",
        "examples/connections/sim.yaml",
        "--state",
        not_a_db.to_str().expect("utf-8 temp path"),
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(out.stderr.contains("notes.txt"), "{}", out.stderr);
}

#[test]
fn run_resume_without_state_is_a_usage_error() {
    let out = bpg(&["run", "examples/pipelines/healthtech.yaml", "--resume"]);
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(out.stderr.contains("--state"), "{}", out.stderr);
}

#[test]
fn graph_mermaid_and_dot() {
    let mermaid = bpg(&["graph", "examples/pipelines/healthtech.yaml"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.transcript());
    insta::assert_snapshot!("graph_mermaid", mermaid.stdout);
    let dot = bpg(&[
        "graph",
        "--format",
        "dot",
        "examples/pipelines/healthtech.yaml",
    ]);
    assert_eq!(dot.code, 0, "{}", dot.transcript());
    insta::assert_snapshot!("graph_dot", dot.stdout);
}

#[test]
fn graph_of_a_cyclic_pipeline_exits_1() {
    let out = bpg(&["graph", "bpg-cli/tests/data/cyclic.yaml"]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        out.stderr.contains("dependency cycle: a -> b -> c -> a"),
        "{}",
        out.stderr
    );
}

#[test]
fn graph_with_an_unknown_format_is_a_usage_error() {
    let out = bpg(&[
        "graph",
        "--format",
        "png",
        "examples/pipelines/healthtech.yaml",
    ]);
    assert_eq!(out.code, 2, "{}", out.transcript());
}

#[test]
fn validate_checks_pipeline_connections_against_the_connections_files_given() {
    let ok = bpg(&[
        "validate",
        "examples/pipelines/healthtech.yaml",
        "examples/connections/sim.yaml",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    let out = bpg(&[
        "validate",
        "bpg-cli/tests/data/unknown-connection.yaml",
        "bpg-cli/tests/data/sim.yaml",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    insta::assert_snapshot!("validate_unknown_connection", out.transcript());
    let from_env = bpg_with_env(
        &[
            "validate",
            "bpg-cli/tests/data/unknown-connection.yaml",
            "bpg-cli/tests/data/sim.yaml",
        ],
        &[("BPG_CONN_NOWHERE", "sim://")],
    );
    assert_eq!(from_env.code, 0, "{}", from_env.transcript());
}

#[test]
fn rust_log_turns_on_tracing_and_a_bad_filter_is_reported() {
    let args = [
        "run",
        "--quiet",
        "examples/pipelines/healthtech.yaml",
        "--connections",
        "examples/connections/sim.yaml",
    ];
    let quiet = bpg(&args);
    assert_eq!(quiet.code, 0, "{}", quiet.transcript());
    assert_eq!(quiet.stderr, "");
    let traced = bpg_with_env(&args, &[("RUST_LOG", "bpg=debug")]);
    assert_eq!(traced.code, 0, "{}", traced.transcript());
    assert!(
        traced.stderr.contains("connections loaded"),
        "{}",
        traced.stderr
    );
    assert!(traced.stderr.contains("run finished"), "{}", traced.stderr);
    let bad = bpg_with_env(&args, &[("RUST_LOG", "bpg=[")]);
    assert_eq!(bad.code, 0, "{}", bad.transcript());
    assert!(
        bad.stderr.contains("RUST_LOG is not a valid filter"),
        "{}",
        bad.stderr
    );
}

#[test]
fn scheduler_runs_due_pipelines_and_stops_cleanly_on_sigint() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let mut command = Command::new(env!("CARGO_BIN_EXE_bpg"));
    command
        .args([
            "scheduler",
            "bpg-cli/tests/data/scheduled",
            "--connections",
            "bpg-cli/tests/data/sim.yaml",
        ])
        .current_dir(workspace_root())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("bpg scheduler starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let finished = loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done =
                    line.contains("run every_minute scheduled__") && line.ends_with(" success");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let status = child.wait().expect("bpg scheduler exits");
    seen.extend(lines.iter());
    let _ = reader.join();
    let transcript = seen.join("\n");
    assert!(finished, "no finished run in:\n{transcript}");
    assert_eq!(status.code(), Some(0), "{transcript}");
    assert!(
        transcript.contains("scheduling every_minute (* * * * *)"),
        "{transcript}"
    );
    assert!(
        transcript.contains("scheduling manual_only (manual triggers only)"),
        "{transcript}"
    );
    assert!(transcript.contains("scheduler stopped"), "{transcript}");
}

#[test]
fn scheduler_with_an_invalid_pipeline_folder_exits_1() {
    let out = bpg(&["scheduler", "bpg-cli/tests/data/does-not-exist"]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        out.stderr.contains("cannot read the pipeline folder"),
        "{}",
        out.stderr
    );
    let unknown = bpg(&["scheduler", "bpg-cli/tests/data/scheduled"]);
    assert_eq!(unknown.code, 2, "{}", unknown.transcript());
    assert!(
        unknown.stderr.contains("unknown connection \"sim\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn ctrl_c_cancels_the_running_jobs_and_reports_the_interrupted_run() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpg"))
        .args([
            "run",
            "bpg-cli/tests/data/slow.yaml",
            "--connections",
            "bpg-cli/tests/data/sim.yaml",
            "--json",
            report_path.to_str().expect("utf-8 temp path"),
        ])
        .current_dir(workspace_root())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bpg run starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        let submitted = line.contains("crunch submitted");
        seen.push(line);
        if submitted {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("bpg run exits");
    seen.extend(lines.iter());
    let _ = reader.join();
    let transcript = seen.join("\n");
    assert_eq!(out.status.code(), Some(1), "{transcript}");
    assert!(
        transcript.contains("interrupted, cancelling running tasks"),
        "{transcript}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["state"], "failed", "{report}");
    assert_ne!(report["tasks"]["crunch"]["state"], "success", "{report}");
    assert_eq!(report["tasks"]["publish"]["try_number"], 0, "{report}");
}

/// On a terminal the per-task display (indicatif) is used. `script` (util-linux) gives the run a
/// pseudo-terminal.
#[test]
fn run_on_a_terminal_shows_a_live_line_per_task() {
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        assert!(
            std::env::var_os("CI").is_none(),
            "`script` (util-linux) is needed on CI for the terminal test"
        );
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let line = format!(
        "'{}' run examples/pipelines/healthtech.yaml --connections examples/connections/sim.yaml",
        env!("CARGO_BIN_EXE_bpg")
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(workspace_root())
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    // Finished tasks keep their line with state and duration; log lines carry the task id.
    assert!(screen.contains("statistics_calc success in "), "{screen}");
    assert!(
        screen.contains("[calculate_pi] INFO SparkContext"),
        "{screen}"
    );
    assert!(screen.contains("run healthtech_daily manual__"), "{screen}");
}

#[test]
fn scheduler_refuses_to_serve_off_loopback_without_users_or_tls() {
    let open = bpg(&[
        "scheduler",
        "examples/pipelines",
        "--connections",
        "examples/connections/sim.yaml",
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(open.code, 2, "{}", open.transcript());
    assert!(
        open.stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{}",
        open.stderr
    );
    assert!(open.stderr.contains("--access"), "{}", open.stderr);

    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.yaml");
    let hash = bpg_gateway_hash("pw");
    std::fs::write(
        &access,
        format!("users:\n  ops: {{password: \"{hash}\"}}\n"),
    )
    .unwrap();
    let plain = bpg(&[
        "scheduler",
        "examples/pipelines",
        "--connections",
        "examples/connections/sim.yaml",
        "--listen",
        "0.0.0.0:0",
        "--access",
        access.to_str().unwrap(),
    ]);
    assert_eq!(plain.code, 2, "{}", plain.transcript());
    assert!(
        plain.stderr.contains("refusing to serve plain HTTP"),
        "{}",
        plain.stderr
    );
}

/// An argon2id hash, as `bpg gateway hash-password` prints it.
fn bpg_gateway_hash(password: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bpg"))
        .args(["gateway", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(password.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
