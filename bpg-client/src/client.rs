//! The HTTP transport: [`BpgClient`], its builder, retries, and the streamed endpoints.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bpg_core::formats::bpg::SubmitApplicationRequest;
use bpg_core::{Error, LogLine, LogStream, Result};
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::mpsc;
use url::Url;

use crate::config::{Auth, DEFAULT_CONTEXT_PATH, RetryPolicy};
use crate::error::{BACKEND, ClientError};
use crate::lines::LineDecoder;
use crate::request::{LogRequest, RequestSpec, SubmitBody, parse_error, parse_json};
use crate::types::{
    DeleteSubmissionResponse, DriverInfo, HealthcheckResponse, SparkApplicationSpec,
    SubmissionStatus, SubmissionSummary, SubmitApplicationResponse, UploadResponse, VersionInfo,
};

/// What BPG answers (200, no newline) when it finds neither a live driver nor archived logs.
pub const NO_LOGS_NOTICE: &str = "Cannot find matched log files.";

/// Consecutive failed rounds a followed log stream rides over before it reports the error.
const MAX_FOLLOW_ERRORS: u32 = 5;

/// Builds a [`BpgClient`]. Start with [`BpgClient::builder`].
///
/// A builder is a plain value: clone it to build several clients with the same options, hand it
/// to code that adds its own (`bpg_backends::gateway::GatewayConfig` wraps one), and read back
/// what is set with [`BpgClientBuilder::url`] and the `get_*` accessors. Its `Debug` never shows
/// secrets.
///
/// ```
/// use std::time::Duration;
/// use bpg_client::{Auth, BpgClient};
///
/// let builder = BpgClient::builder("https://gateway.internal")
///     .auth(Auth::basic("airflow", "hunter2"))
///     .request_timeout(Duration::from_secs(20));
/// assert_eq!(builder.url(), "https://gateway.internal");
/// assert_eq!(builder.get_request_timeout(), Duration::from_secs(20));
/// assert_eq!(builder.get_auth().user(), Some("airflow"));
/// assert!(!format!("{builder:?}").contains("hunter2"));
/// let client = builder.clone().build()?;
/// assert_eq!(client.base_url().as_str(), "https://gateway.internal/skatev2");
/// # Ok::<(), bpg_core::Error>(())
/// ```
#[derive(Clone)]
pub struct BpgClientBuilder {
    url: String,
    context_path: Option<String>,
    auth: Auth,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    ca_bundles: Vec<Vec<u8>>,
    client_version: String,
    log_poll_interval: Duration,
}

impl fmt::Debug for BpgClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpgClientBuilder")
            .field("url", &redact_url(&self.url))
            .field("context_path", &self.context_path)
            .field("auth", &self.auth)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("ca_bundles", &self.ca_bundles.len())
            .field("client_version", &self.client_version)
            .field("log_poll_interval", &self.log_poll_interval)
            .finish()
    }
}

/// What is set, for code that wraps a builder. (The setters take the plain names.)
impl BpgClientBuilder {
    /// The gateway URL as given to [`BpgClient::builder`] (its path, if any, is the context path
    /// unless [`BpgClientBuilder::context_path`] overrides it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The context path set with [`BpgClientBuilder::context_path`], if any.
    pub fn get_context_path(&self) -> Option<&str> {
        self.context_path.as_deref()
    }

    /// The credentials set with [`BpgClientBuilder::auth`] ([`Auth::None`] by default).
    pub fn get_auth(&self) -> &Auth {
        &self.auth
    }

    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The request timeout.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The retry policy of idempotent requests.
    pub fn get_retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The extra CA bundles (PEM), in the order given.
    pub fn get_ca_bundles(&self) -> &[Vec<u8>] {
        &self.ca_bundles
    }

    /// The `Client-Version` header value.
    pub fn get_client_version(&self) -> &str {
        &self.client_version
    }

    /// The pause between status checks of a followed log stream.
    pub fn get_log_poll_interval(&self) -> Duration {
        self.log_poll_interval
    }
}

impl BpgClientBuilder {
    /// The context path (`/skatev2`, `/apiv2`, or any custom one). Without it, the URL's own
    /// path is used, and [`DEFAULT_CONTEXT_PATH`] when the URL has none.
    pub fn context_path(mut self, path: impl Into<String>) -> Self {
        self.context_path = Some(path.into());
        self
    }

    /// Credentials.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Time to establish a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of one request (default 30 s). For streamed bodies (logs, describe, admin
    /// listing) it bounds the wait for the response headers only, since a followed log stays
    /// open as long as the driver runs.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Retries of idempotent requests (default [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Trusts the CA certificates of a PEM bundle in addition to the system's roots.
    pub fn ca_bundle_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_bundles.push(pem.into());
        self
    }

    /// The `Client-Version` header BPG logs (default `bpg-client/<version>`).
    pub fn client_version(mut self, version: impl Into<String>) -> Self {
        self.client_version = version.into();
        self
    }

    /// Pause between status checks while a followed log stream waits for more (default 1 s;
    /// BPG caches status for about a second anyway).
    pub fn log_poll_interval(mut self, interval: Duration) -> Self {
        self.log_poll_interval = interval;
        self
    }

    /// Builds the client. Errors name what is wrong with the URL, context path or TLS bundle
    /// (never the credentials).
    pub fn build(self) -> Result<BpgClient> {
        let shown = redact_url(&self.url);
        let mut base = Url::parse(&self.url)
            .map_err(|e| Error::config(format!("invalid BPG URL {shown:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::config(format!(
                "invalid BPG URL {shown:?}: expected an http:// or https:// URL"
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::config(format!(
                "BPG URL {shown:?} carries credentials; pass them with Auth instead, so they stay secret"
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::config(format!(
                "invalid BPG URL {shown:?}: expected no query or fragment"
            )));
        }
        let url_path = base.path().trim_end_matches('/').to_owned();
        let context = match self.context_path {
            Some(path) => path,
            None if url_path.is_empty() => DEFAULT_CONTEXT_PATH.to_owned(),
            None => url_path,
        };
        let context = format!("/{}", context.trim_matches('/'));
        if context.contains(['?', '#']) {
            return Err(Error::config(format!(
                "invalid BPG context path {context:?}: expected a path such as /skatev2"
            )));
        }
        base.set_path(&context);

        let auth_header = self.auth.header().map_err(Error::config)?;
        let client_version = HeaderValue::from_str(&self.client_version).map_err(|_| {
            Error::config(format!(
                "invalid Client-Version {:?}: not a valid HTTP header value",
                self.client_version
            ))
        })?;

        let mut certificates = Vec::new();
        for (i, pem) in self.ca_bundles.iter().enumerate() {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                Error::config(format!(
                    "CA bundle #{}: not a PEM certificate bundle: {e}",
                    i + 1
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "CA bundle #{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)",
                    i + 1
                )));
            }
            certificates.extend(certs);
        }
        let mut http = reqwest::Client::builder().connect_timeout(self.connect_timeout);
        if !certificates.is_empty() {
            http = http.tls_certs_merge(certificates);
        }
        let http = http
            .build()
            .map_err(|e| Error::config(format!("cannot set up the HTTP client: {e}")))?;

        Ok(BpgClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth: self.auth,
                auth_header,
                client_version,
                request_timeout: self.request_timeout,
                retry: self.retry,
                log_poll_interval: self.log_poll_interval,
            }),
        })
    }
}

/// A URL for messages: userinfo removed.
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
                format!("{parsed} (credentials removed)")
            } else {
                parsed.to_string()
            }
        }
        Err(_) => match url.rsplit_once('@') {
            Some((_, host)) => format!("<credentials removed>@{host}"),
            None => url.to_owned(),
        },
    }
}

/// A typed async client for every BPG endpoint. Cheap to clone (one shared connection pool).
///
/// ```
/// use bpg_client::{Auth, BpgClient};
/// let client = BpgClient::builder("https://gateway.internal")
///     .auth(Auth::basic("airflow", "secret"))
///     .build()
///     .unwrap();
/// assert_eq!(client.base_url().as_str(), "https://gateway.internal/skatev2");
/// let legacy = BpgClient::builder("https://gateway.internal/apiv2").build().unwrap();
/// assert_eq!(legacy.base_url().path(), "/apiv2");
/// ```
#[derive(Clone)]
pub struct BpgClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    auth_header: Option<(HeaderName, HeaderValue)>,
    client_version: HeaderValue,
    request_timeout: Duration,
    retry: RetryPolicy,
    log_poll_interval: Duration,
}

impl fmt::Debug for BpgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpgClient")
            .field("base", &self.inner.base.as_str())
            .field("auth", &self.inner.auth)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl BpgClient {
    /// A builder for the gateway at `url` (`https://host`, `https://host/skatev2`, `http://host:8080/apiv2`).
    pub fn builder(url: impl Into<String>) -> BpgClientBuilder {
        BpgClientBuilder {
            url: url.into(),
            context_path: None,
            auth: Auth::None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            ca_bundles: Vec::new(),
            client_version: concat!("bpg-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            log_poll_interval: Duration::from_secs(1),
        }
    }

    /// The gateway URL including the context path.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The credentials in use.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// `POST /spark` with a typed request. Never retried: on a temporary error the application
    /// may or may not exist; look for it with [`BpgClient::find_by_suffix`] before submitting again.
    /// A 400 becomes [`Error::InvalidSpec`] carrying BPG's message.
    pub async fn submit(
        &self,
        request: &SubmitApplicationRequest,
    ) -> Result<SubmitApplicationResponse> {
        self.submit_body(SubmitBody::from_request(request)?).await
    }

    /// `POST /spark` with a JSON or YAML body as given.
    pub async fn submit_body(&self, body: SubmitBody) -> Result<SubmitApplicationResponse> {
        self.json(RequestSpec::submit(&body), true).await
    }

    /// `GET /spark/{id}/status`.
    pub async fn status(&self, id: &str) -> Result<SubmissionStatus> {
        self.json(RequestSpec::status(id), false).await
    }

    /// `POST /spark/statuses`, bpg-gateway's extension (advertised as `batch-status` in
    /// [`VersionInfo::extensions`]): many statuses in one round trip. Each id maps to its status,
    /// or to the error the per-id endpoint would have answered (`NotFound` for an unknown id).
    pub async fn statuses(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::BTreeMap<String, Result<SubmissionStatus>>> {
        #[derive(serde::Deserialize)]
        struct Body {
            statuses: std::collections::BTreeMap<String, serde_json::Value>,
        }
        let body: Body = self.json(RequestSpec::statuses(ids), false).await?;
        Ok(body
            .statuses
            .into_iter()
            .map(|(id, value)| {
                let entry = match value.get("error") {
                    Some(error) => {
                        let code = error
                            .get("code")
                            .and_then(serde_json::Value::as_u64)
                            .unwrap_or(0);
                        let message = error
                            .get("message")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        Err(match code {
                            404 => bpg_core::Error::NotFound {
                                what: format!("submission {id} ({message})"),
                            },
                            _ => bpg_core::Error::Backend {
                                backend: "bpg".into(),
                                temporary: code >= 500,
                                source: format!("status of {id}: HTTP {code}: {message}").into(),
                            },
                        })
                    }
                    None => serde_json::from_value(value).map_err(|e| bpg_core::Error::Backend {
                        backend: "bpg".into(),
                        temporary: false,
                        source: format!("status of {id}: unexpected answer: {e}").into(),
                    }),
                };
                (id, entry)
            })
            .collect())
    }

    /// `GET /spark/{id}/explain`, bpg-gateway's extension: where the submission was routed and
    /// why (rules matched, constraints, clusters excluded), and what it waits for while it waits.
    /// Its `summary` field is the explanation for people. A Java BPG answers 404.
    pub async fn explain(&self, id: &str) -> Result<serde_json::Value> {
        self.json(RequestSpec::explain(id), false).await
    }

    /// `GET /spark/{id}/spec`.
    pub async fn spec(&self, id: &str) -> Result<SparkApplicationSpec> {
        self.json(RequestSpec::spec(id), false).await
    }

    /// `GET /spark/{id}/driver`.
    pub async fn driver_info(&self, id: &str) -> Result<DriverInfo> {
        self.json(RequestSpec::driver(id), false).await
    }

    /// `GET /spark/{id}/describe`: the spec as YAML and the Kubernetes events, as text.
    pub async fn describe(&self, id: &str) -> Result<String> {
        let spec = RequestSpec::describe(id);
        let bytes = self
            .inner
            .with_retry(&spec, || async {
                let response = self.inner.send(&spec).await?;
                response
                    .bytes()
                    .await
                    .map_err(|e| self.inner.transport(&spec, e))
            })
            .await
            .map_err(|e| e.into_core(&spec.what, false))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `DELETE /spark/{id}` (BPG answers 200 even when the application is already gone).
    pub async fn delete(&self, id: &str) -> Result<DeleteSubmissionResponse> {
        self.json(RequestSpec::delete(id), false).await
    }

    /// `GET /spark/mySubmissions`: the caller's submissions on every cluster.
    pub async fn my_submissions(&self) -> Result<Vec<SubmissionSummary>> {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            submissions: Vec<SubmissionSummary>,
        }
        let body: Body = self.json(RequestSpec::my_submissions(), false).await?;
        Ok(body.submissions)
    }

    /// The caller's submission whose id ends in `-<suffix>` (its request's `submissionIdSuffix`),
    /// the oldest when there are several. This is how a submit whose answer was lost is found
    /// again without starting a second application.
    pub async fn find_by_suffix(&self, suffix: &str) -> Result<Option<SubmissionSummary>> {
        let mut found: Vec<SubmissionSummary> = self
            .my_submissions()
            .await?
            .into_iter()
            .filter(|s| s.suffix().as_deref() == Some(suffix))
            .collect();
        found.sort_by_key(|s| s.status.creation_time.unwrap_or(i64::MAX));
        Ok(found.into_iter().next())
    }

    /// `GET /log` as a stream of lines; see [`LogRequest`] for snapshot and follow.
    ///
    /// Errors of the first request (401, 404, 5xx after retries) are returned here; later ones
    /// end the stream with an error item. A trailing blank line (BPG appends `\n` when a followed
    /// log ends) and BPG's "Cannot find matched log files" notice are not yielded.
    pub async fn logs(&self, request: &LogRequest) -> Result<LogStream> {
        let spec = RequestSpec::log(request);
        let follow_id = match (request.follow, request.submission_id()) {
            (false, _) => None,
            (true, Some(id)) => Some(id.to_owned()),
            (true, None) => {
                return Err(Error::Unsupported {
                    backend: BACKEND.into(),
                    operation: "following logs by Spark application id (follow by submission id)"
                        .into(),
                });
            }
        };
        let final_round = match &follow_id {
            Some(id) => self.status(id).await?.is_finished(),
            None => true,
        };
        let first = self
            .inner
            .with_retry(&spec, || self.inner.send(&spec))
            .await
            .map_err(|e| e.into_core(&spec.what, false))?;
        let (tx, rx) = mpsc::channel(64);
        let follower = LogFollower {
            client: self.clone(),
            request: request.clone(),
            spec,
            follow_id,
            seen: 0,
            tx,
        };
        let task = tokio::spawn(follower.run(first, final_round));
        Ok(Box::pin(ChannelStream {
            rx,
            task: task.abort_handle(),
        }))
    }

    /// `POST /s3/{name}`: uploads an artifact (optionally into `folder`) and returns its URL.
    /// Not retried (without a folder every upload lands under a new random key).
    pub async fn upload(
        &self,
        name: &str,
        folder: Option<&str>,
        content: impl Into<Bytes>,
    ) -> Result<UploadResponse> {
        let content = content.into();
        let spec = RequestSpec::upload(name, folder, content.len() as u64, Some(content));
        self.json(spec, false).await
    }

    /// `POST /s3/{name}` with a streamed body of exactly `content_length` bytes (BPG requires the
    /// length up front), for artifacts too large to hold in memory.
    pub async fn upload_stream<S>(
        &self,
        name: &str,
        folder: Option<&str>,
        content_length: u64,
        content: S,
    ) -> Result<UploadResponse>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let spec = RequestSpec::upload(name, folder, content_length, None);
        let body = reqwest::Body::wrap_stream(content);
        let inner = &self.inner;
        let result = async {
            let response = inner
                .send_with_body(&spec, Some((body, content_length)))
                .await?;
            let bytes = response
                .bytes()
                .await
                .map_err(|e| inner.transport(&spec, e))?;
            parse_json(&spec.operation(&inner.base), &bytes)
        }
        .await;
        result.map_err(|e: ClientError| e.into_core(&spec.what, false))
    }

    /// Uploads a local file under its own name, streaming it from disk.
    pub async fn upload_file(
        &self,
        path: impl AsRef<std::path::Path>,
        folder: Option<&str>,
    ) -> Result<UploadResponse> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::config(format!("{}: not a file name", path.display())))?
            .to_owned();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::config(format!("{}: cannot open: {e}", path.display())))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| Error::config(format!("{}: cannot read metadata: {e}", path.display())))?
            .len();
        let chunks = futures::stream::try_unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt as _;
            let mut buffer = vec![0u8; 64 * 1024];
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                return Ok(None);
            }
            buffer.truncate(n);
            Ok(Some((Bytes::from(buffer), file)))
        });
        self.upload_stream(&name, folder, length, chunks).await
    }

    /// `GET /admin/submissions` (optionally only one application name), streamed as BPG sends
    /// it: one JSON summary per line.
    pub async fn admin_submissions(
        &self,
        name: Option<&str>,
    ) -> Result<BoxStream<'static, Result<SubmissionSummary>>> {
        let spec = RequestSpec::admin_submissions(name);
        let response = self
            .inner
            .with_retry(&spec, || self.inner.send(&spec))
            .await
            .map_err(|e| e.into_core(&spec.what, false))?;
        let (tx, rx) = mpsc::channel(64);
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let operation = spec.operation(&inner.base);
            let mut body = response.bytes_stream();
            let mut decoder = LineDecoder::default();
            loop {
                let (lines, done) = match body.next().await {
                    Some(Ok(chunk)) => (decoder.push(&chunk), false),
                    Some(Err(e)) => {
                        let error = inner.transport(&spec, e).into_core(&spec.what, false);
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    None => (decoder.finish().into_iter().collect(), true),
                };
                for line in lines.iter().filter(|l| !l.trim().is_empty()) {
                    let item = parse_json::<SubmissionSummary>(&operation, line.as_bytes())
                        .map_err(|e| e.into_core(&spec.what, false));
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
            }
        });
        Ok(Box::pin(ChannelStream {
            rx,
            task: task.abort_handle(),
        }))
    }

    /// `GET /healthcheck/status`.
    pub async fn healthcheck(&self) -> Result<HealthcheckResponse> {
        self.json(RequestSpec::healthcheck(), false).await
    }

    /// `GET /admin/version`.
    pub async fn version(&self) -> Result<VersionInfo> {
        self.json(RequestSpec::version(), false).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        spec: RequestSpec,
        is_submit: bool,
    ) -> Result<T> {
        let inner = &self.inner;
        inner
            .with_retry(&spec, || async {
                let response = inner.send(&spec).await?;
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| inner.transport(&spec, e))?;
                parse_json(&spec.operation(&inner.base), &bytes)
            })
            .await
            .map_err(|e| e.into_core(&spec.what, is_submit))
    }
}

impl Inner {
    /// Sends one request; a non-2xx answer becomes [`ClientError::Api`].
    async fn send(&self, spec: &RequestSpec) -> Result<reqwest::Response, ClientError> {
        self.send_with_body(spec, None).await
    }

    /// [`Inner::send`] with a streamed body and its length instead of the spec's bytes.
    async fn send_with_body(
        &self,
        spec: &RequestSpec,
        stream: Option<(reqwest::Body, u64)>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(spec.method.clone(), spec.url(&self.base))
            .header("Client-Version", self.client_version.clone());
        if let Some((name, value)) = &self.auth_header {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(content_type) = spec.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        if let Some((body, length)) = stream {
            request = request
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(body);
        }
        tracing::debug!(operation = %spec.operation(&self.base), "BPG request");
        let response = if spec.streaming {
            // Only the headers have a deadline: a followed log stays open while the driver runs.
            tokio::time::timeout(self.request_timeout, request.send())
                .await
                .map_err(|_| ClientError::Timeout {
                    operation: spec.operation(&self.base),
                    after: self.request_timeout,
                })?
        } else {
            request.timeout(self.request_timeout).send().await
        }
        .map_err(|e| self.transport(spec, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.unwrap_or_default();
        let error = parse_error(status.as_u16(), retry_after.as_deref(), &body);
        tracing::debug!(operation = %spec.operation(&self.base), status = status.as_u16(), "BPG error answer");
        Err(error)
    }

    /// Classifies a reqwest failure.
    fn transport(&self, spec: &RequestSpec, error: reqwest::Error) -> ClientError {
        let operation = spec.operation(&self.base);
        if error.is_timeout() {
            return ClientError::Timeout {
                operation,
                after: self.request_timeout,
            };
        }
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ClientError::Transport { operation, message }
    }

    /// Runs `attempt` once, and again on temporary failures when the request is idempotent.
    async fn with_retry<T, F, Fut>(
        &self,
        spec: &RequestSpec,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if spec.idempotent && error.is_temporary() => {
                    retry += 1;
                    let jitter = rand::random_range(0.5..=1.0);
                    match self.retry.delay_before(retry, error.retry_after(), jitter) {
                        Some(delay) => {
                            tracing::debug!(
                                operation = %spec.operation(&self.base),
                                retry,
                                ?delay,
                                error = ?error,
                                "temporary BPG failure, retrying"
                            );
                            tokio::time::sleep(delay).await;
                        }
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// A stream fed by a background task, which is stopped when the stream is dropped.
struct ChannelStream<T> {
    rx: mpsc::Receiver<T>,
    task: tokio::task::AbortHandle,
}

impl<T> Stream for ChannelStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> Drop for ChannelStream<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `/log` responses into lines, re-requesting while following.
struct LogFollower {
    client: BpgClient,
    request: LogRequest,
    spec: RequestSpec,
    /// The submission whose status decides when following ends.
    follow_id: Option<String>,
    /// Lines (by position) already yielded or skipped.
    seen: u64,
    tx: mpsc::Sender<Result<LogLine>>,
}

/// How one response ended.
struct Round {
    new_lines: u64,
    error: Option<ClientError>,
    receiver_gone: bool,
}

impl LogFollower {
    async fn run(mut self, first: reqwest::Response, mut final_round: bool) {
        let mut response = Some(first);
        let mut failures = 0u32;
        loop {
            let round = match response.take() {
                Some(r) => self.read(r, final_round).await,
                None => match self
                    .client
                    .inner
                    .with_retry(&self.spec, || self.client.inner.send(&self.spec))
                    .await
                {
                    Ok(r) => self.read(r, final_round).await,
                    Err(error) => Round {
                        new_lines: 0,
                        error: Some(error),
                        receiver_gone: false,
                    },
                },
            };
            if round.receiver_gone {
                return;
            }
            let Some(id) = self.follow_id.clone() else {
                if let Some(error) = round.error {
                    let _ = self
                        .tx
                        .send(Err(error.into_core(&self.spec.what, false)))
                        .await;
                }
                return;
            };
            match round.error {
                Some(error) => {
                    failures += 1;
                    if failures >= MAX_FOLLOW_ERRORS || !error.is_temporary() {
                        let _ = self
                            .tx
                            .send(Err(error.into_core(&self.spec.what, false)))
                            .await;
                        return;
                    }
                }
                None if final_round => return,
                None => failures = 0,
            }
            if round.new_lines == 0 {
                tokio::time::sleep(self.client.inner.log_poll_interval).await;
            }
            // The status is read before the next request, so a request that starts after the
            // application finished is the last one and sees the whole log.
            final_round = match self.client.status(&id).await {
                Ok(status) => status.is_finished(),
                // Deleted: nothing more will be written.
                Err(Error::NotFound { .. }) => return,
                Err(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    return;
                }
            };
        }
    }

    /// Streams one response. Blank lines are held back until a non-blank line follows, so the
    /// newline BPG appends to a finished log is not yielded; an unterminated last line is only
    /// yielded in the final round (in earlier rounds it may still be growing).
    async fn read(&mut self, response: reqwest::Response, final_round: bool) -> Round {
        let mut round = Round {
            new_lines: 0,
            error: None,
            receiver_gone: false,
        };
        let mut body = response.bytes_stream();
        let mut decoder = LineDecoder::default();
        let mut position: u64 = 0;
        let mut blanks: u64 = 0;
        loop {
            let next = match self.request.idle_timeout {
                Some(idle) => match tokio::time::timeout(idle, body.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => body.next().await,
            };
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    round.error = Some(self.client.inner.transport(&self.spec, e));
                    break;
                }
            };
            for line in decoder.push(&chunk) {
                if !self
                    .take(line, &mut position, &mut blanks, &mut round)
                    .await
                {
                    return round;
                }
            }
        }
        if final_round
            && round.error.is_none()
            && let Some(last) = decoder.finish()
            && !(position == 0 && last.starts_with(NO_LOGS_NOTICE))
        {
            self.take(last, &mut position, &mut blanks, &mut round)
                .await;
        }
        round
    }

    /// Handles the line at `*position`; false when the receiver is gone.
    async fn take(
        &mut self,
        text: String,
        position: &mut u64,
        blanks: &mut u64,
        round: &mut Round,
    ) -> bool {
        if text.is_empty() {
            *blanks += 1;
            *position += 1;
            return true;
        }
        let first_blank = *position - *blanks;
        for p in first_blank..*position {
            if !self.emit(p, String::new(), round).await {
                return false;
            }
        }
        *blanks = 0;
        let p = *position;
        *position += 1;
        self.emit(p, text, round).await
    }

    async fn emit(&mut self, position: u64, text: String, round: &mut Round) -> bool {
        if position < self.seen {
            return true;
        }
        self.seen = position + 1;
        round.new_lines += 1;
        if position < self.request.from_line {
            return true;
        }
        if self.tx.send(Ok(LogLine { position, text })).await.is_err() {
            round.receiver_gone = true;
            return false;
        }
        true
    }
}
