//! Every response schema of `bpg-openapi.yaml` has a fixture that deserializes into the client's
//! type, and everything the client puts on the wire uses the spec's field names.

use std::collections::BTreeSet;
use std::path::Path;

use bpg_client::{
    DeleteSubmissionResponse, DriverInfo, HealthcheckResponse, SparkApplicationSpec,
    SubmissionStatus, SubmissionSummary, SubmitApplicationResponse, UploadResponse, VersionInfo,
};
use bpg_core::formats::bpg::{
    Dependencies, DriverSpec, EnvVar, ExecutorSpec, RestartPolicy, SubmitApplicationRequest,
};
use serde_json::{Value, json};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn openapi() -> Value {
    let text = std::fs::read_to_string(fixtures().join("bpg-openapi.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    &spec["components"]["schemas"][name]
}

fn ref_name(value: &Value) -> Option<&str> {
    value.get("$ref")?.as_str()?.rsplit('/').next()
}

/// Schemas named in any response of any operation.
fn response_schemas(spec: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for operations in spec["paths"].as_object().unwrap().values() {
        for operation in operations.as_object().unwrap().values() {
            let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                continue;
            };
            for response in responses.values() {
                if let Some(content) = response.get("content").and_then(Value::as_object) {
                    for media in content.values() {
                        if let Some(name) = media.get("schema").and_then(ref_name) {
                            names.insert(name.to_owned());
                        }
                    }
                }
            }
        }
    }
    names
}

/// Checks that every key of `value` is a property of `schema` (following `$ref`s and arrays),
/// with `extra` allowed in addition at the top level; returns the unknown keys as dotted paths.
fn unknown_keys(
    spec: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    extra: &[&str],
) -> Vec<String> {
    let schema = match ref_name(schema) {
        Some(name) => self::schema(spec, name),
        None => schema,
    };
    let mut unknown = Vec::new();
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match properties.and_then(|p| p.get(key)) {
                    Some(child_schema) => {
                        unknown.extend(unknown_keys(spec, child_schema, child, &path, &[]));
                    }
                    None if additional.is_some() => {}
                    None if extra.contains(&key.as_str()) => {}
                    None => unknown.push(path),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown.extend(unknown_keys(
                        spec,
                        item_schema,
                        item,
                        &format!("{at}[{i}]"),
                        &[],
                    ));
                }
            }
        }
        _ => {}
    }
    unknown
}

fn parse_as(schema: &str, body: &str) -> Result<Value, String> {
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(
        body: &str,
    ) -> Result<Value, String> {
        let typed: T = serde_json::from_str(body).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    match schema {
        "GetSubmissionStatusResponse" => round::<SubmissionStatus>(body),
        "SubmitApplicationResponse" => round::<SubmitApplicationResponse>(body),
        "DeleteSubmissionResponse" => round::<DeleteSubmissionResponse>(body),
        "GetDriverInfoResponse" => round::<DriverInfo>(body),
        "SparkApplicationSpec" => round::<SparkApplicationSpec>(body),
        "UploadS3Response" => round::<UploadResponse>(body),
        "HealthcheckResponse" => round::<HealthcheckResponse>(body),
        other => Err(format!("no client type for response schema {other}")),
    }
}

#[test]
fn every_response_schema_has_a_complete_fixture_that_round_trips() {
    let spec = openapi();
    let names = response_schemas(&spec);
    assert_eq!(names.len(), 7, "{names:?}");
    for name in names {
        let path = fixtures().join("responses").join(format!("{name}.json"));
        let body = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("fixture for {name} missing at {}: {e}", path.display()));
        let fixture: Value = serde_json::from_str(&body).unwrap();
        let schema = schema(&spec, &name);
        // The fixture uses every property of the schema, and nothing else.
        let properties: BTreeSet<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        let keys: BTreeSet<&String> = fixture.as_object().unwrap().keys().collect();
        assert_eq!(
            keys, properties,
            "{name}: fixture keys differ from the schema's properties"
        );
        assert_eq!(
            unknown_keys(&spec, schema, &fixture, "", &[]),
            Vec::<String>::new(),
            "{name}"
        );
        // The client's type reads all of it and writes it back unchanged.
        let back = parse_as(&name, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, fixture, "{name} does not round-trip");
    }
}

#[test]
fn hidden_endpoint_fixtures_deserialize() {
    #[derive(serde::Deserialize)]
    struct MySubmissions {
        submissions: Vec<SubmissionSummary>,
    }
    let body = std::fs::read_to_string(fixtures().join("my-submissions.json")).unwrap();
    let parsed: MySubmissions = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed.submissions.len(), 2);
    let first = &parsed.submissions[0];
    assert_eq!(first.suffix().as_deref(), Some("daily-pi-1"));
    assert_eq!(first.total_memory_gb, Some(10));
    assert_eq!(first.status.application_state.as_deref(), Some("RUNNING"));
    // Every field of the summary is read: writing it back gives the same JSON.
    let raw: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(serde_json::to_value(first).unwrap(), raw["submissions"][0]);

    let body = std::fs::read_to_string(fixtures().join("version.json")).unwrap();
    let version: VersionInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(version.git_commit.as_deref(), Some("88b38af"));
}

/// Fields BPG's Java classes accept but the OpenAPI document hides (wire contract §1.1).
const HIDDEN_REQUEST_FIELDS: &[&str] = &[
    "sparkConf",
    "queueToken",
    "clusterId",
    "volumes",
    "imagePullPolicy",
    "restartPolicy",
    "mode",
    "overheadFactor",
    "driverOverheadFactor",
    "executorOverheadFactor",
];
const HIDDEN_POD_FIELDS: &[&str] = &[
    "labels",
    "terminationGracePeriodSeconds",
    "serviceAccount",
    "volumeMounts",
    "securityContext",
    "affinity",
    "dnsConfig",
    "javaOptions",
    "podName",
    "kubernetesMaster",
    "deleteOnTermination",
];

fn full_request() -> SubmitApplicationRequest {
    let env = Some(vec![EnvVar {
        name: "STAGE".into(),
        value: Some("prod".into()),
        value_from: None,
    }]);
    SubmitApplicationRequest {
        submission_id_suffix: Some("daily-pi-1".into()),
        application_name: Some("pi".into()),
        app_type: Some("Python".into()),
        image: Some("apache/spark-py:v3.5.0".into()),
        spot_instance: Some(true),
        spark_version: Some("3.5".into()),
        main_class: None,
        main_application_file: Some("s3a://bucket/pi.py".into()),
        arguments: Some(vec!["100".into()]),
        driver: Some(DriverSpec {
            cores: Some(1),
            core_request: Some("500m".into()),
            core_limit: Some("1000".into()),
            memory: Some("2g".into()),
            memory_overhead: Some("512m".into()),
            image: Some("apache/spark-py:v3.5.0".into()),
            env: env.clone(),
            labels: Some([("data-classification".to_string(), "phi".to_string())].into()),
            annotations: Some([("a".to_string(), "b".to_string())].into()),
            service_account: Some("spark".into()),
            java_options: Some("-XX:+UseG1GC".into()),
            ..Default::default()
        }),
        executor: Some(ExecutorSpec {
            cores: Some(2),
            memory: Some("4g".into()),
            instances: Some(3),
            env,
            labels: Some([("team".to_string(), "x".to_string())].into()),
            delete_on_termination: Some(true),
            ..Default::default()
        }),
        deps: Some(Dependencies {
            jars: Some(vec!["s3a://bucket/a.jar".into()]),
            py_files: Some(vec!["s3a://bucket/lib.zip".into()]),
            ..Default::default()
        }),
        python_version: Some("3".into()),
        queue: Some("analytics".into()),
        spark_conf: Some([("spark.sql.shuffle.partitions".to_string(), "64".to_string())].into()),
        queue_token: Some("token".into()),
        cluster_id: Some("spark-cluster-a".into()),
        image_pull_policy: Some("IfNotPresent".into()),
        restart_policy: Some(RestartPolicy {
            kind: Some("Never".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn submit_bodies_use_only_spec_field_names() {
    let spec = openapi();
    let body = serde_json::to_value(full_request()).unwrap();
    let request_schema = schema(&spec, "SubmitApplicationRequest");
    let mut unknown = unknown_keys(&spec, request_schema, &body, "", HIDDEN_REQUEST_FIELDS);
    // Pod specs: the OpenAPI lists a subset; the rest are hidden Java fields.
    unknown.retain(|path| {
        let Some((pod, field)) = path.split_once('.') else {
            return true;
        };
        !((pod == "driver" || pod == "executor")
            && HIDDEN_POD_FIELDS.contains(&field.split('.').next().unwrap_or("")))
    });
    // Entries of hidden maps (labels, sparkConf) are free keys.
    unknown.retain(|path| {
        !path.starts_with("driver.labels.") && !path.starts_with("executor.labels.")
    });
    assert_eq!(unknown, Vec::<String>::new());
    // The phantom top-level `annotations` of the spec is never sent (BPG answers 400 to it).
    assert!(body.get("annotations").is_none());
    assert_eq!(
        body["sparkVersion"],
        json!("3.5"),
        "sparkVersion is sent as a string"
    );
}

#[test]
fn the_spec_declares_every_query_parameter_the_client_sends() {
    let spec = openapi();
    let declared = |path: &str, method: &str| -> BTreeSet<String> {
        spec["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let log = declared("/log", "get");
    for name in ["subId", "appId", "execId"] {
        assert!(log.contains(name), "/log lacks {name}: {log:?}");
    }
    let upload = declared("/s3/{name}", "post");
    for name in ["folder", "content-length"] {
        assert!(upload.contains(name), "/s3 lacks {name}: {upload:?}");
    }
    assert!(declared("/admin/submissions", "get").contains("name"));
}
