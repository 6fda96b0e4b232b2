//! BPG's wire contract as one suite, run against the real gateway and against bpg-client's
//! `MockGateway`, so the test double and the service cannot drift apart. Then what the gateway
//! does differently from BPG on purpose (its bugs, fixed).

mod common;

use std::time::Duration;

use bpg_client::mock::{MockCluster, MockGateway};
use serde_json::{Value, json};

use common::*;

/// What both must do. `cluster` is the cluster plain jobs land on.
async fn wire_contract(base: &str, cluster: &str) {
    let http = http();
    let submit = |body: Value| {
        http.post(format!("{base}/spark"))
            .basic_auth("alice", Some("pw"))
            .json(&body)
            .send()
    };
    // Submit: 200 {"submissionId"}, shaped <cluster>-<32 hex>-<suffix>.
    let r = submit(
        json!({"sparkVersion": "3.5", "mainApplicationFile": "local:///pi.py",
        "submissionIdSuffix": "wire-1",
        "driver": {"cores": 1, "memory": "1g", "env": [{"name": "SECRET", "value": "s3cr3t"}],
                   "labels": {"sim/duration": "300ms", "sim/log-lines": "2"}},
        "executor": {"instances": 1, "cores": 1, "memory": "1g"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let id = r.json::<Value>().await.unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = format!("{cluster}-");
    assert!(id.starts_with(&prefix) && id.ends_with("-wire-1"), "{id}");
    let hex = &id[prefix.len()..prefix.len() + 32];
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");

    // Status: applicationState and duration always there; ends COMPLETED.
    let mut state = String::new();
    for _ in 0..200 {
        let s: Value = http
            .get(format!("{base}/spark/{id}/status"))
            .basic_auth("alice", Some("pw"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(s["duration"].is_i64(), "{s}");
        assert!(s["creationTime"].is_i64(), "{s}");
        state = s["applicationState"].as_str().unwrap().to_owned();
        if state == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "COMPLETED");

    // Spec: env never shown.
    let spec: Value = http
        .get(format!("{base}/spark/{id}/spec"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["mainApplicationFile"], "local:///pi.py", "{spec}");
    assert!(!spec.to_string().contains("s3cr3t"), "{spec}");

    // Describe: text with the spec section.
    let d = http
        .get(format!("{base}/spark/{id}/describe"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    let text = d.text().await.unwrap();
    assert!(text.starts_with("--- Spark Spec ---\n"), "{text}");
    assert!(!text.contains("s3cr3t"));

    // Driver: an object.
    let driver: Value = http
        .get(format!("{base}/spark/{id}/driver"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(driver.is_object());

    // Log of a finished application: the whole log.
    let log = http
        .get(format!("{base}/log?subId={id}"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(log.status(), 200);
    assert_eq!(
        log.text()
            .await
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        2
    );

    // mySubmissions: the caller's, with BPG's summary fields.
    let mine: Value = http
        .get(format!("{base}/spark/mySubmissions"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = mine["submissions"].as_array().unwrap();
    let item = listed
        .iter()
        .find(|s| s["submissionId"] == id.as_str())
        .unwrap();
    assert_eq!(item["user"], "alice");
    assert_eq!(item["totalCores"], 2);
    let theirs: Value = http
        .get(format!("{base}/spark/mySubmissions"))
        .basic_auth("bob", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        theirs["submissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["submissionId"] != id.as_str())
    );

    // Admin listing: NDJSON.
    let ndjson = http
        .get(format!("{base}/admin/submissions"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ndjson
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).unwrap()["submissionId"] == id.as_str())
    );

    // Errors, in BPG's body.
    let bad = submit(json!({"sparkVersion": "3.5", "mainApplicationFile": "x.py", "bogus": 1}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["code"], 400);
    assert!(
        body["message"].as_str().unwrap().contains("bogus"),
        "{body}"
    );
    let old = submit(json!({"sparkVersion": "9.9", "mainApplicationFile": "x.py"}))
        .await
        .unwrap();
    assert_eq!(old.status(), 400);
    let anonymous = http
        .get(format!("{base}/spark/{id}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"bpg\""
    );
    assert_eq!(anonymous.json::<Value>().await.unwrap()["code"], "401");
    let unknown = format!("{cluster}-00000000000000000000000000000000");
    let missing = http
        .get(format!("{base}/spark/{unknown}/status"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], 404);

    // The User-Account header authenticates too; health and version.
    let health: Value = http
        .get(format!("{base}/healthcheck/status"))
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "OK"}));
    let version: Value = http
        .get(format!("{base}/admin/version"))
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(version["version"].is_string());

    // Delete: 200 {"submissionId"}.
    let deleted: Value = http
        .delete(format!("{base}/spark/{id}"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["submissionId"], id.as_str());
}

#[tokio::test]
async fn the_gateway_keeps_bpgs_wire_contract() {
    let served = serve_sim().await;
    wire_contract(&served.base(), "analytics").await;
    // And under the legacy prefix.
    let alias = format!("{}/apiv2", served.root);
    let r = http()
        .get(format!("{alias}/healthcheck/status"))
        .header("User-Account", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    served.stop().await;
}

#[tokio::test]
async fn the_mock_gateway_keeps_the_same_contract() {
    let mock = MockGateway::builder()
        .cluster(MockCluster::new("analytics"))
        .max_log_hold(Duration::from_millis(300))
        .start()
        .await;
    wire_contract(&mock.uri(), "analytics").await;
}

/// BPG's bugs (wire-contract §8), fixed.
#[tokio::test]
async fn bpgs_bugs_are_fixed() {
    let served = serve_sim().await;
    let base = served.base();
    let http = http();
    let post = |body: &'static str, ct: Option<&'static str>| {
        let mut r = http
            .post(format!("{base}/spark"))
            .header("User-Account", "alice")
            .body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    // Cluster ids with '-' work: status, spec, delete all resolve through the store.
    let r = post(r#"{"sparkVersion":"3.5","mainApplicationFile":"x.py","driver":{"labels":{"data-classification":"phi"}}}"#, Some("application/json")).await.unwrap();
    let id = r.json::<Value>().await.unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("datascience-cluster-"), "{id}");
    let s = http
        .get(format!("{base}/spark/{id}/status"))
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 200);
    // Malformed ids are a 400 on /status too (BPG: 500).
    for bad in [
        "nodash",
        "x-123",
        "Analytics-00000000000000000000000000000000",
        "a-0000000000000000000000000000000g",
    ] {
        let s = http
            .get(format!("{base}/spark/{bad}/status"))
            .header("User-Account", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(s.status(), 400, "{bad}");
    }
    // Unit-less memory is a 400 naming the field (BPG: 500).
    let r = post(
        r#"{"sparkVersion":"3.5","mainApplicationFile":"x.py","driver":{"memory":"2048"}}"#,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("driver.memory"));
    // A YAML body with no Content-Type (the seed's operator sends files so) is read as YAML.
    let r = post(
        "sparkVersion: \"3.5\"\nmainApplicationFile: local:///pi.py\n",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // A log that does not exist is a 404 (BPG: 200 with a notice).
    let r = http
        .get(format!(
            "{base}/log?subId=analytics-00000000000000000000000000000000"
        ))
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/log"))
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A repeated suffix returns the first submission (BPG: a second application).
    let body = r#"{"sparkVersion":"3.5","mainApplicationFile":"x.py","submissionIdSuffix":"once"}"#;
    let a = post(body, None)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let b = post(body, None)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(a, b);
    // An Idempotency-Key header does the same.
    let keyed = || {
        http.post(format!("{base}/spark"))
            .header("User-Account", "alice")
            .header("Idempotency-Key", "k-1")
            .body(r#"{"sparkVersion":"3.5","mainApplicationFile":"x.py"}"#)
            .send()
    };
    let a = keyed().await.unwrap().json::<Value>().await.unwrap();
    let b = keyed().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(a, b);
    // An invalid suffix is a 400 (BPG: Kubernetes refuses the name, 500).
    let r = post(
        r#"{"sparkVersion":"3.5","mainApplicationFile":"x.py","submissionIdSuffix":"Not_Valid"}"#,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown routes and methods in BPG's body.
    let r = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 404);
    let r = http.put(format!("{base}/spark")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    served.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_nothing_is_stored() {
    let mut settings = fast_settings();
    settings.max_body_bytes = 1 << 20;
    let served = serve(sim_builder().settings(settings).build().await.unwrap()).await;
    let big = format!(
        r#"{{"sparkVersion":"3.5","mainApplicationFile":"x.py","arguments":["{}"]}}"#,
        "a".repeat(2 << 20)
    );
    let r = http()
        .post(format!("{}/spark", served.base()))
        .header("User-Account", "a")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(served.gateway.store().count().await.unwrap(), 0);
    served.stop().await;
}
