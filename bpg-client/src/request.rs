//! Pure request building and response parsing: no I/O, unit-tested without a server.

use std::time::Duration;

use bpg_core::formats::bpg::SubmitApplicationRequest;
use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ApiError, ClientError};

/// The body of `POST /spark`: JSON (the default) or YAML, which BPG picks by `Content-Type`.
///
/// ```
/// use bpg_client::SubmitBody;
/// let yaml = SubmitBody::yaml("sparkVersion: \"3.5\"\nmainApplicationFile: local:///pi.py\n");
/// assert_eq!(yaml.content_type(), "application/yaml");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitBody {
    /// A JSON `SubmitApplicationRequest`.
    Json(Bytes),
    /// A YAML `SubmitApplicationRequest` (quote `sparkVersion`: BPG reads `3.10` as `3.1`).
    Yaml(Bytes),
}

impl SubmitBody {
    /// Serializes a typed request as JSON.
    pub fn from_request(request: &SubmitApplicationRequest) -> Result<SubmitBody, bpg_core::Error> {
        serde_json::to_vec(request)
            .map(|v| SubmitBody::Json(Bytes::from(v)))
            .map_err(|e| bpg_core::Error::backend(crate::error::BACKEND, false, e))
    }

    /// A JSON body as given.
    pub fn json(body: impl Into<Bytes>) -> Self {
        SubmitBody::Json(body.into())
    }

    /// A YAML body as given.
    pub fn yaml(body: impl Into<Bytes>) -> Self {
        SubmitBody::Yaml(body.into())
    }

    /// The `Content-Type` sent with it.
    pub fn content_type(&self) -> &'static str {
        match self {
            SubmitBody::Json(_) => "application/json",
            SubmitBody::Yaml(_) => "application/yaml",
        }
    }

    fn bytes(&self) -> Bytes {
        match self {
            SubmitBody::Json(b) | SubmitBody::Yaml(b) => b.clone(),
        }
    }
}

/// What `GET /log` reads: a submission's or a Spark application's logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// By submission id (`subId`).
    Submission(String),
    /// By Spark application id (`appId`); BPG looks the submission up in its database or the
    /// History Server.
    Application(String),
}

/// A `GET /log` request, and how the client reads it.
///
/// BPG streams a live driver's log in follow mode (the response stays open until the driver
/// exits) and answers for finished jobs from archived logs. With [`LogRequest::follow`], the
/// client also rides over dropped or cut streams (an ingress read timeout, a pod not started yet):
/// it re-requests the log, skips the lines it already yielded, and ends once the submission's
/// status is final. Without it, one response is read; set [`LogRequest::idle_timeout`] to end a
/// snapshot of a live driver at the first pause instead of at the driver's exit.
///
/// ```
/// use std::time::Duration;
/// use bpg_client::LogRequest;
/// let r = LogRequest::submission("c1-0123456789abcdef0123456789abcdef").follow().from_line(10);
/// assert!(r.is_follow());
/// let snapshot = LogRequest::submission("c1-0123456789abcdef0123456789abcdef").idle_timeout(Duration::from_secs(2));
/// assert!(!snapshot.is_follow());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRequest {
    pub(crate) target: LogTarget,
    pub(crate) exec_id: Option<String>,
    pub(crate) follow: bool,
    pub(crate) from_line: u64,
    pub(crate) idle_timeout: Option<Duration>,
}

impl LogRequest {
    /// The driver log of a submission.
    pub fn submission(id: impl Into<String>) -> Self {
        LogRequest {
            target: LogTarget::Submission(id.into()),
            exec_id: None,
            follow: false,
            from_line: 0,
            idle_timeout: None,
        }
    }

    /// The driver log of a Spark application id.
    pub fn application(app_id: impl Into<String>) -> Self {
        LogRequest {
            target: LogTarget::Application(app_id.into()),
            ..LogRequest::submission("")
        }
    }

    /// An executor's log instead of the driver's (`execId`).
    pub fn executor(mut self, exec_id: impl Into<String>) -> Self {
        self.exec_id = Some(exec_id.into());
        self
    }

    /// Follow until the submission's status is final (needs a submission target).
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }

    /// Skip the lines before position `n` (0-based), to resume.
    pub fn from_line(mut self, n: u64) -> Self {
        self.from_line = n;
        self
    }

    /// End the stream when no bytes arrive for this long.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Whether the request follows.
    pub fn is_follow(&self) -> bool {
        self.follow
    }

    /// The submission id, when the target is one.
    pub fn submission_id(&self) -> Option<&str> {
        match &self.target {
            LogTarget::Submission(id) => Some(id),
            LogTarget::Application(_) => None,
        }
    }
}

/// One HTTP request, before any I/O. Paths are segments below the context path, so ids are
/// percent-encoded and can never escape it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestSpec {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub content_type: Option<&'static str>,
    pub body: Option<Bytes>,
    /// Safe to send again (retried on temporary failures).
    pub idempotent: bool,
    /// The body is a stream read without a total deadline.
    pub streaming: bool,
    /// What the request is about, for errors (`submission x`).
    pub what: String,
}

impl RequestSpec {
    fn new(method: Method, segments: &[&str], what: impl Into<String>) -> Self {
        let idempotent = method == Method::GET || method == Method::DELETE;
        RequestSpec {
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            content_type: None,
            body: None,
            idempotent,
            streaming: false,
            what: what.into(),
        }
    }

    /// The full URL below `base` (which ends in the context path).
    pub fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for segment in &self.segments {
                path.push(segment);
            }
        }
        if !self.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(self.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// `METHOD /path?query` for messages.
    pub fn operation(&self, base: &Url) -> String {
        let url = self.url(base);
        match url.query() {
            Some(q) => format!("{} {}?{q}", self.method, url.path()),
            None => format!("{} {}", self.method, url.path()),
        }
    }

    pub fn submit(body: &SubmitBody) -> Self {
        let mut spec = RequestSpec::new(Method::POST, &["spark"], "submit");
        spec.content_type = Some(body.content_type());
        spec.body = Some(body.bytes());
        spec
    }

    pub fn status(id: &str) -> Self {
        RequestSpec::new(
            Method::GET,
            &["spark", id, "status"],
            format!("submission {id}"),
        )
    }

    pub fn statuses(ids: &[&str]) -> Self {
        let mut spec = RequestSpec::new(
            Method::POST,
            &["spark", "statuses"],
            format!("{} submissions", ids.len()),
        );
        spec.content_type = Some("application/json");
        spec.body = Some(Bytes::from(
            serde_json::json!({ "submissionIds": ids }).to_string(),
        ));
        // A read: safe to send again.
        spec.idempotent = true;
        spec
    }

    pub fn explain(id: &str) -> Self {
        RequestSpec::new(
            Method::GET,
            &["spark", id, "explain"],
            format!("submission {id}"),
        )
    }

    pub fn spec(id: &str) -> Self {
        RequestSpec::new(
            Method::GET,
            &["spark", id, "spec"],
            format!("submission {id}"),
        )
    }

    pub fn driver(id: &str) -> Self {
        RequestSpec::new(
            Method::GET,
            &["spark", id, "driver"],
            format!("submission {id}"),
        )
    }

    pub fn describe(id: &str) -> Self {
        let mut spec = RequestSpec::new(
            Method::GET,
            &["spark", id, "describe"],
            format!("submission {id}"),
        );
        spec.streaming = true;
        spec
    }

    pub fn delete(id: &str) -> Self {
        RequestSpec::new(Method::DELETE, &["spark", id], format!("submission {id}"))
    }

    pub fn my_submissions() -> Self {
        RequestSpec::new(Method::GET, &["spark", "mySubmissions"], "my submissions")
    }

    pub fn log(request: &LogRequest) -> Self {
        let (key, id) = match &request.target {
            LogTarget::Submission(id) => ("subId", id),
            LogTarget::Application(id) => ("appId", id),
        };
        let mut spec = RequestSpec::new(Method::GET, &["log"], format!("logs of {id}"));
        spec.query.push((key, id.clone()));
        if let Some(exec) = &request.exec_id {
            spec.query.push(("execId", exec.clone()));
        }
        spec.streaming = true;
        spec
    }

    /// `body` is `None` when the caller streams it.
    pub fn upload(name: &str, folder: Option<&str>, len: u64, body: Option<Bytes>) -> Self {
        let mut spec = RequestSpec::new(Method::POST, &["s3", name], format!("upload {name}"));
        if let Some(folder) = folder {
            spec.query.push(("folder", folder.to_owned()));
        }
        spec.query.push(("content-length", len.to_string()));
        spec.content_type = Some("application/octet-stream");
        spec.body = body;
        spec
    }

    pub fn admin_submissions(name: Option<&str>) -> Self {
        let mut spec = RequestSpec::new(Method::GET, &["admin", "submissions"], "all submissions");
        if let Some(name) = name {
            spec.query.push(("name", name.to_owned()));
        }
        spec.streaming = true;
        spec
    }

    pub fn healthcheck() -> Self {
        RequestSpec::new(Method::GET, &["healthcheck", "status"], "healthcheck")
    }

    pub fn version() -> Self {
        RequestSpec::new(Method::GET, &["admin", "version"], "version")
    }
}

/// Parses a 2xx JSON body.
pub(crate) fn parse_json<T: DeserializeOwned>(
    operation: &str,
    body: &[u8],
) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        operation: operation.to_owned(),
        message: format!("{e} in {}", excerpt(body)),
    })
}

/// Parses an error answer: BPG's `{"code": 400, "message": "..."}` (with a string code on 401),
/// or any other body as text.
pub(crate) fn parse_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Body {
        code: Option<serde_json::Value>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Body>(body).ok();
    let (code, message) = match parsed {
        Some(Body {
            code,
            message: Some(message),
        }) => (
            code.map(|c| match c {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            message,
        ),
        _ => (None, excerpt(body)),
    };
    ClientError::Api {
        error: ApiError {
            status,
            code,
            message,
        },
        retry_after: retry_after.and_then(|v| parse_retry_after(v, chrono::Utc::now())),
    }
}

/// `Retry-After` as delay seconds or an HTTP date (relative to `now`; a past date is no delay).
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

const EXCERPT_LEN: usize = 300;

/// The start of a body, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_LEN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://gw.example/skatev2").unwrap()
    }

    #[test]
    fn ids_are_path_segments_and_cannot_escape_the_context_path() {
        let url = RequestSpec::status("../admin/x?y").url(&base());
        assert_eq!(
            url.as_str(),
            "https://gw.example/skatev2/spark/..%2Fadmin%2Fx%3Fy/status"
        );
        let url = RequestSpec::delete("c-1").url(&Url::parse("http://h/apiv2/").unwrap());
        assert_eq!(url.as_str(), "http://h/apiv2/spark/c-1");
    }

    #[test]
    fn only_gets_and_deletes_are_idempotent() {
        assert!(!RequestSpec::submit(&SubmitBody::json("{}")).idempotent);
        assert!(!RequestSpec::upload("a.jar", None, 1, None).idempotent);
        for spec in [
            RequestSpec::status("x"),
            RequestSpec::spec("x"),
            RequestSpec::driver("x"),
            RequestSpec::describe("x"),
            RequestSpec::delete("x"),
            RequestSpec::my_submissions(),
            RequestSpec::log(&LogRequest::submission("x")),
            RequestSpec::admin_submissions(None),
            RequestSpec::healthcheck(),
            RequestSpec::version(),
        ] {
            assert!(spec.idempotent, "{spec:?}");
        }
    }

    #[test]
    fn log_and_upload_queries_use_the_spec_names() {
        let spec = RequestSpec::log(&LogRequest::application("spark-1").executor("3"));
        assert_eq!(
            spec.url(&base()).as_str(),
            "https://gw.example/skatev2/log?appId=spark-1&execId=3"
        );
        let spec = RequestSpec::upload(
            "a b.jar",
            Some("team/x/"),
            5,
            Some(Bytes::from_static(b"12345")),
        );
        assert_eq!(
            spec.url(&base()).as_str(),
            "https://gw.example/skatev2/s3/a%20b.jar?folder=team%2Fx%2F&content-length=5"
        );
    }

    #[test]
    fn error_bodies_with_numeric_and_string_codes() {
        let ClientError::Api { error, retry_after } = parse_error(
            400,
            None,
            br#"{"code":400,"message":"jakarta.ws.rs.WebApplicationException: Spark version not supported: 3.9"}"#,
        ) else {
            panic!()
        };
        assert_eq!(error.code.as_deref(), Some("400"));
        assert!(error.message.ends_with("Spark version not supported: 3.9"));
        assert_eq!(retry_after, None);

        let ClientError::Api { error, .. } = parse_error(
            401,
            None,
            br#"{"code":"401","message":"HTTP 401 Unauthorized."}"#,
        ) else {
            panic!()
        };
        assert_eq!(error.code.as_deref(), Some("401"));
        assert_eq!(error.message, "HTTP 401 Unauthorized.");

        let ClientError::Api { error, retry_after } =
            parse_error(503, Some(" 7 "), b"<html>Service Unavailable</html>")
        else {
            panic!()
        };
        assert_eq!(error.code, None);
        assert_eq!(error.message, "<html>Service Unavailable</html>");
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn long_bodies_are_shortened_in_messages() {
        let body = "x".repeat(1000);
        let ClientError::Api { error, .. } = parse_error(502, None, body.as_bytes()) else {
            panic!()
        };
        assert_eq!(error.message.len(), EXCERPT_LEN + 3);
    }

    #[test]
    fn bad_json_is_a_decode_error_naming_the_operation() {
        let err =
            parse_json::<crate::SubmissionStatus>("GET /skatev2/spark/x/status", b"{not json")
                .unwrap_err();
        let ClientError::Decode { operation, message } = err else {
            panic!()
        };
        assert_eq!(operation, "GET /skatev2/spark/x/status");
        assert!(message.contains("{not json"), "{message}");
    }

    #[test]
    fn retry_after_parsing() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
