//! # bpg-scheduler-web
//!
//! Pipelines as a service: a [`DagScheduler`](bpg_pipeline::DagScheduler) served over HTTP with
//! **Airflow 3's stable REST API** (`/api/v2`, its JSON shapes, status codes and
//! `POST /auth/token` JWTs) and a **web UI** at `/` (DAG list, runs × tasks grid, graph, timeline,
//! task logs followed live), so scripts written with `apache-airflow-client` and people used to
//! Airflow's UI work against `bpg scheduler` unchanged.
//!
//! What is served (`/api/v2/openapi.json` describes exactly this):
//!
//! | Airflow's | bpg's |
//! |---|---|
//! | `GET /dags`, `GET/PATCH /dags/{dag_id}` (pause), `GET /dags/{dag_id}/details`, `GET /dags/{dag_id}/tasks[/{task_id}]` | the scheduler's DAGs |
//! | `POST/GET /dags/{dag_id}/dagRuns`, `GET/PATCH /dags/{dag_id}/dagRuns/{run_id}` (mark failed = cancel) | runs, with `conf` and `logical_date` |
//! | `GET .../dagRuns/{run_id}/taskInstances[/{task_id}]` | states and tries, plus `bpg_submission_id`, `bpg_cluster`, `bpg_connection` |
//! | `GET .../taskInstances/{task_id}/logs/{try_number}` | stored task logs, with continuation tokens; `?tail=N` (ours) opens on the last lines |
//! | `POST /dags/{dag_id}/clearTaskInstances` | reruns tasks (and their downstream) in the same run |
//! | `GET /monitor/health`, `GET /version`, `POST /auth/token` | |
//! | ours: `GET .../logs/{try_number}/stream` | the log followed live, as Server-Sent Events |
//!
//! [`SchedulerWeb::router`] is an axum [`Router`](axum::Router) an application can mount;
//! [`SchedulerWeb::serve`] serves it with graceful shutdown. `bpg scheduler DIR --listen ADDR`
//! runs it. Authentication: see [`auth`].
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use bpg_core::Backend;
//! use bpg_pipeline::{Dag, DagScheduler, InMemoryRunStore, ScheduledDag, Task};
//! use bpg_scheduler_web::SchedulerWeb;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dag = Dag::builder("hello").task(Task::empty("say_hi")).build().map_err(|d| d.to_string())?;
//! let dag = ScheduledDag::new(dag).map_err(|d| d.to_string())?;
//! let store = Arc::new(InMemoryRunStore::new());
//! let scheduler = DagScheduler::new(HashMap::<String, Arc<dyn Backend>>::new())
//!     .store(store.clone())
//!     .dag(dag.clone());
//! let web = SchedulerWeb::new([dag], store, scheduler.handle());
//! let stop = CancellationToken::new();
//! let service = tokio::spawn(scheduler.run(stop.clone()));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let base = format!("http://{}", listener.local_addr()?);
//! let server = tokio::spawn(web.serve(listener, stop.clone().cancelled_owned()));
//!
//! let http = reqwest::Client::new();
//! let run: serde_json::Value = http
//!     .post(format!("{base}/api/v2/dags/hello/dagRuns"))
//!     .json(&serde_json::json!({"conf": {}, "logical_date": null}))
//!     .send().await?.error_for_status()?.json().await?;
//! let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
//! loop {
//!     let run: serde_json::Value = http
//!         .get(format!("{base}/api/v2/dags/hello/dagRuns/{run_id}"))
//!         .send().await?.json().await?;
//!     if run["state"] == "success" { break; }
//!     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! }
//! stop.cancel();
//! service.await??;
//! server.await??;
//! # Ok(())
//! # }
//! ```

pub mod auth;
mod dags;
mod error;
mod logs;
mod model;
mod openapi;
mod query;
mod runs;
mod tasks;
mod ui;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bpg_pipeline::logs::TaskLogs;
use bpg_pipeline::scheduler::Graph;
use bpg_pipeline::{RunStore, ScheduledDag, SchedulerHandle};
use tokio::net::TcpListener;

pub use auth::Auth;
pub use error::ApiError;

/// One DAG as the API serves it.
#[derive(Debug)]
pub(crate) struct DagEntry {
    pub(crate) scheduled: ScheduledDag,
    pub(crate) graph: Arc<Graph>,
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dags: BTreeMap<String, DagEntry>,
    pub(crate) store: Arc<dyn RunStore>,
    pub(crate) handle: SchedulerHandle,
    pub(crate) logs: Option<TaskLogs>,
    pub(crate) auth: Auth,
    /// Finished runs' grid columns.
    pub(crate) grid_cache: ui::GridCache,
    /// Cancelled when the server shuts down: live log streams end.
    pub(crate) closing: tokio_util::sync::CancellationToken,
}

/// Handlers' state: one `Arc`.
pub(crate) type ApiState = Arc<Inner>;

impl Inner {
    pub(crate) fn dag(&self, dag_id: &str) -> Result<&DagEntry, ApiError> {
        self.dags
            .get(dag_id)
            .ok_or_else(|| ApiError::no_dag(dag_id))
    }
}

/// The API and the UI of a running [`DagScheduler`](bpg_pipeline::DagScheduler).
#[derive(Debug)]
pub struct SchedulerWeb {
    inner: Inner,
    header_read_timeout: Duration,
    tls: Option<bpg_gateway::Tls>,
}

impl SchedulerWeb {
    /// Serves `dags` (the scheduler's), their runs from `store` (the scheduler's), and acts
    /// through `handle`. Everyone is let in until [`SchedulerWeb::auth`] says otherwise.
    pub fn new(
        dags: impl IntoIterator<Item = ScheduledDag>,
        store: Arc<dyn RunStore>,
        handle: SchedulerHandle,
    ) -> Self {
        let dags = dags
            .into_iter()
            .map(|d| {
                let graph = Arc::new(d.dag().compile());
                (
                    d.dag().dag_id.clone(),
                    DagEntry {
                        scheduled: d,
                        graph,
                    },
                )
            })
            .collect();
        SchedulerWeb {
            inner: Inner {
                dags,
                store,
                handle,
                logs: None,
                auth: Auth::open(),
                grid_cache: ui::GridCache::default(),
                closing: tokio_util::sync::CancellationToken::new(),
            },
            header_read_timeout: Duration::from_secs(10),
            tls: None,
        }
    }

    /// Serves task logs from `logs` (the scheduler's [`TaskLogs`]); without, log endpoints
    /// answer 404 saying logs are not kept.
    pub fn task_logs(mut self, logs: TaskLogs) -> Self {
        self.inner.logs = Some(logs);
        self
    }

    /// Who may call (default: everyone, for loopback).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.inner.auth = auth;
        self
    }

    /// Serves HTTPS (see [`bpg_gateway::Tls`]).
    pub fn tls(mut self, tls: bpg_gateway::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The router: the UI at `/`, the API at `/api/v2`, `POST /auth/token`. Mount it in an
    /// application of your own, or [`SchedulerWeb::serve`] it.
    pub fn router(self) -> Router {
        router(Arc::new(self.inner))
    }

    /// Serves until `shutdown` resolves, then answers the requests in flight and ends live log
    /// streams.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tls = self.tls.clone();
        let timeout = self.header_read_timeout;
        let closing = self.inner.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.cancel();
        };
        bpg_gateway::serve(self.router(), listener, tls, timeout, shutdown).await
    }
}

fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/dags", get(dags::list))
        .route("/dags/{dag_id}", get(dags::get).patch(dags::patch))
        .route("/dags/{dag_id}/details", get(dags::details))
        .route("/dags/{dag_id}/tasks", get(dags::tasks))
        .route("/dags/{dag_id}/tasks/{task_id}", get(dags::task))
        .route(
            "/dags/{dag_id}/dagRuns",
            get(runs::list).post(runs::trigger),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}",
            get(runs::get).patch(runs::patch),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            get(tasks::list),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            get(tasks::get),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            get(logs::get),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}/stream",
            get(logs::stream),
        )
        .route("/dags/{dag_id}/clearTaskInstances", post(tasks::clear))
        .route("/monitor/health", get(dags::health))
        .route("/version", get(dags::version))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::not_found("Not Found") });
    Router::new()
        .nest("/api/v2", api)
        .route("/auth/token", post(auth::token))
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_caller,
        ))
        // gzip when asked (`Accept-Encoding`); its default predicate leaves out event streams,
        // so live logs are not held back in a compressor's buffer.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}
