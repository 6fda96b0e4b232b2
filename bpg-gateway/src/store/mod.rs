//! The gateway's durable record of submissions: [`SubmissionStore`], used as
//! `Arc<dyn SubmissionStore>`.
//!
//! | Store | Feature | For |
//! |---|---|---|
//! | [`SqliteStore`] | (always) | one gateway, one file (WAL, versioned migrations); or in memory |
//! | `PostgresStore` | `postgres` | several gateway replicas sharing state |
//!
//! [`open`] picks one from a location: a `postgres://` URL or a file path.
//!
//! A submission is recorded **before** its backend call, in phase [`Phase::Queued`], with the
//! idempotency key that call will carry; the call's answer moves it to [`Phase::Created`] (with the
//! backend's id) or [`Phase::Rejected`]. A gateway that dies between the two finds the record
//! queued at start and asks the backend for the key before submitting again, so an application is
//! neither lost nor created twice.
//!
//! A repeated submit from the same user with the same `submissionIdSuffix` (or `Idempotency-Key`
//! header) hits the unique `dedupe` key and returns the first submission; on PostgreSQL that holds
//! across replicas, because the database enforces it. A rejected submission gives its key up, so
//! the user can fix the request and send it again.
//!
//! A store of your own implements [`SubmissionStore`] and proves it with the suite of the
//! `testkit` feature (`bpg_gateway::store::testkit::submission_store_suite`), which every store
//! here passes.
//!
//! ```
//! use bpg_gateway::store::{Phase, SqliteStore, SubmissionRecord, SubmissionStore, SubmissionStoreExt};
//! use bpg_core::{AppType, SparkJob};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bpg_core::Result<()> {
//! let store = SqliteStore::in_memory()?;
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
//! let record = SubmissionRecord::new("analytics-0123456789abcdef0123456789abcdef", "analytics", "sim", "alice", job)
//!     .with_dedupe("alice", "pi-1");
//! assert!(store.insert(&record).await?.is_none());
//! // The same user and suffix again: the first submission comes back.
//! let mut again = record.clone();
//! again.id = "analytics-ffffffffffffffffffffffffffffffff".into();
//! assert_eq!(store.insert(&again).await?.unwrap().id, record.id);
//! store.set_created(&record.id, "sim-000001").await?;
//! assert_eq!(store.get(&record.id).await?.unwrap().phase, Phase::Created);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Error, Result, SparkJob};
use serde::{Deserialize, Serialize};

#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where a submission is in the gateway's own life cycle (the application's state is separate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Recorded; the backend call has not answered yet (waiting for cluster capacity, or in flight).
    Queued,
    /// The backend accepted it; `backend_id` is set.
    Created,
    /// The backend refused it for good; `message` says why.
    Rejected,
    /// Deleted by a user before or after it ran.
    Deleted,
}

impl Phase {
    /// The phase as stored (`queued`, `created`, `rejected`, `deleted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Created => "created",
            Phase::Rejected => "rejected",
            Phase::Deleted => "deleted",
        }
    }

    /// The phase stored as `s`; anything unknown reads as [`Phase::Queued`], which a starting
    /// gateway reconciles (asks the backend) rather than trusts.
    pub fn parse(s: &str) -> Phase {
        match s {
            "created" => Phase::Created,
            "rejected" => Phase::Rejected,
            "deleted" => Phase::Deleted,
            _ => Phase::Queued,
        }
    }
}

/// One submission as the gateway recorded it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SubmissionRecord {
    /// The submission id (`<cluster>-<32 hex>[-<suffix>]`).
    pub id: String,
    /// The cluster it was routed to.
    pub cluster: String,
    /// The connection that reaches the cluster.
    pub connection: String,
    /// The user it runs as (BPG's proxy user).
    pub user: String,
    /// The queue it was routed in.
    pub queue: Option<String>,
    /// `applicationName`.
    pub app_name: Option<String>,
    /// The driver label `dag_name`.
    pub dag_name: Option<String>,
    /// `sparkVersion`.
    pub spark_version: String,
    /// `<user>\n<key>` when the submit carried a suffix or an `Idempotency-Key`.
    pub dedupe: Option<String>,
    /// The job as handed to the backend.
    pub job: SparkJob,
    /// The routing decision's explanation (JSON).
    pub decision: Option<serde_json::Value>,
    /// Gateway phase.
    pub phase: Phase,
    /// The backend's id, once created.
    pub backend_id: Option<String>,
    /// The last application state seen (BPG's `applicationState` string).
    pub native_state: Option<String>,
    /// The last error or state message.
    pub message: Option<String>,
    /// Spark's application id, once known.
    pub spark_app_id: Option<String>,
    /// Attempts the cluster made.
    pub attempts: Option<u32>,
    /// When the submission was recorded (epoch ms).
    pub created_ms: i64,
    /// When the driver started (epoch ms).
    pub started_ms: Option<i64>,
    /// When the application ended (epoch ms); set once its state is final.
    pub terminated_ms: Option<i64>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
    /// The gateway (replica) that dispatches and follows it while its lease lasts.
    pub owner: Option<String>,
    /// Until when `owner` holds it (epoch ms); past that another gateway takes it over.
    pub lease_until_ms: Option<i64>,
}

impl SubmissionRecord {
    /// A new record in phase [`Phase::Queued`], created now.
    pub fn new(
        id: impl Into<String>,
        cluster: impl Into<String>,
        connection: impl Into<String>,
        user: impl Into<String>,
        job: SparkJob,
    ) -> Self {
        SubmissionRecord {
            id: id.into(),
            cluster: cluster.into(),
            connection: connection.into(),
            user: user.into(),
            queue: job.queue.clone(),
            app_name: (!job.name.is_empty()).then(|| job.name.clone()),
            dag_name: job.label("dag_name").map(str::to_owned),
            spark_version: job.spark_version.clone(),
            dedupe: None,
            job,
            decision: None,
            phase: Phase::Queued,
            backend_id: None,
            native_state: None,
            message: None,
            spark_app_id: None,
            attempts: None,
            created_ms: chrono::Utc::now().timestamp_millis(),
            started_ms: None,
            terminated_ms: None,
            deleted_by: None,
            owner: None,
            lease_until_ms: None,
        }
    }

    /// Makes the record unique per `user` and `key` (a `submissionIdSuffix` or `Idempotency-Key`).
    pub fn with_dedupe(mut self, user: &str, key: &str) -> Self {
        self.dedupe = Some(format!("{user}\n{key}"));
        self
    }

    /// The first event of every submission: where it was routed.
    pub(crate) fn routed_message(&self) -> String {
        format!(
            "to cluster {} (connection {})",
            self.cluster, self.connection
        )
    }
}

/// What a status read needs of a submission: its record without the job, the decision and the
/// routing columns, so that reading thousands of them decodes no job
/// ([`SubmissionStore::statuses_many`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StoredStatus {
    /// The submission id.
    pub id: String,
    /// Gateway phase.
    pub phase: Phase,
    /// The user it runs as.
    pub user: String,
    /// The last application state seen (BPG's `applicationState` string).
    pub native_state: Option<String>,
    /// The last error or state message.
    pub message: Option<String>,
    /// Spark's application id, once known.
    pub spark_app_id: Option<String>,
    /// Attempts the cluster made.
    pub attempts: Option<u32>,
    /// When the submission was recorded (epoch ms).
    pub created_ms: i64,
    /// When the driver started (epoch ms).
    pub started_ms: Option<i64>,
    /// When the application ended (epoch ms).
    pub terminated_ms: Option<i64>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
}

impl From<&SubmissionRecord> for StoredStatus {
    fn from(r: &SubmissionRecord) -> Self {
        StoredStatus {
            id: r.id.clone(),
            phase: r.phase,
            user: r.user.clone(),
            native_state: r.native_state.clone(),
            message: r.message.clone(),
            spark_app_id: r.spark_app_id.clone(),
            attempts: r.attempts,
            created_ms: r.created_ms,
            started_ms: r.started_ms,
            terminated_ms: r.terminated_ms,
            deleted_by: r.deleted_by.clone(),
        }
    }
}

/// `found` (by id) answered in the order of `ids`, `None` for an id not found; an id asked
/// twice is answered twice.
pub(crate) fn in_order<T: Clone>(
    ids: &[&str],
    mut found: std::collections::HashMap<String, T>,
) -> Vec<Option<T>> {
    // Taken when each id is asked once, copied otherwise.
    let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len() == ids.len();
    ids.iter()
        .map(|id| {
            if distinct {
                found.remove(*id)
            } else {
                found.get(*id).cloned()
            }
        })
        .collect()
}

/// The columns of a [`StoredStatus`], in its field order (the SQL stores' `SELECT` list).
pub(crate) const STATUS_COLUMNS: &str = r#"id, phase, "user", native_state, message,
    spark_app_id, attempts, created_ms, started_ms, terminated_ms, deleted_by"#;

/// A state change of an application, as `/describe` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When (epoch ms).
    pub at_ms: i64,
    /// Short reason (`Routed`, `Created`, `RUNNING`, ...).
    pub reason: String,
    /// Detail.
    pub message: String,
}

/// One line of the audit log: who did what, from where, to which submission, and how it ended.
/// Never a secret: names, addresses, ids and outcomes only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// When (epoch ms).
    pub at_ms: i64,
    /// The caller: an authenticated user, or the name a refused caller gave (empty when none).
    pub user: String,
    /// The caller's address, when the gateway saw one.
    pub address: Option<String>,
    /// What was asked: `submit`, `delete`, `read`, `list`, `sign-in`.
    pub action: String,
    /// The submission concerned.
    pub submission: Option<String>,
    /// Its queue.
    pub queue: Option<String>,
    /// Its cluster.
    pub cluster: Option<String>,
    /// How it ended: `accepted`, `duplicate`, `refused` (the request cannot be served: routing,
    /// isolation), `denied` (not allowed), `unauthenticated`, `limited`, `deleted`.
    pub outcome: String,
    /// Why, for people.
    pub message: String,
}

impl AuditEntry {
    /// An entry of `action` by `user` that ended `outcome`, now.
    pub fn new(
        action: impl Into<String>,
        user: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        AuditEntry {
            at_ms: chrono::Utc::now().timestamp_millis(),
            user: user.into(),
            address: None,
            action: action.into(),
            submission: None,
            queue: None,
            cluster: None,
            outcome: outcome.into(),
            message: String::new(),
        }
    }
}

/// What [`SubmissionStore::set_state`] records: the application's latest state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateChange<'a> {
    /// BPG's `applicationState` (empty for a state not yet known).
    pub native_state: &'a str,
    /// The state's message; replaces the last one.
    pub message: Option<&'a str>,
    /// Spark's application id; kept when `None`.
    pub spark_app_id: Option<&'a str>,
    /// Attempts the cluster made; kept when `None`.
    pub attempts: Option<u32>,
    /// When the driver started; the first one recorded stays.
    pub started_ms: Option<i64>,
    /// When the application ended; `Some` marks the state final.
    pub terminated_ms: Option<i64>,
}

impl StateChange<'_> {
    /// The event reason of this change: the state, or `NEW` before one is known.
    pub(crate) fn reason(&self) -> &str {
        if self.native_state.is_empty() {
            "NEW"
        } else {
            self.native_state
        }
    }
}

/// Where the gateway keeps submissions. Object safe: the gateway holds an
/// `Arc<dyn SubmissionStore>`; conveniences are on [`SubmissionStoreExt`]. Every method is one
/// atomic change or one consistent read.
#[async_trait]
pub trait SubmissionStore: fmt::Debug + Send + Sync {
    /// Where the store is, for messages: a file path, `in memory`, or a server URL without its
    /// password.
    fn location(&self) -> String;

    /// Records a new submission and its `Routed` event. When its dedupe key is taken, nothing is
    /// written and the submission holding the key is returned.
    async fn insert(&self, record: &SubmissionRecord) -> Result<Option<SubmissionRecord>>;

    /// Several submissions in one go, in the order asked (`None` for an unknown id).
    async fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<SubmissionRecord>>>;

    /// The statuses of several submissions in one go, in the order asked (`None` for an unknown
    /// id). What `status` and batch status read; a store should answer it without decoding jobs
    /// (the default reads whole records).
    async fn statuses_many(&self, ids: &[&str]) -> Result<Vec<Option<StoredStatus>>> {
        Ok(self
            .get_many(ids)
            .await?
            .iter()
            .map(|r| r.as_ref().map(StoredStatus::from))
            .collect())
    }

    /// A user's submissions, oldest first.
    async fn by_user(&self, user: &str) -> Result<Vec<SubmissionRecord>>;

    /// How many of `user`'s submissions have not finished (queued, or created and not ended):
    /// what a per-user in-flight limit counts. The default reads the user's records.
    async fn unfinished_count(&self, user: &str) -> Result<u64> {
        let records = self.by_user(user).await?;
        Ok(records
            .iter()
            .filter(|r| {
                r.terminated_ms.is_none() && matches!(r.phase, Phase::Queued | Phase::Created)
            })
            .count() as u64)
    }

    /// Every submission, oldest first; only those named `app_name` when given.
    async fn all(&self, app_name: Option<&str>) -> Result<Vec<SubmissionRecord>>;

    /// The newest submission not deleted whose Spark application id is `app_id`.
    async fn by_spark_app_id(&self, app_id: &str) -> Result<Option<SubmissionRecord>>;

    /// Submissions whose backend call may not have finished, or whose application has not ended:
    /// what a starting gateway reconciles and follows. Oldest first.
    async fn unfinished(&self) -> Result<Vec<SubmissionRecord>>;

    /// Whether several gateways may share this store at once (PostgreSQL). A gateway starting on
    /// a store that is not shared takes every unfinished submission, leased or not. Default false.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes, for `owner` until `until_ms`, at most `limit` unfinished submissions whose lease
    /// ended before `expired_before_ms` or that no gateway holds; oldest first, returned as
    /// taken. Atomic: of gateways claiming at once, each record goes to one.
    async fn claim_unfinished(
        &self,
        owner: &str,
        expired_before_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<SubmissionRecord>>;

    /// Extends `owner`'s leases on its unfinished submissions to `until_ms`; how many it holds.
    async fn renew_leases(&self, owner: &str, until_ms: i64) -> Result<u64>;

    /// Gives `owner`'s leases up (a gateway stopping cleanly), so another takes them at once.
    async fn release_leases(&self, owner: &str) -> Result<u64>;

    /// The backend accepted the submission as `backend_id` (only a queued one moves).
    async fn set_created(&self, id: &str, backend_id: &str) -> Result<()>;

    /// The backend refused the submission for good: it ends `FAILED` with `message`, and gives
    /// its idempotency key up.
    async fn set_rejected(&self, id: &str, message: &str) -> Result<()>;

    /// The application's state changed.
    async fn set_state(&self, id: &str, change: &StateChange<'_>) -> Result<()>;

    /// `user` deleted the submission.
    async fn set_deleted(&self, id: &str, user: &str) -> Result<()>;

    /// The submission's events, oldest first.
    async fn events(&self, id: &str) -> Result<Vec<Event>>;

    /// Number of submissions stored.
    async fn count(&self) -> Result<u64>;

    /// Appends a line to the audit log.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// The newest `limit` lines of the audit log, oldest first.
    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>>;
}

/// Conveniences over any [`SubmissionStore`].
#[async_trait]
pub trait SubmissionStoreExt: SubmissionStore {
    /// One submission.
    async fn get(&self, id: &str) -> Result<Option<SubmissionRecord>> {
        Ok(self.get_many(&[id]).await?.pop().flatten())
    }
}

impl<S: SubmissionStore + ?Sized> SubmissionStoreExt for S {}

#[async_trait]
impl<S: SubmissionStore + ?Sized> SubmissionStore for Arc<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    async fn insert(&self, record: &SubmissionRecord) -> Result<Option<SubmissionRecord>> {
        (**self).insert(record).await
    }
    async fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<SubmissionRecord>>> {
        (**self).get_many(ids).await
    }
    async fn statuses_many(&self, ids: &[&str]) -> Result<Vec<Option<StoredStatus>>> {
        (**self).statuses_many(ids).await
    }
    async fn by_user(&self, user: &str) -> Result<Vec<SubmissionRecord>> {
        (**self).by_user(user).await
    }
    async fn unfinished_count(&self, user: &str) -> Result<u64> {
        (**self).unfinished_count(user).await
    }
    async fn all(&self, app_name: Option<&str>) -> Result<Vec<SubmissionRecord>> {
        (**self).all(app_name).await
    }
    async fn by_spark_app_id(&self, app_id: &str) -> Result<Option<SubmissionRecord>> {
        (**self).by_spark_app_id(app_id).await
    }
    async fn unfinished(&self) -> Result<Vec<SubmissionRecord>> {
        (**self).unfinished().await
    }
    fn is_shared(&self) -> bool {
        (**self).is_shared()
    }
    async fn claim_unfinished(
        &self,
        owner: &str,
        expired_before_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<SubmissionRecord>> {
        (**self)
            .claim_unfinished(owner, expired_before_ms, until_ms, limit)
            .await
    }
    async fn renew_leases(&self, owner: &str, until_ms: i64) -> Result<u64> {
        (**self).renew_leases(owner, until_ms).await
    }
    async fn release_leases(&self, owner: &str) -> Result<u64> {
        (**self).release_leases(owner).await
    }
    async fn set_created(&self, id: &str, backend_id: &str) -> Result<()> {
        (**self).set_created(id, backend_id).await
    }
    async fn set_rejected(&self, id: &str, message: &str) -> Result<()> {
        (**self).set_rejected(id, message).await
    }
    async fn set_state(&self, id: &str, change: &StateChange<'_>) -> Result<()> {
        (**self).set_state(id, change).await
    }
    async fn set_deleted(&self, id: &str, user: &str) -> Result<()> {
        (**self).set_deleted(id, user).await
    }
    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        (**self).events(id).await
    }
    async fn count(&self) -> Result<u64> {
        (**self).count().await
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        (**self).append_audit(entry).await
    }
    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        (**self).audit_log(limit).await
    }
}

/// Opens the store at `location`: a `postgres://` (or `postgresql://`) URL with feature
/// `postgres`, else the path of a SQLite file (created if missing).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> bpg_core::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = bpg_gateway::store::open(dir.path().join("gateway.db").to_str().unwrap()).await?;
/// assert_eq!(store.count().await?, 0);
/// # Ok(()) }
/// ```
pub async fn open(location: &str) -> Result<Arc<dyn SubmissionStore>> {
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(match split_schema(location) {
            (url, Some(schema)) => PostgresStore::connect_in_schema(&url, &schema).await?,
            (url, None) => PostgresStore::connect(&url).await?,
        }));
        #[cfg(not(feature = "postgres"))]
        return Err(Error::config(
            "the gateway state is a PostgreSQL URL, but this build has no PostgreSQL support \
             (feature `postgres` of bpg-gateway)",
        ));
    }
    Ok(Arc::new(SqliteStore::open(location)?))
}

/// A PostgreSQL URL's `schema=` query parameter (the schema the tables live in: several
/// independent gateways on one database), taken out of the URL.
///
/// ```
/// use bpg_gateway::store::split_schema;
/// assert_eq!(
///     split_schema("postgres://u@h/db?schema=gw_a&sslmode=disable"),
///     ("postgres://u@h/db?sslmode=disable".to_owned(), Some("gw_a".to_owned()))
/// );
/// assert_eq!(split_schema("postgres://u@h/db"), ("postgres://u@h/db".to_owned(), None));
/// ```
pub fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_owned());
                false
            }
            None => !p.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// Whether `location` names a PostgreSQL server rather than a file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// An error of the store named `store` (a path or a password-free URL).
pub(crate) fn store_error(store: &str, what: &str, temporary: bool, e: impl fmt::Display) -> Error {
    Error::Backend {
        backend: "gateway store".into(),
        temporary,
        source: format!("{what} ({store}): {e}").into(),
    }
}

/// Reads a stored job and decision back; a job that no longer parses is an error naming the
/// submission, a decision that no longer parses is dropped (it only explains).
pub(crate) fn decode_job(store: &str, id: &str, job: &str) -> Result<SparkJob> {
    serde_json::from_str(job).map_err(|e| {
        store_error(
            store,
            &format!("submission {id}: the stored job is unreadable"),
            false,
            e,
        )
    })
}

/// The job as stored (JSON text).
pub(crate) fn encode_job(store: &str, job: &SparkJob) -> Result<String> {
    serde_json::to_string(job).map_err(|e| store_error(store, "cannot encode a job", false, e))
}
