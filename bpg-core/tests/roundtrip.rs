//! Round trip: for generated jobs, reading back what a renderer wrote gives the same job, for BPG
//! requests and SparkApplication manifests, in JSON and in YAML.

use std::collections::BTreeMap;

use bpg_core::formats::{
    InputKind, parse_bpg_request, parse_manifest, to_bpg_request, to_manifest,
};
use bpg_core::{
    AppType, Dependencies, DynamicAllocation, EnvVar, MemoryQuantity, PodSpec, RestartPolicy,
    SparkJob,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Which format a job is generated for: each can represent a different subset of [`SparkJob`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Bpg,
    Manifest,
}

fn text() -> impl Strategy<Value = String> {
    // Any printable text, including YAML-significant characters and look-alikes of other types.
    prop_oneof![
        "\\PC{0,12}",
        Just("yes".to_owned()),
        Just("3.10".to_owned()),
        Just("0755".to_owned()),
        Just("~".to_owned()),
        Just("- item: x # not a comment".to_owned()),
    ]
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9.-]{0,10}"
}

fn memory() -> impl Strategy<Value = MemoryQuantity> {
    prop_oneof![
        (1u64..1 << 20).prop_map(MemoryQuantity::from_mib),
        (0u64..1 << 45).prop_map(MemoryQuantity::from_bytes),
    ]
}

fn env() -> impl Strategy<Value = Vec<EnvVar>> {
    vec(
        (
            "[A-Z_][A-Z0-9_]{0,8}",
            option::of(text()),
            option::of(Just(json!({"fieldRef": {"fieldPath": "status.podIP"}}))),
        )
            .prop_map(|(name, value, value_from)| EnvVar {
                name,
                value,
                value_from,
            }),
        0..3,
    )
}

fn small_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(word(), text(), 0..3)
}

fn volume_mounts() -> impl Strategy<Value = Vec<Value>> {
    vec(
        (word(), "/[a-z]{1,8}", any::<bool>())
            .prop_map(|(name, path, ro)| json!({"name": name, "mountPath": path, "readOnly": ro})),
        0..2,
    )
}

fn pod(format: Format, executor: bool) -> impl Strategy<Value = PodSpec> {
    (
        (
            option::of(1u32..64),
            option::of("[1-9][0-9]{0,3}m"),
            option::of("[1-9][0-9]{0,3}"),
            option::of(memory()),
            option::of(memory()),
            option::of(0u32..500),
            option::of(word()),
            option::of(word()),
        ),
        (
            env(),
            small_map(),
            small_map(),
            option::of(text()),
            volume_mounts(),
            small_map(),
            option::of(any::<bool>()),
            option::of(Just(json!({"runAsUser": 185}))),
        ),
    )
        .prop_map(
            move |(
                (cores, core_request, core_limit, memory, memory_overhead, instances, image, sa),
                (env, labels, annotations, java_options, volume_mounts, node_selector, delete, sc),
            )| {
                let mut pod = PodSpec {
                    cores,
                    core_request,
                    core_limit,
                    memory,
                    memory_overhead,
                    image,
                    service_account: sa,
                    env,
                    labels,
                    annotations,
                    java_options,
                    volume_mounts,
                    ..PodSpec::default()
                };
                // Only executors have an instance count and deleteOnTermination in either format.
                if executor {
                    pod.instances = instances;
                    pod.delete_on_termination = delete;
                }
                // BPG has no nodeSelector (it would come back as an unknown pass-through field), and
                // a BPG driver's labels are the routing labels.
                if format == Format::Manifest {
                    pod.node_selector = node_selector;
                }
                if format == Format::Bpg && !executor {
                    pod.labels.clear();
                }
                if let Some(sc) = sc {
                    pod.extra.insert("securityContext".into(), sc);
                }
                pod
            },
        )
}

fn restart_policy() -> impl Strategy<Value = Option<RestartPolicy>> {
    option::of(
        (
            prop_oneof![Just("Never"), Just("OnFailure")],
            option::of(0i32..10),
            option::of(0i32..10),
            option::of(0i64..3600),
            option::of(0i64..3600),
        )
            .prop_map(|(kind, sub, fail, sub_i, fail_i)| RestartPolicy {
                kind: kind.to_owned(),
                on_submission_failure_retries: sub,
                on_failure_retries: fail,
                on_submission_failure_retry_interval: sub_i,
                on_failure_retry_interval: fail_i,
            }),
    )
    // `{type: Never}` alone is the default and reads back as `None`.
    .prop_map(|p| {
        p.filter(|p| {
            p.kind != "Never"
                || p.on_submission_failure_retries.is_some()
                || p.on_failure_retries.is_some()
                || p.on_submission_failure_retry_interval.is_some()
                || p.on_failure_retry_interval.is_some()
        })
    })
}

fn deps() -> impl Strategy<Value = Dependencies> {
    let list = || vec(word(), 0..2);
    (list(), list(), list(), list(), list(), list(), list()).prop_map(
        |(jars, files, py_files, packages, exclude_packages, repositories, archives)| {
            Dependencies {
                jars,
                files,
                py_files,
                packages,
                exclude_packages,
                repositories,
                archives,
            }
        },
    )
}

fn dynamic_allocation() -> impl Strategy<Value = DynamicAllocation> {
    (
        any::<bool>(),
        option::of(0u32..10),
        option::of(0u32..5),
        option::of(5u32..100),
        option::of(any::<bool>()),
        option::of(0i64..1_000_000),
    )
        .prop_map(
            |(enabled, initial, min, max, tracking, timeout)| DynamicAllocation {
                enabled,
                initial_executors: initial,
                min_executors: min,
                max_executors: max,
                shuffle_tracking_enabled: tracking,
                shuffle_tracking_timeout: timeout,
            },
        )
}

/// A job holding only what `format` can carry. BPG has no hadoopConf, dynamicAllocation or
/// timeToLiveSeconds (they render as sparkConf entries or not at all); a manifest has no
/// spotInstance. A manifest's name is its resource name, so it is never empty there.
fn job(format: Format) -> impl Strategy<Value = SparkJob> {
    let name = match format {
        Format::Bpg => "([a-z][a-z0-9-]{0,15})?",
        Format::Manifest => "[a-z][a-z0-9-]{0,15}",
    };
    (
        (
            name,
            prop_oneof![
                Just(AppType::Scala),
                Just(AppType::Java),
                Just(AppType::Python),
                Just(AppType::R)
            ],
            "[1-3]\\.[0-9]{1,2}(\\.[0-9])?",
            "(local|s3a)://[a-z/]{1,16}\\.(jar|py|R)",
            option::of("[a-z]{1,6}(\\.[A-Z][a-z]{1,6}){1,2}"),
            vec(text(), 0..4),
            pod(format, false),
            pod(format, true),
        ),
        (
            btree_map("spark\\.[a-z.]{1,12}", text(), 0..4),
            btree_map("fs\\.[a-z.]{1,10}", text(), 0..3),
            deps(),
            option::of(word()),
            option::of(prop_oneof![
                Just("Always".to_owned()),
                Just("IfNotPresent".to_owned())
            ]),
            option::of(word()),
            any::<bool>(),
            option::of(prop_oneof![Just("2".to_owned()), Just("3".to_owned())]),
        ),
        (
            restart_policy(),
            option::of(dynamic_allocation()),
            vec(
                word().prop_map(|n| json!({"name": n, "emptyDir": {"sizeLimit": "1Gi"}})),
                0..2,
            ),
            option::of(0i64..100_000),
            small_map(),
            option::of(word()),
        ),
    )
        .prop_map(
            move |(
                (name, app_type, spark_version, main_file, main_class, arguments, driver, executor),
                (spark_conf, hadoop_conf, deps, image, pull, queue, spot, python),
                (restart_policy, dynamic_allocation, volumes, ttl, labels, mode),
            )| {
                let mut job = SparkJob {
                    name,
                    app_type,
                    spark_version,
                    main_application_file: Some(main_file),
                    main_class,
                    arguments,
                    driver,
                    executor,
                    spark_conf,
                    deps,
                    image,
                    image_pull_policy: pull,
                    queue,
                    python_version: python,
                    restart_policy,
                    volumes,
                    labels,
                    ..SparkJob::default()
                };
                if let Some(mode) = mode {
                    job.extra.insert("mode".into(), Value::String(mode));
                }
                match format {
                    Format::Bpg => job.spot_instance = spot,
                    Format::Manifest => {
                        job.hadoop_conf = hadoop_conf;
                        job.dynamic_allocation = dynamic_allocation;
                        job.time_to_live_seconds = ttl;
                    }
                }
                job
            },
        )
}

fn yaml(value: &impl serde::Serialize) -> String {
    serde_saphyr::to_string(value).expect("YAML rendering")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn bpg_requests_round_trip(job in job(Format::Bpg)) {
        let request = to_bpg_request(&job);
        let json = serde_json::to_string(&request).unwrap();
        let from_json = parse_bpg_request(&json, InputKind::Json, None)
            .unwrap_or_else(|d| panic!("{d}\n{json}"));
        prop_assert_eq!(&from_json.job, &job);
        prop_assert!(from_json.warnings.is_empty(), "{}", from_json.warnings);

        let text = yaml(&request);
        let from_yaml = parse_bpg_request(&text, InputKind::Yaml, None)
            .unwrap_or_else(|d| panic!("{d}\n{text}"));
        prop_assert_eq!(&from_yaml.job, &job);
    }

    #[test]
    fn manifests_round_trip(job in job(Format::Manifest)) {
        let manifest = to_manifest(&job, &job.name, "spark-jobs");
        let json = serde_json::to_string(&manifest).unwrap();
        let from_json = parse_manifest(&json, InputKind::Json, None)
            .unwrap_or_else(|d| panic!("{d}\n{json}"));
        prop_assert_eq!(&from_json.job, &job);
        prop_assert!(from_json.warnings.is_empty(), "{}", from_json.warnings);

        let text = yaml(&manifest);
        let from_yaml = parse_manifest(&text, InputKind::Yaml, None)
            .unwrap_or_else(|d| panic!("{d}\n{text}"));
        prop_assert_eq!(&from_yaml.job, &job);
    }
}
