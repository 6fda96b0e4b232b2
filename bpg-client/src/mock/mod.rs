//! `MockGateway`: a stateful Batch Processing Gateway on a local wiremock server, the way to test
//! your own pipelines (and the gateway backend) without a cluster.
//!
//! It speaks BPG's wire contract: it validates submissions as BPG does (unknown top-level fields,
//! a missing or unsupported `sparkVersion`, too many executors, unit-less memory, an unknown
//! pinned cluster), issues `<cluster>-<32 hex>[-<suffix>]` ids, moves each application through
//! `SUBMITTED` → `RUNNING` → `COMPLETED`/`FAILED` over time, serves status, spec, driver info,
//! describe, delete, `mySubmissions`, the admin NDJSON listing, uploads, healthcheck and version,
//! and answers with BPG's error bodies (including the 401 with a string code).
//!
//! **Scripting.** Each application behaves as its driver labels say, with the `sim/*` labels of
//! [`bpg_core::SimScript`] (`sim/duration`, `sim/outcome`, `sim/fail-attempts`, `sim/log-lines`,
//! `sim/queue-delay`, `sim/message`), over the gateway's default script. Attempts for
//! `sim/fail-attempts` are counted per task: the driver labels `dag_name` + `task_name` when
//! present, else `applicationName`.
//!
//! **Time.** The mock's clock is real time plus whatever [`MockGateway::advance`] added, so a
//! test can jump an application to its end without waiting.
//!
//! **Logs.** `GET /log` for a running driver is held open (wiremock sends a whole body, after a
//! delay) until the driver ends or [`MockGatewayBuilder::max_log_hold`] passes, whichever is
//! first, and then carries every line written by then, just as a followed BPG stream cut by an
//! ingress timeout would. A following [`BpgClient`] re-requests and carries on, so
//! lines arrive in batches rather than one by one; the lines and their order are what BPG sends.
//! Finished applications answer at once with the whole log; pending, unknown or deleted ones
//! with BPG's "Cannot find matched log files" notice.
//!
//! **Faults.** [`MockGateway::inject`] adds a [`Fault`]: an error status (with `Retry-After`),
//! latency, or a dropped connection, for the next N matching requests or a fraction of them, on
//! every route or one [`Route`]. A dropped submit is recorded before the connection drops, so the
//! client sees a connection error for an application that exists: the case idempotent submits
//! must handle (find it again by its `submissionIdSuffix` with [`MockGateway::find_by_suffix`] or
//! the client's [`find_by_suffix`](crate::BpgClient::find_by_suffix)). Like BPG, the mock never
//! deduplicates by suffix: a second submit with the same suffix is a second application.
//!
//! **Journal.** Every request is recorded ([`MockGateway::journal`]) with its route, user,
//! headers, body and the status answered, for assertions.
//!
//! ```
//! use bpg_client::mock::{Fault, MockCluster, MockGateway, Route};
//! use bpg_client::{LogRequest, SubmitBody};
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bpg_core::Result<()> {
//! let gateway = MockGateway::builder()
//!     .cluster(MockCluster::new("spark-cluster-a").spark_versions(["3.5"]))
//!     .start()
//!     .await;
//! let client = gateway.client("alice");
//! let submitted = client
//!     .submit_body(SubmitBody::json(
//!         r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///pi.py","submissionIdSuffix":"pi-1",
//!            "driver":{"labels":{"sim/duration":"200ms","sim/log-lines":"3"}}}"#,
//!     ))
//!     .await?;
//! assert!(submitted.submission_id.starts_with("spark-cluster-a-"));
//! assert_eq!(gateway.find_by_suffix("pi-1").unwrap().id, submitted.submission_id);
//!
//! let lines: Vec<String> = client
//!     .logs(&LogRequest::submission(&submitted.submission_id).follow())
//!     .await?
//!     .map(|line| line.map(|l| l.text))
//!     .collect::<Vec<_>>()
//!     .await
//!     .into_iter()
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(lines.len(), 3);
//! assert_eq!(client.status(&submitted.submission_id).await?.application_state.as_deref(), Some("COMPLETED"));
//!
//! let asked = gateway.journal_for(Route::Status).len();
//! gateway.inject(Fault::status(503).on(Route::Status).times(1));
//! client.status(&submitted.submission_id).await?; // retried once, then answered
//! assert_eq!(gateway.journal_for(Route::Status).len(), asked + 2);
//! # Ok(())
//! # }
//! ```

mod handler;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bpg_core::SimScript;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;
use wiremock::matchers::any;
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{Auth, BpgClient, BpgClientBuilder, DEFAULT_CONTEXT_PATH, RetryPolicy};

/// One cluster behind the mock gateway (BPG's `sparkClusters[]` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockCluster {
    /// Cluster id; may contain `-` (see [`SubmissionId`](crate::SubmissionId)).
    pub id: String,
    /// Spark versions it serves (exact, case-insensitive match as BPG does).
    pub spark_versions: Vec<String>,
    /// Routing weight; 0 takes it out of routing (a pinned `clusterId` still reaches it).
    pub weight: u32,
    /// Spark UI base for running applications.
    pub spark_ui_url: Option<String>,
}

impl MockCluster {
    /// A cluster serving Spark 3.1 to 3.5 with weight 1.
    pub fn new(id: impl Into<String>) -> Self {
        MockCluster {
            id: id.into(),
            spark_versions: ["3.1", "3.2", "3.3", "3.4", "3.5"]
                .map(String::from)
                .to_vec(),
            weight: 1,
            spark_ui_url: None,
        }
    }

    /// Sets the Spark versions served.
    pub fn spark_versions<I, S>(mut self, versions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spark_versions = versions.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the routing weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the Spark UI base URL.
    pub fn spark_ui_url(mut self, url: impl Into<String>) -> Self {
        self.spark_ui_url = Some(url.into());
        self
    }
}

/// The BPG endpoint a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `POST /spark`
    Submit,
    /// `GET /spark/{id}/status`
    Status,
    /// `GET /spark/{id}/spec`
    Spec,
    /// `GET /spark/{id}/driver`
    Driver,
    /// `GET /spark/{id}/describe`
    Describe,
    /// `DELETE /spark/{id}`
    Delete,
    /// `GET /spark/mySubmissions`
    MySubmissions,
    /// `GET /log`
    Log,
    /// `POST /s3/{name}`
    Upload,
    /// `GET /admin/submissions`
    AdminSubmissions,
    /// `GET /admin/version`
    Version,
    /// `GET /healthcheck/status`
    Healthcheck,
    /// Anything else (answered 404 or 405).
    Unknown,
}

/// What a [`Fault`] does to a request.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Answer this status with BPG's error body instead of handling the request.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds to send.
        retry_after: Option<u64>,
    },
    /// Handle the request normally, but answer this much later.
    Delay(Duration),
    /// Handle the request (a submit is recorded), then drop the connection without answering.
    DropConnection,
}

/// A fault to inject into matching requests: all of them, the next N, or a fraction.
///
/// ```
/// use std::time::Duration;
/// use bpg_client::mock::{Fault, Route};
/// let f = Fault::status(503).on(Route::Status).times(2).retry_after(1);
/// let slow = Fault::delay(Duration::from_millis(200)).fraction(0.5);
/// let lost_answer = Fault::drop_connection().on(Route::Submit).times(1);
/// # let _ = (f, slow, lost_answer);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Only this route (every route when `None`).
    pub route: Option<Route>,
    /// Only this many more times (for ever when `None`).
    pub remaining: Option<u32>,
    /// Only this fraction of matching requests, drawn from the gateway's seeded RNG.
    pub fraction: Option<f64>,
}

impl Fault {
    fn new(kind: FaultKind) -> Self {
        Fault {
            kind,
            route: None,
            remaining: None,
            fraction: None,
        }
    }

    /// Answer `status` (e.g. 500, 503, 429) with a BPG error body.
    pub fn status(status: u16) -> Self {
        Fault::new(FaultKind::Status {
            status,
            retry_after: None,
        })
    }

    /// Answer late.
    pub fn delay(delay: Duration) -> Self {
        Fault::new(FaultKind::Delay(delay))
    }

    /// Handle the request, then drop the connection.
    pub fn drop_connection() -> Self {
        Fault::new(FaultKind::DropConnection)
    }

    /// Only requests for `route`.
    pub fn on(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Only a fraction (0 to 1) of matching requests.
    pub fn fraction(mut self, fraction: f64) -> Self {
        self.fraction = Some(fraction.clamp(0.0, 1.0));
        self
    }

    /// With a status fault, send `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        if let FaultKind::Status { retry_after, .. } = &mut self.kind {
            *retry_after = Some(seconds);
        }
        self
    }
}

/// One request the mock received, as received: the headers include the credentials sent, so
/// tests can assert on them; `Debug` shows `Authorization` as `<redacted>`.
#[derive(Clone)]
pub struct JournalEntry {
    /// HTTP method.
    pub method: String,
    /// Full path, context path included.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// The endpoint.
    pub route: Route,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// The authenticated user, if authentication passed.
    pub user: Option<String>,
    /// The status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
}

impl JournalEntry {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The body as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl fmt::Debug for JournalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let shown = if n == "authorization" {
                    "<redacted>"
                } else {
                    v
                };
                (n.as_str(), shown)
            })
            .collect();
        f.debug_struct("JournalEntry")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("route", &self.route)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("user", &self.user)
            .field("status", &self.status)
            .finish()
    }
}

/// An application the mock accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct MockSubmission {
    /// Submission id.
    pub id: String,
    /// Cluster it was routed to.
    pub cluster: String,
    /// The proxy user it runs as.
    pub user: String,
    /// The `submissionIdSuffix`, if any.
    pub suffix: Option<String>,
    /// The request body as received (parsed from JSON or YAML).
    pub request: Value,
    /// Its script.
    pub script: SimScript,
    /// Which attempt of its task this is (1-based).
    pub attempt: u32,
    /// spark-operator's state now (`SUBMITTED`, `RUNNING`, `COMPLETED`, `FAILED`).
    pub state: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// Builds a [`MockGateway`].
#[derive(Clone)]
pub struct MockGatewayBuilder {
    clusters: Vec<MockCluster>,
    context_path: String,
    default_script: SimScript,
    allowed_users: Option<Vec<String>>,
    bearer_tokens: Vec<(String, String)>,
    max_log_hold: Duration,
    max_executor_instances: u32,
    seed: u64,
}

impl fmt::Debug for MockGatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self.bearer_tokens.iter().map(|(_, u)| u.as_str()).collect();
        f.debug_struct("MockGatewayBuilder")
            .field("clusters", &self.clusters)
            .field("context_path", &self.context_path)
            .field("default_script", &self.default_script)
            .field("allowed_users", &self.allowed_users)
            .field("bearer_token_users", &users)
            .field("max_log_hold", &self.max_log_hold)
            .field("max_executor_instances", &self.max_executor_instances)
            .field("seed", &self.seed)
            .finish()
    }
}

impl MockGatewayBuilder {
    /// Adds a cluster. Without any, the gateway fronts one cluster, `minikube`.
    ///
    /// # Panics
    /// When the cluster id cannot prefix submission ids ([`validate_cluster_id`](crate::validate_cluster_id)):
    /// a broken test setup, not input.
    pub fn cluster(mut self, cluster: MockCluster) -> Self {
        if let Err(e) = crate::validate_cluster_id(&cluster.id) {
            panic!("MockGateway: {e}");
        }
        self.clusters.push(cluster);
        self
    }

    /// Serves under this context path (default `/skatev2`; `/apiv2` for a legacy gateway).
    pub fn context_path(mut self, path: impl Into<String>) -> Self {
        self.context_path = format!("/{}", path.into().trim_matches('/'));
        self
    }

    /// The script of applications whose labels do not say otherwise (default: 1 s, succeeds, no log lines).
    pub fn default_script(mut self, script: SimScript) -> Self {
        self.default_script = script;
        self
    }

    /// Only these users get in (default: everyone who names themselves, as BPG's `allowedUsers: ['*']`).
    pub fn allowed_users<I, S>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_users = Some(users.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts `Authorization: Bearer <token>` as `user` (as a sidecar in front of BPG would).
    pub fn bearer_token(mut self, token: impl Into<String>, user: impl Into<String>) -> Self {
        self.bearer_tokens.push((token.into(), user.into()));
        self
    }

    /// Longest time a `/log` request for a running driver is held open (default 1 s).
    pub fn max_log_hold(mut self, hold: Duration) -> Self {
        self.max_log_hold = hold;
        self
    }

    /// The queue's `maxExecutorInstances` (default 5000).
    pub fn max_executor_instances(mut self, max: u32) -> Self {
        self.max_executor_instances = max;
        self
    }

    /// Seed of the RNG behind weighted routing and fractional faults (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Starts the server on a free local port.
    pub async fn start(self) -> MockGateway {
        let mut clusters = self.clusters;
        if clusters.is_empty() {
            clusters.push(MockCluster::new("minikube"));
        }
        let state = Arc::new(Mutex::new(handler::State {
            clusters,
            context_path: self.context_path.clone(),
            default_script: self.default_script,
            allowed_users: self.allowed_users,
            bearer_tokens: self.bearer_tokens,
            max_log_hold: self.max_log_hold,
            max_executor_instances: self.max_executor_instances,
            rng: SmallRng::seed_from_u64(self.seed),
            started: Instant::now(),
            started_wall_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            offset: Duration::ZERO,
            submissions: Vec::new(),
            attempts: HashMap::new(),
            uploads: Vec::new(),
            faults: Vec::new(),
            journal: Vec::new(),
        }));
        let server = MockServer::start().await;
        Mock::given(DropArmed(state.clone()))
            .respond_with_err(drop_responder(state.clone()))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(GatewayResponder(state.clone()))
            .with_priority(2)
            .mount(&server)
            .await;
        MockGateway {
            server,
            state,
            context_path: self.context_path,
        }
    }
}

/// A stateful BPG stand-in; see the [module docs](self).
pub struct MockGateway {
    server: MockServer,
    state: Arc<Mutex<handler::State>>,
    context_path: String,
}

impl fmt::Debug for MockGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockGateway")
            .field("uri", &self.uri())
            .finish_non_exhaustive()
    }
}

impl MockGateway {
    /// A builder with BPG's defaults.
    pub fn builder() -> MockGatewayBuilder {
        MockGatewayBuilder {
            clusters: Vec::new(),
            context_path: DEFAULT_CONTEXT_PATH.to_owned(),
            default_script: SimScript::default(),
            allowed_users: None,
            bearer_tokens: Vec::new(),
            max_log_hold: Duration::from_secs(1),
            max_executor_instances: 5000,
            seed: 0,
        }
    }

    /// A gateway with one cluster (`minikube`) and default settings.
    pub async fn start() -> MockGateway {
        MockGateway::builder().start().await
    }

    /// The gateway URL including the context path (`http://127.0.0.1:PORT/skatev2`).
    pub fn uri(&self) -> String {
        format!("{}{}", self.server.uri(), self.context_path)
    }

    /// The server's root URL, without the context path.
    pub fn server_uri(&self) -> String {
        self.server.uri()
    }

    /// A client builder for this gateway, with test-friendly timings: retries after 10–100 ms,
    /// log polling every 50 ms, 5 s request timeout.
    pub fn client_builder(&self) -> BpgClientBuilder {
        BpgClient::builder(self.uri())
            .retry(
                RetryPolicy::default()
                    .backoff_between(Duration::from_millis(10), Duration::from_millis(100)),
            )
            .log_poll_interval(Duration::from_millis(50))
            .request_timeout(Duration::from_secs(5))
    }

    /// A client authenticated as `user` with the `User-Account` header.
    ///
    /// # Panics
    /// When `user` is not a valid HTTP header value (a broken test setup).
    pub fn client(&self, user: &str) -> BpgClient {
        match self.client_builder().auth(Auth::user_account(user)).build() {
            Ok(client) => client,
            Err(e) => panic!("MockGateway::client: {e}"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, handler::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fault; faults are checked in the order added, the first that fires wins.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Moves the mock's clock forward: applications progress as if `by` had passed.
    pub fn advance(&self, by: Duration) {
        self.lock().offset += by;
    }

    /// Every request received so far, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.lock().journal.clone()
    }

    /// The requests for one route.
    pub fn journal_for(&self, route: Route) -> Vec<JournalEntry> {
        self.lock()
            .journal
            .iter()
            .filter(|e| e.route == route)
            .cloned()
            .collect()
    }

    /// Every application accepted, deleted ones included, oldest first.
    pub fn submissions(&self) -> Vec<MockSubmission> {
        let state = self.lock();
        state.submissions.iter().map(|s| state.view(s)).collect()
    }

    /// One application by id.
    pub fn submission(&self, id: &str) -> Option<MockSubmission> {
        self.submissions().into_iter().find(|s| s.id == id)
    }

    /// The oldest application submitted with `submissionIdSuffix` = `suffix`.
    pub fn find_by_suffix(&self, suffix: &str) -> Option<MockSubmission> {
        self.submissions()
            .into_iter()
            .find(|s| s.suffix.as_deref() == Some(suffix))
    }

    /// How many applications were accepted.
    pub fn accepted_count(&self) -> usize {
        self.lock().submissions.len()
    }

    /// Uploaded artifacts: the URL answered and the bytes received.
    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().uploads.clone()
    }
}

/// Matches requests a drop-connection fault fires for (and uses the fault up).
struct DropArmed(Arc<Mutex<handler::State>>);

impl Match for DropArmed {
    fn matches(&self, request: &Request) -> bool {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let route = state.route_of(request);
        state.fire_drop_fault(route)
    }
}

/// Handles a request whose connection is then dropped (the error makes wiremock close it unanswered).
fn drop_responder(
    state: Arc<Mutex<handler::State>>,
) -> impl Fn(&Request) -> std::io::Error + Send + Sync {
    move |request: &Request| {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.handle(request, true);
        std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "MockGateway dropped the connection (injected fault)",
        )
    }
}

/// Handles every other request.
struct GatewayResponder(Arc<Mutex<handler::State>>);

impl Respond for GatewayResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.handle(request, false)
    }
}
