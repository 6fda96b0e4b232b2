//! [`RoutedBackend`]: client-side multi-cluster routing. Several named backends (one per
//! connection of a bpg-router rules file) behind one [`Backend`]; each job goes where the rules
//! say, and everything after the submit goes back to the backend that holds the job.
//!
//! - **Routing.** Every submit asks [`RoutingRules::route_for_user`] with the job (labels, queue,
//!   Spark version, resources), the configured user and a load snapshot ([`RoutedBackend::load`]:
//!   jobs in flight per cluster, as far as this backend has seen them). Isolation constraints are
//!   enforced by the router on every decision. A refusal is [`Error::Denied`] naming the rule (or
//!   [`Error::Unavailable`] when only capacity stood in the way, so retry layers wait and try
//!   again). A route's `queue` is set on the job before it is handed on.
//! - **Ids.** A routed job id is `<cluster>/<backend's id>`. Cluster ids are DNS labels (no `/`),
//!   so the first `/` always separates them, whatever `-` or `/` the two parts contain; any process
//!   with the same rules can route a status call for an id another process issued. Ids issued here
//!   are also remembered in memory.
//! - **Idempotency.** With a key, `submit` first asks every backend's `find` (a retried submit may
//!   otherwise be routed elsewhere and start a second application), then routes. `find` asks
//!   every backend too.
//!
//! ```
//! use std::sync::Arc;
//! use bpg_backends::RoutedBackend;
//! use bpg_core::{AppType, Backend, BackendExt, JobState, SimBackend, SparkJob, SubmitOptions, WaitOptions};
//! use bpg_router::RoutingRules;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> bpg_core::Result<()> {
//! let rules = RoutingRules::from_yaml(r#"
//! clusters:
//!   - {id: phi-east, connection: compliant, tags: {phi-compliant: "true"}}
//!   - {id: spot-1, connection: spot}
//! constraints:
//!   - {name: phi-isolation, when: {labels: {data-classification: phi}}, require_tags: {phi-compliant: "true"}}
//! rules:
//!   - {name: phi, match: {labels: {data-classification: phi}}, route: {clusters: [phi-east]}}
//! default: {clusters: [spot-1]}
//! "#, None)?;
//! let routed = RoutedBackend::builder(rules)
//!     .backend("compliant", Arc::new(SimBackend::builder().name("compliant").build()))
//!     .backend("spot", Arc::new(SimBackend::builder().name("spot").build()))
//!     .build()?;
//!
//! let claims = SparkJob::new("claims", AppType::Python, "3.5", "local:///claims.py")
//!     .with_label("data-classification", "phi");
//! let (submission, status) = routed
//!     .submit_and_wait(&claims, &SubmitOptions::new(), &WaitOptions::default())
//!     .await?;
//! assert_eq!(submission.cluster.as_deref(), Some("phi-east"));
//! assert!(submission.id.as_str().starts_with("phi-east/"));
//! assert_eq!(status.state, JobState::Succeeded);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};
use bpg_router::{ClusterLoad, ClusterView, Decision, RoutingRules};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Separates the cluster from the backend's id in a routed [`JobId`].
pub const ID_SEPARATOR: char = '/';

/// The backend name when none is set.
pub const DEFAULT_NAME: &str = "routed";

/// The routed id of the job `inner` on `cluster`: `<cluster>/<inner>`.
///
/// ```
/// use bpg_backends::routed::{job_id, split_job_id};
/// use bpg_core::JobId;
/// let id = job_id("spark-cluster-a", &JobId::new("spark-cluster-a-0123456789abcdef0123456789abcdef"));
/// assert_eq!(split_job_id(&id), Some(("spark-cluster-a", "spark-cluster-a-0123456789abcdef0123456789abcdef")));
/// let k8s = job_id("phi-east", &JobId::new("spark-phi/claims-1"));
/// assert_eq!(split_job_id(&k8s), Some(("phi-east", "spark-phi/claims-1")));
/// ```
pub fn job_id(cluster: &str, inner: &JobId) -> JobId {
    JobId(format!("{cluster}{ID_SEPARATOR}{inner}"))
}

/// Splits a routed id into cluster and the backend's id, at the first [`ID_SEPARATOR`].
pub fn split_job_id(id: &JobId) -> Option<(&str, &str)> {
    id.as_str()
        .split_once(ID_SEPARATOR)
        .filter(|(cluster, inner)| !cluster.is_empty() && !inner.is_empty())
}

/// Where a routed job lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// The cluster (of the rules) it was routed to.
    pub cluster: String,
    /// The connection, i.e. the backend, that reaches that cluster.
    pub connection: String,
    /// The backend's own id for the job.
    pub backend_id: JobId,
}

/// A submission and, when this call routed it, the router's decision with its explanation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RoutedSubmission {
    /// The accepted submission (routed id, cluster, namespace).
    pub submission: Submission,
    /// The decision; `None` when an earlier submission with the same key was found instead.
    pub decision: Option<Decision>,
}

/// Builds a [`RoutedBackend`]. Start with [`RoutedBackend::builder`].
pub struct RoutedBackendBuilder {
    rules: Arc<RoutingRules>,
    name: String,
    backends: BTreeMap<String, Arc<dyn Backend>>,
    user: Option<String>,
    seed: Option<u64>,
}

impl fmt::Debug for RoutedBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedBackendBuilder")
            .field("name", &self.name)
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("user", &self.user)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl RoutedBackendBuilder {
    /// Sets the backend name (default `routed`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds the backend behind `connection` (the `connection` of the rules' clusters).
    pub fn backend(mut self, connection: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.backends.insert(connection.into(), backend);
        self
    }

    /// The submitting user, for rules and queues that match on users.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Seeds the random source of weighted routing (default: seeded from the OS), for
    /// reproducible placements.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Builds the backend. Every connection the rules name must have a backend.
    pub fn build(self) -> Result<RoutedBackend> {
        let mut missing = Vec::new();
        for cluster in self.rules.cluster_ids() {
            let connection = self.rules.connection_of(cluster).unwrap_or_default();
            if !self.backends.contains_key(connection) {
                missing.push(format!(
                    "cluster `{cluster}` uses connection `{connection}`"
                ));
            }
        }
        if !missing.is_empty() {
            let have: Vec<&str> = self.backends.keys().map(String::as_str).collect();
            return Err(Error::config(format!(
                "routed backend `{}`: no backend for {} (backends given: {})",
                self.name,
                missing.join(", "),
                if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                }
            )));
        }
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Ok(RoutedBackend {
            name: self.name,
            rules: self.rules,
            backends: self.backends,
            user: self.user,
            rng: Mutex::new(rng),
            state: Mutex::default(),
        })
    }
}

/// Several named backends behind bpg-router rules; see the [module docs](self).
pub struct RoutedBackend {
    name: String,
    rules: Arc<RoutingRules>,
    backends: BTreeMap<String, Arc<dyn Backend>>,
    user: Option<String>,
    rng: Mutex<StdRng>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    placements: HashMap<JobId, Placement>,
    by_key: HashMap<IdempotencyKey, Submission>,
    /// Per cluster: submits routed there and not answered yet, and jobs not seen ending
    /// (`true` once seen running).
    load: HashMap<String, ClusterJobs>,
}

#[derive(Default)]
struct ClusterJobs {
    reserved: u32,
    jobs: HashMap<JobId, bool>,
}

impl fmt::Debug for RoutedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedBackend")
            .field("name", &self.name)
            .field("backends", &self.backends)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl RoutedBackend {
    /// A builder over `rules` (a [`RoutingRules`] or an `Arc` of one shared with others).
    pub fn builder(rules: impl Into<Arc<RoutingRules>>) -> RoutedBackendBuilder {
        RoutedBackendBuilder {
            rules: rules.into(),
            name: DEFAULT_NAME.to_owned(),
            backends: BTreeMap::new(),
            user: None,
            seed: None,
        }
    }

    /// A routed backend over `rules` with one backend per connection name.
    pub fn new<I, S>(rules: impl Into<Arc<RoutingRules>>, backends: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, Arc<dyn Backend>)>,
        S: Into<String>,
    {
        backends
            .into_iter()
            .fold(RoutedBackend::builder(rules), |b, (connection, backend)| {
                b.backend(connection, backend)
            })
            .build()
    }

    /// The rules.
    pub fn rules(&self) -> &RoutingRules {
        &self.rules
    }

    /// The backend behind a connection.
    pub fn backend(&self, connection: &str) -> Option<&Arc<dyn Backend>> {
        self.backends.get(connection)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The load snapshot routing uses: per cluster of the rules, jobs this backend routed there
    /// (or found) and has not seen end, split into running and pending (submits in progress count
    /// as pending).
    pub fn load(&self) -> ClusterView {
        let state = self.lock();
        self.view(&state)
    }

    fn view(&self, state: &State) -> ClusterView {
        let mut view = ClusterView::new();
        for cluster in self.rules.cluster_ids() {
            let (running, pending) = match state.load.get(cluster) {
                Some(c) => {
                    let running = c.jobs.values().filter(|r| **r).count() as u32;
                    let waiting = c.jobs.len() as u32 - running;
                    (running, waiting.saturating_add(c.reserved))
                }
                None => (0, 0),
            };
            view.set(cluster, ClusterLoad::new(running, pending));
        }
        view
    }

    /// Where a routed job lives: from memory for ids issued here, else from the id itself.
    pub fn placement(&self, id: &JobId) -> Result<Placement> {
        if let Some(p) = self.lock().placements.get(id) {
            return Ok(p.clone());
        }
        let not_found = |why: String| Error::NotFound {
            what: format!("job {id} on routed backend {} ({why})", self.name),
        };
        let Some((cluster, inner)) = split_job_id(id) else {
            return Err(not_found(format!(
                "expected <cluster>{ID_SEPARATOR}<backend's id>"
            )));
        };
        let Some(connection) = self.rules.connection_of(cluster) else {
            let known: Vec<&str> = self.rules.cluster_ids().collect();
            return Err(not_found(format!(
                "no cluster `{cluster}` in the rules; clusters: {}",
                known.join(", ")
            )));
        };
        Ok(Placement {
            cluster: cluster.to_owned(),
            connection: connection.to_owned(),
            backend_id: JobId::new(inner),
        })
    }

    fn backend_of(&self, connection: &str) -> Result<&Arc<dyn Backend>> {
        // Every connection of the rules has a backend (checked at build).
        self.backends.get(connection).ok_or_else(|| {
            Error::config(format!(
                "routed backend `{}`: no backend for connection `{connection}`",
                self.name
            ))
        })
    }

    /// Records what a status answer says about a job's load: ended (or gone from its backend)
    /// jobs stop counting, running ones count as running.
    fn observe(&self, id: &JobId, placement: &Placement, answer: &Result<JobStatus>) {
        let mut state = self.lock();
        let Some(cluster) = state.load.get_mut(&placement.cluster) else {
            return;
        };
        match answer {
            Ok(status) if status.is_terminal() => {
                cluster.jobs.remove(id);
            }
            Ok(status) => {
                if let Some(running) = cluster.jobs.get_mut(id) {
                    *running = status.state == bpg_core::JobState::Running;
                }
            }
            Err(Error::NotFound { .. }) => {
                cluster.jobs.remove(id);
            }
            Err(_) => {}
        }
    }

    /// The cluster of the rules a submission found on `connection` belongs to: the only one using
    /// that connection, or the one the backend names, or else the first (any of them routes back
    /// to the same backend).
    fn cluster_for(&self, connection: &str, found: &Submission) -> String {
        let clusters: Vec<&str> = self
            .rules
            .cluster_ids()
            .filter(|c| self.rules.connection_of(c) == Some(connection))
            .collect();
        clusters
            .iter()
            .find(|c| found.cluster.as_deref() == Some(**c))
            .or(clusters.first())
            .map(|c| (*c).to_owned())
            .unwrap_or_else(|| connection.to_owned())
    }

    /// Wraps a backend's submission as a routed one and remembers where it is.
    fn adopt(
        &self,
        cluster: String,
        connection: &str,
        inner: Submission,
        namespace: Option<String>,
        key: Option<&IdempotencyKey>,
        in_flight: bool,
    ) -> Submission {
        let id = job_id(&cluster, &inner.id);
        let mut submission = Submission::new(id.clone(), self.name.clone());
        submission.cluster = Some(cluster.clone());
        submission.namespace = namespace.or(inner.namespace);
        submission.idempotency_key = inner.idempotency_key.or_else(|| key.cloned());
        submission.submitted_at = inner.submitted_at;
        let mut state = self.lock();
        state.placements.insert(
            id.clone(),
            Placement {
                cluster: cluster.clone(),
                connection: connection.to_owned(),
                backend_id: inner.id,
            },
        );
        if let Some(key) = &submission.idempotency_key {
            state.by_key.insert(key.clone(), submission.clone());
        }
        if in_flight {
            state
                .load
                .entry(cluster)
                .or_default()
                .jobs
                .insert(id, false);
        }
        submission
    }

    /// Asks every backend for a submission made with `key`.
    async fn find_anywhere(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        if let Some(s) = self.lock().by_key.get(key) {
            return Ok(Some(s.clone()));
        }
        let answers = futures::future::join_all(
            self.backends
                .iter()
                .map(|(connection, backend)| async move { (connection, backend.find(key).await) }),
        )
        .await;
        let mut first_error = None;
        for (connection, answer) in answers {
            match answer {
                Ok(Some(found)) => {
                    let cluster = self.cluster_for(connection, &found);
                    return Ok(Some(self.adopt(
                        cluster,
                        connection,
                        found,
                        None,
                        Some(key),
                        false,
                    )));
                }
                Ok(None) => {}
                Err(Error::Unsupported { .. }) => {
                    tracing::debug!(routed = %self.name, %connection, "backend cannot look up idempotency keys");
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            // Absence is not proven while a backend could not answer.
            Some(error) => Err(error),
            None => Ok(None),
        }
    }

    /// Routes and submits `job`, returning the router's decision with the submission. With an
    /// idempotency key already used, returns the earlier submission (and no decision).
    pub async fn submit_explained(
        &self,
        job: &SparkJob,
        options: &SubmitOptions,
    ) -> Result<RoutedSubmission> {
        if let Some(key) = &options.idempotency_key
            && let Some(submission) = self.find_anywhere(key).await?
        {
            return Ok(RoutedSubmission {
                submission,
                decision: None,
            });
        }

        let decision = {
            let mut state = self.lock();
            let view = self.view(&state);
            let routed = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                self.rules
                    .route_for_user(job, self.user.as_deref(), &view, &mut *rng)
            };
            let decision = routed.map_err(|refusal| {
                tracing::info!(routed = %self.name, job = %job.name, explanation = %refusal.explanation, "routing refused the job");
                match Error::from(refusal) {
                    Error::Denied { reason } => Error::Denied {
                        reason: format!("job {:?}: {reason}", job.name),
                    },
                    Error::Unavailable { message } => Error::Unavailable {
                        message: format!("job {:?}: {message}", job.name),
                    },
                    other => other,
                }
            })?;
            // Counted while the submit is in progress, so concurrent submits see it.
            state
                .load
                .entry(decision.cluster.clone())
                .or_default()
                .reserved += 1;
            decision
        };
        tracing::debug!(routed = %self.name, job = %job.name, %decision, "routed");

        let submitted = match self.backend_of(&decision.connection) {
            Ok(backend) => match &decision.queue {
                Some(queue) if job.queue.as_ref() != Some(queue) => {
                    let mut queued = job.clone();
                    queued.queue = Some(queue.clone());
                    backend.submit(&queued, options).await
                }
                _ => backend.submit(job, options).await,
            },
            Err(e) => Err(e),
        };
        {
            let mut state = self.lock();
            if let Some(c) = state.load.get_mut(&decision.cluster) {
                c.reserved = c.reserved.saturating_sub(1);
            }
        }
        let inner = submitted?;
        let submission = self.adopt(
            decision.cluster.clone(),
            &decision.connection,
            inner,
            decision.namespace.clone(),
            options.idempotency_key.as_ref(),
            true,
        );
        Ok(RoutedSubmission {
            submission,
            decision: Some(decision),
        })
    }
}

#[async_trait]
impl Backend for RoutedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    /// What every backend behind it can do (a job may land on any of them). Idempotent submits
    /// also need every backend's `find`.
    fn capabilities(&self) -> Capabilities {
        let all: Vec<Capabilities> = self.backends.values().map(|b| b.capabilities()).collect();
        let every = |f: fn(&Capabilities) -> bool| all.iter().all(f);
        let mut caps = Capabilities::default();
        caps.cancel = every(|c| c.cancel);
        caps.logs = every(|c| c.logs);
        caps.follow_logs = every(|c| c.follow_logs);
        caps.find = every(|c| c.find);
        caps.idempotent_submit = every(|c| c.idempotent_submit && c.find);
        caps.watch = every(|c| c.watch);
        caps
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        Ok(self.submit_explained(job, options).await?.submission)
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        let placement = self.placement(id)?;
        let answer = self
            .backend_of(&placement.connection)?
            .status(&placement.backend_id)
            .await;
        self.observe(id, &placement, &answer);
        answer
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        let placement = self.placement(id)?;
        self.backend_of(&placement.connection)?
            .logs(&placement.backend_id, options)
            .await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        let placement = self.placement(id)?;
        self.backend_of(&placement.connection)?
            .cancel(&placement.backend_id)
            .await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.find_anywhere(key).await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        let placement = self.placement(id)?;
        let answer = self
            .backend_of(&placement.connection)?
            .next_status(&placement.backend_id, previous, poll_interval)
            .await;
        self.observe(id, &placement, &answer);
        answer
    }
}
