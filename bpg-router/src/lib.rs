//! # bpg-router
//!
//! Decides which cluster (connection, namespace, queue) a Spark job runs on, from a YAML rules file:
//! clusters with tags, Spark versions, weights and capacity; queues; ordered rules that match on
//! queue, labels, user, Spark version and requested resources and either route to a weighted set of
//! clusters or deny; and **isolation constraints** ("jobs labelled `data-classification: phi` only
//! run on clusters tagged `phi-compliant: true`") that are proven at load and re-checked on every
//! decision. Strategies: weighted random (BPG's), round robin, least loaded from a load snapshot
//! the caller passes in. Every [`Decision`] carries an [`Explanation`] (rules matched, clusters
//! excluded and why) that renders for people and serializes for scripts.
//!
//! ## Rules file format
//!
//! Every section rejects unknown fields; errors name file, line and field.
//!
//! ```yaml
//! clusters:                      # required, at least one
//!   - id: phi-east               # lowercase letters, digits, '-' (DNS-1123 label)
//!     connection: k8s_phi_east   # connection name from the pipeline's connections file
//!     namespace: spark-phi       # optional
//!     tags: {phi-compliant: "true", capacity: on-demand}   # free key/values for constraints
//!     spark_versions: ["3.5"]    # optional; exact, case-insensitive; absent = any
//!     queues: [etl]              # optional; a queue or its parent (before the first '.'); absent = any
//!     weight: 3                  # default 1; 0 = never picked
//!     max_running: 40            # optional; full when running + pending reaches it
//! queues:                        # optional
//!   - {name: science, users: [ana], max_executor_instances: 50}
//! default_queue: adhoc           # optional; for jobs with no queue whose user is in no queue
//! constraints:                   # proven at load, re-checked on every decision
//!   - name: phi-isolation
//!     when: {labels: {data-classification: phi}}   # any condition (see `match`)
//!     require_tags: {phi-compliant: "true"}         # value or list of accepted values
//! rules:                         # ordered; the first match decides
//!   - name: phi
//!     match:                     # all given fields must hold; omitted = every job
//!       queues: [etl]
//!       users: [ana]
//!       spark_versions: ["3.5"]
//!       labels: {data-classification: [phi, pii]}
//!       resources: {min_cores: 1, max_cores: 500, min_memory: 1g, max_memory: 2Ti,
//!                   min_executors: 0, max_executors: 100}
//!     route:                     # or `deny: "reason"`
//!       strategy: weighted_random  # | round_robin | least_loaded
//!       clusters: [phi-east, {cluster: phi-west, weight: 1}]
//!       fallback: [phi-dr]       # used when no cluster above is eligible
//!       queue: phi               # optional: run in this queue instead of the job's
//! default:                       # optional route for jobs no rule matches (else they are refused)
//!   clusters: [general]
//! ```
//!
//! `bpg-router/tests/data/rules.yaml` is a complete example. [`RulesConfig::from_bpg_config`]
//! imports BPG's `sparkClusters`/`queues` into an equivalent rule set.
//!
//! The crate is pure: no I/O (except the [`RoutingRules::from_file`] convenience), no async,
//! randomness injected, so decisions are deterministic under a seeded RNG.
//!
//! ```
//! use bpg_core::{AppType, SparkJob};
//! use bpg_router::{ClusterLoad, ClusterView, RoutingRules};
//! use rand::SeedableRng;
//!
//! let rules = RoutingRules::from_yaml(r#"
//! clusters:
//!   - {id: phi-east, connection: k8s_phi, tags: {phi-compliant: "true"}}
//!   - {id: spot-1, connection: emr_spot, tags: {capacity: spot}, max_running: 2}
//!   - {id: spot-2, connection: emr_spot}
//! constraints:
//!   - name: phi-isolation
//!     when: {labels: {data-classification: phi}}
//!     require_tags: {phi-compliant: "true"}
//! rules:
//!   - name: phi
//!     match: {labels: {data-classification: phi}}
//!     route: {clusters: [phi-east]}
//! default:
//!   strategy: least_loaded
//!   clusters: [spot-1, spot-2]
//! "#, None).expect("valid rules");
//!
//! let view = ClusterView::new().with("spot-1", ClusterLoad::new(2, 0));
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//!
//! let phi = SparkJob::new("claims", AppType::Python, "3.5", "local:///claims.py")
//!     .with_label("data-classification", "phi");
//! let decision = rules.route(&phi, &view, &mut rng).expect("routed");
//! assert_eq!(decision.cluster, "phi-east");
//! assert_eq!(decision.connection, "k8s_phi");
//!
//! let web = SparkJob::new("clicks", AppType::Python, "3.5", "local:///clicks.py");
//! let decision = rules.route(&web, &view, &mut rng).expect("routed");
//! assert_eq!(decision.cluster, "spot-2"); // spot-1 is at its max_running
//! println!("{}", decision.explanation);
//!
//! // A rule that could send PHI jobs to a non-compliant cluster is refused at load.
//! let leaky = RoutingRules::from_yaml(r#"
//! clusters:
//!   - {id: phi-east, connection: k8s_phi, tags: {phi-compliant: "true"}}
//!   - {id: spot-1, connection: emr_spot}
//! constraints:
//!   - name: phi-isolation
//!     when: {labels: {data-classification: phi}}
//!     require_tags: {phi-compliant: "true"}
//! rules:
//!   - name: big-jobs
//!     match: {resources: {min_cores: 100}}
//!     route: {clusters: [spot-1]}
//! default: {clusters: [phi-east]}
//! "#, None).unwrap_err();
//! assert!(leaky.to_string().contains("rule \"big-jobs\""));
//! assert!(leaky.to_string().contains("\"spot-1\""));
//! ```

mod bpg;
mod config;
mod explain;
mod hash;
mod index;
mod matching;
mod region;
mod rules;
mod view;
mod yaml;

pub use config::{
    ClusterConfig, ConstraintConfig, MatchConfig, QueueConfig, ResourceMatch, RouteConfig,
    RuleConfig, RulesConfig, Strategy, TargetConfig, ValueSet,
};
pub use explain::{
    Candidate, ConstraintCheck, Decision, Exclusion, Explanation, Outcome, Pick, RouteError,
    RuleMatch,
};
pub use matching::QueueSource;
pub use rules::{PINNED_RULE, RoutingRules};
pub use view::{ClusterLoad, ClusterView};
