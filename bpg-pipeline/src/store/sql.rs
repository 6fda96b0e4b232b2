//! The schema and statements the SQL run stores share (SQLite and PostgreSQL).
//!
//! Statements are written once, with `$N` placeholders (PostgreSQL's); the SQLite store turns them
//! into `?N`. Times are stored as fixed-width RFC 3339 text (`2025-01-01T00:00:00.000000Z`), which
//! sorts as the times do in both databases.

use bpg_core::{Error, Result};
use chrono::{DateTime, Utc};

use crate::events::{RunState, TaskState};

/// An error inside a store call: the database driver's (`E`), or one already made for the caller.
pub(crate) enum CallError<E> {
    Db(E),
    Store(Error),
}

impl<E> From<Error> for CallError<E> {
    fn from(e: Error) -> Self {
        CallError::Store(e)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> CallError<E> {
    /// The caller's error; a driver error is a backend error of store `name`, temporary when
    /// `temporary` says a later call may pass.
    pub(crate) fn into_error(self, name: &str, temporary: fn(&E) -> bool) -> Error {
        match self {
            CallError::Store(e) => e,
            CallError::Db(e) => Error::Backend {
                backend: format!("run store {name}"),
                temporary: temporary(&e),
                source: Box::new(e),
            },
        }
    }
}

/// Schema migrations, in order. Entry `i` brings the schema to version `i + 1`. Never edit a
/// released entry: add a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, task instances, submissions, XCom.
    "CREATE TABLE dag_runs (
        dag_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        logical_date TEXT NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        start_date TEXT NOT NULL,
        end_date TEXT,
        PRIMARY KEY (dag_id, run_id)
    );
    CREATE INDEX dag_runs_by_logical_date ON dag_runs (dag_id, logical_date, run_id);
    CREATE TABLE task_instances (
        dag_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        state TEXT NOT NULL,
        try_number BIGINT NOT NULL,
        start_date TEXT,
        end_date TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (dag_id, run_id, task_id),
        FOREIGN KEY (dag_id, run_id) REFERENCES dag_runs (dag_id, run_id) ON DELETE CASCADE
    );
    CREATE TABLE submissions (
        dag_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        try_number BIGINT NOT NULL,
        connection TEXT NOT NULL,
        backend TEXT NOT NULL,
        submission_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        submission TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (dag_id, run_id, task_id, try_number),
        FOREIGN KEY (dag_id, run_id) REFERENCES dag_runs (dag_id, run_id) ON DELETE CASCADE
    );
    CREATE INDEX submissions_by_idempotency_key ON submissions (idempotency_key);
    CREATE TABLE xcom (
        dag_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (dag_id, run_id, task_id, key),
        FOREIGN KEY (dag_id, run_id) REFERENCES dag_runs (dag_id, run_id) ON DELETE CASCADE
    );",
    // 2: a DAG's pause, as set through the scheduler (1 paused, 0 not).
    "CREATE TABLE dag_pauses (
        dag_id TEXT PRIMARY KEY,
        is_paused BIGINT NOT NULL,
        updated_at TEXT NOT NULL
    );",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) const CREATE_SCHEMA_VERSION: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT PRIMARY KEY,
    applied_at TEXT NOT NULL
)";
pub(crate) const CURRENT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_version";
pub(crate) const RECORD_VERSION: &str =
    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)";

pub(crate) const BEGIN_RUN: &str = "INSERT INTO dag_runs
        (dag_id, run_id, logical_date, params, state, start_date, end_date)
    VALUES ($1, $2, $3, $4, $5, $6, NULL)
    ON CONFLICT (dag_id, run_id) DO UPDATE SET
        logical_date = excluded.logical_date,
        params = excluded.params,
        state = excluded.state,
        end_date = NULL";

pub(crate) const RUN_EXISTS: &str = "SELECT 1 FROM dag_runs WHERE dag_id = $1 AND run_id = $2";

/// Timestamps follow [`crate::store::TaskRecord::apply`]; `$6` is now.
pub(crate) const SET_TASK_STATE: &str = "INSERT INTO task_instances
        (dag_id, run_id, task_id, state, try_number, start_date, end_date, updated_at)
    VALUES ($1, $2, $3, $4, $5,
        CASE WHEN $4 = 'running' THEN CAST($6 AS TEXT) END,
        CASE WHEN $4 IN ('success', 'failed', 'upstream_failed', 'skipped', 'up_for_retry')
             THEN CAST($6 AS TEXT) END,
        $6)
    ON CONFLICT (dag_id, run_id, task_id) DO UPDATE SET
        start_date = CASE
            WHEN excluded.state = 'running'
                 AND (task_instances.state <> 'running'
                      OR task_instances.try_number <> excluded.try_number)
            THEN excluded.updated_at
            ELSE task_instances.start_date END,
        end_date = CASE
            WHEN excluded.state = 'running'
                 AND (task_instances.state <> 'running'
                      OR task_instances.try_number <> excluded.try_number)
            THEN NULL
            WHEN excluded.state IN ('success', 'failed', 'upstream_failed', 'skipped', 'up_for_retry')
                 AND task_instances.state NOT IN
                     ('success', 'failed', 'upstream_failed', 'skipped', 'up_for_retry')
            THEN excluded.updated_at
            ELSE task_instances.end_date END,
        state = excluded.state,
        try_number = excluded.try_number,
        updated_at = excluded.updated_at";

pub(crate) const RECORD_SUBMISSION: &str = "INSERT INTO submissions
        (dag_id, run_id, task_id, try_number, connection, backend, submission_id,
         idempotency_key, submission, recorded_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (dag_id, run_id, task_id, try_number) DO UPDATE SET
        connection = excluded.connection,
        backend = excluded.backend,
        submission_id = excluded.submission_id,
        idempotency_key = excluded.idempotency_key,
        submission = excluded.submission,
        recorded_at = excluded.recorded_at";

pub(crate) const PUT_XCOM: &str = "INSERT INTO xcom (dag_id, run_id, task_id, key, value)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (dag_id, run_id, task_id, key) DO UPDATE SET value = excluded.value";

pub(crate) const FINISH_RUN: &str =
    "UPDATE dag_runs SET state = $3, end_date = $4 WHERE dag_id = $1 AND run_id = $2";

pub(crate) const SET_DAG_PAUSED: &str = "INSERT INTO dag_pauses (dag_id, is_paused, updated_at)
    VALUES ($1, $2, $3)
    ON CONFLICT (dag_id) DO UPDATE SET
        is_paused = excluded.is_paused,
        updated_at = excluded.updated_at";

pub(crate) const DAG_PAUSES: &str = "SELECT dag_id, is_paused FROM dag_pauses";

pub(crate) const SELECT_RUN: &str = "SELECT dag_id, run_id, logical_date, params, state
    FROM dag_runs WHERE dag_id = $1 AND run_id = $2";

pub(crate) const SELECT_TASKS: &str = "SELECT task_id, state, try_number, start_date, end_date
    FROM task_instances WHERE dag_id = $1 AND run_id = $2";

pub(crate) const SELECT_TASK_STATES: &str = "SELECT task_id, state, try_number
    FROM task_instances WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id";

/// Times are stored in one fixed-width UTC format ([`time_text`]), so their text order is their
/// time order (SQLite compares text bytewise).
pub(crate) const SELECT_TASK_SPAN: &str = "SELECT MIN(start_date), MAX(end_date)
    FROM task_instances WHERE dag_id = $1 AND run_id = $2";

pub(crate) const SELECT_SUBMISSIONS: &str = "SELECT task_id, connection, try_number, submission
    FROM submissions WHERE dag_id = $1 AND run_id = $2
    ORDER BY task_id, try_number";

pub(crate) const SELECT_XCOM: &str =
    "SELECT task_id, key, value FROM xcom WHERE dag_id = $1 AND run_id = $2";

pub(crate) const LIST_RUNS: &str = "SELECT dag_id, run_id, logical_date, params, state
    FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date, run_id";

/// The same task's instance in the latest run of the DAG before run (`$1`, `$2`); `$3` is the task.
pub(crate) const PREVIOUS_TASK: &str = "SELECT t.state, t.try_number, t.start_date, t.end_date
    FROM dag_runs this
    JOIN dag_runs prev
      ON prev.dag_id = this.dag_id AND prev.logical_date < this.logical_date
    LEFT JOIN task_instances t
      ON t.dag_id = prev.dag_id AND t.run_id = prev.run_id AND t.task_id = $3
    WHERE this.dag_id = $1 AND this.run_id = $2
    ORDER BY prev.logical_date DESC, prev.run_id DESC
    LIMIT 1";

/// A time as stored.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A stored time; `store` names the store for the error.
pub(crate) fn parse_time(store: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(store, format!("time {text:?}: {e}")))
}

pub(crate) fn parse_optional_time(
    store: &str,
    text: Option<String>,
) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| parse_time(store, &t)).transpose()
}

pub(crate) fn parse_task_state(store: &str, text: &str) -> Result<TaskState> {
    text.parse()
        .map_err(|e: crate::UnknownState| corrupt(store, e.to_string()))
}

pub(crate) fn parse_run_state(store: &str, text: &str) -> Result<RunState> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| corrupt(store, format!("unknown run state {text:?}")))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    store: &str,
    what: &str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(store, format!("{what}: {e}")))
}

pub(crate) fn try_number(store: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| corrupt(store, format!("try number {n}")))
}

/// A row the store cannot read back.
pub(crate) fn corrupt(store: &str, message: String) -> Error {
    Error::Config {
        message: format!("run store {store} holds an unreadable value: {message}"),
    }
}

/// A schema newer than this build knows.
pub(crate) fn too_new(store: &str, found: i64) -> Error {
    Error::Config {
        message: format!(
            "run store {store} has schema version {found}, but this bpg-pipeline knows up to \
             version {SCHEMA_VERSION}; upgrade bpg-pipeline to use it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_sort_as_times() {
        let a = time_text("2025-01-01T00:00:00Z".parse().unwrap());
        let b = time_text("2025-01-01T00:00:00.5Z".parse().unwrap());
        let c = time_text("2025-01-01T00:00:01Z".parse().unwrap());
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(parse_time("x", &b).unwrap().timestamp_subsec_millis(), 500);
        assert!(
            parse_time("/tmp/runs.db", "yesterday")
                .unwrap_err()
                .to_string()
                .contains("/tmp/runs.db")
        );
    }

    #[test]
    fn states_read_back_by_their_airflow_names() {
        for state in [
            TaskState::None,
            TaskState::UpForRetry,
            TaskState::UpstreamFailed,
        ] {
            assert_eq!(parse_task_state("x", state.as_str()).unwrap(), state);
        }
        assert_eq!(parse_run_state("x", "success").unwrap(), RunState::Success);
        assert!(parse_task_state("x", "sleeping").is_err());
    }
}
