//! The routed backend over two BPG gateways (bpg-client's `MockGateway`): PHI jobs reach only the
//! compliant gateway, calls go back to the gateway holding the job, a lost submit answer behind the
//! router still makes one application, and the conformance kit passes through the whole stack.

#![cfg(feature = "gateway")]

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::RoutedBackend;
use bpg_backends::gateway::{GatewayBackend, GatewayConfig};
use bpg_client::RetryPolicy;
use bpg_client::mock::{Fault, MockCluster, MockGateway, Route};
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, BackendExt, JobId, JobState, SparkJob, SubmitOptions, WaitOptions,
};
use bpg_router::RoutingRules;

const RULES: &str = r#"
clusters:
  - {id: phi-east, connection: compliant, tags: {phi-compliant: "true"}}
  - {id: spot-1, connection: spot, tags: {capacity: spot}}
constraints:
  - name: phi-isolation
    when: {labels: {data-classification: phi}}
    require_tags: {phi-compliant: "true"}
rules:
  - name: phi
    match: {labels: {data-classification: phi}}
    route: {clusters: [phi-east]}
default: {clusters: [spot-1]}
"#;

struct Gateways {
    compliant: MockGateway,
    spot: MockGateway,
}

impl Gateways {
    async fn start() -> Self {
        let start = |cluster: &'static str| async move {
            MockGateway::builder()
                .cluster(MockCluster::new(cluster))
                .max_log_hold(Duration::from_millis(300))
                .start()
                .await
        };
        Gateways {
            compliant: start("phi-east").await,
            spot: start("spot-1").await,
        }
    }

    fn gateway(mock: &MockGateway, name: &str) -> Arc<dyn Backend> {
        let url = mock.uri().replace("http://", "bpg+http://airflow@");
        let config = GatewayConfig::from_url(&url)
            .unwrap()
            .name(name)
            .retry(
                RetryPolicy::default()
                    .backoff_between(Duration::from_millis(10), Duration::from_millis(50)),
            )
            .log_poll_interval(Duration::from_millis(50));
        Arc::new(GatewayBackend::new(config).unwrap())
    }

    fn routed(&self) -> RoutedBackend {
        RoutedBackend::builder(RoutingRules::from_yaml(RULES, None).unwrap())
            .backend("compliant", Gateways::gateway(&self.compliant, "compliant"))
            .backend("spot", Gateways::gateway(&self.spot, "spot"))
            .seed(11)
            .build()
            .unwrap()
    }
}

fn job(name: &str, duration: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "local:///opt/app/job.py")
        .with_label("sim/duration", duration)
}

#[tokio::test]
async fn phi_jobs_reach_only_the_compliant_gateway() {
    let gateways = Gateways::start().await;
    let routed = gateways.routed();
    for i in 0..8 {
        let claims = job(&format!("claims-{i}"), "50ms").with_label("data-classification", "phi");
        let s = routed.submit(&claims, &SubmitOptions::new()).await.unwrap();
        assert!(s.id.as_str().starts_with("phi-east/phi-east-"), "{}", s.id);
        let clicks = job(&format!("clicks-{i}"), "50ms").with_label("cost-profile", "spot");
        let s = routed.submit(&clicks, &SubmitOptions::new()).await.unwrap();
        assert!(s.id.as_str().starts_with("spot-1/spot-1-"), "{}", s.id);
    }
    let labels_of = |mock: &MockGateway| -> Vec<String> {
        mock.submissions()
            .iter()
            .map(|s| {
                s.request["driver"]["labels"]["data-classification"]
                    .as_str()
                    .unwrap_or("none")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(labels_of(&gateways.compliant), vec!["phi"; 8]);
    assert_eq!(labels_of(&gateways.spot), vec!["none"; 8]);
}

#[tokio::test]
async fn status_and_cancel_go_back_to_the_gateway_holding_the_job() {
    let gateways = Gateways::start().await;
    let routed = gateways.routed();
    let long = routed
        .submit(&job("stream", "1h"), &SubmitOptions::new())
        .await
        .unwrap();
    let short = routed
        .submit(
            &job("claims", "50ms").with_label("data-classification", "phi"),
            &SubmitOptions::new(),
        )
        .await
        .unwrap();
    routed.cancel(&long.id).await.unwrap();
    assert_eq!(gateways.spot.journal_for(Route::Delete).len(), 1);
    assert!(gateways.compliant.journal_for(Route::Delete).is_empty());
    assert_eq!(
        routed.status(&long.id).await.unwrap().state,
        JobState::Cancelled
    );
    let wait = WaitOptions::default()
        .poll_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(20));
    let done = routed.wait_for_terminal(&short.id, &wait).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert!(
        gateways
            .spot
            .journal_for(Route::Status)
            .iter()
            .all(|e| !e.path.contains("phi-east")),
        "no status call for the PHI job went to the spot gateway"
    );
}

#[tokio::test]
async fn a_lost_submit_answer_behind_the_router_still_makes_one_application() {
    let gateways = Gateways::start().await;
    let routed = gateways.routed();
    let opts = SubmitOptions::new().with_idempotency_key(testkit::unique_key("routed-lost"));
    gateways
        .spot
        .inject(Fault::drop_connection().on(Route::Submit).times(1));
    let first = routed.submit(&job("report", "100ms"), &opts).await.unwrap();
    let again = gateways
        .routed()
        .submit(&job("report", "100ms"), &opts)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(gateways.spot.accepted_count(), 1);
    assert_eq!(gateways.compliant.accepted_count(), 0);
    assert_eq!(gateways.spot.journal_for(Route::Submit).len(), 1);
}

#[tokio::test]
async fn conformance_kit_passes_through_the_router_and_the_gateways() {
    let gateways = Gateways::start().await;
    let routed: Arc<dyn Backend> = Arc::new(gateways.routed());
    let base = SparkJob::new(
        "conformance",
        AppType::Python,
        "3.5",
        "local:///opt/app/conformance.py",
    );
    let jobs = ConformanceJobs {
        succeeds: base
            .clone()
            .with_label("sim/duration", "300ms")
            .with_label("sim/log-lines", "3"),
        fails: base
            .clone()
            .with_label("sim/duration", "100ms")
            .with_label("sim/outcome", "failed"),
        long_running: base.with_label("sim/duration", "1h"),
    };
    let options = ConformanceOptions {
        wait: WaitOptions::default()
            .poll_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(30)),
        unknown_id: JobId::new("spot-1/spot-1-00000000000000000000000000000000"),
    };
    testkit::run_all(routed, &jobs, &options).await;
}

#[tokio::test]
async fn a_job_its_gateway_no_longer_knows_stops_counting_as_load() {
    let gateways = Gateways::start().await;
    let routed = gateways.routed();
    let s = routed
        .submit(&job("stream", "1h"), &SubmitOptions::new())
        .await
        .unwrap();
    assert_eq!(routed.load().get("spot-1").unwrap().in_flight(), 1);
    // Deleted behind the router's back (an operator, or the gateway's TTL).
    let (_, inner) = bpg_backends::routed::split_job_id(&s.id).unwrap();
    gateways.spot.client("airflow").delete(inner).await.unwrap();
    let err = routed.status(&s.id).await.unwrap_err();
    assert!(matches!(err, bpg_core::Error::NotFound { .. }), "{err:?}");
    assert_eq!(routed.load().get("spot-1").unwrap().in_flight(), 0);
}
