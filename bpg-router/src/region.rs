//! Sets of jobs, for proving at load time that no constraint can be violated.
//!
//! A [`Region`] is a box: one set of values per job dimension (queue, user, Spark version, each
//! label, cores, memory, executors). The jobs that reach a rule are that rule's box minus the boxes
//! of every rule before it; a box minus a box is a handful of boxes, so reachability stays exact
//! without enumerating jobs. Dimensions are treated as independent (e.g. cores and executors are
//! related in a real job), which can only over-approximate what reaches a rule: a config may be
//! refused that no real job could break, never the reverse.

use std::collections::{BTreeMap, BTreeSet};

use crate::matching::Condition;

/// A set of values of one categorical dimension; `None` is "absent" (no label, no queue, no user).
#[derive(Clone, Debug, PartialEq, Eq)]
enum CatSet {
    Only(BTreeSet<Option<String>>),
    AllExcept(BTreeSet<Option<String>>),
}

impl CatSet {
    fn any() -> Self {
        CatSet::AllExcept(BTreeSet::new())
    }

    fn of(values: &[String]) -> Self {
        CatSet::Only(values.iter().cloned().map(Some).collect())
    }

    fn is_empty(&self) -> bool {
        matches!(self, CatSet::Only(s) if s.is_empty())
    }

    #[cfg(test)]
    fn is_any(&self) -> bool {
        matches!(self, CatSet::AllExcept(s) if s.is_empty())
    }

    fn complement(&self) -> Self {
        match self {
            CatSet::Only(s) => CatSet::AllExcept(s.clone()),
            CatSet::AllExcept(s) => CatSet::Only(s.clone()),
        }
    }

    fn intersect(&self, other: &CatSet) -> CatSet {
        match (self, other) {
            (CatSet::Only(a), CatSet::Only(b)) => {
                CatSet::Only(a.intersection(b).cloned().collect())
            }
            (CatSet::Only(a), CatSet::AllExcept(b)) | (CatSet::AllExcept(b), CatSet::Only(a)) => {
                CatSet::Only(a.difference(b).cloned().collect())
            }
            (CatSet::AllExcept(a), CatSet::AllExcept(b)) => {
                CatSet::AllExcept(a.union(b).cloned().collect())
            }
        }
    }

    fn disjoint(&self, other: &CatSet) -> bool {
        match (self, other) {
            (CatSet::Only(a), CatSet::Only(b)) => a.is_disjoint(b),
            (CatSet::Only(a), CatSet::AllExcept(b)) | (CatSet::AllExcept(b), CatSet::Only(a)) => {
                a.is_subset(b)
            }
            (CatSet::AllExcept(_), CatSet::AllExcept(_)) => false,
        }
    }

    fn describe(&self, what: &str) -> Option<String> {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        match self {
            CatSet::AllExcept(s) if s.is_empty() => None,
            CatSet::AllExcept(s) => Some(format!(
                "{what} not in [{}]",
                s.iter().map(show).collect::<Vec<_>>().join(", ")
            )),
            CatSet::Only(s) => s.iter().next().map(|v| format!("{what}={}", show(v))),
        }
    }
}

/// A set of unsigned values as sorted, disjoint, inclusive intervals.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    fn any() -> Self {
        RangeSet(vec![(0, u64::MAX)])
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn is_any(&self) -> bool {
        self.0 == [(0, u64::MAX)]
    }

    fn complement(&self) -> Self {
        let mut out = Vec::new();
        let mut next = Some(0u64);
        for &(lo, hi) in &self.0 {
            if let Some(start) = next
                && lo > start
            {
                out.push((start, lo - 1));
            }
            next = hi.checked_add(1);
        }
        if let Some(start) = next {
            out.push((start, u64::MAX));
        }
        RangeSet(out)
    }

    fn intersect(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a_lo, a_hi) = self.0[i];
            let (b_lo, b_hi) = other.0[j];
            let (lo, hi) = (a_lo.max(b_lo), a_hi.min(b_hi));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet(out)
    }

    fn describe(&self, what: &str) -> Option<String> {
        if self.is_any() {
            return None;
        }
        self.0.first().map(|&(lo, hi)| match (lo, hi) {
            (lo, u64::MAX) => format!("{what}>={lo}"),
            (lo, hi) if lo == hi => format!("{what}={lo}"),
            (lo, hi) => format!("{what} in {lo}..={hi}"),
        })
    }
}

/// One dimension restricted by a condition.
#[derive(Clone, Debug)]
enum Restriction {
    Queue(CatSet),
    User(CatSet),
    Version(CatSet),
    Label(String, CatSet),
    Cores(RangeSet),
    Memory(RangeSet),
    Executors(RangeSet),
}

/// The dimensions a condition restricts, as sets.
#[derive(Clone, Debug)]
pub(crate) struct Restrictions(Vec<Restriction>);

impl Restrictions {
    pub(crate) fn of(c: &Condition) -> Self {
        let mut out = Vec::new();
        if let Some(q) = &c.queues {
            out.push(Restriction::Queue(CatSet::of(q)));
        }
        if let Some(u) = &c.users {
            out.push(Restriction::User(CatSet::of(u)));
        }
        if let Some(v) = &c.versions {
            out.push(Restriction::Version(CatSet::of(v)));
        }
        for (k, values) in &c.labels {
            out.push(Restriction::Label(k.clone(), CatSet::of(values)));
        }
        let range = |r: (u64, u64)| RangeSet(vec![r]);
        if let Some(r) = c.cores {
            out.push(Restriction::Cores(range(r)));
        }
        if let Some(r) = c.memory {
            out.push(Restriction::Memory(range(r)));
        }
        if let Some(r) = c.executors {
            out.push(Restriction::Executors(range(r)));
        }
        Restrictions(out)
    }
}

/// A box of jobs: the product of one value set per dimension (labels not listed are unrestricted).
#[derive(Clone, Debug)]
pub(crate) struct Region {
    queue: CatSet,
    user: CatSet,
    version: CatSet,
    labels: BTreeMap<String, CatSet>,
    cores: RangeSet,
    memory: RangeSet,
    executors: RangeSet,
}

enum Dim<'a> {
    Cat(&'a CatSet),
    Range(&'a RangeSet),
}

impl Region {
    /// Every job.
    pub(crate) fn any() -> Self {
        Region {
            queue: CatSet::any(),
            user: CatSet::any(),
            version: CatSet::any(),
            labels: BTreeMap::new(),
            cores: RangeSet::any(),
            memory: RangeSet::any(),
            executors: RangeSet::any(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
            || self.user.is_empty()
            || self.version.is_empty()
            || self.labels.values().any(CatSet::is_empty)
            || self.cores.is_empty()
            || self.memory.is_empty()
            || self.executors.is_empty()
    }

    fn dim(&self, r: &Restriction) -> Dim<'_> {
        static ANY: std::sync::LazyLock<CatSet> = std::sync::LazyLock::new(CatSet::any);
        match r {
            Restriction::Queue(_) => Dim::Cat(&self.queue),
            Restriction::User(_) => Dim::Cat(&self.user),
            Restriction::Version(_) => Dim::Cat(&self.version),
            Restriction::Label(k, _) => Dim::Cat(self.labels.get(k).unwrap_or(&ANY)),
            Restriction::Cores(_) => Dim::Range(&self.cores),
            Restriction::Memory(_) => Dim::Range(&self.memory),
            Restriction::Executors(_) => Dim::Range(&self.executors),
        }
    }

    /// Replaces one dimension's set by `f(current set, restriction's set)`.
    fn map_dim(
        &mut self,
        r: &Restriction,
        cat: impl Fn(&CatSet, &CatSet) -> CatSet,
        range: impl Fn(&RangeSet, &RangeSet) -> RangeSet,
    ) {
        match r {
            Restriction::Queue(s) => self.queue = cat(&self.queue, s),
            Restriction::User(s) => self.user = cat(&self.user, s),
            Restriction::Version(s) => self.version = cat(&self.version, s),
            Restriction::Label(k, s) => {
                let current = self.labels.get(k).cloned().unwrap_or_else(CatSet::any);
                self.labels.insert(k.clone(), cat(&current, s));
            }
            Restriction::Cores(s) => self.cores = range(&self.cores, s),
            Restriction::Memory(s) => self.memory = range(&self.memory, s),
            Restriction::Executors(s) => self.executors = range(&self.executors, s),
        }
    }

    /// The jobs in this region that also satisfy `rs`.
    pub(crate) fn restrict(&self, rs: &Restrictions) -> Region {
        let mut out = self.clone();
        for r in &rs.0 {
            out.map_dim(r, CatSet::intersect, RangeSet::intersect);
        }
        out
    }

    fn disjoint_from(&self, rs: &Restrictions) -> bool {
        rs.0.iter().any(|r| match (self.dim(r), r) {
            (Dim::Cat(mine), Restriction::Queue(s))
            | (Dim::Cat(mine), Restriction::User(s))
            | (Dim::Cat(mine), Restriction::Version(s))
            | (Dim::Cat(mine), Restriction::Label(_, s)) => mine.disjoint(s),
            (Dim::Range(mine), Restriction::Cores(s))
            | (Dim::Range(mine), Restriction::Memory(s))
            | (Dim::Range(mine), Restriction::Executors(s)) => mine.intersect(s).is_empty(),
            _ => false,
        })
    }

    /// The jobs in this region that do not satisfy `rs`, as disjoint boxes (callers skip the work
    /// when the two are disjoint).
    fn subtract(&self, rs: &Restrictions) -> Vec<Region> {
        let mut pieces = Vec::new();
        let mut inside = self.clone();
        for r in &rs.0 {
            let mut outside = inside.clone();
            outside.map_dim(
                r,
                |mine, s| mine.intersect(&s.complement()),
                |mine, s| mine.intersect(&s.complement()),
            );
            if !outside.is_empty() {
                pieces.push(outside);
            }
            inside.map_dim(r, CatSet::intersect, RangeSet::intersect);
        }
        pieces
    }

    /// A short description of jobs in the region, for error messages (`data-classification=phi, queue=etl`).
    pub(crate) fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (k, s) in &self.labels {
            if let Some(d) = s.describe(&format!("label {k}")) {
                parts.push(d);
            }
        }
        parts.extend(self.queue.describe("queue"));
        parts.extend(self.user.describe("user"));
        parts.extend(self.version.describe("spark version"));
        parts.extend(self.cores.describe("cores"));
        parts.extend(self.memory.describe("memory bytes"));
        parts.extend(self.executors.describe("executors"));
        if parts.is_empty() {
            "any job".into()
        } else {
            parts.join(", ")
        }
    }

    #[cfg(test)]
    fn is_everything(&self) -> bool {
        self.queue.is_any()
            && self.user.is_any()
            && self.version.is_any()
            && self.labels.values().all(CatSet::is_any)
            && self.cores.is_any()
            && self.memory.is_any()
            && self.executors.is_any()
    }
}

/// Upper bound on boxes kept while subtracting, and on boxes examined for one route; past either,
/// subtraction stops and the (larger) region is kept, which can only make the check stricter.
const MAX_PIECES: usize = 1024;
const MAX_STEPS: usize = 200_000;

/// The jobs of `start` that no condition in `earlier` matches, and whether that set is exact
/// (`false` when the work bounds cut subtraction short and the set may hold jobs no rule lets by).
pub(crate) fn reachable(start: Region, earlier: &[&Restrictions]) -> (Vec<Region>, bool) {
    let mut regions = if start.is_empty() {
        Vec::new()
    } else {
        vec![start]
    };
    let mut steps = 0usize;
    for rs in earlier {
        if regions.is_empty() {
            break;
        }
        steps += regions.len();
        if steps > MAX_STEPS {
            return (regions, false);
        }
        let mut next = Vec::with_capacity(regions.len());
        for r in &regions {
            if r.disjoint_from(rs) {
                next.push(r.clone());
            } else {
                next.extend(r.subtract(rs));
            }
        }
        if next.len() > MAX_PIECES {
            return (regions, false);
        }
        regions = next;
    }
    (regions, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MatchConfig;

    fn rs(m: MatchConfig) -> Restrictions {
        Restrictions::of(&Condition::new(&m))
    }

    #[test]
    fn a_rule_shadowed_by_an_earlier_one_is_unreachable() {
        let phi = rs(MatchConfig::default().with_label("dc", "phi"));
        let start = Region::any().restrict(&phi);
        assert!(reachable(start.clone(), &[&phi]).0.is_empty());
        let other = rs(MatchConfig::default().with_label("dc", "pii"));
        let (left, exact) = reachable(start, &[&other]);
        assert!(exact);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].describe(), "label dc=phi");
    }

    #[test]
    fn subtracting_a_partial_condition_keeps_the_rest() {
        let mut m = MatchConfig::default().with_label("dc", "phi");
        m.queues = vec!["etl".into()];
        let (left, _) = reachable(Region::any(), &[&rs(m)]);
        assert!(!left.is_empty());
        // Everything is covered once the complement is subtracted as well.
        let (all, _) = reachable(Region::any(), &[&rs(MatchConfig::default())]);
        assert!(all.is_empty());
        assert!(Region::any().is_everything());
    }

    #[test]
    fn ranges_split_and_complement() {
        let m = MatchConfig {
            resources: Some(crate::config::ResourceMatch {
                min_cores: Some(10),
                max_cores: Some(20),
                ..Default::default()
            }),
            ..MatchConfig::default()
        };
        let (left, _) = reachable(Region::any(), &[&rs(m)]);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].cores.0, vec![(0, 9), (21, u64::MAX)]);
    }
}
