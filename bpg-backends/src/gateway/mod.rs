//! [`GatewayBackend`]: runs Spark jobs through a Batch Processing Gateway (BPG) with bpg-client:
//! submit is `POST /spark`, status `GET /spark/{id}/status`, logs `GET /log` (followed while the
//! driver runs), cancel `DELETE /spark/{id}`, find `GET /spark/mySubmissions`.
//!
//! - **Idempotency.** BPG has no idempotency token, so the key's digest becomes the request's
//!   `submissionIdSuffix` ([`GatewayBackend::submission_id_suffix`]); the id then ends in it.
//!   [`find`](Backend::find) looks through the caller's submissions (`mySubmissions`) for one with
//!   that suffix. A first submit does not look (that would list every submission of the user each
//!   time, quadratic over a pipeline): a key submitted by this backend returns its first
//!   submission from memory, and when a submit's answer is lost (dropped connection, timeout, 5xx)
//!   it looks before reporting the error. Callers that may have submitted before in another
//!   process (a resumed run) or whose retry follows an unanswered submit call `find` first; the
//!   pipeline's executor and [`RetryLayer`](crate::layers::RetryLayer) do. The lookup is per BPG
//!   user, so the same key used by two users makes two applications. (BPG allows `mySubmissions`
//!   20 requests per second, gateway-wide; a 429 is a temporary error retried after
//!   `Retry-After`.)
//! - **Cancel** deletes the SparkApplication (BPG has no other stop). Afterwards BPG answers 404 for
//!   it; this backend remembers what it cancelled and reports those as `Cancelled` (a job that
//!   already ended is left alone, so its final state stays readable). In another process a
//!   cancelled job is simply not found.
//! - **States** map through [`JobState::from_bpg`]; `UNKNOWN` right after submit is normal.
//! - **Status** against a bpg gateway (which advertises `batch-status` in `/admin/version`) is
//!   gathered: the status calls made within [`BATCH_WINDOW`] travel in one `POST /spark/statuses`.
//!   Against a Java BPG each is its own `GET /spark/{id}/status`.
//! - **Ids** are BPG submission ids, `<cluster>-<32 hex>-<suffix>`; the cluster is read back even
//!   when cluster ids contain `-` ([`SubmissionId`]).
//!
//! ```
//! use bpg_backends::gateway::{GatewayBackend, GatewayConfig};
//! use bpg_client::mock::{MockCluster, MockGateway};
//! use bpg_core::{AppType, Backend, BackendExt, IdempotencyKey, JobState, SparkJob, SubmitOptions, WaitOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bpg_core::Result<()> {
//! let bpg = MockGateway::builder().cluster(MockCluster::new("spark-a")).start().await;
//! let url = bpg.uri().replace("http://", "bpg+http://airflow@");
//! let gateway = GatewayBackend::new(GatewayConfig::from_url(&url)?.name("bpg"))?;
//!
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py").with_label("sim/duration", "100ms");
//! let opts = SubmitOptions::new().with_idempotency_key(IdempotencyKey::for_task("daily", "run-1", "pi", 1));
//! let first = gateway.submit(&job, &opts).await?;
//! let again = gateway.submit(&job, &opts).await?; // remembered: no second application
//! assert_eq!(first.id, again.id);
//! // Another process (say a resumed runner) finds it by its submissionIdSuffix.
//! let elsewhere = GatewayBackend::new(GatewayConfig::from_url(&url)?.name("bpg"))?;
//! assert_eq!(elsewhere.find(opts.idempotency_key.as_ref().unwrap()).await?.map(|s| s.id), Some(first.id.clone()));
//! assert_eq!(first.cluster.as_deref(), Some("spark-a"));
//! let status = gateway.wait_for_terminal(&first.id, &WaitOptions::default()).await?;
//! assert_eq!(status.state, JobState::Succeeded);
//! assert_eq!(bpg.accepted_count(), 1);
//! # Ok(())
//! # }
//! ```

mod config;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bpg_client::{BpgClient, LogRequest, SubmissionId, SubmissionSummary};
use bpg_core::formats::to_bpg_request;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobState, JobStatus, LogLine, LogOptions,
    LogStream, Result, SparkJob, Submission, SubmitOptions,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;

pub use config::{DEFAULT_NAME, GatewayConfig};

/// Hex digits of the idempotency key's digest used as `submissionIdSuffix`. Short on purpose: the
/// id names a SparkApplication, whose name ends up in 63-character label values, and BPG's ids
/// are already `<cluster>-<32 hex>`; 48 bits are plenty to tell one user's submissions apart.
pub const SUFFIX_LEN: usize = 12;

/// Native state reported for an application this backend deleted (BPG has forgotten it).
pub const CANCELLED_NATIVE_STATE: &str = "DELETED";

/// A [`Backend`] over one BPG endpoint; see the [module docs](self).
#[derive(Clone)]
pub struct GatewayBackend {
    name: String,
    client: BpgClient,
    memory: Arc<Mutex<Memory>>,
    batch: Arc<StatusBatch>,
}

/// How long status calls are gathered before one batch request carries them.
pub const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Most ids one batch request carries (the gateway's limit).
pub const BATCH_MAX: usize = 10_000;

type StatusReply = tokio::sync::oneshot::Sender<Result<bpg_client::SubmissionStatus>>;

/// Status calls waiting for the next batch request, against a gateway that advertises
/// `batch-status` (asked once, from `/admin/version`).
#[derive(Default)]
struct StatusBatch {
    supported: tokio::sync::OnceCell<bool>,
    /// The waiting calls, and whether a flush is on its way.
    queue: Mutex<(Vec<(String, StatusReply)>, bool)>,
}

/// What this process knows beyond what BPG answers.
#[derive(Default)]
struct Memory {
    /// Submissions accepted (or found) per key: saves a `mySubmissions` round trip.
    by_key: HashMap<IdempotencyKey, Submission>,
    /// Ids this backend deleted: BPG answers 404 for them afterwards.
    cancelled: HashSet<String>,
}

impl fmt::Debug for GatewayBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayBackend")
            .field("name", &self.name)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl GatewayBackend {
    /// A backend for the gateway `config` describes. Makes no request.
    pub fn new(config: GatewayConfig) -> Result<Self> {
        let client = config.client()?;
        Ok(GatewayBackend::from_client(config.name, client))
    }

    /// A backend over an already built client (shared with the caller's own BPG calls).
    pub fn from_client(name: impl Into<String>, client: BpgClient) -> Self {
        GatewayBackend {
            name: name.into(),
            client,
            memory: Arc::default(),
            batch: Arc::default(),
        }
    }

    /// Whether the gateway serves many statuses in one call (a bpg gateway does, a Java BPG does
    /// not); asked once. A gateway that cannot say is treated as a Java BPG.
    async fn batches(&self) -> bool {
        *self
            .batch
            .supported
            .get_or_init(|| async {
                match self.client.version().await {
                    Ok(v) => v.extensions.iter().any(|e| e == "batch-status"),
                    Err(e) => {
                        tracing::debug!(backend = %self.name, error = %e, "no version answer: status per id");
                        false
                    }
                }
            })
            .await
    }

    /// One status: gathered with the others asked within [`BATCH_WINDOW`] into one
    /// `POST /spark/statuses` where the gateway serves it, else `GET /spark/{id}/status`. So a
    /// runner following 10,000 jobs makes a few requests per poll, not 10,000.
    async fn fetch_status(&self, id: &str) -> Result<bpg_client::SubmissionStatus> {
        if !self.batches().await {
            return self.client.status(id).await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start_flush = {
            let mut queue = self.batch.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.0.push((id.to_owned(), tx));
            !std::mem::replace(&mut queue.1, true)
        };
        if start_flush {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(BATCH_WINDOW).await;
                me.flush_statuses().await;
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::Unavailable {
                message: format!("{}: the status batch was dropped", self.name),
            })
        })
    }

    async fn flush_statuses(&self) {
        loop {
            let waiting = {
                let mut queue = self.batch.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.0.is_empty() {
                    queue.1 = false;
                    return;
                }
                let n = queue.0.len().min(BATCH_MAX);
                queue.0.drain(..n).collect::<Vec<_>>()
            };
            let ids: Vec<&str> = waiting.iter().map(|(id, _)| id.as_str()).collect();
            match self.client.statuses(&ids).await {
                Ok(mut answers) => {
                    for (id, reply) in waiting {
                        let answer = answers.remove(&id).unwrap_or_else(|| {
                            Err(Error::Backend {
                                backend: self.name.clone(),
                                temporary: true,
                                source: format!("the batch answer has no status for {id}").into(),
                            })
                        });
                        let _ = reply.send(answer);
                    }
                }
                Err(e) => {
                    let temporary = e.is_temporary();
                    let message = e.to_string();
                    for (_, reply) in waiting {
                        let _ = reply.send(Err(if temporary {
                            Error::Unavailable {
                                message: message.clone(),
                            }
                        } else {
                            Error::Backend {
                                backend: self.name.clone(),
                                temporary: false,
                                source: message.clone().into(),
                            }
                        }));
                    }
                }
            }
        }
    }

    /// The underlying client, for endpoints this backend does not wrap (spec, describe, upload).
    pub fn client(&self) -> &BpgClient {
        &self.client
    }

    /// The `submissionIdSuffix` a submit with `key` carries (after the job's own suffix, if it
    /// sets one): the first [`SUFFIX_LEN`] hex digits of the key's digest.
    ///
    /// ```
    /// use bpg_backends::gateway::GatewayBackend;
    /// use bpg_core::IdempotencyKey;
    /// let key = IdempotencyKey::for_task("daily", "run-1", "pi", 1);
    /// assert_eq!(GatewayBackend::submission_id_suffix(&key), key.digest(12));
    /// ```
    pub fn submission_id_suffix(key: &IdempotencyKey) -> String {
        key.digest(SUFFIX_LEN)
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, submission: &Submission) {
        if let Some(key) = &submission.idempotency_key {
            self.memory().by_key.insert(key.clone(), submission.clone());
        }
    }

    fn is_cancelled(&self, id: &JobId) -> bool {
        self.memory().cancelled.contains(id.as_str())
    }

    /// Only BPG submission ids can name one of this gateway's jobs; anything else is not found
    /// without asking (BPG would answer 400 or 500 for it).
    fn check_id(&self, id: &JobId) -> Result<()> {
        SubmissionId::parse(id.as_str())
            .map(|_| ())
            .map_err(|e| Error::NotFound {
                what: format!("submission {id} on gateway {} ({})", self.name, e.reason),
            })
    }

    fn submission(
        &self,
        id: &str,
        queue: Option<String>,
        key: Option<&IdempotencyKey>,
        submitted_at: Option<DateTime<Utc>>,
    ) -> Submission {
        let mut submission = Submission::new(id, self.name.clone());
        submission.cluster = SubmissionId::cluster_of(id);
        submission.namespace = queue;
        submission.idempotency_key = key.cloned();
        if let Some(at) = submitted_at {
            submission.submitted_at = at;
        }
        submission
    }

    /// The caller's oldest live submission made with `key`, from `mySubmissions`.
    async fn lookup(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let digest = GatewayBackend::submission_id_suffix(key);
        let mut found: Vec<SubmissionSummary> = self
            .client
            .my_submissions()
            .await?
            .into_iter()
            .filter(|s| s.suffix().is_some_and(|suffix| carries(&suffix, &digest)))
            .collect();
        found.sort_by_key(|s| s.status.creation_time.unwrap_or(i64::MAX));
        Ok(found.first().map(|s| {
            let queue = s
                .queue
                .as_deref()
                .filter(|q| !q.is_empty())
                .map(|q| q.strip_prefix("root.").unwrap_or(q).to_owned());
            let created = s
                .status
                .creation_time
                .and_then(DateTime::from_timestamp_millis);
            self.submission(&s.submission_id, queue, Some(key), created)
        }))
    }
}

/// Whether a submission id suffix was made for `digest`: it is the digest, or ends in `-<digest>`
/// (after the job's own suffix).
fn carries(suffix: &str, digest: &str) -> bool {
    suffix == digest
        || suffix
            .strip_suffix(digest)
            .is_some_and(|rest| rest.ends_with('-'))
}

#[async_trait]
impl Backend for GatewayBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::all();
        caps.watch = false;
        caps
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let mut request = to_bpg_request(job);
        if !options.tags.is_empty() {
            // BPG has no tags; driver labels are the closest thing it keeps.
            let labels = request
                .driver
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(Default::default);
            for (k, v) in &options.tags {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let Some(key) = &options.idempotency_key else {
            let answer = self.client.submit(&request).await?;
            return Ok(self.submission(&answer.submission_id, job.queue.clone(), None, None));
        };

        // A key this process already submitted returns its submission. An earlier attempt from
        // elsewhere (a crashed runner, a lost answer) is the caller's to look for with `find`
        // first, as the executor's resume and the retry layer do: looking before every first
        // submit would list all of the user's submissions each time.
        let remembered = self.memory().by_key.get(key).cloned();
        if let Some(submission) = remembered {
            return Ok(submission);
        }

        let digest = GatewayBackend::submission_id_suffix(key);
        request.submission_id_suffix = Some(
            match request
                .submission_id_suffix
                .take()
                .filter(|s| !s.is_empty())
            {
                Some(own) => format!("{own}-{digest}"),
                None => digest,
            },
        );
        match self.client.submit(&request).await {
            Ok(answer) => {
                let submission =
                    self.submission(&answer.submission_id, job.queue.clone(), Some(key), None);
                self.remember(&submission);
                Ok(submission)
            }
            Err(error) if error.is_temporary() => {
                // The gateway may have created the application before the answer was lost.
                tracing::warn!(backend = %self.name, key = %key, %error, "submit got no answer; looking for the submission by its suffix");
                match self.lookup(key).await {
                    Ok(Some(submission)) => {
                        self.remember(&submission);
                        Ok(submission)
                    }
                    Ok(None) => Err(error),
                    Err(lookup) => {
                        tracing::warn!(backend = %self.name, key = %key, error = %lookup, "could not look for the submission; a retry will");
                        Err(error)
                    }
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.check_id(id)?;
        match self.fetch_status(id.as_str()).await {
            Ok(answer) => {
                let mut status = answer.to_job_status();
                if !status.is_terminal() && self.is_cancelled(id) {
                    // Deleted, but BPG still serves a cached status for about a second.
                    status.state = JobState::Cancelling;
                }
                Ok(status)
            }
            Err(Error::NotFound { .. }) if self.is_cancelled(id) => {
                Ok(JobStatus::new(JobState::Cancelled, CANCELLED_NATIVE_STATE)
                    .with_message(format!("cancelled: deleted through gateway {}", self.name)))
            }
            Err(error) => Err(error),
        }
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        self.check_id(id)?;
        let mut request = LogRequest::submission(id.as_str()).from_line(options.from_line);
        if options.follow {
            request = request.follow();
        }
        let stream = self.client.logs(&request).await?;
        match options.tail {
            Some(n) if !options.follow => {
                let lines: Vec<LogLine> = stream
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_>>()?;
                let skip = lines
                    .len()
                    .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
                let tail: Vec<Result<LogLine>> = lines.into_iter().skip(skip).map(Ok).collect();
                Ok(futures::stream::iter(tail).boxed())
            }
            _ => Ok(stream),
        }
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.check_id(id)?;
        if !self.is_cancelled(id) {
            let status = self.fetch_status(id.as_str()).await?;
            if status.state().is_terminal() {
                // Deleting it would only erase its final state.
                return Ok(());
            }
            self.memory().cancelled.insert(id.as_str().to_owned());
        }
        // DELETE is idempotent in BPG (200 for a missing application), so a cancel whose answer
        // was lost is simply sent again.
        match self.client.delete(id.as_str()).await {
            Ok(_) => Ok(()),
            Err(error) => {
                if !error.is_temporary() {
                    self.memory().cancelled.remove(id.as_str());
                }
                Err(error)
            }
        }
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let remembered = self.memory().by_key.get(key).cloned();
        if let Some(submission) = remembered {
            return Ok(Some(submission));
        }
        let found = self.lookup(key).await?;
        if let Some(submission) = &found {
            self.remember(submission);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_carry_the_digest_alone_or_after_the_jobs_own() {
        assert!(carries("0123456789ab", "0123456789ab"));
        assert!(carries("daily-pi-0123456789ab", "0123456789ab"));
        assert!(!carries("x0123456789ab", "0123456789ab"));
        assert!(!carries("0123456789ab-x", "0123456789ab"));
        assert!(!carries("", "0123456789ab"));
    }

    #[test]
    fn ids_that_are_not_submission_ids_are_not_found_without_a_request() {
        let client = BpgClient::builder("http://127.0.0.1:9").build().unwrap();
        let backend = GatewayBackend::from_client("gw", client);
        let err = backend.check_id(&JobId::new("not-an-id")).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("gateway gw"), "{err}");
    }
}
