//! Submit Spark jobs to the simulated backend, follow a driver log, and wait for the outcomes.
//!
//! Run with `cargo run -p bpg-examples --example sim_quickstart`. No services needed: `SimBackend`
//! scripts each job from its `sim/*` labels.

use std::sync::Arc;
use std::time::Duration;

use bpg_core::{
    AppType, Backend, BackendExt, IdempotencyKey, LogOptions, SimBackend, SparkJob, SubmitOptions,
    WaitOptions,
};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend: Arc<dyn Backend> = Arc::new(
        SimBackend::builder()
            .name("sim-cluster")
            .capacity(2)
            .build(),
    );

    let jobs = [
        SparkJob::new(
            "calculate-pi",
            AppType::Python,
            "3.5",
            "local:///opt/spark/examples/pi.py",
        )
        .with_label("sim/duration", "1500ms")
        .with_label("sim/log-lines", "3"),
        SparkJob::new(
            "word-count",
            AppType::Scala,
            "3.5",
            "s3a://bucket/jobs/wordcount.jar",
        )
        .with_main_class("org.example.WordCount")
        .with_label("sim/duration", "1s"),
        SparkJob::new(
            "flaky-report",
            AppType::Python,
            "3.5",
            "s3a://bucket/jobs/report.py",
        )
        .with_label("sim/duration", "500ms")
        .with_label("sim/outcome", "failed")
        .with_label("sim/message", "Table reports.daily not found"),
    ];

    let mut submissions = Vec::new();
    for job in &jobs {
        let key = IdempotencyKey::for_task("quickstart", "manual", &job.name, 1);
        let submission = backend
            .submit(job, &SubmitOptions::new().with_idempotency_key(key))
            .await?;
        println!("submitted {:<14} as {}", job.name, submission.id);
        submissions.push((job.name.clone(), submission));
    }

    let (_, first) = &submissions[0];
    let mut log = backend.logs(&first.id, &LogOptions::follow()).await?;
    while let Some(line) = log.next().await {
        println!("  [{}] {}", first.id, line?.text);
    }

    let wait = WaitOptions::default().poll_interval(Duration::from_millis(200));
    for (name, submission) in &submissions {
        let status = backend.wait_for_terminal(&submission.id, &wait).await?;
        let detail = status
            .message
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        println!(
            "{name:<14} {:<10} native={}{detail}",
            status.state, status.native_state
        );
    }
    Ok(())
}
