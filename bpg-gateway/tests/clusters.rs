//! The gateway as its clients use it: bpg's own `GatewayBackend` (the core conformance kit over
//! `bpg+http://`) on simulated clusters and on Kubernetes clusters (`MockApiServer`, reached
//! through BPG's `masterUrl`), per-cluster caps, and a restart that resumes the store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::gateway::{GatewayBackend, GatewayConfig};
use bpg_backends::k8s::mock::MockApiServer;
use bpg_client::RetryPolicy;
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, BackendExt, JobId, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions,
};
use bpg_gateway::store::{SqliteStore, SubmissionRecord, SubmissionStore};
use bpg_gateway::{ClusterSettings, Gateway};
use serde_json::Value;

use common::*;

fn client_backend(base: &str) -> Arc<dyn Backend> {
    let url = base.replace("http://", "bpg+http://airflow@");
    let config = GatewayConfig::from_url(&url)
        .unwrap()
        .name("bpg-gateway")
        .retry(
            RetryPolicy::default()
                .backoff_between(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .log_poll_interval(Duration::from_millis(50));
    Arc::new(GatewayBackend::new(config).unwrap())
}

fn quick_jobs() -> ConformanceJobs {
    let base = SparkJob::new(
        "conformance",
        AppType::Python,
        "3.5",
        "local:///opt/app/conformance.py",
    );
    ConformanceJobs {
        succeeds: base
            .clone()
            .with_label("sim/duration", "400ms")
            .with_label("sim/log-lines", "3")
            .with_label("sim/queue-delay", "100ms"),
        fails: base
            .clone()
            .with_label("sim/duration", "200ms")
            .with_label("sim/outcome", "failed")
            .with_label("sim/message", "conformance failure"),
        long_running: base.with_label("sim/duration", "1h"),
    }
}

fn options(unknown: &str) -> ConformanceOptions {
    ConformanceOptions {
        wait: WaitOptions::default()
            .poll_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(60)),
        unknown_id: JobId::new(unknown),
    }
}

#[tokio::test]
async fn the_conformance_kit_passes_through_the_gateway_on_simulated_clusters() {
    let served = serve_sim().await;
    testkit::run_all(
        client_backend(&served.base()),
        &quick_jobs(),
        &options("analytics-00000000000000000000000000000000"),
    )
    .await;
    // The gateway advertises batch status, so the backend's status calls went in batches.
    let metrics = http()
        .get(format!("{}/metrics", served.root))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |route: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("bpg_gateway_requests_total")
                    && l.contains(&format!("route=\"{route}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (batched, single) = (
        count("/skatev2/spark/statuses"),
        count("/skatev2/spark/{id}/status"),
    );
    assert!(
        batched > 0 && single * 10 <= batched,
        "{batched} batch requests, {single} single: {metrics}"
    );
    served.stop().await;
}

/// BPG's configuration, its clusters Kubernetes API servers given by `masterUrl` (here two
/// `MockApiServer`s): the SparkApplication is created on the routed cluster, its state comes
/// from the watch, its driver log from the pod.
#[tokio::test]
async fn the_conformance_kit_passes_on_kubernetes_clusters_from_a_bpg_config() {
    let a = MockApiServer::start_in("spark-a").await;
    let b = MockApiServer::start_in("spark-b").await;
    let config = format!(
        r#"
sparkClusters:
  - id: cluster-a
    weight: 100
    masterUrl: {}
    userTokenSOPS: "plaintext:not-a-real-token"
    sparkApplicationNamespace: spark-a
    sparkVersions: ["3.5"]
    queues: [poc]
  - id: cluster-b
    weight: 0
    masterUrl: {}
    userTokenSOPS: "plaintext:not-a-real-token"
    sparkApplicationNamespace: spark-b
    sparkVersions: ["3.5"]
    queues: [poc]
queues: [{{name: poc}}]
allowedUsers: ["*"]
statusCacheExpireMillis: 100
"#,
        a.uri(),
        b.uri()
    );
    let loaded = bpg_gateway::config::GatewayConfig::from_yaml(&config, None).unwrap();
    let gateway = loaded
        .builder(Arc::new(SqliteStore::in_memory().unwrap()))
        .await
        .unwrap()
        .build()
        .await
        .unwrap();
    let served = serve(gateway).await;
    let backend = client_backend(&served.base());
    testkit::run_all(
        backend.clone(),
        &ConformanceJobs::simulated(),
        &options("cluster-a-00000000000000000000000000000000"),
    )
    .await;
    // Weight 0: nothing went to cluster-b; everything exists on cluster-a.
    assert!(a.created_count() >= 3, "{}", a.created_count());
    assert_eq!(b.created_count(), 0);
    // A pinned clusterId reaches a weight-0 cluster, as in BPG.
    let body = r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///x.py","clusterId":"cluster-b","driver":{"labels":{"sim/duration":"1s"}}}"#;
    let r: Value = http()
        .post(format!("{}/spark", served.base()))
        .header("User-Account", "airflow")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["submissionId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cluster-b-"), "{r}");
    let status = backend
        .wait_for_terminal(&JobId::new(id), &options("").wait)
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(b.created_count(), 1);
    served.stop().await;
}

#[tokio::test]
async fn a_cluster_cap_is_never_exceeded_and_a_burst_waits_in_order() {
    let mut settings = fast_settings();
    settings
        .clusters
        .insert("analytics".into(), ClusterSettings::new().max_in_flight(3));
    let analytics = SimBackend::builder().name("analytics").build();
    let gateway = Gateway::builder(rules())
        .backend("analytics", Arc::new(analytics.clone()))
        .backend("datascience", sim("datascience"))
        .settings(settings)
        .build()
        .await
        .unwrap();
    let served = serve(gateway).await;
    let client = client_backend(&served.base());
    let job = SparkJob::new("burst", AppType::Python, "3.5", "local:///b.py")
        .with_label("sim/duration", "200ms");
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(client.submit(&job, &SubmitOptions::new()).await.unwrap().id);
    }
    // While they run, never more than 3 applications run on the cluster at once.
    let mut max_seen = 0;
    let mut explained_wait = false;
    loop {
        max_seen = max_seen.max(analytics.running_count());
        if !explained_wait {
            let last = ids.last().unwrap();
            let e: Value = http()
                .get(format!("{}/spark/{last}/explain", served.base()))
                .header("User-Account", "airflow")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(why) = e["waitingFor"].as_str() {
                assert!(why.contains("cap of 3"), "{why}");
                explained_wait = true;
            }
        }
        let mut done = 0;
        for id in &ids {
            if client.status(id).await.unwrap().state == JobState::Succeeded {
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!((1..=3).contains(&max_seen), "{max_seen} running at once");
    assert!(
        explained_wait,
        "explain never said the last submission waited for the cap"
    );
    served.stop().await;
}

#[tokio::test]
async fn a_restarted_gateway_adopts_what_its_predecessor_created_and_creates_what_it_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let analytics = SimBackend::builder().name("analytics").build();
    // A record whose backend call happened (the crash came before the answer was recorded) ...
    let job = SparkJob::new("adopted", AppType::Python, "3.5", "local:///a.py")
        .with_label("sim/duration", "200ms");
    let adopted_id = "analytics-11111111111111111111111111111111";
    let key = bpg_core::IdempotencyKey::new(format!("bpg-gateway/{adopted_id}"));
    analytics
        .submit(&job, &SubmitOptions::new().with_idempotency_key(key))
        .await
        .unwrap();
    // ... and one whose call never went out.
    let fresh_id = "analytics-22222222222222222222222222222222";
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .insert(&SubmissionRecord::new(
                adopted_id,
                "analytics",
                "analytics",
                "alice",
                job.clone(),
            ))
            .await
            .unwrap();
        store
            .insert(&SubmissionRecord::new(
                fresh_id,
                "analytics",
                "analytics",
                "alice",
                job,
            ))
            .await
            .unwrap();
    }
    let gateway = Gateway::builder(rules())
        .backend("analytics", Arc::new(analytics.clone()))
        .backend("datascience", sim("datascience"))
        .settings(fast_settings())
        .store(Arc::new(SqliteStore::open(&path).unwrap()))
        .build()
        .await
        .unwrap();
    let served = serve(gateway).await;
    let client = client_backend(&served.base());
    for id in [adopted_id, fresh_id] {
        let status = client
            .wait_for_terminal(&JobId::new(id), &options("").wait)
            .await
            .unwrap();
        assert_eq!(status.state, JobState::Succeeded, "{id}");
    }
    assert_eq!(
        analytics.accepted_count(),
        2,
        "one application per submission, none duplicated"
    );
    served.stop().await;
    // After a clean stop, everything is readable from the file.
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.unfinished().await.unwrap().is_empty());
}
