//! Client-side routing for a healthcare analytics platform (DESIGN.md §1): PHI workloads run only on
//! the dedicated compliant cluster, web analytics on the cheap spot cluster, data scientists on the
//! experimentation cluster. A `RoutedBackend` applies bpg-router rules to every job and sends it to
//! the gateway connection of its cluster; the isolation constraint is proven when the rules load
//! and checked again on every decision.
//!
//! Run with `cargo run -p bpg-examples --example healthtech_routing`. No services needed: the
//! gateway is `MockGateway`, a stateful BPG stand-in on a local port fronting the three clusters,
//! scripting each application from its `sim/*` driver labels.

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::RoutedBackend;
use bpg_backends::gateway::{GatewayBackend, GatewayConfig};
use bpg_client::mock::{MockCluster, MockGateway};
use bpg_core::{
    AppType, Backend, BackendExt, Error, IdempotencyKey, SparkJob, SubmitOptions, WaitOptions,
};
use bpg_examples::PinnedCluster;
use bpg_router::RoutingRules;

const RULES: &str = r#"
clusters:
  - {id: phi-east, connection: phi_east, tags: {phi-compliant: "true", capacity: on-demand}}
  - {id: spot-web, connection: spot_web, tags: {capacity: spot}}
  - {id: experiments, connection: experiments, tags: {capacity: on-demand}}
constraints:
  - name: phi-isolation
    when: {labels: {data-classification: phi}}
    require_tags: {phi-compliant: "true"}
rules:
  - name: oversized
    match: {resources: {min_executors: 200}}
    deny: "jobs over 200 executors need a capacity reservation; ask #data-platform"
  - name: phi
    match: {labels: {data-classification: phi}}
    route: {clusters: [phi-east]}
  - name: web-analytics
    match: {labels: {cost-profile: spot}}
    route: {clusters: [spot-web]}
  - name: data-science
    match: {labels: {team: data-science}}
    route: {clusters: [experiments]}
default: {clusters: [spot-web]}
"#;

/// The same rules with a shortcut for big jobs placed before the PHI rule: PHI jobs with many
/// cores would reach the spot cluster, so the rules are refused at load.
const LEAKY_RULES: &str = r#"
clusters:
  - {id: phi-east, connection: phi_east, tags: {phi-compliant: "true"}}
  - {id: spot-web, connection: spot_web, tags: {capacity: spot}}
constraints:
  - name: phi-isolation
    when: {labels: {data-classification: phi}}
    require_tags: {phi-compliant: "true"}
rules:
  - name: big-jobs-on-spot
    match: {resources: {min_cores: 64}}
    route: {clusters: [spot-web]}
  - name: phi
    match: {labels: {data-classification: phi}}
    route: {clusters: [phi-east]}
default: {clusters: [spot-web]}
"#;

fn job(name: &str, seconds: u32) -> SparkJob {
    SparkJob::new(
        name,
        AppType::Python,
        "3.5",
        format!("s3a://healthtech-jobs/{name}.py"),
    )
    .with_label("sim/duration", format!("{seconds}s"))
    .with_label("sim/log-lines", "2")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("phi-east"))
        .cluster(MockCluster::new("spot-web"))
        .cluster(MockCluster::new("experiments"))
        .start()
        .await;
    // The URL a connections file would hold; the password would come from a secret store.
    let url = gateway.uri().replace("http://", "bpg+http://healthtech@");
    println!("BPG gateway at {url}\n");

    // One connection per cluster: the gateway backend, pinned to that cluster of the gateway.
    let connection = |cluster: &str| -> bpg_core::Result<Arc<dyn Backend>> {
        let config = GatewayConfig::from_url(&url)?.name(cluster);
        let gateway: Arc<dyn Backend> = Arc::new(GatewayBackend::new(config)?);
        Ok(Arc::new(PinnedCluster::new(gateway, cluster)))
    };
    let rules = RoutingRules::from_yaml(RULES, None).map_err(bpg_core::Error::from)?;
    let routed = RoutedBackend::builder(rules)
        .name("healthtech")
        .user("healthtech")
        .backend("phi_east", connection("phi-east")?)
        .backend("spot_web", connection("spot-web")?)
        .backend("experiments", connection("experiments")?)
        .build()?;

    let mut backfill = job("full-history-backfill", 1).with_label("data-classification", "phi");
    backfill.executor.instances = Some(400);
    let jobs = [
        job("claims-ingest", 2).with_label("data-classification", "phi"),
        job("patient-risk-model", 2)
            .with_label("data-classification", "phi")
            .with_label("team", "data-science"),
        job("web-clickstream", 1).with_label("cost-profile", "spot"),
        job("marketing-funnel", 1).with_label("cost-profile", "spot"),
        job("feature-exploration", 1).with_label("team", "data-science"),
        backfill,
    ];

    let mut submitted = Vec::new();
    for spark_job in &jobs {
        let key = IdempotencyKey::for_task("healthtech", "manual", &spark_job.name, 1);
        let options = SubmitOptions::new().with_idempotency_key(key);
        println!("== {}", spark_job.name);
        match routed.submit_explained(spark_job, &options).await {
            Ok(placed) => {
                println!("   submitted as {}", placed.submission.id);
                if let Some(decision) = &placed.decision {
                    println!("   -> {decision}");
                    for line in decision.explanation.to_string().lines() {
                        println!("      {line}");
                    }
                }
                submitted.push((spark_job.name.clone(), placed.submission));
            }
            Err(Error::Denied { reason }) => println!("   refused: {reason}"),
            Err(other) => return Err(other.into()),
        }
        println!();
    }

    let wait = WaitOptions::default().poll_interval(Duration::from_millis(200));
    println!("outcomes:");
    for (name, submission) in &submitted {
        let status = routed.wait_for_terminal(&submission.id, &wait).await?;
        println!(
            "  {name:<20} {:<10} on {}",
            status.state,
            submission.cluster.as_deref().unwrap_or("?")
        );
    }

    // What the gateway itself saw: every PHI application ran on the compliant cluster.
    for application in gateway.submissions() {
        let phi = application.request["driver"]["labels"]["data-classification"] == "phi";
        if phi && application.cluster != "phi-east" {
            return Err(format!(
                "PHI application {} ran on {}",
                application.id, application.cluster
            )
            .into());
        }
    }
    println!(
        "\nevery PHI application ran on phi-east ({} applications in all)",
        gateway.accepted_count()
    );

    // A rules change that could leak PHI jobs never loads.
    match RoutingRules::from_yaml(LEAKY_RULES, None) {
        Ok(_) => return Err("the leaky rules were accepted".into()),
        Err(diagnostics) => println!("\nleaky rules refused at load:\n{diagnostics}"),
    }
    Ok(())
}
