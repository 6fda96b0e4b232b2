//! SimBackend passes the conformance kit every backend runs.

use std::sync::Arc;

use bpg_core::SimBackend;
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};

#[tokio::test(start_paused = true)]
async fn sim_backend_is_conformant() {
    testkit::run_all(
        Arc::new(SimBackend::new()),
        &ConformanceJobs::simulated(),
        &ConformanceOptions::default(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn sim_backend_with_capacity_is_conformant() {
    let sim = SimBackend::builder().name("tight").capacity(1).build();
    testkit::run_all(
        Arc::new(sim),
        &ConformanceJobs::simulated(),
        &ConformanceOptions::default(),
    )
    .await;
}
