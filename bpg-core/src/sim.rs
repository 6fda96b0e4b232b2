//! `SimBackend`: simulated Spark clusters in memory, scripted per job, deterministic under tokio's paused clock.
//!
//! Each job's behaviour comes from its labels (DESIGN.md §8), falling back to the backend's defaults:
//!
//! | label | meaning | default |
//! |---|---|---|
//! | `sim/duration` | time `Running` (`1500ms`, `2s`, `1m`) | `1s` |
//! | `sim/outcome` | `succeeded` or `failed` | `succeeded` |
//! | `sim/fail-attempts` | fail the first N attempts of the task, then succeed | `0` |
//! | `sim/log-lines` | synthetic driver log lines, spread over the run | `0` |
//! | `sim/queue-delay` | time `Submitted` before `Running` | `0s` |
//! | `sim/message` | failure message of a failed attempt | `simulated failure` |
//!
//! Attempts are counted per task: the idempotency key with its last `/segment` removed (keys from
//! [`IdempotencyKey::for_task`] end in the try number), or the job name when there is no key.
//! With a capacity, at most that many jobs run at once and the rest wait `Submitted`, in order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::Instant;

use crate::backend::{
    Backend, Capabilities, IdempotencyKey, JobId, LogLine, LogOptions, LogStream, Submission,
    SubmitOptions,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::{Error, Result};
use crate::job::SparkJob;
use crate::state::{JobState, JobStatus};

/// How a simulated attempt ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimOutcome {
    /// The driver exits 0.
    Succeeded,
    /// The driver fails.
    Failed,
}

/// The scripted behaviour of one simulated job.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// use bpg_core::{SimOutcome, SimScript};
/// let labels = BTreeMap::from([
///     ("sim/duration".to_string(), "1500ms".to_string()),
///     ("sim/fail-attempts".to_string(), "1".to_string()),
/// ]);
/// let script = SimScript::from_labels(&labels, &SimScript::default()).unwrap();
/// assert_eq!(script.duration, Duration::from_millis(1500));
/// assert_eq!(script.outcome_for_attempt(1), SimOutcome::Failed);
/// assert_eq!(script.outcome_for_attempt(2), SimOutcome::Succeeded);
/// assert_eq!(script.native_state_at(Duration::from_secs(1), 2), "RUNNING");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimScript {
    /// Time spent `Running`.
    pub duration: Duration,
    /// Time spent `Submitted` before a slot is taken.
    pub queue_delay: Duration,
    /// Outcome once the failing attempts are used up.
    pub outcome: SimOutcome,
    /// The first N attempts fail.
    pub fail_attempts: u32,
    /// Synthetic driver log lines per attempt.
    pub log_lines: u32,
    /// Message of a failed attempt.
    pub failure_message: String,
}

impl Default for SimScript {
    fn default() -> Self {
        SimScript {
            duration: Duration::from_secs(1),
            queue_delay: Duration::ZERO,
            outcome: SimOutcome::Succeeded,
            fail_attempts: 0,
            log_lines: 0,
            failure_message: "simulated failure".to_owned(),
        }
    }
}

const MAX_LOG_LINES: u32 = 1_000_000;

impl SimScript {
    /// Reads `sim/*` labels over `defaults`. Unknown `sim/` labels and bad values are errors naming the label.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: &SimScript,
    ) -> Result<SimScript, Diagnostics> {
        let mut script = defaults.clone();
        let mut problems = Diagnostics::new();
        for (key, value) in labels {
            if let Some(setting) = key.strip_prefix("sim/")
                && let Err(d) = script.apply(setting, value)
            {
                problems.push(Diagnostic::error(format!("labels.{key}"), d));
            }
        }
        if problems.has_errors() {
            Err(problems)
        } else {
            Ok(script)
        }
    }

    /// Reads a `sim://` URL query such as `duration=2s&outcome=failed` over the default script.
    pub fn from_query(query: &str) -> Result<SimScript, Diagnostics> {
        let mut script = SimScript::default();
        let mut problems = Diagnostics::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Err(d) = script.apply(key, value) {
                problems.push(Diagnostic::error(format!("sim://?{key}"), d));
            }
        }
        if problems.has_errors() {
            Err(problems)
        } else {
            Ok(script)
        }
    }

    fn apply(&mut self, setting: &str, value: &str) -> Result<(), String> {
        let duration = |v: &str| {
            humantime::parse_duration(v.trim()).map_err(|e| {
                format!("expected a duration such as \"1500ms\" or \"2s\", got {v:?} ({e})")
            })
        };
        let count = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("expected a whole number, got {v:?}"))
        };
        match setting {
            "duration" => self.duration = duration(value)?,
            "queue-delay" => self.queue_delay = duration(value)?,
            "outcome" => {
                self.outcome = match value.trim() {
                    "succeeded" => SimOutcome::Succeeded,
                    "failed" => SimOutcome::Failed,
                    other => {
                        return Err(format!(
                            "expected \"succeeded\" or \"failed\", got {other:?}"
                        ));
                    }
                }
            }
            "fail-attempts" => self.fail_attempts = count(value)?,
            "log-lines" => {
                let n = count(value)?;
                if n > MAX_LOG_LINES {
                    return Err(format!("at most {MAX_LOG_LINES} log lines, got {n}"));
                }
                self.log_lines = n;
            }
            "message" => self.failure_message = value.to_owned(),
            other => {
                return Err(format!(
                    "unknown simulation setting {other:?} (expected duration, outcome, fail-attempts, log-lines, queue-delay or message)"
                ));
            }
        }
        Ok(())
    }

    /// The outcome of the 1-based `attempt`.
    pub fn outcome_for_attempt(&self, attempt: u32) -> SimOutcome {
        if attempt <= self.fail_attempts {
            SimOutcome::Failed
        } else {
            self.outcome
        }
    }

    /// The spark-operator state string at `elapsed` since submission, without capacity limits:
    /// `SUBMITTED`, `RUNNING`, then `COMPLETED` or `FAILED`.
    pub fn native_state_at(&self, elapsed: Duration, attempt: u32) -> &'static str {
        if elapsed < self.queue_delay {
            "SUBMITTED"
        } else if elapsed < self.queue_delay + self.duration {
            "RUNNING"
        } else {
            match self.outcome_for_attempt(attempt) {
                SimOutcome::Succeeded => "COMPLETED",
                SimOutcome::Failed => "FAILED",
            }
        }
    }

    /// The text of synthetic log line `i` (0-based).
    pub fn log_line(&self, i: u32) -> String {
        format!(
            "INFO SparkContext: simulated stage {}/{} done",
            i + 1,
            self.log_lines
        )
    }

    /// When log line `i` is written, counted from the start of `Running`: lines are spread evenly
    /// over the run, the last one just before it ends.
    pub fn log_line_offset(&self, i: u32) -> Duration {
        self.duration
            .mul_f64(f64::from(i + 1) / f64::from(self.log_lines + 1))
    }
}

/// Builds a [`SimBackend`].
#[derive(Clone, Debug)]
pub struct SimBackendBuilder {
    name: String,
    script: SimScript,
    capacity: Option<usize>,
}

impl SimBackendBuilder {
    /// Sets the backend name (default `sim`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the behaviour of jobs that carry no `sim/*` labels.
    pub fn default_script(mut self, script: SimScript) -> Self {
        self.script = script;
        self
    }

    /// At most `capacity` jobs run at once; the others wait `Submitted` in submission order.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// Applies a `sim://` URL query: script settings plus `capacity=N`.
    ///
    /// ```
    /// let sim = bpg_core::SimBackend::builder().query("duration=2s&capacity=4").unwrap().build();
    /// # let _ = sim;
    /// ```
    pub fn query(mut self, query: &str) -> Result<Self, Diagnostics> {
        let mut script_pairs = Vec::new();
        let mut problems = Diagnostics::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("capacity", v)) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => self.capacity = Some(n),
                    _ => problems.push(Diagnostic::error(
                        "sim://?capacity",
                        format!("expected a positive whole number, got {v:?}"),
                    )),
                },
                _ => script_pairs.push(pair),
            }
        }
        match SimScript::from_query(&script_pairs.join("&")) {
            Ok(script) => self.script = script,
            Err(d) => problems.0.extend(d),
        }
        if problems.has_errors() {
            Err(problems)
        } else {
            Ok(self)
        }
    }

    /// The backend.
    pub fn build(self) -> SimBackend {
        SimBackend {
            inner: Arc::new(Inner {
                name: self.name,
                script: Arc::new(self.script),
                capacity: self.capacity,
                state: Mutex::new(SimState::default()),
            }),
        }
    }
}

/// In-memory simulated Spark clusters; see the module docs for scripting.
///
/// Cheap to clone: clones share the same jobs.
///
/// ```
/// use bpg_core::{AppType, Backend, BackendExt, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions, IdempotencyKey};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> bpg_core::Result<()> {
/// let sim = SimBackend::new();
/// let job = SparkJob::new("etl", AppType::Scala, "3.5", "local:///etl.jar").with_label("sim/outcome", "failed");
/// let key = IdempotencyKey::for_task("dag", "run", "etl", 1);
/// let first = sim.submit(&job, &SubmitOptions::new().with_idempotency_key(key.clone())).await?;
/// let again = sim.submit(&job, &SubmitOptions::new().with_idempotency_key(key)).await?;
/// assert_eq!(first.id, again.id);
/// assert_eq!(sim.accepted_count(), 1);
/// let status = sim.wait_for_terminal(&first.id, &WaitOptions::default()).await?;
/// assert_eq!(status.state, JobState::Failed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SimBackend {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    script: Arc<SimScript>,
    capacity: Option<usize>,
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    /// Every job, indexed by its sequence number (the number at the end of its id).
    jobs: Vec<SimJob>,
    by_key: HashMap<IdempotencyKey, usize>,
    attempts: HashMap<String, u32>,
    cancel_requests: Vec<JobId>,
    /// Jobs waiting for a slot, by (eligible time, sequence number).
    waiting: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Running jobs, by (finish time, sequence number).
    running: BinaryHeap<Reverse<(Instant, usize)>>,
    running_count: usize,
}

struct SimJob {
    submission: Submission,
    /// Shared with the backend's default when the job has no `sim/*` labels.
    script: Arc<SimScript>,
    attempt: u32,
    eligible_at: Instant,
    started_at: Option<Instant>,
    ended: Option<(Instant, JobState)>,
}

impl SimJob {
    fn status(&self) -> JobStatus {
        let (state, native) = match (self.started_at, self.ended) {
            (_, Some((_, JobState::Cancelled))) => (JobState::Cancelled, "CANCELLED"),
            (_, Some((_, JobState::Succeeded))) => (JobState::Succeeded, "COMPLETED"),
            (_, Some((_, _))) => (JobState::Failed, "FAILED"),
            (Some(_), None) => (JobState::Running, "RUNNING"),
            (None, None) => (JobState::Submitted, "SUBMITTED"),
        };
        let mut status = JobStatus::new(state, native);
        status.attempts = Some(self.attempt);
        if self.started_at.is_some() {
            status.spark_application_id = Some(format!("spark-{}", self.submission.id));
        }
        if state == JobState::Failed {
            status.message = Some(self.script.failure_message.clone());
        }
        status
    }

    /// Log lines written by `now`.
    fn lines_written(&self, now: Instant) -> Vec<String> {
        let Some(started) = self.started_at else {
            return Vec::new();
        };
        let until = self.ended.map_or(now, |(t, _)| t.min(now));
        let mut lines: Vec<String> = (0..self.script.log_lines)
            .take_while(|&i| started + self.script.log_line_offset(i) <= until)
            .map(|i| self.script.log_line(i))
            .collect();
        if let Some((t, JobState::Failed)) = self.ended
            && t <= now
        {
            lines.push(format!(
                "ERROR simulated driver: {}",
                self.script.failure_message
            ));
        }
        lines
    }

    /// The next moment this job's status or log can change, if it is known.
    fn next_change(&self, now: Instant) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        match self.started_at {
            None => Some(self.eligible_at.max(now)),
            Some(started) => {
                let next_line = (0..self.script.log_lines)
                    .map(|i| started + self.script.log_line_offset(i))
                    .find(|&t| t > now);
                let end = started + self.script.duration;
                Some(next_line.map_or(end, |t| t.min(end)))
            }
        }
    }
}

impl SimState {
    /// Plays the simulated clusters forward to `now`: starts waiting jobs as slots free up and
    /// finishes running ones, in time order.
    fn advance(&mut self, now: Instant, capacity: Option<usize>) {
        let mut cursor: Option<Instant> = None;
        loop {
            let finish = self
                .running
                .peek()
                .map(|Reverse((t, _))| *t)
                .filter(|t| *t <= now);
            let slot_free = capacity.is_none_or(|c| self.running_count < c);
            let start = if slot_free {
                self.waiting
                    .peek()
                    .map(|Reverse((t, _))| cursor.map_or(*t, |c| (*t).max(c)))
                    .filter(|t| *t <= now)
            } else {
                None
            };
            match (start, finish) {
                (Some(s), f) if f.is_none_or(|f| s < f) => {
                    let Some(Reverse((_, seq))) = self.waiting.pop() else {
                        break;
                    };
                    cursor = Some(s);
                    self.start_job(seq, s);
                }
                (_, Some(f)) => {
                    let Some(Reverse((_, seq))) = self.running.pop() else {
                        break;
                    };
                    cursor = Some(f);
                    self.finish_job(seq, f);
                }
                _ => break,
            }
        }
    }

    fn start_job(&mut self, seq: usize, at: Instant) {
        let Some(job) = self.jobs.get_mut(seq) else {
            return;
        };
        if job.ended.is_some() {
            return; // cancelled while waiting
        }
        job.started_at = Some(at);
        self.running.push(Reverse((at + job.script.duration, seq)));
        self.running_count += 1;
    }

    fn finish_job(&mut self, seq: usize, at: Instant) {
        let Some(job) = self.jobs.get_mut(seq) else {
            return;
        };
        if job.ended.is_some() {
            return; // cancelled while running; its slot was freed then
        }
        let state = match job.script.outcome_for_attempt(job.attempt) {
            SimOutcome::Succeeded => JobState::Succeeded,
            SimOutcome::Failed => JobState::Failed,
        };
        job.ended = Some((at, state));
        self.running_count -= 1;
    }

    /// The job with this id: ids end in the job's sequence number.
    fn job(&self, id: &JobId) -> Option<&SimJob> {
        let seq = Self::seq_of(id)?;
        self.jobs.get(seq).filter(|job| job.submission.id == *id)
    }

    fn job_mut(&mut self, id: &JobId) -> Option<&mut SimJob> {
        let seq = Self::seq_of(id)?;
        self.jobs
            .get_mut(seq)
            .filter(|job| job.submission.id == *id)
    }

    fn seq_of(id: &JobId) -> Option<usize> {
        id.as_str().rsplit_once('-')?.1.parse().ok()
    }

    /// The earliest moment anything in the simulation changes (for jobs blocked on capacity).
    fn next_global_change(&self) -> Option<Instant> {
        self.running.peek().map(|Reverse((t, _))| *t)
    }
}

impl SimBackend {
    /// One simulated cluster named `sim`, unlimited capacity, default script (1 s, succeeds).
    pub fn new() -> Self {
        SimBackend::builder().build()
    }

    /// A builder for name, default script and capacity.
    pub fn builder() -> SimBackendBuilder {
        SimBackendBuilder {
            name: "sim".to_owned(),
            script: SimScript::default(),
            capacity: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the simulation half-updated in a way that
        // matters more than losing it, so recover the guard instead of poisoning every caller.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Distinct Spark applications created (idempotent resubmits are not counted).
    pub fn accepted_count(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Every job `cancel` was called for, in call order.
    pub fn cancel_requests(&self) -> Vec<JobId> {
        self.lock().cancel_requests.clone()
    }

    /// Every submission, in the order they were accepted.
    pub fn submissions(&self) -> Vec<Submission> {
        let state = self.lock();
        state
            .jobs
            .iter()
            .map(|job| job.submission.clone())
            .collect()
    }

    /// Jobs currently running (after playing the clock forward to now).
    pub fn running_count(&self) -> usize {
        let mut state = self.lock();
        state.advance(Instant::now(), self.inner.capacity);
        state.running_count
    }

    fn attempt_identity(job: &SparkJob, key: Option<&IdempotencyKey>) -> String {
        match key.and_then(|k| k.as_str().rsplit_once('/')) {
            Some((task, _try)) => task.to_owned(),
            None => format!("name:{}", job.name),
        }
    }
}

impl Default for SimBackend {
    fn default() -> Self {
        SimBackend::new()
    }
}

impl fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBackend")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for SimBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        // Labels sort, so the `sim/` ones are one range; most jobs have none and share the default.
        let script = if job
            .labels
            .range::<str, _>((Bound::Included("sim/"), Bound::Excluded("sim0")))
            .next()
            .is_some()
        {
            Arc::new(SimScript::from_labels(&job.labels, &self.inner.script)?)
        } else {
            Arc::clone(&self.inner.script)
        };
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(&seq) = options
            .idempotency_key
            .as_ref()
            .and_then(|k| state.by_key.get(k))
        {
            return Ok(state.jobs[seq].submission.clone());
        }
        let seq = state.jobs.len();
        let id = JobId(format!("{}-{seq:06}", self.inner.name));
        let identity = SimBackend::attempt_identity(job, options.idempotency_key.as_ref());
        let attempt = {
            let n = state.attempts.entry(identity).or_insert(0);
            *n += 1;
            *n
        };
        let mut submission = Submission::new(id.clone(), self.inner.name.clone());
        submission.cluster = Some(self.inner.name.clone());
        submission.namespace = job.queue.clone();
        submission.idempotency_key = options.idempotency_key.clone();
        let eligible_at = now + script.queue_delay;
        state.jobs.push(SimJob {
            submission: submission.clone(),
            script,
            attempt,
            eligible_at,
            started_at: None,
            ended: None,
        });
        if let Some(key) = &options.idempotency_key {
            state.by_key.insert(key.clone(), seq);
        }
        state.waiting.push(Reverse((eligible_at, seq)));
        state.advance(now, self.inner.capacity);
        Ok(submission)
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        let now = Instant::now();
        let mut state = self.lock();
        state.advance(now, self.inner.capacity);
        state
            .job(id)
            .map(|job| job.status())
            .ok_or_else(|| Error::NotFound {
                what: format!("simulated job {id}"),
            })
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        let lines = {
            let now = Instant::now();
            let mut state = self.lock();
            state.advance(now, self.inner.capacity);
            let job = state.job(id).ok_or_else(|| Error::NotFound {
                what: format!("simulated job {id}"),
            })?;
            job.lines_written(now)
        };
        let skip = options.from_line;
        if !options.follow {
            let total = lines.len() as u64;
            let first = match options.tail {
                Some(n) => total.saturating_sub(n).max(skip),
                None => skip,
            };
            let out: Vec<Result<LogLine>> = lines
                .into_iter()
                .enumerate()
                .skip(first as usize)
                .map(|(i, text)| {
                    Ok(LogLine {
                        position: i as u64,
                        text,
                    })
                })
                .collect();
            return Ok(futures::stream::iter(out).boxed());
        }
        // Follow: yield what is written, wake at the next change, end once the job has ended.
        let backend = self.clone();
        let id = id.clone();
        let stream = futures::stream::unfold(
            (backend, id, skip, false),
            |(backend, id, next, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let now = Instant::now();
                    let (lines, ended, wake) = {
                        let mut state = backend.lock();
                        state.advance(now, backend.inner.capacity);
                        let Some(job) = state.job(&id) else {
                            let err = Error::NotFound {
                                what: format!("simulated job {id}"),
                            };
                            return Some((vec![Err(err)], (backend.clone(), id, next, true)));
                        };
                        let wake = job.next_change(now).or_else(|| state.next_global_change());
                        (job.lines_written(now), job.ended.is_some(), wake)
                    };
                    let new: Vec<Result<LogLine>> = lines
                        .into_iter()
                        .enumerate()
                        .skip(next as usize)
                        .map(|(i, text)| {
                            Ok(LogLine {
                                position: i as u64,
                                text,
                            })
                        })
                        .collect();
                    let after = next + new.len() as u64;
                    if !new.is_empty() || ended {
                        return Some((new, (backend, id, after, ended)));
                    }
                    match wake {
                        Some(t) if t > now => tokio::time::sleep_until(t).await,
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            },
        )
        .flat_map(futures::stream::iter);
        Ok(stream.boxed())
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        let now = Instant::now();
        let mut state = self.lock();
        state.advance(now, self.inner.capacity);
        state.cancel_requests.push(id.clone());
        let job = state.job_mut(id).ok_or_else(|| Error::NotFound {
            what: format!("simulated job {id}"),
        })?;
        if job.ended.is_none() {
            let was_running = job.started_at.is_some();
            job.ended = Some((now, JobState::Cancelled));
            if was_running {
                state.running_count -= 1;
            }
            state.advance(now, self.inner.capacity);
        }
        Ok(())
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let state = self.lock();
        Ok(state
            .by_key
            .get(key)
            .map(|&seq| state.jobs[seq].submission.clone()))
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        let now = Instant::now();
        let wake = {
            let mut state = self.lock();
            state.advance(now, self.inner.capacity);
            let job = state.job(id).ok_or_else(|| Error::NotFound {
                what: format!("simulated job {id}"),
            })?;
            let current = job.status();
            if previous.is_none_or(|p| p.state != current.state) {
                return Ok(current);
            }
            let own = match job.started_at {
                // Log lines do not change the status: wake at the state change itself.
                Some(started) if job.ended.is_none() => Some(started + job.script.duration),
                _ => job.next_change(now),
            };
            let global = if job.started_at.is_none() && now >= job.eligible_at {
                state.next_global_change()
            } else {
                None
            };
            own.into_iter().chain(global).filter(|t| *t > now).min()
        };
        let deadline = now + poll_interval;
        tokio::time::sleep_until(wake.map_or(deadline, |w| w.min(deadline))).await;
        self.status(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendExt;
    use crate::job::AppType;

    fn job(name: &str, labels: &[(&str, &str)]) -> SparkJob {
        let mut j = SparkJob::new(name, AppType::Python, "3.5", "local:///app.py");
        for (k, v) in labels {
            j.labels.insert((*k).to_owned(), (*v).to_owned());
        }
        j
    }

    #[tokio::test(start_paused = true)]
    async fn progresses_through_states_on_the_paused_clock() {
        let sim = SimBackend::new();
        let s = sim
            .submit(
                &job("a", &[("sim/queue-delay", "1s"), ("sim/duration", "2s")]),
                &SubmitOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(sim.status(&s.id).await.unwrap().state, JobState::Submitted);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(sim.status(&s.id).await.unwrap().state, JobState::Running);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(sim.status(&s.id).await.unwrap().state, JobState::Running);
        tokio::time::advance(Duration::from_millis(1)).await;
        let done = sim.status(&s.id).await.unwrap();
        assert_eq!(
            (done.state, done.native_state.as_str()),
            (JobState::Succeeded, "COMPLETED")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_queues_jobs_in_order() {
        let sim = SimBackend::builder().capacity(1).build();
        let a = sim
            .submit(&job("a", &[("sim/duration", "10s")]), &SubmitOptions::new())
            .await
            .unwrap();
        let b = sim
            .submit(&job("b", &[("sim/duration", "10s")]), &SubmitOptions::new())
            .await
            .unwrap();
        assert_eq!(sim.status(&a.id).await.unwrap().state, JobState::Running);
        assert_eq!(sim.status(&b.id).await.unwrap().state, JobState::Submitted);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(sim.status(&a.id).await.unwrap().state, JobState::Succeeded);
        assert_eq!(sim.status(&b.id).await.unwrap().state, JobState::Running);
        let start = Instant::now();
        let end = sim
            .wait_for_terminal(&b.id, &Default::default())
            .await
            .unwrap();
        assert_eq!(end.state, JobState::Succeeded);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10),
            "next_status wakes exactly at the transition"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_frees_the_slot() {
        let sim = SimBackend::builder().capacity(1).build();
        let a = sim
            .submit(&job("a", &[("sim/duration", "1h")]), &SubmitOptions::new())
            .await
            .unwrap();
        let b = sim
            .submit(&job("b", &[]), &SubmitOptions::new())
            .await
            .unwrap();
        sim.cancel(&a.id).await.unwrap();
        assert_eq!(sim.status(&a.id).await.unwrap().state, JobState::Cancelled);
        assert_eq!(sim.status(&b.id).await.unwrap().state, JobState::Running);
        assert_eq!(sim.cancel_requests(), vec![a.id.clone()]);
        sim.cancel(&a.id)
            .await
            .expect("cancelling an ended job is not an error");
    }

    #[tokio::test(start_paused = true)]
    async fn fail_attempts_count_per_task() {
        let sim = SimBackend::new();
        let j = job("t", &[("sim/fail-attempts", "2"), ("sim/duration", "0s")]);
        let mut states = Vec::new();
        for try_number in 1..=3 {
            let key = IdempotencyKey::for_task("dag", "run1", "t", try_number);
            let s = sim
                .submit(&j, &SubmitOptions::new().with_idempotency_key(key))
                .await
                .unwrap();
            states.push(sim.status(&s.id).await.unwrap().state);
        }
        assert_eq!(
            states,
            [JobState::Failed, JobState::Failed, JobState::Succeeded]
        );
        // Another run of the same DAG counts its own attempts.
        let key = IdempotencyKey::for_task("dag", "run2", "t", 1);
        let s = sim
            .submit(&j, &SubmitOptions::new().with_idempotency_key(key))
            .await
            .unwrap();
        assert_eq!(sim.status(&s.id).await.unwrap().state, JobState::Failed);
    }

    #[tokio::test(start_paused = true)]
    async fn follow_logs_until_the_end_and_resume() {
        let sim = SimBackend::new();
        let s = sim
            .submit(
                &job(
                    "l",
                    &[
                        ("sim/log-lines", "4"),
                        ("sim/duration", "5s"),
                        ("sim/outcome", "failed"),
                        ("sim/message", "boom"),
                    ],
                ),
                &SubmitOptions::new(),
            )
            .await
            .unwrap();
        let lines: Vec<LogLine> = sim
            .logs(&s.id, &LogOptions::follow())
            .await
            .unwrap()
            .map(|l| l.unwrap())
            .collect()
            .await;
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4].text, "ERROR simulated driver: boom");
        assert_eq!(
            lines.iter().map(|l| l.position).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let resumed: Vec<u64> = sim
            .logs(&s.id, &LogOptions::snapshot().from_line(3))
            .await
            .unwrap()
            .map(|l| l.unwrap().position)
            .collect()
            .await;
        assert_eq!(resumed, [3, 4]);
        let tail: Vec<u64> = sim
            .logs(&s.id, &LogOptions::snapshot().tail(2))
            .await
            .unwrap()
            .map(|l| l.unwrap().position)
            .collect()
            .await;
        assert_eq!(tail, [3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_labels_are_rejected_with_the_label_named() {
        let sim = SimBackend::new();
        let err = sim
            .submit(
                &job("x", &[("sim/duration", "soon"), ("sim/speed", "fast")]),
                &SubmitOptions::new(),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("labels.sim/duration"), "{text}");
        assert!(text.contains("labels.sim/speed"), "{text}");
        assert!(matches!(err, Error::InvalidSpec(d) if d.len() == 2));
    }

    #[test]
    fn query_parsing() {
        let b = SimBackend::builder()
            .query("duration=2s&capacity=3&outcome=failed")
            .unwrap();
        assert_eq!(b.capacity, Some(3));
        assert_eq!(b.script.duration, Duration::from_secs(2));
        assert_eq!(b.script.outcome, SimOutcome::Failed);
        let err = SimBackend::builder()
            .query("capacity=0&duration=x")
            .unwrap_err();
        assert_eq!(err.len(), 2, "{err}");
    }
}
