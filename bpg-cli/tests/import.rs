//! `bpg import` end to end on DAG files written for these tests (`tests/data/import/`): each
//! converted pipeline is snapshotted, validates, and runs on simulated connections to the task
//! states Airflow gives the same DAG. Malformed input gets located errors and exit 1.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Output, bpg_in, workspace_root};

/// A temp folder holding a copy of `tests/data/import`, where `bpg import` runs.
struct Workspace {
    dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder created");
    for entry in std::fs::read_dir(from).expect("test data reads") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("file copied");
        }
    }
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(
            &workspace_root().join("bpg-cli/tests/data/import"),
            dir.path(),
        );
        Workspace { dir }
    }

    fn bpg(&self, args: &[&str]) -> Output {
        bpg_in(self.dir.path(), args, &[])
    }

    fn import(&self, files: &[&str]) -> Output {
        let mut args = vec!["import", "--out", "out"];
        args.extend_from_slice(files);
        self.bpg(&args)
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(relative))
            .unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    fn written(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.dir.path().join("out")) {
            Ok(entries) => entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Validates and runs `out/<pipeline>` on the simulated connections; the task states.
    fn run(&self, pipeline: &str) -> (String, BTreeMap<String, (String, u64)>) {
        let path = format!("out/{pipeline}");
        let check = self.bpg(&["validate", &path, "sim-connections.yaml"]);
        assert_eq!(check.code, 0, "{}", check.transcript());
        let run = self.bpg(&[
            "run",
            &path,
            "--connections",
            "sim-connections.yaml",
            "--json",
            "report.json",
        ]);
        let report: serde_json::Value = serde_json::from_str(&self.read("report.json"))
            .unwrap_or_else(|e| {
                panic!("{e}: {}", run.transcript());
            });
        let states = report["tasks"]
            .as_object()
            .expect("tasks")
            .iter()
            .map(|(id, t)| {
                let state = t["state"].as_str().unwrap_or_default().to_owned();
                (id.clone(), (state, t["try_number"].as_u64().unwrap_or(0)))
            })
            .collect();
        (
            report["state"].as_str().unwrap_or_default().to_owned(),
            states,
        )
    }
}

fn states(pairs: &[(&str, &str, u64)]) -> BTreeMap<String, (String, u64)> {
    pairs
        .iter()
        .map(|(id, state, tries)| ((*id).to_owned(), ((*state).to_owned(), *tries)))
        .collect()
}

fn all_success(ids: &[&str]) -> BTreeMap<String, (String, u64)> {
    ids.iter()
        .map(|id| ((*id).to_owned(), ("success".to_owned(), 1)))
        .collect()
}

#[test]
fn the_seed_diamond_of_bpg_operators_converts_and_runs() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/seed_diamond.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("import_seed_diamond_output", out.stdout);
    insta::assert_snapshot!("import_seed_diamond", ws.read("out/seed_diamond.yaml"));
    insta::assert_snapshot!(
        "import_seed_diamond_connections",
        ws.read("out/connections.yaml")
    );
    let (run, tasks) = ws.run("seed_diamond.yaml");
    assert_eq!(run, "success");
    assert_eq!(
        tasks,
        all_success(&[
            "start",
            "calculate_pi",
            "word_count",
            "statistics_calc",
            "end"
        ])
    );
}

#[test]
fn spark_kubernetes_operators_with_their_sensors_fold_into_spark_tasks() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/spark_on_k8s.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("import_spark_on_k8s_output", out.stdout);
    insta::assert_snapshot!("import_spark_on_k8s", ws.read("out/spark_on_k8s.yaml"));
    let (run, tasks) = ws.run("spark_on_k8s.yaml");
    assert_eq!(run, "success");
    // The sensors are the Spark tasks' own waiting: no task of theirs remains.
    assert_eq!(
        tasks,
        all_success(&["begin", "submit_pi", "nightly_etl", "done"])
    );
}

#[test]
fn an_emr_container_operator_becomes_a_request_on_an_emr_connection() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/emr_on_eks.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("import_emr_output", out.stdout);
    insta::assert_snapshot!("import_emr", ws.read("out/emr_sessions.yaml"));
    insta::assert_snapshot!("import_emr_connections", ws.read("out/connections.yaml"));
    let (run, tasks) = ws.run("emr_sessions.yaml");
    assert_eq!(run, "success");
    assert_eq!(tasks, all_success(&["sessions", "publish"]));
}

#[test]
fn retries_trigger_rules_chain_and_lists_give_airflows_task_states() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/retries_and_rules.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("import_retries_and_rules_output", out.stdout);
    insta::assert_snapshot!(
        "import_retries_and_rules",
        ws.read("out/retries_and_rules.yaml")
    );
    let (run, tasks) = ws.run("retries_and_rules.yaml");
    // What Airflow gives this DAG: extract fails both tries, what needs it is upstream_failed,
    // cleanup (all_done) and alert (one_failed) run; the leaves all succeed, so the run does.
    assert_eq!(
        tasks,
        states(&[
            ("start", "success", 1),
            ("extract", "failed", 2),
            ("transform", "upstream_failed", 0),
            ("load", "upstream_failed", 0),
            ("cleanup", "success", 1),
            ("alert", "success", 1),
            ("audit_a", "success", 1),
            ("audit_b", "success", 1),
            ("report_a", "success", 1),
            ("report_b", "success", 1),
            ("archive_x", "success", 1),
            ("archive_y", "success", 1),
            ("finish", "success", 1),
        ])
    );
    assert_eq!(run, "success");
}

#[test]
fn unsupported_parts_are_reported_with_their_lines_and_the_rest_converts() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/partly_supported.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("import_partly_supported_output", out.stdout);
    insta::assert_snapshot!(
        "import_partly_supported",
        ws.read("out/partly_supported.yaml")
    );
    let (run, tasks) = ws.run("partly_supported.yaml");
    assert_eq!(run, "success");
    assert_eq!(
        tasks,
        all_success(&[
            "start",
            "notify",
            "pod",
            "configured",
            "summarize",
            "report"
        ])
    );
}

#[test]
fn strict_makes_anything_unconverted_an_error_and_writes_nothing() {
    let ws = Workspace::new();
    let out = ws.bpg(&[
        "import",
        "--strict",
        "--out",
        "out",
        "dags/partly_supported.py",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        out.stdout
            .contains("dags/partly_supported.py:33:5: error: a `for` loop")
    );
    assert!(
        out.stdout
            .ends_with("dags/partly_supported.py: nothing written (--strict and 7 problem(s))\n"),
        "{}",
        out.stdout
    );
    assert!(ws.written().is_empty(), "{:?}", ws.written());
    // A fully supported file is written under --strict too.
    let out = ws.bpg(&["import", "--strict", "--out", "out", "dags/seed_diamond.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
}

#[test]
fn a_scheduled_spark_application_becomes_a_scheduled_pipeline() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/nightly-scheduled.yaml"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    insta::assert_snapshot!("import_scheduled", ws.read("out/nightly-report.yaml"));
    assert!(
        ws.read("out/connections.yaml")
            .contains("url: k8s://KUBE-CONTEXT/reporting")
    );
    let (run, tasks) = ws.run("nightly-report.yaml");
    assert_eq!(run, "success");
    assert_eq!(tasks, all_success(&["nightly-report"]));
}

#[test]
fn importing_a_folder_of_dags_writes_one_connections_file_and_keeps_filled_in_urls() {
    let ws = Workspace::new();
    let out = ws.import(&["dags/seed_diamond.py", "dags/emr_on_eks.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    // The user fills one URL in, then imports another file into the same folder.
    let connections = ws
        .read("out/connections.yaml")
        .replace("GATEWAY-HOST", "gateway.internal");
    std::fs::write(ws.dir.path().join("out/connections.yaml"), connections).expect("written");
    let out = ws.import(&["dags/spark_on_k8s.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
    let connections = ws.read("out/connections.yaml");
    assert!(
        connections.contains("bpg+https://gateway.internal/skatev2"),
        "{connections}"
    );
    assert!(connections.contains("analytics_k8s:"), "{connections}");
    assert!(connections.contains("aws_analytics:"), "{connections}");
    let check = ws.bpg(&["validate", "out/connections.yaml"]);
    assert_eq!(check.code, 0, "{}", check.transcript());
    assert_eq!(
        ws.written(),
        [
            "connections.yaml",
            "emr_sessions.yaml",
            "seed_diamond.yaml",
            "spark_on_k8s.yaml"
        ]
    );
}

#[test]
fn malformed_dag_files_get_located_errors_and_exit_1() {
    let ws = Workspace::new();
    let mut transcript = String::new();
    for file in [
        "malformed/syntax_error.py",
        "malformed/no_tasks.py",
        "malformed/cycle.py",
        "malformed/unknown_task.py",
        "malformed/no_dag.py",
    ] {
        let out = ws.import(&[file]);
        assert_eq!(out.code, 1, "{}", out.transcript());
        transcript.push_str(&out.stdout);
    }
    assert!(ws.written().is_empty(), "{:?}", ws.written());
    insta::assert_snapshot!("import_malformed", transcript);
    // One good file among bad ones: what converts is written, and the command succeeds.
    let out = ws.import(&["malformed/cycle.py", "dags/seed_diamond.py"]);
    assert_eq!(out.code, 0, "{}", out.transcript());
}

#[test]
fn import_without_files_is_a_usage_error_and_an_unreadable_file_exits_1() {
    let ws = Workspace::new();
    assert_eq!(ws.bpg(&["import"]).code, 2);
    let out = ws.import(&["dags/missing.py"]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        out.stdout
            .starts_with("dags/missing.py: error: cannot read the file"),
        "{}",
        out.stdout
    );
}
