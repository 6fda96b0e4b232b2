//! The HTTP layer: BPG's REST API (and our extensions) as axum handlers over the shared [`Inner`].
//!
//! Every path is served under the context path and each alias. Handlers are small: authenticate
//! the caller, look the submission up, render BPG's JSON shape. Errors are [`ApiError`]s.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path as FsPath};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bpg_client::SubmissionStatus;
use bpg_core::formats::{parse_application, to_bpg_request};
use bpg_core::{JobId, LogOptions, SparkJob};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::ids;
use crate::openapi;
use crate::service::{Dispatched, Inner, bpg_state};
use crate::store::{AuditEntry, Phase, StoredStatus, SubmissionRecord, SubmissionStoreExt};

type Shared = State<Arc<Inner>>;

/// The user BPG lets impersonate others with `?dagUser=`.
pub const AIRFLOW_SYSTEM_ACCOUNT: &str = "airflow_system_account";

/// Extensions this gateway advertises in `/admin/version`.
pub const EXTENSIONS: &[&str] = &["batch-status", "explain", "idempotency-key", "audit"];

/// Builds the router: the API under every prefix, `/metrics`, health, the OpenAPI document.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let api = Router::new()
        .route("/spark", post(submit))
        .route("/spark/mySubmissions", get(my_submissions))
        .route("/spark/statuses", post(batch_status))
        .route("/spark/{id}", delete(delete_submission))
        .route("/spark/{id}/status", get(status))
        .route("/spark/{id}/spec", get(spec))
        .route("/spark/{id}/driver", get(driver))
        .route("/spark/{id}/describe", get(describe))
        .route("/spark/{id}/explain", get(explain))
        .route("/log", get(log))
        .route("/s3/{name}", post(upload))
        .route("/admin/submissions", get(admin_submissions))
        .route("/admin/audit", get(admin_audit))
        .route("/admin/version", get(version))
        .route("/healthcheck/status", get(healthcheck))
        .route("/openapi.json", get(openapi_json))
        .route("/openapi.yaml", get(openapi_yaml));
    let mut app = Router::new();
    let mut prefixes = vec![inner.settings.context_path.clone()];
    prefixes.extend(inner.settings.aliases.iter().cloned());
    for prefix in prefixes {
        let prefix = format!("/{}", prefix.trim_matches('/'));
        app = if prefix == "/" {
            app.merge(api.clone())
        } else {
            app.nest(&prefix, api.clone())
        };
    }
    app.route("/metrics", get(metrics))
        .route("/healthcheck", get(health))
        .route("/openapi.json", get(openapi_json))
        .route("/openapi.yaml", get(openapi_yaml))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(inner.clone(), observe))
        .layer(DefaultBodyLimit::max(inner.settings.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            inner.settings.request_timeout,
        ))
        .with_state(inner)
}

async fn observe(State(inner): Shared, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    inner
        .metrics
        .request(method.as_str(), &route, status, started.elapsed());
    tracing::debug!(method = %method, route = %route, status, took_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "HTTP 404 Not Found: no route {method} {}",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "HTTP 405 Method Not Allowed: {method} is not served on {}",
            uri.path()
        ),
    )
}

/// The path's submission id, with a 400 in BPG's body when the path cannot be read.
struct SubmissionPath(String);

impl<S: Send + Sync> FromRequestParts<S> for SubmissionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let path = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| ApiError::bad_request(format!("invalid path: {e}")))?;
        Ok(SubmissionPath(path.0))
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
}

/// The authenticated caller of a request and the address it came from (see [`crate::auth`]).
/// A refusal is answered (401, or 429 past a limit); a failed sign-in (credentials presented
/// and refused) is audited.
pub(crate) struct Caller {
    pub principal: Principal,
    pub address: Option<IpAddr>,
}

impl Caller {
    fn name(&self) -> &str {
        &self.principal.name
    }

    /// An audit entry of this caller.
    fn audit(&self, action: &str, outcome: &str) -> AuditEntry {
        let mut e = AuditEntry::new(action, self.name(), outcome);
        e.address = self.address.map(|a| a.to_string());
        e
    }

    /// 403 unless the caller may act on a submission of `owner`; a denial is audited.
    async fn may_act_on(
        &self,
        inner: &Inner,
        action: &str,
        id: &str,
        owner: &str,
    ) -> Result<(), ApiError> {
        if self.principal.may_act_on(owner) {
            return Ok(());
        }
        let message = format!(
            "{} may not {action} submission {id}: it is {owner}'s, and only its owner and admins may",
            self.name()
        );
        let mut e = self.audit(action, "denied");
        e.submission = Some(id.to_owned());
        e.message = message.clone();
        inner.audit(e).await;
        Err(ApiError::forbidden(message))
    }

    /// 403 unless the caller is an admin; a denial is audited.
    async fn must_be_admin(&self, inner: &Inner, action: &str) -> Result<(), ApiError> {
        if self.principal.admin {
            return Ok(());
        }
        let message = format!("{} may not {action}: it is for admins only", self.name());
        let mut e = self.audit(action, "denied");
        e.message = message.clone();
        inner.audit(e).await;
        Err(ApiError::forbidden(message))
    }
}

impl FromRequestParts<Arc<Inner>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        inner: &Arc<Inner>,
    ) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        match inner
            .auth
            .authenticate(&inner.settings, &parts.headers, address)
            .await
        {
            Ok(principal) => Ok(Caller { principal, address }),
            Err(refused) => {
                // A failed attempt is audited; a 429 is not: its limit is there to keep a flood
                // from costing anything, a write per request included.
                if refused.attempted && refused.error.status == StatusCode::UNAUTHORIZED {
                    let mut e = AuditEntry::new(
                        "sign-in",
                        refused.name.unwrap_or_default(),
                        "unauthenticated",
                    );
                    e.address = address.map(|a| a.to_string());
                    e.message = format!("{} {}", parts.method, parts.uri.path());
                    inner.audit(e).await;
                }
                Err(refused.error)
            }
        }
    }
}

/// The record of `id` for `caller` to `action`: 400 for a malformed id, 404 for an unknown one,
/// 403 when it is another user's, then 404 for a deleted one.
async fn lookup(
    inner: &Inner,
    caller: &Caller,
    action: &str,
    id: &str,
) -> Result<SubmissionRecord, ApiError> {
    ids::check_shape(id).map_err(ApiError::bad_request)?;
    let record = inner
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Application {id} not found")))?;
    caller.may_act_on(inner, action, id, &record.user).await?;
    not_deleted(id, record.phase, record.deleted_by.as_deref())?;
    Ok(record)
}

/// [`lookup`] of the status only, which reads no job.
async fn lookup_status(inner: &Inner, caller: &Caller, id: &str) -> Result<StoredStatus, ApiError> {
    ids::check_shape(id).map_err(ApiError::bad_request)?;
    let status = inner
        .store
        .statuses_many(&[id])
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| ApiError::not_found(format!("Application {id} not found")))?;
    caller.may_act_on(inner, "read", id, &status.user).await?;
    not_deleted(id, status.phase, status.deleted_by.as_deref())?;
    Ok(status)
}

/// A deleted submission answers 404, saying who deleted it.
fn not_deleted(id: &str, phase: Phase, deleted_by: Option<&str>) -> Result<(), ApiError> {
    if phase == Phase::Deleted {
        return Err(ApiError::not_found(format!(
            "Application {id} not found: it was deleted by {}",
            deleted_by.unwrap_or("a user")
        )));
    }
    Ok(())
}

fn take_extra_str(job: &mut SparkJob, key: &str) -> Option<String> {
    match job.extra.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Picks an image from `sparkImages` when the job names none, as BPG does.
fn resolve_image(inner: &Inner, job: &mut SparkJob) -> Result<(), ApiError> {
    let images = &inner.settings.spark_images;
    if job.image.is_some() || images.is_empty() {
        return Ok(());
    }
    let kind = job.app_type.as_str();
    let image = images.iter().find(|i| {
        i.version.eq_ignore_ascii_case(&job.spark_version)
            && i.types.iter().any(|t| t.eq_ignore_ascii_case(kind))
    });
    match image {
        Some(image) => {
            job.image = Some(image.name.clone());
            Ok(())
        }
        None => Err(ApiError::bad_request(format!(
            "Spark image not found for type: {kind}, version: {}",
            job.spark_version
        ))),
    }
}

/// The Spark conf of a job routed to `cluster`, as BPG layers it: `defaultSparkConf`, the
/// cluster's `sparkConf`, the job's own, `fixedSparkConf`; the placeholder
/// `{spark-application-resource-name}` is the submission id in the first two. Also the cluster's
/// default driver service account and time to live.
fn apply_cluster_settings(inner: &Inner, job: &mut SparkJob, cluster: &str, id: &str) {
    const PLACEHOLDER: &str = "{spark-application-resource-name}";
    let s = &inner.settings;
    let own = std::mem::take(&mut job.spark_conf);
    let cluster_settings = s.clusters.get(cluster);
    let mut conf = BTreeMap::new();
    let layered = s.default_spark_conf.iter().chain(
        cluster_settings
            .into_iter()
            .flat_map(|c| c.spark_conf.iter()),
    );
    for (k, v) in layered {
        conf.insert(k.clone(), v.replace(PLACEHOLDER, id));
    }
    conf.extend(own);
    conf.extend(
        s.fixed_spark_conf
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    job.spark_conf = conf;
    if let Some(c) = cluster_settings {
        if job.driver.service_account.is_none() {
            job.driver.service_account = c.spark_service_account.clone();
        }
        if job.time_to_live_seconds.is_none() {
            job.time_to_live_seconds = c.ttl_seconds;
        }
    }
}

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(rename = "dagUser")]
    dag_user: Option<String>,
}

/// `POST /spark`: a BPG request (JSON or YAML by `Content-Type`, by content when there is none).
async fn submit(
    State(inner): Shared,
    caller: Caller,
    headers: HeaderMap,
    q: Result<Query<SubmitQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let proxy_user = match q.dag_user.filter(|u| !u.is_empty()) {
        Some(dag_user) if caller.principal.impersonate => {
            // It becomes a label on the application and a name in the audit log.
            if dag_user.len() > 253
                || dag_user
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(ApiError::bad_request(format!(
                    "dagUser {dag_user:?} is not a user name: at most 253 characters, without spaces or control characters"
                )));
            }
            dag_user
        }
        _ => caller.name().to_owned(),
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send a SubmitApplicationRequest as JSON or YAML",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let source = if content_type.contains("yaml") {
        "request.yaml"
    } else if content_type.contains("json") {
        "request.json"
    } else {
        "request"
    };
    let parsed = parse_application(text, Some(FsPath::new(source)))
        .map_err(|d| ApiError::bad_request(d.to_string()))?;
    let mut job = parsed.job;
    let suffix = take_extra_str(&mut job, "submissionIdSuffix");
    if let Some(s) = &suffix {
        ids::check_suffix(s).map_err(ApiError::bad_request)?;
    }
    let pinned = take_extra_str(&mut job, "clusterId");
    // Queue tokens are secrets: never stored, never handed on.
    let queue_token = take_extra_str(&mut job, "queueToken");
    let _ = queue_token;
    for hidden in [
        "mode",
        "overheadFactor",
        "driverOverheadFactor",
        "executorOverheadFactor",
    ] {
        job.extra.remove(hidden);
    }
    resolve_image(&inner, &mut job)?;
    let decision = match inner.route(&job, &proxy_user, pinned.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            inner.metrics.submission(
                pinned.as_deref().unwrap_or(""),
                job.queue.as_deref(),
                "denied",
            );
            let message = format!("the submission cannot be routed: {e}");
            let mut entry = caller.audit("submit", "refused");
            entry.queue = job.queue.clone();
            entry.cluster = pinned.clone();
            entry.message = message.clone();
            inner.audit(entry).await;
            return Err(ApiError::bad_request(message));
        }
    };
    if decision.queue.is_some() {
        job.queue = decision.queue.clone();
    }
    let refuse = |outcome: &'static str, message: String| {
        let mut entry = caller.audit("submit", outcome);
        entry.queue = job.queue.clone();
        entry.cluster = Some(decision.cluster.clone());
        entry.message = message;
        entry
    };
    if !caller.principal.admin
        && let Err(why) = inner.auth.may_submit(&proxy_user, job.queue.as_deref())
    {
        inner
            .metrics
            .submission(&decision.cluster, job.queue.as_deref(), "denied");
        inner.audit(refuse("denied", why.clone())).await;
        return Err(ApiError::forbidden(why));
    }
    if let Some(limit) = inner.settings.limits.max_in_flight_per_user {
        let unfinished = inner.store.unfinished_count(&proxy_user).await?;
        if unfinished >= u64::from(limit) {
            let message = format!(
                "{proxy_user} has {unfinished} submissions not finished, the most this gateway takes per user ({limit}); submit again when one has ended"
            );
            inner.audit(refuse("limited", message.clone())).await;
            return Err(ApiError {
                retry_after: Some(10),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            });
        }
    }
    let id = ids::new_id(&decision.cluster, suffix.as_deref());
    apply_cluster_settings(&inner, &mut job, &decision.cluster, &id);
    let mut record = SubmissionRecord::new(
        id.clone(),
        decision.cluster.clone(),
        decision.connection.clone(),
        proxy_user.clone(),
        job,
    );
    record.owner = Some(inner.settings.replica.clone());
    record.lease_until_ms = Some(inner.new_lease());
    record.decision = Some(json!({
        "rule": decision.rule,
        "text": decision.explanation.to_string(),
        "explanation": serde_json::to_value(&decision.explanation).unwrap_or(Value::Null),
    }));
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or(suffix);
    if let Some(key) = &key {
        record = record.with_dedupe(&proxy_user, key);
    }
    let mut entry = caller.audit("submit", "accepted");
    entry.queue = record.queue.clone();
    entry.cluster = Some(record.cluster.clone());
    if proxy_user != caller.name() {
        entry.message = format!("as {proxy_user}");
    }
    if let Some(existing) = inner.store.insert(&record).await? {
        inner
            .metrics
            .submission(&existing.cluster, existing.queue.as_deref(), "duplicate");
        entry.outcome = "duplicate".into();
        entry.submission = Some(existing.id.clone());
        inner.audit(entry).await;
        return Ok(Json(json!({ "submissionId": existing.id })));
    }
    tracing::info!(submission = %id, user = %proxy_user, cluster = %decision.cluster, rule = %decision.rule, "submission recorded");
    entry.submission = Some(id.clone());
    let (tx, rx) = oneshot::channel();
    inner
        .tasks
        .spawn(inner.clone().dispatch(record, Some(tx), false));
    let answer = match tokio::time::timeout(inner.settings.submit_wait, rx).await {
        Ok(Ok(Dispatched::Rejected(e))) => {
            entry.outcome = "rejected".into();
            entry.message = e.message.clone();
            Err(e)
        }
        _ => Ok(Json(json!({ "submissionId": id }))),
    };
    inner.audit(entry).await;
    answer
}

/// BPG's GetSubmissionStatusResponse for a submission: its live status while followed, the
/// stored one otherwise.
fn status_of(inner: &Inner, r: &StoredStatus) -> SubmissionStatus {
    let live = (r.phase == Phase::Created)
        .then(|| inner.live_status(&r.id))
        .flatten();
    let (state, message, app_id, attempts, terminated) = match (r.phase, live) {
        (Phase::Queued, _) => ("SUBMITTED".to_owned(), None, None, None, None),
        (_, Some(s)) => (
            bpg_state(&s).to_owned(),
            s.message,
            s.spark_application_id.or_else(|| r.spark_app_id.clone()),
            s.attempts.or(r.attempts),
            None,
        ),
        _ => (
            r.native_state.clone().unwrap_or_else(|| "UNKNOWN".into()),
            r.message.clone(),
            r.spark_app_id.clone(),
            r.attempts,
            r.terminated_ms,
        ),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let duration = match terminated {
        Some(t) => (t - r.created_ms).max(0),
        None if state == "RUNNING" || state == "SUBMITTED" => (now - r.created_ms).max(0),
        None => 0,
    };
    SubmissionStatus {
        creation_time: Some(r.created_ms),
        spark_application_id: app_id,
        execution_attempts: attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        termination_time: terminated,
        duration: Some(duration),
        application_state: Some(state),
        application_error_message: message,
        spark_ui_url: None,
    }
}

/// [`status_of`] as a JSON object, for answers that add fields to it.
fn status_fields(inner: &Inner, r: &StoredStatus) -> Map<String, Value> {
    match serde_json::to_value(status_of(inner, r)) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn gib(q: Option<bpg_core::MemoryQuantity>) -> i64 {
    q.map_or(1, |q| (q.bytes() >> 30) as i64)
}

/// BPG's SubmissionSummary for a record.
fn summary(inner: &Inner, r: &SubmissionRecord) -> Value {
    let mut m = status_fields(inner, &StoredStatus::from(r));
    let job = &r.job;
    let driver_cores = i64::from(job.driver.cores.unwrap_or(1));
    let executors = i64::from(job.executor.instances.unwrap_or(1));
    let executor_cores = i64::from(job.executor.cores.unwrap_or(1));
    let driver_gb = gib(job.driver.memory);
    let executor_gb = gib(job.executor.memory);
    m.insert("submissionId".into(), json!(r.id));
    m.insert("user".into(), json!(r.user));
    m.insert(
        "queue".into(),
        json!(
            r.queue
                .as_deref()
                .map_or(String::new(), |q| format!("root.{q}"))
        ),
    );
    m.insert(
        "dagName".into(),
        json!(r.dag_name.clone().unwrap_or_default()),
    );
    m.insert("driverCores".into(), json!(driver_cores));
    m.insert("driverMemoryGB".into(), json!(driver_gb));
    m.insert("executorInstances".into(), json!(executors));
    m.insert("executorCores".into(), json!(executor_cores));
    m.insert("executorMemoryGB".into(), json!(executor_gb));
    m.insert(
        "totalCores".into(),
        json!(executors * executor_cores + driver_cores),
    );
    m.insert(
        "totalMemoryGB".into(),
        json!(executors * executor_gb + driver_gb),
    );
    m.insert("sparkVersion".into(), json!(r.spark_version));
    if let Some(name) = &r.app_name {
        m.insert("applicationName".into(), json!(name));
    }
    if !job.arguments.is_empty() {
        m.insert("applicationArguments".into(), json!(job.arguments));
    }
    m.insert("cluster".into(), json!(r.cluster));
    Value::Object(m)
}

async fn status(
    State(inner): Shared,
    caller: Caller,
    SubmissionPath(id): SubmissionPath,
) -> Result<Json<SubmissionStatus>, ApiError> {
    let status = lookup_status(&inner, &caller, &id).await?;
    Ok(Json(status_of(&inner, &status)))
}

/// The application's spec as BPG shows it: the request's fields, `env` left out.
fn spec_value(r: &SubmissionRecord) -> Value {
    let mut spec = serde_json::to_value(to_bpg_request(&r.job)).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut spec {
        for pod in ["driver", "executor"] {
            if let Some(Value::Object(p)) = m.get_mut(pod) {
                p.remove("env");
            }
        }
        m.remove("queueToken");
        m.insert("proxyUser".into(), json!(r.user));
    }
    spec
}

async fn spec(
    State(inner): Shared,
    caller: Caller,
    SubmissionPath(id): SubmissionPath,
) -> Result<Json<Value>, ApiError> {
    let record = lookup(&inner, &caller, "read", &id).await?;
    Ok(Json(spec_value(&record)))
}

async fn driver(
    State(inner): Shared,
    caller: Caller,
    SubmissionPath(id): SubmissionPath,
) -> Result<Json<Value>, ApiError> {
    let record = lookup(&inner, &caller, "read", &id).await?;
    let started = record.started_ms.or_else(|| {
        inner
            .live_status(&id)
            .and_then(|s| s.started_at)
            .map(|t| t.timestamp_millis())
    });
    let body = match (&record.backend_id, started) {
        (Some(backend_id), Some(start)) => {
            let name = backend_id.rsplit('/').next().unwrap_or(backend_id);
            json!({"podName": format!("{name}-driver"), "startTime": start})
        }
        _ => json!({}),
    };
    Ok(Json(body))
}

fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

async fn describe(
    State(inner): Shared,
    caller: Caller,
    SubmissionPath(id): SubmissionPath,
) -> Result<Response, ApiError> {
    let record = lookup(&inner, &caller, "read", &id).await?;
    let mut text = String::from("--- Spark Spec ---\n");
    text.push_str(&serde_saphyr::to_string(&spec_value(&record)).unwrap_or_default());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("--- Spark Application Events ---\n");
    for e in inner.store.events(&id).await? {
        text.push_str(&format!(
            "{} {} {}\n",
            format_time(e.at_ms),
            e.reason,
            e.message
        ));
    }
    if let Some(d) = record
        .decision
        .as_ref()
        .and_then(|d| d.get("text"))
        .and_then(Value::as_str)
    {
        text.push_str("--- Routing Decision ---\n");
        text.push_str(d);
        text.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], text).into_response())
}

async fn explain(
    State(inner): Shared,
    caller: Caller,
    SubmissionPath(id): SubmissionPath,
) -> Result<Json<Value>, ApiError> {
    let record = lookup(&inner, &caller, "read", &id).await?;
    let status = status_fields(&inner, &StoredStatus::from(&record));
    let waiting = inner.waiting_for(&record);
    let decision = record.decision.clone().unwrap_or(Value::Null);
    let mut summary = format!(
        "{id} was routed to cluster {} (connection {})",
        record.cluster, record.connection
    );
    if let Some(text) = decision.get("text").and_then(Value::as_str) {
        summary.push_str(":\n");
        summary.push_str(text);
    }
    match &waiting {
        Some(why) => summary.push_str(&format!("\nwaiting: {why}")),
        None => summary.push_str(&format!(
            "\nstate: {}",
            status
                .get("applicationState")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
        )),
    }
    Ok(Json(json!({
        "submissionId": id,
        "cluster": record.cluster,
        "connection": record.connection,
        "phase": record.phase,
        "followedBy": record.owner,
        "applicationState": status.get("applicationState"),
        "rule": decision.get("rule"),
        "decision": decision.get("explanation"),
        "waitingFor": waiting,
        "summary": summary,
    })))
}

async fn delete_submission(
    State(inner): Shared,
    caller: Caller,
    SubmissionPath(id): SubmissionPath,
) -> Result<Json<Value>, ApiError> {
    ids::check_shape(&id).map_err(ApiError::bad_request)?;
    let record = inner
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Application {id} not found")))?;
    caller
        .may_act_on(&inner, "delete", &id, &record.user)
        .await?;
    // Deleting twice is not an error, as in BPG.
    if record.phase == Phase::Deleted {
        return Ok(Json(json!({ "submissionId": id })));
    }
    if let (Phase::Created, Some(backend_id)) = (record.phase, &record.backend_id) {
        let cluster = inner.clusters.get(&record.cluster).ok_or_else(|| {
            ApiError::not_found(format!(
                "cluster {} is no longer configured",
                record.cluster
            ))
        })?;
        cluster
            .backend
            .cancel(&JobId::new(backend_id.clone()))
            .await?;
    }
    inner.store.set_deleted(&id, caller.name()).await?;
    let mut entry = caller.audit("delete", "deleted");
    entry.submission = Some(id.clone());
    entry.queue = record.queue.clone();
    entry.cluster = Some(record.cluster.clone());
    inner.audit(entry).await;
    Ok(Json(json!({ "submissionId": id })))
}

async fn my_submissions(State(inner): Shared, caller: Caller) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = inner
        .store
        .by_user(caller.name())
        .await?
        .iter()
        .filter(|r| r.phase != Phase::Deleted)
        .map(|r| summary(&inner, r))
        .collect();
    Ok(Json(json!({ "submissions": items })))
}

#[derive(Deserialize)]
struct AdminQuery {
    name: Option<String>,
}

async fn admin_submissions(
    State(inner): Shared,
    caller: Caller,
    q: Result<Query<AdminQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller
        .must_be_admin(&inner, "list every submission")
        .await?;
    let q = query(q)?;
    let mut body = String::new();
    for r in inner
        .store
        .all(q.name.as_deref().filter(|n| !n.is_empty()))
        .await?
    {
        body.push_str(&summary(&inner, &r).to_string());
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /admin/audit` (our extension, admins only): the newest lines of the audit log as NDJSON,
/// oldest first.
async fn admin_audit(
    State(inner): Shared,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.must_be_admin(&inner, "read the audit log").await?;
    let limit = query(q)?.limit.unwrap_or(1_000).min(100_000);
    let mut body = Vec::new();
    for e in inner.store.audit_log(limit).await? {
        write_json(&mut body, &e);
        body.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchStatusRequest {
    submission_ids: Vec<String>,
}

/// Most ids one batch status request may ask for.
pub const MAX_BATCH: usize = 10_000;

/// `POST /spark/statuses` (our extension): the statuses of many submissions in one round trip.
async fn batch_status(
    State(inner): Shared,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: BatchStatusRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"submissionIds\": [\"<id>\", ...]}}: {e}"
        ))
    })?;
    if request.submission_ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH} ids per request, got {}",
            request.submission_ids.len()
        )));
    }
    // Well-shaped ids are read in one go; the others answer as the per-id endpoint would.
    let shaped: Vec<&str> = request
        .submission_ids
        .iter()
        .map(String::as_str)
        .filter(|id| ids::check_shape(id).is_ok())
        .collect();
    let mut found: std::collections::HashMap<&str, StoredStatus> = shaped
        .iter()
        .copied()
        .zip(inner.store.statuses_many(&shaped).await?)
        .filter_map(|(id, r)| r.map(|r| (id, r)))
        .collect();
    // Written as it is built: a `Value` tree of 10,000 statuses costs more than the reads.
    let mut body = Vec::with_capacity(64 + request.submission_ids.len() * 160);
    body.extend_from_slice(b"{\"statuses\":{");
    let mut seen = std::collections::HashSet::new();
    let mut denied = 0usize;
    for id in &request.submission_ids {
        // A repeated id answers once, as a JSON object's key can.
        if !seen.insert(id.as_str()) {
            continue;
        }
        if seen.len() > 1 {
            body.push(b',');
        }
        write_json(&mut body, id);
        body.push(b':');
        let answer = match found.remove(id.as_str()) {
            Some(r) if !caller.principal.may_act_on(&r.user) => {
                denied += 1;
                Err(ApiError::forbidden(format!(
                    "{} may not read submission {id}: it is {}'s, and only its owner and admins may",
                    caller.name(),
                    r.user
                )))
            }
            Some(r) => not_deleted(id, r.phase, r.deleted_by.as_deref()).map(|()| r),
            None => Err(match ids::check_shape(id) {
                Err(why) => ApiError::bad_request(why),
                Ok(()) => ApiError::not_found(format!("Application {id} not found")),
            }),
        };
        match answer {
            Ok(r) => write_json(&mut body, &status_of(&inner, &r)),
            Err(e) => write_json(
                &mut body,
                &json!({"error": {"code": e.status.as_u16(), "message": e.message}}),
            ),
        }
    }
    body.extend_from_slice(b"}}");
    if denied > 0 {
        // One line for the request, not one per id.
        let mut entry = caller.audit("read", "denied");
        entry.message = format!("batch status: {denied} of the ids asked for are other users'");
        inner.audit(entry).await;
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Appends `value` as JSON; our own types always serialise.
fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    if let Err(e) = serde_json::to_writer(&mut *out, value) {
        tracing::error!(error = %e, "cannot encode a status");
        out.extend_from_slice(b"null");
    }
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(rename = "subId")]
    sub_id: Option<String>,
    #[serde(rename = "appId")]
    app_id: Option<String>,
    #[serde(rename = "execId")]
    exec_id: Option<String>,
}

/// `GET /log`: the driver log, followed while the application runs, whole once it has ended.
async fn log(
    State(inner): Shared,
    caller: Caller,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let sub_id = q.sub_id.filter(|s| !s.is_empty());
    let app_id = q.app_id.filter(|s| !s.is_empty());
    let record = match (sub_id, app_id) {
        (Some(id), _) => lookup(&inner, &caller, "read the log of", &id).await?,
        (None, Some(app_id)) => {
            let found = inner.store.by_spark_app_id(&app_id).await?;
            let record = found.ok_or_else(|| {
                ApiError::not_found(format!("no submission has Spark application id {app_id}"))
            })?;
            caller
                .may_act_on(&inner, "read the log of", &record.id, &record.user)
                .await?;
            record
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "Error: Please provide either a submissionId or an appId.",
            ));
        }
    };
    if let Some(exec) = q
        .exec_id
        .filter(|e| !e.is_empty() && !e.ends_with("driver"))
    {
        return Err(ApiError::not_found(format!(
            "no log for executor {exec} of {}: this gateway serves driver logs",
            record.id
        )));
    }
    let backend_id = match (record.phase, &record.backend_id) {
        (Phase::Created, Some(b)) => JobId::new(b.clone()),
        (Phase::Rejected, _) => {
            return Err(ApiError::not_found(format!(
                "no log for {}: the cluster refused it ({})",
                record.id,
                record.message.as_deref().unwrap_or("no reason given")
            )));
        }
        _ => {
            let why = inner
                .waiting_for(&record)
                .unwrap_or_else(|| "it has not been created yet".into());
            return Err(ApiError::not_found(format!(
                "no log for {} yet: {why}",
                record.id
            )));
        }
    };
    let cluster = inner.clusters.get(&record.cluster).ok_or_else(|| {
        ApiError::not_found(format!(
            "cluster {} is no longer configured",
            record.cluster
        ))
    })?;
    let running = inner.live_status(&record.id).is_some();
    let options = if running {
        LogOptions::follow()
    } else {
        LogOptions::snapshot()
    };
    // Held by the stream: a followed log holds a connection to the cluster until it ends.
    let stream_slot = inner.log_streams.clone().try_acquire_owned().map_err(|_| ApiError {
        retry_after: Some(5),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} log streams are open, the most this gateway follows at once; try again shortly",
                inner.settings.limits.max_log_streams
            ),
        )
    })?;
    let lines = cluster.backend.logs(&backend_id, &options).await?;
    let id = record.id.clone();
    let shutdown = inner.shutdown.clone();
    let body = lines
        .take_until(async move { shutdown.cancelled().await })
        .take_while(move |line| {
            let keep = match line {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(submission = %id, error = %e, "log stream ended early");
                    false
                }
            };
            std::future::ready(keep)
        })
        .filter_map(|line| std::future::ready(line.ok()))
        .map(move |line| {
            let _held = &stream_slot;
            Ok::<_, std::io::Error>(Bytes::from(format!("{}\n", line.text)))
        });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

#[derive(Deserialize)]
struct UploadQuery {
    folder: Option<String>,
}

fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.chars().any(char::is_control)
}

/// `POST /s3/{name}`: stores the raw body in the gateway's upload directory.
async fn upload(
    State(inner): Shared,
    _caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    if !safe_segment(&name) {
        return Err(ApiError::bad_request(format!(
            "invalid file name {name:?}: expected one path segment, without '/', '\\' or '..'"
        )));
    }
    let Some(dir) = inner.settings.upload_dir.clone() else {
        return Err(ApiError::forbidden(
            "uploads are turned off on this gateway (no upload directory is configured)",
        ));
    };
    let mut relative = std::path::PathBuf::new();
    match q
        .folder
        .as_deref()
        .map(|f| f.trim_matches('/'))
        .filter(|f| !f.is_empty())
    {
        Some(folder) => {
            for segment in folder.split('/').filter(|s| !s.is_empty()) {
                if !safe_segment(segment) {
                    return Err(ApiError::bad_request(format!(
                        "invalid folder {folder:?}: segments must not be '.', '..' or contain '\\'"
                    )));
                }
                relative.push(segment);
            }
        }
        None => {
            relative.push(chrono::Utc::now().format("%Y%m%d").to_string());
            relative.push(uuid::Uuid::new_v4().simple().to_string());
        }
    }
    relative.push(&name);
    debug_assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    );
    let target = dir.join(&relative);
    let written = tokio::task::spawn_blocking({
        let target = target.clone();
        move || -> std::io::Result<()> {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = target.with_extension(format!("part-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&tmp, &body)?;
            std::fs::rename(&tmp, &target)
        }
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(path = %target.display(), error = %e, "upload failed");
            return Err(ApiError::unavailable(
                format!("cannot store the upload: {e}"),
                5,
            ));
        }
        Err(e) => {
            return Err(ApiError::unavailable(
                format!("cannot store the upload: {e}"),
                5,
            ));
        }
    }
    let absolute = std::path::absolute(&target).unwrap_or(target);
    Ok(Json(
        json!({ "url": format!("file://{}", absolute.display()) }),
    ))
}

async fn version() -> Response {
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "gitCommit": option_env!("BPG_GIT_COMMIT").unwrap_or("unknown"),
        "buildTime": option_env!("BPG_BUILD_TIME").unwrap_or("unknown"),
        "implementation": "bpg-gateway",
        "extensions": EXTENSIONS,
    });
    let text = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// BPG's authenticated health check: answers who may call at all.
async fn healthcheck(_caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"status": "OK"})))
}

/// Unauthenticated liveness and readiness: the store answers and clusters are configured.
async fn health(State(inner): Shared) -> Response {
    let mut checks = BTreeMap::new();
    let store = inner.store.count().await;
    checks.insert(
        "store",
        json!({"healthy": store.is_ok(), "message": store.err().map(|e| e.to_string())}),
    );
    let clusters: BTreeMap<&str, Value> = inner
        .clusters
        .iter()
        .map(|(id, c)| {
            let why = c
                .unavailable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            (
                id.as_str(),
                json!({"healthy": why.is_none(), "message": why}),
            )
        })
        .collect();
    checks.insert("sparkClusters", json!(clusters));
    let healthy = checks
        .get("store")
        .and_then(|s| s.get("healthy"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && !inner.clusters.is_empty();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!(checks))).into_response()
}

async fn metrics(State(inner): Shared) -> Response {
    let clusters: Vec<(String, u32, u32)> = inner
        .clusters
        .values()
        .map(|c| {
            (
                c.id.clone(),
                c.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                c.waiting.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
        .collect();
    let text = inner.metrics.render(inner.watched(), &clusters);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
        .into_response()
}

async fn openapi_yaml() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], openapi::YAML).into_response()
}
