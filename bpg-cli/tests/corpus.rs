//! The real-world corpus (`../shared/corpus`, files written by spark-operator, Airflow and AWS
//! sample projects): each file does what the corpus README's table says under `bpg validate`, as
//! the `application_file` of a pipeline task run on a simulated connection, and through
//! `bpg submit` to one. `BPG_CORPUS_DIR` overrides the folder. Without the folder the test fails
//! under CI (`CI` set) and is skipped with its reason otherwise.

mod common;

use std::path::{Path, PathBuf};

use common::{Output, bpg_in, workspace_root};

/// What a corpus file must do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A valid Spark application: validates, runs as a pipeline task, submits.
    Application,
    /// Several documents: the one SparkApplication is read, the others named in a warning.
    OneOfSeveralDocuments,
    /// A ScheduledSparkApplication: `bpg validate` says what it is, `bpg import` makes a pipeline
    /// of it; run or submitted as an application it is an error pointing at `bpg import`.
    Scheduled,
    /// BPG's own configuration (Helm values with `plainConfig:`).
    GatewayConfig,
    /// Refused everywhere with a located error holding this text.
    Error(&'static str),
}

/// The corpus README's table, one row per file.
const TABLE: &[(&str, Expect)] = &[
    // 21 SparkApplication manifests.
    (
        "spark-operator/kubeflow/examples/spark-pi.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-configmap.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-custom-resource.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-dynamic-allocation.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-emptydir.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-kube-scheduler.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-prometheus-servlet.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-python.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-ttl.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-volcano.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-yunikorn.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/config/samples/v1beta2_sparkapplication.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/test/e2e/bad_examples/fail-application.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/kubeflow/test/e2e/bad_examples/fail-submission.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-pi.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-pi-configmap.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-pi-custom-resource.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-pi-prometheus.yaml",
        Expect::Application,
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-py-pi.yaml",
        Expect::Application,
    ),
    // What SparkKubernetesOperator(application_file=...) is given; the last one holds Jinja.
    (
        "airflow-provider/application_test.json",
        Expect::Application,
    ),
    (
        "airflow-provider/application_test.yaml",
        Expect::Application,
    ),
    (
        "airflow-provider/application_test_with_no_name_from_config.json",
        Expect::Application,
    ),
    (
        "airflow-provider/application_test_with_no_name_from_config.yaml",
        Expect::Application,
    ),
    (
        "airflow-provider/example_spark_kubernetes_spark_pi.yaml",
        Expect::Application,
    ),
    // SparkKubernetesOperator(template_spec=...): `spark:` + `kubernetes:`.
    (
        "airflow-provider/spark_job_template.yaml",
        Expect::Application,
    ),
    (
        "airflow-provider/application_template.yaml",
        Expect::Application,
    ),
    ("bpg-samples/spark-pi.template.yaml", Expect::Application),
    (
        "spark-operator/kubeflow/examples/spark-pi-pod-template.yaml",
        Expect::OneOfSeveralDocuments,
    ),
    (
        "spark-operator/kubeflow/examples/spark-pi-scheduled.yaml",
        Expect::Scheduled,
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-pi-schedule.yaml",
        Expect::Scheduled,
    ),
    (
        "spark-operator/kubeflow/config/samples/v1beta2_scheduledsparkapplication.yaml",
        Expect::Scheduled,
    ),
    ("bpg-samples/values.template.yaml", Expect::GatewayConfig),
    (
        "spark-operator/kubeflow/examples/spark-pi-prometheus.yaml",
        Expect::Error("invalid YAML"),
    ),
    (
        "spark-operator/kubeflow/examples/sparkconnect/spark-connect.yaml",
        Expect::Error("a SparkConnect is a long-running Spark Connect server"),
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-operator-with-metrics.yaml",
        Expect::Error("a Kubernetes `Deployment` (apps/v1), not a Spark application"),
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/examples/spark-operator-with-webhook.yaml",
        Expect::Error(
            "no Spark application in this file, which holds a Deployment `sparkoperator` (line 17), a Job `sparkoperator-init` (line 58), a Service `spark-webhook` (line 82)",
        ),
    ),
    (
        "spark-operator/gcp-spark-on-k8s-operator/sparkctl/cmd/testdata/test-app.yaml",
        Expect::Error("error: spec.sparkVersion: missing required field `sparkVersion`"),
    ),
];

/// The corpus folder, or `None` (test skipped, reason printed) outside CI when it is missing.
fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BPG_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/corpus"));
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    let reason = format!(
        "the real-world corpus is not at {} (set BPG_CORPUS_DIR to its folder)",
        dir.display()
    );
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!under_ci, "{reason}");
    eprintln!("skipped: {reason}");
    None
}

/// Every file of the corpus but its README and the CRDs (which are schemas, not inputs).
fn corpus_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("corpus folder reads") {
            let path = entry.expect("corpus entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.retain(|f| f != "README.md" && !f.starts_with("crds/"));
    files.sort();
    files
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("connections.yaml"),
            "connections:\n  sim: { url: \"sim://?duration=10ms\" }\n  kubernetes_default: { url: \"sim://?duration=10ms\" }\n",
        )
        .expect("connections written");
        Sandbox { dir }
    }

    fn bpg(&self, args: &[&str]) -> Output {
        bpg_in(
            self.dir.path(),
            args,
            &[("BPG_CONN_SIM", "sim://?duration=10ms")],
        )
    }

    /// `bpg run` of a one-task pipeline whose task's `application_file` is `file`.
    fn run_as_task(&self, file: &Path) -> Output {
        let pipeline = self.dir.path().join("pipeline.yaml");
        let text = format!(
            "dag_id: corpus\ntasks:\n  - id: app\n    kind: spark\n    connection: sim\n    application_file: {:?}\n",
            file.display().to_string()
        );
        std::fs::write(&pipeline, text).expect("pipeline written");
        self.bpg(&[
            "run",
            "pipeline.yaml",
            "--connections",
            "connections.yaml",
            "--json",
            "report.json",
        ])
    }

    fn submit(&self, file: &Path) -> Output {
        let file = file.to_str().expect("utf-8 path");
        self.bpg(&["submit", "--connection", "sim", file, "--wait"])
    }
}

#[test]
fn every_corpus_file_does_what_the_corpus_readme_says() {
    let Some(dir) = corpus_dir() else { return };
    let files = corpus_files(&dir);
    let listed: Vec<&str> = TABLE.iter().map(|(f, _)| *f).collect();
    let unlisted: Vec<&String> = files
        .iter()
        .filter(|f| !listed.contains(&f.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "corpus files the table does not cover: {unlisted:?}"
    );
    let missing: Vec<&&str> = listed
        .iter()
        .filter(|f| !files.iter().any(|g| g == *f))
        .collect();
    assert!(
        missing.is_empty(),
        "table rows without a corpus file: {missing:?}"
    );
    let applications = TABLE
        .iter()
        .filter(|(f, e)| matches!(e, Expect::Application) && f.starts_with("spark-operator/"))
        .count();
    // The README says 21; its globs name 19 spark-operator files (the Airflow and AWS samples
    // follow in their own rows).
    assert_eq!(
        applications, 19,
        "plain SparkApplication manifests of spark-operator"
    );

    let sandbox = Sandbox::new();
    for (relative, expect) in TABLE {
        let file = dir.join(relative);
        let path = file.to_str().expect("utf-8 path");
        let validate = sandbox.bpg(&["validate", path]);
        let as_task = sandbox.run_as_task(&file);
        let submit = sandbox.submit(&file);
        let context =
            |what: &str, out: &Output| format!("{relative} ({what}):\n{}", out.transcript());
        match expect {
            Expect::Application | Expect::OneOfSeveralDocuments => {
                assert_eq!(validate.code, 0, "{}", context("validate", &validate));
                assert!(
                    validate
                        .stdout
                        .contains(&format!("{path}: ok (application")),
                    "{}",
                    context("validate", &validate)
                );
                assert_eq!(as_task.code, 0, "{}", context("pipeline task", &as_task));
                let report: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(sandbox.dir.path().join("report.json"))
                        .expect("report written"),
                )
                .expect("report is JSON");
                assert_eq!(
                    report["tasks"]["app"]["state"], "success",
                    "{relative}: {report}"
                );
                assert_eq!(submit.code, 0, "{}", context("submit", &submit));
                assert!(
                    submit.stdout.contains("succeeded"),
                    "{}",
                    context("submit", &submit)
                );
                if let Expect::OneOfSeveralDocuments = expect {
                    let warning = format!(
                        "{path}:52:1: warning: 4 other document(s) ignored: a ConfigMap `test-configmap` (line 16), a Secret `test-secret` (line 25), a ConfigMap `test-configmap-2` (line 34), a Secret `test-secret-2` (line 43); only the Spark application is read"
                    );
                    for out in [&validate, &submit] {
                        assert!(
                            out.stdout.contains(&warning) || out.stderr.contains(&warning),
                            "{}",
                            context("warning", out)
                        );
                    }
                }
            }
            Expect::Scheduled => {
                assert_eq!(validate.code, 0, "{}", context("validate", &validate));
                assert!(
                    validate.stdout.contains("ok (scheduled application")
                        && validate.stdout.contains("`bpg import"),
                    "{}",
                    context("validate", &validate)
                );
                for (what, out) in [("pipeline task", &as_task), ("submit", &submit)] {
                    assert_eq!(out.code, 1, "{}", context(what, out));
                    assert!(
                        out.transcript()
                            .contains("`bpg import FILE` turns it into a pipeline"),
                        "{}",
                        context(what, out)
                    );
                }
                let out_dir = sandbox.dir.path().join("imported");
                let import = sandbox.bpg(&["import", "--out", "imported", path]);
                assert_eq!(import.code, 0, "{}", context("import", &import));
                let pipeline = std::fs::read_dir(&out_dir)
                    .expect("import wrote its folder")
                    .map(|e| e.expect("entry").path())
                    .find(|p| p.file_name().is_some_and(|n| n != "connections.yaml"))
                    .expect("a pipeline was written");
                let pipeline = pipeline.to_str().expect("utf-8 path");
                let check = sandbox.bpg(&["validate", pipeline]);
                assert_eq!(check.code, 0, "{}", context("validate imported", &check));
                let run = sandbox.bpg(&["run", pipeline, "--connections", "connections.yaml"]);
                assert_eq!(run.code, 0, "{}", context("run imported", &run));
                std::fs::remove_dir_all(&out_dir).expect("cleaned up");
            }
            Expect::GatewayConfig => {
                assert_eq!(validate.code, 0, "{}", context("validate", &validate));
                assert!(
                    validate.stdout.contains(
                        "ok (gateway configuration (BPG's format), clusters spark-cluster-a, spark-cluster-b)"
                    ) && validate.stdout.contains("spark-cluster-a has neither masterUrl nor connection"),
                    "{}",
                    context("validate", &validate)
                );
                assert_eq!(submit.code, 1, "{}", context("submit", &submit));
            }
            Expect::Error(text) => {
                // Located: FILE:LINE:COL.
                let located = format!("{path}:");
                for (what, out) in [
                    ("validate", &validate),
                    ("pipeline task", &as_task),
                    ("submit", &submit),
                ] {
                    assert_eq!(out.code, 1, "{}", context(what, out));
                    let transcript = out.transcript();
                    let line = transcript
                        .lines()
                        .find(|l| l.contains(text))
                        .unwrap_or_else(|| panic!("no {text:?} in {}", context(what, out)));
                    let place = line.split_once(&located).map(|(_, rest)| rest);
                    let numbers: Vec<&str> = place
                        .map(|p| p.splitn(3, ':').take(2).collect())
                        .unwrap_or_default();
                    assert!(
                        numbers.len() == 2 && numbers.iter().all(|n| n.parse::<usize>().is_ok()),
                        "{relative} ({what}): not located as FILE:LINE:COL: {line}"
                    );
                }
            }
        }
    }
}
