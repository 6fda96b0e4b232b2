//! The web UI: three files compiled into the binary (no CDN, no build step), and two compact
//! JSON views the Airflow API has no cheap equivalent for: the DAG list with last and next runs,
//! and the runs × tasks grid, one character per cell so a 10,000-task DAG stays small.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bpg_pipeline::scheduler::Graph;
use bpg_pipeline::{RunKey, RunTaskStates, TaskState};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::model;
use crate::query::Params;
use crate::runs::listed;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// At most this many runs in the grid.
pub(crate) const MAX_GRID_RUNS: usize = 100;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/ui/api/dags", get(dags))
        .route("/ui/api/grid/{dag_id}", get(grid))
}

/// Files change only with the binary; a reload still asks (`no-cache`), cheaply.
const CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            CACHE,
            // Nothing but this server's own files and calls.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        ],
        INDEX,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            CACHE,
        ],
        APP_JS,
    )
}

async fn app_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), CACHE],
        APP_CSS,
    )
}

/// The grid's letter for a state (see the UI's legend).
pub(crate) fn state_code(state: TaskState) -> char {
    match state {
        TaskState::None => 'n',
        TaskState::Scheduled => 'S',
        TaskState::Queued => 'q',
        TaskState::Running => 'r',
        TaskState::UpForRetry => 'u',
        TaskState::Success => 's',
        TaskState::Failed => 'f',
        TaskState::UpstreamFailed => 'U',
        TaskState::Skipped => 'k',
    }
}

/// A run's column of the grid: its tasks' state letters, when its first task started and its
/// last ended.
#[derive(Debug)]
pub(crate) struct GridColumn {
    states: String,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

/// Finished runs' columns, good while the scheduler has not started the run again (a clear):
/// the grid is polled every second or so while runs go, and reading 10,000 task instances of
/// each of 25 runs from SQLite each time would cost about a tenth of a second.
#[derive(Debug, Default)]
pub(crate) struct GridCache(Mutex<HashMap<RunKey, (u32, Arc<GridColumn>)>>);

/// At most this many columns are kept (then the cache starts afresh).
const GRID_CACHE_MAX: usize = 4096;

fn cached(state: &ApiState, dag_id: &str, run_id: &str) -> Option<Arc<GridColumn>> {
    let starts = state.handle.starts(dag_id, run_id);
    let cache = state.grid_cache.0.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .get(&RunKey::new(dag_id, run_id))
        .filter(|(s, _)| *s == starts)
        .map(|(_, c)| c.clone())
}

fn remember(state: &ApiState, dag_id: &str, run_id: &str, starts: u32, column: Arc<GridColumn>) {
    let mut cache = state.grid_cache.0.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= GRID_CACHE_MAX {
        cache.clear();
    }
    cache.insert(RunKey::new(dag_id, run_id), (starts, column));
}

fn column_of(graph: &Graph, stored: Option<&RunTaskStates>) -> GridColumn {
    let mut states = vec![b'n'; graph.len()];
    if let Some(run) = stored {
        for t in &run.tasks {
            if let Some(i) = graph.index_of(&t.task_id) {
                states[i] = state_code(t.state) as u8;
            }
        }
    }
    GridColumn {
        states: String::from_utf8(states).unwrap_or_default(),
        start: stored.and_then(|r| r.first_start),
        end: stored.and_then(|r| r.last_end),
    }
}

/// Runs whose columns are read from the store at once.
const CONCURRENT_LOADS: usize = 4;

/// `GET /ui/api/dags`: every DAG with its schedule, pause, last run, next run and params.
async fn dags(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let now = Utc::now();
    let mut dags = Vec::new();
    for entry in state.dags.values() {
        let d = entry.scheduled.dag();
        let (all, runs) = listed(&state, &d.dag_id).await?;
        let last = all.iter().max_by_key(|r| (r.logical_date, r.order));
        let next = entry.scheduled.next_run(&runs, now);
        dags.push(json!({
            "dag_id": d.dag_id,
            "description": d.description,
            "schedule": entry.scheduled.parsed_schedule().map(ToString::to_string),
            "is_paused": state.handle.is_paused(&d.dag_id),
            "next_run": next.map(|n| model::ts(n.run_after)),
            "last_run": last.map(|r| json!({
                "dag_run_id": r.run_id,
                "state": r.state,
                "logical_date": model::ts(r.logical_date),
            })),
            "params": d.params,
            "task_count": d.tasks.len(),
        }));
    }
    Ok(Json(json!({ "dags": dags })))
}

/// `GET /ui/api/grid/{dag_id}?runs=25`: the latest runs (newest first), each with one state
/// letter per task in the DAG's order.
async fn grid(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = Params::parse(raw.as_deref());
    let wanted = q.usize("runs")?.unwrap_or(25).clamp(1, MAX_GRID_RUNS);
    let entry = state.dag(&dag_id)?;
    let graph = &entry.graph;
    let dag = entry.scheduled.dag();
    let tasks: Vec<Value> = dag
        .tasks
        .iter()
        .map(|t| {
            let upstream: Vec<usize> = t
                .depends_on
                .iter()
                .filter_map(|u| graph.index_of(u))
                .collect();
            json!({"task_id": t.id, "kind": t.kind.name(), "upstream": upstream})
        })
        .collect();
    let (mut all, _) = listed(&state, &dag_id).await?;
    all.sort_by_key(|r| std::cmp::Reverse((r.logical_date, r.order)));
    all.truncate(wanted);
    // Finished runs' columns come from the cache; the others are read from the store, several
    // at once (SQLite reads run side by side).
    let loads = all.iter().map(|r| {
        let (state, graph, dag_id) = (state.clone(), entry.graph.clone(), dag_id.clone());
        let (run_id, stored, finished) = (r.run_id.clone(), r.stored, r.is_finished());
        async move {
            if let Some(column) = finished.then(|| cached(&state, &dag_id, &run_id)).flatten() {
                return Ok::<_, ApiError>(column);
            }
            let starts = state.handle.starts(&dag_id, &run_id);
            let key = RunKey::new(dag_id, run_id);
            let stored = if stored {
                state.store.load_task_states(&key).await?
            } else {
                None
            };
            let column = Arc::new(column_of(&graph, stored.as_ref()));
            if finished {
                remember(&state, &key.dag_id, &key.run_id, starts, column.clone());
            }
            Ok(column)
        }
    });
    let loads: Vec<_> = loads.collect();
    let columns: Vec<Arc<GridColumn>> = futures::stream::iter(loads)
        .buffered(CONCURRENT_LOADS)
        .try_collect()
        .await?;
    let mut runs = Vec::with_capacity(all.len());
    for (r, column) in all.iter().zip(columns) {
        runs.push(json!({
            "dag_run_id": r.run_id,
            "state": r.state,
            "run_type": if bpg_pipeline::schedule::is_scheduled_run_id(&r.run_id) { "scheduled" } else { "manual" },
            "logical_date": model::ts(r.logical_date),
            "start_date": column.start.map(model::ts),
            "end_date": if r.is_finished() { column.end.map(model::ts) } else { None },
            "states": column.states,
        }));
    }
    Ok(Json(
        json!({ "dag_id": dag_id, "tasks": tasks, "runs": runs }),
    ))
}
