//! Properties over random rule sets, clusters, loads and jobs.

use std::collections::BTreeMap;

use bpg_core::{AppType, SparkJob};
use bpg_router::{
    ClusterConfig, ClusterLoad, ClusterView, ConstraintConfig, MatchConfig, ResourceMatch,
    RouteConfig, RoutingRules, RuleConfig, RulesConfig, Strategy as Pick, TargetConfig, ValueSet,
};
use proptest::prelude::*;
use proptest::sample::subsequence;
use rand::SeedableRng;
use rand::rngs::StdRng;

const CLASSES: [&str; 3] = ["phi", "pii", "public"];
const QUEUES: [&str; 3] = ["etl", "adhoc", "science"];
const USERS: [&str; 2] = ["ana", "bo"];
const VERSIONS: [&str; 2] = ["3.4", "3.5"];

fn strings(values: Vec<&str>) -> Vec<String> {
    values.into_iter().map(str::to_owned).collect()
}

fn cluster(i: usize) -> impl Strategy<Value = ClusterConfig> {
    (
        any::<bool>(),
        any::<bool>(),
        subsequence(VERSIONS.to_vec(), 0..=2),
        subsequence(QUEUES.to_vec(), 0..=2),
        0u32..4,
        proptest::option::of(0u32..4),
    )
        .prop_map(move |(phi, gold, versions, queues, weight, max_running)| {
            let mut c = ClusterConfig::new(format!("c-{i}"), format!("conn-{i}"));
            if phi {
                c.tags.insert("phi-compliant".into(), "true".into());
            }
            if gold {
                c.tags.insert("tier".into(), "gold".into());
            }
            c.spark_versions = strings(versions);
            c.queues = strings(queues);
            c.weight = weight;
            c.max_running = max_running;
            c
        })
}

fn condition() -> impl Strategy<Value = MatchConfig> {
    (
        proptest::option::of(subsequence(CLASSES.to_vec(), 1..=2)),
        subsequence(QUEUES.to_vec(), 0..=2),
        subsequence(USERS.to_vec(), 0..=1),
        subsequence(VERSIONS.to_vec(), 0..=1),
        proptest::option::of((1u64..6, 0u64..6)),
    )
        .prop_map(|(classes, queues, users, versions, cores)| {
            let mut m = MatchConfig {
                queues: strings(queues),
                users: strings(users),
                spark_versions: strings(versions),
                ..MatchConfig::default()
            };
            if let Some(classes) = classes {
                m.labels
                    .insert("data-classification".into(), ValueSet(strings(classes)));
            }
            m.resources = cores.map(|(lo, extra)| ResourceMatch {
                min_cores: Some(lo),
                max_cores: Some(lo + extra),
                ..ResourceMatch::default()
            });
            m
        })
}

fn route(n: usize) -> impl Strategy<Value = RouteConfig> {
    (
        subsequence((0..n).collect::<Vec<_>>(), 1..=n.min(3)),
        prop_oneof![
            Just(Pick::WeightedRandom),
            Just(Pick::RoundRobin),
            Just(Pick::LeastLoaded)
        ],
        any::<bool>(),
    )
        .prop_map(move |(picked, strategy, split)| {
            let targets: Vec<TargetConfig> = picked
                .iter()
                .map(|i| TargetConfig::new(format!("c-{i}")))
                .collect();
            let cut = if split && targets.len() > 1 {
                1
            } else {
                targets.len()
            };
            RouteConfig {
                strategy,
                clusters: targets[..cut].to_vec(),
                fallback: targets[cut..].to_vec(),
                queue: None,
            }
        })
}

fn rules_config() -> impl Strategy<Value = RulesConfig> {
    (2usize..6).prop_flat_map(|n| {
        let clusters: Vec<_> = (0..n).map(cluster).collect();
        let constraint = (
            proptest::option::of(subsequence(CLASSES[..2].to_vec(), 1..=2)),
            subsequence(QUEUES.to_vec(), 0..=1),
            prop_oneof![Just(("phi-compliant", "true")), Just(("tier", "gold"))],
        )
            .prop_map(|(classes, queues, (tag, value))| {
                let mut when = MatchConfig {
                    queues: strings(queues),
                    ..MatchConfig::default()
                };
                if let Some(classes) = classes {
                    when.labels
                        .insert("data-classification".into(), ValueSet(strings(classes)));
                }
                ConstraintConfig {
                    name: format!("{tag}-isolation"),
                    when,
                    require_tags: BTreeMap::from([(tag.to_owned(), ValueSet(vec![value.into()]))]),
                }
            });
        let rule = (condition(), proptest::option::of(route(n)));
        (
            clusters,
            proptest::collection::vec(constraint, 0..=2),
            proptest::collection::vec(rule, 0..6),
            proptest::option::of(route(n)),
        )
            .prop_map(|(clusters, mut constraints, rules, default)| {
                constraints.dedup_by(|a, b| a.name == b.name);
                RulesConfig {
                    clusters,
                    queues: Vec::new(),
                    default_queue: None,
                    constraints,
                    rules: rules
                        .into_iter()
                        .enumerate()
                        .map(|(i, (matches, route))| RuleConfig {
                            name: format!("r{i}"),
                            matches,
                            deny: route.is_none().then(|| "no".into()),
                            route,
                        })
                        .collect(),
                    default,
                }
            })
    })
}

#[derive(Clone, Debug)]
struct JobSpec {
    class: Option<&'static str>,
    queue: Option<&'static str>,
    user: Option<&'static str>,
    version: &'static str,
    executors: u32,
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        proptest::option::of(proptest::sample::select(vec![
            "phi", "pii", "public", "other",
        ])),
        proptest::option::of(proptest::sample::select(QUEUES.to_vec())),
        proptest::option::of(proptest::sample::select(USERS.to_vec())),
        proptest::sample::select(VERSIONS.to_vec()),
        0u32..5,
    )
        .prop_map(|(class, queue, user, version, executors)| JobSpec {
            class,
            queue,
            user,
            version,
            executors,
        })
}

fn build(spec: &JobSpec) -> SparkJob {
    let mut job = SparkJob::new("j", AppType::Scala, spec.version, "local:///app.jar");
    if let Some(c) = spec.class {
        job = job.with_label("data-classification", c);
    }
    job.queue = spec.queue.map(str::to_owned);
    job.executor.instances = Some(spec.executors);
    job
}

/// Reference semantics of a condition, written independently of the crate's index.
fn holds(m: &MatchConfig, job: &SparkJob, user: Option<&str>) -> bool {
    let listed = |list: &Vec<String>, v: Option<&str>| {
        list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
    };
    let cores = job.total_cores();
    listed(&m.queues, job.queue.as_deref())
        && listed(&m.users, user)
        && listed(&m.spark_versions, Some(&job.spark_version))
        && m.labels
            .iter()
            .all(|(k, v)| job.label(k).is_some_and(|x| v.contains(x)))
        && m.resources.as_ref().is_none_or(|r| {
            r.min_cores.is_none_or(|lo| cores >= lo) && r.max_cores.is_none_or(|hi| cores <= hi)
        })
}

fn complies(config: &RulesConfig, cluster: &str, job: &SparkJob, user: Option<&str>) -> bool {
    let Some(c) = config.clusters.iter().find(|c| c.id == cluster) else {
        return false;
    };
    config.constraints.iter().all(|k| {
        !holds(&k.when, job, user)
            || k.require_tags
                .iter()
                .all(|(tag, values)| c.tags.get(tag).is_some_and(|v| values.contains(v)))
    })
}

fn view_from(config: &RulesConfig, loads: &[(u32, u32, bool)]) -> ClusterView {
    let mut view = ClusterView::new();
    for (c, &(running, pending, full)) in config.clusters.iter().zip(loads) {
        view.set(
            c.id.clone(),
            ClusterLoad {
                running,
                pending,
                full,
            },
        );
    }
    view
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// No decision ever places a job on a cluster that breaks a constraint covering it.
    #[test]
    fn no_decision_violates_a_constraint(
        config in rules_config(),
        jobs in proptest::collection::vec(job_spec(), 1..12),
        loads in proptest::collection::vec((0u32..4, 0u32..2, proptest::bool::weighted(0.2)), 6),
        seed in any::<u64>(),
    ) {
        let Ok(rules) = RoutingRules::new(config.clone()) else { return Ok(()); };
        let view = view_from(&config, &loads);
        let mut rng = StdRng::seed_from_u64(seed);
        for spec in &jobs {
            let job = build(spec);
            if let Ok(d) = rules.route_for_user(&job, spec.user, &view, &mut rng) {
                prop_assert!(complies(&config, &d.cluster, &job, spec.user),
                    "{} routed to {} against a constraint\n{}", spec.class.unwrap_or("-"), d.cluster, d.explanation);
            }
        }
    }

    /// Every config the loader accepts is leak-free: whichever rule (or default) applies to a job,
    /// every cluster it lists, fallbacks included, complies with the constraints covering that job.
    /// The rule applied is also the first one whose condition holds (the index agrees with a plain scan).
    #[test]
    fn accepted_configs_are_leak_free(
        config in rules_config(),
        jobs in proptest::collection::vec(job_spec(), 1..16),
    ) {
        let Ok(rules) = RoutingRules::new(config.clone()) else { return Ok(()); };
        let view = ClusterView::new();
        let mut rng = StdRng::seed_from_u64(0);
        for spec in &jobs {
            let job = build(spec);
            let first = config.rules.iter().find(|r| holds(&r.matches, &job, spec.user));
            let explanation = match rules.route_for_user(&job, spec.user, &view, &mut rng) {
                Ok(d) => d.explanation,
                Err(e) => *e.explanation,
            };
            let applied = explanation.matched_rules.iter().find(|r| r.applied).map(|r| r.name.clone());
            match first {
                Some(r) => prop_assert_eq!(applied.as_deref(), Some(r.name.as_str())),
                None => prop_assert_eq!(applied.as_deref(), config.default.as_ref().map(|_| "default")),
            }
            let route = match first {
                Some(r) => r.route.as_ref(),
                None => config.default.as_ref(),
            };
            for t in route.iter().flat_map(|r| r.clusters.iter().chain(&r.fallback)) {
                prop_assert!(complies(&config, &t.cluster, &job, spec.user),
                    "accepted config lets {:?} reach {}", spec, t.cluster);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Weighted random picks converge to weight / total weight.
    #[test]
    fn weighted_picks_converge_to_the_weights(
        weights in proptest::collection::vec(1u32..10, 2..5),
        seed in any::<u64>(),
    ) {
        let clusters: Vec<ClusterConfig> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| ClusterConfig::new(format!("c-{i}"), "conn").with_weight(*w))
            .collect();
        let ids: Vec<String> = clusters.iter().map(|c| c.id.clone()).collect();
        let config = RulesConfig {
            clusters,
            default: Some(RouteConfig::to(ids.clone())),
            ..RulesConfig::default()
        };
        let rules = RoutingRules::new(config).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let n = 4000;
        let mut counts = vec![0u32; ids.len()];
        let job = SparkJob::new("j", AppType::Scala, "3.5", "local:///app.jar");
        for _ in 0..n {
            let d = rules.route(&job, &ClusterView::new(), &mut rng).unwrap();
            let i = ids.iter().position(|id| *id == d.cluster).unwrap();
            counts[i] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (count, w) in counts.iter().zip(&weights) {
            let expected = f64::from(*w) / f64::from(total);
            let observed = f64::from(*count) / f64::from(n);
            // Five standard deviations of a binomial proportion at n = 4000 is below 0.04.
            prop_assert!((observed - expected).abs() < 0.04, "weight {w}/{total}: observed {observed:.3}");
        }
    }
}
