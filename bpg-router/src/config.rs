//! The rules file as written: plain serde types, so a rule set can be read from YAML, built in code,
//! imported from BPG's config, and written back out.

use std::collections::BTreeMap;
use std::fmt;

use bpg_core::MemoryQuantity;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A whole rules file: clusters, queues, isolation constraints, ordered rules and a default route.
///
/// Compile it with [`crate::RoutingRules::new`], which validates it (references, limits, and that no
/// constraint can be violated) before anything is routed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Every cluster a job may be routed to.
    pub clusters: Vec<ClusterConfig>,
    /// Queues: which users default to them and their limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueConfig>,
    /// The queue of a job that names none and whose user is listed in no queue (BPG uses `poc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue: Option<String>,
    /// Isolation constraints, enforced at load and on every decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintConfig>,
    /// Ordered rules; the first whose `match` holds decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Where jobs go that no rule matches; without it such jobs are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<RouteConfig>,
}

/// One routing target: a namespace of one Kubernetes cluster (or an EMR virtual cluster) reached
/// through a named connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster id: lowercase letters, digits and `-` (e.g. `phi-east-1`).
    pub id: String,
    /// Name of the connection (from the pipeline's connections file) that reaches this cluster.
    pub connection: String,
    /// Namespace jobs run in on this cluster, if the connection does not fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Free tags that constraints test, e.g. `phi-compliant: "true"`, `capacity: spot`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Spark versions the cluster runs (case-insensitive, exact); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spark_versions: Vec<String>,
    /// Queues the cluster serves (a queue or its parent, the part before the first `.`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// Relative share for weighted random picks and least-loaded scoring; 0 takes the cluster out of routing.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Jobs in flight (running + pending) at which the cluster counts as full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

impl ClusterConfig {
    /// A cluster with weight 1 and nothing else set.
    pub fn new(id: impl Into<String>, connection: impl Into<String>) -> Self {
        ClusterConfig {
            id: id.into(),
            connection: connection.into(),
            namespace: None,
            tags: BTreeMap::new(),
            spark_versions: Vec::new(),
            queues: Vec::new(),
            weight: 1,
            max_running: None,
        }
    }

    /// Sets a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// A queue: the users it is the default for, and its limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Queue name (matched case-insensitively).
    pub name: String,
    /// Users whose jobs land in this queue when they name none (the first listing queue wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Most executors one job in this queue may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_executor_instances: Option<u32>,
}

/// An isolation constraint: jobs matching `when` may only run on clusters carrying `require_tags`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintConfig {
    /// Name shown in errors and explanations.
    pub name: String,
    /// Which jobs the constraint covers.
    pub when: MatchConfig,
    /// Tags every cluster such a job runs on must have (each value one of those listed).
    pub require_tags: BTreeMap<String, ValueSet>,
}

/// One ordered rule: a condition, and either a route or a denial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name shown in errors and explanations.
    pub name: String,
    /// Condition; empty matches every job.
    #[serde(
        rename = "match",
        default,
        skip_serializing_if = "MatchConfig::is_empty"
    )]
    pub matches: MatchConfig,
    /// Where matching jobs go (exactly one of `route` and `deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteConfig>,
    /// Refuse matching jobs with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<String>,
}

/// A condition on a job; every field that is set must hold (an empty condition matches everything).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The job's queue is one of these (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// The submitting user is one of these (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// The job's Spark version is one of these (case-insensitive, exact: `3.1` is not `3.10`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spark_versions: Vec<String>,
    /// Each routing label is present with one of the listed values (case-sensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, ValueSet>,
    /// Bounds on the requested resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceMatch>,
}

impl MatchConfig {
    /// True when the condition sets nothing (matches every job).
    pub fn is_empty(&self) -> bool {
        self == &MatchConfig::default()
    }

    /// Requires a label value.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), ValueSet(vec![value.into()]));
        self
    }
}

/// Inclusive bounds on what a job requests, totalled over driver and executors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceMatch {
    /// At least this many cores in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cores: Option<u64>,
    /// At most this many cores in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cores: Option<u64>,
    /// At least this much heap in total (`64g`, `512Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory: Option<MemoryQuantity>,
    /// At most this much heap in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<MemoryQuantity>,
    /// At least this many executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_executors: Option<u32>,
    /// At most this many executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_executors: Option<u32>,
}

/// Where matching jobs go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// How one cluster is picked among the eligible ones.
    #[serde(default)]
    pub strategy: Strategy,
    /// Target clusters: an id (the cluster's own weight) or `{cluster: id, weight: n}`.
    pub clusters: Vec<TargetConfig>,
    /// Tried, with the same strategy, when no target in `clusters` is eligible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<TargetConfig>,
    /// Queue to run in, instead of the job's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl RouteConfig {
    /// A weighted-random route to these clusters, each with its own weight.
    pub fn to<I, S>(clusters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RouteConfig {
            strategy: Strategy::default(),
            clusters: clusters.into_iter().map(TargetConfig::new).collect(),
            fallback: Vec::new(),
            queue: None,
        }
    }
}

/// A cluster in a route, optionally with a weight that overrides the cluster's own.
///
/// Written either as a bare id or as `{cluster: id, weight: n}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// Cluster id.
    pub cluster: String,
    /// Weight for this route; the cluster's `weight` when absent.
    pub weight: Option<u32>,
}

impl Serialize for TargetConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.weight {
            None => serializer.serialize_str(&self.cluster),
            Some(weight) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("cluster", &self.cluster)?;
                map.serialize_entry("weight", &weight)?;
                map.end()
            }
        }
    }
}

impl TargetConfig {
    /// A target using the cluster's own weight.
    pub fn new(cluster: impl Into<String>) -> Self {
        TargetConfig {
            cluster: cluster.into(),
            weight: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetMap {
    cluster: String,
    #[serde(default)]
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = TargetConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cluster id or a map {cluster: ID, weight: N}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetConfig, E> {
                Ok(TargetConfig::new(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetConfig, A::Error> {
                let t = TargetMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TargetConfig {
                    cluster: t.cluster,
                    weight: t.weight,
                })
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// How a route picks one cluster among its eligible targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Random, in proportion to the weights (BPG's behaviour).
    #[default]
    WeightedRandom,
    /// Each target in turn, skipping ineligible ones; weights are ignored.
    RoundRobin,
    /// The target with the fewest jobs in flight per unit of weight (first listed on a tie).
    LeastLoaded,
}

impl Strategy {
    /// The name used in rules files.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::WeightedRandom => "weighted_random",
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepted values of a label or tag: one value or a list of values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ValueSet(pub Vec<String>);

impl ValueSet {
    /// Whether `value` is one of the accepted values.
    pub fn contains(&self, value: &str) -> bool {
        self.0.iter().any(|v| v == value)
    }
}

impl fmt::Display for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(one),
            many => write!(f, "one of [{}]", many.join(", ")),
        }
    }
}

impl<'de> Deserialize<'de> for ValueSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueSetVisitor;
        impl<'de> Visitor<'de> for ValueSetVisitor {
            type Value = ValueSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueSet, E> {
                Ok(ValueSet(vec![v.to_owned()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ValueSet, E> {
                Ok(ValueSet(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueSet, E> {
                Ok(ValueSet(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueSet, E> {
                Ok(ValueSet(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueSet, E> {
                // The scalar's text is gone by now (`3.10` arrives as 3.1), so refuse to guess.
                Err(E::custom(format!(
                    "the number {v} must be quoted (YAML reads 3.10 as 3.1) or written as a list"
                )))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValueSet, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    values.push(v);
                }
                Ok(ValueSet(values))
            }
        }
        deserializer.deserialize_any(ValueSetVisitor)
    }
}
