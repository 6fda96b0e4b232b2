//! The application-file corpus under `tests/data`: every valid file reads (snapshot of the job and
//! its warnings), every invalid file fails with the expected messages at the expected places, and
//! the renderers' output is snapshot-tested.

use std::path::{Path, PathBuf};

use bpg_core::formats::{
    InputKind, load_application_file, parse_application, parse_bpg_request, parse_manifest,
    to_bpg_json, to_bpg_request, to_emr_start_job_run, to_manifest, to_spark_submit_args,
};
use bpg_core::{AppType, MemoryQuantity, Severity, SparkJob};

// Integration tests run in the package root, so relative paths keep snapshots machine-independent.
fn corpus(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new("tests/data").join(dir))
        .expect("corpus directory")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 file name")
        .replace('.', "_")
}

fn load(name: &str) -> SparkJob {
    let path = Path::new("tests/data/valid").join(name);
    load_application_file(&path)
        .unwrap_or_else(|d| panic!("{d}"))
        .job
}

#[test]
fn corpus_covers_both_formats_and_both_syntaxes() {
    for dir in ["valid", "invalid"] {
        let files = corpus(dir);
        assert!(files.len() >= 25, "{dir}: only {} files", files.len());
        for prefix in ["bpg-", "manifest-"] {
            for ext in ["json", "yaml"] {
                assert!(
                    files.iter().any(|f| {
                        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        name.starts_with(prefix) && name.ends_with(ext)
                    }),
                    "{dir} has no {prefix}*.{ext}"
                );
            }
        }
    }
}

#[test]
fn every_valid_file_reads_as_its_snapshot() {
    for path in corpus("valid") {
        let parsed = load_application_file(&path).unwrap_or_else(|d| panic!("{d}"));
        assert!(
            parsed
                .warnings
                .0
                .iter()
                .all(|w| w.severity == Severity::Warning),
            "{}",
            parsed.warnings
        );
        let warnings: Vec<String> = parsed.warnings.0.iter().map(ToString::to_string).collect();
        insta::assert_yaml_snapshot!(
            format!("valid__{}", stem(&path)),
            serde_json::json!({ "job": parsed.job, "warnings": warnings })
        );
    }
}

/// `(file, [(line, column, field, message fragment)])`: every error each invalid file must produce,
/// in order. Warnings may come alongside; they are not listed.
type Expected = (usize, usize, &'static str, &'static str);

const INVALID: &[(&str, &[Expected])] = &[
    (
        "bpg-arguments-not-a-list.yaml",
        &[(
            3,
            12,
            "arguments",
            "expected a list of strings, found a string",
        )],
    ),
    (
        "bpg-bad-memory.yaml",
        &[(
            4,
            11,
            "driver.memory",
            "invalid memory quantity \"2gigs\": unknown unit",
        )],
    ),
    (
        "bpg-bad-type.yaml",
        &[(
            2,
            7,
            "type",
            "expected one of Java, Scala, Python, R, found \"Go\"",
        )],
    ),
    (
        "bpg-cores-not-a-number.json",
        &[(
            4,
            23,
            "driver.cores",
            "expected a positive integer, found \"two\"",
        )],
    ),
    (
        "bpg-driver-not-a-mapping.json",
        &[(4, 13, "driver", "expected a mapping, found a string")],
    ),
    (
        "bpg-duplicate-key.json",
        &[(
            4,
            3,
            "",
            "invalid JSON: duplicate mapping key: sparkVersion",
        )],
    ),
    (
        "bpg-env-missing-name.yaml",
        &[(7, 7, "driver.env[1]", "missing required field `name`")],
    ),
    (
        "bpg-json-syntax.json",
        &[(4, 3, "", "invalid JSON: expected `,` or `}`")],
    ),
    (
        "bpg-memory-without-unit.json",
        &[(
            4,
            42,
            "executor.memory",
            "invalid memory quantity \"2048\": missing unit",
        )],
    ),
    (
        "bpg-missing-main-file.yaml",
        &[(
            1,
            1,
            "mainApplicationFile",
            "missing required field `mainApplicationFile`",
        )],
    ),
    (
        "bpg-missing-spark-version.json",
        &[(
            1,
            1,
            "sparkVersion",
            "missing required field `sparkVersion`",
        )],
    ),
    (
        "bpg-negative-instances.yaml",
        &[(
            4,
            14,
            "executor.instances",
            "expected a non-negative integer, found \"-1\"",
        )],
    ),
    (
        "bpg-not-a-mapping.yaml",
        &[(1, 1, "", "expected a mapping, found a list")],
    ),
    (
        "bpg-phantom-annotations.json",
        &[(
            4,
            3,
            "annotations",
            "BPG rejects a top-level `annotations` field (400)",
        )],
    ),
    (
        "bpg-restart-always.yaml",
        &[(
            4,
            9,
            "restartPolicy.type",
            "`Always` reruns the application after it finishes",
        )],
    ),
    (
        "bpg-several-errors.yaml",
        &[
            (
                2,
                15,
                "sparkVersion",
                "found the number 3.5; quote it (\"3.5\")",
            ),
            (
                4,
                1,
                "queues",
                "unknown field `queues`: BPG rejects unknown top-level fields (did you mean `queue`?)",
            ),
            (
                6,
                10,
                "driver.cores",
                "expected a positive integer, found 0",
            ),
            (7, 11, "driver.memory", "invalid memory quantity \"1x\""),
            (
                9,
                14,
                "executor.instances",
                "expected a non-negative integer, found \"many\"",
            ),
            (
                10,
                19,
                "executor.memoryOverhead",
                "invalid memory quantity \"-1g\"",
            ),
        ],
    ),
    (
        "bpg-spark-conf-not-a-mapping.yaml",
        &[(
            4,
            3,
            "sparkConf",
            "expected a mapping of strings to strings, found a list",
        )],
    ),
    (
        "bpg-spot-not-boolean.json",
        &[(
            4,
            19,
            "spotInstance",
            "expected true or false, found a string",
        )],
    ),
    (
        "bpg-unknown-top-level-field.json",
        &[(
            4,
            3,
            "sparkConfs",
            "BPG rejects unknown top-level fields (did you mean `sparkConf`?)",
        )],
    ),
    (
        "bpg-version-unquoted.yaml",
        &[(
            2,
            15,
            "sparkVersion",
            "found the number 3.10; quote it (\"3.10\"): unquoted, 3.10 is read as 3.1",
        )],
    ),
    (
        "empty-document.yaml",
        &[(
            2,
            1,
            "",
            "expected a SubmitApplicationRequest mapping, found null",
        )],
    ),
    (
        "manifest-bad-memory.yaml",
        &[(
            14,
            13,
            "spec.executor.memory",
            "invalid memory quantity \"1.5.5g\": malformed number",
        )],
    ),
    (
        "manifest-duplicate-key.yaml",
        &[(
            8,
            3,
            "",
            "invalid YAML: duplicate mapping key: sparkVersion",
        )],
    ),
    (
        "manifest-dynamic-allocation-bounds.yaml",
        &[(
            11,
            5,
            "spec.dynamicAllocation",
            "minExecutors (10) is greater than maxExecutors (2)",
        )],
    ),
    (
        "manifest-instances-not-a-number.yaml",
        &[(
            11,
            16,
            "spec.executor.instances",
            "expected a non-negative integer, found \"a few\"",
        )],
    ),
    (
        "manifest-label-value-null.yaml",
        &[(
            6,
            9,
            "metadata.labels.team",
            "expected a string value, found null",
        )],
    ),
    (
        "manifest-labels-not-a-mapping.json",
        &[(
            4,
            49,
            "metadata.labels",
            "expected a mapping of strings to strings, found a list",
        )],
    ),
    (
        "manifest-missing-driver.yaml",
        &[(6, 3, "spec.driver", "missing required field `driver`")],
    ),
    (
        "manifest-missing-spec.yaml",
        &[(1, 1, "spec", "missing required field `spec`")],
    ),
    (
        "manifest-restart-always.yaml",
        &[(
            10,
            11,
            "spec.restartPolicy.type",
            "`Always` reruns the application after it finishes, so the task would never end",
        )],
    ),
    (
        "manifest-restart-unknown-type.yaml",
        &[(
            10,
            11,
            "spec.restartPolicy.type",
            "expected `Never` or `OnFailure`, found \"Sometimes\"",
        )],
    ),
    (
        "manifest-scheduled-kind.yaml",
        &[(
            2,
            7,
            "kind",
            "a ScheduledSparkApplication runs its template on a schedule, and bpg keeps schedules in pipelines: `bpg import FILE` turns it into a pipeline with that schedule",
        )],
    ),
    (
        "manifest-type-lowercase.yaml",
        &[(
            6,
            9,
            "spec.type",
            "expected one of Scala, Java, Python, R, found \"python\"",
        )],
    ),
    (
        "manifest-version-unquoted.yaml",
        &[(
            7,
            17,
            "spec.sparkVersion",
            "found the number 3.5; quote it (\"3.5\")",
        )],
    ),
    (
        "manifest-volumes-not-a-list.yaml",
        &[(
            10,
            5,
            "spec.volumes",
            "expected a list of mappings, found a mapping",
        )],
    ),
    (
        "manifest-wrong-api-version.yaml",
        &[(
            1,
            13,
            "apiVersion",
            "expected \"sparkoperator.k8s.io/v1beta2\", found \"sparkoperator.k8s.io/v1beta1\"",
        )],
    ),
    (
        "manifest-yaml-syntax.yaml",
        &[(
            8,
            15,
            "",
            "invalid YAML: illegal placement of ':' indicator",
        )],
    ),
];

#[test]
fn every_invalid_file_fails_with_the_expected_located_errors() {
    let files = corpus("invalid");
    let listed: Vec<&str> = INVALID.iter().map(|(f, _)| *f).collect();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            listed.contains(&name),
            "{name} has no expectation in INVALID"
        );
    }
    for (name, expected) in INVALID {
        let path = Path::new("tests/data/invalid").join(name);
        assert!(files.contains(&path), "{name} is listed but missing");
        let diagnostics = match load_application_file(&path) {
            Ok(parsed) => panic!("{name} was accepted (warnings: {})", parsed.warnings),
            Err(d) => d,
        };
        let errors: Vec<_> = diagnostics.errors().collect();
        assert_eq!(errors.len(), expected.len(), "{name}:\n{diagnostics}");
        for (error, (line, column, field, fragment)) in errors.iter().zip(expected.iter()) {
            let place = (error.line.unwrap_or(0), error.column.unwrap_or(0));
            assert_eq!(place, (*line, *column), "{name}: {error}");
            assert_eq!(error.field, *field, "{name}: {error}");
            assert!(
                error.message.contains(fragment),
                "{name}: {error}\nexpected: {fragment}"
            );
            assert_eq!(
                error.file.as_deref(),
                Some(path.as_path()),
                "{name}: {error}"
            );
            let shown = error.to_string();
            assert!(shown.starts_with(&path.display().to_string()), "{shown}");
        }
    }
}

#[test]
fn warnings_name_the_unknown_fields_and_never_the_queue_token() {
    let parsed = load_application_file("tests/data/valid/bpg-queue-token.yaml").unwrap();
    let shown = format!("{} {:?}", parsed.warnings, parsed.job);
    assert!(shown.contains("queueToken"), "{shown}");
    assert!(!shown.contains("eyJ"), "the token leaked: {shown}");

    let parsed = load_application_file("tests/data/valid/manifest-unknown-fields.yaml").unwrap();
    let fields: Vec<&str> = parsed.warnings.0.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(fields, ["spec.futureOption", "spec.driver.shinyNewField"]);
    // Kept for the backend rather than dropped.
    assert_eq!(parsed.job.extra["futureOption"], "enabled");
    assert!(parsed.job.driver.extra.contains_key("shinyNewField"));
}

#[test]
fn labels_map_between_formats() {
    let request = load("bpg-routing-labels.yaml");
    assert_eq!(request.label("data-classification"), Some("phi"));
    assert!(request.driver.labels.is_empty());
    assert_eq!(request.executor.labels["component"], "executor");

    let manifest = load("manifest-spark-pi-python.yaml");
    assert_eq!(manifest.label("cost-profile"), Some("spot"));
    assert_eq!(manifest.driver.labels["version"], "3.5.1");

    let rendered = to_manifest(&request, "claims-etl-1", "phi-jobs");
    assert_eq!(rendered["metadata"]["labels"]["data-classification"], "phi");
    assert_eq!(rendered["spec"]["driver"].get("labels"), None);
    assert_eq!(
        rendered["spec"]["sparkConf"]["spark.app.name"],
        "claims-etl"
    );

    let body = to_bpg_request(&manifest);
    let driver_labels = body.driver.unwrap().labels.unwrap();
    assert_eq!(driver_labels["cost-profile"], "spot");
    assert_eq!(driver_labels["version"], "3.5.1");
}

#[test]
fn bpg_requests_carry_hadoop_conf_and_dynamic_allocation_as_spark_conf() {
    let job = load("manifest-spark-and-hadoop-conf.yaml");
    let conf = to_bpg_request(&job).spark_conf.unwrap();
    assert_eq!(conf["spark.hadoop.fs.s3a.fast.upload"], "true");
    assert_eq!(conf["spark.sql.shuffle.partitions"], "800");

    let job = load("manifest-dynamic-allocation.yaml");
    let conf = to_bpg_request(&job).spark_conf.unwrap();
    assert_eq!(conf["spark.dynamicAllocation.maxExecutors"], "20");
    assert_eq!(
        conf["spark.dynamicAllocation.shuffleTracking.timeout"],
        "120000ms"
    );

    let json: serde_json::Value = serde_json::from_str(&to_bpg_json(&job)).unwrap();
    assert_eq!(json.get("annotations"), None);
    assert_eq!(json.get("queueToken"), None);
}

#[test]
fn values_are_read_as_written() {
    let job = load("bpg-unquoted-arguments.yaml");
    assert_eq!(job.arguments, ["100", "2.50", "true", "0755", "--flag"]);
    assert_eq!(job.spark_conf["spark.memory.fraction"], "0.60");

    let job = load("bpg-kubernetes-memory.yaml");
    assert_eq!(job.driver.memory, Some(MemoryQuantity::from_gib(2)));
    assert_eq!(job.executor.memory, Some(MemoryQuantity::from_mib(1536)));

    let job = load("bpg-coerced-scalars.json");
    assert_eq!(
        (job.app_type, job.driver.cores, job.executor.instances),
        (AppType::Java, Some(2), Some(5))
    );

    let job = load("manifest-anchors.yaml");
    assert_eq!(job.executor.cores, Some(2));
    assert_eq!(job.executor.memory, Some(MemoryQuantity::from_gib(2)));
    assert_eq!(job.executor.labels["team"], "platform");
}

#[test]
fn types_default_as_bpg_and_spark_operator_do() {
    assert_eq!(
        load("bpg-python-type-inferred.json").app_type,
        AppType::Python
    );
    assert_eq!(load("bpg-java-type-inferred.yaml").app_type, AppType::Java);
    assert_eq!(load("manifest-default-type.yaml").app_type, AppType::Scala);
}

#[test]
fn restart_policy_never_is_the_default() {
    assert_eq!(load("manifest-restart-never.yaml").restart_policy, None);
    let job = load("manifest-restart-onfailure.yaml");
    assert_eq!(
        job.restart_policy.as_ref().map(|p| p.kind.as_str()),
        Some("OnFailure")
    );
    let plain = load("bpg-minimal.yaml");
    assert_eq!(
        to_manifest(&plain, "m", "ns")["spec"]["restartPolicy"],
        serde_json::json!({"type": "Never"})
    );
}

#[test]
fn detection_picks_the_format_and_the_syntax() {
    let manifest_json = std::fs::read_to_string("tests/data/valid/manifest-minimal.json").unwrap();
    assert_eq!(
        parse_application(&manifest_json, None).unwrap().job.name,
        "minimal"
    );
    // No extension to go by: the content decides.
    let request_yaml = std::fs::read_to_string("tests/data/valid/bpg-minimal.yaml").unwrap();
    let parsed = parse_application(&request_yaml, Some(Path::new("job.txt"))).unwrap();
    assert_eq!(parsed.job.spark_version, "3.2");
    assert_eq!(InputKind::detect(" \n{\"a\": 1}"), InputKind::Json);

    // The single-format entry points refuse the other format.
    let errors = parse_bpg_request(&manifest_json, InputKind::Json, None).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("looks like a SparkApplication manifest"),
        "{errors}"
    );
    let errors = parse_manifest(&request_yaml, InputKind::Yaml, None).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("missing required field `apiVersion`"),
        "{errors}"
    );
}

#[test]
fn a_missing_file_is_reported_with_its_name() {
    let errors = load_application_file("tests/data/no-such-file.yaml").unwrap_err();
    let shown = errors.to_string();
    assert!(
        shown.starts_with("tests/data/no-such-file.yaml: error: cannot read the file"),
        "{shown}"
    );
}

#[test]
fn renderers_need_a_main_application_file() {
    let mut job = load("bpg-minimal.json");
    job.main_application_file = None;
    assert!(to_emr_start_job_run(&job).is_err());
    assert!(to_spark_submit_args(&job, "local[*]").is_err());
}

/// Files whose renderings are snapshot-tested: together they use every modelled field.
const RENDERED: &[&str] = &[
    "bpg-scala-documented-fields.json",
    "bpg-hidden-fields.yaml",
    "bpg-routing-labels.yaml",
    "manifest-kitchen-sink.json",
    "manifest-python-deps.yaml",
    "manifest-spark-and-hadoop-conf.yaml",
    "manifest-dynamic-allocation.yaml",
    "manifest-volumes.yaml",
];

#[test]
fn bpg_request_renderings() {
    for name in RENDERED {
        let job = load(name);
        insta::assert_snapshot!(format!("bpg__{}", stem(Path::new(name))), to_bpg_json(&job));
    }
}

#[test]
fn manifest_renderings() {
    for name in RENDERED {
        let job = load(name);
        let resource = format!("{}-0f3a9c", job.name);
        insta::assert_yaml_snapshot!(
            format!("manifest__{}", stem(Path::new(name))),
            to_manifest(&job, &resource, "spark-jobs")
        );
    }
}

#[test]
fn emr_start_job_run_renderings() {
    for name in RENDERED {
        let job = load(name);
        let run = to_emr_start_job_run(&job).unwrap();
        insta::assert_yaml_snapshot!(format!("emr__{}", stem(Path::new(name))), run);
    }
}

#[test]
fn spark_submit_renderings() {
    for name in RENDERED {
        let job = load(name);
        let local = to_spark_submit_args(&job, "local[*]").unwrap();
        let k8s = to_spark_submit_args(&job, "k8s://https://k8s.example.com:6443").unwrap();
        insta::assert_yaml_snapshot!(
            format!("spark_submit__{}", stem(Path::new(name))),
            serde_json::json!({ "local": local, "kubernetes": k8s })
        );
    }
}

#[test]
fn unusual_but_valid_syntax_reads() {
    // A byte-order mark and CRLF line endings.
    let text =
        "\u{feff}sparkVersion: \"3.5\"\r\nmainApplicationFile: a.py\r\ndriver:\r\n  memory: 1g\r\n";
    let job = parse_application(text, None)
        .unwrap_or_else(|d| panic!("{d}"))
        .job;
    assert_eq!(job.driver.memory, Some(MemoryQuantity::from_gib(1)));
    // `{` opening a YAML flow mapping, with no extension to go by.
    let job = parse_application("{sparkVersion: '3.5', mainApplicationFile: a.py}", None)
        .unwrap_or_else(|d| panic!("{d}"))
        .job;
    assert_eq!(job.main_application_file.as_deref(), Some("a.py"));
    // Broken JSON that is no YAML either keeps its JSON error.
    let errors = parse_application("{\"sparkVersion\": \"3.5\"}}", None).unwrap_err();
    assert!(errors.to_string().contains("invalid JSON"), "{errors}");
}

#[test]
fn two_applications_in_one_file_are_an_error_naming_both() {
    let text = "sparkVersion: \"3.5\"\nmainApplicationFile: a.py\n---\nsparkVersion: \"3.4\"\n";
    let errors = parse_application(text, None).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.0[0].line, Some(4), "{errors}");
    assert_eq!(
        errors.0[0].message,
        "2 Spark applications in one file: a BPG request (line 1) and a BPG request (line 4); put each in its own file"
    );
}

#[test]
fn other_documents_beside_the_application_are_named_in_a_warning() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n\
                apiVersion: sparkoperator.k8s.io/v1beta2\nkind: SparkApplication\n\
                metadata: {name: pi}\nspec:\n  sparkVersion: \"3.5\"\n  \
                mainApplicationFile: local:///pi.py\n  driver: {}\n  executor: {}\n";
    let parsed = parse_application(text, None).unwrap();
    assert_eq!(parsed.job.name, "pi");
    let warning = parsed
        .warnings
        .0
        .iter()
        .find(|d| d.field.is_empty())
        .unwrap();
    assert_eq!(warning.line, Some(5));
    assert_eq!(
        warning.message,
        "1 other document(s) ignored: a ConfigMap `settings` (line 1); only the Spark application is read"
    );
}

#[test]
fn airflow_template_spec_carries_the_kubernetes_settings_into_both_pods() {
    let text = r#"
spark:
  apiVersion: sparkoperator.k8s.io/v1beta2
  version: v1beta2
  kind: SparkApplication
  metadata: {name: etl}
  spec:
    type: Python
    sparkVersion: 3.5.1
    mainApplicationFile: local:///opt/etl.py
    labels: {team: data}
    driver:
      container_resources:
        cpu: {request: 2, limit: 2500m}
        memory: {limit: 1400m}
    executor:
      instances: 2
kubernetes:
  env_vars: [{name: MODE, value: batch}, {name: TOKEN, valueFrom: {secretKeyRef: {name: api, key: token}}}]
  from_env_secret: [db-credentials]
  from_env_config_map: [settings]
  node_selector: {pool: spark}
  affinity: {nodeAffinity: {}, podAffinity: {}, podAntiAffinity: {}}
  tolerations: [{key: spot, operator: Exists, effect: NoSchedule}]
  config_map_mounts: {hive-site: /etc/hive}
  volumes: [{name: scratch, emptyDir: {}}]
  volume_mounts: [{name: scratch, mountPath: /scratch}]
  image_pull_secrets: "regcred, mirror"
  conn_id: kubernetes_default
"#;
    let parsed = parse_application(text, None).unwrap_or_else(|d| panic!("{d}"));
    assert!(parsed.warnings.is_empty(), "{}", parsed.warnings);
    let job = parsed.job;
    assert_eq!(job.driver.cores, Some(2));
    assert_eq!(job.driver.core_limit.as_deref(), Some("2500m"));
    // Airflow takes spark-operator's 40% overhead off the limit: 1400m / 1.4.
    assert_eq!(job.driver.memory.unwrap().to_spark_string(), "1000m");
    for pod in [&job.driver, &job.executor] {
        assert_eq!(pod.labels["team"], "data");
        assert_eq!(pod.env.len(), 2);
        assert_eq!(pod.node_selector["pool"], "spark");
        assert_eq!(
            pod.extra["envFrom"],
            serde_json::json!([{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "db-credentials"}}])
        );
        assert_eq!(pod.extra["tolerations"][0]["key"], "spot");
        assert!(
            !pod.extra.contains_key("affinity"),
            "empty affinity is left out"
        );
        assert_eq!(pod.volume_mounts.len(), 2);
    }
    assert_eq!(job.volumes.len(), 2);
    assert_eq!(
        job.extra["imagePullSecrets"],
        serde_json::json!(["regcred", "mirror"])
    );
    // Rendered by the backends that can: the manifest keeps everything, spark-submit what Spark
    // has properties for.
    let manifest = to_manifest(&job, "etl-1", "spark");
    assert_eq!(
        manifest["spec"]["driver"]["tolerations"][0]["effect"],
        "NoSchedule"
    );
    assert_eq!(
        manifest["spec"]["executor"]["envFrom"][1]["secretRef"]["name"],
        "db-credentials"
    );
    assert_eq!(manifest["spec"]["imagePullSecrets"][1], "mirror");
    let args = to_spark_submit_args(&job, "k8s://https://kube:6443")
        .unwrap()
        .join(" ");
    assert!(
        args.contains("spark.kubernetes.driver.secretKeyRef.TOKEN=api:token"),
        "{args}"
    );
    assert!(
        args.contains("spark.kubernetes.executor.node.selector.pool=spark"),
        "{args}"
    );
    assert!(args.contains("spark.executorEnv.MODE=batch"), "{args}");
}

#[test]
fn other_kinds_are_named_with_what_to_do() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op}\n";
    let errors = parse_application(text, None).unwrap_err();
    assert_eq!(
        errors.0[0].message,
        "a Kubernetes `Deployment` (apps/v1), not a Spark application; bpg reads SparkApplication manifests (sparkoperator.k8s.io/v1beta2) and BPG requests"
    );
    assert_eq!((errors.0[0].line, errors.0[0].column), (Some(2), Some(7)));
}
