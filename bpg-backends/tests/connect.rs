//! Connection URLs of every scheme build the right backend through `ConnectionRegistry::new()`,
//! and bad connections fail naming the connection and what was expected.

use std::path::{Path, PathBuf};

use bpg_backends::connect::{Connection, ConnectionRegistry};
use bpg_core::Connections;
use bpg_core::{AppType, Backend, BackendExt, JobState, SparkJob, SubmitOptions, WaitOptions};

/// A temporary directory holding `files` (name, contents).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write test file");
    }
    dir
}

/// A registry from a connections file written into `dir`.
fn registry_from(dir: &Path, connections: &str) -> ConnectionRegistry {
    let file = dir.join("connections.yaml");
    std::fs::write(&file, connections).expect("write connections file");
    let mut registry = ConnectionRegistry::new();
    registry
        .load_file(&file)
        .unwrap_or_else(|d| panic!("connections file: {d}"));
    registry
}

async fn error_of(registry: &ConnectionRegistry, name: &str) -> String {
    match registry.backend(name).await {
        Ok(backend) => panic!("connection {name} built {backend:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in: {text}");
    }
}

#[cfg(any(feature = "gateway", feature = "emr"))]
/// An environment variable name nobody sets (tests may not set variables: `unsafe` is forbidden).
fn unset_variable() -> String {
    let name = format!("BPG_TEST_UNSET_{}", std::process::id());
    assert!(std::env::var_os(&name).is_none());
    name
}

#[cfg(feature = "gateway")]
mod gateway {
    use super::*;
    use bpg_client::mock::{MockCluster, MockGateway, Route};
    use bpg_pipeline::{RunState, Runner, TaskState, parse_dag};

    const DAG: &str = r#"
dag_id: gateway_e2e
tasks:
  - id: start
    kind: empty
  - id: pi
    kind: spark
    connection: bpg_connection
    application:
      applicationName: pi
      sparkVersion: "3.5"
      type: Python
      mainApplicationFile: local:///opt/spark/examples/src/main/python/pi.py
      driver: { cores: 1, memory: 1g }
      executor: { instances: 1, cores: 1, memory: 1g }
    labels:
      sim/duration: 300ms
      sim/log-lines: "2"
    depends_on: [start]
"#;

    #[tokio::test]
    async fn a_gateway_connection_runs_a_spark_task_end_to_end() {
        let gateway = MockGateway::builder()
            .cluster(MockCluster::new("analytics").spark_versions(["3.5"]))
            .bearer_token("token-from-file", "airflow")
            .start()
            .await;
        let dir = dir_with(&[("bpg.token", "token-from-file\n")]);
        let registry = registry_from(
            dir.path(),
            &format!(
                "connections:\n  bpg_connection: {{ url: \"bpg+http://airflow@{}\", token_file: bpg.token, \
                 options: {{ log_poll_interval: 50ms, request_timeout: 5s }} }}\n",
                gateway.uri().trim_start_matches("http://")
            ),
        );
        let backend = registry.backend("bpg_connection").await.unwrap();
        assert_eq!(backend.name(), "bpg_connection");
        // Wrapped in the connection's layers, around the gateway backend.
        assert!(
            format!("{backend:?}").contains("GatewayBackend"),
            "{backend:?}"
        );
        let caps = backend.capabilities();
        assert!(caps.cancel && caps.logs && caps.follow_logs && caps.find && !caps.watch);

        let dag = parse_dag(DAG, None).unwrap();
        let report = Runner::new(dag, registry)
            .poll_interval(std::time::Duration::from_millis(50))
            .run()
            .await
            .unwrap();
        assert_eq!(report.state, RunState::Success, "{report:?}");
        let pi = &report.tasks["pi"];
        assert_eq!(pi.state, TaskState::Success);
        assert_eq!(pi.backend.as_deref(), Some("bpg_connection"));
        let id = pi.submission_id.as_deref().expect("pi has a submission id");
        assert!(id.starts_with("analytics-"), "{id}");

        let submitted = gateway
            .submission(id)
            .expect("the gateway holds the application");
        assert_eq!(submitted.state, "COMPLETED");
        // The token file's secret authenticated the calls: the gateway saw the token's user.
        let submits = gateway.journal_for(Route::Submit);
        assert_eq!(submits.len(), 1);
        assert_eq!(submits[0].user.as_deref(), Some("airflow"));
        assert_eq!(
            submits[0].header("authorization"),
            Some("Bearer token-from-file")
        );
    }

    #[tokio::test]
    async fn a_password_from_a_bpg_conn_url_becomes_basic_auth() {
        let gateway = MockGateway::builder()
            .allowed_users(["alice"])
            .start()
            .await;
        let mut registry = ConnectionRegistry::new();
        registry
            .load_env_vars([(
                "BPG_CONN_GW".to_owned(),
                gateway
                    .uri()
                    .replace("http://", "bpg+http://alice:pa55word@"),
            )])
            .unwrap();
        let backend = registry.backend("gw").await.unwrap();
        assert!(!format!("{backend:?} {registry:?}").contains("pa55word"));
        let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py")
            .with_label("sim/duration", "100ms");
        let (submission, status) = backend
            .submit_and_wait(
                &job,
                &SubmitOptions::new(),
                &WaitOptions::default().poll_interval(std::time::Duration::from_millis(50)),
            )
            .await
            .unwrap();
        assert_eq!(status.state, JobState::Succeeded);
        assert_eq!(submission.backend, "gw");
        let submit = &gateway.journal_for(Route::Submit)[0];
        assert_eq!(submit.user.as_deref(), Some("alice"));
        assert!(
            submit
                .header("authorization")
                .unwrap()
                .starts_with("Basic ")
        );

        // A bad URL with a password is reported without it.
        registry
            .load_env_vars([(
                "BPG_CONN_BAD".to_owned(),
                "bpg+https://alice:pa55word@gw.internal/skatev2?x=1".to_owned(),
            )])
            .unwrap();
        let err = error_of(&registry, "bad").await;
        assert_contains(&err, &["connection \"bad\"", "no query"]);
        assert!(!err.contains("pa55word"), "{err}");
    }

    #[tokio::test]
    async fn bad_gateway_connections_name_the_connection_and_what_was_expected() {
        let variable = unset_variable();
        let dir = dir_with(&[]);
        let registry = registry_from(
            dir.path(),
            &format!(
                r#"connections:
  with_query: {{ url: "bpg+https://gw.internal/skatev2?poll=3" }}
  no_host: {{ url: "bpg+https:///skatev2" }}
  missing_password: {{ url: "bpg+https://gw.internal/skatev2", user: admin, password_env: {variable} }}
  missing_token_file: {{ url: "bpg+https://gw.internal/skatev2", token_file: nowhere.token }}
  bad_option: {{ url: "bpg+https://gw.internal/skatev2", options: {{ request_timeout: soon, colour: red }} }}
  unknown_option: {{ url: "bpg+https://gw.internal/skatev2", options: {{ colour: red }} }}
  password_no_user: {{ url: "bpg+https://gw.internal/skatev2", password_env: PATH }}
"#
            ),
        );
        assert_contains(
            &error_of(&registry, "with_query").await,
            &["connection \"with_query\"", "no query", "bpg+https://"],
        );
        assert_contains(
            &error_of(&registry, "no_host").await,
            &["connection \"no_host\"", "no host"],
        );
        assert_contains(
            &error_of(&registry, "missing_password").await,
            &[
                "connection \"missing_password\"",
                "password_env",
                &variable,
                "is not set",
            ],
        );
        assert_contains(
            &error_of(&registry, "missing_token_file").await,
            &[
                "connection \"missing_token_file\"",
                "token_file",
                "nowhere.token",
            ],
        );
        assert_contains(
            &error_of(&registry, "bad_option").await,
            &[
                "connection \"bad_option\"",
                "request_timeout: soon",
                "expected a duration",
            ],
        );
        assert_contains(
            &error_of(&registry, "unknown_option").await,
            &["unknown option colour", "context_path", "log_poll_interval"],
        );
        let err = error_of(&registry, "password_no_user").await;
        assert_contains(
            &err,
            &["connection \"password_no_user\"", "needs a user", "`user:`"],
        );
        // The variable's value (whatever PATH holds) is never shown.
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(path.is_empty() || !err.contains(&path), "{err}");
    }
}

#[cfg(feature = "k8s-mock")]
mod kubernetes {
    use super::*;
    use bpg_backends::k8s::mock::MockApiServer;
    use bpg_core::Capabilities;

    #[tokio::test]
    async fn a_k8s_connection_uses_its_kubeconfig_context_and_namespace() {
        let server = MockApiServer::start_in("spark-jobs").await;
        let dir = dir_with(&[
            ("kubeconfig", &server.kubeconfig("analytics")),
            ("k8s.token", "sa-token\n"),
        ]);
        let kubeconfig = dir.path().join("kubeconfig");
        let registry = registry_from(
            dir.path(),
            &format!(
                "connections:\n  analytics_k8s: {{ url: \"k8s://analytics/spark-jobs\", token_file: k8s.token, options: {{ kubeconfig: \"{}\" }} }}\n  current_ctx: {{ url: \"k8s:///team-a\", options: {{ kubeconfig: \"{}\" }} }}\n",
                kubeconfig.display(),
                kubeconfig.display()
            ),
        );
        let backend = registry.backend("analytics_k8s").await.unwrap();
        assert_eq!(backend.name(), "analytics_k8s");
        assert_eq!(backend.capabilities(), Capabilities::all());
        let debug = format!("{backend:?}");
        assert_contains(
            &debug,
            &["SparkKubernetesBackend", "analytics", "spark-jobs"],
        );
        assert!(!debug.contains("sa-token"), "{debug}");

        let job = SparkJob::new("etl", AppType::Python, "3.5", "local:///app/etl.py")
            .with_label("sim/duration", "1s");
        let (submission, status) = backend
            .submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default())
            .await
            .unwrap();
        assert_eq!(status.state, JobState::Succeeded);
        assert_eq!(submission.cluster.as_deref(), Some("analytics"));
        assert_eq!(submission.namespace.as_deref(), Some("spark-jobs"));
        // The token file replaced the kubeconfig user's (empty) credentials.
        let requests = server.received_requests().await;
        assert!(!requests.is_empty());
        for request in &requests {
            let auth = request
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or(""));
            assert_eq!(
                auth,
                Some("Bearer sa-token"),
                "{} {}",
                request.method,
                request.url
            );
        }

        // `k8s:///ns`: the kubeconfig's current context, another namespace.
        let other = registry.backend("current_ctx").await.unwrap();
        assert_contains(&format!("{other:?}"), &["team-a"]);
    }

    #[tokio::test]
    async fn eks_context_names_are_percent_encoded_or_given_as_an_option() {
        const EKS: &str = "arn:aws:eks:us-west-2:123456789012:cluster/analytics";
        let server = MockApiServer::start().await;
        let dir = dir_with(&[("kubeconfig", &server.kubeconfig(EKS))]);
        let kubeconfig = dir.path().join("kubeconfig");
        let registry = registry_from(
            dir.path(),
            &format!(
                "connections:\n  encoded: {{ url: \"k8s://arn%3Aaws%3Aeks%3Aus-west-2%3A123456789012%3Acluster%2Fanalytics/jobs\", options: {{ kubeconfig: \"{0}\" }} }}\n  \
                 option: {{ url: \"k8s:///jobs\", options: {{ kubeconfig: \"{0}\", context: \"{EKS}\" }} }}\n",
                kubeconfig.display()
            ),
        );
        for name in ["encoded", "option"] {
            let backend = registry.backend(name).await.unwrap();
            let job = SparkJob::new("etl", AppType::Python, "3.5", "local:///app/etl.py");
            let submission = backend.submit(&job, &SubmitOptions::new()).await.unwrap();
            assert_eq!(submission.cluster.as_deref(), Some(EKS), "{name}");
            assert_eq!(submission.namespace.as_deref(), Some("jobs"), "{name}");
        }
    }

    #[tokio::test]
    async fn bad_k8s_connections_say_what_was_expected() {
        let dir = dir_with(&[]);
        let missing = dir.path().join("no-such-kubeconfig");
        let registry = registry_from(
            dir.path(),
            &format!(
                r#"connections:
  too_deep: {{ url: "k8s://ctx/ns/extra" }}
  with_query: {{ url: "k8s://ctx/ns?watch=false" }}
  with_password: {{ url: "k8s://ctx/ns", user: admin, password_env: PATH }}
  no_file: {{ url: "k8s://ctx/ns", options: {{ kubeconfig: "{}" }} }}
  twice: {{ url: "k8s://ctx/ns", options: {{ context: other }} }}
  in_cluster_file: {{ url: "k8s://in-cluster/ns", options: {{ kubeconfig: "{}" }} }}
"#,
                missing.display(),
                missing.display()
            ),
        );
        assert_contains(
            &error_of(&registry, "too_deep").await,
            &[
                "connection \"too_deep\"",
                "more than a namespace",
                "k8s://<context>/<namespace>",
            ],
        );
        assert_contains(
            &error_of(&registry, "with_query").await,
            &["connection \"with_query\"", "no port, query or fragment"],
        );
        assert_contains(
            &error_of(&registry, "with_password").await,
            &[
                "connection \"with_password\"",
                "do not take user, password",
                "token_env",
            ],
        );
        assert_contains(
            &error_of(&registry, "no_file").await,
            &[
                "connection \"no_file\"",
                "cannot read kubeconfig",
                "no-such-kubeconfig",
            ],
        );
        assert_contains(
            &error_of(&registry, "twice").await,
            &["connection \"twice\"", "context is given twice"],
        );
        assert_contains(
            &error_of(&registry, "in_cluster_file").await,
            &["service account, not a kubeconfig"],
        );
    }

    #[tokio::test]
    async fn in_cluster_outside_a_pod_is_a_clear_error() {
        let mut registry = ConnectionRegistry::new();
        registry.insert(Connection::from_url("pod", "k8s://in-cluster/spark-jobs").unwrap());
        let built = registry.backend("pod").await;
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            // Running inside a pod: the service account is there to use.
            let backend = built.unwrap();
            assert_contains(&format!("{backend:?}"), &["spark-jobs"]);
        } else {
            let err = built.unwrap_err().to_string();
            assert_contains(
                &err,
                &["connection \"pod\"", "not running in a Kubernetes pod"],
            );
        }
    }
}

#[cfg(feature = "emr")]
mod emr {
    use super::*;
    use bpg_backends::connect::SecretRef;
    use secrecy::SecretString;

    const URL: &str =
        "emr://abcdef123?role=arn:aws:iam::123456789012:role/spark&release=emr-7.2.0-latest";

    /// Static credentials given in code, as a secret store would hand them over.
    fn with_credentials(name: &str, url: &str) -> Connection {
        let mut c = Connection::from_url(name, url).unwrap();
        c.user = Some("AKIDEXAMPLE".into());
        c.password = Some(SecretRef::Value(SecretString::from("wJalrXUtnFEMIsecret")));
        c.region = Some("us-west-2".into());
        c
    }

    #[tokio::test]
    async fn an_emr_connection_builds_without_touching_the_network() {
        let mut registry = ConnectionRegistry::new();
        registry.insert(with_credentials("emr_direct", URL));
        let backend = registry.backend("emr_direct").await.unwrap();
        assert_eq!(backend.name(), "emr_direct");
        let caps = backend.capabilities();
        assert!(caps.cancel && caps.idempotent_submit && caps.find);
        let debug = format!("{backend:?}");
        assert_contains(
            &debug,
            &[
                "EmrContainersBackend",
                "abcdef123",
                "us-west-2",
                "AKIDEXAMPLE",
            ],
        );
        assert!(!debug.contains("wJalrXUtnFEMIsecret"), "{debug}");

        // A `name=` in the URL is kept.
        registry.insert(with_credentials("named", &format!("{URL}&name=phi-emr")));
        assert_eq!(registry.backend("named").await.unwrap().name(), "phi-emr");
    }

    #[tokio::test]
    async fn bad_emr_connections_say_what_was_expected() {
        let mut registry = ConnectionRegistry::new();
        registry.insert(with_credentials(
            "no_role",
            "emr://abcdef123?release=emr-7.2.0-latest",
        ));
        let mut key_only = with_credentials("key_only", URL);
        key_only.password = None;
        registry.insert(key_only);
        let mut two_regions = with_credentials("two_regions", &format!("{URL}&region=eu-west-1"));
        two_regions.region = Some("us-east-1".into());
        registry.insert(two_regions);
        let mut missing_secret = with_credentials("missing_secret", URL);
        missing_secret.password = Some(SecretRef::Env(unset_variable()));
        registry.insert(missing_secret);

        assert_contains(
            &error_of(&registry, "no_role").await,
            &["connection \"no_role\"", "missing `role="],
        );
        assert_contains(
            &error_of(&registry, "key_only").await,
            &[
                "connection \"key_only\"",
                "`user` (access key id)",
                "`password_env`",
            ],
        );
        assert_contains(
            &error_of(&registry, "two_regions").await,
            &[
                "connection \"two_regions\"",
                "region `us-east-1`",
                "eu-west-1",
            ],
        );
        assert_contains(
            &error_of(&registry, "missing_secret").await,
            &[
                "connection \"missing_secret\"",
                "password_env",
                "is not set",
            ],
        );
    }
}

#[cfg(feature = "local")]
mod local {
    use super::*;

    #[tokio::test]
    async fn a_local_connection_takes_its_settings_from_the_query() {
        let mut registry = ConnectionRegistry::new();
        registry
            .load_env_vars([(
                "BPG_CONN_LAPTOP".to_owned(),
                "local://?master=local[2]&spark_submit=/opt/spark/bin/spark-submit&kill_grace=2s"
                    .to_owned(),
            )])
            .unwrap();
        let backend = registry.backend("laptop").await.unwrap();
        assert_eq!(backend.name(), "laptop");
        assert!(!backend.capabilities().idempotent_submit);
        assert_contains(
            &format!("{backend:?}"),
            &[
                "LocalSparkBackend",
                "local[2]",
                "/opt/spark/bin/spark-submit",
            ],
        );
    }

    #[tokio::test]
    async fn bad_local_connections_say_what_was_expected() {
        let mut registry = ConnectionRegistry::new();
        registry
            .load_env_vars([
                ("BPG_CONN_HOST".to_owned(), "local://somewhere".to_owned()),
                (
                    "BPG_CONN_PARAM".to_owned(),
                    "local://?masters=local[2]".to_owned(),
                ),
                (
                    "BPG_CONN_GRACE".to_owned(),
                    "local://?kill_grace=never&spark_submit=/bin/false".to_owned(),
                ),
            ])
            .unwrap();
        assert_contains(
            &error_of(&registry, "host").await,
            &["connection \"host\"", "expected local://", "master"],
        );
        assert_contains(
            &error_of(&registry, "param").await,
            &["unknown URL parameter masters", "master, spark_submit"],
        );
        assert_contains(
            &error_of(&registry, "grace").await,
            &["URL parameter `kill_grace=never`", "expected a duration"],
        );
    }
}

mod routed {
    use super::*;
    use bpg_backends::routed::split_job_id;

    const RULES: &str = r#"
clusters:
  - {id: phi-east, connection: compliant, tags: {phi-compliant: "true"}}
  - {id: spot-1, connection: spot}
constraints:
  - {name: phi-isolation, when: {labels: {data-classification: phi}}, require_tags: {phi-compliant: "true"}}
rules:
  - {name: phi, match: {labels: {data-classification: phi}}, route: {clusters: [phi-east]}}
default: {clusters: [spot-1]}
"#;

    #[tokio::test(start_paused = true)]
    async fn a_routed_connection_routes_over_other_connections_by_labels() {
        let dir = dir_with(&[("rules.yaml", RULES)]);
        let registry = registry_from(
            dir.path(),
            r#"connections:
  compliant: { url: "sim://?duration=1s" }
  spot:      { url: "sim://?duration=1s" }
  platform:  { url: "routed://", rules: rules.yaml, user: airflow, options: { seed: "7" } }
"#,
        );
        let platform = registry.backend("platform").await.unwrap();
        assert_eq!(platform.name(), "platform");
        assert!(
            format!("{platform:?}").contains("RoutedBackend"),
            "{platform:?}"
        );

        for (labels, cluster, connection) in [
            (
                vec![("data-classification", "phi")],
                "phi-east",
                "compliant",
            ),
            (vec![("team", "web")], "spot-1", "spot"),
        ] {
            let job = labels.iter().fold(
                SparkJob::new("job", AppType::Python, "3.5", "local:///job.py"),
                |job, (k, v)| job.with_label(*k, *v),
            );
            let (submission, status) = platform
                .submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default())
                .await
                .unwrap();
            assert_eq!(status.state, JobState::Succeeded);
            assert_eq!(submission.cluster.as_deref(), Some(cluster));
            // The cluster's connection is the registry's shared backend: it knows the job.
            let (_, inner) = split_job_id(&submission.id).unwrap();
            let shared = registry.backend(connection).await.unwrap();
            let inner_status = shared.status(&bpg_core::JobId::new(inner)).await.unwrap();
            assert_eq!(inner_status.state, JobState::Succeeded);
        }
    }

    #[tokio::test]
    async fn routed_cycles_and_missing_rules_are_errors() {
        let self_rules =
            "clusters:\n  - {id: loop, connection: platform}\ndefault: {clusters: [loop]}\n";
        let a_rules = "clusters:\n  - {id: via-b, connection: b}\ndefault: {clusters: [via-b]}\n";
        let b_rules = "clusters:\n  - {id: via-a, connection: a}\n  - {id: sim, connection: sim}\ndefault: {clusters: [sim]}\n";
        let dir = dir_with(&[
            ("self.yaml", self_rules),
            ("a.yaml", a_rules),
            ("b.yaml", b_rules),
        ]);
        let registry = registry_from(
            dir.path(),
            r#"connections:
  sim:      { url: "sim://" }
  platform: { url: "routed://", rules: self.yaml }
  a:        { url: "routed://", rules: a.yaml }
  b:        { url: "routed://", rules: b.yaml }
  missing:  { url: "routed://", rules: missing.yaml }
  no_rules: { url: "routed://" }
  unknown:  { url: "routed://", rules: unknown.yaml }
  with_host: { url: "routed://somewhere", rules: self.yaml }
"#,
        );
        std::fs::write(
            dir.path().join("unknown.yaml"),
            "clusters:\n  - {id: c1, connection: nowhere}\ndefault: {clusters: [c1]}\n",
        )
        .unwrap();
        assert_contains(
            &error_of(&registry, "platform").await,
            &["connection \"platform\"", "cycle", "platform -> platform"],
        );
        assert_contains(
            &error_of(&registry, "a").await,
            &["connection \"a\"", "cycle", "a -> b -> a"],
        );
        assert_contains(&error_of(&registry, "b").await, &["b -> a -> b"]);
        let missing: PathBuf = dir.path().join("missing.yaml");
        assert_contains(
            &error_of(&registry, "missing").await,
            &[
                "connection \"missing\"",
                "cannot read rules file",
                &missing.display().to_string(),
            ],
        );
        assert_contains(
            &error_of(&registry, "no_rules").await,
            &["connection \"no_rules\"", "needs `rules:`"],
        );
        assert_contains(
            &error_of(&registry, "unknown").await,
            &[
                "connection \"unknown\"",
                "cluster connection \"nowhere\"",
                "unknown connection \"nowhere\"",
            ],
        );
        assert_contains(
            &error_of(&registry, "with_host").await,
            &["connection \"with_host\"", "expected routed://"],
        );
    }
}

#[tokio::test]
async fn an_unregistered_scheme_names_what_provides_it() {
    let mut registry = ConnectionRegistry::new();
    registry
        .load_env_vars([(
            "BPG_CONN_LAKE".to_owned(),
            "hdfs://namenode/jobs".to_owned(),
        )])
        .unwrap();
    assert_contains(
        &error_of(&registry, "lake").await,
        &[
            "connection \"lake\"",
            "no backend for URL scheme `hdfs://`",
            "BackendFactory",
        ],
    );
    // Every scheme of DESIGN §7 whose feature is on has a factory; the others name the feature.
    for (scheme, on, feature) in [
        ("bpg+https", cfg!(feature = "gateway"), "gateway"),
        ("k8s", cfg!(feature = "k8s"), "k8s"),
        ("emr", cfg!(feature = "emr"), "emr"),
        ("local", cfg!(feature = "local"), "local"),
    ] {
        assert_eq!(registry.has_scheme(scheme), on, "{scheme}");
        if !on {
            registry.insert(Connection::from_url("off", &format!("{scheme}://x")).unwrap());
            assert_contains(
                &error_of(&registry, "off").await,
                &[&format!("`{feature}` cargo feature of bpg-backends")],
            );
        }
    }
    assert!(registry.has_scheme("routed") && registry.has_scheme("sim"));
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_runs_on_connections_from_a_file() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpg-pipeline/tests/data");
    let dag = bpg_pipeline::load_dag_file(data.join("seed_pipeline.yaml")).unwrap();
    let mut connections = ConnectionRegistry::new();
    connections
        .load_file(data.join("connections.yaml"))
        .unwrap();
    let report = bpg_pipeline::Runner::new(dag, connections)
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
}
