//! Readers and writers shared by both formats: driver/executor pods, dependencies, restart policy.

use serde_json::{Map, Value};

use crate::job::{Dependencies, EnvVar, PodSpec, RestartPolicy};

use super::tree::{Fields, Node, NodeValue, Report, suggestion};

/// Which format a pod spec is read from: the known field sets differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Bpg,
    Manifest,
}

/// Driver or executor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Driver,
    Executor,
}

/// Pod fields the model names, in both formats (wire names).
const MODELLED_COMMON: &[&str] = &[
    "cores",
    "coreRequest",
    "coreLimit",
    "memory",
    "memoryOverhead",
    "image",
    "serviceAccount",
    "env",
    "labels",
    "annotations",
    "javaOptions",
    "volumeMounts",
];

/// Pod fields BPG's DriverSpec/ExecutorSpec know but the model keeps in `extra`.
const BPG_PASS_THROUGH: &[&str] = &[
    "terminationGracePeriodSeconds",
    "securityContext",
    "affinity",
    "dnsConfig",
];
const BPG_DRIVER_ONLY: &[&str] = &["podName", "kubernetesMaster"];

/// spark-operator `SparkPodSpec` fields the model keeps in `extra`.
const MANIFEST_PASS_THROUGH: &[&str] = &[
    "template",
    "memoryLimit",
    "gpu",
    "configMaps",
    "secrets",
    "envVars",
    "envFrom",
    "envSecretKeyRefs",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "schedulerName",
    "sidecars",
    "initContainers",
    "hostNetwork",
    "dnsConfig",
    "terminationGracePeriodSeconds",
    "hostAliases",
    "shareProcessNamespace",
    "lifecycle",
    "ports",
    "priorityClassName",
];
const MANIFEST_DRIVER_ONLY: &[&str] = &[
    "podName",
    "kubernetesMaster",
    "serviceAnnotations",
    "serviceLabels",
];

/// Reads a driver or executor spec. A BPG driver's `labels` land in `PodSpec::labels` too; the
/// request reader moves them to the job's routing labels.
pub(crate) fn read_pod(
    report: &mut Report<'_>,
    mut fields: Fields<'_>,
    flavor: Flavor,
    role: Role,
) -> PodSpec {
    let mut pod = PodSpec::default();
    if let Some(n) = fields.take("cores") {
        pod.cores = report
            .integer::<u32>(&fields.path("cores"), n, "a positive integer")
            .filter(|c| {
                *c > 0 || {
                    report.error(
                        &fields.path("cores"),
                        n.pos,
                        "expected a positive integer, found 0",
                    );
                    false
                }
            });
    }
    if let Some(n) = fields.take("coreRequest") {
        pod.core_request = report.string(&fields.path("coreRequest"), n);
    }
    if let Some(n) = fields.take("coreLimit") {
        pod.core_limit = report.string(&fields.path("coreLimit"), n);
    }
    if let Some(n) = fields.take("memory") {
        pod.memory = report.memory(&fields.path("memory"), n);
    }
    if let Some(n) = fields.take("memoryOverhead") {
        pod.memory_overhead = report.memory(&fields.path("memoryOverhead"), n);
    }
    if let Some(n) = fields.take("image") {
        pod.image = report.string(&fields.path("image"), n);
    }
    if let Some(n) = fields.take("serviceAccount") {
        pod.service_account = report.string(&fields.path("serviceAccount"), n);
    }
    if let Some(n) = fields.take("env") {
        pod.env = read_env(report, &fields.path("env"), n);
    }
    if let Some(n) = fields.take("labels") {
        pod.labels = report.string_map(&fields.path("labels"), n);
    }
    if let Some(n) = fields.take("annotations") {
        pod.annotations = report.string_map(&fields.path("annotations"), n);
    }
    if let Some(n) = fields.take("javaOptions") {
        pod.java_options = report.string(&fields.path("javaOptions"), n);
    }
    if let Some(n) = fields.take("volumeMounts") {
        pod.volume_mounts = report.object_list(&fields.path("volumeMounts"), n);
    }
    if role == Role::Executor {
        if let Some(n) = fields.take("instances") {
            pod.instances =
                report.integer::<u32>(&fields.path("instances"), n, "a non-negative integer");
        }
        if let Some(n) = fields.take("deleteOnTermination") {
            pod.delete_on_termination = report.boolean(&fields.path("deleteOnTermination"), n);
        }
    }
    if flavor == Flavor::Manifest
        && let Some(n) = fields.take("nodeSelector")
    {
        pod.node_selector = report.string_map(&fields.path("nodeSelector"), n);
    }

    let (pass_through, driver_only) = match flavor {
        Flavor::Bpg => (BPG_PASS_THROUGH, BPG_DRIVER_ONLY),
        Flavor::Manifest => (MANIFEST_PASS_THROUGH, MANIFEST_DRIVER_ONLY),
    };
    let mut known: Vec<&str> = MODELLED_COMMON
        .iter()
        .chain(pass_through)
        .copied()
        .collect();
    if role == Role::Driver {
        known.extend_from_slice(driver_only);
    } else {
        known.extend_from_slice(&["instances", "deleteOnTermination"]);
    }
    if flavor == Flavor::Manifest {
        known.push("nodeSelector");
    }
    let what = match (flavor, role) {
        (Flavor::Bpg, Role::Driver) => "BPG's DriverSpec has no such field and ignores it",
        (Flavor::Bpg, Role::Executor) => "BPG's ExecutorSpec has no such field and ignores it",
        (Flavor::Manifest, _) => {
            "not a spark-operator v1beta2 pod field; the API server may drop it"
        }
    };
    for (key, node) in fields.rest() {
        if !known.contains(&key.name.as_str()) {
            report.warning(
                &fields.path(&key.name),
                key.pos,
                format!(
                    "unknown field `{}`: {what}{}",
                    key.name,
                    suggestion(&key.name, &known)
                ),
            );
        }
        if !node.is_null() {
            pod.extra.insert(key.name.clone(), node.to_json());
        }
    }
    pod
}

pub(crate) fn read_env(report: &mut Report<'_>, path: &str, node: &Node) -> Vec<EnvVar> {
    let NodeValue::Seq(items) = &node.value else {
        report.expected(path, node, "a list of {name, value} entries");
        return Vec::new();
    };
    let mut env = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(mut fields) = report.fields(&item_path, item) else {
            if item.is_null() {
                report.expected(&item_path, item, "a {name, value} entry");
            }
            continue;
        };
        let name = match fields.take("name") {
            Some(n) => report.string(&fields.path("name"), n),
            None => {
                report.error(&item_path, item.pos, "missing required field `name`");
                None
            }
        };
        let value = fields
            .take("value")
            .and_then(|n| report.string(&fields.path("value"), n));
        let value_from = fields.take("valueFrom").map(Node::to_json);
        warn_unknown(
            report,
            &fields,
            &["name", "value", "valueFrom"],
            "an env entry",
        );
        if let Some(name) = name {
            env.push(EnvVar {
                name,
                value,
                value_from,
            });
        }
    }
    env
}

/// Warns about every field nobody took (used where nothing can keep them).
pub(crate) fn warn_unknown(
    report: &mut Report<'_>,
    fields: &Fields<'_>,
    known: &[&str],
    what: &str,
) {
    for (key, _) in fields.rest() {
        report.warning(
            &fields.path(&key.name),
            key.pos,
            format!(
                "unknown field `{}` in {what}; it is ignored{}",
                key.name,
                suggestion(&key.name, known)
            ),
        );
    }
}

const DEPS_FIELDS: &[&str] = &[
    "jars",
    "files",
    "pyFiles",
    "packages",
    "excludePackages",
    "repositories",
    "archives",
];

pub(crate) fn read_deps(report: &mut Report<'_>, path: &str, node: &Node) -> Dependencies {
    let mut deps = Dependencies::default();
    let Some(mut fields) = report.fields(path, node) else {
        return deps;
    };
    let mut list = |name: &str, report: &mut Report<'_>| match fields.take(name) {
        Some(n) => report.string_list(&format!("{path}.{name}"), n),
        None => Vec::new(),
    };
    deps.jars = list("jars", report);
    deps.files = list("files", report);
    deps.py_files = list("pyFiles", report);
    deps.packages = list("packages", report);
    deps.exclude_packages = list("excludePackages", report);
    deps.repositories = list("repositories", report);
    deps.archives = list("archives", report);
    warn_unknown(report, &fields, DEPS_FIELDS, "deps");
    deps
}

const RESTART_FIELDS: &[&str] = &[
    "type",
    "onSubmissionFailureRetries",
    "onFailureRetries",
    "onSubmissionFailureRetryInterval",
    "onFailureRetryInterval",
];

/// Reads a restart policy; `{type: Never}` alone is the default and reads as `None`.
pub(crate) fn read_restart_policy(
    report: &mut Report<'_>,
    path: &str,
    node: &Node,
) -> Option<RestartPolicy> {
    let mut fields = report.fields(path, node)?;
    let mut policy = RestartPolicy {
        kind: "Never".to_owned(),
        ..RestartPolicy::default()
    };
    if let Some(n) = fields.take("type") {
        let type_path = fields.path("type");
        match report.string(&type_path, n).as_deref() {
            Some("Always") => report.error(
                &type_path,
                n.pos,
                "`Always` reruns the application after it finishes, so the task would never end; use `Never` (the runner retries) or `OnFailure`",
            ),
            Some(kind @ ("Never" | "OnFailure")) => policy.kind = kind.to_owned(),
            Some(other) => report.error(
                &type_path,
                n.pos,
                format!("expected `Never` or `OnFailure`, found {other:?}"),
            ),
            None => {}
        }
    }
    let mut count = |name: &str, report: &mut Report<'_>| {
        fields
            .take(name)
            .and_then(|n| {
                report.integer::<i32>(&format!("{path}.{name}"), n, "a non-negative integer")
            })
            .filter(|v| *v >= 0)
    };
    policy.on_submission_failure_retries = count("onSubmissionFailureRetries", report);
    policy.on_failure_retries = count("onFailureRetries", report);
    let mut seconds = |name: &str, report: &mut Report<'_>| {
        fields.take(name).and_then(|n| {
            report.integer::<i64>(&format!("{path}.{name}"), n, "a number of seconds")
        })
    };
    policy.on_submission_failure_retry_interval =
        seconds("onSubmissionFailureRetryInterval", report);
    policy.on_failure_retry_interval = seconds("onFailureRetryInterval", report);
    warn_unknown(report, &fields, RESTART_FIELDS, "restartPolicy");
    let is_default = policy
        == RestartPolicy {
            kind: "Never".to_owned(),
            ..RestartPolicy::default()
        };
    (!is_default).then_some(policy)
}

/// The restart policy in wire form; `None` renders as `{type: Never}` (the runner owns retries).
pub(crate) fn restart_policy_json(policy: Option<&RestartPolicy>) -> Value {
    let mut map = Map::new();
    match policy {
        None => {
            map.insert("type".into(), "Never".into());
        }
        Some(p) => {
            map.insert("type".into(), p.kind.clone().into());
            insert_opt(
                &mut map,
                "onSubmissionFailureRetries",
                p.on_submission_failure_retries,
            );
            insert_opt(&mut map, "onFailureRetries", p.on_failure_retries);
            insert_opt(
                &mut map,
                "onSubmissionFailureRetryInterval",
                p.on_submission_failure_retry_interval,
            );
            insert_opt(
                &mut map,
                "onFailureRetryInterval",
                p.on_failure_retry_interval,
            );
        }
    }
    Value::Object(map)
}

pub(crate) fn insert_opt<T: Into<Value>>(
    map: &mut Map<String, Value>,
    key: &str,
    value: Option<T>,
) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v.into());
    }
}

pub(crate) fn deps_json(deps: &Dependencies) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, list) in [
        ("jars", &deps.jars),
        ("files", &deps.files),
        ("pyFiles", &deps.py_files),
        ("packages", &deps.packages),
        ("excludePackages", &deps.exclude_packages),
        ("repositories", &deps.repositories),
        ("archives", &deps.archives),
    ] {
        if !list.is_empty() {
            map.insert(key.to_owned(), list.clone().into());
        }
    }
    map
}

pub(crate) fn env_json(env: &[EnvVar]) -> Value {
    Value::Array(
        env.iter()
            .map(|e| {
                let mut map = Map::new();
                map.insert("name".into(), e.name.clone().into());
                insert_opt(&mut map, "value", e.value.clone());
                insert_opt(&mut map, "valueFrom", e.value_from.clone());
                Value::Object(map)
            })
            .collect(),
    )
}
