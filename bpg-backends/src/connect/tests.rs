//! Unit tests of connections files, environment variables and the registry.

use std::path::Path;
use std::sync::Arc;

use bpg_core::Connections;

use super::*;

#[test]
fn file_connections_with_secret_references() {
    let mut r = ConnectionRegistry::new();
    r.parse_yaml(
        r#"
connections:
  bpg_connection: { url: "bpg+https://gateway.internal/skatev2", user: admin, password_env: BPG_PASSWORD }
  analytics_k8s:  { url: "k8s://analytics-context/spark-jobs", token_file: tokens/k8s }
  emr_direct:     { url: "emr://abcdef123?role=arn:aws:iam::123456789012:role/spark&release=emr-7.2.0-latest", region: us-west-2 }
  sim:            { url: "sim://?duration=1s" }
  platform:       { url: "routed://", rules: rules.yaml }
"#,
        Some(Path::new("conf/connections.yaml")),
    )
    .unwrap();
    assert_eq!(r.names().len(), 5);
    let bpg = r.connection("bpg_connection").unwrap();
    assert_eq!(bpg.user.as_deref(), Some("admin"));
    assert!(matches!(&bpg.password, Some(SecretRef::Env(v)) if v == "BPG_PASSWORD"));
    let k8s = r.connection("analytics_k8s").unwrap();
    assert!(matches!(&k8s.token, Some(SecretRef::File(p)) if p == Path::new("conf/tokens/k8s")));
    assert_eq!(
        r.connection("platform").unwrap().rules.as_deref(),
        Some(Path::new("conf/rules.yaml"))
    );
    let unknown = r.check_schemes();
    let features = [
        cfg!(feature = "gateway"),
        cfg!(feature = "k8s"),
        cfg!(feature = "emr"),
    ];
    assert_eq!(
        unknown.len(),
        features.iter().filter(|on| !**on).count(),
        "{unknown}"
    );
    assert_eq!(
        unknown
            .to_string()
            .contains("`emr` cargo feature of bpg-backends"),
        !cfg!(feature = "emr"),
        "{unknown}"
    );
}

#[test]
fn inline_passwords_and_bad_urls_are_rejected_with_location() {
    let mut r = ConnectionRegistry::new();
    let err = r
        .parse_yaml(
            "connections:\n  a: { url: \"bpg+https://admin:hunter2@host/skatev2\" }\n  b: { url: \"not a url\" }\n",
            Some(Path::new("c.yaml")),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("c.yaml:2:"), "{text}");
    assert!(text.contains("must not be written"), "{text}");
    assert!(
        text.contains("c.yaml:3:") && text.contains("invalid URL"),
        "{text}"
    );
    let err = r
        .parse_yaml(
            "connections:\n  a: { url: \"sim://\", pasword_env: X }\n",
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("pasword_env"), "{err}");
}

#[test]
fn env_urls_keep_passwords_secret() {
    let mut r = ConnectionRegistry::new();
    r.load_env_vars([
        (
            "BPG_CONN_GW".to_string(),
            "bpg+https://admin:s3cret@gw/skatev2".to_string(),
        ),
        ("PATH".to_string(), "/bin".to_string()),
    ])
    .unwrap();
    let gw = r.connection("gw").unwrap();
    assert_eq!(gw.user.as_deref(), Some("admin"));
    let debug = format!("{r:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(!gw.url.as_str().contains("s3cret"));
    use secrecy::ExposeSecret;
    assert_eq!(
        gw.password
            .as_ref()
            .unwrap()
            .resolve()
            .unwrap()
            .expose_secret(),
        "s3cret"
    );
    let err = r
        .load_env_vars([(
            "BPG_CONN_BAD".to_string(),
            "::pw-like-garbage::".to_string(),
        )])
        .unwrap_err();
    assert!(!err.to_string().contains("pw-like-garbage"), "{err}");
    assert!(err.to_string().contains("BPG_CONN_BAD"), "{err}");
}

#[tokio::test]
async fn sim_connections_build_once_and_bad_queries_fail() {
    let mut r = ConnectionRegistry::new();
    r.load_env_vars([
        (
            "BPG_CONN_SIM".to_string(),
            "sim://?duration=2s&capacity=3".to_string(),
        ),
        (
            "BPG_CONN_BROKEN".to_string(),
            "sim://?duration=later".to_string(),
        ),
    ])
    .unwrap();
    let a = r.backend("sim").await.unwrap();
    let b = r.backend("sim").await.unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let err = r.backend("broken").await.unwrap_err().to_string();
    assert!(err.contains("duration"), "{err}");
    let err = r.backend("nope").await.unwrap_err().to_string();
    assert!(err.contains("BPG_CONN_NOPE"), "{err}");
}

#[tokio::test]
async fn built_backends_get_the_connections_layers() {
    let mut r = ConnectionRegistry::new();
    r.parse_yaml(
        "connections:\n  default: { url: \"sim://\" }\n  tuned: { url: \"sim://?duration=1s\", retries: 0, timeout: none, max_concurrency: 2 }\n  by_url: { url: \"sim://?retries=3&timeout=5s\" }\n",
        None,
    )
    .unwrap();
    let shape = |b: &Arc<dyn bpg_core::Backend>| {
        let debug = format!("{b:?}");
        [
            "TracingBackend",
            "RetryBackend",
            "TimeoutBackend",
            "ConcurrencyLimitBackend",
            "SimBackend",
        ]
        .into_iter()
        .filter(|layer| debug.contains(layer))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(&r.backend("default").await.unwrap()),
        [
            "TracingBackend",
            "RetryBackend",
            "TimeoutBackend",
            "SimBackend"
        ]
    );
    assert_eq!(
        shape(&r.backend("tuned").await.unwrap()),
        ["TracingBackend", "ConcurrencyLimitBackend", "SimBackend"]
    );
    let by_url = r.connection("by_url").unwrap();
    assert_eq!(by_url.resilience.retries, 3);
    assert_eq!(by_url.url.as_str(), "sim://");

    // Bad settings are located errors naming the field and what was expected.
    let err = ConnectionRegistry::new()
        .parse_yaml(
            "connections:\n  a: { url: \"sim://\", timeout: soon }\n  b: { url: \"sim://\", retries: many }\n",
            Some(Path::new("c.yaml")),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.yaml:") && err.contains("expected a duration"),
        "{err}"
    );
    let err = ConnectionRegistry::new()
        .parse_yaml(
            "connections:\n  a: { url: \"sim://\", max_concurrency: 0 }\n",
            Some(Path::new("c.yaml")),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.yaml:2:")
            && err.contains("connections.a.max_concurrency")
            && err.contains("at least 1"),
        "{err}"
    );
}
