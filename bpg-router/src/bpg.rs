//! Reading and writing rules files, and importing Batch Processing Gateway's own routing config.

use std::path::Path;

use bpg_core::Diagnostics;
use serde::Deserialize;

use crate::config::{ClusterConfig, QueueConfig, RouteConfig, RulesConfig, Strategy, TargetConfig};
use crate::yaml;

/// BPG's `maxExecutorInstances` when a queue does not set it.
const BPG_DEFAULT_MAX_EXECUTORS: u32 = 5000;
/// BPG's queue for users listed in no queue.
const BPG_DEFAULT_QUEUE: &str = "poc";

// Only the routing part of BPG's config; like BPG, every other key is ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BpgConfig {
    #[serde(default)]
    spark_clusters: Vec<BpgCluster>,
    #[serde(default)]
    queues: Vec<BpgQueue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BpgCluster {
    id: String,
    #[serde(default)]
    weight: i64,
    #[serde(default)]
    spark_application_namespace: Option<String>,
    #[serde(default)]
    spark_versions: Vec<String>,
    #[serde(default)]
    queues: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BpgQueue {
    name: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    max_executor_instances: Option<u32>,
}

impl RulesConfig {
    /// Parses a rules file. Unknown fields are errors; every error names file, line and field.
    pub fn from_yaml(text: &str, source: Option<&Path>) -> Result<Self, Diagnostics> {
        yaml::parse(text, source)
    }

    /// Writes the rules as YAML that [`RulesConfig::from_yaml`] reads back.
    pub fn to_yaml(&self) -> String {
        // Plain data (strings, numbers, maps): serialising it cannot fail.
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Imports the routing part of a BPG config file (`sparkClusters` and `queues`) into rules that
    /// route as BPG does: every cluster with a positive weight that runs the job's Spark version and
    /// serves its parent queue is a candidate, picked at random in proportion to the weights.
    ///
    /// Users default to the first queue listing them (BPG picks among several at random), then to
    /// `poc`; queues keep `maxExecutorInstances` (BPG's default 5000 when unset). Every other key is
    /// ignored, as BPG ignores unknown keys, and duplicate keys keep the last value.
    ///
    /// Each cluster's `connection` is `connection` when given (e.g. the gateway every cluster is
    /// reached through), else the cluster id; `namespace` is `sparkApplicationNamespace`.
    pub fn from_bpg_config(
        text: &str,
        source: Option<&Path>,
        connection: Option<&str>,
    ) -> Result<Self, Diagnostics> {
        let options = serde_saphyr::options! {
            duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
        };
        let bpg: BpgConfig = yaml::parse_with(text, source, options)?;
        let clusters: Vec<ClusterConfig> = bpg
            .spark_clusters
            .iter()
            .map(|c| ClusterConfig {
                id: c.id.clone(),
                connection: connection.map_or_else(|| c.id.clone(), str::to_owned),
                namespace: c.spark_application_namespace.clone(),
                tags: Default::default(),
                spark_versions: c.spark_versions.clone(),
                queues: c.queues.clone(),
                weight: u32::try_from(c.weight.max(0)).unwrap_or(u32::MAX),
                max_running: None,
            })
            .collect();
        let targets: Vec<TargetConfig> = clusters
            .iter()
            .filter(|c| c.weight > 0)
            .map(|c| TargetConfig::new(c.id.clone()))
            .collect();
        Ok(RulesConfig {
            queues: bpg
                .queues
                .into_iter()
                .map(|q| QueueConfig {
                    name: q.name,
                    users: q.users,
                    max_executor_instances: Some(
                        q.max_executor_instances
                            .unwrap_or(BPG_DEFAULT_MAX_EXECUTORS),
                    ),
                })
                .collect(),
            default_queue: Some(BPG_DEFAULT_QUEUE.into()),
            constraints: Vec::new(),
            rules: Vec::new(),
            default: (!targets.is_empty()).then(|| RouteConfig {
                strategy: Strategy::WeightedRandom,
                clusters: targets,
                fallback: Vec::new(),
                queue: None,
            }),
            clusters,
        })
    }
}
