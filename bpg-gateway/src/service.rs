//! The gateway's engine, below HTTP: route, record, dispatch within each cluster's cap, follow each
//! application's state, reconcile at start.
//!
//! **A submit**, in order: the job is routed ([`RoutingRules`], isolation constraints enforced,
//! a pinned `clusterId` included); the submission is recorded in the [`Store`] (phase `queued`);
//! a dispatch task waits for a slot on the cluster (its `max_in_flight` cap; waiting submissions
//! are served in arrival order) and calls the backend with the idempotency key
//! `bpg-gateway/<submission id>`; the answer is recorded. The HTTP answer is sent as soon as the
//! backend answered, or at once when the submission has to wait for a slot or for an unavailable
//! cluster: it then reads `SUBMITTED` until it is created.
//!
//! **States** come from one follower task per live application, which waits on the backend's
//! `next_status` (a watch where the backend has one, the simulation's clock, else a poll every
//! `poll_interval`) and keeps the latest status in memory; status requests read that, so any
//! number of polling clients cost the clusters nothing. The follower holds the cluster slot until
//! the application ends.
//!
//! **At start** every record whose backend call may not have answered is dispatched again: the
//! backend is first asked for the key (`find`), so an application created just before a crash is
//! adopted, not duplicated. Records of live applications get their follower back.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bpg_core::{
    Backend, Error, IdempotencyKey, JobId, JobState, JobStatus, SparkJob, SubmitOptions,
};
use bpg_router::{ClusterLoad, ClusterView, Decision, RouteError, RoutingRules};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Access, Authenticator};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{
    AuditEntry, Phase, StateChange, SubmissionRecord, SubmissionStore, SubmissionStoreExt,
};

/// One `sparkImages` entry: the image for jobs of these types and this Spark version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SparkImage {
    /// The image.
    pub name: String,
    /// Job types (`Python`, `Java`, `Scala`, `R`; case-insensitive).
    pub types: Vec<String>,
    /// Spark version (exact, case-insensitive).
    pub version: String,
}

/// Settings of one cluster: what protects it, and what its jobs get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// Applications created and not ended, at most; more wait in the gateway, in order.
    pub max_in_flight: Option<u32>,
    /// Calls to the cluster's API per second, at most.
    pub max_calls_per_second: Option<u32>,
    /// Spark conf of jobs on this cluster, over `default_spark_conf` and under the job's own
    /// (BPG's cluster `sparkConf`).
    pub spark_conf: BTreeMap<String, String>,
    /// Driver service account of jobs that name none (BPG's `sparkServiceAccount`).
    pub spark_service_account: Option<String>,
    /// `timeToLiveSeconds` of jobs that set none (BPG's `ttlSeconds`).
    pub ttl_seconds: Option<i64>,
}

impl ClusterSettings {
    /// No limits, nothing added to jobs.
    pub fn new() -> Self {
        ClusterSettings::default()
    }

    /// Caps applications in flight.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// Caps API calls per second.
    pub fn max_calls_per_second(mut self, n: u32) -> Self {
        self.max_calls_per_second = Some(n);
        self
    }
}

/// The gateway's settings (everything but rules, clusters and the store).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// BPG's `applicationContextPath`. Default `/skatev2`.
    pub context_path: String,
    /// More prefixes serving the same API. Default `/apiv2`.
    pub aliases: Vec<String>,
    /// Users let in (`*` = everyone); `None` lets every user name in (development mode).
    pub allowed_users: Option<Vec<String>>,
    /// Users kept out.
    pub blocked_users: Vec<String>,
    /// Admins besides those of the access file (BPG's `adminUsers`, enforced here).
    pub admin_users: Vec<String>,
    /// Per-user and per-address limits.
    pub limits: crate::auth::Limits,
    /// Spark conf every job starts from (BPG's `defaultSparkConf`); the job's own conf wins.
    pub default_spark_conf: BTreeMap<String, String>,
    /// Spark conf every job gets, whatever it asks (BPG's `fixedSparkConf`).
    pub fixed_spark_conf: BTreeMap<String, String>,
    /// Images for jobs that do not name one.
    pub spark_images: Vec<SparkImage>,
    /// Per cluster id.
    pub clusters: BTreeMap<String, ClusterSettings>,
    /// How often a follower polls a backend that cannot watch. Default 1 s.
    pub poll_interval: Duration,
    /// How long a submit waits for the cluster's answer before answering with the id. Default 30 s.
    pub submit_wait: Duration,
    /// Largest request body. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Deadline of a request (not of a followed log). Default 60 s.
    pub request_timeout: Duration,
    /// Where `POST /s3/{name}` stores uploads; `None` refuses uploads.
    pub upload_dir: Option<PathBuf>,
    /// How long a gateway holds the submissions it dispatches and follows without renewing its
    /// lease; a replica that dies has its submissions taken over by another this long after
    /// its last renewal (renewed every third of it). Default 3 s.
    pub lease: Duration,
    /// This gateway's name among replicas sharing a store. Default: host name, process id and
    /// a random suffix.
    pub replica: String,
}

/// A name for this process among gateways sharing a store.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            context_path: bpg_client::DEFAULT_CONTEXT_PATH.to_owned(),
            aliases: vec!["/apiv2".to_owned()],
            allowed_users: None,
            blocked_users: Vec::new(),
            admin_users: Vec::new(),
            limits: crate::auth::Limits::default(),
            default_spark_conf: BTreeMap::new(),
            fixed_spark_conf: BTreeMap::new(),
            spark_images: Vec::new(),
            clusters: BTreeMap::new(),
            poll_interval: Duration::from_secs(1),
            submit_wait: Duration::from_secs(30),
            max_body_bytes: 16 << 20,
            request_timeout: Duration::from_secs(60),
            upload_dir: None,
            lease: Duration::from_secs(3),
            replica: default_replica(),
        }
    }
}

/// One cluster: its backend and its slots.
pub(crate) struct Cluster {
    pub id: String,
    pub backend: Arc<dyn Backend>,
    pub slots: Arc<Semaphore>,
    pub cap: Option<u32>,
    /// Submissions waiting in the gateway for a slot.
    pub waiting: AtomicU32,
    /// Applications created and not ended.
    pub in_flight: AtomicU32,
    /// Why the last backend call failed, while it keeps failing.
    pub unavailable: Mutex<Option<String>>,
}

impl Cluster {
    fn unavailable(&self) -> MutexGuard<'_, Option<String>> {
        self.unavailable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The state the HTTP layer reads; one per gateway, shared in an `Arc`.
pub(crate) struct Inner {
    pub settings: Settings,
    pub rules: Arc<RoutingRules>,
    pub clusters: BTreeMap<String, Cluster>,
    pub store: Arc<dyn SubmissionStore>,
    /// Latest status of live applications, by submission id.
    live: Mutex<HashMap<String, JobStatus>>,
    rng: Mutex<StdRng>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub auth: Authenticator,
    /// Log streams that may be followed at once.
    pub log_streams: Arc<Semaphore>,
    /// Submissions this gateway dispatches or follows now, so a take-over never runs one twice.
    handling: Mutex<std::collections::HashSet<String>>,
}

/// Marks a submission as handled here while it lives.
pub(crate) struct Handling<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.inner
            .handling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What became of a submit by the time its HTTP answer is due.
#[derive(Debug)]
pub(crate) enum Dispatched {
    /// The backend accepted it.
    Created,
    /// It waits in the gateway (for a slot, or for its cluster to come back).
    Waiting,
    /// The backend refused it.
    Rejected(ApiError),
}

/// The idempotency key of a submission's backend call.
pub(crate) fn backend_key(id: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("bpg-gateway/{id}"))
}

/// spark-operator's `applicationState` values, relayed as they are.
const OPERATOR_STATES: &[&str] = &[
    "",
    "NEW",
    "SUBMITTED",
    "RUNNING",
    "SUCCEEDING",
    "FAILING",
    "PENDING_RERUN",
    "INVALIDATING",
    "COMPLETED",
    "FAILED",
    "SUBMISSION_FAILED",
    "UNKNOWN",
];

/// BPG's `applicationState` for a backend status: spark-operator's own state when the backend
/// reports one, else the closest one.
pub(crate) fn bpg_state(status: &JobStatus) -> &str {
    let native = status.native_state.as_str();
    if OPERATOR_STATES.contains(&native) && JobState::from_spark_operator(native) == status.state {
        return native;
    }
    match status.state {
        JobState::Pending | JobState::Submitted => "SUBMITTED",
        JobState::Running | JobState::Cancelling => "RUNNING",
        JobState::Succeeded => "COMPLETED",
        JobState::Failed | JobState::Cancelled => "FAILED",
        JobState::Unknown => "UNKNOWN",
    }
}

/// The status clients see. A `SUBMISSION_FAILED` with no submission retries left in the job's
/// restart policy will not change again: it ends `FAILED` (BPG never finalises it).
pub(crate) fn shown_status(raw: JobStatus, job: &SparkJob) -> JobStatus {
    let retries = job
        .restart_policy
        .as_ref()
        .filter(|p| !p.kind.eq_ignore_ascii_case("never"))
        .and_then(|p| p.on_submission_failure_retries)
        .unwrap_or(0);
    if raw.native_state == "SUBMISSION_FAILED" && retries <= 0 {
        let mut failed = raw;
        failed.state = JobState::Failed;
        failed.native_state = "FAILED".into();
        let why = failed.message.take();
        failed.message = Some(match why {
            Some(why) => format!("submission failed and the restart policy allows no retry: {why}"),
            None => "submission failed and the restart policy allows no retry".into(),
        });
        return failed;
    }
    raw
}

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn millis(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

impl Inner {
    pub(crate) fn new(
        settings: Settings,
        rules: Arc<RoutingRules>,
        clusters: BTreeMap<String, Cluster>,
        store: Arc<dyn SubmissionStore>,
        access: Option<Access>,
        seed: Option<u64>,
    ) -> Inner {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Inner {
            rules,
            clusters,
            store,
            live: Mutex::default(),
            rng: Mutex::new(rng),
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            auth: Authenticator::new(access, &settings.limits),
            log_streams: Arc::new(Semaphore::new(settings.limits.max_log_streams.max(1))),
            handling: Mutex::default(),
            settings,
        }
    }

    /// Records an audit entry: a structured log line (target `bpg_gateway::audit`) and a line in
    /// the store. A store that cannot take it is logged as an error; the request is still
    /// answered.
    pub(crate) async fn audit(&self, e: AuditEntry) {
        tracing::info!(
            target: "bpg_gateway::audit",
            action = %e.action,
            user = %e.user,
            address = e.address.as_deref().unwrap_or(""),
            submission = e.submission.as_deref().unwrap_or(""),
            queue = e.queue.as_deref().unwrap_or(""),
            cluster = e.cluster.as_deref().unwrap_or(""),
            outcome = %e.outcome,
            message = %e.message,
            "audit"
        );
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::error!(error = %err, action = %e.action, user = %e.user, "cannot write the audit log");
        }
    }

    pub(crate) fn cluster(id: &str, backend: Arc<dyn Backend>, cap: Option<u32>) -> Cluster {
        let permits = cap.map_or(Semaphore::MAX_PERMITS, |c| c.max(1) as usize);
        Cluster {
            id: id.to_owned(),
            backend,
            slots: Arc::new(Semaphore::new(permits)),
            cap,
            waiting: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            unavailable: Mutex::new(None),
        }
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, JobStatus>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest status of a live application.
    pub(crate) fn live_status(&self, id: &str) -> Option<JobStatus> {
        self.live().get(id).cloned()
    }

    /// Applications being followed.
    pub(crate) fn watched(&self) -> usize {
        self.live().len()
    }

    /// The load routing sees: per cluster, applications in flight and submissions waiting.
    pub(crate) fn view(&self) -> ClusterView {
        let mut view = ClusterView::new();
        for (id, c) in &self.clusters {
            let load = ClusterLoad::new(
                c.in_flight.load(Ordering::Relaxed),
                c.waiting.load(Ordering::Relaxed),
            );
            view.set(id.clone(), load);
        }
        view
    }

    /// Routes a job for `user`, to `pinned` when the submitter named a cluster.
    pub(crate) fn route(
        &self,
        job: &SparkJob,
        user: &str,
        pinned: Option<&str>,
    ) -> Result<Decision, RouteError> {
        match pinned {
            Some(cluster) => self.rules.route_pinned(job, Some(user), cluster),
            None => {
                let view = self.view();
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                self.rules.route_for_user(job, Some(user), &view, &mut *rng)
            }
        }
    }

    /// Runs a recorded submission: waits for a slot, calls the backend, follows the application.
    /// `answer` learns what happened as soon as the HTTP caller can be told. `adopt` asks the
    /// backend for the key first (a call before a restart may have created the application).
    pub(crate) async fn dispatch(
        self: Arc<Self>,
        record: SubmissionRecord,
        answer: Option<oneshot::Sender<Dispatched>>,
        adopt: bool,
    ) {
        let Some(_handling) = self.handle(&record.id) else {
            return;
        };
        let mut answer = answer;
        let mut tell = |what: Dispatched| {
            if let Some(tx) = answer.take() {
                let _ = tx.send(what);
            }
        };
        let Some(cluster) = self.clusters.get(&record.cluster) else {
            let message = format!("cluster {} is no longer configured", record.cluster);
            let _ = self.store.set_rejected(&record.id, &message).await;
            tell(Dispatched::Rejected(ApiError::bad_request(message)));
            return;
        };
        let permit = match cluster.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tell(Dispatched::Waiting);
                cluster.waiting.fetch_add(1, Ordering::Relaxed);
                let acquired = tokio::select! {
                    _ = self.shutdown.cancelled() => None,
                    p = cluster.slots.clone().acquire_owned() => p.ok(),
                };
                cluster.waiting.fetch_sub(1, Ordering::Relaxed);
                match acquired {
                    Some(p) => p,
                    None => return,
                }
            }
        };
        // Deleted while it waited: nothing to create.
        if matches!(self.store.get(&record.id).await, Ok(Some(r)) if r.phase == Phase::Deleted) {
            return;
        }
        let key = backend_key(&record.id);
        let options = SubmitOptions::new()
            .with_idempotency_key(key.clone())
            .with_tag("proxyUser", record.user.clone())
            .with_tag("submissionId", record.id.clone());
        let mut adopt = adopt;
        let mut delay = Duration::from_millis(500);
        let submission = loop {
            let attempt = async {
                if adopt && let Some(found) = cluster.backend.find(&key).await? {
                    return Ok(found);
                }
                cluster.backend.submit(&record.job, &options).await
            };
            let result = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = attempt => r,
            };
            match result {
                Ok(submission) => {
                    *cluster.unavailable() = None;
                    break submission;
                }
                Err(e) if e.is_temporary() => {
                    // The cluster is down or overloaded: the submission waits for it, keeping its
                    // slot, and the next try looks for what this one may have created.
                    tracing::warn!(submission = %record.id, cluster = %cluster.id, error = %e, "cluster unavailable, the submission waits");
                    *cluster.unavailable() = Some(e.to_string());
                    tell(Dispatched::Waiting);
                    adopt = true;
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    let message = e.to_string();
                    tracing::info!(submission = %record.id, cluster = %cluster.id, error = %message, "the cluster refused the submission");
                    if let Err(e) = self.store.set_rejected(&record.id, &message).await {
                        tracing::error!(submission = %record.id, error = %e, "cannot record a rejection");
                    }
                    self.metrics
                        .submission(&record.cluster, record.queue.as_deref(), "rejected");
                    tell(Dispatched::Rejected(ApiError::from(e)));
                    return;
                }
            }
        };
        if let Err(e) = self
            .store
            .set_created(&record.id, submission.id.as_str())
            .await
        {
            tracing::error!(submission = %record.id, error = %e, "cannot record a created application");
        }
        self.metrics
            .submission(&record.cluster, record.queue.as_deref(), "created");
        tell(Dispatched::Created);
        self.follow(record, submission.id, Some(permit)).await;
    }

    /// Follows a created application until it ends, keeping its latest status in memory and its
    /// state changes in the store. Holds the cluster slot (when given) until then.
    pub(crate) async fn follow(
        &self,
        record: SubmissionRecord,
        backend_id: JobId,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let Some(cluster) = self.clusters.get(&record.cluster) else {
            return;
        };
        cluster.in_flight.fetch_add(1, Ordering::Relaxed);
        let initial = match record.native_state.as_deref() {
            Some(state) => JobStatus::new(JobState::from_spark_operator(state), state),
            None => JobStatus::new(JobState::Submitted, "SUBMITTED"),
        };
        self.live().insert(record.id.clone(), initial);
        let mut previous: Option<JobStatus> = None;
        let mut failures = 0u32;
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = cluster.backend.next_status(&backend_id, previous.as_ref(), self.settings.poll_interval) => r,
            };
            match next {
                Ok(raw) => {
                    failures = 0;
                    if previous.as_ref() == Some(&raw) {
                        continue;
                    }
                    previous = Some(raw.clone());
                    let shown = shown_status(raw, &record.job);
                    let done = shown.is_terminal();
                    self.record_state(&record, &shown, done).await;
                    if done {
                        break;
                    }
                }
                Err(Error::NotFound { .. }) => {
                    if matches!(self.store.get(&record.id).await, Ok(Some(r)) if r.phase == Phase::Deleted)
                    {
                        break;
                    }
                    let gone = JobStatus::new(JobState::Failed, "FAILED").with_message(format!(
                        "the application no longer exists on cluster {} (deleted outside the gateway, or expired)",
                        record.cluster
                    ));
                    self.record_state(&record, &gone, true).await;
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(submission = %record.id, error = %e, "status failed, following on");
                    let wait = self.settings.poll_interval * 2u32.saturating_pow(failures.min(5));
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait.min(Duration::from_secs(30))) => {}
                    }
                }
            }
        }
        cluster.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    }

    async fn record_state(&self, record: &SubmissionRecord, status: &JobStatus, done: bool) {
        let terminated = done.then(|| {
            millis(status.finished_at).unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
        });
        let change = StateChange {
            native_state: bpg_state(status),
            message: status.message.as_deref(),
            spark_app_id: status.spark_application_id.as_deref(),
            attempts: status.attempts,
            // A backend that does not say when the driver started (the simulator): when we saw
            // it run, so `driver` can answer `startTime` and `podName`.
            started_ms: millis(status.started_at).or_else(|| {
                (status.state == JobState::Running
                    || (done && status.spark_application_id.is_some()))
                .then(|| chrono::Utc::now().timestamp_millis())
            }),
            terminated_ms: terminated,
        };
        if let Err(e) = self.store.set_state(&record.id, &change).await {
            tracing::error!(submission = %record.id, error = %e, "cannot record a state change");
        }
        let mut live = self.live();
        if done {
            live.remove(&record.id);
            self.metrics.finished(&record.cluster, bpg_state(status));
        } else {
            live.insert(record.id.clone(), status.clone());
        }
    }

    /// Marks `id` as handled here; `None` when it already is.
    fn handle(&self, id: &str) -> Option<Handling<'_>> {
        let fresh = self
            .handling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned());
        fresh.then(|| Handling {
            inner: self,
            id: id.to_owned(),
        })
    }

    /// The lease a submission recorded now gets.
    pub(crate) fn new_lease(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + millis_of(self.settings.lease)
    }

    /// Takes over unfinished submissions no gateway holds (at start: on a store only this
    /// gateway uses, all of them): dispatches again what was left unanswered, follows what was
    /// left running. How many were taken.
    pub(crate) async fn reconcile(self: &Arc<Self>, at_start: bool) -> bpg_core::Result<usize> {
        let now = chrono::Utc::now().timestamp_millis();
        let expired_before = if at_start && !self.store.is_shared() {
            i64::MAX
        } else {
            now
        };
        let claimed = self
            .store
            .claim_unfinished(
                &self.settings.replica,
                expired_before,
                now + millis_of(self.settings.lease),
                if at_start { usize::MAX } else { 1_000 },
            )
            .await?;
        let n = claimed.len();
        for record in claimed {
            if self
                .handling
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&record.id)
            {
                continue;
            }
            let inner = self.clone();
            match (record.phase, record.backend_id.clone()) {
                (Phase::Created, Some(backend_id)) => {
                    let permit = self
                        .clusters
                        .get(&record.cluster)
                        .and_then(|c| c.slots.clone().try_acquire_owned().ok());
                    self.tasks.spawn(async move {
                        let Some(_handling) = inner.handle(&record.id) else {
                            return;
                        };
                        inner.follow(record, JobId::new(backend_id), permit).await;
                    });
                }
                _ => {
                    self.tasks.spawn(inner.dispatch(record, None, true));
                }
            }
        }
        Ok(n)
    }

    /// Renews this gateway's leases and takes over what other gateways left, every third of a
    /// lease, until shutdown; then gives its leases up, so a restart or a replica takes them at
    /// once.
    pub(crate) async fn keep_leases(self: Arc<Self>) {
        let every = (self.settings.lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            let until = self.new_lease();
            if let Err(e) = self.store.renew_leases(&self.settings.replica, until).await {
                tracing::warn!(error = %e, "cannot renew leases; another gateway may take this one's submissions over");
            }
            match self.reconcile(false).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(submissions = n, replica = %self.settings.replica, "took over submissions another gateway left")
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for submissions to take over"),
            }
        }
    }

    /// What a waiting submission waits for, if it waits.
    pub(crate) fn waiting_for(&self, record: &SubmissionRecord) -> Option<String> {
        if record.phase != Phase::Queued {
            return None;
        }
        let c = self.clusters.get(&record.cluster)?;
        if let Some(why) = c.unavailable().clone() {
            return Some(format!("cluster {} is unavailable: {why}", c.id));
        }
        match c.cap {
            Some(cap) if c.slots.available_permits() == 0 => Some(format!(
                "cluster {} is at its cap of {cap} applications in flight; {} submissions wait for a slot, in arrival order",
                c.id,
                c.waiting.load(Ordering::Relaxed)
            )),
            _ => Some(format!(
                "the submission is being created on cluster {}",
                c.id
            )),
        }
    }
}
