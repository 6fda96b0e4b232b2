//! The shapes an application file takes beyond one request or manifest: several YAML documents,
//! Airflow's `template_spec` (`spark:` + `kubernetes:`), a `ScheduledSparkApplication`, and
//! Kubernetes resources of other kinds (named in errors, never read as applications).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::diagnostic::Diagnostics;
use crate::job::{EnvVar, SparkJob};
use crate::quantity::MemoryQuantity;

use super::manifest::{self, SPARK_OPERATOR_API_VERSION};
use super::pod;
use super::tree::{Key, Node, NodeValue, Pos, Report, Scalar, suggestion};
use super::{InputKind, request};

/// What one document holds, from its top-level keys.
pub(crate) enum Shape {
    /// A BPG request (no `apiVersion`/`kind`).
    Request,
    /// A manifest of `kind` (`SparkApplication` or anything else).
    Manifest { kind: Option<String> },
    /// Airflow's `template_spec` format: `spark:` (a SparkApplication) and `kubernetes:`.
    TemplateSpec,
}

pub(crate) fn shape(node: &Node) -> Shape {
    let NodeValue::Map(entries) = &node.value else {
        return Shape::Request;
    };
    let has = |name: &str| entries.iter().any(|(k, _)| k.name == name);
    if has("apiVersion") || has("kind") {
        Shape::Manifest {
            kind: node.str_field("kind").map(str::to_owned),
        }
    } else if has("spark") && !has("sparkVersion") && !has("mainApplicationFile") {
        Shape::TemplateSpec
    } else {
        Shape::Request
    }
}

impl Shape {
    /// Whether a document of this shape is a Spark application bpg runs.
    fn is_application(&self) -> bool {
        match self {
            Shape::Request | Shape::TemplateSpec => true,
            Shape::Manifest { kind } => kind.as_deref() == Some("SparkApplication"),
        }
    }
}

/// How a document is named in messages: "a ConfigMap `settings` (line 3)".
fn describe(node: &Node) -> String {
    let name = node
        .field("metadata")
        .and_then(|m| m.str_field("name"))
        .map(|n| format!(" `{n}`"))
        .unwrap_or_default();
    let what = match shape(node) {
        Shape::Request => "a BPG request".to_owned(),
        Shape::TemplateSpec => "an Airflow template_spec".to_owned(),
        Shape::Manifest { kind } => format!("a {}", kind.as_deref().unwrap_or("manifest")),
    };
    format!("{what}{name} (line {})", node.pos.line)
}

/// Why a manifest of another kind is not read, and what to do instead.
pub(crate) fn other_kind_message(kind: &str, api_version: Option<&str>) -> String {
    match kind {
        "ScheduledSparkApplication" => "a ScheduledSparkApplication runs its template on a \
            schedule, and bpg keeps schedules in pipelines: `bpg import FILE` turns it into a \
            pipeline with that schedule"
            .to_owned(),
        "SparkConnect" => "a SparkConnect is a long-running Spark Connect server, not a batch \
            application; bpg runs SparkApplication manifests and BPG requests"
            .to_owned(),
        _ if api_version.is_some_and(|v| v.starts_with("sparkoperator.k8s.io/")) => format!(
            "expected \"SparkApplication\", found {kind:?}: bpg runs SparkApplication manifests \
             and BPG requests"
        ),
        _ => format!(
            "a Kubernetes `{kind}`{}, not a Spark application; bpg reads SparkApplication \
             manifests ({SPARK_OPERATOR_API_VERSION}) and BPG requests",
            api_version.map(|v| format!(" ({v})")).unwrap_or_default()
        ),
    }
}

/// Picks the one application of a multi-document file: the other documents are named in a
/// warning, two applications are an error naming both, none an error naming what is there.
pub(crate) fn select<'n>(docs: &'n [Node], report: &mut Report<'_>) -> Option<&'n Node> {
    if docs.len() == 1 {
        return docs.first();
    }
    let apps: Vec<&Node> = docs.iter().filter(|d| shape(d).is_application()).collect();
    match apps.as_slice() {
        [app] => {
            let others: Vec<String> = docs
                .iter()
                .filter(|d| !std::ptr::eq(*d, *app))
                .map(describe)
                .collect();
            report.warning(
                "",
                app.pos,
                format!(
                    "{} other document(s) ignored: {}; only the Spark application is read",
                    others.len(),
                    others.join(", ")
                ),
            );
            Some(app)
        }
        [] => {
            let all: Vec<String> = docs.iter().map(describe).collect();
            let at = docs.first().map_or(Pos::default(), |d| d.pos);
            report.error(
                "",
                at,
                format!(
                    "no Spark application in this file, which holds {}; bpg reads \
                     SparkApplication manifests and BPG requests",
                    all.join(", ")
                ),
            );
            None
        }
        several => {
            let all: Vec<String> = several.iter().map(|d| describe(d)).collect();
            report.error(
                "",
                several[1].pos,
                format!(
                    "{} Spark applications in one file: {}; put each in its own file",
                    several.len(),
                    all.join(" and ")
                ),
            );
            None
        }
    }
}

/// Reads any one application document: request, manifest or template spec.
pub(crate) fn read_application(root: &Node, report: &mut Report<'_>) -> Option<SparkJob> {
    match shape(root) {
        Shape::Request => request::job_from_request(root, report),
        Shape::Manifest { .. } => manifest::job_from_manifest(root, report),
        Shape::TemplateSpec => job_from_template_spec(root, report),
    }
}

/// Airflow-only keys of a template's `spark:` manifest, handled by Airflow before the manifest
/// reaches the API server.
const TEMPLATE_SPARK_EXTRAS: &[&str] = &["version", "apiGroup"];

/// `kubernetes:` settings of a template spec, as Airflow's `KubernetesSpec` knows them.
const KUBERNETES_FIELDS: &[&str] = &[
    "env_vars",
    "env_from",
    "node_selector",
    "affinity",
    "tolerations",
    "config_map_mounts",
    "volume_mounts",
    "volumes",
    "from_env_config_map",
    "from_env_secret",
    "image_pull_secrets",
    "in_cluster",
    "conn_id",
    "kube_config_file",
    "cluster_context",
];

/// Reads Airflow's `SparkKubernetesOperator(template_spec=...)` format: the `spark:` manifest as
/// Airflow's `SparkJobSpec` prepares it (`container_resources` into cores, core limit and memory;
/// `spec.labels` onto both pods), then the `kubernetes:` pod settings onto driver and executor.
fn job_from_template_spec(root: &Node, report: &mut Report<'_>) -> Option<SparkJob> {
    let mut top = report.fields("", root)?;
    let Some(spark) = top.take("spark") else {
        report.error(
            "spark",
            root.pos,
            "missing required field `spark` (the SparkApplication)",
        );
        return None;
    };
    let spark = prepare_template_spark(spark, report);
    let before = report.diagnostics.len();
    let job = manifest::job_from_manifest(&spark, report);
    for d in &mut report.diagnostics.0[before..] {
        d.field = format!("spark.{}", d.field)
            .trim_end_matches('.')
            .to_owned();
        // Airflow's own template leaves the program to the operator's `code_path`.
        if d.field == "spark.spec.mainApplicationFile" && d.message.starts_with("missing") {
            d.severity = crate::Severity::Warning;
            d.message = "no `mainApplicationFile`: Airflow takes it from the operator's \
                         `code_path`; set it here before the application runs"
                .into();
        }
    }
    let mut job = job?;
    if let Some(k8s) = top.take("kubernetes") {
        apply_kubernetes(report, k8s, &mut job);
    }
    for (key, _) in top.rest() {
        report.warning(
            &key.name,
            key.pos,
            format!(
                "unknown field `{}`: a template_spec has `spark` and `kubernetes`; it is ignored{}",
                key.name,
                suggestion(&key.name, &["spark", "kubernetes"])
            ),
        );
    }
    Some(job)
}

fn scalar(pos: Pos, value: Scalar) -> Node {
    let text = match &value {
        Scalar::Int(i) => i.to_string(),
        Scalar::Str(s) => s.clone(),
        _ => String::new(),
    };
    Node {
        value: NodeValue::Scalar(value, text),
        pos,
    }
}

fn entries_mut(node: &mut Node) -> Option<&mut Vec<(Key, Node)>> {
    match &mut node.value {
        NodeValue::Map(entries) => Some(entries),
        _ => None,
    }
}

fn remove(entries: &mut Vec<(Key, Node)>, name: &str) -> Option<(Key, Node)> {
    let i = entries.iter().position(|(k, _)| k.name == name)?;
    Some(entries.remove(i))
}

fn set_if_absent(entries: &mut Vec<(Key, Node)>, key: &Key, name: &str, value: Node) {
    if !entries.iter().any(|(k, _)| k.name == name) {
        let key = Key {
            name: name.to_owned(),
            pos: key.pos,
        };
        entries.push((key, value));
    }
}

/// What Airflow's `SparkJobSpec` does to the `spark:` manifest before sending it.
fn prepare_template_spark(spark: &Node, report: &mut Report<'_>) -> Node {
    let mut spark = spark.clone();
    let Some(top) = entries_mut(&mut spark) else {
        return spark;
    };
    for name in TEMPLATE_SPARK_EXTRAS {
        remove(top, name);
    }
    let Some((_, spec)) = top.iter_mut().find(|(k, _)| k.name == "spec") else {
        return spark;
    };
    let Some(spec) = entries_mut(spec) else {
        return spark;
    };
    let labels = remove(spec, "labels").map(|(_, n)| n);
    for role in ["driver", "executor"] {
        let Some((_, pod_node)) = spec.iter_mut().find(|(k, _)| k.name == role) else {
            continue;
        };
        let Some(pod) = entries_mut(pod_node) else {
            continue;
        };
        if let Some((key, resources)) = remove(pod, "container_resources") {
            let path = format!("spark.spec.{role}.container_resources");
            container_resources(report, &path, &key, &resources, pod);
        }
        if let Some(labels) = labels
            .as_ref()
            .filter(|l| matches!(&l.value, NodeValue::Map(e) if !e.is_empty()))
        {
            match pod.iter_mut().find(|(k, _)| k.name == "labels") {
                Some((_, pod_labels)) => merge_map(pod_labels, labels),
                None => pod.push((
                    Key {
                        name: "labels".into(),
                        pos: labels.pos,
                    },
                    labels.clone(),
                )),
            }
        }
    }
    spark
}

/// Adds the entries of `from` that `into` lacks (the pod's own labels win).
fn merge_map(into: &mut Node, from: &Node) {
    if let (NodeValue::Map(to), NodeValue::Map(extra)) = (&mut into.value, &from.value) {
        for (k, v) in extra {
            if !to.iter().any(|(key, _)| key.name == k.name) {
                to.push((k.clone(), v.clone()));
            }
        }
    }
}

/// Airflow's `SparkResources`: `cpu.request` is the core count, `cpu.limit` the core limit,
/// `memory.limit` the pod's memory of which Spark's 40% overhead is taken off, and a GPU with a
/// name and a quantity becomes `gpu`.
fn container_resources(
    report: &mut Report<'_>,
    path: &str,
    key: &Key,
    resources: &Node,
    pod: &mut Vec<(Key, Node)>,
) {
    let at = |n: &Node, name: &str| n.field(name).filter(|v| !v.is_null()).cloned();
    if let Some(cpu) = resources.field("cpu") {
        if let Some(request) = at(cpu, "request") {
            let cores = match &request.value {
                NodeValue::Scalar(Scalar::Int(i), _) => Some(*i),
                NodeValue::Scalar(Scalar::Float(f), _) => Some(f.trunc() as i128),
                NodeValue::Scalar(Scalar::Str(s), _) => {
                    s.trim().parse::<f64>().ok().map(|f| f.trunc() as i128)
                }
                _ => None,
            };
            match cores.filter(|c| *c > 0) {
                Some(c) => set_if_absent(pod, key, "cores", scalar(request.pos, Scalar::Int(c))),
                None => report.error(
                    &format!("{path}.cpu.request"),
                    request.pos,
                    "expected a whole number of cores (Airflow reads it as int(float(request)))",
                ),
            }
        }
        if let Some(limit) = at(cpu, "limit") {
            set_if_absent(pod, key, "coreLimit", limit);
        }
    }
    if let Some(memory) = resources.field("memory")
        && let Some(limit) = at(memory, "limit")
    {
        let field = format!("{path}.memory.limit");
        if let Some(q) = report.memory(&field, &limit) {
            // Airflow divides by 1.4 because spark-operator adds 40% overhead to `memory`.
            let mib = (q.bytes() as f64 / (1024.0 * 1024.0) / 1.4).floor() as u64;
            let memory = MemoryQuantity::from_mib(mib.max(1)).to_spark_string();
            set_if_absent(pod, key, "memory", scalar(limit.pos, Scalar::Str(memory)));
        }
    }
    if let Some(gpu) = resources.field("gpu")
        && let (Some(name), Some(quantity)) = (at(gpu, "name"), at(gpu, "quantity"))
        && !matches!(quantity.value, NodeValue::Scalar(Scalar::Int(0), _))
    {
        let value = Node {
            value: NodeValue::Map(vec![
                (
                    Key {
                        name: "name".into(),
                        pos: name.pos,
                    },
                    name,
                ),
                (
                    Key {
                        name: "quantity".into(),
                        pos: quantity.pos,
                    },
                    quantity,
                ),
            ]),
            pos: gpu.pos,
        };
        set_if_absent(pod, key, "gpu", value);
    }
}

/// Applies a template spec's `kubernetes:` section to both pods, as Airflow's
/// `CustomObjectLauncher` does: env vars, env from secrets and config maps, node selector,
/// affinity, tolerations, volumes and mounts (config map mounts included), image pull secrets.
/// The connection settings (`conn_id`, `in_cluster`, ...) say how Airflow reached the cluster;
/// in bpg the task's connection does.
fn apply_kubernetes(report: &mut Report<'_>, node: &Node, job: &mut SparkJob) {
    let Some(mut k8s) = report.fields("kubernetes", node) else {
        return;
    };
    let mut env: Vec<EnvVar> = Vec::new();
    if let Some(n) = k8s.take("env_vars") {
        let path = "kubernetes.env_vars";
        match &n.value {
            NodeValue::Map(_) => env.extend(
                report
                    .string_map(path, n)
                    .into_iter()
                    .map(|(k, v)| EnvVar::new(k, v)),
            ),
            _ => env.extend(pod::read_env(report, path, n)),
        }
    }
    let mut env_from: Vec<Value> = Vec::new();
    if let Some(n) = k8s.take("env_from") {
        env_from.extend(report.object_list("kubernetes.env_from", n));
    }
    if let Some(n) = k8s.take("from_env_config_map") {
        for name in report.string_list("kubernetes.from_env_config_map", n) {
            env_from.push(json!({"configMapRef": {"name": name}}));
        }
    }
    if let Some(n) = k8s.take("from_env_secret") {
        for name in report.string_list("kubernetes.from_env_secret", n) {
            env_from.push(json!({"secretRef": {"name": name}}));
        }
    }
    let node_selector = k8s
        .take("node_selector")
        .map(|n| report.string_map("kubernetes.node_selector", n))
        .unwrap_or_default();
    let affinity = k8s
        .take("affinity")
        .and_then(|n| report.fields("kubernetes.affinity", n).map(|_| n.to_json()))
        .and_then(non_empty_affinity);
    let tolerations = k8s
        .take("tolerations")
        .map(|n| report.object_list("kubernetes.tolerations", n))
        .unwrap_or_default();
    let mut volumes = k8s
        .take("volumes")
        .map(|n| report.object_list("kubernetes.volumes", n))
        .unwrap_or_default();
    let mut mounts = k8s
        .take("volume_mounts")
        .map(|n| report.object_list("kubernetes.volume_mounts", n))
        .unwrap_or_default();
    if let Some(n) = k8s.take("config_map_mounts") {
        for (name, path) in report.string_map("kubernetes.config_map_mounts", n) {
            volumes.push(json!({"name": name, "configMap": {"name": name}}));
            mounts.push(json!({"name": name, "mountPath": path}));
        }
    }
    let pull_secrets: Vec<String> = match k8s.take("image_pull_secrets") {
        Some(n) if matches!(n.value, NodeValue::Seq(_)) => {
            report.string_list("kubernetes.image_pull_secrets", n)
        }
        Some(n) => report
            .string("kubernetes.image_pull_secrets", n)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    for name in [
        "in_cluster",
        "conn_id",
        "kube_config_file",
        "cluster_context",
    ] {
        let _ = k8s.take(name);
    }
    for (key, _) in k8s.rest() {
        report.warning(
            &format!("kubernetes.{}", key.name),
            key.pos,
            format!(
                "unknown field `{}`: not one of Airflow's template_spec kubernetes settings; it is ignored{}",
                key.name,
                suggestion(&key.name, KUBERNETES_FIELDS)
            ),
        );
    }

    for pod in [&mut job.driver, &mut job.executor] {
        pod.env.extend(env.iter().cloned());
        if !env_from.is_empty() {
            append(&mut pod.extra, "envFrom", &env_from);
        }
        for (k, v) in &node_selector {
            pod.node_selector
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        if let Some(affinity) = &affinity {
            pod.extra
                .entry("affinity".into())
                .or_insert_with(|| affinity.clone());
        }
        if !tolerations.is_empty() {
            append(&mut pod.extra, "tolerations", &tolerations);
        }
        pod.volume_mounts.extend(mounts.iter().cloned());
    }
    job.volumes.extend(volumes);
    if !pull_secrets.is_empty() {
        let secrets: Vec<Value> = pull_secrets.into_iter().map(Value::String).collect();
        append(&mut job.extra, "imagePullSecrets", &secrets);
    }
}

/// Appends `items` to the list at `key` of a pass-through map.
fn append(map: &mut BTreeMap<String, Value>, key: &str, items: &[Value]) {
    match map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(list) => list.extend(items.iter().cloned()),
        other => *other = Value::Array(items.to_vec()),
    }
}

/// Airflow's template ships `affinity: {nodeAffinity: {}, podAffinity: {}, podAntiAffinity: {}}`:
/// empty parts say nothing and are left out.
fn non_empty_affinity(affinity: Value) -> Option<Value> {
    let Value::Object(parts) = affinity else {
        return None;
    };
    let kept: Map<String, Value> = parts
        .into_iter()
        .filter(|(_, v)| !matches!(v, Value::Object(m) if m.is_empty()) && !v.is_null())
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// A spark-operator `ScheduledSparkApplication`: a schedule around a SparkApplication template.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledApplication {
    /// `metadata.name`.
    pub name: String,
    /// `spec.schedule` as written: cron, a preset (`@daily`) or `@every <duration>`.
    pub schedule: String,
    /// `spec.concurrencyPolicy`: `Allow` (the default), `Forbid` or `Replace`.
    pub concurrency_policy: Option<String>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// The template as a `SparkApplication` manifest (template verbatim, name and labels from
    /// the ScheduledSparkApplication).
    pub application: Value,
    /// The template read as a job.
    pub job: SparkJob,
    /// Problems that did not stop reading it.
    pub warnings: Diagnostics,
}

const SCHEDULED_SPEC_FIELDS: &[&str] = &[
    "schedule",
    "concurrencyPolicy",
    "suspend",
    "successfulRunHistoryLimit",
    "failedRunHistoryLimit",
    "timeZone",
    "template",
];

/// Reads a spark-operator `ScheduledSparkApplication` (`sparkoperator.k8s.io/v1beta2`): its
/// schedule, concurrency policy and template, the template checked as a SparkApplication spec.
///
/// ```
/// use bpg_core::formats::parse_scheduled_application;
/// let text = r#"
/// apiVersion: sparkoperator.k8s.io/v1beta2
/// kind: ScheduledSparkApplication
/// metadata: {name: nightly}
/// spec:
///   schedule: "@every 5m"
///   concurrencyPolicy: Forbid
///   template:
///     type: Scala
///     sparkVersion: "3.5.1"
///     mainClass: org.apache.spark.examples.SparkPi
///     mainApplicationFile: local:///opt/spark/examples/jars/spark-examples.jar
///     driver: {cores: 1, memory: 512m}
///     executor: {instances: 1, memory: 512m}
/// "#;
/// let s = parse_scheduled_application(text, None).unwrap();
/// assert_eq!((s.name.as_str(), s.schedule.as_str()), ("nightly", "@every 5m"));
/// assert_eq!(s.application["kind"], "SparkApplication");
/// assert_eq!(s.job.spark_version, "3.5.1");
/// ```
pub fn parse_scheduled_application(
    text: &str,
    file: Option<&Path>,
) -> Result<ScheduledApplication, Diagnostics> {
    let mut report = Report::new(file);
    let kind = file
        .and_then(InputKind::from_path)
        .unwrap_or_else(|| InputKind::detect(text));
    let root = match super::tree::parse_document(text, kind) {
        Ok(root) => root,
        Err(d) => {
            report.push(d);
            return Err(report.diagnostics);
        }
    };
    let scheduled = read_scheduled(&root, &mut report);
    let mut diagnostics = report.diagnostics;
    diagnostics
        .0
        .sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
    match scheduled {
        Some(mut s) if !diagnostics.has_errors() => {
            s.warnings = diagnostics;
            Ok(s)
        }
        _ => Err(diagnostics),
    }
}

fn read_scheduled(root: &Node, report: &mut Report<'_>) -> Option<ScheduledApplication> {
    let mut top = report.fields("", root)?;
    match top
        .take("kind")
        .and_then(|n| report.string("kind", n).map(|k| (k, n)))
    {
        Some((k, _)) if k == "ScheduledSparkApplication" => {}
        Some((k, n)) => {
            report.error(
                "kind",
                n.pos,
                format!("expected \"ScheduledSparkApplication\", found {k:?}"),
            );
            return None;
        }
        None => {
            report.error(
                "kind",
                root.pos,
                "missing required field `kind` (\"ScheduledSparkApplication\")",
            );
            return None;
        }
    }
    if let Some(n) = top.take("apiVersion")
        && let Some(v) = report.string("apiVersion", n)
        && v != SPARK_OPERATOR_API_VERSION
    {
        report.error(
            "apiVersion",
            n.pos,
            format!("expected {SPARK_OPERATOR_API_VERSION:?}, found {v:?}"),
        );
    }
    let metadata = top.take("metadata");
    let name = metadata
        .and_then(|m| m.field("name"))
        .and_then(|n| report.string("metadata.name", n))
        .unwrap_or_default();
    let _ = top.take("status");
    let Some(spec_node) = top.take("spec") else {
        report.error("spec", root.pos, "missing required field `spec`");
        return None;
    };
    let mut spec = report.fields("spec", spec_node)?;
    let schedule = match spec.take("schedule") {
        Some(n) => report.string("spec.schedule", n).unwrap_or_default(),
        None => {
            report.error(
                "spec.schedule",
                spec_node.pos,
                "missing required field `schedule` (a cron expression or `@every 5m`)",
            );
            String::new()
        }
    };
    let concurrency_policy = match spec.take("concurrencyPolicy") {
        Some(n) => match report.string("spec.concurrencyPolicy", n) {
            Some(p) if ["Allow", "Forbid", "Replace"].contains(&p.as_str()) => Some(p),
            Some(p) => {
                report.error(
                    "spec.concurrencyPolicy",
                    n.pos,
                    format!("expected one of Allow, Forbid, Replace, found {p:?}"),
                );
                None
            }
            None => None,
        },
        None => None,
    };
    let suspend = spec
        .take("suspend")
        .and_then(|n| report.boolean("spec.suspend", n))
        .unwrap_or(false);
    for name in [
        "successfulRunHistoryLimit",
        "failedRunHistoryLimit",
        "timeZone",
    ] {
        let _ = spec.take(name);
    }
    let Some(template) = spec.take("template") else {
        report.error(
            "spec.template",
            spec_node.pos,
            "missing required field `template` (the SparkApplication spec)",
        );
        return None;
    };
    for (key, _) in spec.rest() {
        report.warning(
            &format!("spec.{}", key.name),
            key.pos,
            format!(
                "unknown field `{}`: not a ScheduledSparkApplication field{}",
                key.name,
                suggestion(&key.name, SCHEDULED_SPEC_FIELDS)
            ),
        );
    }
    let mut application = Map::new();
    application.insert("apiVersion".into(), SPARK_OPERATOR_API_VERSION.into());
    application.insert("kind".into(), "SparkApplication".into());
    let mut meta = Map::new();
    meta.insert("name".into(), name.clone().into());
    if let Some(labels) = metadata.and_then(|m| m.field("labels")) {
        meta.insert("labels".into(), labels.to_json());
    }
    application.insert("metadata".into(), Value::Object(meta));
    application.insert("spec".into(), template.to_json());
    let application = Value::Object(application);

    // The template is checked as the SparkApplication it becomes, its problems located in it.
    let as_manifest = Node {
        pos: root.pos,
        value: NodeValue::Map(vec![
            (
                Key {
                    name: "apiVersion".into(),
                    pos: root.pos,
                },
                scalar(root.pos, Scalar::Str(SPARK_OPERATOR_API_VERSION.into())),
            ),
            (
                Key {
                    name: "kind".into(),
                    pos: root.pos,
                },
                scalar(root.pos, Scalar::Str("SparkApplication".into())),
            ),
            (
                Key {
                    name: "spec".into(),
                    pos: template.pos,
                },
                template.clone(),
            ),
        ]),
    };
    let before = report.diagnostics.len();
    let job = manifest::job_from_manifest(&as_manifest, report);
    for d in &mut report.diagnostics.0[before..] {
        if let Some(rest) = d.field.strip_prefix("spec") {
            d.field = format!("spec.template{rest}");
        }
    }
    let mut job = job?;
    job.name = name.clone();
    if let Some(labels) = metadata.and_then(|m| m.field("labels")) {
        job.labels = report.string_map("metadata.labels", labels);
    }
    Some(ScheduledApplication {
        name,
        schedule,
        concurrency_policy,
        suspend,
        application,
        job,
        warnings: Diagnostics::new(),
    })
}
