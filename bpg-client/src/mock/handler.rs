//! The mock gateway's state and its handling of each endpoint, following BPG's wire contract.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bpg_core::formats::bpg::SubmitApplicationRequest;
use bpg_core::{SimOutcome, SimScript};
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};
use wiremock::{Request, ResponseTemplate};

use super::{Fault, FaultKind, JournalEntry, MockCluster, MockSubmission, Route};
use crate::NO_LOGS_NOTICE;
use bpg_core::formats::bpg::REQUEST_FIELDS;

/// The full text BPG answers when it has no log (no trailing newline).
const NO_LOGS_BODY: &str = "Cannot find matched log files. Please try again in 5 minutes if this is a new job which was just started within 5 minutes.";

const BPG_EXCEPTION: &str = "jakarta.ws.rs.WebApplicationException";

pub(super) struct Stored {
    id: String,
    cluster: String,
    user: String,
    suffix: Option<String>,
    body: Value,
    request: SubmitApplicationRequest,
    script: SimScript,
    attempt: u32,
    /// Mock time of the submit.
    at: Duration,
    spark_app_id: String,
    deleted: bool,
}

pub(super) struct State {
    pub clusters: Vec<MockCluster>,
    pub context_path: String,
    pub default_script: SimScript,
    pub allowed_users: Option<Vec<String>>,
    pub bearer_tokens: Vec<(String, String)>,
    pub max_log_hold: Duration,
    pub max_executor_instances: u32,
    pub rng: SmallRng,
    pub started: Instant,
    pub started_wall_ms: i64,
    pub offset: Duration,
    pub submissions: Vec<Stored>,
    pub attempts: HashMap<String, u32>,
    pub uploads: Vec<(String, Vec<u8>)>,
    pub faults: Vec<Fault>,
    pub journal: Vec<JournalEntry>,
}

/// An answer before it becomes a wiremock template.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    delay: Option<Duration>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap_or_default(),
            headers: Vec::new(),
            delay: None,
        }
    }

    fn ok(body: Value) -> Answer {
        Answer::json(200, &body)
    }

    fn text(body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status: 200,
            content_type: "application/octet-stream",
            body: body.into(),
            headers: Vec::new(),
            delay: None,
        }
    }

    /// BPG's error body: `{"code": status, "message": "<exception class>: <text>"}`.
    fn error(status: u16, message: impl AsRef<str>) -> Answer {
        Answer::json(
            status,
            &json!({"code": status, "message": format!("{BPG_EXCEPTION}: {}", message.as_ref())}),
        )
    }

    fn unauthorized() -> Answer {
        let mut answer = Answer::json(
            401,
            &json!({"code": "401", "message": "HTTP 401 Unauthorized."}),
        );
        answer
            .headers
            .push(("www-authenticate", "Basic realm=\"bpg\"".into()));
        answer
    }

    fn not_found() -> Answer {
        Answer::json(
            404,
            &json!({"code": 404, "message": "jakarta.ws.rs.NotFoundException: HTTP 404 Not Found"}),
        )
    }

    fn into_template(self) -> ResponseTemplate {
        let mut template =
            ResponseTemplate::new(self.status).set_body_raw(self.body, self.content_type);
        for (name, value) in self.headers {
            template = template.insert_header(name, value.as_str());
        }
        if let Some(delay) = self.delay {
            template = template.set_delay(delay);
        }
        template
    }
}

impl State {
    /// Mock time since start.
    fn now(&self) -> Duration {
        self.started.elapsed() + self.offset
    }

    fn wall_ms(&self, at: Duration) -> i64 {
        self.started_wall_ms + at.as_millis() as i64
    }

    /// The path below the context path, split into segments; `None` outside it.
    fn segments<'a>(&self, path: &'a str) -> Option<Vec<&'a str>> {
        let rest = path.strip_prefix(self.context_path.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        Some(rest.split('/').filter(|s| !s.is_empty()).collect())
    }

    pub(super) fn route_of(&self, request: &Request) -> Route {
        let Some(segments) = self.segments(request.url.path()) else {
            return Route::Unknown;
        };
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("POST", ["spark"]) => Route::Submit,
            ("GET", ["spark", "mySubmissions"]) => Route::MySubmissions,
            ("GET", ["spark", _, "status"]) => Route::Status,
            ("GET", ["spark", _, "spec"]) => Route::Spec,
            ("GET", ["spark", _, "driver"]) => Route::Driver,
            ("GET", ["spark", _, "describe"]) => Route::Describe,
            ("DELETE", ["spark", _]) => Route::Delete,
            ("GET", ["log"]) => Route::Log,
            ("POST", ["s3", _]) => Route::Upload,
            ("GET", ["admin", "submissions"]) => Route::AdminSubmissions,
            ("GET", ["admin", "version"]) => Route::Version,
            ("GET", ["healthcheck", "status"]) => Route::Healthcheck,
            _ => Route::Unknown,
        }
    }

    /// Whether a fault of `kind` fires for `route` now; uses it up.
    fn fire(&mut self, route: Route, wanted: impl Fn(&FaultKind) -> bool) -> Option<FaultKind> {
        for i in 0..self.faults.len() {
            let fault = &self.faults[i];
            if !wanted(&fault.kind) || fault.route.is_some_and(|r| r != route) {
                continue;
            }
            if let Some(fraction) = fault.fraction
                && self.rng.random::<f64>() >= fraction
            {
                continue;
            }
            let kind = fault.kind.clone();
            if let Some(remaining) = &mut self.faults[i].remaining {
                *remaining = remaining.saturating_sub(1);
                if *remaining == 0 {
                    self.faults.remove(i);
                }
            }
            return Some(kind);
        }
        None
    }

    pub(super) fn fire_drop_fault(&mut self, route: Route) -> bool {
        self.fire(route, |k| matches!(k, FaultKind::DropConnection))
            .is_some()
    }

    /// Handles one request and journals it. With `dropped`, the answer is discarded by the caller.
    pub(super) fn handle(&mut self, request: &Request, dropped: bool) -> ResponseTemplate {
        let route = self.route_of(request);
        let user = self.authenticate(request);
        let mut answer = if dropped {
            self.dispatch(route, request, user.as_deref())
        } else if let Some(FaultKind::Status {
            status,
            retry_after,
        }) = self.fire(route, |k| matches!(k, FaultKind::Status { .. }))
        {
            let mut answer = Answer::error(status, format!("injected fault: HTTP {status}"));
            if let Some(seconds) = retry_after {
                answer.headers.push(("retry-after", seconds.to_string()));
            }
            answer
        } else {
            self.dispatch(route, request, user.as_deref())
        };
        if let Some(FaultKind::Delay(delay)) =
            self.fire(route, |k| matches!(k, FaultKind::Delay(_)))
        {
            answer.delay = Some(answer.delay.unwrap_or_default() + delay);
        }
        self.journal.push(JournalEntry {
            method: request.method.to_string(),
            path: request.url.path().to_owned(),
            query: request.url.query().map(str::to_owned),
            route,
            headers: request
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: request.body.clone(),
            user,
            status: (!dropped).then_some(answer.status),
        });
        answer.into_template()
    }

    /// The caller's name: `User-Account`, then Basic, then a registered bearer token; `None` if
    /// that fails or the user is not allowed.
    fn authenticate(&self, request: &Request) -> Option<String> {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let user = if let Some(name) = header("user-account") {
            Some(name.to_owned())
        } else if let Some(auth) = header("authorization") {
            if let Some(encoded) = auth.strip_prefix("Basic ") {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|pair| pair.split_once(':').map(|(u, _)| u.to_owned()))
                    .filter(|u| !u.is_empty())
            } else if let Some(token) = auth.strip_prefix("Bearer ") {
                self.bearer_tokens
                    .iter()
                    .find(|(t, _)| t == token.trim())
                    .map(|(_, u)| u.clone())
            } else {
                None
            }
        } else {
            None
        }?;
        match &self.allowed_users {
            Some(allowed) if !allowed.iter().any(|a| a == "*" || *a == user) => None,
            _ => Some(user),
        }
    }

    fn dispatch(&mut self, route: Route, request: &Request, user: Option<&str>) -> Answer {
        // BPG's /admin/version has no @Auth parameter, so it answers anonymously.
        if route == Route::Version {
            return self.version();
        }
        if route == Route::Unknown {
            return self.unknown_route(request);
        }
        let Some(user) = user else {
            return Answer::unauthorized();
        };
        let segments: Vec<String> = self
            .segments(request.url.path())
            .unwrap_or_default()
            .into_iter()
            .map(percent_decode)
            .collect();
        let id = segments.get(1).cloned().unwrap_or_default();
        match route {
            Route::Submit => self.submit(request, user),
            Route::Status => self.status(&id),
            Route::Spec => self.with_live(&id, |state, s| Answer::ok(state.spec_of(s))),
            Route::Driver => self.with_live(&id, |state, s| Answer::ok(state.driver_of(s))),
            Route::Describe => self.with_live(&id, |state, s| Answer::text(state.describe_of(s))),
            Route::Delete => self.delete(&id),
            Route::MySubmissions => {
                let list: Vec<Value> = self
                    .submissions
                    .iter()
                    .filter(|s| !s.deleted && s.user == user)
                    .map(|s| self.summary_of(s))
                    .collect();
                Answer::ok(json!({ "submissions": list }))
            }
            Route::AdminSubmissions => {
                let name = query_param(request, "name");
                let mut body = Vec::new();
                for s in self.submissions.iter().filter(|s| !s.deleted) {
                    if name.is_some() && s.request.application_name != name {
                        continue;
                    }
                    body.extend(serde_json::to_vec(&self.summary_of(s)).unwrap_or_default());
                    body.push(b'\n');
                }
                Answer {
                    content_type: "application/json",
                    ..Answer::text(body)
                }
            }
            Route::Log => self.log(request),
            Route::Upload => {
                self.upload(request, segments.get(1).map(String::as_str).unwrap_or(""))
            }
            Route::Healthcheck => Answer::ok(json!({"status": "OK"})),
            Route::Version | Route::Unknown => Answer::not_found(),
        }
    }

    fn unknown_route(&self, request: &Request) -> Answer {
        let known_path = self.segments(request.url.path()).is_some_and(|segments| {
            matches!(
                segments.as_slice(),
                ["spark"]
                    | ["spark", _]
                    | ["spark", _, "status" | "spec" | "driver" | "describe"]
                    | ["log"]
                    | ["s3", _]
                    | ["admin", "submissions" | "version"]
                    | ["healthcheck", "status"]
            )
        });
        if known_path {
            Answer::json(
                405,
                &json!({"code": 405, "message": "jakarta.ws.rs.NotAllowedException: HTTP 405 Method Not Allowed"}),
            )
        } else {
            Answer::not_found()
        }
    }

    fn version(&self) -> Answer {
        let body = serde_json::to_string_pretty(&json!({
            "version": concat!("mock-", env!("CARGO_PKG_VERSION")),
            "gitCommit": "0000000",
            "buildTime": "1970-01-01T00:00:00Z",
        }))
        .unwrap_or_default();
        Answer {
            content_type: "application/json",
            ..Answer::text(format!("{body}\n"))
        }
    }

    fn submit(&mut self, request: &Request, user: &str) -> Answer {
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let parsed: Result<Value, String> = if content_type.to_ascii_lowercase().contains("yaml") {
            std::str::from_utf8(&request.body)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string()))
        } else {
            serde_json::from_slice::<Value>(&request.body).map_err(|e| e.to_string())
        };
        let body = match parsed {
            Ok(body) => body,
            Err(e) => return Answer::error(400, format!("Failed to parse request: {e}")),
        };
        let Some(fields) = body.as_object() else {
            return Answer::error(400, "Failed to parse request: expected an object");
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !REQUEST_FIELDS.contains(&k.as_str()))
        {
            return Answer::error(
                400,
                format!(
                    "Unrecognized field \"{unknown}\" (class com.apple.spark.api.SubmitApplicationRequest), not marked as ignorable"
                ),
            );
        }
        let typed: SubmitApplicationRequest = match serde_json::from_value(body.clone()) {
            Ok(typed) => typed,
            Err(e) => return Answer::error(400, format!("Failed to parse request: {e}")),
        };
        let Some(version) = typed.spark_version.clone() else {
            return Answer::error(400, "Spark version not supported: null");
        };
        let serves = |c: &MockCluster| {
            c.spark_versions
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&version))
        };
        let cluster = match &typed.cluster_id {
            Some(pinned) => match self.clusters.iter().find(|c| c.id == *pinned && serves(c)) {
                Some(c) => c.id.clone(),
                None => {
                    return Answer::error(
                        400,
                        format!(
                            "Cluster with id {pinned} having Spark version {version} not found"
                        ),
                    );
                }
            },
            None => {
                let candidates: Vec<&MockCluster> = self
                    .clusters
                    .iter()
                    .filter(|c| c.weight > 0 && serves(c))
                    .collect();
                let total: u64 = candidates.iter().map(|c| u64::from(c.weight)).sum();
                if total == 0 {
                    return Answer::error(400, format!("Spark version not supported: {version}"));
                }
                let mut draw = self.rng.random_range(0..total);
                let mut chosen = candidates[0].id.clone();
                for c in candidates {
                    if draw < u64::from(c.weight) {
                        chosen = c.id.clone();
                        break;
                    }
                    draw -= u64::from(c.weight);
                }
                chosen
            }
        };
        let instances = typed
            .executor
            .as_ref()
            .and_then(|e| e.instances)
            .unwrap_or(1);
        if instances > self.max_executor_instances {
            return Answer::error(
                400,
                format!(
                    "The number of executors requested ({instances}) exceeds the maximum allowed ({})",
                    self.max_executor_instances
                ),
            );
        }
        let memories = [
            typed.driver.as_ref().and_then(|d| d.memory.clone()),
            typed.executor.as_ref().and_then(|e| e.memory.clone()),
        ];
        for memory in memories.into_iter().flatten() {
            if !memory
                .trim_end()
                .ends_with(|c: char| c.is_ascii_alphabetic())
            {
                // BPG parses the unit without checking for one: unit-less memory is a 500.
                return Answer::error(
                    500,
                    format!("java.lang.NumberFormatException: For input string: \"{memory}\""),
                );
            }
        }
        let labels: BTreeMap<String, String> = typed
            .driver
            .as_ref()
            .and_then(|d| d.labels.clone())
            .unwrap_or_default();
        let script = match SimScript::from_labels(&labels, &self.default_script) {
            Ok(script) => script,
            Err(diagnostics) => {
                return Answer::error(400, format!("invalid simulation labels: {diagnostics}"));
            }
        };
        let suffix = typed.submission_id_suffix.clone().filter(|s| !s.is_empty());
        let uuid = random_hex(&mut self.rng);
        let id = match &suffix {
            Some(suffix) => format!("{cluster}-{uuid}-{suffix}"),
            None => format!("{cluster}-{uuid}"),
        };
        if !is_dns_subdomain(&id) {
            // The id is the SparkApplication's name; Kubernetes rejects it and BPG answers 500.
            return Answer::error(
                500,
                format!(
                    "io.fabric8.kubernetes.client.KubernetesClientException: SparkApplication.sparkoperator.k8s.io \"{id}\" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            );
        }
        let task = match (labels.get("dag_name"), labels.get("task_name")) {
            (Some(dag), Some(task)) => Some(format!("{dag}/{task}")),
            _ => typed.application_name.clone(),
        };
        let attempt = match task {
            Some(task) => {
                let n = self.attempts.entry(task).or_insert(0);
                *n += 1;
                *n
            }
            None => 1,
        };
        let proxy_user = match query_param(request, "dagUser") {
            Some(dag_user) if user == "airflow_system_account" => dag_user,
            _ => user.to_owned(),
        };
        let spark_app_id = format!("spark-{}", random_hex(&mut self.rng));
        let at = self.now();
        self.submissions.push(Stored {
            id: id.clone(),
            cluster,
            user: proxy_user,
            suffix,
            body,
            request: typed,
            script,
            attempt,
            at,
            spark_app_id,
            deleted: false,
        });
        Answer::ok(json!({ "submissionId": id }))
    }

    fn find_live(&self, id: &str) -> Option<&Stored> {
        self.submissions.iter().find(|s| s.id == id && !s.deleted)
    }

    /// Checks the id as BPG does: malformed or unknown cluster ⇒ 400, unknown application ⇒ 404.
    fn with_live(&self, id: &str, answer: impl FnOnce(&State, &Stored) -> Answer) -> Answer {
        if let Err(error) = self.check_cluster(id) {
            return Answer::error(400, error);
        }
        match self.find_live(id) {
            Some(s) => answer(self, s),
            None => Answer::error(404, format!("Application {id} not found")),
        }
    }

    fn check_cluster(&self, id: &str) -> Result<(), String> {
        let parsed = crate::SubmissionId::parse(id)
            .map_err(|e| format!("Invalid submission ID {id}: {}", e.reason))?;
        if self.clusters.iter().any(|c| c.id == parsed.cluster) {
            Ok(())
        } else {
            Err(format!(
                "Cluster {} (in submissionId: {id}) not exists",
                parsed.cluster
            ))
        }
    }

    fn status(&self, id: &str) -> Answer {
        // BPG's status cache wraps the cluster lookup's 400 into a 500 (wire contract §1.3).
        if let Err(error) = self.check_cluster(id) {
            return Answer::error(
                500,
                format!(
                    "com.google.common.util.concurrent.UncheckedExecutionException: {BPG_EXCEPTION}: {error}"
                ),
            );
        }
        match self.find_live(id) {
            Some(s) => Answer::ok(Value::Object(self.status_fields(s))),
            None => Answer::error(404, format!("Application {id} not found")),
        }
    }

    fn delete(&mut self, id: &str) -> Answer {
        if let Err(error) = self.check_cluster(id) {
            return Answer::error(400, error);
        }
        // Deleting a missing application is still a 200 in BPG.
        if let Some(s) = self.submissions.iter_mut().find(|s| s.id == id) {
            s.deleted = true;
        }
        Answer::ok(json!({ "submissionId": id }))
    }

    fn elapsed(&self, s: &Stored) -> Duration {
        self.now().saturating_sub(s.at)
    }

    fn run_end(s: &Stored) -> Duration {
        s.script.queue_delay + s.script.duration
    }

    pub(super) fn state_of(&self, s: &Stored) -> &'static str {
        s.script.native_state_at(self.elapsed(s), s.attempt)
    }

    fn status_fields(&self, s: &Stored) -> Map<String, Value> {
        let state = self.state_of(s);
        let created = self.wall_ms(s.at);
        let mut fields = Map::new();
        fields.insert("creationTime".into(), json!(created));
        let terminal = matches!(state, "COMPLETED" | "FAILED");
        if state != "SUBMITTED" {
            fields.insert("sparkApplicationId".into(), json!(s.spark_app_id));
        }
        fields.insert("executionAttempts".into(), json!(1));
        let duration = if terminal {
            let end = created + Self::run_end(s).as_millis() as i64;
            fields.insert("terminationTime".into(), json!(end));
            end - created
        } else {
            self.elapsed(s).as_millis() as i64
        };
        fields.insert("duration".into(), json!(duration));
        fields.insert("applicationState".into(), json!(state));
        if state == "FAILED" {
            fields.insert(
                "applicationErrorMessage".into(),
                json!(s.script.failure_message),
            );
        }
        if state == "RUNNING"
            && let Some(ui) = self
                .clusters
                .iter()
                .find(|c| c.id == s.cluster)
                .and_then(|c| c.spark_ui_url.clone())
        {
            fields.insert(
                "sparkUIUrl".into(),
                json!(format!("{ui}/spark-jobs/{}", s.id)),
            );
        }
        fields
    }

    fn summary_of(&self, s: &Stored) -> Value {
        let mut fields = self.status_fields(s);
        let gib = |m: Option<&String>| m.map_or(1, |m| memory_gib(m));
        let driver_cores = s.request.driver.as_ref().and_then(|d| d.cores).unwrap_or(1) as i64;
        let driver_gb = gib(s.request.driver.as_ref().and_then(|d| d.memory.as_ref()));
        let instances = s
            .request
            .executor
            .as_ref()
            .and_then(|e| e.instances)
            .unwrap_or(1) as i64;
        let executor_cores = s
            .request
            .executor
            .as_ref()
            .and_then(|e| e.cores)
            .unwrap_or(1) as i64;
        let executor_gb = gib(s.request.executor.as_ref().and_then(|e| e.memory.as_ref()));
        let labels = s
            .request
            .driver
            .as_ref()
            .and_then(|d| d.labels.clone())
            .unwrap_or_default();
        let queue = s.request.queue.clone().unwrap_or_else(|| "poc".into());
        for (key, value) in [
            ("submissionId", json!(s.id)),
            ("user", json!(s.user)),
            ("queue", json!(format!("root.{queue}"))),
            (
                "dagName",
                json!(labels.get("dag_name").cloned().unwrap_or_default()),
            ),
            ("driverCores", json!(driver_cores)),
            ("driverMemoryGB", json!(driver_gb)),
            ("executorInstances", json!(instances)),
            ("executorCores", json!(executor_cores)),
            ("executorMemoryGB", json!(executor_gb)),
            (
                "totalCores",
                json!(instances * executor_cores + driver_cores),
            ),
            ("totalMemoryGB", json!(instances * executor_gb + driver_gb)),
            ("sparkVersion", json!(s.request.spark_version)),
        ] {
            fields.insert(key.into(), value);
        }
        if let Some(name) = &s.request.application_name {
            fields.insert("applicationName".into(), json!(name));
        }
        if let Some(args) = &s.request.arguments {
            fields.insert("applicationArguments".into(), json!(args));
        }
        Value::Object(fields)
    }

    fn spec_of(&self, s: &Stored) -> Value {
        let mut spec = Map::new();
        let r = &s.request;
        let app_type = r.app_type.clone().unwrap_or_else(|| {
            if r.main_class.as_deref().is_some_and(|c| !c.is_empty()) {
                "Java"
            } else {
                "Python"
            }
            .into()
        });
        spec.insert("type".into(), json!(app_type));
        spec.insert("sparkVersion".into(), json!(r.spark_version));
        spec.insert("originalUser".into(), json!(s.user));
        spec.insert("proxyUser".into(), json!(s.user));
        spec.insert("mode".into(), json!("cluster"));
        for key in [
            "image",
            "mainClass",
            "mainApplicationFile",
            "arguments",
            "deps",
            "pythonVersion",
            "imagePullPolicy",
            "restartPolicy",
            "volumes",
        ] {
            if let Some(value) = s.body.get(key) {
                spec.insert(key.into(), value.clone());
            }
        }
        let mut conf: Map<String, Value> = s
            .body
            .get("sparkConf")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(name) = &r.application_name {
            conf.insert("spark.app.name".into(), json!(name));
        }
        if !conf.is_empty() {
            spec.insert("sparkConf".into(), Value::Object(conf));
        }
        for pod in ["driver", "executor"] {
            let mut value = s.body.get(pod).cloned().unwrap_or_else(|| json!({}));
            if let Some(fields) = value.as_object_mut() {
                // BPG never returns pod env (it may hold secrets).
                fields.remove("env");
                fields.entry("cores").or_insert(json!(1));
                fields.entry("memory").or_insert(json!("1g"));
            }
            spec.insert(pod.into(), value);
        }
        Value::Object(spec)
    }

    fn driver_of(&self, s: &Stored) -> Value {
        if self.state_of(s) == "SUBMITTED" {
            return json!({});
        }
        json!({
            "podName": format!("{}-driver", s.id),
            "startTime": self.wall_ms(s.at + s.script.queue_delay),
        })
    }

    fn describe_of(&self, s: &Stored) -> String {
        let spec = serde_saphyr::to_string(&self.spec_of(s)).unwrap_or_default();
        let mut out = format!("--- Spark Spec ---\n{spec}");
        if !out.ends_with('\n') {
            out.push('\n');
        }
        // Events print Kubernetes' RFC 3339 `lastTimestamp`.
        let stamp = |at: Duration| {
            chrono::DateTime::from_timestamp_millis(self.wall_ms(at))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        out.push_str("--- Spark Application Events ---\n");
        out.push_str(&format!(
            "{} SparkApplicationAdded SparkApplication {} was added, enqueuing it for submission\n",
            stamp(s.at),
            s.id
        ));
        let state = self.state_of(s);
        if state != "SUBMITTED" {
            out.push_str(&format!(
                "{} SparkApplicationSubmitted SparkApplication {} was submitted successfully\n",
                stamp(s.at + s.script.queue_delay),
                s.id
            ));
        }
        match state {
            "COMPLETED" => out.push_str(&format!(
                "{} SparkApplicationCompleted SparkApplication {} completed\n",
                stamp(s.at + Self::run_end(s)),
                s.id
            )),
            "FAILED" => out.push_str(&format!(
                "{} SparkApplicationFailed SparkApplication {} failed: {}\n",
                stamp(s.at + Self::run_end(s)),
                s.id,
                s.script.failure_message
            )),
            _ => {}
        }
        out.push_str("--- Spark Driver Events ---\n");
        if state != "SUBMITTED" {
            out.push_str(&format!(
                "{} SparkDriverRunning Driver {}-driver is running\n",
                stamp(s.at + s.script.queue_delay),
                s.id
            ));
        }
        out
    }

    /// Driver log lines written by mock time `at`.
    fn log_lines_at(s: &Stored, at: Duration) -> Vec<String> {
        let elapsed = at.saturating_sub(s.at);
        if elapsed < s.script.queue_delay {
            return Vec::new();
        }
        let running = elapsed - s.script.queue_delay;
        let mut lines: Vec<String> = (0..s.script.log_lines)
            .take_while(|&i| s.script.log_line_offset(i) <= running)
            .map(|i| s.script.log_line(i))
            .collect();
        if running >= s.script.duration
            && s.script.outcome_for_attempt(s.attempt) == SimOutcome::Failed
        {
            lines.push(format!(
                "ERROR simulated driver: {}",
                s.script.failure_message
            ));
        }
        lines
    }

    fn log(&self, request: &Request) -> Answer {
        let sub_id = query_param(request, "subId").unwrap_or_default();
        let app_id = query_param(request, "appId").unwrap_or_default();
        if sub_id.is_empty() && app_id.is_empty() {
            return Answer::error(
                400,
                "Error: Please provide either a submissionId or an appId.",
            );
        }
        for id in [&sub_id, &app_id] {
            if !id.is_empty() && id.len() < 32 {
                return Answer::error(400, format!("Invalid ID: {id}"));
            }
        }
        let found = if sub_id.is_empty() {
            self.submissions.iter().find(|s| s.spark_app_id == app_id)
        } else {
            self.submissions.iter().find(|s| s.id == sub_id)
        };
        let exec_id = query_param(request, "execId").unwrap_or_default();
        let driver = exec_id.is_empty() || exec_id.ends_with("driver");
        let Some(s) = found.filter(|s| !s.deleted && driver) else {
            return Answer::text(NO_LOGS_BODY);
        };
        debug_assert!(NO_LOGS_BODY.starts_with(NO_LOGS_NOTICE));
        let now = self.now();
        let end = s.at + Self::run_end(s);
        match self.state_of(s) {
            "SUBMITTED" => Answer::text(NO_LOGS_BODY),
            "RUNNING" => {
                // Follow mode: held until the driver ends (then BPG appends "\n") or the hold passes.
                let hold = (end - now).min(self.max_log_hold);
                let mut body: String = Self::log_lines_at(s, now + hold)
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect();
                if now + hold >= end {
                    body.push('\n');
                }
                Answer {
                    delay: Some(hold),
                    ..Answer::text(body)
                }
            }
            // Archived logs: each line, then a blank line after the object.
            _ => {
                let mut body: String = Self::log_lines_at(s, end)
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect();
                body.push('\n');
                Answer::text(body)
            }
        }
    }

    fn upload(&mut self, request: &Request, name: &str) -> Answer {
        let length = query_param(request, "content-length").or_else(|| {
            request
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        match length.as_deref().map(str::parse::<u64>) {
            Some(Ok(n)) if n == request.body.len() as u64 => {}
            Some(Ok(n)) => {
                return Answer::error(
                    400,
                    format!(
                        "content-length {n} does not match the {} bytes received",
                        request.body.len()
                    ),
                );
            }
            _ => return Answer::error(400, "Please specify a valid content-length"),
        }
        let key = match query_param(request, "folder") {
            Some(folder) => format!("uploaded/{}/{name}", folder.trim_matches('/')),
            None => format!("uploaded/{}/{name}", random_hex(&mut self.rng)),
        };
        let url = format!("s3a://mock-bucket/{key}");
        self.uploads.push((url.clone(), request.body.clone()));
        Answer::ok(json!({ "url": url }))
    }

    pub(super) fn view(&self, s: &Stored) -> MockSubmission {
        MockSubmission {
            id: s.id.clone(),
            cluster: s.cluster.clone(),
            user: s.user.clone(),
            suffix: s.suffix.clone(),
            request: s.body.clone(),
            script: s.script.clone(),
            attempt: s.attempt,
            state: self.state_of(s).to_owned(),
            deleted: s.deleted,
        }
    }
}

fn query_param(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn random_hex(rng: &mut SmallRng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// Whether `name` is a valid Kubernetes resource name (DNS-1123 subdomain).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Spark memory (`2g`, `512m`, `4096k`) in whole GiB, truncated as BPG's summary does.
fn memory_gib(memory: &str) -> i64 {
    let memory = memory.trim().to_ascii_lowercase();
    let digits: String = memory
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let unit = memory[digits.len()..]
        .trim_end_matches('b')
        .trim_end_matches('i');
    let number: f64 = digits.parse().unwrap_or(0.0);
    let bytes = number
        * match unit {
            "k" => 1024.0,
            "m" => 1024.0 * 1024.0,
            "g" => 1024.0 * 1024.0 * 1024.0,
            "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => 1.0,
        };
    (bytes / (1024.0 * 1024.0 * 1024.0)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_gib_truncates() {
        assert_eq!(memory_gib("2g"), 2);
        assert_eq!(memory_gib("512m"), 0);
        assert_eq!(memory_gib("2048m"), 2);
        assert_eq!(memory_gib("3Gi"), 3);
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("c-0123-x"));
        assert!(!is_dns_subdomain("c-0123-X"));
        assert!(!is_dns_subdomain("c-0123-"));
        assert!(!is_dns_subdomain("c_1"));
    }

    #[test]
    fn percent_decoding_of_segments() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b+c");
    }
}
