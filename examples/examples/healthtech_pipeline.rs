//! The healthtech daily pipeline, start >> [calculate_pi, word_count] >> statistics_calc >> end,
//! submitted through the BPG gateway backend to a gateway that fronts two clusters:
//! `analytics` (spot capacity) and `datascience` (PHI-compliant). Routing rules
//! (`examples/rules/healthtech.yaml`) send the PHI-labelled statistics job to `datascience` only;
//! driver logs are streamed as the tasks run, and a summary is printed at the end.
//!
//! Run with `cargo run -p bpg-examples --example healthtech_pipeline`. No services needed: the
//! gateway is `MockGateway`, a stateful BPG stand-in on a local port that scripts each application
//! from its `sim/*` driver labels. The pipeline is the same file `bpg run` takes
//! (`examples/pipelines/healthtech.yaml`).

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::RoutedBackend;
use bpg_backends::connect::ConnectionRegistry;
use bpg_backends::gateway::{GatewayBackend, GatewayConfig};
use bpg_client::mock::{MockCluster, MockGateway};
use bpg_core::Backend;
use bpg_examples::{PinnedCluster, files, print_event, print_summary};
use bpg_pipeline::{Runner, load_dag_file};
use bpg_router::RoutingRules;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("analytics"))
        .cluster(MockCluster::new("datascience"))
        .start()
        .await;
    // The URL a connections file would hold: `bpg+http://USER@HOST:PORT/skatev2`.
    let url = gateway.uri().replace("http://", "bpg+http://healthtech@");
    println!("gateway at {url}");

    // One gateway backend per cluster of the rules, each pinned to its cluster.
    let cluster = |name: &str| -> bpg_core::Result<Arc<dyn Backend>> {
        let config = GatewayConfig::from_url(&url)?
            .name(name)
            .log_poll_interval(Duration::from_millis(100));
        let backend: Arc<dyn Backend> = Arc::new(GatewayBackend::new(config)?);
        Ok(Arc::new(PinnedCluster::new(backend, name)))
    };
    let rules =
        RoutingRules::from_file(files("rules/healthtech.yaml")).map_err(|d| d.to_string())?;
    let routed = RoutedBackend::builder(rules)
        .name("bpg_connection")
        .backend("analytics", cluster("analytics")?)
        .backend("datascience", cluster("datascience")?)
        .build()?;

    let dag = load_dag_file(files("pipelines/healthtech.yaml")).map_err(|d| d.to_string())?;
    let mut connections = ConnectionRegistry::new();
    connections.insert_backend("bpg_connection", Arc::new(routed));

    let runner = Runner::new(dag, connections).poll_interval(Duration::from_millis(100));
    let mut events = runner.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            print_event(&event);
        }
    });
    let report = runner.run().await?;
    printer.await?;
    print_summary(&report);

    println!("\nwhere the gateway ran them:");
    for submission in gateway.submissions() {
        let name = submission.request["applicationName"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let phi = submission.request["driver"]["labels"]["data-classification"] == "phi";
        println!(
            "  {name:<16} on {}{}",
            submission.cluster,
            if phi {
                " (PHI: compliant cluster only)"
            } else {
                ""
            }
        );
        if phi && submission.cluster != "datascience" {
            return Err(format!("PHI job {name} ran on {}", submission.cluster).into());
        }
    }
    if !report.is_success() {
        return Err(format!("run {} failed", report.run_id).into());
    }
    Ok(())
}
