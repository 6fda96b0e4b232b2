//! The pure scheduler: which tasks are ready, what trigger rules decide, when retries are due.
//!
//! No runtime, no clock, no I/O: the executor tells it what happened and it answers what to do
//! next. Every task and every edge is looked at a bounded number of times per run (O(tasks +
//! edges)): finishing a task touches only its direct downstreams' counters.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::dag::{Dag, ResolvedSettings, RetryPolicy, TriggerRule};
use crate::events::{RunState, TaskState};
use crate::idhash::IdMap;
use crate::retry::retry_delay;

/// A task's position in its DAG (declaration order).
pub type TaskIndex = usize;

/// The DAG's shape, compiled for scheduling: indices, adjacency, rules and retry policies.
#[derive(Debug)]
pub struct Graph {
    ids: Vec<Arc<str>>,
    index: IdMap<Arc<str>, TaskIndex>,
    upstream_count: Vec<u32>,
    downstream_start: Vec<u32>,
    downstream: Vec<u32>,
    settings: Vec<ResolvedSettings>,
    dag_id: Arc<str>,
    sound: bool,
}

impl Graph {
    /// Compiles a validated DAG (duplicate upstream entries count once; unknown ones are ignored,
    /// which [`Dag::validate`] reports); the same as [`Dag::compile`].
    pub fn new(dag: &Dag) -> Self {
        let n = dag.tasks.len();
        let ids: Vec<Arc<str>> = dag.tasks.iter().map(|t| Arc::from(t.id.as_str())).collect();
        let mut index = IdMap::with_capacity_and_hasher(n, Default::default());
        for (i, id) in ids.iter().enumerate() {
            index.entry(id.clone()).or_insert(i);
        }
        let mut upstream_count = vec![0u32; n];
        let mut out_degree = vec![0u32; n];
        let mut edges: Vec<(u32, u32)> = Vec::with_capacity(n);
        let mut sound = index.len() == n;
        let mut ups: Vec<u32> = Vec::new();
        for (i, task) in dag.tasks.iter().enumerate() {
            ups.clear();
            ups.extend(task.depends_on.iter().filter_map(|d| {
                let u = index.get(d.as_str()).map(|&u| u as u32);
                sound &= u.is_some_and(|u| u as usize != i);
                u.filter(|&u| u as usize != i)
            }));
            ups.sort_unstable();
            ups.dedup();
            upstream_count[i] = ups.len() as u32;
            for &u in &ups {
                out_degree[u as usize] += 1;
                edges.push((u, i as u32));
            }
        }
        let mut downstream_start = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for d in &out_degree {
            downstream_start.push(acc);
            acc += d;
        }
        downstream_start.push(acc);
        let mut fill = downstream_start.clone();
        let mut downstream = vec![0u32; edges.len()];
        for (u, d) in edges {
            downstream[fill[u as usize] as usize] = d;
            fill[u as usize] += 1;
        }
        let settings = dag
            .tasks
            .iter()
            .map(|t| t.settings.or(&dag.default_args).resolve())
            .collect();
        let mut graph = Graph {
            ids,
            index,
            upstream_count,
            downstream_start,
            downstream,
            settings,
            dag_id: Arc::from(dag.dag_id.as_str()),
            sound,
        };
        graph.sound = graph.sound && graph.is_acyclic();
        graph
    }

    /// Kahn's algorithm over the compiled edges: O(tasks + edges).
    fn is_acyclic(&self) -> bool {
        let mut pending = self.upstream_count.clone();
        let mut ready: Vec<TaskIndex> = (0..self.len()).filter(|&i| pending[i] == 0).collect();
        let mut seen = 0;
        while let Some(t) = ready.pop() {
            seen += 1;
            for d in self.downstream(t) {
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.push(d);
                }
            }
        }
        seen == self.len()
    }

    /// True when ids are unique, every dependency names another task, and there is no cycle:
    /// what the scheduler needs. [`Dag::validate`] explains what is wrong when it is not.
    pub fn is_sound(&self) -> bool {
        self.sound
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for a DAG without tasks.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of task `i`.
    pub fn id(&self, i: TaskIndex) -> &Arc<str> {
        &self.ids[i]
    }

    /// The index of the task with `id`.
    pub fn index_of(&self, id: &str) -> Option<TaskIndex> {
        self.index.get(id).copied()
    }

    /// Direct downstreams of task `i`.
    pub fn downstream(&self, i: TaskIndex) -> impl Iterator<Item = TaskIndex> + '_ {
        let range = self.downstream_start[i] as usize..self.downstream_start[i + 1] as usize;
        self.downstream[range].iter().map(|&d| d as usize)
    }

    /// True when nothing depends on task `i`.
    pub fn is_leaf(&self, i: TaskIndex) -> bool {
        self.downstream_start[i] == self.downstream_start[i + 1]
    }

    /// Task `i`'s settings, `default_args` and Airflow's defaults applied.
    pub fn settings(&self, i: TaskIndex) -> &ResolvedSettings {
        &self.settings[i]
    }

    /// Task `i`'s trigger rule.
    pub fn trigger_rule(&self, i: TaskIndex) -> TriggerRule {
        self.settings[i].trigger_rule
    }

    /// Task `i`'s retry policy.
    pub fn retry_policy(&self, i: TaskIndex) -> &RetryPolicy {
        &self.settings[i].retry
    }
}

/// Outcomes of a task's direct upstreams so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Direct upstreams in total.
    pub total: u32,
    /// Upstreams that succeeded.
    pub success: u32,
    /// Upstreams that were skipped.
    pub skipped: u32,
    /// Upstreams that failed.
    pub failed: u32,
    /// Upstreams that are upstream_failed.
    pub upstream_failed: u32,
}

impl UpstreamCounts {
    /// Upstreams that finished, whatever the outcome.
    pub fn done(&self) -> u32 {
        self.success + self.skipped + self.failed + self.upstream_failed
    }

    fn record(&mut self, state: TaskState) {
        match state {
            TaskState::Success => self.success += 1,
            TaskState::Skipped => self.skipped += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::UpstreamFailed => self.upstream_failed += 1,
            _ => {}
        }
    }
}

/// What a trigger rule says about a task, given its upstreams' outcomes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: more upstreams must finish.
    Wait,
    /// The task runs.
    Run,
    /// The task is marked without running (`skipped` or `upstream_failed`).
    Mark(TaskState),
}

/// Airflow's trigger-rule decision (`trigger_rule_dep.py`), including eager marking: a verdict is
/// given as soon as the outcomes seen so far settle it. A task without upstreams always runs.
pub fn evaluate(rule: TriggerRule, c: &UpstreamCounts) -> Verdict {
    use TriggerRule::*;
    use Verdict::*;
    if c.total == 0 {
        return Run;
    }
    let failed_any = c.failed + c.upstream_failed;
    let all_done = c.done() >= c.total;
    match rule {
        Always => Run,
        AllSuccess => {
            if failed_any > 0 {
                Mark(TaskState::UpstreamFailed)
            } else if c.skipped > 0 {
                Mark(TaskState::Skipped)
            } else if c.success >= c.total {
                Run
            } else {
                Wait
            }
        }
        AllFailed => {
            if c.success + c.skipped > 0 {
                Mark(TaskState::Skipped)
            } else if failed_any >= c.total {
                Run
            } else {
                Wait
            }
        }
        AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        AllDoneMinOneSuccess => {
            if c.skipped > 0 {
                Mark(TaskState::Skipped)
            } else if all_done {
                if c.success > 0 {
                    Run
                } else {
                    Mark(TaskState::UpstreamFailed)
                }
            } else {
                Wait
            }
        }
        AllSkipped => {
            if c.success + failed_any > 0 {
                Mark(TaskState::Skipped)
            } else if c.skipped >= c.total {
                Run
            } else {
                Wait
            }
        }
        OneSuccess => {
            if c.success > 0 {
                Run
            } else if all_done {
                if c.skipped >= c.total {
                    Mark(TaskState::Skipped)
                } else {
                    Mark(TaskState::UpstreamFailed)
                }
            } else {
                Wait
            }
        }
        OneFailed => {
            if failed_any > 0 {
                Run
            } else if all_done {
                Mark(TaskState::Skipped)
            } else {
                Wait
            }
        }
        OneDone => {
            if c.success + c.failed > 0 {
                Run
            } else if all_done {
                Mark(TaskState::Skipped)
            } else {
                Wait
            }
        }
        NoneFailed => {
            if failed_any > 0 {
                Mark(TaskState::UpstreamFailed)
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        NoneFailedMinOneSuccess => {
            if failed_any > 0 {
                Mark(TaskState::UpstreamFailed)
            } else if all_done {
                if c.success > 0 {
                    Run
                } else {
                    Mark(TaskState::Skipped)
                }
            } else {
                Wait
            }
        }
        NoneSkipped => {
            if c.skipped > 0 {
                Mark(TaskState::Skipped)
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// It succeeded.
    Success,
    /// It failed; `retryable: false` fails the task at once (Airflow's `AirflowFailException`,
    /// or a cancelled run).
    Failed {
        /// Whether retries apply.
        retryable: bool,
    },
    /// The task skipped itself.
    Skipped,
}

/// What the scheduler decided after an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    /// The task reached a final state.
    Finished(TaskState),
    /// The task is `up_for_retry`; call [`Scheduler::retry_due`] after `delay`.
    Retry {
        /// Time to wait.
        delay: Duration,
    },
}

/// What [`Scheduler::resume`] decided for a task recorded by an earlier process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// The task had finished in this state; nothing runs.
    Finished(TaskState),
    /// The task is `up_for_retry`; its next try is due `delay` after its last try ended.
    Retry {
        /// The retry delay after the recorded try.
        delay: Duration,
    },
    /// Run the task (try [`Scheduler::try_number`]), finding a submission that try already made.
    Continue,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    state: TaskState,
    try_number: u32,
    counts: UpstreamCounts,
}

/// Decides, for one DAG run, what runs next. Pure: driven by calls, no clock, no I/O.
///
/// ```
/// use std::sync::Arc;
/// use bpg_pipeline::{Dag, Task, TaskState};
/// use bpg_pipeline::scheduler::{AttemptOutcome, Graph, Scheduler};
///
/// let dag = Dag::builder("d")
///     .task(Task::empty("a"))
///     .task(Task::empty("b").depends_on(["a"]))
///     .build().unwrap();
/// let mut s = Scheduler::new(Arc::new(Graph::new(&dag)), "run-1");
/// let a = s.pop_ready().unwrap();
/// assert!(s.pop_ready().is_none());
/// s.attempt_finished(a, AttemptOutcome::Success);
/// let b = s.pop_ready().unwrap();
/// s.attempt_finished(b, AttemptOutcome::Success);
/// assert_eq!(s.state(b), TaskState::Success);
/// assert!(s.is_finished());
/// ```
#[derive(Debug)]
pub struct Scheduler {
    graph: Arc<Graph>,
    slots: Vec<Slot>,
    ready: VecDeque<TaskIndex>,
    unfinished: usize,
    changes: Vec<(TaskIndex, TaskState)>,
    jitter_seed: String,
    leaf_failed: bool,
}

impl Scheduler {
    /// A fresh run: tasks without upstreams (and `always` tasks) are ready. `jitter_seed` makes
    /// backoff jitter differ between runs but not between processes: a task's jitter key is
    /// `{dag_id}#{task_id}#{jitter_seed}`, and [`crate::Runner`] uses the logical date in RFC 3339.
    pub fn new(graph: Arc<Graph>, jitter_seed: impl Into<String>) -> Self {
        let n = graph.len();
        let mut slots = vec![Slot::default(); n];
        let mut ready = VecDeque::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.counts.total = graph.upstream_count[i];
            if slot.counts.total == 0 || graph.trigger_rule(i) == TriggerRule::Always {
                slot.state = TaskState::Scheduled;
                ready.push_back(i);
            }
        }
        let changes = ready.iter().map(|&i| (i, TaskState::Scheduled)).collect();
        Scheduler {
            graph,
            slots,
            ready,
            unfinished: n,
            changes,
            jitter_seed: jitter_seed.into(),
            leaf_failed: false,
        }
    }

    /// The compiled DAG.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Task `i`'s state.
    pub fn state(&self, i: TaskIndex) -> TaskState {
        self.slots[i].state
    }

    /// Attempts started for task `i` (Airflow 3's `try_number`).
    pub fn try_number(&self, i: TaskIndex) -> u32 {
        self.slots[i].try_number
    }

    /// Task `i`'s upstream outcomes so far.
    pub fn upstream_counts(&self, i: TaskIndex) -> UpstreamCounts {
        self.slots[i].counts
    }

    /// Number of tasks waiting for a slot.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the next ready task: it becomes `queued` and its try number goes up by one.
    pub fn pop_ready(&mut self) -> Option<TaskIndex> {
        let i = self.ready.pop_front()?;
        let slot = &mut self.slots[i];
        slot.state = TaskState::Queued;
        slot.try_number += 1;
        self.changes.push((i, TaskState::Queued));
        Some(i)
    }

    /// The executor started task `i`'s attempt (it got its slots).
    pub fn attempt_started(&mut self, i: TaskIndex) {
        if self.slots[i].state == TaskState::Queued {
            self.slots[i].state = TaskState::Running;
            self.changes.push((i, TaskState::Running));
        }
    }

    /// Task `i`'s attempt ended. Failed attempts with retries left become `up_for_retry`;
    /// anything final is propagated to downstreams at once (eager marking).
    pub fn attempt_finished(&mut self, i: TaskIndex, outcome: AttemptOutcome) -> AfterAttempt {
        let state = match outcome {
            AttemptOutcome::Success => TaskState::Success,
            AttemptOutcome::Skipped => TaskState::Skipped,
            AttemptOutcome::Failed { retryable } => {
                let policy = &self.graph.settings[i].retry;
                let tries = self.slots[i].try_number;
                if retryable && tries <= policy.retries {
                    let key = format!(
                        "{}#{}#{}",
                        self.graph.dag_id, self.graph.ids[i], self.jitter_seed
                    );
                    let delay = retry_delay(policy, tries, &key);
                    self.slots[i].state = TaskState::UpForRetry;
                    self.changes.push((i, TaskState::UpForRetry));
                    return AfterAttempt::Retry { delay };
                }
                TaskState::Failed
            }
        };
        self.finish(i, state);
        AfterAttempt::Finished(state)
    }

    /// Resuming a run an earlier process recorded: task `i`, just taken with
    /// [`Scheduler::pop_ready`], had reached `stored` on try `try_number`. Finished states are
    /// taken as they are (and propagated to downstreams); `up_for_retry` keeps its retry
    /// schedule; `queued` and `running` continue the same try (a submission it made is found
    /// again, never repeated); anything else starts the next try. The `queued` change
    /// `pop_ready` made is withdrawn, so the store keeps the recorded timestamps.
    pub fn resume(&mut self, i: TaskIndex, stored: TaskState, try_number: u32) -> Resumed {
        if self.changes.last() == Some(&(i, TaskState::Queued)) {
            self.changes.pop();
        }
        let slot = &mut self.slots[i];
        match stored {
            s if s.is_finished() => {
                slot.try_number = try_number;
                self.finish(i, s);
                Resumed::Finished(s)
            }
            TaskState::UpForRetry => {
                slot.try_number = try_number;
                slot.state = TaskState::UpForRetry;
                let key = format!(
                    "{}#{}#{}",
                    self.graph.dag_id, self.graph.ids[i], self.jitter_seed
                );
                Resumed::Retry {
                    delay: retry_delay(&self.graph.settings[i].retry, try_number, &key),
                }
            }
            TaskState::Queued | TaskState::Running if try_number > 0 => {
                slot.try_number = try_number;
                Resumed::Continue
            }
            _ => {
                slot.try_number = try_number + 1;
                self.changes.push((i, TaskState::Queued));
                Resumed::Continue
            }
        }
    }

    /// Task `i`, taken with [`Scheduler::pop_ready`], may not run in this run (its
    /// `depends_on_past` is not met): it goes back to `none` without a try, and the run cannot
    /// finish successfully.
    pub fn block(&mut self, i: TaskIndex) {
        let slot = &mut self.slots[i];
        if slot.state == TaskState::Queued {
            slot.state = TaskState::None;
            slot.try_number = slot.try_number.saturating_sub(1);
            self.changes.push((i, TaskState::None));
        }
    }

    /// Task `i`'s retry delay passed: it is ready again.
    pub fn retry_due(&mut self, i: TaskIndex) {
        if self.slots[i].state == TaskState::UpForRetry {
            self.slots[i].state = TaskState::Scheduled;
            self.ready.push_back(i);
            self.changes.push((i, TaskState::Scheduled));
        }
    }

    /// State changes since the last call, in order (a task may appear more than once).
    pub fn take_changes(&mut self) -> Vec<(TaskIndex, TaskState)> {
        std::mem::take(&mut self.changes)
    }

    /// Like [`Scheduler::take_changes`], reusing `into`'s allocation.
    pub fn drain_changes_into(&mut self, into: &mut Vec<(TaskIndex, TaskState)>) {
        into.clear();
        std::mem::swap(into, &mut self.changes);
    }

    /// True when every task is in a final state.
    pub fn is_finished(&self) -> bool {
        self.unfinished == 0
    }

    /// The run's state (Airflow 3): `failed` as soon as a leaf failed or is upstream_failed,
    /// `success` once every task finished otherwise, else `running`.
    pub fn run_state(&self) -> RunState {
        if self.leaf_failed && self.unfinished == 0 {
            RunState::Failed
        } else if self.unfinished == 0 {
            RunState::Success
        } else {
            RunState::Running
        }
    }

    /// True once some leaf task failed or is upstream_failed (the run will fail).
    pub fn has_failed_leaf(&self) -> bool {
        self.leaf_failed
    }

    fn finish(&mut self, i: TaskIndex, state: TaskState) {
        let mut work = vec![(i, state)];
        while let Some((t, state)) = work.pop() {
            self.slots[t].state = state;
            self.unfinished -= 1;
            self.changes.push((t, state));
            if self.graph.is_leaf(t)
                && matches!(state, TaskState::Failed | TaskState::UpstreamFailed)
            {
                self.leaf_failed = true;
            }
            let graph = Arc::clone(&self.graph);
            for d in graph.downstream(t) {
                let slot = &mut self.slots[d];
                if slot.state != TaskState::None {
                    continue;
                }
                slot.counts.record(state);
                match evaluate(graph.trigger_rule(d), &slot.counts) {
                    Verdict::Wait => {}
                    Verdict::Run => {
                        slot.state = TaskState::Scheduled;
                        self.ready.push_back(d);
                        self.changes.push((d, TaskState::Scheduled));
                    }
                    Verdict::Mark(marked) => {
                        // Set now so a second upstream finishing in this loop does not mark it twice.
                        slot.state = marked;
                        work.push((d, marked));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::Task;
    use TaskState::{Failed as F, Skipped as K, Success as S, UpstreamFailed as U};

    fn counts(total: u32, outcomes: &[TaskState]) -> UpstreamCounts {
        let mut c = UpstreamCounts {
            total,
            ..Default::default()
        };
        for &o in outcomes {
            c.record(o);
        }
        c
    }

    const RUN: Verdict = Verdict::Run;
    const WAIT: Verdict = Verdict::Wait;
    const SKIP: Verdict = Verdict::Mark(TaskState::Skipped);
    const UPF: Verdict = Verdict::Mark(TaskState::UpstreamFailed);

    /// Every rule against every mix of three upstream outcomes that matters: all done with each
    /// combination, and partially done (one upstream still running).
    #[test]
    fn trigger_rule_table() {
        use TriggerRule::*;
        // (finished upstream outcomes out of 3, then the verdict for each rule in TriggerRule::ALL order:
        //  all_success, all_failed, all_done, all_done_min_one_success, all_skipped, one_success,
        //  one_failed, one_done, none_failed, none_failed_min_one_success, none_skipped, always)
        #[rustfmt::skip]
        let table: Vec<(&[TaskState], [Verdict; 12])> = vec![
            (&[],        [WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, RUN]),
            (&[S],       [WAIT, SKIP, WAIT, WAIT, SKIP, RUN,  WAIT, RUN,  WAIT, WAIT, WAIT, RUN]),
            (&[F],       [UPF,  WAIT, WAIT, WAIT, SKIP, WAIT, RUN,  RUN,  UPF,  UPF,  WAIT, RUN]),
            (&[U],       [UPF,  WAIT, WAIT, WAIT, SKIP, WAIT, RUN,  WAIT, UPF,  UPF,  WAIT, RUN]),
            (&[K],       [SKIP, SKIP, WAIT, SKIP, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, SKIP, RUN]),
            (&[S, S],    [WAIT, SKIP, WAIT, WAIT, SKIP, RUN,  WAIT, RUN,  WAIT, WAIT, WAIT, RUN]),
            (&[S, S, S], [RUN,  SKIP, RUN,  RUN,  SKIP, RUN,  SKIP, RUN,  RUN,  RUN,  RUN,  RUN]),
            (&[F, F, F], [UPF,  RUN,  RUN,  UPF,  SKIP, UPF,  RUN,  RUN,  UPF,  UPF,  RUN,  RUN]),
            (&[U, U, U], [UPF,  RUN,  RUN,  UPF,  SKIP, UPF,  RUN,  SKIP, UPF,  UPF,  RUN,  RUN]),
            (&[F, U, U], [UPF,  RUN,  RUN,  UPF,  SKIP, UPF,  RUN,  RUN,  UPF,  UPF,  RUN,  RUN]),
            (&[K, K, K], [SKIP, SKIP, RUN,  SKIP, RUN,  SKIP, SKIP, SKIP, RUN,  SKIP, SKIP, RUN]),
            (&[S, F, F], [UPF,  SKIP, RUN,  RUN,  SKIP, RUN,  RUN,  RUN,  UPF,  UPF,  RUN,  RUN]),
            (&[S, S, F], [UPF,  SKIP, RUN,  RUN,  SKIP, RUN,  RUN,  RUN,  UPF,  UPF,  RUN,  RUN]),
            (&[S, K, K], [SKIP, SKIP, RUN,  SKIP, SKIP, RUN,  SKIP, RUN,  RUN,  RUN,  SKIP, RUN]),
            (&[S, S, K], [SKIP, SKIP, RUN,  SKIP, SKIP, RUN,  SKIP, RUN,  RUN,  RUN,  SKIP, RUN]),
            (&[F, K, K], [UPF,  SKIP, RUN,  SKIP, SKIP, UPF,  RUN,  RUN,  UPF,  UPF,  SKIP, RUN]),
            (&[U, K, K], [UPF,  SKIP, RUN,  SKIP, SKIP, UPF,  RUN,  SKIP, UPF,  UPF,  SKIP, RUN]),
            (&[S, F, K], [UPF,  SKIP, RUN,  SKIP, SKIP, RUN,  RUN,  RUN,  UPF,  UPF,  SKIP, RUN]),
            (&[S, U, U], [UPF,  SKIP, RUN,  RUN,  SKIP, RUN,  RUN,  RUN,  UPF,  UPF,  RUN,  RUN]),
            (&[F, K],    [UPF,  SKIP, WAIT, SKIP, SKIP, WAIT, RUN,  RUN,  UPF,  UPF,  SKIP, RUN]),
            (&[K, K],    [SKIP, SKIP, WAIT, SKIP, WAIT, WAIT, WAIT, WAIT, WAIT, WAIT, SKIP, RUN]),
        ];
        let rules = [
            AllSuccess,
            AllFailed,
            AllDone,
            AllDoneMinOneSuccess,
            AllSkipped,
            OneSuccess,
            OneFailed,
            OneDone,
            NoneFailed,
            NoneFailedMinOneSuccess,
            NoneSkipped,
            Always,
        ];
        assert_eq!(rules, TriggerRule::ALL);
        for (outcomes, expected) in &table {
            let c = counts(3, outcomes);
            for (rule, want) in rules.iter().zip(expected) {
                assert_eq!(
                    evaluate(*rule, &c),
                    *want,
                    "rule {rule} with upstream outcomes {outcomes:?} of 3"
                );
            }
        }
    }

    #[test]
    fn no_upstream_always_runs() {
        for rule in TriggerRule::ALL {
            assert_eq!(evaluate(rule, &counts(0, &[])), Verdict::Run, "{rule}");
        }
    }

    fn scheduler(dag: &Dag) -> Scheduler {
        Scheduler::new(Arc::new(Graph::new(dag)), "seed")
    }

    /// Runs the DAG to the end with `outcome` per task id; returns final states by id.
    fn run_all(
        dag: &Dag,
        outcome: impl Fn(&str) -> AttemptOutcome,
    ) -> (Scheduler, Vec<(String, TaskState)>) {
        let mut s = scheduler(dag);
        while let Some(i) = s.pop_ready() {
            s.attempt_started(i);
            let id = s.graph().id(i).to_string();
            if let AfterAttempt::Retry { .. } = s.attempt_finished(i, outcome(&id)) {
                s.retry_due(i);
            }
        }
        let states = dag
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), s.state(i)))
            .collect();
        (s, states)
    }

    fn seed(rule_for_end: TriggerRule) -> Dag {
        Dag::builder("seed")
            .task(Task::empty("start"))
            .task(Task::empty("calculate_pi").depends_on(["start"]))
            .task(Task::empty("word_count").depends_on(["start"]))
            .task(Task::empty("statistics_calc").depends_on(["calculate_pi", "word_count"]))
            .task(
                Task::empty("end")
                    .depends_on(["statistics_calc"])
                    .trigger_rule(rule_for_end),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn failure_marks_downstream_upstream_failed_and_fails_run() {
        let dag = seed(TriggerRule::AllSuccess);
        let (s, states) = run_all(&dag, |id| {
            if id == "word_count" {
                AttemptOutcome::Failed { retryable: true }
            } else {
                AttemptOutcome::Success
            }
        });
        let expect = [
            ("start", S),
            ("calculate_pi", S),
            ("word_count", F),
            ("statistics_calc", U),
            ("end", U),
        ];
        for ((id, st), (eid, est)) in states.iter().zip(expect) {
            assert_eq!((id.as_str(), *st), (eid, est));
        }
        assert_eq!(s.run_state(), RunState::Failed);
        assert_eq!(
            s.try_number(dag.tasks.iter().position(|t| t.id == "end").unwrap()),
            0
        );
    }

    #[test]
    fn failure_absorbed_by_all_done_leaf_gives_success() {
        let dag = seed(TriggerRule::AllDone);
        let (s, states) = run_all(&dag, |id| {
            if id == "word_count" {
                AttemptOutcome::Failed { retryable: false }
            } else {
                AttemptOutcome::Success
            }
        });
        assert_eq!(states[4], ("end".to_string(), S));
        assert_eq!(s.run_state(), RunState::Success);
    }

    #[test]
    fn eager_marking_does_not_wait_for_slow_siblings() {
        let dag = seed(TriggerRule::AllSuccess);
        let mut s = scheduler(&dag);
        let start = s.pop_ready().unwrap();
        s.attempt_finished(start, AttemptOutcome::Success);
        let pi = s.pop_ready().unwrap();
        let wc = s.pop_ready().unwrap();
        assert_eq!(s.graph().id(wc).as_ref(), "word_count");
        s.attempt_started(pi);
        s.attempt_finished(wc, AttemptOutcome::Failed { retryable: false });
        // calculate_pi is still running, but statistics_calc and end are already decided.
        assert_eq!(s.state(3), U);
        assert_eq!(s.state(4), U);
        assert!(s.has_failed_leaf());
        assert_eq!(s.run_state(), RunState::Running);
        s.attempt_finished(pi, AttemptOutcome::Success);
        assert_eq!(s.run_state(), RunState::Failed);
    }

    #[test]
    fn retries_then_fail_counts_tries() {
        let dag = Dag::builder("r")
            .task(
                Task::empty("t")
                    .retries(2)
                    .retry_delay(Duration::from_secs(7)),
            )
            .build()
            .unwrap();
        let mut s = scheduler(&dag);
        let mut delays = Vec::new();
        while let Some(i) = s.pop_ready() {
            match s.attempt_finished(i, AttemptOutcome::Failed { retryable: true }) {
                AfterAttempt::Retry { delay } => {
                    assert_eq!(s.state(i), TaskState::UpForRetry);
                    delays.push(delay);
                    s.retry_due(i);
                }
                AfterAttempt::Finished(st) => assert_eq!(st, F),
            }
        }
        assert_eq!(delays, vec![Duration::from_secs(7); 2]);
        assert_eq!(s.try_number(0), 3);
        assert_eq!(s.run_state(), RunState::Failed);
    }

    #[test]
    fn skip_propagates_through_all_success_and_one_failed_sees_failure() {
        let dag = Dag::builder("k")
            .task(Task::empty("a"))
            .task(Task::empty("b").depends_on(["a"]))
            .task(Task::empty("c").depends_on(["b"]))
            .task(
                Task::empty("alert")
                    .depends_on(["a"])
                    .trigger_rule(TriggerRule::OneFailed),
            )
            .build()
            .unwrap();
        let (s, states) = run_all(&dag, |id| {
            if id == "a" {
                AttemptOutcome::Skipped
            } else {
                AttemptOutcome::Success
            }
        });
        assert!(states.iter().all(|(_, st)| *st == K), "{states:?}");
        assert_eq!(s.run_state(), RunState::Success);
    }

    #[test]
    fn graph_soundness_catches_dags_changed_after_validation() {
        let mut dag = seed(TriggerRule::AllSuccess);
        assert!(Graph::new(&dag).is_sound());
        dag.tasks[0].depends_on.push("end".into());
        assert!(!Graph::new(&dag).is_sound(), "cycle");
        dag.tasks[0].depends_on = vec!["ghost".into()];
        assert!(!Graph::new(&dag).is_sound(), "unknown dependency");
        dag.tasks[0].depends_on.clear();
        dag.tasks[1].id = "start".into();
        assert!(!Graph::new(&dag).is_sound(), "duplicate id");
    }

    #[test]
    fn chain_of_100k_is_linear() {
        let mut b = Dag::builder("chain").task(Task::empty("t0"));
        for i in 1..100_000 {
            b = b.task(Task::empty(format!("t{i}")).depends_on([format!("t{}", i - 1)]));
        }
        let dag = b.build().unwrap();
        let (s, _) = run_all(&dag, |_| AttemptOutcome::Success);
        assert_eq!(s.run_state(), RunState::Success);
    }
}
