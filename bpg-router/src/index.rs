//! Finds every rule matching a job in time independent of where the rules sit in the list.
//!
//! For each dimension a rule can test, the index keeps, per value, the bit set of rules that accept
//! that value (rules that do not test the dimension accept every value). A job's matching rules are
//! the AND of one set per dimension; the lowest bit is the rule that decides.

use std::collections::HashMap;

use crate::hash::FnvHashMap;
use crate::matching::{Condition, JobFacts};

/// A fixed-size set of rule positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleSet(Box<[u64]>);

impl RuleSet {
    fn empty(n: usize) -> Self {
        RuleSet(vec![0; n.div_ceil(64)].into_boxed_slice())
    }

    fn full(n: usize) -> Self {
        let mut s = RuleSet::empty(n);
        for i in 0..n {
            s.insert(i);
        }
        s
    }

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn and(&mut self, other: &RuleSet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a &= *b;
        }
    }

    /// Positions in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
    }
}

/// One categorical dimension: value → rules accepting it.
#[derive(Debug)]
struct ValueIndex {
    /// Rules that do not test this dimension (they accept anything, including absence).
    untested: RuleSet,
    by_value: FnvHashMap<String, RuleSet>,
}

impl ValueIndex {
    /// `None` when no rule tests the dimension.
    fn build<'a>(
        n: usize,
        conditions: &'a [&'a Condition],
        values_of: impl Fn(&'a Condition) -> Option<&'a [String]>,
    ) -> Option<Self> {
        let mut untested = RuleSet::empty(n);
        let mut tested = false;
        let mut listing: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in conditions.iter().enumerate() {
            match values_of(c) {
                None => untested.insert(i),
                Some(values) => {
                    tested = true;
                    for v in values {
                        listing.entry(v.clone()).or_default().push(i);
                    }
                }
            }
        }
        if !tested {
            return None;
        }
        let by_value = listing
            .into_iter()
            .map(|(v, rules)| {
                let mut set = untested.clone();
                for i in rules {
                    set.insert(i);
                }
                (v, set)
            })
            .collect();
        Some(ValueIndex { untested, by_value })
    }

    fn get(&self, value: Option<&str>) -> &RuleSet {
        value
            .and_then(|v| self.by_value.get(v))
            .unwrap_or(&self.untested)
    }
}

/// One numeric dimension: the value axis cut where any rule's bounds start or end.
#[derive(Debug)]
struct RangeIndex {
    /// Start of each segment; the first is 0.
    starts: Vec<u64>,
    /// Rules accepting every value of the segment.
    sets: Vec<RuleSet>,
}

impl RangeIndex {
    fn build<'a>(
        n: usize,
        conditions: &'a [&'a Condition],
        bounds_of: impl Fn(&'a Condition) -> Option<(u64, u64)>,
    ) -> Option<Self> {
        let bounds: Vec<Option<(u64, u64)>> = conditions.iter().map(|c| bounds_of(c)).collect();
        if bounds.iter().all(Option::is_none) {
            return None;
        }
        let mut starts = vec![0u64];
        for (lo, hi) in bounds.iter().flatten() {
            starts.push(*lo);
            if let Some(after) = hi.checked_add(1) {
                starts.push(after);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let sets = starts
            .iter()
            .map(|&s| {
                let mut set = RuleSet::empty(n);
                for (i, b) in bounds.iter().enumerate() {
                    if b.is_none_or(|(lo, hi)| lo <= s && s <= hi) {
                        set.insert(i);
                    }
                }
                set
            })
            .collect();
        Some(RangeIndex { starts, sets })
    }

    fn get(&self, value: u64) -> &RuleSet {
        // `starts[0] == 0`, so the segment always exists.
        let segment = self.starts.partition_point(|&s| s <= value) - 1;
        &self.sets[segment]
    }
}

/// The index over all rules.
#[derive(Debug)]
pub(crate) struct RuleIndex {
    all: RuleSet,
    queue: Option<ValueIndex>,
    user: Option<ValueIndex>,
    version: Option<ValueIndex>,
    labels: Vec<(String, ValueIndex)>,
    cores: Option<RangeIndex>,
    memory: Option<RangeIndex>,
    executors: Option<RangeIndex>,
}

impl RuleIndex {
    pub(crate) fn new(conditions: &[&Condition]) -> Self {
        let n = conditions.len();
        let mut keys: Vec<&String> = conditions
            .iter()
            .flat_map(|c| c.labels.iter().map(|(k, _)| k))
            .collect();
        keys.sort();
        keys.dedup();
        let labels = keys
            .into_iter()
            .filter_map(|key| {
                ValueIndex::build(n, conditions, |c| {
                    c.labels
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_slice())
                })
                .map(|idx| (key.clone(), idx))
            })
            .collect();
        RuleIndex {
            all: RuleSet::full(n),
            queue: ValueIndex::build(n, conditions, |c| c.queues.as_deref()),
            user: ValueIndex::build(n, conditions, |c| c.users.as_deref()),
            version: ValueIndex::build(n, conditions, |c| c.versions.as_deref()),
            labels,
            cores: RangeIndex::build(n, conditions, |c| c.cores),
            memory: RangeIndex::build(n, conditions, |c| c.memory),
            executors: RangeIndex::build(n, conditions, |c| c.executors),
        }
    }

    /// Every rule whose condition holds for the job.
    pub(crate) fn matching(&self, facts: &JobFacts<'_>) -> RuleSet {
        let mut set = self.all.clone();
        if let Some(idx) = &self.queue {
            set.and(idx.get(facts.queue_key.as_deref()));
        }
        if let Some(idx) = &self.user {
            set.and(idx.get(facts.user.as_deref()));
        }
        if let Some(idx) = &self.version {
            set.and(idx.get(Some(&facts.version)));
        }
        for (key, idx) in &self.labels {
            set.and(idx.get(facts.labels.get(key).map(String::as_str)));
        }
        if let Some(idx) = &self.cores {
            set.and(idx.get(facts.cores));
        }
        if let Some(idx) = &self.memory {
            set.and(idx.get(facts.memory));
        }
        if let Some(idx) = &self.executors {
            set.and(idx.get(facts.executors));
        }
        set
    }
}
