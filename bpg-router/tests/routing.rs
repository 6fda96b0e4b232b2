//! Routing behaviour a user relies on, against the example rules file.

use std::path::Path;

use bpg_core::{AppType, Error, SparkJob};
use bpg_router::{
    ClusterLoad, ClusterView, Exclusion, Outcome, QueueSource, RouteError, RoutingRules,
    RulesConfig, Strategy,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const RULES: &str = "tests/data/rules.yaml";

fn rules() -> RoutingRules {
    RoutingRules::from_file(Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES))
        .unwrap_or_else(|e| panic!("example rules must load:\n{e}"))
}

fn job(name: &str) -> SparkJob {
    SparkJob::new(name, AppType::Python, "3.5", "local:///app.py")
}

fn phi(name: &str) -> SparkJob {
    job(name).with_label("data-classification", "phi")
}

#[test]
fn rules_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<RoutingRules>();
    shared::<RouteError>();
}

#[test]
fn phi_jobs_go_to_compliant_clusters_by_weight() {
    let rules = rules();
    let mut rng = StdRng::seed_from_u64(1);
    let view = ClusterView::new();
    let mut east = 0;
    for _ in 0..400 {
        let d = rules.route(&phi("claims"), &view, &mut rng).unwrap();
        assert_eq!(d.rule, "phi");
        assert_eq!(d.namespace.as_deref(), Some("spark-phi"));
        assert!(d.cluster == "phi-east" || d.cluster == "phi-west");
        east += usize::from(d.cluster == "phi-east");
    }
    // Weights 3:1.
    assert!((270..=330).contains(&east), "phi-east got {east} of 400");
}

#[test]
fn decisions_are_deterministic_under_a_seeded_rng() {
    let rules = rules();
    let view = ClusterView::new();
    let picks = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..50)
            .map(|_| {
                rules
                    .route(&phi("claims"), &view, &mut rng)
                    .unwrap()
                    .cluster
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(42), picks(42));
    assert_ne!(picks(42), picks(43));
}

#[test]
fn full_clusters_are_skipped_and_the_explanation_says_why() {
    let rules = rules();
    let view = ClusterView::new()
        .with("phi-east", ClusterLoad::new(30, 10))
        .with("phi-west", ClusterLoad::new(3, 0));
    let mut rng = StdRng::seed_from_u64(9);
    let d = rules.route(&phi("claims"), &view, &mut rng).unwrap();
    assert_eq!(d.cluster, "phi-west");
    assert_eq!(
        d.explanation.candidates[0].excluded,
        Some(Exclusion::Full {
            in_flight: 40,
            max_running: 40
        })
    );
    insta::assert_snapshot!("phi_east_full", d.explanation.to_string());
}

#[test]
fn no_capacity_left_is_a_temporary_error() {
    let rules = rules();
    let view = ClusterView::new()
        .with("phi-east", ClusterLoad::full())
        .with("phi-west", ClusterLoad::new(20, 0));
    let err = rules
        .route(&phi("claims"), &view, &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    assert!(matches!(
        err.explanation.outcome,
        Outcome::NoEligibleCluster { .. }
    ));
    assert!(err.is_temporary());
    insta::assert_snapshot!("phi_no_capacity", err.explanation.to_string());
    assert!(matches!(Error::from(err), Error::Unavailable { .. }));
}

#[test]
fn a_spark_version_no_compliant_cluster_runs_is_denied_not_leaked() {
    let rules = rules();
    let mut old = phi("legacy");
    old.spark_version = "3.3".into();
    let err = rules
        .route(&old, &ClusterView::new(), &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    assert!(!err.is_temporary());
    let exclusions: Vec<_> = err
        .explanation
        .candidates
        .iter()
        .map(|c| c.excluded.clone())
        .collect();
    assert_eq!(
        exclusions,
        vec![
            Some(Exclusion::SparkVersion {
                version: "3.3".into()
            }),
            Some(Exclusion::SparkVersion {
                version: "3.3".into()
            })
        ]
    );
    assert!(matches!(Error::from(err), Error::Denied { .. }));
}

#[test]
fn deny_rules_refuse_with_their_reason() {
    let rules = rules();
    let mut huge = phi("huge");
    huge.executor.instances = Some(1000);
    huge.executor.cores = Some(4);
    let err = rules
        .route(&huge, &ClusterView::new(), &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    assert_eq!(
        err.explanation.outcome,
        Outcome::Denied {
            rule: "oversized".into(),
            reason: "jobs above 2000 cores need a capacity reservation; ask #data-platform".into()
        }
    );
    // The phi rule matches too, but comes later.
    let names: Vec<_> = err
        .explanation
        .matched_rules
        .iter()
        .map(|r| (r.name.as_str(), r.applied))
        .collect();
    assert_eq!(names, vec![("oversized", true), ("phi", false)]);
    insta::assert_snapshot!("denied_oversized", err.explanation.to_string());
    match Error::from(err) {
        Error::Denied { reason } => assert!(reason.contains("capacity reservation"), "{reason}"),
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[test]
fn least_loaded_uses_the_view_and_falls_back_when_all_are_full() {
    let rules = rules();
    let spot = job("clicks").with_label("cost-profile", "spot");
    let mut rng = StdRng::seed_from_u64(0);
    // spot-1: 10 in flight at weight 2 (5 per unit), spot-2: 8 at weight 2 (4 per unit).
    let view = ClusterView::new()
        .with("spot-1", ClusterLoad::new(8, 2))
        .with("spot-2", ClusterLoad::new(8, 0));
    let d = rules.route(&spot, &view, &mut rng).unwrap();
    assert_eq!(d.cluster, "spot-2");
    assert_eq!(d.explanation.strategy, Some(Strategy::LeastLoaded));

    let view = ClusterView::new()
        .with("spot-1", ClusterLoad::full())
        .with("spot-2", ClusterLoad::new(100, 0));
    let d = rules.route(&spot, &view, &mut rng).unwrap();
    assert_eq!(d.cluster, "experiments");
    assert_eq!(d.connection, "bpg_gateway");
    assert!(d.explanation.candidates[2].fallback);
    insta::assert_snapshot!("spot_fallback", d.explanation.to_string());
}

#[test]
fn round_robin_rotates_and_user_queues_resolve() {
    let yaml = r#"
clusters:
  - {id: a, connection: c}
  - {id: b, connection: c}
  - {id: c-3, connection: c}
queues:
  - {name: science, users: [Ana]}
rules:
  - name: science
    match: {queues: [science]}
    route: {strategy: round_robin, clusters: [a, b, c-3]}
"#;
    let rules = RoutingRules::from_yaml(yaml, None).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut view = ClusterView::new();
    let picks: Vec<_> = (0..4)
        .map(|_| {
            let d = rules
                .route_for_user(&job("nb"), Some("ana"), &view, &mut rng)
                .unwrap();
            assert_eq!(d.explanation.queue_source, QueueSource::User);
            assert_eq!(d.queue.as_deref(), Some("science"));
            d.cluster
        })
        .collect();
    assert_eq!(picks, ["a", "b", "c-3", "a"]);
    // An excluded target passes its turn to the next one.
    view.set("b", ClusterLoad::full());
    let d = rules
        .route_for_user(&job("nb"), Some("ana"), &view, &mut rng)
        .unwrap();
    assert_eq!(d.cluster, "c-3");
    // Unknown user and no default route: nothing matches.
    let err = rules.route(&job("nb"), &view, &mut rng).unwrap_err();
    assert_eq!(err.explanation.outcome, Outcome::NoMatchingRule);
}

#[test]
fn queue_limits_and_route_queue_overrides() {
    let rules = rules();
    let mut rng = StdRng::seed_from_u64(0);
    let mut wide = job("wide").with_queue("adhoc");
    wide.executor.instances = Some(21);
    let err = rules
        .route(&wide, &ClusterView::new(), &mut rng)
        .unwrap_err();
    assert_eq!(
        err.explanation.outcome,
        Outcome::QueueLimit {
            queue: "adhoc".into(),
            max: 20,
            requested: 21
        }
    );
    let d = rules
        .route_for_user(&job("nb"), Some("BO"), &ClusterView::new(), &mut rng)
        .unwrap();
    assert_eq!(
        (d.rule.as_str(), d.cluster.as_str()),
        ("science", "experiments")
    );
    assert_eq!(d.queue.as_deref(), Some("science"));
    insta::assert_snapshot!("science_round_robin", d.explanation.to_string());
}

#[test]
fn decisions_serialize_for_scripts() {
    let rules = rules();
    let view = ClusterView::new().with("spot-1", ClusterLoad::new(1, 0));
    let d = rules
        .route(
            &job("web").with_queue("adhoc"),
            &view,
            &mut StdRng::seed_from_u64(3),
        )
        .unwrap();
    insta::assert_json_snapshot!("default_route_json", d);
}

#[test]
fn route_errors_name_what_went_wrong() {
    let rules = rules();
    let mut old = job("old");
    old.spark_version = "2.4".into();
    let err: RouteError = rules
        .route(&old, &ClusterView::new(), &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("rule default applies but none of its clusters can take the job: "),
        "{message}"
    );
    assert!(message.contains("(does not run Spark 2.4)"), "{message}");
}

#[test]
fn the_rules_file_round_trips_through_yaml() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES)).unwrap();
    let config = RulesConfig::from_yaml(&text, None).unwrap();
    let again = RulesConfig::from_yaml(&config.to_yaml(), None).unwrap();
    assert_eq!(config, again);
    assert_eq!(again.clusters[0].spark_versions, ["3.5", "3.4"]);
    assert_eq!(again.clusters[0].tags["phi-compliant"], "true");
}

#[test]
fn imported_bpg_config_routes_like_bpg() {
    let text = include_str!("data/bpg-config.example.yaml");
    let rules = RoutingRules::new(RulesConfig::from_bpg_config(text, None, None).unwrap()).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let view = ClusterView::new();
    // Queue vip is served by both clusters, weights 100 and 200.
    let mut second = 0;
    let mut vip = job("j").with_queue("vip.team");
    vip.spark_version = "3.2".into();
    for _ in 0..600 {
        let d = rules.route(&vip, &view, &mut rng).unwrap();
        assert_eq!(d.connection, d.cluster);
        assert_eq!(d.namespace.as_deref(), Some("spark-applications"));
        second += usize::from(d.cluster == "cluster-id-2");
    }
    assert!(
        (360..=440).contains(&second),
        "cluster-id-2 got {second} of 600"
    );
    // A job without a queue lands in poc, which only cluster-id-1 serves.
    let mut j = job("j");
    j.spark_version = "3.1".into();
    let d = rules.route(&j, &view, &mut rng).unwrap();
    assert_eq!(
        (d.cluster.as_str(), d.queue.as_deref()),
        ("cluster-id-1", Some("poc"))
    );
    // Versions are matched exactly, as BPG does.
    j.spark_version = "3.10".into();
    let err = rules.route(&j, &view, &mut rng).unwrap_err();
    assert!(err.explanation.candidates.iter().all(|c| c.excluded
        == Some(Exclusion::SparkVersion {
            version: "3.10".into()
        })));
    // BPG's default maxExecutorInstances is 5000 (checked against the full queue name).
    let mut wide = vip.clone().with_queue("vip");
    wide.executor.instances = Some(5001);
    assert!(matches!(
        rules
            .route(&wide, &view, &mut rng)
            .unwrap_err()
            .explanation
            .outcome,
        Outcome::QueueLimit { max: 5000, .. }
    ));
}
