//! [`PostgresStore`]: submissions in PostgreSQL, shared by several gateway replicas (feature
//! `postgres`).
//!
//! Every call is **one statement** (a change and its event are one statement with a
//! data-modifying `WITH`), so calls need no transaction and run concurrently on one connection,
//! pipelined, with statements prepared once per connection. The unique `dedupe` key is enforced by
//! the database: two replicas taking the same `submissionIdSuffix` at once end with one
//! submission, and both answer it. A connection the server closed is replaced on the next call.
//!
//! Tables are `gateway_submissions`, `gateway_events`, `gateway_audit` and `gateway_schema_version`, so a gateway
//! can share a database (and schema) with bpg's run store.

use std::str::FromStr;
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use bpg_core::{Error, Result};
use tokio_postgres::{Client, Config, NoTls, Row, Statement, error::SqlState};

use super::{
    AuditEntry, Event, Phase, STATUS_COLUMNS, StateChange, StoredStatus, SubmissionRecord,
    SubmissionStore, decode_job, encode_job, in_order, store_error,
};

/// Serialises schema migrations between replicas starting at once (`pg_advisory_xact_lock` key).
const MIGRATION_LOCK: i64 = 0x6270_675f_6777_6179; // "bpg_gway"

/// The schema, one migration per entry; `gateway_schema_version` records those applied.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE gateway_submissions (
        id            TEXT PRIMARY KEY,
        cluster       TEXT NOT NULL,
        connection    TEXT NOT NULL,
        "user"        TEXT NOT NULL,
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
        attempts      BIGINT,
        created_ms    BIGINT NOT NULL,
        started_ms    BIGINT,
        terminated_ms BIGINT,
        deleted_by    TEXT
    );
    CREATE INDEX gateway_submissions_user ON gateway_submissions("user", created_ms);
    CREATE INDEX gateway_submissions_unfinished ON gateway_submissions(phase) WHERE terminated_ms IS NULL;
    CREATE INDEX gateway_submissions_spark_app ON gateway_submissions(spark_app_id);
    CREATE TABLE gateway_events (
        seq        BIGSERIAL PRIMARY KEY,
        submission TEXT NOT NULL,
        at_ms      BIGINT NOT NULL,
        reason     TEXT NOT NULL,
        message    TEXT NOT NULL
    );
    CREATE INDEX gateway_events_submission ON gateway_events(submission, at_ms, seq);
    "#,
    r#"
    CREATE TABLE gateway_audit (
        seq        BIGSERIAL PRIMARY KEY,
        at_ms      BIGINT NOT NULL,
        "user"     TEXT NOT NULL,
        address    TEXT,
        action     TEXT NOT NULL,
        submission TEXT,
        queue      TEXT,
        cluster    TEXT,
        outcome    TEXT NOT NULL,
        message    TEXT NOT NULL
    );
    CREATE INDEX gateway_audit_at ON gateway_audit(at_ms);
    "#,
    r#"
    ALTER TABLE gateway_submissions ADD COLUMN owner TEXT;
    ALTER TABLE gateway_submissions ADD COLUMN lease_until_ms BIGINT;
    "#,
];

const COLUMNS: &str = r#"id, cluster, connection, "user", queue, app_name, dag_name, spark_version,
    dedupe, job, decision, phase, backend_id, native_state, message, spark_app_id, attempts,
    created_ms, started_ms, terminated_ms, deleted_by, owner, lease_until_ms"#;

/// Appends the event `($1, $2, $3, $4)` = (submission, at_ms, reason, message) to a `WITH change`.
const EVENT: &str =
    "INSERT INTO gateway_events (submission, at_ms, reason, message) VALUES ($1, $2, $3, $4)";

/// The statements, prepared once per connection.
struct Statements {
    insert: Statement,
    by_dedupe: Statement,
    get_many: Statement,
    statuses_many: Statement,
    by_user: Statement,
    all: Statement,
    all_named: Statement,
    by_spark_app: Statement,
    unfinished: Statement,
    set_created: Statement,
    set_rejected: Statement,
    set_state: Statement,
    set_deleted: Statement,
    events: Statement,
    count: Statement,
    append_audit: Statement,
    audit_log: Statement,
    unfinished_count: Statement,
    claim: Statement,
    /// Sets (or, with NULL, gives up) an owner's leases.
    set_leases: Statement,
}

fn select(filter: &str) -> String {
    format!("SELECT {COLUMNS} FROM gateway_submissions {filter}")
}

impl Statements {
    async fn prepare(client: &Client) -> std::result::Result<Statements, tokio_postgres::Error> {
        let change = |update: &str| format!("WITH change AS ({update}) {EVENT}");
        Ok(Statements {
            insert: client
                .prepare(
                    r#"WITH ins AS (
                        INSERT INTO gateway_submissions (id, cluster, connection, "user", queue,
                            app_name, dag_name, spark_version, dedupe, job, decision, phase, created_ms,
                            owner, lease_until_ms)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $16)
                        ON CONFLICT (dedupe) DO NOTHING RETURNING id
                    ), event AS (
                        INSERT INTO gateway_events (submission, at_ms, reason, message)
                        SELECT id, $13, 'Routed', $14 FROM ins
                    ) SELECT count(*) FROM ins"#
                )
                .await?,
            by_dedupe: client.prepare(&select("WHERE dedupe = $1")).await?,
            get_many: client.prepare(&select("WHERE id = ANY($1)")).await?,
            statuses_many: client
                .prepare(&format!(
                    "SELECT {STATUS_COLUMNS} FROM gateway_submissions WHERE id = ANY($1)"
                ))
                .await?,
            by_user: client
                .prepare(&select(r#"WHERE "user" = $1 ORDER BY created_ms, id"#))
                .await?,
            all: client.prepare(&select("ORDER BY created_ms, id")).await?,
            all_named: client
                .prepare(&select("WHERE app_name = $1 ORDER BY created_ms, id"))
                .await?,
            by_spark_app: client
                .prepare(&select(
                    "WHERE spark_app_id = $1 AND phase <> 'deleted' \
                     ORDER BY created_ms DESC, id DESC LIMIT 1",
                ))
                .await?,
            unfinished: client
                .prepare(&select(
                    "WHERE terminated_ms IS NULL AND phase IN ('queued', 'created') \
                     ORDER BY created_ms, id",
                ))
                .await?,
            set_created: client
                .prepare(&change(
                    "UPDATE gateway_submissions SET phase = 'created', backend_id = $5 \
                     WHERE id = $1 AND phase = 'queued'",
                ))
                .await?,
            set_rejected: client
                .prepare(&change(
                    "UPDATE gateway_submissions SET phase = 'rejected', dedupe = NULL, \
                     native_state = 'FAILED', message = $4, terminated_ms = $2 WHERE id = $1",
                ))
                .await?,
            set_state: client
                .prepare(&change(
                    "UPDATE gateway_submissions SET native_state = $5, message = $6, \
                     spark_app_id = COALESCE($7, spark_app_id), attempts = COALESCE($8, attempts), \
                     started_ms = COALESCE(started_ms, $9), terminated_ms = $10 WHERE id = $1",
                ))
                .await?,
            set_deleted: client
                .prepare(&change(
                    "UPDATE gateway_submissions SET phase = 'deleted', deleted_by = $5, \
                     terminated_ms = COALESCE(terminated_ms, $2) WHERE id = $1",
                ))
                .await?,
            events: client
                .prepare(
                    "SELECT at_ms, reason, message FROM gateway_events WHERE submission = $1 \
                     ORDER BY at_ms, seq",
                )
                .await?,
            count: client
                .prepare("SELECT count(*) FROM gateway_submissions")
                .await?,
            claim: client
                .prepare(&format!(
                    "UPDATE gateway_submissions SET owner = $1, lease_until_ms = $3
                     WHERE id IN (
                        SELECT id FROM gateway_submissions WHERE terminated_ms IS NULL
                        AND phase IN ('queued', 'created')
                        AND (lease_until_ms IS NULL OR lease_until_ms < $2)
                        ORDER BY created_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED)
                     AND (lease_until_ms IS NULL OR lease_until_ms < $2)
                     RETURNING {COLUMNS}"
                ))
                .await?,
            set_leases: client
                .prepare(
                    "UPDATE gateway_submissions SET lease_until_ms = $2 WHERE owner = $1 \
                     AND terminated_ms IS NULL AND phase IN ('queued', 'created')",
                )
                .await?,
            unfinished_count: client
                .prepare(
                    r#"SELECT count(*) FROM gateway_submissions WHERE "user" = $1
                        AND terminated_ms IS NULL AND phase IN ('queued', 'created')"#,
                )
                .await?,
            append_audit: client
                .prepare(
                    r#"INSERT INTO gateway_audit (at_ms, "user", address, action, submission,
                        queue, cluster, outcome, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
                )
                .await?,
            audit_log: client
                .prepare(
                    r#"SELECT at_ms, "user", address, action, submission, queue, cluster, outcome,
                        message FROM (SELECT * FROM gateway_audit ORDER BY seq DESC LIMIT $1) newest
                     ORDER BY seq"#,
                )
                .await?,
        })
    }
}

/// One connection and its prepared statements.
struct Connected {
    client: Client,
    statements: Statements,
}

/// A [`SubmissionStore`] in PostgreSQL, for several gateway replicas sharing state. See the
/// [module docs](self).
///
/// Connect with a URL (`postgres://user:password@host:5432/db`); the password never appears in
/// errors or `Debug`. TLS is not negotiated: reach remote servers through a local proxy or
/// socket.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    schema: Option<String>,
    /// Where the store is, for errors: `postgres://user@host:port/db`, never the password.
    name: String,
    current: SyncMutex<Arc<Connected>>,
    /// Held while a closed connection is replaced, so callers replace it once.
    reconnecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.inner.name)
            .field("schema", &self.inner.schema)
            .finish()
    }
}

/// `postgres://user@host:port/db` of `config`, without the password.
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

/// A closed connection, a conflict or a server going away may pass on a later call.
fn is_temporary(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(c)
        })
}

impl PostgresStore {
    /// Connects to the server at `url` and migrates the schema (tables in the default schema).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(url, None).await
    }

    /// Like [`PostgresStore::connect`], with the tables in schema `schema` (created if missing):
    /// several independent gateways on one database. `schema` is a lowercase SQL identifier
    /// (`[a-z_][a-z0-9_]*`).
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
            return Err(Error::config(format!(
                "gateway store schema {schema:?} is not a lowercase SQL identifier \
                 ([a-z_][a-z0-9_]*, at most 63 characters)"
            )));
        }
        Self::open(url, Some(schema.to_owned())).await
    }

    async fn open(url: &str, schema: Option<String>) -> Result<Self> {
        let config = Config::from_str(url).map_err(|e| {
            Error::config(format!(
                "the gateway state is not a PostgreSQL URL ({e}); expected \
                 postgres://user:password@host:port/database"
            ))
        })?;
        let name = describe(&config);
        let connected = connect(&config, schema.as_deref(), &name, true).await?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                config,
                schema,
                name,
                current: SyncMutex::new(Arc::new(connected)),
                reconnecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// A second, independent connection to the same store (as another replica would have).
    pub async fn reconnect(&self) -> Result<Self> {
        let connected = connect(
            &self.inner.config,
            self.inner.schema.as_deref(),
            &self.inner.name,
            false,
        )
        .await?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                config: self.inner.config.clone(),
                schema: self.inner.schema.clone(),
                name: self.inner.name.clone(),
                current: SyncMutex::new(Arc::new(connected)),
                reconnecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The connection, replaced first when the server closed it.
    async fn connection(&self) -> Result<Arc<Connected>> {
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        let _one = self.inner.reconnecting.lock().await;
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        tracing::info!(store = %self.inner.name, "the gateway store's connection closed; reconnecting");
        let fresh = Arc::new(
            connect(
                &self.inner.config,
                self.inner.schema.as_deref(),
                &self.inner.name,
                false,
            )
            .await?,
        );
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    fn current(&self) -> Arc<Connected> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn err(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| store_error(&self.inner.name, what, is_temporary(&e), e)
    }

    /// Sets the lease of `owner`'s unfinished submissions (`None`: given up).
    async fn set_leases(
        &self,
        owner: &str,
        until_ms: Option<i64>,
        what: &'static str,
    ) -> Result<u64> {
        let c = self.connection().await?;
        c.client
            .execute(&c.statements.set_leases, &[&owner, &until_ms])
            .await
            .map_err(self.err(what))
    }

    fn records(&self, rows: &[Row]) -> Result<Vec<SubmissionRecord>> {
        rows.iter()
            .map(|r| read_record(&self.inner.name, r))
            .collect()
    }

    async fn list(
        &self,
        pick: impl FnOnce(&Statements) -> &Statement,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<SubmissionRecord>> {
        let c = self.connection().await?;
        let rows = c
            .client
            .query(pick(&c.statements), args)
            .await
            .map_err(self.err("cannot list submissions"))?;
        self.records(&rows)
    }

    async fn change(
        &self,
        what: &'static str,
        pick: impl FnOnce(&Statements) -> &Statement,
        id: &str,
        reason: &str,
        message: &str,
        more: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&id, &now, &reason, &message];
        args.extend_from_slice(more);
        let c = self.connection().await?;
        c.client
            .execute(pick(&c.statements), &args)
            .await
            .map_err(self.err(what))?;
        Ok(())
    }
}

/// Opens a connection, puts it in `schema`, migrates (when `migrate`) and prepares statements.
async fn connect(
    config: &Config,
    schema: Option<&str>,
    name: &str,
    migrate: bool,
) -> Result<Connected> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::Unavailable {
            message: format!("cannot connect to the gateway store {name}: {e}"),
        })?;
    let server = name.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(store = %server, error = %e, "gateway store connection closed");
        }
    });
    if let Some(schema) = schema {
        // `schema` is a checked identifier: see `connect_in_schema`. Replicas starting at once
        // race on `CREATE SCHEMA IF NOT EXISTS` (a unique violation), hence the lock.
        let failed = |e: tokio_postgres::Error| {
            Error::config(format!(
                "cannot use schema {schema} of the gateway store {name}: {}",
                db_message(&e)
            ))
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
    if migrate {
        run_migrations(&mut client, name).await?;
    }
    let statements = Statements::prepare(&client).await.map_err(|e| {
        store_error(
            name,
            "cannot prepare the store's statements (is its schema migrated?)",
            is_temporary(&e),
            db_message(&e),
        )
    })?;
    Ok(Connected { client, statements })
}

/// The server's own message where there is one (`tokio_postgres` displays only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
}

async fn run_migrations(client: &mut Client, name: &str) -> Result<()> {
    let failed = |e: tokio_postgres::Error| {
        Error::config(format!(
            "cannot migrate the gateway store {name}: {}",
            db_message(&e)
        ))
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gateway_schema_version (
            version BIGINT PRIMARY KEY,
            applied_ms BIGINT NOT NULL
        )",
    )
    .await
    .map_err(failed)?;
    let version: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM gateway_schema_version",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::config(format!(
            "the gateway store {name} has schema version {version}, newer than this gateway's \
             {known}: upgrade the gateway"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO gateway_schema_version (version, applied_ms) VALUES ($1, $2)",
            &[&(i as i64 + 1), &chrono::Utc::now().timestamp_millis()],
        )
        .await
        .map_err(failed)?;
        tracing::debug!(store = name, version = i + 1, "migrated the gateway store");
    }
    tx.commit().await.map_err(failed)
}

#[async_trait]
impl SubmissionStore for PostgresStore {
    fn location(&self) -> String {
        self.inner.name.clone()
    }

    async fn insert(&self, r: &SubmissionRecord) -> Result<Option<SubmissionRecord>> {
        let job = encode_job(&self.inner.name, &r.job)?;
        let decision = r.decision.as_ref().map(|d| d.to_string());
        let routed = r.routed_message();
        // The key's holder may give it up (be rejected) between our conflict and our read:
        // then the insert is tried again.
        for _ in 0..3 {
            let c = self.connection().await?;
            let inserted: i64 = c
                .client
                .query_one(
                    &c.statements.insert,
                    &[
                        &r.id,
                        &r.cluster,
                        &r.connection,
                        &r.user,
                        &r.queue,
                        &r.app_name,
                        &r.dag_name,
                        &r.spark_version,
                        &r.dedupe,
                        &job,
                        &decision,
                        &r.phase.as_str(),
                        &r.created_ms,
                        &routed,
                        &r.owner,
                        &r.lease_until_ms,
                    ],
                )
                .await
                .map_err(self.err("cannot record a submission"))?
                .get(0);
            if inserted == 1 {
                return Ok(None);
            }
            let existing = c
                .client
                .query_opt(&c.statements.by_dedupe, &[&r.dedupe])
                .await
                .map_err(self.err("cannot look up an idempotency key"))?;
            if let Some(row) = existing {
                return read_record(&self.inner.name, &row).map(Some);
            }
        }
        Err(store_error(
            &self.inner.name,
            "cannot record a submission",
            true,
            "its idempotency key changed hands three times in a row",
        ))
    }

    async fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<SubmissionRecord>>> {
        let found = self
            .list(|s| &s.get_many, &[&ids])
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r));
        Ok(in_order(ids, found.collect()))
    }

    async fn statuses_many(&self, ids: &[&str]) -> Result<Vec<Option<StoredStatus>>> {
        let c = self.connection().await?;
        let rows = c
            .client
            .query(&c.statements.statuses_many, &[&ids])
            .await
            .map_err(self.err("cannot read statuses"))?;
        let found: std::collections::HashMap<String, StoredStatus> = rows
            .iter()
            .map(|r| {
                let status = read_status(r);
                (status.id.clone(), status)
            })
            .collect();
        Ok(in_order(ids, found))
    }

    async fn by_user(&self, user: &str) -> Result<Vec<SubmissionRecord>> {
        self.list(|s| &s.by_user, &[&user]).await
    }

    async fn all(&self, app_name: Option<&str>) -> Result<Vec<SubmissionRecord>> {
        match app_name {
            Some(name) => self.list(|s| &s.all_named, &[&name]).await,
            None => self.list(|s| &s.all, &[]).await,
        }
    }

    async fn by_spark_app_id(&self, app_id: &str) -> Result<Option<SubmissionRecord>> {
        Ok(self.list(|s| &s.by_spark_app, &[&app_id]).await?.pop())
    }

    async fn unfinished(&self) -> Result<Vec<SubmissionRecord>> {
        self.list(|s| &s.unfinished, &[]).await
    }

    async fn set_created(&self, id: &str, backend_id: &str) -> Result<()> {
        let message = format!("backend id {backend_id}");
        self.change(
            "cannot record a backend's answer",
            |s| &s.set_created,
            id,
            "Created",
            &message,
            &[&backend_id],
        )
        .await
    }

    async fn set_rejected(&self, id: &str, message: &str) -> Result<()> {
        self.change(
            "cannot record a backend's answer",
            |s| &s.set_rejected,
            id,
            "SubmissionRejected",
            message,
            &[],
        )
        .await
    }

    async fn set_state(&self, id: &str, c: &StateChange<'_>) -> Result<()> {
        let attempts = c.attempts.map(i64::from);
        self.change(
            "cannot record a state change",
            |s| &s.set_state,
            id,
            c.reason(),
            c.message.unwrap_or(""),
            &[
                &c.native_state,
                &c.message,
                &c.spark_app_id,
                &attempts,
                &c.started_ms,
                &c.terminated_ms,
            ],
        )
        .await
    }

    async fn set_deleted(&self, id: &str, user: &str) -> Result<()> {
        let message = format!("by {user}");
        self.change(
            "cannot record a deletion",
            |s| &s.set_deleted,
            id,
            "Deleted",
            &message,
            &[&user],
        )
        .await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        let c = self.connection().await?;
        let rows = c
            .client
            .query(&c.statements.events, &[&id])
            .await
            .map_err(self.err("cannot read events"))?;
        Ok(rows
            .iter()
            .map(|r| Event {
                at_ms: r.get(0),
                reason: r.get(1),
                message: r.get(2),
            })
            .collect())
    }

    async fn count(&self) -> Result<u64> {
        let c = self.connection().await?;
        let n: i64 = c
            .client
            .query_one(&c.statements.count, &[])
            .await
            .map_err(self.err("cannot count submissions"))?
            .get(0);
        Ok(n as u64)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn claim_unfinished(
        &self,
        owner: &str,
        expired_before_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<SubmissionRecord>> {
        let c = self.connection().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .client
            .query(
                &c.statements.claim,
                &[&owner, &expired_before_ms, &until_ms, &limit],
            )
            .await
            .map_err(self.err("cannot take submissions over"))?;
        let mut claimed = rows
            .iter()
            .map(|r| read_record(&self.inner.name, r))
            .collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order.
        claimed.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(claimed)
    }

    async fn renew_leases(&self, owner: &str, until_ms: i64) -> Result<u64> {
        self.set_leases(owner, Some(until_ms), "cannot renew leases")
            .await
    }

    async fn release_leases(&self, owner: &str) -> Result<u64> {
        self.set_leases(owner, None, "cannot release leases").await
    }

    async fn unfinished_count(&self, user: &str) -> Result<u64> {
        let c = self.connection().await?;
        let n: i64 = c
            .client
            .query_one(&c.statements.unfinished_count, &[&user])
            .await
            .map_err(self.err("cannot count submissions"))?
            .get(0);
        Ok(n as u64)
    }

    async fn append_audit(&self, e: &AuditEntry) -> Result<()> {
        let c = self.connection().await?;
        c.client
            .execute(
                &c.statements.append_audit,
                &[
                    &e.at_ms,
                    &e.user,
                    &e.address,
                    &e.action,
                    &e.submission,
                    &e.queue,
                    &e.cluster,
                    &e.outcome,
                    &e.message,
                ],
            )
            .await
            .map(|_| ())
            .map_err(self.err("cannot write the audit log"))
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let c = self.connection().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .client
            .query(&c.statements.audit_log, &[&limit])
            .await
            .map_err(self.err("cannot read the audit log"))?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at_ms: r.get(0),
                user: r.get(1),
                address: r.get(2),
                action: r.get(3),
                submission: r.get(4),
                queue: r.get(5),
                cluster: r.get(6),
                outcome: r.get(7),
                message: r.get(8),
            })
            .collect())
    }
}

fn read_record(store: &str, r: &Row) -> Result<SubmissionRecord> {
    let id: String = r.get(0);
    let job = decode_job(store, &id, r.get(9))?;
    let decision: Option<String> = r.get(10);
    Ok(SubmissionRecord {
        cluster: r.get(1),
        connection: r.get(2),
        user: r.get(3),
        queue: r.get(4),
        app_name: r.get(5),
        dag_name: r.get(6),
        spark_version: r.get(7),
        dedupe: r.get(8),
        job,
        decision: decision.and_then(|d| serde_json::from_str(&d).ok()),
        phase: Phase::parse(r.get(11)),
        backend_id: r.get(12),
        native_state: r.get(13),
        message: r.get(14),
        spark_app_id: r.get(15),
        attempts: r.get::<_, Option<i64>>(16).map(|n| n as u32),
        created_ms: r.get(17),
        started_ms: r.get(18),
        terminated_ms: r.get(19),
        deleted_by: r.get(20),
        owner: r.get(21),
        lease_until_ms: r.get(22),
        id,
    })
}

fn read_status(r: &Row) -> StoredStatus {
    StoredStatus {
        id: r.get(0),
        phase: Phase::parse(r.get(1)),
        user: r.get(2),
        native_state: r.get(3),
        message: r.get(4),
        spark_app_id: r.get(5),
        attempts: r.get::<_, Option<i64>>(6).map(|n| n as u32),
        created_ms: r.get(7),
        started_ms: r.get(8),
        terminated_ms: r.get(9),
        deleted_by: r.get(10),
    }
}
