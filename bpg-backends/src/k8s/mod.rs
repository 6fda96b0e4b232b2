//! [`SparkKubernetesBackend`]: `SparkApplication` resources on one cluster's API server, run by the
//! Kubeflow spark-operator (what Airflow's `SparkKubernetesOperator` does).
//!
//! - **submit** renders the job as a `sparkoperator.k8s.io/v1beta2` `SparkApplication` and creates
//!   it. With an idempotency key the resource name is derived from the key
//!   (`<job name>-<16 hex digits of the key's digest>`) and the key's digest is stamped as the label
//!   [`IDEMPOTENCY_LABEL`]: a retried submit hits `409 AlreadyExists`, finds the label matches and
//!   adopts the existing application. A live application is never updated (the operator would
//!   silently rerun it).
//! - **status** reads the resource; `status.applicationState.state` maps through
//!   [`JobState::from_spark_operator`], `errorMessage` becomes the status message.
//! - **next_status** reads the application from the backend's in-memory view of its namespace,
//!   kept by **one** list-and-watch per namespace however many jobs are followed (see
//!   `view.rs`), and returns on the first change. While that watch cannot run, it watches the one
//!   resource (`fieldSelector=metadata.name=...`), and failing that, polls.
//! - **logs** read the driver pod (`status.driverInfo.podName`), container
//!   `spark-kubernetes-driver`; following re-opens a dropped stream and skips the lines already
//!   delivered, so positions stay exact and nothing is repeated.
//! - **cancel** deletes the application with foreground propagation (its pods go first). The
//!   operator has no "cancelled" state; this backend remembers what it deleted and reports it
//!   `Cancelled` once gone. Cancelling a finished application keeps it (and its logs).
//!
//! ```no_run
//! use bpg_backends::k8s::SparkKubernetesBackend;
//! # async fn demo() -> bpg_core::Result<()> {
//! let phi = SparkKubernetesBackend::from_kubeconfig(Some("phi-cluster"), Some("spark-jobs")).await?;
//! let in_cluster = SparkKubernetesBackend::in_cluster()?;
//! # let _ = (phi, in_cluster);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Diagnostic, Diagnostics, Error, IdempotencyKey, JobId, JobState,
    JobStatus, LogLine, LogOptions, LogStream, Result, SparkJob, Submission, SubmitOptions,
};
use chrono::{DateTime, Utc};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams,
    PostParams, WatchEvent, WatchParams,
};
use serde::Deserialize;

mod config;
#[cfg(feature = "k8s-mock")]
pub mod mock;
mod view;

use view::{NamespaceView, Seen};

pub use config::{IN_CLUSTER, K8sConfig};

/// Label carrying the first 32 hex digits of the idempotency key's digest.
pub const IDEMPOTENCY_LABEL: &str = "bpg.dev/idempotency-key";
/// Annotation carrying the idempotency key as given (annotations allow any text).
pub const IDEMPOTENCY_ANNOTATION: &str = "bpg.dev/idempotency-key";
/// The driver container spark-operator creates (logs need it named when sidecars are present).
pub const DRIVER_CONTAINER: &str = "spark-kubernetes-driver";

const GROUP: &str = "sparkoperator.k8s.io";
const VERSION: &str = "v1beta2";
const KIND: &str = "SparkApplication";
const PLURAL: &str = "sparkapplications";
/// Longest resource name we create: the driver pod `<name>-driver` and Spark's UI service
/// `<name>-ui-svc` must stay valid (63-character) label values and service names.
const MAX_NAME: usize = 45;

fn spark_application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// Creates and tracks spark-operator `SparkApplication`s in one namespace of one cluster.
///
/// One instance per cluster (kubeconfig context) and namespace; cheap to clone.
#[derive(Clone)]
pub struct SparkKubernetesBackend {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    cluster: Option<String>,
    namespace: String,
    client: kube::Client,
    resource: ApiResource,
    /// Applications this instance deleted, so their disappearance reads as `Cancelled`.
    cancelled: Mutex<HashMap<JobId, JobStatus>>,
    /// One watched view per namespace followed, started on first use.
    views: Mutex<HashMap<String, Arc<NamespaceView>>>,
}

impl std::fmt::Debug for SparkKubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds credentials; show where it points, nothing else.
        f.debug_struct("SparkKubernetesBackend")
            .field("name", &self.inner.name)
            .field("cluster", &self.inner.cluster)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

fn config_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::config(format!("{what}: {e}"))
}

impl SparkKubernetesBackend {
    /// A backend from an explicit client configuration; the namespace is its `default_namespace`.
    ///
    /// Tests point it at a stand-in server (and set `default_retry = false`, so error paths are
    /// not retried behind their back).
    pub fn from_config(config: kube::Config) -> Result<Self> {
        let namespace = config.default_namespace.clone();
        let cluster = config.cluster_url.host().map(str::to_owned);
        let client = kube::Client::try_from(config)
            .map_err(|e| config_error("cannot build a Kubernetes client", e))?;
        Ok(Self::from_client(client, namespace).with_cluster(cluster))
    }

    /// A backend on an existing client, in `namespace`.
    pub fn from_client(client: kube::Client, namespace: impl Into<String>) -> Self {
        SparkKubernetesBackend {
            inner: Arc::new(Inner {
                name: "k8s".into(),
                cluster: None,
                namespace: namespace.into(),
                client,
                resource: spark_application_resource(),
                cancelled: Mutex::new(HashMap::new()),
                views: Mutex::default(),
            }),
        }
    }

    /// A backend as `config` says: its kubeconfig context (reported as the cluster) or the pod's
    /// service account, its namespace and token.
    pub async fn connect(config: &K8sConfig) -> Result<Self> {
        let backend = Self::from_config(config.load().await?)?;
        Ok(match &config.context {
            Some(ctx) => backend.with_cluster(Some(ctx.clone())),
            None => backend,
        })
    }

    /// A backend from the usual kubeconfig (`$KUBECONFIG`, else `~/.kube/config`): `context`
    /// (default: the current one) and `namespace` (default: the context's, else `default`).
    pub async fn from_kubeconfig(context: Option<&str>, namespace: Option<&str>) -> Result<Self> {
        Self::connect(&K8sConfig {
            context: context.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            ..K8sConfig::default()
        })
        .await
    }

    /// Like [`from_kubeconfig`](Self::from_kubeconfig), from a kubeconfig file at `path`.
    pub async fn from_kubeconfig_file(
        path: impl AsRef<Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Self> {
        Self::connect(&K8sConfig {
            context: context.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            kubeconfig: Some(path.as_ref().to_path_buf()),
            ..K8sConfig::default()
        })
        .await
    }

    /// A backend for code running in a pod: the service account's token and namespace.
    pub fn in_cluster() -> Result<Self> {
        let config = kube::Config::incluster()
            .map_err(|e| config_error("not running in a Kubernetes pod", e))?;
        Self::from_config(config)
    }

    /// Renames the backend (default `k8s`); submissions carry the name.
    pub fn with_name(self, name: impl Into<String>) -> Self {
        self.rebuild(|inner| inner.name = name.into())
    }

    /// Sets the cluster name reported in submissions (default: the kubeconfig context, or the
    /// API server's host).
    pub fn with_cluster(self, cluster: Option<String>) -> Self {
        self.rebuild(|inner| inner.cluster = cluster)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            name: self.inner.name.clone(),
            cluster: self.inner.cluster.clone(),
            namespace: self.inner.namespace.clone(),
            client: self.inner.client.clone(),
            resource: self.inner.resource.clone(),
            cancelled: Mutex::new(self.cancelled().clone()),
            views: Mutex::default(),
        };
        change(&mut inner);
        SparkKubernetesBackend {
            inner: Arc::new(inner),
        }
    }

    /// The namespace applications are created in.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The resource name a job gets: from the idempotency key when there is one (so a retried
    /// submit names the same resource), else random. Lower-case DNS-1123, at most 45 characters.
    ///
    /// ```
    /// use bpg_backends::k8s::SparkKubernetesBackend;
    /// use bpg_core::IdempotencyKey;
    /// let key = IdempotencyKey::for_task("daily", "run-1", "Word_Count", 1);
    /// let name = SparkKubernetesBackend::resource_name("Word_Count", Some(&key));
    /// assert!(name.starts_with("word-count-"));
    /// assert_eq!(name, SparkKubernetesBackend::resource_name("Word_Count", Some(&key)));
    /// ```
    pub fn resource_name(job_name: &str, key: Option<&IdempotencyKey>) -> String {
        let suffix = match key {
            Some(key) => key.digest(16),
            None => {
                use rand::Rng;
                let mut rng = rand::rng();
                (0..16)
                    .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
                    .collect()
            }
        };
        let mut prefix = String::new();
        for c in job_name.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                prefix.push(c);
            } else if !prefix.is_empty() && !prefix.ends_with('-') {
                prefix.push('-');
            }
        }
        prefix.truncate(MAX_NAME - suffix.len() - 1);
        let prefix = prefix.trim_end_matches('-');
        if prefix.is_empty() {
            format!("bpg-{suffix}")
        } else {
            format!("{prefix}-{suffix}")
        }
    }

    fn cancelled(&self) -> MutexGuard<'_, HashMap<JobId, JobStatus>> {
        self.inner
            .cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `namespace/name` of a job id (a bare name means this backend's namespace).
    fn locate<'a>(&'a self, id: &'a JobId) -> Result<(&'a str, &'a str)> {
        let (ns, name) = id
            .as_str()
            .split_once('/')
            .unwrap_or((self.inner.namespace.as_str(), id.as_str()));
        if ns.is_empty() || name.is_empty() {
            return Err(Error::NotFound {
                what: format!("SparkApplication {id:?} (expected namespace/name)"),
            });
        }
        Ok((ns, name))
    }

    /// The watched view of `namespace`, started on first use.
    fn view(&self, namespace: &str) -> Arc<NamespaceView> {
        let mut views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
        views
            .entry(namespace.to_owned())
            .or_insert_with(|| NamespaceView::start(self.apps(namespace), Self::status_of))
            .clone()
    }

    /// Waits, on the namespace's view, until the application's status differs from `previous` or
    /// `patience` passes; `None` when the view is not live.
    ///
    /// While the view is live it is the one source of a follower's statuses: answering from a
    /// `GET` as well could return a status the view has not reached yet, and the view's older one
    /// next, so the job would appear to go back (`RUNNING`, then `SUBMITTED`). An application the
    /// view has not seen (created a moment ago, or gone) is read once `patience` passes.
    async fn view_change(
        &self,
        id: &JobId,
        previous: &JobStatus,
        patience: Duration,
    ) -> Option<Result<JobStatus>> {
        let (ns, name) = match self.locate(id) {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let view = self.view(ns);
        let mut changes = view.subscribe(name);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match view.seen(name) {
                Seen::Live(Some(status)) if &status != previous => return Some(Ok(status)),
                Seen::Live(_) | Seen::Starting => {}
                Seen::NotLive => return None,
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Some(match view.seen(name) {
                        Seen::Live(Some(status)) => Ok(status),
                        _ => self.status_or_cancelled(id).await,
                    });
                }
            }
        }
    }

    fn apps(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.inner.client.clone(), namespace, &self.inner.resource)
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.inner.client.clone(), namespace)
    }

    fn job_id(namespace: &str, name: &str) -> JobId {
        JobId::new(format!("{namespace}/{name}"))
    }

    fn submission_of(&self, app: &DynamicObject, key: Option<&IdempotencyKey>) -> Submission {
        let namespace = app
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| self.inner.namespace.clone());
        let name = app.metadata.name.clone().unwrap_or_default();
        let mut submission =
            Submission::new(Self::job_id(&namespace, &name), self.inner.name.clone());
        submission.cluster = self.inner.cluster.clone();
        submission.namespace = Some(namespace);
        submission.idempotency_key = key.cloned().or_else(|| {
            app.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(IDEMPOTENCY_ANNOTATION))
                .map(IdempotencyKey::new)
        });
        if let Some(at) = app
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
        {
            submission.submitted_at = at;
        }
        submission
    }

    /// The object to create: the rendered manifest plus our name, key label and annotation, tags.
    fn manifest(
        &self,
        job: &SparkJob,
        name: &str,
        options: &SubmitOptions,
    ) -> Result<DynamicObject> {
        if job
            .restart_policy
            .as_ref()
            .is_some_and(|p| p.kind == "Always")
        {
            let mut problems = Diagnostics::new();
            problems.push(Diagnostic::error(
                "restartPolicy.type",
                "`Always` reruns the application for ever, so it never ends; use Never or OnFailure",
            ));
            return Err(problems.into());
        }
        let mut manifest = bpg_core::formats::to_manifest(job, name, &self.inner.namespace);
        let metadata = manifest
            .as_object_mut()
            .and_then(|m| m.get_mut("metadata"))
            .and_then(|m| m.as_object_mut())
            .ok_or_else(|| {
                Error::backend(&self.inner.name, false, "rendered manifest has no metadata")
            })?;
        let mut labels: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let mut annotations: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for (k, v) in &options.tags {
            labels.insert(k.clone(), v.clone().into());
        }
        if let Some(key) = &options.idempotency_key {
            labels.insert(IDEMPOTENCY_LABEL.into(), key.digest(32).into());
            annotations.insert(IDEMPOTENCY_ANNOTATION.into(), key.as_str().into());
        }
        for (field, extra) in [("labels", labels), ("annotations", annotations)] {
            if extra.is_empty() {
                continue;
            }
            let entry = metadata
                .entry(field)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let Some(map) = entry.as_object_mut() {
                map.extend(extra);
            }
        }
        serde_json::from_value(manifest)
            .map_err(|e| Error::backend(&self.inner.name, false, format!("rendered manifest: {e}")))
    }

    /// The status of an application object, or `Cancelling` while our delete is in progress.
    fn status_of(app: &DynamicObject) -> JobStatus {
        let status: AppStatus = app
            .data
            .get("status")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        let native = status.application_state.state.as_str();
        let mut out = JobStatus::new(
            JobState::from_spark_operator(native),
            if native.is_empty() { "NEW" } else { native },
        );
        out.message = status
            .application_state
            .error_message
            .filter(|m| !m.is_empty());
        out.spark_application_id = status.spark_application_id.filter(|s| !s.is_empty());
        out.attempts = status.execution_attempts;
        out.started_at = status.last_submission_attempt_time;
        out.finished_at = status.termination_time;
        if app.metadata.deletion_timestamp.is_some() && !out.is_terminal() {
            out.state = JobState::Cancelling;
        }
        out
    }

    /// A 404 for an application this instance deleted is its cancellation completing.
    fn gone(&self, id: &JobId, error: Error) -> Result<JobStatus> {
        if matches!(error, Error::NotFound { .. })
            && let Some(status) = self.cancelled().get(id)
        {
            return Ok(status.clone());
        }
        Err(error)
    }

    async fn get(&self, id: &JobId) -> Result<DynamicObject> {
        let (ns, name) = self.locate(id)?;
        self.apps(ns)
            .get(name)
            .await
            .map_err(|e| map_error(&self.inner.name, &format!("SparkApplication {id}"), e))
    }

    /// Watches the application until its status differs from `previous` or `patience` passes.
    async fn watch_for_change(
        &self,
        id: &JobId,
        previous: &JobStatus,
        patience: Duration,
    ) -> Result<JobStatus> {
        let (ns, name) = self.locate(id)?;
        let current = match self.get(id).await {
            Ok(app) => app,
            Err(e) => return self.gone(id, e),
        };
        let status = Self::status_of(&current);
        if &status != previous {
            return Ok(status);
        }
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        // kube rejects watch timeouts of 295 s and more.
        let seconds = patience.as_secs().clamp(1, 290) as u32;
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(seconds);
        let apps = self.apps(ns);
        let watched = async {
            let mut events = apps
                .watch(&params, &version)
                .await
                .map_err(|e| map_error(&self.inner.name, &format!("watch {id}"), e))?
                .boxed();
            while let Some(event) = events.next().await {
                match event.map_err(|e| map_error(&self.inner.name, &format!("watch {id}"), e))? {
                    WatchEvent::Added(app) | WatchEvent::Modified(app) => {
                        let status = Self::status_of(&app);
                        if &status != previous {
                            return Ok(Some(status));
                        }
                    }
                    WatchEvent::Deleted(_) => return Ok(None),
                    WatchEvent::Bookmark(_) => {}
                    // 410 Gone (our version is too old) and the like: read afresh.
                    WatchEvent::Error(_) => return Ok(None),
                }
            }
            Ok(None)
        };
        // The server ends the watch after `seconds`; a silent connection must not hang us longer.
        let limit = patience + Duration::from_secs(5);
        match tokio::time::timeout(limit, watched).await {
            Ok(Ok(Some(status))) => Ok(status),
            Ok(Ok(None)) | Err(_) => self.status_or_cancelled(id).await,
            Ok(Err(e)) => Err(e),
        }
    }

    async fn status_or_cancelled(&self, id: &JobId) -> Result<JobStatus> {
        match self.get(id).await {
            Ok(app) => Ok(Self::status_of(&app)),
            Err(e) => self.gone(id, e),
        }
    }

    /// The driver pod's name, once the operator has recorded it.
    async fn driver_pod(&self, id: &JobId) -> Result<(Option<String>, JobStatus)> {
        let app = self.get(id).await?;
        let status: AppStatus = app
            .data
            .get("status")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        Ok((
            status.driver_info.pod_name.filter(|p| !p.is_empty()),
            Self::status_of(&app),
        ))
    }
}

/// The parts of `SparkApplicationStatus` the backend reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AppStatus {
    application_state: ApplicationState,
    spark_application_id: Option<String>,
    driver_info: DriverInfo,
    execution_attempts: Option<u32>,
    last_submission_attempt_time: Option<DateTime<Utc>>,
    termination_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ApplicationState {
    state: String,
    error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DriverInfo {
    pod_name: Option<String>,
}

/// Maps a kube error: API `Status` codes to the matching variants, transport trouble to `Unavailable`.
fn map_error(backend: &str, what: &str, error: kube::Error) -> Error {
    match error {
        kube::Error::Api(status) => {
            let message = format!("{what}: {} ({})", status.message, status.reason);
            match status.code {
                404 => Error::NotFound {
                    what: what.to_owned(),
                },
                409 => Error::Conflict { message },
                401 => Error::Unauthorized { message },
                403 => Error::Forbidden { message },
                400 | 422 => {
                    let mut problems = Diagnostics::new();
                    problems.push(Diagnostic::error(KIND, message));
                    Error::InvalidSpec(problems)
                }
                429 => Error::RateLimited {
                    retry_after: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                    message,
                },
                500..=599 => Error::Unavailable { message },
                _ => Error::backend(backend, false, message),
            }
        }
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)) => {
            Error::Unavailable {
                message: format!("{what}: {e}"),
            }
        }
        other => Error::backend(backend, false, format!("{what}: {other}")),
    }
}

#[async_trait]
impl Backend for SparkKubernetesBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let key = options.idempotency_key.as_ref();
        let name = Self::resource_name(&job.name, key);
        let object = self.manifest(job, &name, options)?;
        let apps = self.apps(&self.inner.namespace);
        let what = format!("SparkApplication {}/{name}", self.inner.namespace);
        match apps.create(&PostParams::default(), &object).await {
            Ok(created) => Ok(self.submission_of(&created, key)),
            Err(kube::Error::Api(status)) if status.code == 409 && key.is_some() => {
                // Already submitted (a retry, or another process with the same key): adopt it,
                // but only if it really carries this key.
                let existing = apps
                    .get(&name)
                    .await
                    .map_err(|e| map_error(&self.inner.name, &what, e))?;
                let label = existing
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(IDEMPOTENCY_LABEL));
                match (label, key) {
                    (Some(found), Some(key)) if *found == key.digest(32) => {
                        tracing::info!(backend = %self.inner.name, app = %what, "adopting the application created earlier with this idempotency key");
                        Ok(self.submission_of(&existing, Some(key)))
                    }
                    _ => Err(Error::Conflict {
                        message: format!(
                            "{what} already exists and was not created with this idempotency key"
                        ),
                    }),
                }
            }
            Err(e) => Err(map_error(&self.inner.name, &what, e)),
        }
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.status_or_cancelled(id).await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        let (ns, _) = self.locate(id)?;
        let pods = self.pods(ns);
        if !options.follow {
            let pod = match self.driver_pod(id).await {
                Ok((pod, _)) => pod,
                Err(e) => {
                    // Cancelled and gone: nothing left to read.
                    self.gone(id, e)?;
                    None
                }
            };
            let Some(pod) = pod else {
                return Ok(futures::stream::empty().boxed());
            };
            let params = LogParams {
                container: Some(DRIVER_CONTAINER.into()),
                ..LogParams::default()
            };
            let text = match pods.logs(&pod, &params).await {
                Ok(text) => text,
                // Container not started yet (400) or pod already gone (404): no lines.
                Err(kube::Error::Api(s)) if s.code == 400 || s.code == 404 => String::new(),
                Err(e) => {
                    return Err(map_error(&self.inner.name, &format!("logs of {id}"), e));
                }
            };
            let lines: Vec<&str> = text.lines().collect();
            let total = lines.len() as u64;
            let first = match options.tail {
                Some(n) => total.saturating_sub(n).max(options.from_line),
                None => options.from_line,
            };
            let out: Vec<Result<LogLine>> = lines
                .into_iter()
                .enumerate()
                .skip(usize::try_from(first).unwrap_or(usize::MAX))
                .map(|(i, text)| {
                    Ok(LogLine {
                        position: i as u64,
                        text: text.to_owned(),
                    })
                })
                .collect();
            return Ok(futures::stream::iter(out).boxed());
        }
        Ok(follow_logs(self.clone(), id.clone(), options.from_line))
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        let (ns, name) = self.locate(id)?;
        let app = match self.get(id).await {
            Ok(app) => app,
            // Deleted by us before: cancelling again is fine.
            Err(e) => return self.gone(id, e).map(|_| ()),
        };
        let current = Self::status_of(&app);
        if current.is_terminal() {
            // Finished: keep the application, its status and its driver's logs.
            return Ok(());
        }
        let mut cancelled = JobStatus::new(JobState::Cancelled, "DELETED")
            .with_message("SparkApplication deleted on request");
        cancelled.spark_application_id = current.spark_application_id.clone();
        cancelled.attempts = current.attempts;
        cancelled.started_at = current.started_at;
        cancelled.finished_at = Some(Utc::now());
        self.cancelled().insert(id.clone(), cancelled);
        match self
            .apps(ns)
            .delete(name, &DeleteParams::foreground())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.cancelled().remove(id);
                Err(map_error(&self.inner.name, &format!("delete {id}"), e))
            }
        }
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let params =
            ListParams::default().labels(&format!("{IDEMPOTENCY_LABEL}={}", key.digest(32)));
        let list = self
            .apps(&self.inner.namespace)
            .list(&params)
            .await
            .map_err(|e| map_error(&self.inner.name, "list SparkApplications", e))?;
        Ok(list
            .items
            .iter()
            .find(|app| app.metadata.deletion_timestamp.is_none())
            .or(list.items.first())
            .map(|app| self.submission_of(app, Some(key))))
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        let Some(previous) = previous else {
            return self.status(id).await;
        };
        if previous.is_terminal() {
            return self.status(id).await;
        }
        if let Some(result) = self.view_change(id, previous, poll_interval).await {
            return result;
        }
        match self.watch_for_change(id, previous, poll_interval).await {
            Ok(status) => Ok(status),
            Err(e) if e.is_temporary() || matches!(e, Error::Backend { .. }) => {
                // The watch failed (a proxy that does not stream, a dropped connection): poll.
                tracing::debug!(job = %id, error = %e, "watch failed, polling instead");
                tokio::time::sleep(poll_interval).await;
                self.status(id).await
            }
            Err(e) => Err(e),
        }
    }
}

/// Follows the driver log: waits for the driver container, streams it, and when the stream drops
/// while the driver still runs, re-opens it and skips the lines already delivered (the log
/// subresource always starts at the container's first line, so positions stay exact). Once the
/// driver has finished, one last read picks up anything a dropped stream missed.
fn follow_logs(backend: SparkKubernetesBackend, id: JobId, from_line: u64) -> LogStream {
    type Lines = futures::stream::BoxStream<'static, std::io::Result<String>>;
    struct Follow {
        backend: SparkKubernetesBackend,
        id: JobId,
        /// Position of the next line to deliver.
        next: u64,
        /// The open stream and the position of its next line.
        open: Option<(Lines, u64)>,
        /// Lines of the final read, still to deliver.
        last: std::collections::VecDeque<LogLine>,
        done: bool,
    }
    let state = Follow {
        backend,
        id,
        next: from_line,
        open: None,
        last: Default::default(),
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(line) = s.last.pop_front() {
                return Some((Ok(line), s));
            }
            if s.done {
                return None;
            }
            if let Some((lines, position)) = &mut s.open {
                match lines.next().await {
                    Some(Ok(text)) => {
                        let at = *position;
                        *position += 1;
                        if at >= s.next {
                            s.next = at + 1;
                            return Some((Ok(LogLine { position: at, text }), s));
                        }
                        continue;
                    }
                    // End of stream, or the connection dropped: find out which below.
                    Some(Err(_)) | None => s.open = None,
                }
            }
            let (pod, status) = match s.backend.driver_pod(&s.id).await {
                Ok(found) => found,
                Err(e) => {
                    s.done = true;
                    match s.backend.gone(&s.id, e) {
                        Ok(_) => continue,
                        Err(e) => return Some((Err(e), s)),
                    }
                }
            };
            let Some(pod) = pod else {
                if status.is_terminal() {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let namespace = match s.backend.locate(&s.id) {
                Ok((ns, _)) => ns.to_owned(),
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            };
            let finished = status.is_terminal()
                || s.backend
                    .driver_finished(&pod, &namespace)
                    .await
                    .unwrap_or(true);
            if finished {
                // One last complete read, then the stream ends.
                s.done = true;
                let options = LogOptions::snapshot().from_line(s.next);
                match s.backend.logs(&s.id, &options).await {
                    Ok(rest) => {
                        let rest: Vec<Result<LogLine>> = rest.collect().await;
                        s.last = rest.into_iter().filter_map(|l| l.ok()).collect();
                        continue;
                    }
                    Err(e) => return Some((Err(e), s)),
                }
            }
            let params = LogParams {
                container: Some(DRIVER_CONTAINER.into()),
                follow: true,
                ..LogParams::default()
            };
            match s.backend.pods(&namespace).log_stream(&pod, &params).await {
                Ok(reader) => s.open = Some((Box::pin(reader.lines()), 0)),
                // The container is still being created (400), or the pod not there yet (404).
                Err(kube::Error::Api(st)) if st.code == 400 || st.code == 404 => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    let err = map_error(&s.backend.inner.name, &format!("logs of {}", s.id), e);
                    if !err.is_temporary() {
                        s.done = true;
                        return Some((Err(err), s));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
    .boxed()
}

impl SparkKubernetesBackend {
    /// Whether the driver container has terminated (or its pod is gone).
    async fn driver_finished(&self, pod: &str, namespace: &str) -> Result<bool> {
        let pod = match self.pods(namespace).get_opt(pod).await {
            Ok(Some(pod)) => pod,
            Ok(None) => return Ok(true),
            Err(e) => return Err(map_error(&self.inner.name, "driver pod", e)),
        };
        let Some(status) = pod.status else {
            return Ok(false);
        };
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return Ok(true);
        }
        Ok(status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .any(|c| {
                c.name == DRIVER_CONTAINER
                    && c.state.as_ref().is_some_and(|s| s.terminated.is_some())
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_dns_labels_of_bounded_length() {
        let key = IdempotencyKey::new("k");
        for job in ["", "---", "Ünïcode job", &"x".repeat(200), "a.b_c d"] {
            let name = SparkKubernetesBackend::resource_name(job, Some(&key));
            assert!(name.len() <= MAX_NAME, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
            assert!(name.ends_with(&key.digest(16)), "{name}");
        }
        let a = SparkKubernetesBackend::resource_name("pi", None);
        let b = SparkKubernetesBackend::resource_name("pi", None);
        assert_ne!(a, b, "no key, no collisions");
    }
}
