//! What a rule or constraint condition is tested against, and the direct (unindexed) test.

use std::collections::BTreeMap;

use bpg_core::SparkJob;

use crate::config::MatchConfig;

/// Where a job's queue came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueSource {
    /// The job names it.
    Job,
    /// The user is listed in that queue's `users`.
    User,
    /// The rules file's `default_queue`.
    Default,
    /// No queue at all.
    None,
}

/// The facts about a job that conditions test, resolved once per decision.
#[derive(Debug)]
pub(crate) struct JobFacts<'a> {
    /// Resolved queue as written (normalised like BPG: no empty `.` segments).
    pub queue: Option<String>,
    /// `queue` lowercased, for matching.
    pub queue_key: Option<String>,
    pub queue_source: QueueSource,
    /// Lowercased submitting user.
    pub user: Option<String>,
    /// Lowercased Spark version.
    pub version: String,
    /// The Spark version as the job wrote it.
    pub spark_version: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub cores: u64,
    pub memory: u64,
    pub executors: u64,
}

impl<'a> JobFacts<'a> {
    pub(crate) fn new(job: &'a SparkJob, user: Option<&str>) -> Self {
        JobFacts {
            queue: None,
            queue_key: None,
            queue_source: QueueSource::None,
            user: user.map(str::to_lowercase),
            version: job.spark_version.to_lowercase(),
            spark_version: &job.spark_version,
            labels: &job.labels,
            cores: job.total_cores(),
            memory: job.total_memory().bytes(),
            executors: u64::from(job.executor_instances()),
        }
    }

    pub(crate) fn set_queue(&mut self, queue: String, source: QueueSource) {
        self.queue_key = Some(queue.to_lowercase());
        self.queue = Some(queue);
        self.queue_source = source;
    }
}

/// BPG's queue normalisation: `a..b` is `a.b`, leading and trailing dots go. Empty means none.
pub(crate) fn normalize_queue(queue: &str) -> Option<String> {
    let parts: Vec<&str> = queue.trim().split('.').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("."))
    }
}

/// A validated condition, with case-insensitive fields lowercased.
#[derive(Clone, Debug, Default)]
pub(crate) struct Condition {
    pub queues: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub versions: Option<Vec<String>>,
    pub labels: Vec<(String, Vec<String>)>,
    pub cores: Option<(u64, u64)>,
    pub memory: Option<(u64, u64)>,
    pub executors: Option<(u64, u64)>,
}

fn lowered(values: &[String]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.iter().map(|v| v.to_lowercase()).collect())
}

fn bounds(min: Option<u64>, max: Option<u64>) -> Option<(u64, u64)> {
    (min.is_some() || max.is_some()).then(|| (min.unwrap_or(0), max.unwrap_or(u64::MAX)))
}

impl Condition {
    /// Compiles a condition; validation (empty value lists, min > max) happens in the loader.
    pub(crate) fn new(m: &MatchConfig) -> Self {
        let r = m.resources.clone().unwrap_or_default();
        Condition {
            queues: lowered(&m.queues),
            users: lowered(&m.users),
            versions: lowered(&m.spark_versions),
            labels: m
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            cores: bounds(r.min_cores, r.max_cores),
            memory: bounds(
                r.min_memory.map(|q| q.bytes()),
                r.max_memory.map(|q| q.bytes()),
            ),
            executors: bounds(
                r.min_executors.map(u64::from),
                r.max_executors.map(u64::from),
            ),
        }
    }

    /// The direct test, used for constraints on every decision and as the reference the rule index
    /// must agree with.
    pub(crate) fn matches(&self, facts: &JobFacts<'_>) -> bool {
        fn listed(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
            match list {
                None => true,
                Some(list) => value.is_some_and(|v| list.iter().any(|x| x == v)),
            }
        }
        fn within(range: Option<(u64, u64)>, value: u64) -> bool {
            range.is_none_or(|(lo, hi)| lo <= value && value <= hi)
        }
        listed(&self.queues, facts.queue_key.as_deref())
            && listed(&self.users, facts.user.as_deref())
            && listed(&self.versions, Some(&facts.version))
            && self.labels.iter().all(|(k, values)| {
                facts
                    .labels
                    .get(k)
                    .is_some_and(|v| values.iter().any(|x| x == v))
            })
            && within(self.cores, facts.cores)
            && within(self.memory, facts.memory)
            && within(self.executors, facts.executors)
    }
}
