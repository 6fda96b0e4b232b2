//! The caller's snapshot of cluster load, passed into every decision.

use serde::{Deserialize, Serialize};

use crate::hash::FnvHashMap;

/// Load of one cluster at the time of a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLoad {
    /// Jobs running.
    pub running: u32,
    /// Jobs submitted and not yet running.
    pub pending: u32,
    /// The cluster reports it cannot take more work (e.g. its queue is full), whatever the counts say.
    pub full: bool,
}

impl ClusterLoad {
    /// A cluster with these counts, not marked full.
    pub fn new(running: u32, pending: u32) -> Self {
        ClusterLoad {
            running,
            pending,
            full: false,
        }
    }

    /// A cluster that reports itself full.
    pub fn full() -> Self {
        ClusterLoad {
            full: true,
            ..ClusterLoad::default()
        }
    }

    /// Running plus pending jobs.
    pub fn in_flight(&self) -> u32 {
        self.running.saturating_add(self.pending)
    }
}

/// Load per cluster id. Clusters it does not list count as idle and not full.
///
/// ```
/// use bpg_router::{ClusterLoad, ClusterView};
/// let view = ClusterView::new()
///     .with("phi-east", ClusterLoad::new(3, 1))
///     .with("spot-1", ClusterLoad::full());
/// assert_eq!(view.get("phi-east").map(|l| l.in_flight()), Some(4));
/// assert!(view.get("unknown").is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterView {
    clusters: FnvHashMap<String, ClusterLoad>,
}

impl ClusterView {
    /// A view with no load anywhere.
    pub fn new() -> Self {
        ClusterView::default()
    }

    /// Adds or replaces a cluster's load.
    pub fn with(mut self, cluster: impl Into<String>, load: ClusterLoad) -> Self {
        self.set(cluster, load);
        self
    }

    /// Sets a cluster's load.
    pub fn set(&mut self, cluster: impl Into<String>, load: ClusterLoad) {
        self.clusters.insert(cluster.into(), load);
    }

    /// A cluster's load, if the view has it.
    pub fn get(&self, cluster: &str) -> Option<&ClusterLoad> {
        self.clusters.get(cluster)
    }

    /// A mutable handle on a cluster's load (inserting an idle entry), e.g. to count a submission.
    pub fn entry(&mut self, cluster: &str) -> &mut ClusterLoad {
        self.clusters.entry(cluster.to_owned()).or_default()
    }
}
