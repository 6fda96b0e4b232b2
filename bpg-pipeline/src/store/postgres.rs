//! [`PostgresRunStore`]: the run store several runners share (feature `postgres`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Error, IdempotencyKey, Result};
use chrono::Utc;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls, Transaction};

use super::sql;
use super::{
    RunKey, RunRecord, RunStore, StoredRun, SubmissionRecord, TaskRecord, TaskStateChange,
};
use crate::events::{RunState, TaskState};

/// Runs `$body` in one transaction on the store's connection; `$tx` and `$name` (the store, for
/// errors) are in scope. The transaction commits if the body returns `Ok`, else rolls back.
macro_rules! in_transaction {
    ($store:ident, |$tx:ident, $name:ident| $body:block) => {{
        let $name: &str = &$store.inner.name;
        let mut client = $store.inner.client.lock().await;
        let $tx = client
            .transaction()
            .await
            .map_err(|e| CallError::from(e).into_error($name, is_temporary))?;
        let body: std::result::Result<_, CallError> = async { $body }.await;
        match body {
            Ok(value) => {
                $tx.commit()
                    .await
                    .map_err(|e| CallError::from(e).into_error($name, is_temporary))?;
                Ok(value)
            }
            Err(e) => Err(e.into_error($name, is_temporary)),
        }
    }};
}

/// Serialises schema migrations between runners starting at once (`pg_advisory_xact_lock` key).
const MIGRATION_LOCK: i64 = 0x6270_675f_7275_6e73; // "bpg_runs"

/// A [`RunStore`] in PostgreSQL, for several runners sharing state. Same schema and migrations as
/// [`crate::SqliteRunStore`]; every call is one transaction.
///
/// Connect with a URL (`postgres://user:password@host:5432/db`); the password never appears in
/// errors or `Debug`. TLS is not negotiated: reach remote servers through a local proxy or
/// socket.
#[derive(Clone)]
pub struct PostgresRunStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    schema: Option<String>,
    /// Where the store is, for errors: `postgres://user@host:port/db`, never the password.
    name: String,
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRunStore")
            .field("server", &self.inner.name)
            .field("schema", &self.inner.schema)
            .finish()
    }
}

fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

impl PostgresRunStore {
    /// Connects to the server at `url` and migrates the schema (tables in the default schema).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(url, None).await
    }

    /// Like [`PostgresRunStore::connect`], with the tables in schema `schema` (created if
    /// missing): several independent stores on one database. `schema` is a lowercase SQL
    /// identifier (`[a-z_][a-z0-9_]*`).
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        let valid = schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && schema.len() <= 63;
        if !valid {
            return Err(Error::Config {
                message: format!(
                    "run store schema {schema:?} is not a lowercase SQL identifier \
                     ([a-z_][a-z0-9_]*, at most 63 characters)"
                ),
            });
        }
        Self::open(url, Some(schema.to_owned())).await
    }

    async fn open(url: &str, schema: Option<String>) -> Result<Self> {
        let config = Config::from_str(url).map_err(|e| Error::Config {
            message: format!(
                "run store URL is not a PostgreSQL URL ({e}); expected \
                 postgres://user:password@host:port/database"
            ),
        })?;
        Self::with_config(config, schema).await
    }

    async fn with_config(config: Config, schema: Option<String>) -> Result<Self> {
        let name = describe(&config);
        let failed = |e: tokio_postgres::Error| Error::Unavailable {
            message: format!("cannot connect to run store {name}: {e}"),
        };
        let (mut client, connection) = config.connect(NoTls).await.map_err(failed)?;
        let server = name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(store = %server, error = %e, "run store connection closed");
            }
        });
        if let Some(schema) = &schema {
            // Runners starting at once race on `CREATE SCHEMA IF NOT EXISTS` (a unique
            // violation), hence the lock.
            let failed = |e: tokio_postgres::Error| Error::Config {
                message: format!(
                    "cannot use schema {schema} of run store {name}: {}",
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
                ),
            };
            let tx = client.transaction().await.map_err(failed)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(failed)?;
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            client
                .batch_execute(&format!("SET search_path TO {schema}"))
                .await
                .map_err(failed)?;
        }
        migrate(&mut client, &name).await?;
        Ok(PostgresRunStore {
            inner: Arc::new(Inner {
                config,
                schema,
                name,
                client: Mutex::new(client),
            }),
        })
    }

    /// A second, independent connection to the same store (as another runner would have).
    pub async fn reconnect(&self) -> Result<Self> {
        Self::with_config(self.inner.config.clone(), self.inner.schema.clone()).await
    }

    /// The schema version of the store.
    pub async fn schema_version(&self) -> Result<i64> {
        in_transaction!(self, |tx, _name| {
            Ok(tx.query_one(sql::CURRENT_VERSION, &[]).await?.get(0))
        })
    }
}

type CallError = sql::CallError<tokio_postgres::Error>;

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        CallError::Db(e)
    }
}

/// A closed connection or a serialisation conflict may pass on a later call.
fn is_temporary(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
        })
}

async fn migrate(client: &mut Client, name: &str) -> Result<()> {
    let failed = |e: tokio_postgres::Error| Error::Config {
        message: format!("cannot migrate run store {name}: {e}"),
    };
    loop {
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(failed)?;
        tx.batch_execute(sql::CREATE_SCHEMA_VERSION)
            .await
            .map_err(failed)?;
        let version: i64 = tx
            .query_one(sql::CURRENT_VERSION, &[])
            .await
            .map_err(failed)?
            .get(0);
        if version > sql::SCHEMA_VERSION {
            return Err(sql::too_new(name, version));
        }
        if version == sql::SCHEMA_VERSION {
            return tx.commit().await.map_err(failed);
        }
        let next = version + 1;
        tx.batch_execute(sql::MIGRATIONS[version as usize])
            .await
            .map_err(failed)?;
        tx.execute(sql::RECORD_VERSION, &[&next, &sql::time_text(Utc::now())])
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::debug!(store = name, version = next, "migrated the run store");
    }
}

async fn require_run(tx: &Transaction<'_>, key: &RunKey) -> std::result::Result<(), CallError> {
    match tx
        .query_opt(sql::RUN_EXISTS, &[&key.dag_id, &key.run_id])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(CallError::Store(Error::NotFound {
            what: format!("run {}/{} in the run store", key.dag_id, key.run_id),
        })),
    }
}

fn run_record(name: &str, row: &tokio_postgres::Row) -> Result<RunRecord> {
    Ok(RunRecord {
        key: RunKey {
            dag_id: row.get(0),
            run_id: row.get(1),
        },
        logical_date: sql::parse_time(name, row.get(2))?,
        params: sql::parse_json(name, "run params", row.get(3))?,
        state: sql::parse_run_state(name, row.get(4))?,
    })
}

fn task_record(name: &str, row: &tokio_postgres::Row, first: usize) -> Result<TaskRecord> {
    Ok(TaskRecord {
        state: sql::parse_task_state(name, row.get(first))?,
        try_number: sql::try_number(name, row.get(first + 1))?,
        submissions: Vec::new(),
        start_date: sql::parse_optional_time(name, row.get(first + 2))?,
        end_date: sql::parse_optional_time(name, row.get(first + 3))?,
    })
}

async fn set_states(
    tx: &Transaction<'_>,
    key: &RunKey,
    changes: &[(&str, TaskState, u32)],
) -> std::result::Result<(), CallError> {
    require_run(tx, key).await?;
    let now = sql::time_text(Utc::now());
    let statement = tx.prepare(sql::SET_TASK_STATE).await?;
    for (task_id, state, try_number) in changes {
        tx.execute(
            &statement,
            &[
                &key.dag_id,
                &key.run_id,
                task_id,
                &state.as_str(),
                &i64::from(*try_number),
                &now,
            ],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl RunStore for PostgresRunStore {
    async fn begin_run(&self, run: &RunRecord) -> Result<()> {
        let params = serde_json::to_string(&run.params).map_err(|e| Error::Config {
            message: format!("run params cannot be stored: {e}"),
        })?;
        in_transaction!(self, |tx, _name| {
            tx.execute(
                sql::BEGIN_RUN,
                &[
                    &run.key.dag_id,
                    &run.key.run_id,
                    &sql::time_text(run.logical_date),
                    &params,
                    &run.state.as_str(),
                    &sql::time_text(Utc::now()),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn set_task_state(
        &self,
        run: &RunKey,
        task_id: &str,
        state: TaskState,
        try_number: u32,
    ) -> Result<()> {
        in_transaction!(self, |tx, _name| {
            set_states(&tx, run, &[(task_id, state, try_number)]).await
        })
    }

    async fn set_task_states(&self, run: &RunKey, changes: &[TaskStateChange<'_>]) -> Result<()> {
        let changes: Vec<(&str, TaskState, u32)> = changes
            .iter()
            .map(|c| (c.task_id, c.state, c.try_number))
            .collect();
        in_transaction!(self, |tx, _name| { set_states(&tx, run, &changes).await })
    }

    async fn record_submission(
        &self,
        run: &RunKey,
        task_id: &str,
        record: &SubmissionRecord,
    ) -> Result<()> {
        let submission = serde_json::to_string(&record.submission).map_err(|e| Error::Config {
            message: format!("submission cannot be stored: {e}"),
        })?;
        let idempotency_key = record
            .submission
            .idempotency_key
            .clone()
            .unwrap_or_else(|| {
                IdempotencyKey::for_task(&run.dag_id, &run.run_id, task_id, record.try_number)
            });
        in_transaction!(self, |tx, _name| {
            require_run(&tx, run).await?;
            tx.execute(
                sql::RECORD_SUBMISSION,
                &[
                    &run.dag_id,
                    &run.run_id,
                    &task_id,
                    &i64::from(record.try_number),
                    &record.connection,
                    &record.submission.backend,
                    &record.submission.id.as_str(),
                    &idempotency_key.as_str(),
                    &submission,
                    &sql::time_text(Utc::now()),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn put_xcom(
        &self,
        run: &RunKey,
        task_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        let value = value.to_string();
        in_transaction!(self, |tx, _name| {
            require_run(&tx, run).await?;
            tx.execute(
                sql::PUT_XCOM,
                &[&run.dag_id, &run.run_id, &task_id, &key, &value],
            )
            .await?;
            Ok(())
        })
    }

    async fn finish_run(&self, run: &RunKey, state: RunState) -> Result<()> {
        in_transaction!(self, |tx, _name| {
            require_run(&tx, run).await?;
            tx.execute(
                sql::FINISH_RUN,
                &[
                    &run.dag_id,
                    &run.run_id,
                    &state.as_str(),
                    &sql::time_text(Utc::now()),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn load_run(&self, run: &RunKey) -> Result<Option<StoredRun>> {
        in_transaction!(self, |tx, name| {
            let ids: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&run.dag_id, &run.run_id];
            let Some(row) = tx.query_opt(sql::SELECT_RUN, &ids).await? else {
                return Ok(None);
            };
            let record = run_record(name, &row)?;
            let mut tasks = BTreeMap::new();
            for row in tx.query(sql::SELECT_TASKS, &ids).await? {
                tasks.insert(row.get::<_, String>(0), task_record(name, &row, 1)?);
            }
            for row in tx.query(sql::SELECT_SUBMISSIONS, &ids).await? {
                let submission = SubmissionRecord {
                    connection: row.get(1),
                    try_number: sql::try_number(name, row.get(2))?,
                    submission: sql::parse_json(name, "submission", row.get(3))?,
                };
                tasks
                    .entry(row.get::<_, String>(0))
                    .or_insert_with(TaskRecord::default)
                    .submissions
                    .push(submission);
            }
            let mut xcom: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
            for row in tx.query(sql::SELECT_XCOM, &ids).await? {
                let value = sql::parse_json(name, "XCom value", row.get(2))?;
                xcom.entry(row.get(0))
                    .or_default()
                    .insert(row.get(1), value);
            }
            Ok(Some(StoredRun {
                run: record,
                tasks,
                xcom,
            }))
        })
    }

    async fn set_dag_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        in_transaction!(self, |tx, _name| {
            let now = sql::time_text(Utc::now());
            tx.execute(sql::SET_DAG_PAUSED, &[&dag_id, &i64::from(paused), &now])
                .await?;
            Ok(())
        })
    }

    async fn dag_pauses(&self) -> Result<BTreeMap<String, bool>> {
        in_transaction!(self, |tx, _name| {
            let rows = tx.query(sql::DAG_PAUSES, &[]).await?;
            Ok(rows
                .iter()
                .map(|row| (row.get(0), row.get::<_, i64>(1) != 0))
                .collect())
        })
    }

    async fn list_runs(&self, dag_id: &str) -> Result<Vec<RunRecord>> {
        in_transaction!(self, |tx, name| {
            let rows = tx.query(sql::LIST_RUNS, &[&dag_id]).await?;
            rows.iter()
                .map(|row| run_record(name, row).map_err(CallError::Store))
                .collect()
        })
    }

    async fn previous_task_instance(
        &self,
        run: &RunKey,
        task_id: &str,
    ) -> Result<Option<TaskRecord>> {
        in_transaction!(self, |tx, name| {
            require_run(&tx, run).await?;
            let row = tx
                .query_opt(sql::PREVIOUS_TASK, &[&run.dag_id, &run.run_id, &task_id])
                .await?;
            match row {
                Some(row) if row.get::<_, Option<String>>(0).is_some() => {
                    Ok(Some(task_record(name, &row, 0)?))
                }
                _ => Ok(None),
            }
        })
    }
}
