//! A stateful wiremock stand-in of the EMR on EKS (`emr-containers`) job-run API, plus the two
//! CloudWatch Logs calls the backend tails driver logs with.
//!
//! It speaks the real wire format (REST-JSON, ISO-8601 timestamps, typed errors as an
//! `x-amzn-ErrorType` header plus `{"message"}`), refuses requests that are not SigV4-signed for
//! the right service, and moves job runs through EMR's states over (real, short) time:
//! `PENDING → SUBMITTED → RUNNING → COMPLETED`, or `FAILED` for runs named `fail…`; runs named
//! `long…` stay `RUNNING` until cancelled (`CANCEL_PENDING → CANCELLED`). Like moto, and unlike
//! the real service, it does not deduplicate on `clientToken`, so tests prove the backend's own
//! idempotency.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The account moto and the stand-in put in ARNs.
pub const ACCOUNT: &str = "123456789012";

/// A fault the next StartJobRun calls answer with, instead of starting a run.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub error_type: &'static str,
    pub message: &'static str,
}

#[derive(Debug)]
struct Run {
    id: String,
    body: Value,
    created: Instant,
    created_at: String,
    cancelled: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    runs: Vec<Run>,
    next_id: u64,
    start_calls: u64,
    faults: Vec<Fault>,
    /// Every request, as `METHOD path`, for assertions.
    seen: Vec<String>,
    /// Bodies of StartJobRun requests.
    start_bodies: Vec<Value>,
}

/// The stand-in: a running wiremock server and its state.
pub struct EmrStandIn {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
}

impl EmrStandIn {
    /// Starts a stand-in for one virtual cluster; states advance every `step`.
    pub async fn start(virtual_cluster_id: &str, region: &str, step: Duration) -> EmrStandIn {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Responder {
                vc: virtual_cluster_id.to_owned(),
                region: region.to_owned(),
                state: state.clone(),
                step,
            })
            .mount(&server)
            .await;
        EmrStandIn { server, state }
    }

    /// Makes the next StartJobRun calls fail with `fault`, once per queued copy.
    pub fn fail_next_start(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// How many job runs exist.
    pub fn run_count(&self) -> usize {
        self.state.lock().unwrap().runs.len()
    }

    /// How many StartJobRun requests arrived (including refused ones).
    pub fn start_calls(&self) -> u64 {
        self.state.lock().unwrap().start_calls
    }

    /// The JSON bodies of the StartJobRun requests, in order.
    pub fn start_bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().start_bodies.clone()
    }

    /// Every request seen, as `METHOD path`.
    pub fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }
}

struct Responder {
    vc: String,
    region: String,
    state: Arc<Mutex<State>>,
    step: Duration,
}

fn error(status: u16, error_type: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", error_type)
        .set_body_raw(
            json!({ "message": message }).to_string().into_bytes(),
            "application/json",
        )
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_string().into_bytes(), "application/json")
}

fn json_1_1(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_raw(body.to_string().into_bytes(), "application/x-amz-json-1.1")
}

impl Run {
    /// The state at `now`, from its age and name.
    fn state(&self, now: Instant, step: Duration) -> &'static str {
        if let Some(at) = self.cancelled {
            return if now.duration_since(at) < step {
                "CANCEL_PENDING"
            } else {
                "CANCELLED"
            };
        }
        let steps = now.duration_since(self.created).as_nanos() / step.as_nanos().max(1);
        let name = self.body["name"].as_str().unwrap_or_default();
        match steps {
            0 => "PENDING",
            1 => "SUBMITTED",
            2 | 3 => "RUNNING",
            _ if name.starts_with("long") => "RUNNING",
            _ if name.starts_with("fail") => "FAILED",
            _ => "COMPLETED",
        }
    }

    fn to_json(&self, vc: &str, region: &str, now: Instant, step: Duration) -> Value {
        let state = self.state(now, step);
        let mut run = json!({
            "id": self.id,
            "name": self.body["name"],
            "virtualClusterId": vc,
            "arn": format!("arn:aws:emr-containers:{region}:{ACCOUNT}:/virtualclusters/{vc}/jobruns/{}", self.id),
            "state": state,
            "clientToken": self.body["clientToken"],
            "executionRoleArn": self.body["executionRoleArn"],
            "releaseLabel": self.body["releaseLabel"],
            "jobDriver": self.body["jobDriver"],
            "createdAt": self.created_at,
            "createdBy": format!("arn:aws:iam::{ACCOUNT}:user/tester"),
        });
        for field in ["configurationOverrides", "tags", "retryPolicyConfiguration"] {
            if let Some(v) = self.body.get(field) {
                run[field] = v.clone();
            }
        }
        if matches!(state, "COMPLETED" | "FAILED" | "CANCELLED") {
            run["finishedAt"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        if state == "FAILED" {
            run["failureReason"] = json!("USER_ERROR");
            run["stateDetails"] = json!("Job failed (stand-in).");
        }
        if state == "CANCELLED" {
            run["stateDetails"] = json!("JobRun CANCELLED successfully.");
        }
        run
    }

    /// Driver stdout lines written by `now`: one while running, three once completed.
    fn driver_lines(&self, now: Instant, step: Duration) -> Vec<String> {
        let written = match self.state(now, step) {
            "PENDING" | "SUBMITTED" => 0,
            "RUNNING" | "CANCEL_PENDING" | "CANCELLED" => 1,
            _ => 3,
        };
        (0..written)
            .map(|i| format!("driver line {i} of {}", self.id))
            .collect()
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        let path = request.url.path().to_owned();
        st.seen.push(format!("{} {}", request.method, path));
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let auth = header("authorization");
        let target = header("x-amz-target");
        // CloudWatch Logs: awsJson1.1, `POST /` with an X-Amz-Target.
        if let Some(operation) = target.strip_prefix("Logs_20140328.") {
            if !auth.starts_with("AWS4-HMAC-SHA256 ")
                || !auth.contains(&format!("/{}/logs/aws4_request", self.region))
            {
                return error(
                    403,
                    "InvalidSignatureException",
                    "request is not signed for logs",
                );
            }
            if header("content-type") != "application/x-amz-json-1.1" {
                return error(
                    400,
                    "SerializationException",
                    "expected application/x-amz-json-1.1",
                );
            }
            let Ok(body) = request.body_json::<Value>() else {
                return error(400, "SerializationException", "body is not JSON");
            };
            return self.logs(&st, operation, &body, now);
        }
        if !auth.starts_with("AWS4-HMAC-SHA256 ")
            || !auth.contains(&format!("/{}/emr-containers/aws4_request", self.region))
        {
            return error(
                403,
                "InvalidSignatureException",
                "request is not signed for emr-containers",
            );
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            (_, ["virtualclusters", vc, "jobruns", ..]) if *vc != self.vc => error(
                400,
                "ResourceNotFoundException",
                &format!("Virtual cluster {vc} doesn't exist."),
            ),
            ("POST", ["virtualclusters", _, "jobruns"]) => {
                st.start_calls += 1;
                if header("content-type") != "application/json" {
                    return error(400, "SerializationException", "expected application/json");
                }
                let Ok(body) = request.body_json::<Value>() else {
                    return error(400, "SerializationException", "body is not JSON");
                };
                st.start_bodies.push(body.clone());
                if !st.faults.is_empty() {
                    let fault = st.faults.remove(0);
                    return error(fault.status, fault.error_type, fault.message);
                }
                let token = body["clientToken"].as_str().unwrap_or_default();
                if token.is_empty() || token.len() > 64 {
                    return error(
                        400,
                        "ValidationException",
                        "clientToken must be 1 to 64 characters",
                    );
                }
                if body["jobDriver"]["sparkSubmitJobDriver"]["entryPoint"]
                    .as_str()
                    .is_none()
                {
                    return error(
                        400,
                        "ValidationException",
                        "jobDriver.sparkSubmitJobDriver.entryPoint is required",
                    );
                }
                st.next_id += 1;
                let id = format!("{:019x}", 0xe3c0_0000_u64 + st.next_id);
                let run = Run {
                    id: id.clone(),
                    body: body.clone(),
                    created: now,
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    cancelled: None,
                };
                st.runs.push(run);
                ok(json!({
                    "id": id,
                    "name": body["name"],
                    "arn": format!("arn:aws:emr-containers:{}:{ACCOUNT}:/virtualclusters/{}/jobruns/{id}", self.region, self.vc),
                    "virtualClusterId": self.vc,
                }))
            }
            ("GET", ["virtualclusters", _, "jobruns"]) => {
                let pairs: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
                let from: usize = pairs
                    .iter()
                    .find(|(k, _)| k == "nextToken")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let name = pairs
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.as_str());
                let states: Vec<&str> = pairs
                    .iter()
                    .filter(|(k, _)| k == "states")
                    .map(|(_, v)| v.as_str())
                    .collect();
                // Newest first, two per page, so the backend must follow nextToken.
                let all: Vec<Value> = st
                    .runs
                    .iter()
                    .rev()
                    .filter(|r| states.is_empty() || states.contains(&r.state(now, self.step)))
                    .filter(|r| name.is_none_or(|n| r.body["name"].as_str() == Some(n)))
                    .map(|r| r.to_json(&self.vc, &self.region, now, self.step))
                    .collect();
                let page: Vec<Value> = all.iter().skip(from).take(2).cloned().collect();
                let mut body = json!({ "jobRuns": page });
                if from + 2 < all.len() {
                    body["nextToken"] = json!((from + 2).to_string());
                }
                ok(body)
            }
            ("GET", ["virtualclusters", _, "jobruns", id]) => {
                match st.runs.iter().find(|r| r.id == *id) {
                    Some(run) => {
                        ok(json!({ "jobRun": run.to_json(&self.vc, &self.region, now, self.step) }))
                    }
                    None => error(
                        400,
                        "ResourceNotFoundException",
                        &format!("Job run {id} doesn't exist."),
                    ),
                }
            }
            ("DELETE", ["virtualclusters", _, "jobruns", id]) => {
                let step = self.step;
                match st.runs.iter_mut().find(|r| r.id == *id) {
                    None => error(
                        400,
                        "ResourceNotFoundException",
                        &format!("Job run {id} doesn't exist."),
                    ),
                    Some(run) => {
                        let state = run.state(now, step);
                        if matches!(
                            state,
                            "COMPLETED" | "FAILED" | "CANCELLED" | "CANCEL_PENDING"
                        ) {
                            return error(
                                400,
                                "ValidationException",
                                &format!("Job run {id} is not in a cancellable state"),
                            );
                        }
                        run.cancelled = Some(now);
                        ok(json!({ "id": id, "virtualClusterId": self.vc }))
                    }
                }
            }
            _ => error(
                404,
                "UnknownOperationException",
                &format!("{method} {path}"),
            ),
        }
    }
}

impl Responder {
    fn logs(&self, st: &State, operation: &str, body: &Value, now: Instant) -> ResponseTemplate {
        let group = body["logGroupName"].as_str().unwrap_or_default();
        // Streams exist for runs that log to this group, once their driver started.
        let streams = |run: &Run| -> Vec<String> {
            let cw = &run.body["configurationOverrides"]["monitoringConfiguration"]["cloudWatchMonitoringConfiguration"];
            if cw["logGroupName"].as_str() != Some(group)
                || run.driver_lines(now, self.step).is_empty()
            {
                return Vec::new();
            }
            let prefix = cw["logStreamNamePrefix"]
                .as_str()
                .map(|p| format!("{p}/"))
                .unwrap_or_default();
            let base = format!("{prefix}{}/jobs/{}/containers", self.vc, run.id);
            vec![
                format!("{base}/{}-runner-x7z/stdout", run.id),
                format!("{base}/spark-{}/spark-{}-driver/stderr", run.id, run.id),
                format!("{base}/spark-{}/spark-{}-driver/stdout", run.id, run.id),
                format!("{base}/spark-{}/spark-{}-exec-1/stdout", run.id, run.id),
            ]
        };
        match operation {
            "DescribeLogStreams" => {
                let prefix = body["logStreamNamePrefix"].as_str().unwrap_or_default();
                let names: Vec<Value> = st
                    .runs
                    .iter()
                    .flat_map(streams)
                    .filter(|n| n.starts_with(prefix))
                    .map(|n| json!({ "logStreamName": n, "creationTime": 1_700_000_000_000_i64 }))
                    .collect();
                json_1_1(json!({ "logStreams": names }))
            }
            "GetLogEvents" => {
                let stream = body["logStreamName"].as_str().unwrap_or_default();
                let Some(run) = st
                    .runs
                    .iter()
                    .find(|r| streams(r).iter().any(|s| s == stream))
                else {
                    return error(
                        400,
                        "ResourceNotFoundException",
                        "The specified log stream does not exist.",
                    );
                };
                // Only the driver's stdout has output here; its stderr is empty, executors are not the driver.
                let lines = if stream.ends_with("-driver/stdout") {
                    run.driver_lines(now, self.step)
                } else if stream.ends_with("-exec-1/stdout") || stream.contains("-runner-") {
                    vec!["not a driver line".to_owned()]
                } else {
                    Vec::new()
                };
                let from: usize = body["nextToken"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("f/"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                // Two events per call, so the backend must page with nextForwardToken.
                let events: Vec<Value> = lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .take(2)
                    .map(|(i, l)| json!({ "timestamp": 1_700_000_000_000_i64 + i as i64, "message": l, "ingestionTime": 1_700_000_000_500_i64 }))
                    .collect();
                let next = from + events.len();
                json_1_1(json!({
                    "events": events,
                    "nextForwardToken": format!("f/{next}"),
                    "nextBackwardToken": format!("b/{from}"),
                }))
            }
            other => error(400, "UnknownOperationException", other),
        }
    }
}
