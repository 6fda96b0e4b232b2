//! The routed backend over simulated clusters: isolation, denials, ids that route back, load-aware
//! placement, idempotent submits across clusters, and the conformance kit.

use std::sync::Arc;
use std::time::Duration;

use bpg_backends::RoutedBackend;
use bpg_backends::routed::{job_id, split_job_id};
use bpg_core::testkit::{self, ConformanceJobs, ConformanceOptions};
use bpg_core::{
    AppType, Backend, BackendExt, Error, JobId, JobState, LogOptions, SimBackend, SparkJob,
    SubmitOptions, WaitOptions,
};
use bpg_router::RoutingRules;
use futures::StreamExt;

const RULES: &str = r#"
clusters:
  - {id: phi-east, connection: compliant, namespace: spark-phi, tags: {phi-compliant: "true"}}
  - {id: spot-1, connection: spot-one, tags: {capacity: spot}}
  - {id: spot-2, connection: spot-two, tags: {capacity: spot}}
constraints:
  - name: phi-isolation
    when: {labels: {data-classification: phi}}
    require_tags: {phi-compliant: "true"}
rules:
  - name: oversized
    match: {resources: {min_executors: 500}}
    deny: "ask #data-platform for a reservation"
  - name: phi
    match: {labels: {data-classification: phi}}
    route: {clusters: [phi-east]}
  - name: web-analytics
    match: {labels: {cost-profile: spot}}
    route: {strategy: least_loaded, clusters: [spot-1, spot-2]}
  - name: science
    match: {labels: {team: science}}
    route: {clusters: [spot-1], queue: science}
default:
  strategy: weighted_random
  clusters: [spot-1, spot-2]
"#;

struct Clusters {
    compliant: SimBackend,
    spot_one: SimBackend,
    spot_two: SimBackend,
}

impl Clusters {
    fn new() -> Self {
        Clusters {
            compliant: SimBackend::builder().name("compliant").build(),
            spot_one: SimBackend::builder().name("spot-one").build(),
            spot_two: SimBackend::builder().name("spot-two").build(),
        }
    }

    fn routed(&self, seed: u64) -> RoutedBackend {
        RoutedBackend::builder(RoutingRules::from_yaml(RULES, None).unwrap())
            .name("platform")
            .backend("compliant", Arc::new(self.compliant.clone()))
            .backend("spot-one", Arc::new(self.spot_one.clone()))
            .backend("spot-two", Arc::new(self.spot_two.clone()))
            .seed(seed)
            .build()
            .unwrap()
    }
}

fn job(name: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "local:///opt/app/job.py")
        .with_label("sim/duration", "10s")
        .with_label("sim/log-lines", "2")
}

fn phi(name: &str) -> SparkJob {
    job(name).with_label("data-classification", "phi")
}

fn web(name: &str) -> SparkJob {
    job(name).with_label("cost-profile", "spot")
}

#[tokio::test(start_paused = true)]
async fn phi_jobs_only_ever_land_on_the_compliant_cluster() {
    let clusters = Clusters::new();
    for seed in 0..5 {
        let routed = clusters.routed(seed);
        for i in 0..20 {
            // PHI jobs also carrying spot or queue hints still go to the compliant cluster.
            let claims = phi(&format!("claims-{seed}-{i}"))
                .with_label("cost-profile", "spot")
                .with_queue("adhoc");
            let s = routed.submit(&claims, &SubmitOptions::new()).await.unwrap();
            assert_eq!(s.cluster.as_deref(), Some("phi-east"), "{}", s.id);
            assert_eq!(s.namespace.as_deref(), Some("spark-phi"));
            assert!(s.id.as_str().starts_with("phi-east/compliant-"), "{}", s.id);
            let other = routed
                .submit(&job(&format!("clicks-{seed}-{i}")), &SubmitOptions::new())
                .await
                .unwrap();
            assert_ne!(other.cluster.as_deref(), Some("phi-east"));
        }
    }
    assert_eq!(clusters.compliant.accepted_count(), 100);
    assert_eq!(
        clusters.spot_one.accepted_count() + clusters.spot_two.accepted_count(),
        100
    );
    assert!(clusters.spot_one.accepted_count() > 0 && clusters.spot_two.accepted_count() > 0);
}

#[tokio::test(start_paused = true)]
async fn a_denial_is_an_error_naming_the_rule_and_nothing_is_submitted() {
    let clusters = Clusters::new();
    let routed = clusters.routed(1);
    let mut huge = phi("backfill");
    huge.executor.instances = Some(800);
    let err = routed
        .submit(&huge, &SubmitOptions::new())
        .await
        .unwrap_err();
    let Error::Denied { reason } = &err else {
        panic!("expected Denied, got {err:?}");
    };
    assert!(reason.contains("rule oversized"), "{reason}");
    assert!(reason.contains("ask #data-platform"), "{reason}");
    assert!(reason.contains("\"backfill\""), "{reason}");
    assert!(!err.is_temporary());
    let total = clusters.compliant.accepted_count()
        + clusters.spot_one.accepted_count()
        + clusters.spot_two.accepted_count();
    assert_eq!(total, 0);
}

#[tokio::test(start_paused = true)]
async fn status_logs_and_cancel_go_back_to_the_backend_that_holds_the_job() {
    let clusters = Clusters::new();
    let routed = clusters.routed(2);
    let claims = routed
        .submit(&phi("claims"), &SubmitOptions::new())
        .await
        .unwrap();
    let clicks = routed
        .submit(&web("clicks"), &SubmitOptions::new())
        .await
        .unwrap();
    let (cluster, inner) = split_job_id(&clicks.id).unwrap();
    assert!(cluster.starts_with("spot-"), "{cluster}");
    let holder = if cluster == "spot-1" {
        &clusters.spot_one
    } else {
        &clusters.spot_two
    };

    routed.cancel(&clicks.id).await.unwrap();
    assert_eq!(holder.cancel_requests(), [JobId::new(inner)]);
    assert!(clusters.compliant.cancel_requests().is_empty());
    assert_eq!(
        routed.status(&clicks.id).await.unwrap().state,
        JobState::Cancelled
    );

    // A routed backend with no memory of these ids (another process) routes them by the id alone.
    let fresh = clusters.routed(99);
    let done = fresh
        .wait_for_terminal(&claims.id, &WaitOptions::default())
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let lines: Vec<String> = fresh
        .logs(&claims.id, &LogOptions::snapshot())
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(lines.len(), 2);
    assert_eq!(
        fresh.status(&clicks.id).await.unwrap().state,
        JobState::Cancelled
    );
    let placement = fresh.placement(&clicks.id).unwrap();
    assert_eq!(placement.backend_id, JobId::new(inner));
}

#[tokio::test(start_paused = true)]
async fn ids_that_name_no_cluster_are_not_found() {
    let clusters = Clusters::new();
    let routed = clusters.routed(3);
    for id in ["no-separator", "mars-1/compliant-000001", "/x", "phi-east/"] {
        let err = routed.status(&JobId::new(id)).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{id}: {err:?}");
    }
    let err = routed
        .status(&JobId::new("mars-1/x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("phi-east, spot-1, spot-2"), "{err}");
    // An id of the right cluster but unknown to its backend is that backend's NotFound.
    let err = routed
        .status(&job_id("phi-east", &JobId::new("compliant-999999")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn least_loaded_placement_counts_the_jobs_in_flight() {
    let clusters = Clusters::new();
    let routed = clusters.routed(4);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            routed
                .submit(&web(&format!("web-{i}")), &SubmitOptions::new())
                .await
                .unwrap()
                .id,
        );
    }
    assert_eq!(clusters.spot_one.accepted_count(), 3);
    assert_eq!(clusters.spot_two.accepted_count(), 3);
    let load = routed.load();
    assert_eq!(load.get("spot-1").unwrap().in_flight(), 3);
    assert_eq!(load.get("spot-2").unwrap().in_flight(), 3);
    assert_eq!(load.get("phi-east").unwrap().in_flight(), 0);

    // Two jobs on one cluster end: the next two jobs go there.
    let on_spot_one: Vec<&JobId> = ids
        .iter()
        .filter(|id| id.as_str().starts_with("spot-1/"))
        .collect();
    for id in &on_spot_one[..2] {
        routed.cancel(id).await.unwrap();
        assert_eq!(routed.status(id).await.unwrap().state, JobState::Cancelled);
    }
    assert_eq!(routed.load().get("spot-1").unwrap().in_flight(), 1);
    for i in 0..2 {
        let s = routed
            .submit(&web(&format!("more-{i}")), &SubmitOptions::new())
            .await
            .unwrap();
        assert_eq!(s.cluster.as_deref(), Some("spot-1"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = routed.status(on_spot_one[2]).await.unwrap();
    assert_eq!(status.state, JobState::Running);
    let load = routed.load().get("spot-1").copied().unwrap();
    assert_eq!(
        (load.running, load.pending),
        (1, 2),
        "seen running vs not yet seen"
    );
}

#[tokio::test(start_paused = true)]
async fn one_key_makes_one_application_whichever_cluster_a_retry_would_pick() {
    let clusters = Clusters::new();
    let key = testkit::unique_key("routed");
    let opts = SubmitOptions::new().with_idempotency_key(key.clone());
    let routed = clusters.routed(5);
    let first = routed.submit(&job("report"), &opts).await.unwrap();
    for seed in 10..20 {
        // Fresh routed backends (new processes) draw other clusters, but find the first one.
        let again = clusters
            .routed(seed)
            .submit(&job("report"), &opts)
            .await
            .unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.backend, "platform");
    }
    let total = clusters.compliant.accepted_count()
        + clusters.spot_one.accepted_count()
        + clusters.spot_two.accepted_count();
    assert_eq!(total, 1);
    assert_eq!(
        clusters.routed(30).find(&key).await.unwrap().map(|s| s.id),
        Some(first.id)
    );
}

#[tokio::test(start_paused = true)]
async fn a_routes_queue_is_set_on_the_job() {
    let clusters = Clusters::new();
    let routed = clusters.routed(6);
    let explained = routed
        .submit_explained(
            &job("notebook").with_label("team", "science"),
            &SubmitOptions::new(),
        )
        .await
        .unwrap();
    let decision = explained.decision.expect("routed, not found");
    assert_eq!(decision.rule, "science");
    assert_eq!(decision.queue.as_deref(), Some("science"));
    assert!(decision.explanation.to_string().contains("science"));
    let inner = clusters.spot_one.submissions();
    assert_eq!(inner[0].namespace.as_deref(), Some("science"));
    assert_eq!(explained.submission.namespace.as_deref(), Some("science"));
}

#[tokio::test(start_paused = true)]
async fn conformance_kit_passes_through_a_routed_backend() {
    let clusters = Clusters::new();
    let routed: Arc<dyn Backend> = Arc::new(clusters.routed(7));
    testkit::run_all(
        routed,
        &ConformanceJobs::simulated(),
        &ConformanceOptions::default(),
    )
    .await;
}

#[test]
fn every_connection_of_the_rules_needs_a_backend() {
    let err = RoutedBackend::builder(RoutingRules::from_yaml(RULES, None).unwrap())
        .backend("compliant", Arc::new(SimBackend::new()))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("cluster `spot-1` uses connection `spot-one`"),
        "{message}"
    );
    assert!(message.contains("backends given: compliant"), "{message}");
}

#[test]
fn capabilities_are_what_every_backend_can_do() {
    let clusters = Clusters::new();
    let caps = clusters.routed(8).capabilities();
    assert!(caps.cancel && caps.logs && caps.follow_logs && caps.find && caps.idempotent_submit);
}
