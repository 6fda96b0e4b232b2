//! [`Store`]: the gateway's durable record of submissions, in one SQLite file (WAL, versioned
//! migrations).
//!
//! A submission is recorded **before** its backend call, in phase [`Phase::Queued`], with the
//! idempotency key that call will carry; the call's answer moves it to [`Phase::Created`] (with the
//! backend's id) or [`Phase::Rejected`]. A gateway that dies between the two finds the record
//! queued at start and asks the backend for the key before submitting again, so an application is
//! neither lost nor created twice.
//!
//! A repeated submit from the same user with the same `submissionIdSuffix` (or `Idempotency-Key`
//! header) hits the unique `dedupe` column and returns the first submission. A rejected
//! submission gives its key up, so the user can fix the request and send it again.
//!
//! ```
//! use bpg_gateway::store::{Phase, Store, SubmissionRecord};
//! use bpg_core::{AppType, SparkJob};
//!
//! let store = Store::in_memory()?;
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
//! let record = SubmissionRecord::new("analytics-0123456789abcdef0123456789abcdef", "analytics", "sim", "alice", job)
//!     .with_dedupe("alice", "pi-1");
//! assert!(store.insert(&record)?.is_none());
//! // The same user and suffix again: the first submission comes back.
//! let mut again = record.clone();
//! again.id = "analytics-ffffffffffffffffffffffffffffffff".into();
//! assert_eq!(store.insert(&again)?.unwrap().id, record.id);
//! store.set_created(&record.id, "sim-000001")?;
//! assert_eq!(store.get(&record.id)?.unwrap().phase, Phase::Created);
//! # Ok::<(), bpg_core::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bpg_core::{Error, Result, SparkJob};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE submissions (
        id            TEXT PRIMARY KEY,
        cluster       TEXT NOT NULL,
        connection    TEXT NOT NULL,
        user          TEXT NOT NULL,
        queue         TEXT,
        app_name      TEXT,
        dag_name      TEXT,
        spark_version TEXT NOT NULL,
        dedupe        TEXT UNIQUE,
        job           TEXT NOT NULL,
        decision      TEXT,
        phase         TEXT NOT NULL,
        backend_id    TEXT,
        native_state  TEXT,
        message       TEXT,
        spark_app_id  TEXT,
        attempts      INTEGER,
        created_ms    INTEGER NOT NULL,
        started_ms    INTEGER,
        terminated_ms INTEGER,
        deleted_by    TEXT
    );
    CREATE INDEX submissions_user ON submissions(user, created_ms);
    CREATE INDEX submissions_unfinished ON submissions(phase) WHERE terminated_ms IS NULL;
    CREATE TABLE events (
        submission TEXT NOT NULL,
        at_ms      INTEGER NOT NULL,
        reason     TEXT NOT NULL,
        message    TEXT NOT NULL
    );
    CREATE INDEX events_submission ON events(submission, at_ms);
"];

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
    fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Created => "created",
            Phase::Rejected => "rejected",
            Phase::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Phase {
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
        }
    }

    /// Makes the record unique per `user` and `key` (a `submissionIdSuffix` or `Idempotency-Key`).
    pub fn with_dedupe(mut self, user: &str, key: &str) -> Self {
        self.dedupe = Some(format!("{user}\n{key}"));
        self
    }
}

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

/// The submissions store; cheap to clone (one connection behind a lock). See the [module docs](self).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn db_error(what: &str, path: Option<&Path>) -> impl Fn(rusqlite::Error) -> Error + use<> {
    let place = path.map_or_else(|| "in memory".to_owned(), |p| p.display().to_string());
    let what = what.to_owned();
    move |e| Error::Backend {
        backend: "gateway store".into(),
        temporary: matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ),
        source: format!("{what} ({place}): {e}").into(),
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::config(format!(
                    "cannot create state directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(db_error("cannot open the store", Some(path)))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .map_err(db_error("cannot configure the store", Some(path)))?;
        Store::with_connection(conn, Some(path.to_path_buf()))
    }

    /// A store that lives in memory only (tests, throwaway gateways).
    pub fn in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(db_error("cannot open the store", None))?;
        Store::with_connection(conn, None)
    }

    fn with_connection(mut conn: Connection, path: Option<PathBuf>) -> Result<Store> {
        let err = db_error("cannot migrate the store", path.as_deref());
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::config(format!(
                "the store {} has schema version {version}, newer than this gateway's {known}: upgrade the gateway",
                path.as_deref()
                    .map_or("in memory".into(), |p| p.display().to_string())
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(&err)?;
            tx.execute_batch(sql).map_err(&err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(&err)?;
            tx.commit().map_err(&err)?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The file, when the store has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error + use<> {
        db_error(what, self.path.as_deref())
    }

    /// Records a new submission. When its dedupe key is taken, nothing is written and the
    /// submission holding the key is returned.
    pub fn insert(&self, r: &SubmissionRecord) -> Result<Option<SubmissionRecord>> {
        let job = serde_json::to_string(&r.job).map_err(|e| Error::Backend {
            backend: "gateway store".into(),
            temporary: false,
            source: e.into(),
        })?;
        let decision = r.decision.as_ref().map(|d| d.to_string());
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(self.err("cannot record a submission"))?;
        if let Some(key) = &r.dedupe {
            let existing = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM submissions WHERE dedupe = ?1"),
                    [key],
                    read_record,
                )
                .optional()
                .map_err(self.err("cannot look up an idempotency key"))?;
            if let Some(existing) = existing {
                return Ok(Some(existing?));
            }
        }
        tx.execute(
            "INSERT INTO submissions (id, cluster, connection, user, queue, app_name, dag_name,
                spark_version, dedupe, job, decision, phase, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                r.id,
                r.cluster,
                r.connection,
                r.user,
                r.queue,
                r.app_name,
                r.dag_name,
                r.spark_version,
                r.dedupe,
                job,
                decision,
                r.phase.as_str(),
                r.created_ms
            ],
        )
        .map_err(self.err("cannot record a submission"))?;
        tx.execute(
            "INSERT INTO events (submission, at_ms, reason, message) VALUES (?1, ?2, 'Routed', ?3)",
            params![
                r.id,
                r.created_ms,
                format!("to cluster {} (connection {})", r.cluster, r.connection)
            ],
        )
        .map_err(self.err("cannot record a submission"))?;
        tx.commit()
            .map_err(self.err("cannot record a submission"))?;
        Ok(None)
    }

    /// One submission.
    pub fn get(&self, id: &str) -> Result<Option<SubmissionRecord>> {
        self.get_many(&[id]).map(|mut v| v.pop().flatten())
    }

    /// Several submissions in one go (one lock, one prepared statement), in the order asked.
    pub fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<SubmissionRecord>>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM submissions WHERE id = ?1"))
            .map_err(self.err("cannot read a submission"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let record = stmt
                .query_row([id], read_record)
                .optional()
                .map_err(self.err("cannot read a submission"))?
                .transpose()?;
            out.push(record);
        }
        Ok(out)
    }

    /// A user's submissions, oldest first.
    pub fn by_user(&self, user: &str) -> Result<Vec<SubmissionRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM submissions WHERE user = ?1 ORDER BY created_ms, id"),
            &[&user],
        )
    }

    /// Every submission, oldest first; only those with `app_name` when given.
    pub fn all(&self, app_name: Option<&str>) -> Result<Vec<SubmissionRecord>> {
        match app_name {
            Some(name) => self.query(
                &format!(
                    "SELECT {COLUMNS} FROM submissions WHERE app_name = ?1 ORDER BY created_ms, id"
                ),
                &[&name],
            ),
            None => self.query(
                &format!("SELECT {COLUMNS} FROM submissions ORDER BY created_ms, id"),
                &[],
            ),
        }
    }

    /// Submissions whose backend call may not have finished, or whose application has not ended:
    /// what a starting gateway reconciles and follows.
    pub fn unfinished(&self) -> Result<Vec<SubmissionRecord>> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM submissions
                 WHERE terminated_ms IS NULL AND phase IN ('queued', 'created') ORDER BY created_ms, id"
            ),
            &[],
        )
    }

    fn query(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<SubmissionRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(self.err("cannot list submissions"))?;
        let rows = stmt
            .query_map(args, read_record)
            .map_err(self.err("cannot list submissions"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(self.err("cannot list submissions"))??);
        }
        Ok(out)
    }

    fn event(
        conn: &Connection,
        id: &str,
        at_ms: i64,
        reason: &str,
        message: &str,
    ) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO events (submission, at_ms, reason, message) VALUES (?1, ?2, ?3, ?4)",
            params![id, at_ms, reason, message],
        )
        .map(|_| ())
    }

    /// The backend accepted the submission as `backend_id`.
    pub fn set_created(&self, id: &str, backend_id: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let conn = self.lock();
        conn.execute(
            "UPDATE submissions SET phase = 'created', backend_id = ?2 WHERE id = ?1 AND phase = 'queued'",
            params![id, backend_id],
        )
        .and_then(|_| Store::event(&conn, id, now, "Created", &format!("backend id {backend_id}")))
        .map_err(self.err("cannot record a backend's answer"))
    }

    /// The backend refused the submission for good: it ends `FAILED` with `message`, and gives its
    /// idempotency key up.
    pub fn set_rejected(&self, id: &str, message: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let conn = self.lock();
        conn.execute(
            "UPDATE submissions SET phase = 'rejected', dedupe = NULL, native_state = 'FAILED',
                message = ?2, terminated_ms = ?3 WHERE id = ?1",
            params![id, message, now],
        )
        .and_then(|_| Store::event(&conn, id, now, "SubmissionRejected", message))
        .map_err(self.err("cannot record a backend's answer"))
    }

    /// The application's state changed. `terminated_ms` marks it final.
    #[allow(clippy::too_many_arguments)]
    pub fn set_state(
        &self,
        id: &str,
        native_state: &str,
        message: Option<&str>,
        spark_app_id: Option<&str>,
        attempts: Option<u32>,
        started_ms: Option<i64>,
        terminated_ms: Option<i64>,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let conn = self.lock();
        conn.execute(
            "UPDATE submissions SET native_state = ?2, message = ?3,
                spark_app_id = COALESCE(?4, spark_app_id), attempts = COALESCE(?5, attempts),
                started_ms = COALESCE(started_ms, ?6), terminated_ms = ?7
             WHERE id = ?1",
            params![
                id,
                native_state,
                message,
                spark_app_id,
                attempts,
                started_ms,
                terminated_ms
            ],
        )
        .and_then(|_| {
            let state = if native_state.is_empty() {
                "NEW"
            } else {
                native_state
            };
            Store::event(&conn, id, now, state, message.unwrap_or(""))
        })
        .map_err(self.err("cannot record a state change"))
    }

    /// `user` deleted the submission.
    pub fn set_deleted(&self, id: &str, user: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let conn = self.lock();
        conn.execute(
            "UPDATE submissions SET phase = 'deleted', deleted_by = ?2,
                terminated_ms = COALESCE(terminated_ms, ?3) WHERE id = ?1",
            params![id, user, now],
        )
        .and_then(|_| Store::event(&conn, id, now, "Deleted", &format!("by {user}")))
        .map_err(self.err("cannot record a deletion"))
    }

    /// The submission's events, oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<Event>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, reason, message FROM events WHERE submission = ?1 ORDER BY at_ms, rowid",
            )
            .map_err(self.err("cannot read events"))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(Event {
                    at_ms: r.get(0)?,
                    reason: r.get(1)?,
                    message: r.get(2)?,
                })
            })
            .map_err(self.err("cannot read events"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("cannot read events"))
    }

    /// Number of submissions stored.
    pub fn count(&self) -> Result<u64> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM submissions", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(self.err("cannot count submissions"))
    }
}

const COLUMNS: &str =
    "id, cluster, connection, user, queue, app_name, dag_name, spark_version, dedupe,
    job, decision, phase, backend_id, native_state, message, spark_app_id, attempts, created_ms,
    started_ms, terminated_ms, deleted_by";

fn read_record(r: &Row<'_>) -> rusqlite::Result<Result<SubmissionRecord>> {
    let id: String = r.get(0)?;
    let job: String = r.get(9)?;
    let decision: Option<String> = r.get(10)?;
    let phase: String = r.get(11)?;
    let job: SparkJob = match serde_json::from_str(&job) {
        Ok(job) => job,
        Err(e) => {
            return Ok(Err(Error::Backend {
                backend: "gateway store".into(),
                temporary: false,
                source: format!("submission {id}: the stored job is unreadable: {e}").into(),
            }));
        }
    };
    Ok(Ok(SubmissionRecord {
        id,
        cluster: r.get(1)?,
        connection: r.get(2)?,
        user: r.get(3)?,
        queue: r.get(4)?,
        app_name: r.get(5)?,
        dag_name: r.get(6)?,
        spark_version: r.get(7)?,
        dedupe: r.get(8)?,
        job,
        decision: decision.and_then(|d| serde_json::from_str(&d).ok()),
        phase: Phase::parse(&phase),
        backend_id: r.get(12)?,
        native_state: r.get(13)?,
        message: r.get(14)?,
        spark_app_id: r.get(15)?,
        attempts: r.get::<_, Option<i64>>(16)?.map(|n| n as u32),
        created_ms: r.get(17)?,
        started_ms: r.get(18)?,
        terminated_ms: r.get(19)?,
        deleted_by: r.get(20)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpg_core::AppType;

    fn record(id: &str) -> SubmissionRecord {
        let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
        SubmissionRecord::new(id, "analytics", "sim", "alice", job)
    }

    #[test]
    fn a_record_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/gateway.db");
        {
            let store = Store::open(&path).unwrap();
            store.insert(&record("a-1")).unwrap();
            store.set_created("a-1", "backend-1").unwrap();
            store
                .set_state(
                    "a-1",
                    "RUNNING",
                    None,
                    Some("spark-1"),
                    Some(1),
                    Some(5),
                    None,
                )
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let r = store.get("a-1").unwrap().unwrap();
        assert_eq!(r.phase, Phase::Created);
        assert_eq!(r.backend_id.as_deref(), Some("backend-1"));
        assert_eq!(r.native_state.as_deref(), Some("RUNNING"));
        assert_eq!(r.spark_app_id.as_deref(), Some("spark-1"));
        assert_eq!(store.unfinished().unwrap().len(), 1);
        let reasons: Vec<String> = store
            .events("a-1")
            .unwrap()
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["Routed", "Created", "RUNNING"]);
    }

    #[test]
    fn a_rejected_submission_gives_its_key_up() {
        let store = Store::in_memory().unwrap();
        let first = record("a-1").with_dedupe("alice", "k");
        assert!(store.insert(&first).unwrap().is_none());
        store.set_rejected("a-1", "invalid").unwrap();
        let second = SubmissionRecord {
            id: "a-2".into(),
            ..first
        };
        assert!(store.insert(&second).unwrap().is_none());
        assert_eq!(store.count().unwrap(), 2);
        assert!(store.unfinished().unwrap().iter().all(|r| r.id == "a-2"));
    }

    #[test]
    fn keys_are_per_user() {
        let store = Store::in_memory().unwrap();
        assert!(
            store
                .insert(&record("a-1").with_dedupe("alice", "k"))
                .unwrap()
                .is_none()
        );
        let mut bob = record("a-2").with_dedupe("bob", "k");
        bob.user = "bob".into();
        assert!(store.insert(&bob).unwrap().is_none());
        assert_eq!(store.by_user("bob").unwrap().len(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }
}
