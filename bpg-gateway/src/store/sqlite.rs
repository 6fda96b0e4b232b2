//! [`SqliteStore`]: submissions in one SQLite file (WAL, versioned migrations), or in memory.
//!
//! Calls run on the caller's task under one connection lock: each is a few indexed statements
//! (tens of microseconds), cheaper than a hop to a blocking thread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bpg_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    AuditEntry, Event, Phase, STATUS_COLUMNS, StateChange, StoredStatus, SubmissionRecord,
    SubmissionStore, decode_job, encode_job, in_order, store_error,
};

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "
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
",
    "
    CREATE INDEX submissions_spark_app ON submissions(spark_app_id);
",
    "
    CREATE TABLE audit (
        at_ms      INTEGER NOT NULL,
        user       TEXT NOT NULL,
        address    TEXT,
        action     TEXT NOT NULL,
        submission TEXT,
        queue      TEXT,
        cluster    TEXT,
        outcome    TEXT NOT NULL,
        message    TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit(at_ms);
",
    "
    ALTER TABLE submissions ADD COLUMN owner TEXT;
    ALTER TABLE submissions ADD COLUMN lease_until_ms INTEGER;
",
];

/// The submissions store in SQLite; cheap to clone (one connection behind a lock). See the
/// [module docs](super).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The file, or `in memory`, for errors and `Debug`.
    name: String,
    path: Option<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn db_error(name: &str, what: &str) -> impl Fn(rusqlite::Error) -> Error + use<> {
    let name = name.to_owned();
    let what = what.to_owned();
    move |e| {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        store_error(&name, &what, busy, e)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::config(format!(
                    "cannot create state directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let name = path.display().to_string();
        let conn = Connection::open(path).map_err(db_error(&name, "cannot open the store"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .map_err(db_error(&name, "cannot configure the store"))?;
        SqliteStore::with_connection(conn, Some(path.to_path_buf()))
    }

    /// A store that lives in memory only (tests, throwaway gateways).
    pub fn in_memory() -> Result<SqliteStore> {
        let conn =
            Connection::open_in_memory().map_err(db_error("in memory", "cannot open the store"))?;
        SqliteStore::with_connection(conn, None)
    }

    fn with_connection(mut conn: Connection, path: Option<PathBuf>) -> Result<SqliteStore> {
        let name = path
            .as_deref()
            .map_or_else(|| "in memory".to_owned(), |p| p.display().to_string());
        let err = db_error(&name, "cannot migrate the store");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::config(format!(
                "the store {name} has schema version {version}, newer than this gateway's {known}: upgrade the gateway"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(&err)?;
            tx.execute_batch(sql).map_err(&err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(&err)?;
            tx.commit().map_err(&err)?;
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            name,
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
        db_error(&self.name, what)
    }

    fn query(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<SubmissionRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(self.err("cannot list submissions"))?;
        let rows = stmt
            .query_map(args, |r| read_record(&self.name, r))
            .map_err(self.err("cannot list submissions"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(self.err("cannot list submissions"))??);
        }
        Ok(out)
    }

    /// Sets the lease of `owner`'s unfinished submissions (`None`: given up).
    fn set_leases(&self, owner: &str, until_ms: Option<i64>, what: &str) -> Result<u64> {
        self.lock()
            .prepare_cached(
                "UPDATE submissions SET lease_until_ms = ?2 WHERE owner = ?1
                 AND terminated_ms IS NULL AND phase IN ('queued', 'created')",
            )
            .and_then(|mut stmt| stmt.execute(params![owner, until_ms]))
            .map(|n| n as u64)
            .map_err(self.err(what))
    }

    /// Runs `change` and records its event, in one transaction.
    fn change(
        &self,
        what: &str,
        id: &str,
        reason: &str,
        message: &str,
        change: impl FnOnce(&Connection, i64) -> rusqlite::Result<usize>,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.err(what))?;
        change(&tx, now)
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO events (submission, at_ms, reason, message) VALUES (?1, ?2, ?3, ?4)",
                    params![id, now, reason, message],
                )
            })
            .map_err(self.err(what))?;
        tx.commit().map_err(self.err(what))
    }
}

#[async_trait]
impl SubmissionStore for SqliteStore {
    fn location(&self) -> String {
        self.name.clone()
    }

    async fn insert(&self, r: &SubmissionRecord) -> Result<Option<SubmissionRecord>> {
        let job = encode_job(&self.name, &r.job)?;
        let decision = r.decision.as_ref().map(|d| d.to_string());
        let what = "cannot record a submission";
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.err(what))?;
        if let Some(key) = &r.dedupe {
            let existing = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM submissions WHERE dedupe = ?1"),
                    [key],
                    |row| read_record(&self.name, row),
                )
                .optional()
                .map_err(self.err("cannot look up an idempotency key"))?;
            if let Some(existing) = existing {
                return Ok(Some(existing?));
            }
        }
        tx.execute(
            "INSERT INTO submissions (id, cluster, connection, user, queue, app_name, dag_name,
                spark_version, dedupe, job, decision, phase, created_ms, owner, lease_until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
                r.created_ms,
                r.owner,
                r.lease_until_ms
            ],
        )
        .and_then(|_| {
            tx.execute(
                "INSERT INTO events (submission, at_ms, reason, message) VALUES (?1, ?2, 'Routed', ?3)",
                params![r.id, r.created_ms, r.routed_message()],
            )
        })
        .map_err(self.err(what))?;
        tx.commit().map_err(self.err(what))?;
        Ok(None)
    }

    async fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<SubmissionRecord>>> {
        // One lock and one prepared statement for the lot.
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM submissions WHERE id = ?1"))
            .map_err(self.err("cannot read a submission"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let record = stmt
                .query_row([id], |r| read_record(&self.name, r))
                .optional()
                .map_err(self.err("cannot read a submission"))?
                .transpose()?;
            out.push(record);
        }
        Ok(out)
    }

    async fn statuses_many(&self, ids: &[&str]) -> Result<Vec<Option<StoredStatus>>> {
        let failed = self.err("cannot read statuses");
        let conn = self.lock();
        if ids.len() <= 4 {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {STATUS_COLUMNS} FROM submissions WHERE id = ?1"
                ))
                .map_err(&failed)?;
            return ids
                .iter()
                .map(|id| stmt.query_row([id], read_status).optional())
                .collect::<rusqlite::Result<_>>()
                .map_err(failed);
        }
        // Many ids: one statement over them all (a statement per id costs more than its row).
        let list = serde_json::to_string(ids)
            .map_err(|e| store_error(&self.name, "cannot encode submission ids", false, e))?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {STATUS_COLUMNS} FROM submissions \
                 WHERE id IN (SELECT value FROM json_each(?1))"
            ))
            .map_err(&failed)?;
        let found: std::collections::HashMap<String, StoredStatus> = stmt
            .query_map([list], read_status)
            .and_then(|rows| {
                rows.map(|r| r.map(|s| (s.id.clone(), s)))
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(failed)?;
        Ok(in_order(ids, found))
    }

    async fn by_user(&self, user: &str) -> Result<Vec<SubmissionRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM submissions WHERE user = ?1 ORDER BY created_ms, id"),
            &[&user],
        )
    }

    async fn unfinished_count(&self, user: &str) -> Result<u64> {
        self.lock()
            .prepare_cached(
                "SELECT COUNT(*) FROM submissions WHERE user = ?1 AND terminated_ms IS NULL
                 AND phase IN ('queued', 'created')",
            )
            .and_then(|mut stmt| stmt.query_row([user], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(self.err("cannot count submissions"))
    }

    async fn all(&self, app_name: Option<&str>) -> Result<Vec<SubmissionRecord>> {
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

    async fn by_spark_app_id(&self, app_id: &str) -> Result<Option<SubmissionRecord>> {
        Ok(self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM submissions WHERE spark_app_id = ?1 AND phase <> 'deleted'
                     ORDER BY created_ms DESC, id DESC LIMIT 1"
                ),
                &[&app_id],
            )?
            .pop())
    }

    async fn unfinished(&self) -> Result<Vec<SubmissionRecord>> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM submissions
                 WHERE terminated_ms IS NULL AND phase IN ('queued', 'created') ORDER BY created_ms, id"
            ),
            &[],
        )
    }

    async fn claim_unfinished(
        &self,
        owner: &str,
        expired_before_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<SubmissionRecord>> {
        let what = "cannot take submissions over";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.lock();
        // Immediate: another process on the same file waits instead of claiming the same rows.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err(what))?;
        let ids: Vec<String> = tx
            .prepare_cached(
                "SELECT id FROM submissions WHERE terminated_ms IS NULL
                 AND phase IN ('queued', 'created')
                 AND (lease_until_ms IS NULL OR lease_until_ms < ?1)
                 ORDER BY created_ms, id LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![expired_before_ms, limit], |r| r.get(0))
                    .and_then(|rows| rows.collect())
            })
            .map_err(self.err(what))?;
        let mut claimed = Vec::with_capacity(ids.len());
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE submissions SET owner = ?2, lease_until_ms = ?3 WHERE id = ?1",
                )
                .map_err(self.err(what))?;
            let mut read = tx
                .prepare_cached(&format!("SELECT {COLUMNS} FROM submissions WHERE id = ?1"))
                .map_err(self.err(what))?;
            for id in &ids {
                update
                    .execute(params![id, owner, until_ms])
                    .map_err(self.err(what))?;
                claimed.push(
                    read.query_row([id], |r| read_record(&self.name, r))
                        .map_err(self.err(what))??,
                );
            }
        }
        tx.commit().map_err(self.err(what))?;
        Ok(claimed)
    }

    async fn renew_leases(&self, owner: &str, until_ms: i64) -> Result<u64> {
        self.set_leases(owner, Some(until_ms), "cannot renew leases")
    }

    async fn release_leases(&self, owner: &str) -> Result<u64> {
        self.set_leases(owner, None, "cannot release leases")
    }

    async fn set_created(&self, id: &str, backend_id: &str) -> Result<()> {
        self.change(
            "cannot record a backend's answer",
            id,
            "Created",
            &format!("backend id {backend_id}"),
            |tx, _| {
                tx.execute(
                    "UPDATE submissions SET phase = 'created', backend_id = ?2 WHERE id = ?1 AND phase = 'queued'",
                    params![id, backend_id],
                )
            },
        )
    }

    async fn set_rejected(&self, id: &str, message: &str) -> Result<()> {
        self.change(
            "cannot record a backend's answer",
            id,
            "SubmissionRejected",
            message,
            |tx, now| {
                tx.execute(
                    "UPDATE submissions SET phase = 'rejected', dedupe = NULL, native_state = 'FAILED',
                        message = ?2, terminated_ms = ?3 WHERE id = ?1",
                    params![id, message, now],
                )
            },
        )
    }

    async fn set_state(&self, id: &str, c: &StateChange<'_>) -> Result<()> {
        self.change(
            "cannot record a state change",
            id,
            c.reason(),
            c.message.unwrap_or(""),
            |tx, _| {
                tx.execute(
                    "UPDATE submissions SET native_state = ?2, message = ?3,
                        spark_app_id = COALESCE(?4, spark_app_id), attempts = COALESCE(?5, attempts),
                        started_ms = COALESCE(started_ms, ?6), terminated_ms = ?7
                     WHERE id = ?1",
                    params![
                        id,
                        c.native_state,
                        c.message,
                        c.spark_app_id,
                        c.attempts,
                        c.started_ms,
                        c.terminated_ms
                    ],
                )
            },
        )
    }

    async fn set_deleted(&self, id: &str, user: &str) -> Result<()> {
        self.change(
            "cannot record a deletion",
            id,
            "Deleted",
            &format!("by {user}"),
            |tx, now| {
                tx.execute(
                    "UPDATE submissions SET phase = 'deleted', deleted_by = ?2,
                        terminated_ms = COALESCE(terminated_ms, ?3) WHERE id = ?1",
                    params![id, user, now],
                )
            },
        )
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
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

    async fn count(&self) -> Result<u64> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM submissions", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(self.err("cannot count submissions"))
    }

    async fn append_audit(&self, e: &AuditEntry) -> Result<()> {
        self.lock()
            .prepare_cached(
                "INSERT INTO audit (at_ms, user, address, action, submission, queue, cluster,
                    outcome, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    e.at_ms,
                    e.user,
                    e.address,
                    e.action,
                    e.submission,
                    e.queue,
                    e.cluster,
                    e.outcome,
                    e.message
                ])
            })
            .map(|_| ())
            .map_err(self.err("cannot write the audit log"))
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let failed = self.err("cannot read the audit log");
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, user, address, action, submission, queue, cluster, outcome, message
                 FROM (SELECT rowid AS seq, * FROM audit ORDER BY rowid DESC LIMIT ?1)
                 ORDER BY seq",
            )
            .map_err(&failed)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        stmt.query_map([limit], |r| {
            Ok(AuditEntry {
                at_ms: r.get(0)?,
                user: r.get(1)?,
                address: r.get(2)?,
                action: r.get(3)?,
                submission: r.get(4)?,
                queue: r.get(5)?,
                cluster: r.get(6)?,
                outcome: r.get(7)?,
                message: r.get(8)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(failed)
    }
}

const COLUMNS: &str =
    "id, cluster, connection, user, queue, app_name, dag_name, spark_version, dedupe,
    job, decision, phase, backend_id, native_state, message, spark_app_id, attempts, created_ms,
    started_ms, terminated_ms, deleted_by, owner, lease_until_ms";

fn read_record(store: &str, r: &Row<'_>) -> rusqlite::Result<Result<SubmissionRecord>> {
    let id: String = r.get(0)?;
    let job: String = r.get(9)?;
    let decision: Option<String> = r.get(10)?;
    let phase: String = r.get(11)?;
    let job = match decode_job(store, &id, &job) {
        Ok(job) => job,
        Err(e) => return Ok(Err(e)),
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
        owner: r.get(21)?,
        lease_until_ms: r.get(22)?,
    }))
}

fn read_status(r: &Row<'_>) -> rusqlite::Result<StoredStatus> {
    let phase: String = r.get(1)?;
    Ok(StoredStatus {
        id: r.get(0)?,
        phase: Phase::parse(&phase),
        user: r.get(2)?,
        native_state: r.get(3)?,
        message: r.get(4)?,
        spark_app_id: r.get(5)?,
        attempts: r.get::<_, Option<i64>>(6)?.map(|n| n as u32),
        created_ms: r.get(7)?,
        started_ms: r.get(8)?,
        terminated_ms: r.get(9)?,
        deleted_by: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SubmissionStoreExt;
    use bpg_core::{AppType, SparkJob};

    fn record(id: &str) -> SubmissionRecord {
        let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py");
        SubmissionRecord::new(id, "analytics", "sim", "alice", job)
    }

    #[tokio::test]
    async fn a_record_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/gateway.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.insert(&record("a-1")).await.unwrap();
            store.set_created("a-1", "backend-1").await.unwrap();
            let running = StateChange {
                native_state: "RUNNING",
                spark_app_id: Some("spark-1"),
                attempts: Some(1),
                started_ms: Some(5),
                ..StateChange::default()
            };
            store.set_state("a-1", &running).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let r = store.get("a-1").await.unwrap().unwrap();
        assert_eq!(r.phase, Phase::Created);
        assert_eq!(r.backend_id.as_deref(), Some("backend-1"));
        assert_eq!(r.native_state.as_deref(), Some("RUNNING"));
        assert_eq!(r.spark_app_id.as_deref(), Some("spark-1"));
        assert_eq!(store.unfinished().await.unwrap().len(), 1);
        let reasons: Vec<String> = store
            .events("a-1")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["Routed", "Created", "RUNNING"]);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }
}
