//! Compiled, validated rules and the routing decision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bpg_core::{Diagnostics, MemoryQuantity, SparkJob};
use rand::Rng;

use crate::config::{MatchConfig, RouteConfig, RulesConfig, Strategy, TargetConfig, ValueSet};
use crate::explain::{
    Candidate, ConstraintCheck, Decision, Exclusion, Explanation, Outcome, Pick, RouteError,
    RuleMatch,
};
use crate::index::RuleIndex;
use crate::matching::{Condition, JobFacts, QueueSource, normalize_queue};
use crate::region::{Region, Restrictions, reachable};
use crate::view::ClusterView;
use crate::yaml::SourceMap;

/// The rule name of a decision for a job that pinned its cluster.
pub const PINNED_RULE: &str = "pinned";

#[derive(Debug)]
struct Cluster {
    id: String,
    connection: String,
    namespace: Option<String>,
    /// Lowercased; `None` serves every version.
    versions: Option<Vec<String>>,
    /// Lowercased; `None` serves every queue.
    queues: Option<Vec<String>>,
    max_running: Option<u32>,
}

impl Cluster {
    fn serves_version(&self, version: &str) -> bool {
        self.versions
            .as_ref()
            .is_none_or(|vs| vs.iter().any(|v| v == version))
    }

    /// A queue is served when the cluster lists it or its parent (BPG lists parent queues).
    fn serves_queue(&self, queue: Option<&str>) -> bool {
        let Some(list) = &self.queues else {
            return true;
        };
        let Some(queue) = queue else {
            return false;
        };
        let parent = queue.split('.').next().unwrap_or(queue);
        list.iter().any(|q| q == queue || q == parent)
    }
}

#[derive(Debug)]
struct Constraint {
    name: String,
    condition: Condition,
    require: String,
    /// Per cluster: the required tag it lacks, rendered; `None` when it complies.
    missing: Vec<Option<String>>,
}

#[derive(Debug)]
struct Target {
    cluster: usize,
    weight: u32,
}

#[derive(Debug)]
struct Route {
    strategy: Strategy,
    targets: Vec<Target>,
    fallback: Vec<Target>,
    queue: Option<String>,
}

#[derive(Debug)]
enum Action {
    Route(Route),
    Deny(String),
}

#[derive(Debug)]
struct Rule {
    name: String,
    line: Option<usize>,
    condition: Condition,
    action: Action,
}

/// A validated rule set, ready to route jobs.
///
/// Loading proves that no isolation constraint can be violated: for every constraint, every rule
/// (and the default route) that a covered job can reach — taking into account the rules before it,
/// which catch some jobs first — must list only clusters carrying the required tags, fallbacks
/// included. Decisions re-check the constraints anyway.
///
/// Round-robin positions are the only state; they live here as atomic counters (one per route), so
/// `route` takes `&self` and a shared `Arc<RoutingRules>` rotates for all its callers.
#[derive(Debug)]
pub struct RoutingRules {
    config: RulesConfig,
    clusters: Vec<Cluster>,
    cluster_ids: HashMap<String, usize>,
    user_queues: HashMap<String, String>,
    queue_limits: HashMap<String, u32>,
    default_queue: Option<String>,
    constraints: Vec<Constraint>,
    rules: Vec<Rule>,
    default: Option<Route>,
    index: RuleIndex,
    round_robin: Vec<AtomicU64>,
}

/// Cluster ids become part of resource names and submission ids: DNS-1123 labels.
fn valid_cluster_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

fn render_tags(tags: &BTreeMap<String, ValueSet>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Loader<'a> {
    config: &'a RulesConfig,
    map: &'a SourceMap,
    diags: Diagnostics,
    cluster_ids: HashMap<String, usize>,
}

impl Loader<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        let d = self.map.error(field, message);
        self.diags.push(d);
    }

    fn condition(&mut self, field: &str, m: &MatchConfig) -> Condition {
        for (what, list) in [
            ("queues", &m.queues),
            ("users", &m.users),
            ("spark_versions", &m.spark_versions),
        ] {
            if list.iter().any(|v| v.trim().is_empty()) {
                self.err(&format!("{field}.{what}"), "expected non-empty names");
            }
        }
        for (k, v) in &m.labels {
            if v.0.is_empty() {
                self.err(
                    &format!("{field}.labels.{k}"),
                    "expected a value or a non-empty list of values",
                );
            }
        }
        if let Some(r) = &m.resources {
            let pairs: [(&str, Option<u64>, Option<u64>); 3] = [
                ("cores", r.min_cores, r.max_cores),
                (
                    "memory",
                    r.min_memory.map(MemoryQuantity::bytes),
                    r.max_memory.map(MemoryQuantity::bytes),
                ),
                (
                    "executors",
                    r.min_executors.map(u64::from),
                    r.max_executors.map(u64::from),
                ),
            ];
            for (what, lo, hi) in pairs {
                if let (Some(lo), Some(hi)) = (lo, hi)
                    && lo > hi
                {
                    self.err(
                        &format!("{field}.resources.min_{what}"),
                        format!("min_{what} is larger than max_{what}: no job can match"),
                    );
                }
            }
        }
        Condition::new(m)
    }

    fn targets(
        &mut self,
        field: &str,
        list: &[TargetConfig],
        seen: &mut HashSet<usize>,
    ) -> Vec<Target> {
        let mut out = Vec::new();
        for (j, t) in list.iter().enumerate() {
            let at = format!("{field}[{j}]");
            match self.cluster_ids.get(&t.cluster) {
                None => self.err(
                    &at,
                    format!(
                        "unknown cluster {:?}: expected one of the ids under clusters",
                        t.cluster
                    ),
                ),
                Some(&c) if !seen.insert(c) => self.err(
                    &at,
                    format!("cluster {:?} is listed twice in this route", t.cluster),
                ),
                Some(&c) => out.push(Target {
                    cluster: c,
                    weight: t.weight.unwrap_or(self.config.clusters[c].weight),
                }),
            }
        }
        out
    }

    fn route(&mut self, field: &str, r: &RouteConfig) -> Route {
        if r.clusters.is_empty() {
            self.err(
                &format!("{field}.clusters"),
                "expected at least one cluster",
            );
        }
        let mut seen = HashSet::new();
        let targets = self.targets(&format!("{field}.clusters"), &r.clusters, &mut seen);
        let fallback = self.targets(&format!("{field}.fallback"), &r.fallback, &mut seen);
        let queue = match &r.queue {
            Some(q) => match normalize_queue(q) {
                Some(q) => Some(q),
                None => {
                    self.err(&format!("{field}.queue"), "expected a queue name");
                    None
                }
            },
            None => None,
        };
        Route {
            strategy: r.strategy,
            targets,
            fallback,
            queue,
        }
    }
}

impl RoutingRules {
    /// Validates and compiles a rule set built in code (errors carry field paths but no lines).
    pub fn new(config: RulesConfig) -> Result<Self, Diagnostics> {
        Self::compile(config, &SourceMap::default(), true)
    }

    /// Reads a rules file's text; `source` names the file in errors.
    pub fn from_yaml(text: &str, source: Option<&Path>) -> Result<Self, Diagnostics> {
        let config = RulesConfig::from_yaml(text, source)?;
        Self::compile(config, &SourceMap::of_rules_file(text, source), true)
    }

    /// Reads a rules file (the only I/O in this crate; routing itself does none).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Diagnostics> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::from(
                bpg_core::Diagnostic::error("", format!("cannot read rules file: {e}"))
                    .with_file(path),
            )
        })?;
        Self::from_yaml(&text, Some(path))
    }

    /// The configuration the rules were compiled from.
    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    pub(crate) fn compile(
        config: RulesConfig,
        map: &SourceMap,
        check_leaks: bool,
    ) -> Result<Self, Diagnostics> {
        let mut l = Loader {
            config: &config,
            map,
            diags: Diagnostics::new(),
            cluster_ids: HashMap::new(),
        };

        if config.clusters.is_empty() {
            l.err("clusters", "expected at least one cluster");
        }
        let mut clusters = Vec::new();
        for (i, c) in config.clusters.iter().enumerate() {
            let at = format!("clusters[{i}]");
            if !valid_cluster_id(&c.id) {
                l.err(
                    &format!("{at}.id"),
                    format!(
                        "invalid cluster id {:?}: expected lowercase letters, digits and '-', at most 63, not starting or ending with '-'",
                        c.id
                    ),
                );
            } else if l.cluster_ids.insert(c.id.clone(), i).is_some() {
                l.err(
                    &format!("{at}.id"),
                    format!("duplicate cluster id {:?}", c.id),
                );
            }
            if c.connection.trim().is_empty() {
                l.err(&format!("{at}.connection"), "expected a connection name");
            }
            let lower = |v: &Vec<String>| {
                (!v.is_empty()).then(|| v.iter().map(|s| s.to_lowercase()).collect())
            };
            clusters.push(Cluster {
                id: c.id.clone(),
                connection: c.connection.clone(),
                namespace: c.namespace.clone(),
                versions: lower(&c.spark_versions),
                queues: lower(&c.queues),
                max_running: c.max_running,
            });
        }

        let mut user_queues = HashMap::new();
        let mut queue_limits = HashMap::new();
        let mut queue_names = HashSet::new();
        for (i, q) in config.queues.iter().enumerate() {
            let at = format!("queues[{i}]");
            let Some(name) = normalize_queue(&q.name) else {
                l.err(&format!("{at}.name"), "expected a queue name");
                continue;
            };
            if !queue_names.insert(name.to_lowercase()) {
                l.err(&format!("{at}.name"), format!("duplicate queue {name:?}"));
            }
            for u in &q.users {
                user_queues
                    .entry(u.to_lowercase())
                    .or_insert_with(|| name.clone());
            }
            if let Some(max) = q.max_executor_instances {
                queue_limits.insert(name.to_lowercase(), max);
            }
        }
        let default_queue = match &config.default_queue {
            Some(q) => {
                let n = normalize_queue(q);
                if n.is_none() {
                    l.err("default_queue", "expected a queue name");
                }
                n
            }
            None => None,
        };

        let mut constraints = Vec::new();
        let mut names = HashSet::new();
        for (i, c) in config.constraints.iter().enumerate() {
            let at = format!("constraints[{i}]");
            if c.name.trim().is_empty() {
                l.err(&format!("{at}.name"), "expected a name");
            } else if !names.insert(c.name.clone()) {
                l.err(
                    &format!("{at}.name"),
                    format!("duplicate constraint {:?}", c.name),
                );
            }
            if c.require_tags.is_empty() {
                l.err(&format!("{at}.require_tags"), "expected at least one tag");
            }
            for (k, v) in &c.require_tags {
                if v.0.is_empty() {
                    l.err(
                        &format!("{at}.require_tags.{k}"),
                        "expected a value or a non-empty list of values",
                    );
                }
            }
            let condition = l.condition(&format!("{at}.when"), &c.when);
            let missing = config
                .clusters
                .iter()
                .map(|cl| {
                    c.require_tags
                        .iter()
                        .find(|(k, v)| !cl.tags.get(*k).is_some_and(|t| v.contains(t)))
                        .map(|(k, v)| format!("{k}={v}"))
                })
                .collect();
            constraints.push(Constraint {
                name: c.name.clone(),
                condition,
                require: render_tags(&c.require_tags),
                missing,
            });
        }

        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for (i, r) in config.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if r.name.trim().is_empty() {
                l.err(&format!("{at}.name"), "expected a name");
            } else if r.name == "default" {
                l.err(
                    &format!("{at}.name"),
                    "\"default\" names the default route; pick another name",
                );
            } else if !names.insert(r.name.clone()) {
                l.err(
                    &format!("{at}.name"),
                    format!("duplicate rule {:?}", r.name),
                );
            }
            let condition = l.condition(&format!("{at}.match"), &r.matches);
            let action = match (&r.route, &r.deny) {
                (Some(route), None) => Action::Route(l.route(&format!("{at}.route"), route)),
                (None, Some(reason)) => {
                    if reason.trim().is_empty() {
                        l.err(&format!("{at}.deny"), "expected a reason");
                    }
                    Action::Deny(reason.clone())
                }
                _ => {
                    l.err(&at, "expected exactly one of `route` and `deny`");
                    Action::Deny(String::new())
                }
            };
            rules.push(Rule {
                name: r.name.clone(),
                line: map.line(&at),
                condition,
                action,
            });
        }
        let default = config.default.as_ref().map(|d| l.route("default", d));

        let mut diags = l.diags;
        if diags.has_errors() {
            return Err(diags);
        }
        if check_leaks {
            check_isolation(
                &constraints,
                &rules,
                default.as_ref(),
                &clusters,
                map,
                &mut diags,
            );
            if diags.has_errors() {
                return Err(diags);
            }
        }

        let conditions: Vec<&Condition> = rules.iter().map(|r| &r.condition).collect();
        let index = RuleIndex::new(&conditions);
        let round_robin = (0..2 * (rules.len() + 1))
            .map(|_| AtomicU64::new(0))
            .collect();
        let cluster_ids = config
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        Ok(RoutingRules {
            config,
            clusters,
            cluster_ids,
            user_queues,
            queue_limits,
            default_queue,
            constraints,
            rules,
            default,
            index,
            round_robin,
        })
    }
}

/// Refuses any route that a job covered by a constraint can reach and that lists a cluster lacking
/// the constraint's tags.
fn check_isolation(
    constraints: &[Constraint],
    rules: &[Rule],
    default: Option<&Route>,
    clusters: &[Cluster],
    map: &SourceMap,
    diags: &mut Diagnostics,
) {
    let restrictions: Vec<Restrictions> = rules
        .iter()
        .map(|r| Restrictions::of(&r.condition))
        .collect();
    for c in constraints {
        let covered = Region::any().restrict(&Restrictions::of(&c.condition));
        let routes = rules
            .iter()
            .enumerate()
            .filter_map(|(k, r)| match &r.action {
                Action::Route(route) => Some((Some(k), route)),
                Action::Deny(_) => None,
            })
            .chain(default.map(|d| (None, d)));
        for (k, route) in routes {
            let bad: Vec<(&str, usize, &Target)> =
                [("clusters", &route.targets), ("fallback", &route.fallback)]
                    .into_iter()
                    .flat_map(|(list, ts)| ts.iter().enumerate().map(move |(j, t)| (list, j, t)))
                    .filter(|(_, _, t)| c.missing[t.cluster].is_some())
                    .collect();
            if bad.is_empty() {
                continue;
            }
            let (start, earlier, rule_name, at) = match k {
                Some(k) => (
                    covered.restrict(&restrictions[k]),
                    &restrictions[..k],
                    format!("rule {:?}", rules[k].name),
                    format!("rules[{k}].route"),
                ),
                None => (
                    covered.clone(),
                    &restrictions[..],
                    "the default route".to_owned(),
                    "default".to_owned(),
                ),
            };
            let earlier: Vec<&Restrictions> = earlier.iter().collect();
            let (left, exact) = reachable(start, &earlier);
            let Some(example) = left.first().map(Region::describe) else {
                continue;
            };
            let (verb, note) = if exact {
                ("can send", "")
            } else {
                (
                    "may send",
                    " (the rules before it are too many or too intricate to rule this out; deny or route such jobs in an earlier rule)",
                )
            };
            for (list, j, t) in bad {
                let missing = c.missing[t.cluster].as_deref().unwrap_or_default();
                diags.push(map.error(
                    &format!("{at}.{list}[{j}]"),
                    format!(
                        "{rule_name} {verb} jobs covered by constraint {:?} ({example}) to cluster {:?}, which lacks {missing}{note}",
                        c.name, clusters[t.cluster].id
                    ),
                ));
            }
        }
    }
}

impl RoutingRules {
    /// Routes a job whose submitting user is unknown (rules that match on `users` do not apply).
    ///
    /// Pure: the outcome depends only on the rules, the job, the view, the random source and (for
    /// round-robin routes) how many jobs the route has placed before.
    pub fn route<R: Rng + ?Sized>(
        &self,
        job: &SparkJob,
        view: &ClusterView,
        rng: &mut R,
    ) -> Result<Decision, RouteError> {
        self.route_for_user(job, None, view, rng)
    }

    /// What every decision starts from: the job's facts with its queue resolved, the constraints
    /// that cover it, the first matching rule and the explanation so far.
    fn consider<'a>(
        &self,
        job: &'a SparkJob,
        user: Option<&str>,
    ) -> (JobFacts<'a>, Vec<&Constraint>, Option<usize>, Explanation) {
        let mut facts = JobFacts::new(job, user);
        if let Some(q) = job.queue.as_deref().and_then(normalize_queue) {
            facts.set_queue(q, QueueSource::Job);
        } else if let Some(q) = facts.user.as_ref().and_then(|u| self.user_queues.get(u)) {
            facts.set_queue(q.clone(), QueueSource::User);
        } else if let Some(q) = &self.default_queue {
            facts.set_queue(q.clone(), QueueSource::Default);
        }

        let matched = self.index.matching(&facts);
        let mut first = None;
        let mut matched_rules = Vec::new();
        for i in matched.iter() {
            let applied = first.is_none();
            first.get_or_insert(i);
            matched_rules.push(RuleMatch {
                name: self.rules[i].name.clone(),
                index: Some(i),
                line: self.rules[i].line,
                applied,
            });
        }
        let applicable: Vec<&Constraint> = self
            .constraints
            .iter()
            .filter(|c| c.condition.matches(&facts))
            .collect();
        let explanation = Explanation {
            job: job.name.clone(),
            queue: facts.queue.clone(),
            queue_source: facts.queue_source,
            user: user.map(str::to_owned),
            spark_version: job.spark_version.clone(),
            cores: facts.cores,
            memory: MemoryQuantity::from_bytes(facts.memory),
            executors: facts.executors,
            matched_rules,
            constraints: applicable
                .iter()
                .map(|c| ConstraintCheck {
                    name: c.name.clone(),
                    require_tags: c.require.clone(),
                })
                .collect(),
            strategy: None,
            candidates: Vec::new(),
            outcome: Outcome::NoMatchingRule,
        };
        (facts, applicable, first, explanation)
    }

    /// Routes a job submitted by `user` (matched case-insensitively by `users` in rules and queues).
    pub fn route_for_user<R: Rng + ?Sized>(
        &self,
        job: &SparkJob,
        user: Option<&str>,
        view: &ClusterView,
        rng: &mut R,
    ) -> Result<Decision, RouteError> {
        let (facts, applicable, first, mut explanation) = self.consider(job, user);
        let fail = |mut explanation: Explanation, outcome| {
            explanation.outcome = outcome;
            Err(RouteError {
                explanation: Box::new(explanation),
            })
        };

        let (rule_name, route, rr_slot) = match first {
            Some(i) => match &self.rules[i].action {
                Action::Deny(reason) => {
                    let outcome = Outcome::Denied {
                        rule: self.rules[i].name.clone(),
                        reason: reason.clone(),
                    };
                    return fail(explanation, outcome);
                }
                Action::Route(route) => (self.rules[i].name.as_str(), route, i),
            },
            None => match &self.default {
                Some(route) => {
                    explanation.matched_rules.push(RuleMatch {
                        name: "default".into(),
                        index: None,
                        line: None,
                        applied: true,
                    });
                    ("default", route, self.rules.len())
                }
                None => return fail(explanation, Outcome::NoMatchingRule),
            },
        };

        let queue = route.queue.clone().or_else(|| facts.queue.clone());
        let queue_key = queue.as_deref().map(str::to_lowercase);
        if let Some(q) = &queue_key
            && let Some(&max) = self.queue_limits.get(q)
            && facts.executors > u64::from(max)
        {
            let outcome = Outcome::QueueLimit {
                queue: queue.clone().unwrap_or_default(),
                max,
                requested: facts.executors,
            };
            return fail(explanation, outcome);
        }

        explanation.strategy = Some(route.strategy);
        let pick = self.pick(
            route,
            rr_slot,
            &facts,
            queue_key.as_deref(),
            &applicable,
            view,
            rng,
            &mut explanation.candidates,
        );
        let Some((cluster, pick, from_fallback)) = pick else {
            let outcome = Outcome::NoEligibleCluster {
                rule: rule_name.to_owned(),
            };
            return fail(explanation, outcome);
        };
        let c = &self.clusters[cluster];
        explanation.outcome = Outcome::Routed {
            cluster: c.id.clone(),
            pick,
            from_fallback,
        };
        Ok(Decision {
            cluster: c.id.clone(),
            connection: c.connection.clone(),
            namespace: c.namespace.clone(),
            queue,
            rule: rule_name.to_owned(),
            explanation,
        })
    }

    /// Checks a job whose submitter pinned `cluster` (BPG's `clusterId`): the queue routing and
    /// the weights are skipped, as BPG skips them, but a rule that denies the job still denies it,
    /// the queue's executor limit holds, the cluster must run the job's Spark version, and every
    /// isolation constraint covering the job is enforced. The decision's rule is `pinned`.
    ///
    /// ```
    /// use bpg_core::{AppType, SparkJob};
    /// use bpg_router::RoutingRules;
    ///
    /// let rules = RoutingRules::from_yaml(r#"
    /// clusters:
    ///   - {id: phi-east, connection: phi, tags: {phi-compliant: "true"}}
    ///   - {id: spot-1, connection: spot, weight: 0}
    /// constraints:
    ///   - {name: phi-isolation, when: {labels: {data-classification: phi}}, require_tags: {phi-compliant: "true"}}
    /// default: {clusters: [phi-east]}
    /// "#, None).unwrap();
    /// let web = SparkJob::new("clicks", AppType::Python, "3.5", "local:///clicks.py");
    /// assert_eq!(rules.route_pinned(&web, None, "spot-1").unwrap().cluster, "spot-1");
    /// let phi = web.clone().with_label("data-classification", "phi");
    /// let refused = rules.route_pinned(&phi, None, "spot-1").unwrap_err();
    /// assert!(refused.to_string().contains("phi-isolation"), "{refused}");
    /// assert!(rules.route_pinned(&web, None, "nowhere").is_err());
    /// ```
    pub fn route_pinned(
        &self,
        job: &SparkJob,
        user: Option<&str>,
        cluster: &str,
    ) -> Result<Decision, RouteError> {
        let (facts, applicable, first, mut explanation) = self.consider(job, user);
        let fail = |mut explanation: Explanation, outcome| {
            explanation.outcome = outcome;
            Err(RouteError {
                explanation: Box::new(explanation),
            })
        };
        if let Some(i) = first
            && let Action::Deny(reason) = &self.rules[i].action
        {
            let outcome = Outcome::Denied {
                rule: self.rules[i].name.clone(),
                reason: reason.clone(),
            };
            return fail(explanation, outcome);
        }
        let Some(&index) = self.cluster_ids.get(cluster) else {
            let outcome = Outcome::UnknownCluster {
                cluster: cluster.to_owned(),
            };
            return fail(explanation, outcome);
        };
        if let Some(q) = facts.queue_key.as_deref()
            && let Some(&max) = self.queue_limits.get(q)
            && facts.executors > u64::from(max)
        {
            let outcome = Outcome::QueueLimit {
                queue: facts.queue.clone().unwrap_or_default(),
                max,
                requested: facts.executors,
            };
            return fail(explanation, outcome);
        }
        let c = &self.clusters[index];
        let excluded = applicable
            .iter()
            .find_map(|k| k.missing[index].as_ref().map(|m| (k, m)))
            .map(|(k, missing)| Exclusion::Constraint {
                constraint: k.name.clone(),
                missing: missing.clone(),
            })
            .or_else(|| {
                (!c.serves_version(&facts.version)).then(|| Exclusion::SparkVersion {
                    version: facts.spark_version.to_owned(),
                })
            });
        explanation.candidates.push(Candidate {
            cluster: c.id.clone(),
            weight: 0,
            fallback: false,
            in_flight: None,
            excluded: excluded.clone(),
        });
        if excluded.is_some() {
            let outcome = Outcome::NoEligibleCluster {
                rule: PINNED_RULE.to_owned(),
            };
            return fail(explanation, outcome);
        }
        explanation.outcome = Outcome::Routed {
            cluster: c.id.clone(),
            pick: Pick::Pinned,
            from_fallback: false,
        };
        Ok(Decision {
            cluster: c.id.clone(),
            connection: c.connection.clone(),
            namespace: c.namespace.clone(),
            queue: facts.queue.clone(),
            rule: PINNED_RULE.to_owned(),
            explanation,
        })
    }

    /// Why `cluster` cannot take the job, if it cannot.
    fn exclusion(
        &self,
        target: &Target,
        facts: &JobFacts<'_>,
        queue: Option<&str>,
        applicable: &[&Constraint],
        in_flight: Option<(u32, bool)>,
    ) -> Option<Exclusion> {
        let c = &self.clusters[target.cluster];
        if let Some((constraint, missing)) = applicable
            .iter()
            .find_map(|k| k.missing[target.cluster].as_ref().map(|m| (k, m)))
        {
            return Some(Exclusion::Constraint {
                constraint: constraint.name.clone(),
                missing: missing.clone(),
            });
        }
        if !c.serves_version(&facts.version) {
            return Some(Exclusion::SparkVersion {
                version: facts.spark_version.to_owned(),
            });
        }
        if !c.serves_queue(queue) {
            return Some(Exclusion::Queue {
                queue: queue.unwrap_or("(none)").to_owned(),
            });
        }
        if target.weight == 0 {
            return Some(Exclusion::ZeroWeight);
        }
        if let Some((n, full)) = in_flight {
            if full {
                return Some(Exclusion::MarkedFull);
            }
            if let Some(max) = c.max_running
                && n >= max
            {
                return Some(Exclusion::Full {
                    in_flight: n,
                    max_running: max,
                });
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn pick<R: Rng + ?Sized>(
        &self,
        route: &Route,
        slot: usize,
        facts: &JobFacts<'_>,
        queue: Option<&str>,
        applicable: &[&Constraint],
        view: &ClusterView,
        rng: &mut R,
        candidates: &mut Vec<Candidate>,
    ) -> Option<(usize, Pick, bool)> {
        for (list, fallback, rr) in [
            (&route.targets, false, 2 * slot),
            (&route.fallback, true, 2 * slot + 1),
        ] {
            let mut eligible: Vec<(usize, &Target, u32)> = Vec::new();
            for (pos, t) in list.iter().enumerate() {
                let load = view.get(&self.clusters[t.cluster].id);
                let in_flight = load.map(|l| (l.in_flight(), l.full));
                let excluded = self.exclusion(t, facts, queue, applicable, in_flight);
                if excluded.is_none() {
                    eligible.push((pos, t, in_flight.map_or(0, |(n, _)| n)));
                }
                candidates.push(Candidate {
                    cluster: self.clusters[t.cluster].id.clone(),
                    weight: t.weight,
                    fallback,
                    in_flight: in_flight.map(|(n, _)| n),
                    excluded,
                });
            }
            if eligible.is_empty() {
                continue;
            }
            let (chosen, pick) = match route.strategy {
                Strategy::WeightedRandom => {
                    let total: u64 = eligible.iter().map(|(_, t, _)| u64::from(t.weight)).sum();
                    let mut draw = rng.random_range(0..total);
                    let mut chosen = eligible[eligible.len() - 1].1;
                    for (_, t, _) in &eligible {
                        if draw < u64::from(t.weight) {
                            chosen = t;
                            break;
                        }
                        draw -= u64::from(t.weight);
                    }
                    let pick = Pick::WeightedRandom {
                        weight: chosen.weight,
                        total_weight: total,
                    };
                    (chosen, pick)
                }
                Strategy::RoundRobin => {
                    let turn = self.round_robin[rr].fetch_add(1, Ordering::Relaxed);
                    // The rotation runs over the whole list, so an excluded target passes its turn
                    // to the next eligible one instead of reshuffling everyone's positions.
                    let n = list.len() as u64;
                    let from = (turn % n) as usize;
                    let (pos, t, _) = eligible
                        .iter()
                        .find(|(p, _, _)| *p >= from)
                        .unwrap_or(&eligible[0]);
                    let pick = Pick::RoundRobin {
                        turn,
                        position: *pos,
                        of: list.len(),
                    };
                    (*t, pick)
                }
                Strategy::LeastLoaded => {
                    // Lowest in-flight per unit of weight; the first listed wins ties. Compared as
                    // n_a * w_b < n_b * w_a to stay exact.
                    let (_, t, n) = eligible
                        .iter()
                        .copied()
                        .reduce(|best, cur| {
                            let lhs = u64::from(cur.2) * u64::from(best.1.weight);
                            let rhs = u64::from(best.2) * u64::from(cur.1.weight);
                            if lhs < rhs { cur } else { best }
                        })
                        .unwrap_or(eligible[0]);
                    let pick = Pick::LeastLoaded {
                        in_flight: n,
                        weight: t.weight,
                    };
                    (t, pick)
                }
            };
            return Some((chosen.cluster, pick, fallback));
        }
        None
    }

    /// The cluster ids, in file order.
    pub fn cluster_ids(&self) -> impl Iterator<Item = &str> {
        self.clusters.iter().map(|c| c.id.as_str())
    }

    /// The connection that reaches a cluster.
    pub fn connection_of(&self, cluster: &str) -> Option<&str> {
        self.cluster_ids
            .get(cluster)
            .map(|&i| self.clusters[i].connection.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConstraintConfig;
    use bpg_core::AppType;
    use rand::SeedableRng;

    /// Even rules compiled without the load-time proof never place a job against a constraint:
    /// every decision checks again.
    #[test]
    fn decisions_enforce_constraints_without_the_load_check() {
        let config = RulesConfig {
            clusters: vec![
                crate::ClusterConfig::new("phi-east", "k").with_tag("phi-compliant", "true"),
                crate::ClusterConfig::new("spot-1", "k").with_weight(50),
            ],
            constraints: vec![ConstraintConfig {
                name: "phi-isolation".into(),
                when: MatchConfig::default().with_label("dc", "phi"),
                require_tags: BTreeMap::from([(
                    "phi-compliant".into(),
                    ValueSet(vec!["true".into()]),
                )]),
            }],
            rules: vec![crate::RuleConfig {
                name: "only-spot".into(),
                matches: MatchConfig::default().with_label("team", "web"),
                route: Some(RouteConfig::to(["spot-1"])),
                deny: None,
            }],
            default: Some(RouteConfig::to(["spot-1", "phi-east"])),
            ..RulesConfig::default()
        };
        assert!(RoutingRules::new(config.clone()).is_err());
        let rules = RoutingRules::compile(config, &SourceMap::default(), false).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let view = ClusterView::new();
        let phi = SparkJob::new("p", AppType::Scala, "3.5", "x.jar").with_label("dc", "phi");
        for _ in 0..100 {
            assert_eq!(
                rules.route(&phi, &view, &mut rng).unwrap().cluster,
                "phi-east"
            );
        }
        let err = rules
            .route(&phi.clone().with_label("team", "web"), &view, &mut rng)
            .unwrap_err();
        assert_eq!(
            err.explanation.candidates[0].excluded,
            Some(Exclusion::Constraint {
                constraint: "phi-isolation".into(),
                missing: "phi-compliant=true".into()
            })
        );
    }
}
