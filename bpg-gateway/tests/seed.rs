//! What the seed's Airflow `BPGOperator` does on the wire, replayed against the gateway started
//! from a BPG configuration whose clusters are `analytics-cluster` and `datascience-cluster`
//! (ids with `-`, which the Java BPG cannot parse back): raw-body POSTs with Basic auth and
//! `Content-Type: application/json` or none at all, status polls every second reading
//! `applicationState`, and one blocking `GET /log?subId=` once a job is `RUNNING`; for the DAG
//! `start >> [calculate_pi, word_count] >> statistics_calc >> end`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bpg_gateway::config::GatewayConfig;
use bpg_gateway::store::SqliteStore;
use serde_json::Value;

use common::*;

const BPG_CONFIG: &str = r#"
defaultSparkConf:
  spark.kubernetes.submission.connectionTimeout: 30000
sparkClusters:
  - weight: 50
    id: analytics-cluster
    connection: "sim://?duration=1s&log-lines=3"
    sparkApplicationNamespace: spark-operator
    sparkVersions: ["3.5"]
    queues: [dev]
    sparkConf:
      spark.kubernetes.executor.podNamePrefix: '{spark-application-resource-name}'
  - weight: 50
    id: datascience-cluster
    connection: "sim://?duration=1s&log-lines=3"
    sparkApplicationNamespace: spark-operator
    sparkVersions: ["3.5"]
    queues: [dev]
sparkImages:
  - {name: "emr-7.2.0:latest", types: [Java, Scala, Python], version: "3.5"}
allowedUsers: ['*']
queues:
  - name: dev
    users: [admin]
"#;

/// One `BPGOperator.execute`: submit, poll every second, follow the log once on RUNNING.
async fn bpg_operator(
    base: String,
    body: String,
    content_type: Option<&'static str>,
) -> (String, String, Vec<String>) {
    let http = http();
    let mut post = http
        .post(format!("{base}/spark"))
        .basic_auth("admin", Some("password"))
        .body(body);
    if let Some(ct) = content_type {
        post = post.header("Content-Type", ct);
    }
    let r = post.send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut log = Vec::new();
    let mut followed = false;
    for _ in 0..60 {
        let status: Value = http
            .get(format!("{base}/spark/{id}/status"))
            .basic_auth("admin", Some("password"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match status["applicationState"].as_str().unwrap() {
            "COMPLETED" => return (id, "COMPLETED".into(), log),
            "FAILED" => return (id, "FAILED".into(), log),
            "RUNNING" if !followed => {
                followed = true;
                // Blocks until the driver ends: the log is followed.
                let text = http
                    .get(format!("{base}/log?subId={id}"))
                    .basic_auth("admin", Some("password"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                log = text.lines().map(str::to_owned).collect();
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("{id} did not finish within a minute");
}

#[tokio::test]
async fn the_seeds_bpg_operator_runs_the_demo_dag_through_the_gateway() {
    let config = GatewayConfig::from_yaml(BPG_CONFIG, None).unwrap();
    let gateway = config
        .builder(Arc::new(SqliteStore::in_memory().unwrap()))
        .await
        .unwrap()
        .build()
        .await
        .unwrap();
    let served = serve(gateway).await;
    let base = served.base();
    let apps = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/apps");
    let pi = std::fs::read_to_string(format!("{apps}/calculate-pi.yaml")).unwrap();
    let wc = std::fs::read_to_string(format!("{apps}/word-count.json")).unwrap();
    let stats = std::fs::read_to_string(format!("{apps}/statistics-calc.yaml")).unwrap();

    // start >> [calculate_pi, word_count]: a file-based spec (no Content-Type) and an inline JSON one.
    let (a, b) = tokio::join!(
        bpg_operator(base.clone(), pi, None),
        bpg_operator(base.clone(), wc, Some("application/json")),
    );
    // >> statistics_calc
    let c = bpg_operator(base.clone(), stats, None).await;
    for (id, state, log) in [&a, &b, &c] {
        assert_eq!(state, "COMPLETED", "{id}");
        assert!(
            id.starts_with("analytics-cluster-") || id.starts_with("datascience-cluster-"),
            "{id}"
        );
        assert_eq!(log.len(), 3, "{id}: {log:?}");
    }
    // Every id resolves, whichever cluster it names; the BPG settings reached the job.
    for (id, _, _) in [&a, &b, &c] {
        let spec: Value = http()
            .get(format!("{base}/spark/{id}/spec"))
            .basic_auth("admin", Some("password"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            spec["sparkConf"]["spark.kubernetes.submission.connectionTimeout"], "30000",
            "{spec}"
        );
        assert!(spec["image"].is_string(), "{spec}");
    }
    served.stop().await;
}
