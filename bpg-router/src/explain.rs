//! Decisions and their explanations: structured (serializable for `--json`) and rendered for people
//! (`bpg route --explain`).

use std::fmt;

use bpg_core::MemoryQuantity;
use serde::Serialize;

use crate::config::Strategy;
use crate::matching::QueueSource;

/// Where a job goes, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Id of the chosen cluster.
    pub cluster: String,
    /// Connection that reaches the cluster.
    pub connection: String,
    /// Namespace on the cluster, when the rules set one.
    pub namespace: Option<String>,
    /// Queue the job runs in (the route's `queue`, else the job's resolved queue).
    pub queue: Option<String>,
    /// The rule that routed the job (`default` for the default route).
    pub rule: String,
    /// How the decision was reached.
    pub explanation: Explanation,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (connection {}", self.cluster, self.connection)?;
        if let Some(ns) = &self.namespace {
            write!(f, ", namespace {ns}")?;
        }
        if let Some(q) = &self.queue {
            write!(f, ", queue {q}")?;
        }
        write!(f, ") by rule {}", self.rule)
    }
}

/// Everything the router considered for one job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// The job's name.
    pub job: String,
    /// The queue used for matching, if any.
    pub queue: Option<String>,
    /// Where that queue came from.
    pub queue_source: QueueSource,
    /// The submitting user, when the caller gave one.
    pub user: Option<String>,
    /// The job's Spark version.
    pub spark_version: String,
    /// Total cores requested.
    pub cores: u64,
    /// Total heap requested (serialized in Spark notation, e.g. `3g`).
    pub memory: MemoryQuantity,
    /// Executors requested.
    pub executors: u64,
    /// Rules whose condition holds, in order; the first one (or the default route) was applied.
    pub matched_rules: Vec<RuleMatch>,
    /// Constraints that cover the job.
    pub constraints: Vec<ConstraintCheck>,
    /// The applied route's strategy, when a route was applied.
    pub strategy: Option<Strategy>,
    /// Every target of the applied route (and its fallback, if reached), with why it was excluded.
    pub candidates: Vec<Candidate>,
    /// What came of it.
    pub outcome: Outcome,
}

/// A rule whose condition holds for the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// Rule name (`default` for the default route).
    pub name: String,
    /// Position in `rules` (absent for the default route).
    pub index: Option<usize>,
    /// Line in the rules file, when it was read from one.
    pub line: Option<usize>,
    /// Whether this rule decided (only the first match does).
    pub applied: bool,
}

/// A constraint that covers the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConstraintCheck {
    /// Constraint name.
    pub name: String,
    /// The tags it requires, rendered (`phi-compliant=true`).
    pub require_tags: String,
}

/// One target of the applied route.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// Cluster id.
    pub cluster: String,
    /// Weight in this route.
    pub weight: u32,
    /// Whether the target is in the route's `fallback` list.
    pub fallback: bool,
    /// Running + pending jobs, from the caller's view (absent when the view does not list the cluster).
    pub in_flight: Option<u32>,
    /// Why the cluster could not take the job; `None` when it was eligible.
    pub excluded: Option<Exclusion>,
}

/// Why a target could not take the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Exclusion {
    /// Running the job there would break an isolation constraint.
    Constraint {
        /// Constraint name.
        constraint: String,
        /// The required tag the cluster lacks (`phi-compliant=true`).
        missing: String,
    },
    /// The cluster does not run the job's Spark version.
    SparkVersion {
        /// The job's version.
        version: String,
    },
    /// The cluster does not serve the job's queue.
    Queue {
        /// The queue.
        queue: String,
    },
    /// The cluster has reached its `max_running`.
    Full {
        /// Jobs in flight.
        in_flight: u32,
        /// The cluster's limit.
        max_running: u32,
    },
    /// The caller's view marks the cluster full.
    MarkedFull,
    /// The target's weight is 0.
    ZeroWeight,
}

impl Exclusion {
    /// Whether the exclusion is about capacity, which may pass with time.
    pub fn is_capacity(&self) -> bool {
        matches!(self, Exclusion::Full { .. } | Exclusion::MarkedFull)
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Constraint {
                constraint,
                missing,
            } => write!(f, "constraint {constraint} requires {missing}"),
            Exclusion::SparkVersion { version } => write!(f, "does not run Spark {version}"),
            Exclusion::Queue { queue } => write!(f, "does not serve queue {queue}"),
            Exclusion::Full {
                in_flight,
                max_running,
            } => write!(f, "full ({in_flight} in flight, max_running {max_running})"),
            Exclusion::MarkedFull => f.write_str("full (marked so in the cluster view)"),
            Exclusion::ZeroWeight => f.write_str("weight 0"),
        }
    }
}

/// The result of routing one job.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The job goes to `cluster`.
    Routed {
        /// The chosen cluster.
        cluster: String,
        /// How the strategy chose it.
        pick: Pick,
        /// Whether it came from the route's fallback list.
        from_fallback: bool,
    },
    /// A rule refused the job.
    Denied {
        /// The denying rule.
        rule: String,
        /// Its reason.
        reason: String,
    },
    /// No rule matched and there is no default route.
    NoMatchingRule,
    /// The applied route had no eligible cluster (see the candidates).
    NoEligibleCluster {
        /// The applied rule (`default` for the default route).
        rule: String,
    },
    /// The job pinned a cluster the rules do not have.
    UnknownCluster {
        /// The cluster asked for.
        cluster: String,
    },
    /// The job asks for more executors than its queue allows.
    QueueLimit {
        /// The queue.
        queue: String,
        /// The queue's `max_executor_instances`.
        max: u32,
        /// What the job asks for.
        requested: u64,
    },
}

/// How a strategy chose among the eligible targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Pick {
    /// A weighted draw.
    WeightedRandom {
        /// The chosen target's weight.
        weight: u32,
        /// Sum of the eligible targets' weights.
        total_weight: u64,
    },
    /// The next target in turn.
    RoundRobin {
        /// How many jobs the route had placed before.
        turn: u64,
        /// Position of the chosen target in the route's list.
        position: usize,
        /// Length of the list.
        of: usize,
    },
    /// The cluster the job asked for (BPG's `clusterId`).
    Pinned,
    /// The eligible target with the fewest jobs in flight per unit of weight.
    LeastLoaded {
        /// Its jobs in flight.
        in_flight: u32,
        /// Its weight.
        weight: u32,
    },
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::WeightedRandom {
                weight,
                total_weight,
            } => write!(
                f,
                "weighted random: weight {weight} of {total_weight} eligible"
            ),
            Pick::RoundRobin { turn, position, of } => {
                write!(f, "round robin: turn {turn}, position {position} of {of}")
            }
            Pick::Pinned => f.write_str("pinned by the submitter"),
            Pick::LeastLoaded { in_flight, weight } => {
                write!(f, "least loaded: {in_flight} in flight at weight {weight}")
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Routed {
                cluster,
                pick,
                from_fallback,
            } => {
                write!(f, "routed to {cluster} ({pick}")?;
                if *from_fallback {
                    f.write_str(", from the fallback list")?;
                }
                f.write_str(")")
            }
            Outcome::Denied { rule, reason } => write!(f, "denied by rule {rule}: {reason}"),
            Outcome::NoMatchingRule => {
                f.write_str("no rule matches the job and the rules have no default route")
            }
            Outcome::NoEligibleCluster { rule } => {
                write!(
                    f,
                    "rule {rule} applies but none of its clusters can take the job"
                )
            }
            Outcome::UnknownCluster { cluster } => write!(f, "there is no cluster {cluster}"),
            Outcome::QueueLimit {
                queue,
                max,
                requested,
            } => write!(
                f,
                "queue {queue} allows at most {max} executor instances, the job asks for {requested}"
            ),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {:?}: queue ", self.job)?;
        match (&self.queue, self.queue_source) {
            (Some(q), QueueSource::Job) => write!(f, "{q} (from the job)")?,
            (Some(q), QueueSource::User) => write!(f, "{q} (the user's queue)")?,
            (Some(q), _) => write!(f, "{q} (default queue)")?,
            (None, _) => f.write_str("none")?,
        }
        write!(
            f,
            ", user {}, Spark {}, {} cores, {} heap, {} executors",
            self.user.as_deref().unwrap_or("unknown"),
            self.spark_version,
            self.cores,
            self.memory,
            self.executors
        )?;
        f.write_str("\nrules matched:")?;
        if self.matched_rules.is_empty() {
            f.write_str(" none")?;
        }
        for r in &self.matched_rules {
            write!(f, "\n  {}", r.name)?;
            match (r.index, r.line) {
                (Some(i), Some(l)) => write!(f, " (rules[{i}], line {l})")?,
                (Some(i), None) => write!(f, " (rules[{i}])")?,
                (None, _) => f.write_str(" (no rule matched)")?,
            }
            f.write_str(if r.applied {
                ": applied"
            } else {
                ": also matches, lower priority"
            })?;
        }
        if !self.constraints.is_empty() {
            f.write_str("\nconstraints:")?;
            for c in &self.constraints {
                write!(f, "\n  {}: requires {}", c.name, c.require_tags)?;
            }
        }
        if let Some(strategy) = self.strategy {
            write!(f, "\ncandidates ({strategy}):")?;
            let width = self
                .candidates
                .iter()
                .map(|c| c.cluster.len())
                .max()
                .unwrap_or(0);
            for c in &self.candidates {
                write!(f, "\n  {:width$}  weight {:<4}", c.cluster, c.weight)?;
                match c.in_flight {
                    Some(n) => write!(f, " in flight {n:<4}")?,
                    None => write!(f, " in flight -   ")?,
                }
                if c.fallback {
                    f.write_str(" [fallback]")?;
                }
                match &c.excluded {
                    Some(e) => write!(f, " excluded: {e}")?,
                    None => f.write_str(" eligible")?,
                }
            }
        }
        write!(f, "\noutcome: {}", self.outcome)
    }
}

/// Why a job could not be routed; carries the full explanation.
///
/// Its message is the outcome, followed by why each candidate was excluded when no cluster was
/// eligible (`rule pinned applies but none of its clusters can take the job: spot-1 (constraint
/// phi-isolation requires phi-compliant=true)`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", render_route_error(.explanation))]
pub struct RouteError {
    /// What the router considered; `explanation.outcome` says what went wrong.
    pub explanation: Box<Explanation>,
}

fn render_route_error(explanation: &Explanation) -> String {
    let mut message = explanation.outcome.to_string();
    if matches!(explanation.outcome, Outcome::NoEligibleCluster { .. }) {
        let why: Vec<String> = explanation
            .candidates
            .iter()
            .filter_map(|c| c.excluded.as_ref().map(|e| format!("{} ({e})", c.cluster)))
            .collect();
        if !why.is_empty() {
            message.push_str(": ");
            message.push_str(&why.join(", "));
        }
    }
    message
}

impl RouteError {
    /// True when some target was excluded only for being full, so the same job may route once
    /// capacity frees up (retry layers treat it as [`bpg_core::Error::Unavailable`]).
    pub fn is_temporary(&self) -> bool {
        matches!(self.explanation.outcome, Outcome::NoEligibleCluster { .. })
            && self
                .explanation
                .candidates
                .iter()
                .filter_map(|c| c.excluded.as_ref())
                .any(Exclusion::is_capacity)
    }
}

impl From<RouteError> for bpg_core::Error {
    fn from(e: RouteError) -> Self {
        if e.is_temporary() {
            bpg_core::Error::Unavailable {
                message: e.to_string(),
            }
        } else {
            bpg_core::Error::Denied {
                reason: e.to_string(),
            }
        }
    }
}
