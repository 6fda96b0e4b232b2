//! Routing decisions against 100 clusters and 500 rules (target: under 2 µs per decision).

use std::collections::BTreeMap;
use std::hint::black_box;

use bpg_core::{AppType, SparkJob};
use bpg_router::{
    ClusterConfig, ClusterLoad, ClusterView, ConstraintConfig, MatchConfig, ResourceMatch,
    RouteConfig, RoutingRules, RuleConfig, RulesConfig, Strategy, TargetConfig, ValueSet,
};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CLUSTERS: usize = 100;
const RULES: usize = 500;
/// The first clusters are PHI-compliant; PHI rules only route there.
const PHI_CLUSTERS: usize = 10;
/// Rules `0..PHI_RULES` route one team's PHI jobs; rule `PHI_RULES` catches every other PHI job;
/// the rest route teams' other jobs anywhere. The load-time proof accepts this layout.
const PHI_RULES: usize = 50;

fn config() -> RulesConfig {
    let clusters = (0..CLUSTERS)
        .map(|i| {
            let mut c = ClusterConfig::new(format!("cluster-{i}"), format!("conn-{}", i % 7))
                .with_weight(1 + (i % 5) as u32);
            if i < PHI_CLUSTERS {
                c = c.with_tag("phi-compliant", "true");
            }
            c.tags.insert("region".into(), format!("r{}", i % 4));
            c.spark_versions = vec!["3.4".into(), "3.5".into()];
            c.max_running = Some(50);
            c
        })
        .collect();
    let strategies = [
        Strategy::WeightedRandom,
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
    ];
    let rules = (0..RULES)
        .map(|i| {
            let phi = i <= PHI_RULES;
            let mut matches = MatchConfig::default();
            if i != PHI_RULES {
                matches = matches.with_label("team", format!("team-{i}"));
            }
            if phi {
                matches = matches.with_label("data-classification", "phi");
            }
            if i % 3 == 0 {
                matches.queues = vec![format!("q{}", i % 20), "shared".into()];
            }
            if i % 4 == 0 {
                matches.resources = Some(ResourceMatch {
                    max_cores: Some(500 + i as u64),
                    ..ResourceMatch::default()
                });
            }
            let pool = if phi { PHI_CLUSTERS } else { CLUSTERS };
            let targets = (0..4)
                .map(|k| TargetConfig {
                    cluster: format!("cluster-{}", (i * 7 + k * 13) % pool),
                    weight: (k % 2 == 0).then_some(2 + k as u32),
                })
                .collect::<Vec<_>>();
            let mut unique = targets.clone();
            unique.dedup_by(|a, b| a.cluster == b.cluster);
            RuleConfig {
                name: format!("rule-{i}"),
                matches,
                route: Some(RouteConfig {
                    strategy: strategies[i % 3],
                    clusters: unique,
                    fallback: Vec::new(),
                    queue: None,
                }),
                deny: None,
            }
        })
        .collect();
    RulesConfig {
        clusters,
        constraints: vec![ConstraintConfig {
            name: "phi-isolation".into(),
            when: MatchConfig::default().with_label("data-classification", "phi"),
            require_tags: BTreeMap::from([("phi-compliant".into(), ValueSet(vec!["true".into()]))]),
        }],
        rules,
        // PHI jobs that match no rule still land on compliant clusters.
        default: Some(RouteConfig::to(
            (0..PHI_CLUSTERS).map(|i| format!("cluster-{i}")),
        )),
        ..RulesConfig::default()
    }
}

fn view() -> ClusterView {
    let mut view = ClusterView::new();
    for i in 0..CLUSTERS {
        view.set(
            format!("cluster-{i}"),
            ClusterLoad::new((i * 3 % 40) as u32, (i % 5) as u32),
        );
    }
    view
}

fn job(team: &str) -> SparkJob {
    let mut job = SparkJob::new("etl", AppType::Python, "3.5", "local:///etl.py")
        .with_label("team", team)
        .with_label("cost-profile", "spot")
        .with_queue("shared");
    job.executor.instances = Some(20);
    job.executor.cores = Some(4);
    job
}

fn routing(c: &mut Criterion) {
    let rules = RoutingRules::new(config()).expect("benchmark rules are valid");
    let view = view();
    let mut rng = StdRng::seed_from_u64(1);
    let late = job("team-497"); // weighted random, near the end of the list
    let round_robin = job("team-301");
    let least_loaded = job("team-302");
    let phi_team = job("team-40").with_label("data-classification", "phi");
    let phi_other = job("team-490").with_label("data-classification", "phi");
    let unmatched = job("nobody");

    let mut group = c.benchmark_group("route_100_clusters_500_rules");
    for (name, job) in [
        ("weighted_random_rule_497", &late),
        ("round_robin_rule_301", &round_robin),
        ("least_loaded_rule_302", &least_loaded),
        ("phi_team_rule_40", &phi_team),
        ("phi_catch_all_rule_50", &phi_other),
        ("no_rule_default", &unmatched),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| rules.route(black_box(job), black_box(&view), &mut rng))
        });
    }
    group.finish();

    c.bench_function("load_and_prove_100_clusters_500_rules", |b| {
        let config = config();
        b.iter(|| RoutingRules::new(black_box(config.clone())).map(|_| ()))
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
