//! Migrating a pipeline from direct Kubernetes submission to the BPG gateway: the same DAG file
//! (`examples/pipelines/healthtech.yaml`) and the same application files run first through the
//! Kubernetes backend (SparkApplication resources on a cluster's API server), then through the
//! gateway backend. Only the `url:` of the connection `bpg_connection` changes; the task outcomes
//! are identical.
//!
//! Run with `cargo run -p bpg-examples --example migrate_k8s_to_gateway`. No services needed: the
//! API server is `MockApiServer` (a wiremock stand-in with the spark-operator behind it, reached
//! through a kubeconfig) and the gateway is `MockGateway`. With real services the change is the
//! same line of `examples/connections/k8s.yaml` versus `examples/connections/gateway.yaml`.

use std::collections::BTreeMap;
use std::time::Duration;

use bpg_backends::connect::ConnectionRegistry;
use bpg_backends::k8s::mock::MockApiServer;
use bpg_client::mock::{MockCluster, MockGateway};
use bpg_examples::{files, print_event};
use bpg_pipeline::{RunReport, Runner, TaskState, load_dag_file};

/// Runs the healthtech pipeline with the connections file `connections`. Nothing else differs.
async fn run_with(connections: &str) -> Result<RunReport, Box<dyn std::error::Error>> {
    println!("connections file:\n{connections}");
    let dag = load_dag_file(files("pipelines/healthtech.yaml")).map_err(|d| d.to_string())?;
    let mut registry = ConnectionRegistry::new();
    registry
        .parse_yaml(connections, None)
        .map_err(|d| d.to_string())?;
    let runner = Runner::new(dag, registry)
        .run_id("migration-check")
        .poll_interval(Duration::from_millis(100));
    let mut events = runner.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            print_event(&event);
        }
    });
    let report = runner.run().await?;
    printer.await?;
    Ok(report)
}

fn outcomes(report: &RunReport) -> BTreeMap<String, (TaskState, u32)> {
    report
        .tasks
        .iter()
        .map(|(id, t)| (id.clone(), (t.state, t.try_number)))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("== before: straight to Kubernetes (spark-operator SparkApplications)");
    let api_server = MockApiServer::start().await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "bpg-migrate-example-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&kubeconfig, api_server.kubeconfig("analytics"))?;
    let before = run_with(&format!(
        "connections:\n  bpg_connection: {{ url: \"k8s://analytics/spark-jobs\", options: {{ kubeconfig: \"{}\" }} }}\n",
        kubeconfig.display()
    ))
    .await;
    let _ = std::fs::remove_file(&kubeconfig);
    let before = before?;
    println!(
        "   the API server now holds {} SparkApplications",
        api_server.applications().len()
    );

    println!("\n== after: through the Batch Processing Gateway");
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("analytics"))
        .start()
        .await;
    let url = gateway.uri().replace("http://", "bpg+http://healthtech@");
    let after = run_with(&format!(
        "connections:\n  bpg_connection: {{ url: \"{url}\", options: {{ log_poll_interval: 100ms }} }}\n"
    ))
    .await?;
    println!(
        "   the gateway accepted {} applications",
        gateway.submissions().len()
    );

    println!("\n{:<16} {:<22} gateway", "task", "kubernetes");
    let (k8s, bpg) = (outcomes(&before), outcomes(&after));
    for (task, (state, tries)) in &k8s {
        let (gw_state, gw_tries) = bpg.get(task).copied().unwrap_or_default();
        let k8s_outcome = format!("{state} (tries {tries})");
        println!("{task:<16} {k8s_outcome:<22} {gw_state} (tries {gw_tries})");
    }
    if k8s != bpg {
        return Err("the task outcomes differ between the two backends".into());
    }
    if !before.is_success() {
        return Err("the pipeline failed".into());
    }
    println!("\nidentical outcomes: only the connection's URL changed");
    Ok(())
}
