//! Submit a Spark application to a Batch Processing Gateway and follow its driver log to the end.
//!
//! Run with `cargo run -p bpg-examples --example gateway_logs`. No services needed: the gateway is
//! `MockGateway`, a stateful BPG stand-in on a local port that scripts each application from its
//! `sim/*` driver labels. Point `BpgClient::builder` at a real gateway instead to run it for real.

use std::collections::BTreeMap;

use bpg_client::mock::{MockCluster, MockGateway};
use bpg_client::{Auth, BpgClient, LogRequest};
use bpg_core::formats::bpg::{DriverSpec, ExecutorSpec, SubmitApplicationRequest};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("analytics-east").spark_versions(["3.5"]))
        .start()
        .await;
    let client = BpgClient::builder(gateway.uri())
        .auth(Auth::basic("airflow", "not-checked-by-bpg"))
        .build()?;
    println!(
        "gateway at {} is {}",
        client.base_url(),
        client.healthcheck().await?.status
    );

    let labels = BTreeMap::from([
        ("sim/duration".to_string(), "1500ms".to_string()),
        ("sim/log-lines".to_string(), "5".to_string()),
    ]);
    let request = SubmitApplicationRequest {
        application_name: Some("calculate-pi".into()),
        spark_version: Some("3.5".into()),
        main_application_file: Some("local:///opt/spark/examples/src/main/python/pi.py".into()),
        arguments: Some(vec!["100".into()]),
        submission_id_suffix: Some("quickstart-1".into()),
        driver: Some(DriverSpec {
            cores: Some(1),
            memory: Some("2g".into()),
            labels: Some(labels),
            ..Default::default()
        }),
        executor: Some(ExecutorSpec {
            instances: Some(2),
            cores: Some(1),
            memory: Some("2g".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = client.submit(&request).await?.submission_id;
    println!("submitted calculate-pi as {id}");

    // Follow the driver log: the stream ends when the application does.
    let mut log = client.logs(&LogRequest::submission(&id).follow()).await?;
    while let Some(line) = log.next().await {
        let line = line?;
        println!("  [{:>2}] {}", line.position, line.text);
    }

    let status = client.status(&id).await?;
    println!(
        "{id} ended {} after {} ms",
        status.application_state.as_deref().unwrap_or("UNKNOWN"),
        status.duration.unwrap_or_default()
    );
    Ok(())
}
