//! Every call of bpg-client's typed `BpgClient`, as one suite run against the real gateway and
//! against `MockGateway`: a Rust service written against one works unchanged with the other.

mod common;

use std::time::Duration;

use bpg_client::mock::{MockCluster, MockGateway};
use bpg_client::{Auth, BpgClient, LogRequest};
use bpg_core::formats::bpg::SubmitApplicationRequest;
use bpg_core::{Error, JobState};
use futures::StreamExt;
use serde_json::json;

use common::*;

/// What both must answer. `cluster` is where plain jobs land; `batch` whether the server
/// advertises the batch-status extension (ours does, a Java BPG and its double do not).
async fn client_suite(client: &BpgClient, cluster: &str, batch: bool) {
    let version = client.version().await.unwrap();
    assert_eq!(
        version.extensions.iter().any(|e| e == "batch-status"),
        batch,
        "{version:?}"
    );
    assert_eq!(client.healthcheck().await.unwrap().status, "OK");

    // A typed submit; the suffix finds it again.
    let request: SubmitApplicationRequest = serde_json::from_value(json!({
        "applicationName": "client-pi",
        "sparkVersion": "3.5",
        "mainApplicationFile": "local:///opt/app/pi.py",
        "submissionIdSuffix": "client-1",
        "driver": {"cores": 1, "memory": "1g",
                   "env": [{"name": "API_TOKEN", "value": "never-shown"}],
                   "labels": {"sim/duration": "300ms", "sim/log-lines": "3"}},
        "executor": {"instances": 1, "cores": 1, "memory": "1g"}
    }))
    .unwrap();
    let id = client.submit(&request).await.unwrap().submission_id;
    assert!(
        id.starts_with(&format!("{cluster}-")) && id.ends_with("-client-1"),
        "{id}"
    );
    let found = client.find_by_suffix("client-1").await.unwrap().unwrap();
    assert_eq!(found.submission_id, id);
    let mine = client.my_submissions().await.unwrap();
    assert!(mine.iter().any(|s| s.submission_id == id), "{mine:?}");

    // The spec as stored, without the driver's environment.
    let spec = client.spec(&id).await.unwrap();
    assert_eq!(spec.spark_version.as_deref(), Some("3.5"));
    assert_eq!(
        spec.main_application_file.as_deref(),
        Some("local:///opt/app/pi.py")
    );
    let shown = serde_json::to_string(&spec).unwrap();
    assert!(!shown.contains("never-shown"), "{shown}");

    // A followed log runs until the job ends; the status then says it succeeded.
    let lines: Vec<String> = client
        .logs(&LogRequest::submission(&id).follow())
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert!(!lines.is_empty());
    let mut status = client.status(&id).await.unwrap();
    for _ in 0..100 {
        if status.state().is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = client.status(&id).await.unwrap();
    }
    assert_eq!(status.state(), JobState::Succeeded, "{status:?}");
    assert!(status.spark_application_id.is_some(), "{status:?}");
    // The whole log afterwards, as a snapshot.
    let snapshot: Vec<String> = client
        .logs(&LogRequest::submission(&id))
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(snapshot, lines);

    let driver = client.driver_info(&id).await.unwrap();
    assert!(driver.pod_name.is_some(), "{driver:?}");
    assert!(!client.describe(&id).await.unwrap().is_empty());

    let unknown = format!("{cluster}-0123456789abcdef0123456789abcdef");
    assert!(matches!(
        client.status(&unknown).await,
        Err(Error::NotFound { .. })
    ));
    if batch {
        let statuses = client.statuses(&[&id, &unknown]).await.unwrap();
        assert_eq!(statuses[&id].as_ref().unwrap().state(), JobState::Succeeded);
        assert!(matches!(statuses[&unknown], Err(Error::NotFound { .. })));
    }

    let listed: Vec<_> = client
        .admin_submissions(Some("client-pi"))
        .await
        .unwrap()
        .map(|s| s.unwrap().submission_id)
        .collect()
        .await;
    assert_eq!(listed, std::slice::from_ref(&id));

    let uploaded = client
        .upload("deps.zip", Some("client"), &b"PK\x03\x04"[..])
        .await
        .unwrap();
    assert!(uploaded.url.ends_with("deps.zip"), "{uploaded:?}");

    assert_eq!(client.delete(&id).await.unwrap().submission_id, id);
}

#[tokio::test]
async fn the_typed_client_works_against_the_gateway() {
    let uploads = tempfile::tempdir().unwrap();
    let mut settings = fast_settings();
    settings.upload_dir = Some(uploads.path().to_owned());
    let served = serve(sim_builder().settings(settings).build().await.unwrap()).await;
    let client = BpgClient::builder(served.base())
        .auth(Auth::user_account("alice"))
        .log_poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    client_suite(&client, "analytics", true).await;
    assert!(uploads.path().join("client/deps.zip").exists());
    served.stop().await;
}

#[tokio::test]
async fn the_typed_client_works_the_same_against_the_mock_gateway() {
    let mock = MockGateway::builder()
        .cluster(MockCluster::new("analytics"))
        .max_log_hold(Duration::from_millis(300))
        .start()
        .await;
    client_suite(&mock.client("alice"), "analytics", false).await;
}
