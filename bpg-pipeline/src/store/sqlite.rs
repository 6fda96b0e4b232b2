//! [`SqliteRunStore`]: a durable run store in one SQLite file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{Error, IdempotencyKey, Result};
use chrono::Utc;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::sql;
use super::{
    RunKey, RunRecord, RunStore, RunTaskStates, StoredRun, SubmissionRecord, TaskRecord,
    TaskStateChange, TaskSummary,
};
use crate::events::{RunState, TaskState};

/// A [`RunStore`] in one SQLite file, for runs that survive the process.
///
/// Every call is one transaction, committed before it returns, in WAL mode with
/// `synchronous = FULL`: a runner killed at any point (even `SIGKILL`) leaves the file with every
/// state change, submission and XCom value that was acknowledged, and nothing half-written. The
/// schema is versioned (table `schema_version`) and migrated forward on open. Reads go through
/// read-only connections of their own, so they wait neither for writes nor for each other.
///
/// ```
/// use bpg_pipeline::{RunKey, RunRecord, RunState, RunStore, SqliteRunStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteRunStore::open(dir.path().join("runs.db")).await.unwrap();
/// let key = RunKey { dag_id: "daily".into(), run_id: "manual__1".into() };
/// store
///     .begin_run(&RunRecord {
///         key: key.clone(),
///         logical_date: chrono::Utc::now(),
///         params: Default::default(),
///         state: RunState::Running,
///     })
///     .await
///     .unwrap();
/// assert_eq!(store.list_runs("daily").await.unwrap().len(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteRunStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The path as errors show it.
    name: String,
    /// The one connection that writes.
    conn: Mutex<Connection>,
    /// Idle read-only connections; a read takes one (or opens one) and gives it back.
    readers: Mutex<Vec<Connection>>,
}

/// Read-only connections kept open between reads (more are opened while reads overlap).
const IDLE_READERS: usize = 4;

impl std::fmt::Debug for SqliteRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRunStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// How long a call waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl SqliteRunStore {
    /// Opens (creating if needed) the store at `path` and migrates its schema to this build's
    /// version. Errors name the file: it cannot be opened, is not a SQLite database, or has a
    /// schema newer than this build knows.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| Error::Config {
                message: format!("opening the run store failed: {e}"),
            })?
    }

    fn open_blocking(path: PathBuf) -> Result<Self> {
        let name = path.display().to_string();
        let open_error = |e: rusqlite::Error| Error::Config {
            message: format!("cannot open run store {name}: {e}"),
        };
        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL: readers never block the writer; FULL: a commit is on disk before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_error)?;
        migrate(&mut conn, &name)?;
        Ok(SqliteRunStore {
            inner: Arc::new(Inner {
                path,
                name,
                conn: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the file (this build migrates it to the latest on open).
    pub async fn schema_version(&self) -> Result<i64> {
        self.call(|conn, _| Ok(conn.query_row(sql::CURRENT_VERSION, [], |r| r.get(0))?))
            .await
    }

    /// Runs `f` on the connection on the blocking pool, in one transaction.
    async fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &str) -> std::result::Result<T, CallError>
            + Send
            + 'static,
    {
        self.call(move |conn, name| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, name)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> std::result::Result<T, CallError> + Send + 'static,
    {
        self.blocking(move |inner| {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn, &inner.name)
        })
        .await
    }

    /// Runs `f` in a read transaction (one snapshot) on a read-only connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &str) -> std::result::Result<T, CallError>
            + Send
            + 'static,
    {
        self.blocking(move |inner| {
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    conn
                }
            };
            let value = {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let value = f(&tx, &inner.name)?;
                tx.finish()?;
                value
            };
            let mut idle = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            Ok(value)
        })
        .await
    }

    /// Runs `f` on the blocking pool; errors name the store.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> std::result::Result<T, CallError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || {
            f(&inner).map_err(|e| e.into_error(&inner.name, is_temporary))
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) => Err(Error::Backend {
                backend: format!("run store {}", self.inner.name),
                temporary: false,
                source: Box::new(e),
            }),
        }
    }
}

type CallError = sql::CallError<rusqlite::Error>;

impl From<rusqlite::Error> for CallError {
    fn from(e: rusqlite::Error) -> Self {
        CallError::Db(e)
    }
}

/// A busy or locked database may be free on a later call.
fn is_temporary(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Brings the schema to [`sql::SCHEMA_VERSION`], one transaction per migration.
fn migrate(conn: &mut Connection, name: &str) -> Result<()> {
    let failed = |e: rusqlite::Error| Error::Config {
        message: format!("cannot migrate run store {name}: {e}"),
    };
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute(sql::CREATE_SCHEMA_VERSION, []).map_err(failed)?;
        let version: i64 = tx
            .query_row(sql::CURRENT_VERSION, [], |r| r.get(0))
            .map_err(failed)?;
        if version > sql::SCHEMA_VERSION {
            return Err(sql::too_new(name, version));
        }
        if version == sql::SCHEMA_VERSION {
            return tx.commit().map_err(failed);
        }
        let next = version + 1;
        tx.execute_batch(sql::MIGRATIONS[version as usize])
            .map_err(failed)?;
        tx.execute(
            &sqlite(sql::RECORD_VERSION),
            params![next, sql::time_text(Utc::now())],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::debug!(store = name, version = next, "migrated the run store");
    }
}

/// A shared statement with SQLite's numbered placeholders.
fn sqlite(statement: &str) -> String {
    statement.replace('$', "?")
}

/// The shared statements, rewritten once.
struct Statements {
    begin_run: String,
    run_exists: String,
    set_task_state: String,
    record_submission: String,
    put_xcom: String,
    finish_run: String,
    select_run: String,
    select_tasks: String,
    select_task_states: String,
    select_task_span: String,
    select_submissions: String,
    select_xcom: String,
    list_runs: String,
    previous_task: String,
    set_dag_paused: String,
    dag_pauses: String,
}

fn statements() -> &'static Statements {
    static STATEMENTS: std::sync::OnceLock<Statements> = std::sync::OnceLock::new();
    STATEMENTS.get_or_init(|| Statements {
        begin_run: sqlite(sql::BEGIN_RUN),
        run_exists: sqlite(sql::RUN_EXISTS),
        set_task_state: sqlite(sql::SET_TASK_STATE),
        record_submission: sqlite(sql::RECORD_SUBMISSION),
        put_xcom: sqlite(sql::PUT_XCOM),
        finish_run: sqlite(sql::FINISH_RUN),
        select_run: sqlite(sql::SELECT_RUN),
        select_tasks: sqlite(sql::SELECT_TASKS),
        select_task_states: sqlite(sql::SELECT_TASK_STATES),
        select_task_span: sqlite(sql::SELECT_TASK_SPAN),
        select_submissions: sqlite(sql::SELECT_SUBMISSIONS),
        select_xcom: sqlite(sql::SELECT_XCOM),
        list_runs: sqlite(sql::LIST_RUNS),
        previous_task: sqlite(sql::PREVIOUS_TASK),
        set_dag_paused: sqlite(sql::SET_DAG_PAUSED),
        dag_pauses: sqlite(sql::DAG_PAUSES),
    })
}

fn require_run(tx: &rusqlite::Transaction<'_>, key: &RunKey) -> std::result::Result<(), CallError> {
    let found = tx
        .prepare_cached(&statements().run_exists)?
        .query_row(params![key.dag_id, key.run_id], |_| Ok(()))
        .optional()?;
    match found {
        Some(()) => Ok(()),
        None => Err(CallError::Store(Error::NotFound {
            what: format!("run {}/{} in the run store", key.dag_id, key.run_id),
        })),
    }
}

type RunRow = (String, String, String, String, String);

fn run_record(name: &str, row: RunRow) -> Result<RunRecord> {
    let (dag_id, run_id, logical_date, params, state) = row;
    Ok(RunRecord {
        key: RunKey { dag_id, run_id },
        logical_date: sql::parse_time(name, &logical_date)?,
        params: sql::parse_json(name, "run params", &params)?,
        state: sql::parse_run_state(name, &state)?,
    })
}

fn read_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn set_states(
    tx: &rusqlite::Transaction<'_>,
    key: &RunKey,
    changes: &[(String, TaskState, u32)],
) -> std::result::Result<(), CallError> {
    require_run(tx, key)?;
    let now = sql::time_text(Utc::now());
    let mut statement = tx.prepare_cached(&statements().set_task_state)?;
    for (task_id, state, try_number) in changes {
        statement.execute(params![
            key.dag_id,
            key.run_id,
            task_id,
            state.as_str(),
            i64::from(*try_number),
            now
        ])?;
    }
    Ok(())
}

#[async_trait]
impl RunStore for SqliteRunStore {
    async fn begin_run(&self, run: &RunRecord) -> Result<()> {
        let run = run.clone();
        let params = serde_json::to_string(&run.params).map_err(|e| Error::Config {
            message: format!("run params cannot be stored: {e}"),
        })?;
        self.transaction(move |tx, _| {
            tx.prepare_cached(&statements().begin_run)?
                .execute(params![
                    run.key.dag_id,
                    run.key.run_id,
                    sql::time_text(run.logical_date),
                    params,
                    run.state.as_str(),
                    sql::time_text(Utc::now()),
                ])?;
            Ok(())
        })
        .await
    }

    async fn set_task_state(
        &self,
        run: &RunKey,
        task_id: &str,
        state: TaskState,
        try_number: u32,
    ) -> Result<()> {
        let key = run.clone();
        let changes = vec![(task_id.to_owned(), state, try_number)];
        self.transaction(move |tx, _| set_states(tx, &key, &changes))
            .await
    }

    async fn set_task_states(&self, run: &RunKey, changes: &[TaskStateChange<'_>]) -> Result<()> {
        let key = run.clone();
        let changes: Vec<(String, TaskState, u32)> = changes
            .iter()
            .map(|c| (c.task_id.to_owned(), c.state, c.try_number))
            .collect();
        self.transaction(move |tx, _| set_states(tx, &key, &changes))
            .await
    }

    async fn record_submission(
        &self,
        run: &RunKey,
        task_id: &str,
        record: &SubmissionRecord,
    ) -> Result<()> {
        let key = run.clone();
        let task_id = task_id.to_owned();
        let record = record.clone();
        let submission = serde_json::to_string(&record.submission).map_err(|e| Error::Config {
            message: format!("submission cannot be stored: {e}"),
        })?;
        let idempotency_key = record
            .submission
            .idempotency_key
            .clone()
            .unwrap_or_else(|| {
                IdempotencyKey::for_task(&key.dag_id, &key.run_id, &task_id, record.try_number)
            });
        self.transaction(move |tx, _| {
            require_run(tx, &key)?;
            tx.prepare_cached(&statements().record_submission)?
                .execute(params![
                    key.dag_id,
                    key.run_id,
                    task_id,
                    i64::from(record.try_number),
                    record.connection,
                    record.submission.backend,
                    record.submission.id.as_str(),
                    idempotency_key.as_str(),
                    submission,
                    sql::time_text(Utc::now()),
                ])?;
            Ok(())
        })
        .await
    }

    async fn put_xcom(
        &self,
        run: &RunKey,
        task_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        let run = run.clone();
        let task_id = task_id.to_owned();
        let xcom_key = key.to_owned();
        let value = value.to_string();
        self.transaction(move |tx, _| {
            require_run(tx, &run)?;
            tx.prepare_cached(&statements().put_xcom)?
                .execute(params![run.dag_id, run.run_id, task_id, xcom_key, value])?;
            Ok(())
        })
        .await
    }

    async fn finish_run(&self, run: &RunKey, state: RunState) -> Result<()> {
        let key = run.clone();
        self.transaction(move |tx, _| {
            require_run(tx, &key)?;
            tx.prepare_cached(&statements().finish_run)?
                .execute(params![
                    key.dag_id,
                    key.run_id,
                    state.as_str(),
                    sql::time_text(Utc::now())
                ])?;
            Ok(())
        })
        .await
    }

    async fn load_run(&self, run: &RunKey) -> Result<Option<StoredRun>> {
        let key = run.clone();
        self.read(move |tx, name| {
            let s = statements();
            let row = tx
                .prepare_cached(&s.select_run)?
                .query_row(params![key.dag_id, key.run_id], read_run_row)
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            let run = run_record(name, row)?;

            let mut tasks = BTreeMap::new();
            let mut statement = tx.prepare_cached(&s.select_tasks)?;
            let rows = statement.query_map(params![key.dag_id, key.run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?;
            for row in rows {
                let (task_id, state, try_number, start, end) = row?;
                tasks.insert(
                    task_id,
                    TaskRecord {
                        state: sql::parse_task_state(name, &state)?,
                        try_number: sql::try_number(name, try_number)?,
                        submissions: Vec::new(),
                        start_date: sql::parse_optional_time(name, start)?,
                        end_date: sql::parse_optional_time(name, end)?,
                    },
                );
            }

            let mut statement = tx.prepare_cached(&s.select_submissions)?;
            let rows = statement.query_map(params![key.dag_id, key.run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            for row in rows {
                let (task_id, connection, try_number, submission) = row?;
                let record = SubmissionRecord {
                    connection,
                    try_number: sql::try_number(name, try_number)?,
                    submission: sql::parse_json(name, "submission", &submission)?,
                };
                tasks
                    .entry(task_id)
                    .or_insert_with(TaskRecord::default)
                    .submissions
                    .push(record);
            }

            let mut xcom: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
            let mut statement = tx.prepare_cached(&s.select_xcom)?;
            let rows = statement.query_map(params![key.dag_id, key.run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (task_id, xcom_key, value) = row?;
                let value = sql::parse_json(name, "XCom value", &value)?;
                xcom.entry(task_id).or_default().insert(xcom_key, value);
            }
            Ok(Some(StoredRun { run, tasks, xcom }))
        })
        .await
    }

    async fn load_task_states(&self, run: &RunKey) -> Result<Option<RunTaskStates>> {
        let key = run.clone();
        self.read(move |tx, name| {
            let s = statements();
            let found = tx
                .prepare_cached(&s.run_exists)?
                .query_row(params![key.dag_id, key.run_id], |_| Ok(()))
                .optional()?;
            if found.is_none() {
                return Ok(None);
            }
            let mut tasks = Vec::new();
            let mut statement = tx.prepare_cached(&s.select_task_states)?;
            let mut rows = statement.query(params![key.dag_id, key.run_id])?;
            while let Some(r) = rows.next()? {
                // Borrowed: the state text is matched in place, not copied.
                let state = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                tasks.push(TaskSummary {
                    task_id: r.get(0)?,
                    state: sql::parse_task_state(name, state)?,
                    try_number: sql::try_number(name, r.get(2)?)?,
                });
            }
            let (first, last) = tx.prepare_cached(&s.select_task_span)?.query_row(
                params![key.dag_id, key.run_id],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                },
            )?;
            Ok(Some(RunTaskStates {
                tasks,
                first_start: sql::parse_optional_time(name, first)?,
                last_end: sql::parse_optional_time(name, last)?,
            }))
        })
        .await
    }

    async fn set_dag_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let dag_id = dag_id.to_owned();
        self.transaction(move |tx, _| {
            tx.prepare_cached(&statements().set_dag_paused)?
                .execute(params![
                    dag_id,
                    i64::from(paused),
                    sql::time_text(Utc::now())
                ])?;
            Ok(())
        })
        .await
    }

    async fn dag_pauses(&self) -> Result<BTreeMap<String, bool>> {
        self.read(|tx, _| {
            let mut statement = tx.prepare_cached(&statements().dag_pauses)?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn list_runs(&self, dag_id: &str) -> Result<Vec<RunRecord>> {
        let dag_id = dag_id.to_owned();
        self.read(move |tx, name| {
            let mut statement = tx.prepare_cached(&statements().list_runs)?;
            let rows = statement.query_map(params![dag_id], read_run_row)?;
            let mut runs = Vec::new();
            for row in rows {
                runs.push(run_record(name, row?)?);
            }
            Ok(runs)
        })
        .await
    }

    async fn previous_task_instance(
        &self,
        run: &RunKey,
        task_id: &str,
    ) -> Result<Option<TaskRecord>> {
        let key = run.clone();
        let task_id = task_id.to_owned();
        self.read(move |tx, name| {
            require_run(tx, &key)?;
            let row = tx
                .prepare_cached(&statements().previous_task)?
                .query_row(params![key.dag_id, key.run_id, task_id], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()?;
            let Some((Some(state), Some(try_number), start, end)) = row else {
                return Ok(None);
            };
            Ok(Some(TaskRecord {
                state: sql::parse_task_state(name, &state)?,
                try_number: sql::try_number(name, try_number)?,
                submissions: Vec::new(),
                start_date: sql::parse_optional_time(name, start)?,
                end_date: sql::parse_optional_time(name, end)?,
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.db");
        std::fs::write(
            &path,
            "these are not the runs you are looking for, not at all ".repeat(40),
        )
        .unwrap();
        let e = SqliteRunStore::open(&path).await.unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("not a database"), "{e}");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_and_reopening_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        let store = SqliteRunStore::open(&path).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), sql::SCHEMA_VERSION);
        drop(store);
        let store = SqliteRunStore::open(&path).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), sql::SCHEMA_VERSION);
        drop(store);

        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, sql::SCHEMA_VERSION);
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, 'later')",
            [sql::SCHEMA_VERSION + 1],
        )
        .unwrap();
        drop(conn);
        let e = SqliteRunStore::open(&path).await.unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(
            e.contains(&format!("schema version {}", sql::SCHEMA_VERSION + 1)),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_file_of_the_first_schema_is_migrated_with_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        // What the first release wrote: schema 1, one run.
        let conn = Connection::open(&path).unwrap();
        conn.execute(sql::CREATE_SCHEMA_VERSION, []).unwrap();
        conn.execute_batch(sql::MIGRATIONS[0]).unwrap();
        conn.execute(&sqlite(sql::RECORD_VERSION), params![1, "then"])
            .unwrap();
        conn.execute(
            "INSERT INTO dag_runs VALUES ('daily', 'manual__1', '2025-01-01T00:00:00.000000Z',
                '{}', 'success', '2025-01-01T00:00:00.000000Z', NULL)",
            [],
        )
        .unwrap();
        drop(conn);

        let store = SqliteRunStore::open(&path).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), sql::SCHEMA_VERSION);
        let runs = store.list_runs("daily").await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].state, RunState::Success);
        assert!(store.dag_pauses().await.unwrap().is_empty());
        store.set_dag_paused("daily", true).await.unwrap();
        assert!(store.dag_pauses().await.unwrap()["daily"]);
    }

    #[tokio::test]
    async fn a_missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/runs.db");
        let e = SqliteRunStore::open(&path).await.unwrap_err().to_string();
        assert!(e.contains("cannot open run store"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
