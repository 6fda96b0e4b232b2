//! The secret canary: a password, a bearer token and a Kubernetes token from the configuration
//! never appear in the logs (at trace level, every target), in `/metrics`, in any response body,
//! in the audit log or in the store's files, in any encoding a request carried them in.
//!
//! Its own test binary: the log capture is the process's global subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bpg_backends::k8s::mock::MockApiServer;
use bpg_gateway::auth::{hash_password, hash_token};
use bpg_gateway::config::GatewayConfig;
use common::{http, serve};
use serde_json::{Value, json};

const PASSWORD: &str = "canary-password-7d3f9a";
const TOKEN: &str = "bpg_canaryTokenQ2x8ZkLmN4pR7sT1vW3yA5bC6dE";
const K8S_TOKEN: &str = "canary-k8s-token-e81b4c2d";

/// Every byte any subscriber layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_written_anywhere() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let cluster = MockApiServer::start_in("spark").await;
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.yaml");
    std::fs::write(
        &access,
        format!(
            "users:\n  alice: {{password: \"{}\", tokens: [\"{}\"]}}\n  ops: {{password: \"{}\", admin: true}}\n",
            hash_password(PASSWORD),
            hash_token(TOKEN),
            hash_password(PASSWORD),
        ),
    )
    .unwrap();
    let config = format!(
        r#"
sparkClusters:
  - id: k8s-cluster
    weight: 100
    masterUrl: {}
    userTokenSOPS: "plaintext:{K8S_TOKEN}"
    sparkApplicationNamespace: spark
    sparkVersions: ["3.5"]
    queues: [poc]
queues: [{{name: poc}}]
allowedUsers: ["*"]
accessFile: access.yaml
statusCacheExpireMillis: 100
"#,
        cluster.uri()
    );
    let config_path = dir.path().join("bpg.yaml");
    std::fs::write(&config_path, &config).unwrap();
    let loaded = GatewayConfig::from_file(&config_path).unwrap();
    let mut debug_texts = vec![format!("{loaded:?}")];
    let db = dir.path().join("gateway.db");
    let store = bpg_gateway::store::open(db.to_str().unwrap())
        .await
        .unwrap();
    let gateway = loaded.builder(store).await.unwrap().build().await.unwrap();
    debug_texts.push(format!("{gateway:?}"));
    let served = serve(gateway).await;
    let base = served.base();
    let client = http();
    let mut bodies = Vec::new();

    let body =
        json!({"sparkVersion": "3.5", "mainApplicationFile": "local:///pi.py", "queue": "poc"});
    let r = client
        .post(format!("{base}/spark"))
        .basic_auth("alice", Some(PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let id = serde_json::from_str::<Value>(&text).unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    bodies.push(text);
    // Every read, by password and by token, while the application runs and after.
    for _ in 0..40 {
        let status: Value = client
            .get(format!("{base}/spark/{id}/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        bodies.push(status.to_string());
        if status["applicationState"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in [
        format!("/spark/{id}/spec"),
        format!("/spark/{id}/driver"),
        format!("/spark/{id}/describe"),
        format!("/spark/{id}/explain"),
        format!("/log?subId={id}"),
        "/spark/mySubmissions".into(),
        "/admin/submissions".into(),
        "/admin/audit".into(),
        "/healthcheck/status".into(),
    ] {
        let r = client
            .get(format!("{base}{path}"))
            .basic_auth("ops", Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        bodies.push(r.text().await.unwrap());
    }
    // Secrets sent where they do not belong: a token as a password, a password as a token,
    // the Kubernetes token as both; and a wrong password for a real user.
    for (user, password) in [
        ("alice", TOKEN),
        ("ops", K8S_TOKEN),
        ("nobody", PASSWORD),
        ("alice", "wrong"),
    ] {
        let r = client
            .get(format!("{base}/spark/mySubmissions"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        bodies.push(r.text().await.unwrap());
    }
    for token in [PASSWORD, K8S_TOKEN] {
        let r = client
            .get(format!("{base}/spark/mySubmissions"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        bodies.push(r.text().await.unwrap());
    }
    let delete = client
        .delete(format!("{base}/spark/{id}"))
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    bodies.push(delete.text().await.unwrap());
    let metrics = client
        .get(format!("{}/metrics", served.root))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("bpg_gateway"), "{metrics}");
    let audit = served.gateway.store().audit_log(10_000).await.unwrap();
    assert!(
        audit.iter().any(|e| e.outcome == "unauthenticated"),
        "{audit:?}"
    );
    let audit_text = format!("{audit:?}");
    served.stop().await;
    assert!(cluster.created_count() >= 1, "the Kubernetes path was used");

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("TRACE"), "trace logging was on");
    assert!(
        logs.contains("bpg_gateway::audit"),
        "audit lines were logged"
    );
    let mut store_bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("gateway.db") {
            store_bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    let store_text = String::from_utf8_lossy(&store_bytes).into_owned();

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut needles = Vec::new();
    for secret in [PASSWORD, TOKEN, K8S_TOKEN] {
        needles.push(secret.to_owned());
        for user in ["alice", "ops", "nobody"] {
            needles.push(b64(&format!("{user}:{secret}")));
        }
    }
    let places: [(&str, &str); 5] = [
        ("logs", &logs),
        ("metrics", &metrics),
        ("responses", &bodies.join("\n")),
        ("audit log", &audit_text),
        ("store", &store_text),
    ];
    for (place, text) in places {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "a secret ({}...) appears in the {place}",
                &needle[..6]
            );
        }
    }
    for d in &debug_texts {
        for needle in &needles {
            assert!(
                !d.contains(needle.as_str()),
                "a secret appears in a Debug: {d}"
            );
        }
    }
}
