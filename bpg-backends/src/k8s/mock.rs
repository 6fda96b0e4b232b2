//! [`MockApiServer`]: a stateful wiremock stand-in of a Kubernetes API server with the
//! spark-operator running behind it (feature `k8s-mock`), for tests and examples that need a
//! cluster without having one.
//!
//! It speaks the real wire protocol `kube` uses, on the real paths:
//!
//! - `/apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications`: create (`POST`,
//!   `201`, or `409 AlreadyExists`), list with `labelSelector` (its `resourceVersion` is "now"),
//!   and watch (`watch=true`, of the namespace or of one object by
//!   `fieldSelector=metadata.name=...`, from `resourceVersion`, with `timeoutSeconds`), answered as
//!   newline-delimited `WatchEvent`s. Resource versions grow with time across every object, as
//!   etcd's do, so a namespace watch resumed from a version misses nothing;
//! - `.../sparkapplications/{name}`: get and delete (`propagationPolicy` honoured: a foreground
//!   delete keeps the object, with `deletionTimestamp` and the `foregroundDeletion` finalizer, until
//!   its pods are gone);
//! - `/api/v1/namespaces/{ns}/pods/{app}-driver` and its `log` subresource (container
//!   `spark-kubernetes-driver` must be named, as with a sidecar; `400` while the container is being
//!   created; `follow=true` streams hold until the driver ends or about a second passes, then close,
//!   as real connections do, so clients must resume);
//! - errors are `Status` objects (`NotFound`, `AlreadyExists`, `Invalid`, `ServiceUnavailable`).
//!
//! The "operator" moves every application through `SUBMITTED → RUNNING → COMPLETED` (or `FAILED`,
//! with `status.applicationState.errorMessage`), scripted per application by the same `sim/*`
//! labels [`bpg_core::SimScript`] reads (`sim/duration`, `sim/queue-delay`, `sim/outcome`,
//! `sim/message`, `sim/log-lines`), on real time scaled by [`MockApiServer::time_scale`] (default:
//! one simulated second takes 20 ms).
//!
//! ```
//! use bpg_backends::k8s::mock::MockApiServer;
//! use bpg_core::{AppType, BackendExt, JobState, SparkJob, SubmitOptions, WaitOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bpg_core::Result<()> {
//! let server = MockApiServer::start().await;
//! let backend = server.backend()?;
//! let job = SparkJob::new("etl", AppType::Python, "3.5", "local:///app/etl.py")
//!     .with_label("sim/outcome", "failed")
//!     .with_label("sim/message", "driver container failed with ExitCode: 1");
//! let (_, status) = backend.submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default()).await?;
//! assert_eq!(status.state, JobState::Failed);
//! assert_eq!(status.message.as_deref(), Some("driver container failed with ExitCode: 1"));
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bpg_core::{SimOutcome, SimScript};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{DRIVER_CONTAINER, GROUP, KIND, PLURAL, SparkKubernetesBackend, VERSION};

const APPS_PREFIX: &str = "/apis/sparkoperator.k8s.io/v1beta2/namespaces/";
const PODS_PREFIX: &str = "/api/v1/namespaces/";

/// One `DELETE` the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Namespace of the application.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `propagationPolicy` from the request body (`Foreground`, `Background`, `Orphan`), if any.
    pub propagation_policy: Option<String>,
}

/// A running stand-in API server; see the [module docs](self). Dropping it stops the server.
pub struct MockApiServer {
    server: MockServer,
    namespace: String,
    state: Arc<Mutex<ApiState>>,
}

impl std::fmt::Debug for MockApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApiServer")
            .field("uri", &self.server.uri())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

struct App {
    /// The object as created, with server-set metadata; status is computed.
    object: Value,
    script: SimScript,
    created_at: Instant,
    /// `created_at` on the wall clock, so timestamps derived from it never jitter between reads.
    created_wall: DateTime<Utc>,
    /// This app's number (in steps of 100): uid, Spark ids and a tie-break in resource versions.
    base_version: u64,
    /// The server's start: resource versions count microseconds from it.
    epoch: Instant,
    /// When the delete arrived.
    deleted_at: Option<Instant>,
    spark_app_id: String,
    /// Set by a delete: the step it froze at, and when the object goes away.
    deleting: Option<(usize, Instant)>,
    /// When the delete arrived, on the wall clock.
    deleted_wall: Option<DateTime<Utc>>,
}

struct Tombstone {
    version: u64,
    object: Value,
}

struct ApiState {
    apps: BTreeMap<(String, String), App>,
    tombstones: HashMap<(String, String), Tombstone>,
    next_version: u64,
    /// When the server started: resource versions count from it.
    epoch: Instant,
    scale: Duration,
    deletion_delay: Duration,
    created: u64,
    /// The most applications that have been in flight (created, not ended) at once.
    peak_in_flight: usize,
    deletes: Vec<DeleteRequest>,
    /// Status codes to answer the next requests with, whatever they are.
    faults: VecDeque<u16>,
    /// Status codes to answer the next watch requests with.
    watch_faults: VecDeque<u16>,
    /// Cut the next follow log streams after this many lines.
    log_cuts: VecDeque<usize>,
    /// Random faults: a fraction of all requests answered 500 or 503, and of watches closed at once.
    chaos: Option<Chaos>,
}

/// What [`MockApiServer::chaos`] injects.
struct Chaos {
    fraction: f64,
    rng: rand::rngs::SmallRng,
    /// Errors answered so far (alternately 500 and 503).
    count: u64,
    /// Watches closed before any event so far.
    cut: u64,
}

/// Steps of the operator's state machine, as this stand-in plays them.
const CREATED: usize = 0;
const SUBMITTED: usize = 1;
const RUNNING: usize = 2;
const ENDED: usize = 3;

impl App {
    fn real(&self, scale: Duration, simulated: Duration) -> Duration {
        scale.mul_f64(simulated.as_secs_f64())
    }

    /// When (real time) each step is reached.
    fn step_times(&self, scale: Duration) -> [Instant; 4] {
        let running = self.created_at + self.real(scale, self.script.queue_delay);
        let ended = running + self.real(scale, self.script.duration);
        [self.created_at, self.created_at, running, ended]
    }

    fn step_at(&self, scale: Duration, at: Instant) -> usize {
        if let Some((frozen, _)) = self.deleting {
            return frozen;
        }
        let times = self.step_times(scale);
        // The operator picks a new application up at once: SUBMITTED from the first read on.
        (SUBMITTED..=ENDED)
            .rev()
            .find(|&s| at >= times[s])
            .unwrap_or(SUBMITTED)
    }

    /// The resource version of the object at `step`: when the step happened (or the delete that
    /// froze it arrived).
    fn version(&self, step: usize, scale: Duration) -> u64 {
        match self.deleted_at {
            Some(at) => self.version_at(at, 5),
            None => self.version_at(self.step_times(scale)[step], step as u64),
        }
    }

    /// A version for a change of this app at `at`: the microsecond, then the app, then what
    /// changed (`code` < 10), so versions are unique and ordered by time across objects.
    fn version_at(&self, at: Instant, code: u64) -> u64 {
        version_at(self.epoch, at, (self.base_version / 100 % 1000) * 10 + code)
    }

    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn pod_name(&self) -> String {
        format!("{}-driver", self.name())
    }

    fn failed(&self) -> bool {
        self.script.outcome_for_attempt(1) == SimOutcome::Failed
    }

    /// The object as a client sees it at `step`.
    fn at_step(&self, step: usize, scale: Duration) -> Value {
        let mut object = self.object.clone();
        object["metadata"]["resourceVersion"] = json!(self.version(step, scale).to_string());
        if let Some(at) = self.deleted_wall {
            object["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
            object["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        }
        if step == CREATED {
            return object;
        }
        let times = self.step_times(scale);
        let wall = |at: Instant| {
            let since = at.saturating_duration_since(self.created_at);
            rfc3339(self.created_wall + chrono::Duration::from_std(since).unwrap_or_default())
        };
        let state = match step {
            SUBMITTED => "SUBMITTED",
            RUNNING => "RUNNING",
            _ if self.failed() => "FAILED",
            _ => "COMPLETED",
        };
        let mut status = json!({
            "applicationState": {"state": state},
            "driverInfo": {"podName": self.pod_name()},
            "submissionAttempts": 1,
            "executionAttempts": 1,
            "lastSubmissionAttemptTime": wall(times[SUBMITTED]),
            "submissionID": format!("{:08x}-0000-4000-8000-{:012x}", self.base_version, self.base_version),
        });
        if step >= RUNNING {
            status["sparkApplicationId"] = json!(self.spark_app_id);
            status["driverInfo"]["webUIPort"] = json!(4040);
            status["executorState"] = json!({format!("{}-exec-1", self.name()): state});
        }
        if step == ENDED {
            status["terminationTime"] = json!(wall(times[ENDED]));
            if self.failed() {
                status["applicationState"]["errorMessage"] = json!(self.script.failure_message);
            }
        }
        object["status"] = status;
        object
    }

    /// Driver log lines written by `at`.
    fn log_lines(&self, scale: Duration, at: Instant) -> Vec<String> {
        let times = self.step_times(scale);
        if at < times[RUNNING] {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "INFO SparkContext: Running Spark version 3.5 for {}",
            self.name()
        )];
        for i in 0..self.script.log_lines {
            let written = times[RUNNING] + self.real(scale, self.script.log_line_offset(i));
            if written <= at {
                lines.push(self.script.log_line(i));
            }
        }
        if self.step_at(scale, at) == ENDED && self.deleting.is_none() {
            if self.failed() {
                lines.push(format!(
                    "Exception in thread \"main\" org.apache.spark.SparkException: {}",
                    self.script.failure_message
                ));
            } else {
                lines.push("INFO SparkContext: Successfully stopped SparkContext".to_owned());
            }
        }
        lines
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A Kubernetes `Status` error body.
fn status_error(code: u16, reason: &str, message: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    }))
}

fn not_found(what: &str, name: &str) -> ResponseTemplate {
    status_error(404, "NotFound", format!("{what} \"{name}\" not found"))
}

fn query(request: &Request) -> HashMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Equality-based label selector (`a=b,c=d`, also `a==b`) against an object's labels.
fn selects(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim()),
            None => labels.get(term.trim()).is_some(),
        })
}

struct Handler {
    state: Arc<Mutex<ApiState>>,
}

fn lock(state: &Mutex<ApiState>) -> MutexGuard<'_, ApiState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.state);
        state.settle(Instant::now());
        let watching = request
            .url
            .query_pairs()
            .any(|(k, v)| k == "watch" && v == "true");
        let mut fault = match state.faults.pop_front() {
            Some(code) => Some(code),
            None if watching => state.watch_faults.pop_front(),
            None => None,
        };
        if fault.is_none()
            && let Some(chaos) = &mut state.chaos
        {
            use rand::Rng;
            if chaos.rng.random::<f64>() < chaos.fraction {
                chaos.count += 1;
                fault = Some(if chaos.count % 2 == 0 { 500 } else { 503 });
            } else if watching && chaos.rng.random::<f64>() < chaos.fraction {
                // A watch the server (or a proxy in between) closes before any event.
                chaos.cut += 1;
                return ResponseTemplate::new(200);
            }
        }
        if let Some(code) = fault {
            let reason = match code {
                429 => "TooManyRequests",
                500 => "InternalError",
                503 => "ServiceUnavailable",
                504 => "Timeout",
                _ => "Failure",
            };
            return status_error(code, reason, format!("injected {code}"));
        }
        let path = request.url.path().to_owned();
        let method = request.method.as_str().to_owned();
        if let Some(rest) = path.strip_prefix(APPS_PREFIX) {
            let parts: Vec<&str> = rest.split('/').collect();
            return match (method.as_str(), parts.as_slice()) {
                ("POST", [ns, PLURAL]) => state.create(ns, &request.body),
                ("GET", [ns, PLURAL]) => {
                    let q = query(request);
                    if q.get("watch").map(String::as_str) == Some("true") {
                        state.watch(ns, &q)
                    } else {
                        state.list(ns, &q)
                    }
                }
                ("GET", [ns, PLURAL, name]) => state.get(ns, name),
                ("DELETE", [ns, PLURAL, name]) => state.delete(ns, name, &request.body),
                (_, [_, PLURAL, _]) => status_error(
                    405,
                    "MethodNotAllowed",
                    "this stand-in never updates a live SparkApplication",
                ),
                _ => status_error(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            };
        }
        if let Some(rest) = path.strip_prefix(PODS_PREFIX) {
            let parts: Vec<&str> = rest.split('/').collect();
            return match (method.as_str(), parts.as_slice()) {
                ("GET", [ns, "pods", pod]) => state.pod(ns, pod),
                ("GET", [ns, "pods", pod, "log"]) => state.log(ns, pod, &query(request)),
                _ => status_error(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            };
        }
        status_error(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }
}

impl ApiState {
    /// Finishes foreground deletions whose pods are gone by `now`.
    fn settle(&mut self, now: Instant) {
        let done: Vec<(String, String)> = self
            .apps
            .iter()
            .filter(|(_, app)| matches!(app.deleting, Some((_, gone_at)) if gone_at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(app) = self.apps.remove(&key) {
                self.bury(key, &app);
            }
        }
    }

    fn bury(&mut self, key: (String, String), app: &App) {
        let step = app.step_at(self.scale, Instant::now());
        let version = app.version_at(Instant::now(), 6);
        let object = app.at_step(step, self.scale);
        self.tombstones.insert(key, Tombstone { version, object });
    }

    fn app(&self, ns: &str, name: &str) -> Option<&App> {
        self.apps.get(&(ns.to_owned(), name.to_owned()))
    }

    fn current(&self, app: &App) -> Value {
        app.at_step(app.step_at(self.scale, Instant::now()), self.scale)
    }

    fn create(&mut self, ns: &str, body: &[u8]) -> ResponseTemplate {
        let mut object: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status_error(400, "BadRequest", format!("invalid JSON body: {e}")),
        };
        let api_version = format!("{GROUP}/{VERSION}");
        if object["apiVersion"] != api_version.as_str() || object["kind"] != KIND {
            return status_error(
                400,
                "BadRequest",
                format!("expected apiVersion {api_version} and kind {KIND}"),
            );
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !valid_name(&name) {
            return status_error(
                422,
                "Invalid",
                format!(
                    "SparkApplication.sparkoperator.k8s.io {name:?} is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            );
        }
        if let Some(body_ns) = object["metadata"]["namespace"].as_str()
            && body_ns != ns
        {
            return status_error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        let missing: Vec<&str> = ["type", "sparkVersion", "driver", "executor"]
            .into_iter()
            .filter(|f| object["spec"].get(*f).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            let fields: Vec<String> = missing
                .iter()
                .map(|f| format!("spec.{f}: Required value"))
                .collect();
            return status_error(
                422,
                "Invalid",
                format!(
                    "SparkApplication.sparkoperator.k8s.io {name:?} is invalid: {}",
                    fields.join(", ")
                ),
            );
        }
        let key = (ns.to_owned(), name.clone());
        if self.apps.contains_key(&key) {
            return status_error(
                409,
                "AlreadyExists",
                format!("sparkapplications.sparkoperator.k8s.io \"{name}\" already exists"),
            );
        }
        let labels: BTreeMap<String, String> = object["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let defaults = SimScript {
            log_lines: 3,
            ..SimScript::default()
        };
        let script = match SimScript::from_labels(&labels, &defaults) {
            Ok(s) => s,
            Err(d) => return status_error(422, "Invalid", format!("mock operator script: {d}")),
        };
        self.next_version += 100;
        self.created += 1;
        let base_version = self.next_version;
        object["metadata"]["namespace"] = json!(ns);
        object["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{base_version:012}"));
        let created_wall = Utc::now();
        object["metadata"]["creationTimestamp"] = json!(rfc3339(created_wall));
        object["metadata"]["generation"] = json!(1);
        let app = App {
            object,
            script,
            created_at: Instant::now(),
            created_wall,
            base_version,
            epoch: self.epoch,
            deleted_at: None,
            spark_app_id: format!("spark-{base_version:032x}"),
            deleting: None,
            deleted_wall: None,
        };
        self.tombstones.remove(&key);
        let created = app.at_step(CREATED, self.scale);
        self.apps.insert(key, app);
        // Only a create adds one in flight, so counting here catches every peak.
        let now = Instant::now();
        let scale = self.scale;
        let in_flight = self
            .apps
            .values()
            .filter(|a| a.deleting.is_none() && a.step_at(scale, now) < ENDED)
            .count();
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
        ResponseTemplate::new(201).set_body_json(created)
    }

    fn get(&self, ns: &str, name: &str) -> ResponseTemplate {
        match self.app(ns, name) {
            Some(app) => ResponseTemplate::new(200).set_body_json(self.current(app)),
            None => not_found("sparkapplications.sparkoperator.k8s.io", name),
        }
    }

    fn list(&self, ns: &str, q: &HashMap<String, String>) -> ResponseTemplate {
        let selector = q.get("labelSelector").map(String::as_str).unwrap_or("");
        let field = q
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="));
        let items: Vec<Value> = self
            .apps
            .iter()
            .filter(|((app_ns, name), _)| app_ns == ns && field.is_none_or(|f| f == name))
            .map(|(_, app)| self.current(app))
            .filter(|o| selects(selector, o))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "SparkApplicationList",
            "metadata": {"resourceVersion": self.now_version().to_string()},
            "items": items,
        }))
    }

    fn watch(&self, ns: &str, q: &HashMap<String, String>) -> ResponseTemplate {
        let since: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = Duration::from_secs(
            q.get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(290),
        );
        let now = Instant::now();
        let name = match q.get("fieldSelector").map(String::as_str) {
            None | Some("") => return self.watch_namespace(ns, since, timeout, now),
            Some(f) => match f.strip_prefix("metadata.name=") {
                Some(name) => name,
                None => {
                    return status_error(
                        400,
                        "BadRequest",
                        "this stand-in's watches take no field selector but metadata.name=<name>",
                    );
                }
            },
        };
        let event =
            |kind: &str, object: Value| format!("{}\n", json!({"type": kind, "object": object}));
        let Some(app) = self.app(ns, name) else {
            let tomb = self.tombstones.get(&(ns.to_owned(), name.to_owned()));
            return match tomb {
                Some(t) if since < t.version => {
                    ResponseTemplate::new(200).set_body_string(event("DELETED", t.object.clone()))
                }
                // Nothing to report: hold the connection for the timeout (at most a second here).
                _ => ResponseTemplate::new(200)
                    .set_body_string("")
                    .set_delay(timeout.min(Duration::from_secs(1))),
            };
        };
        let step = app.step_at(self.scale, now);
        // Everything that happened after the client's version, as one stream.
        let mut body = String::new();
        for s in SUBMITTED..=step {
            if app.version(s, self.scale) > since {
                let kind = if since == 0 && body.is_empty() {
                    "ADDED"
                } else {
                    "MODIFIED"
                };
                body.push_str(&event(kind, app.at_step(s, self.scale)));
            }
        }
        if !body.is_empty() {
            return ResponseTemplate::new(200).set_body_string(body);
        }
        // Nothing new: hold the stream until the next step (or the deletion), if it comes in time.
        let next = match app.deleting {
            Some((_, gone_at)) => Some((gone_at, event("DELETED", self.current(app)))),
            None if step < ENDED => {
                let at = app.step_times(self.scale)[step + 1];
                Some((at, event("MODIFIED", app.at_step(step + 1, self.scale))))
            }
            None => None,
        };
        match next {
            Some((at, text)) if at.saturating_duration_since(now) <= timeout => {
                ResponseTemplate::new(200)
                    .set_body_string(text)
                    .set_delay(at.saturating_duration_since(now))
            }
            _ => ResponseTemplate::new(200)
                .set_body_string("")
                .set_delay(timeout.min(Duration::from_secs(1))),
        }
    }

    /// The version of "now": everything that has happened is at or below it.
    fn now_version(&self) -> u64 {
        version_at(self.epoch, Instant::now(), 9_999)
    }

    /// A watch of every application in `ns`: the changes after `since` in version order, or, when
    /// there are none yet, an empty stream held until the next change is due (at most `timeout`,
    /// and a second). It never answers a change ahead of time: an application created while the
    /// stream is held must still be after the version the client resumes from.
    fn watch_namespace(
        &self,
        ns: &str,
        since: u64,
        timeout: Duration,
        now: Instant,
    ) -> ResponseTemplate {
        let mut events: Vec<(u64, &str, Value)> = Vec::new();
        let mut next: Option<Instant> = None;
        for ((app_ns, _), app) in &self.apps {
            if app_ns != ns {
                continue;
            }
            let added = app.version(CREATED, self.scale) > since;
            let step = app.step_at(self.scale, now);
            if app.deleting.is_some() {
                // Frozen at the delete: one change, marking it for deletion.
                let v = app.version(step, self.scale);
                if v > since {
                    let kind = if added { "ADDED" } else { "MODIFIED" };
                    events.push((v, kind, self.current(app)));
                }
                if let Some((_, gone_at)) = app.deleting {
                    next = Some(next.map_or(gone_at, |n| n.min(gone_at)));
                }
                continue;
            }
            let mut first = true;
            for s in SUBMITTED..=step {
                let v = app.version(s, self.scale);
                if v > since {
                    let kind = if added && first { "ADDED" } else { "MODIFIED" };
                    events.push((v, kind, app.at_step(s, self.scale)));
                    first = false;
                }
            }
            if step < ENDED {
                let at = app.step_times(self.scale)[step + 1];
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        for ((tomb_ns, _), tomb) in &self.tombstones {
            if tomb_ns == ns && tomb.version > since {
                events.push((tomb.version, "DELETED", tomb.object.clone()));
            }
        }
        let line =
            |kind: &str, object: &Value| format!("{}\n", json!({"type": kind, "object": object}));
        if !events.is_empty() {
            events.sort_by_key(|e| e.0);
            let body: String = events.iter().map(|(_, k, o)| line(k, o)).collect();
            return ResponseTemplate::new(200).set_body_string(body);
        }
        let hold = next.map_or(timeout, |at| {
            at.saturating_duration_since(now) + Duration::from_millis(1)
        });
        ResponseTemplate::new(200)
            .set_body_string("")
            .set_delay(hold.min(timeout).min(Duration::from_secs(1)))
    }

    fn delete(&mut self, ns: &str, name: &str, body: &[u8]) -> ResponseTemplate {
        let policy = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b["propagationPolicy"].as_str().map(str::to_owned));
        self.deletes.push(DeleteRequest {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            propagation_policy: policy.clone(),
        });
        let key = (ns.to_owned(), name.to_owned());
        let now = Instant::now();
        let scale = self.scale;
        let delay = self.deletion_delay;
        let Some(app) = self.apps.get_mut(&key) else {
            return not_found("sparkapplications.sparkoperator.k8s.io", name);
        };
        if app.deleting.is_none() {
            let step = app.step_at(scale, now);
            app.deleting = Some((step, now + delay));
            app.deleted_at = Some(now);
            app.deleted_wall = Some(Utc::now());
        }
        if policy.as_deref() == Some("Foreground") {
            // The object stays, marked for deletion, until its driver and executors are gone.
            let object = self.current(&self.apps[&key]);
            return ResponseTemplate::new(200).set_body_json(object);
        }
        if let Some(app) = self.apps.remove(&key) {
            self.bury(key, &app);
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": GROUP, "kind": PLURAL},
        }))
    }

    /// The application owning driver pod `pod`, if it has one by now.
    fn driver_of(&self, ns: &str, pod: &str) -> Option<&App> {
        let app = self.app(ns, pod.strip_suffix("-driver")?)?;
        (app.step_at(self.scale, Instant::now()) >= SUBMITTED).then_some(app)
    }

    fn pod(&self, ns: &str, pod: &str) -> ResponseTemplate {
        let Some(app) = self.driver_of(ns, pod) else {
            return not_found("pods", pod);
        };
        let step = app.step_at(self.scale, Instant::now());
        let (phase, container) = match step {
            SUBMITTED => (
                "Pending",
                json!({"waiting": {"reason": "ContainerCreating"}}),
            ),
            RUNNING => (
                "Running",
                json!({"running": {"startedAt": rfc3339(Utc::now())}}),
            ),
            _ if app.failed() => (
                "Failed",
                json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            ),
            _ => (
                "Succeeded",
                json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            ),
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "namespace": ns,
                "labels": {"spark-role": "driver", "sparkoperator.k8s.io/app-name": app.name()},
            },
            "spec": {"containers": [
                {"name": DRIVER_CONTAINER, "image": "spark:3.5"},
                {"name": "istio-proxy", "image": "istio/proxyv2"},
            ]},
            "status": {
                "phase": phase,
                "containerStatuses": [{
                    "name": DRIVER_CONTAINER, "ready": step == RUNNING, "restartCount": 0,
                    "image": "spark:3.5", "imageID": "", "state": container,
                }],
            },
        }))
    }

    fn log(&mut self, ns: &str, pod: &str, q: &HashMap<String, String>) -> ResponseTemplate {
        let scale = self.scale;
        let now = Instant::now();
        let follow = q.get("follow").map(String::as_str) == Some("true");
        let (mut lines, delay) = {
            let Some(app) = self.driver_of(ns, pod) else {
                return not_found("pods", pod);
            };
            match q.get("container").map(String::as_str) {
                Some(DRIVER_CONTAINER) => {}
                Some(other) => {
                    return status_error(
                        400,
                        "BadRequest",
                        format!("container {other} is not valid for pod {pod}"),
                    );
                }
                None => {
                    return status_error(
                        400,
                        "BadRequest",
                        format!(
                            "a container name must be specified for pod {pod}, choose one of: [{DRIVER_CONTAINER} istio-proxy]"
                        ),
                    );
                }
            }
            let step = app.step_at(scale, now);
            if step < RUNNING {
                return status_error(
                    400,
                    "BadRequest",
                    format!(
                        "container \"{DRIVER_CONTAINER}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                    ),
                );
            }
            if follow && step < ENDED {
                // A followed stream carries lines as they are written, until the driver ends or
                // the connection closes after about a second.
                let end = app.step_times(scale)[ENDED];
                let until = end.min(now + Duration::from_secs(1));
                (
                    app.log_lines(scale, until),
                    until.saturating_duration_since(now),
                )
            } else {
                (app.log_lines(scale, now), Duration::ZERO)
            }
        };
        if follow && let Some(cut) = self.log_cuts.pop_front() {
            lines.truncate(cut);
        }
        if let Some(n) = q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        ResponseTemplate::new(200)
            .set_body_string(join_lines(&lines))
            .set_delay(delay)
    }
}

/// A resource version for a change at `at`: microseconds since `epoch`, then `low` (< 10,000).
fn version_at(epoch: Instant, at: Instant, low: u64) -> u64 {
    let micros =
        u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX / 20_000);
    micros * 10_000 + low
}

fn join_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

impl MockApiServer {
    /// Starts a server for namespace `spark-jobs`.
    pub async fn start() -> MockApiServer {
        MockApiServer::start_in("spark-jobs").await
    }

    /// Starts a server whose clients default to `namespace`.
    pub async fn start_in(namespace: &str) -> MockApiServer {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(ApiState {
            apps: BTreeMap::new(),
            tombstones: HashMap::new(),
            next_version: 1000,
            epoch: Instant::now(),
            scale: Duration::from_millis(20),
            deletion_delay: Duration::from_millis(100),
            created: 0,
            peak_in_flight: 0,
            deletes: Vec::new(),
            faults: VecDeque::new(),
            watch_faults: VecDeque::new(),
            log_cuts: VecDeque::new(),
            chaos: None,
        }));
        Mock::given(any())
            .respond_with(Handler {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        MockApiServer {
            server,
            namespace: namespace.to_owned(),
            state,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ApiState> {
        lock(&self.state)
    }

    /// How long one simulated second of a job's script takes (default 20 ms).
    pub fn time_scale(&self, per_simulated_second: Duration) {
        self.lock().scale = per_simulated_second;
    }

    /// The server's base URL.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The namespace clients default to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A client configuration for this server: no auth, its namespace, and kube's own retries
    /// off (so tests see every error; wrap the backend in a retry layer to retry).
    pub fn config(&self) -> kube::Config {
        let uri = self
            .server
            .uri()
            .parse()
            .expect("wiremock serves on a valid http://127.0.0.1:port URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = self.namespace.clone();
        config.default_retry = false;
        config
    }

    /// A [`SparkKubernetesBackend`] talking to this server.
    pub fn backend(&self) -> bpg_core::Result<SparkKubernetesBackend> {
        SparkKubernetesBackend::from_config(self.config())
    }

    /// A kubeconfig document with one context, `name`, pointing at this server in its namespace.
    pub fn kubeconfig(&self, name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {name}\nclusters:\n- name: {name}\n  cluster:\n    server: {uri}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: {ns}\nusers:\n- name: {name}\n  user: {{}}\n",
            uri = self.server.uri(),
            ns = self.namespace,
        )
    }

    /// The application `name` in the default namespace as a client would read it now.
    pub fn application(&self, name: &str) -> Option<Value> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
            .app(&self.namespace, name)
            .map(|app| state.current(app))
    }

    /// Names of the applications that exist now (all namespaces, as `namespace/name`).
    pub fn applications(&self) -> Vec<String> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
            .apps
            .keys()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    /// Applications created so far (a `409` is not a creation).
    pub fn created_count(&self) -> u64 {
        self.lock().created
    }

    /// The most applications that were in flight at once (created and not yet ended or being
    /// deleted), in every namespace: what a cap on in-flight applications must keep down.
    pub fn peak_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    /// Every `DELETE` received, in order.
    pub fn delete_requests(&self) -> Vec<DeleteRequest> {
        self.lock().deletes.clone()
    }

    /// Answers the next `n` requests, whatever they are, with `code` (e.g. 503) as a `Status`.
    pub fn fail_next(&self, n: usize, code: u16) {
        self.lock().faults.extend(std::iter::repeat_n(code, n));
    }

    /// Answers the next `n` watch requests with `code`, as a proxy that cannot stream would.
    pub fn fail_next_watches(&self, n: usize, code: u16) {
        self.lock()
            .watch_faults
            .extend(std::iter::repeat_n(code, n));
    }

    /// From now on answers a `fraction` (0 to 1) of all requests with 500 or 503 (alternately) as a
    /// `Status`, and closes that fraction of the remaining watches before any event, as a dropped
    /// connection would. Draws come from an RNG seeded with `seed`.
    pub fn chaos(&self, fraction: f64, seed: u64) {
        use rand::SeedableRng;
        self.lock().chaos = Some(Chaos {
            fraction: fraction.clamp(0.0, 1.0),
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            count: 0,
            cut: 0,
        });
    }

    /// What [`chaos`](Self::chaos) did so far: requests answered with an error, watches cut.
    pub fn chaos_injected(&self) -> (u64, u64) {
        self.lock()
            .chaos
            .as_ref()
            .map_or((0, 0), |c| (c.count, c.cut))
    }

    /// Cuts the next followed log stream after `lines` lines, like a dropped connection.
    pub fn drop_next_log_stream_after(&self, lines: usize) {
        self.lock().log_cuts.push_back(lines);
    }

    /// Requests received so far, for assertions on paths, queries and bodies.
    pub async fn received_requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }
}
