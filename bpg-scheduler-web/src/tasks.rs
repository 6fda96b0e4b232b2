//! Task instance endpoints: a run's task instances, one of them, and `clearTaskInstances`.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use bpg_pipeline::{StoredRun, TaskState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::model;
use crate::runs::{Pending, load};
use crate::{ApiState, DagEntry};

/// The stored run, or a run not stored yet (queued: no task has state), or a 404.
async fn stored_or_empty(state: &ApiState, entry: &DagEntry, run_id: &str) -> ApiResult<StoredRun> {
    let dag_id = &entry.scheduled.dag().dag_id;
    let pending = Pending::of(state, dag_id, run_id);
    if let Some(run) = load(state, dag_id, run_id).await? {
        return Ok(run);
    }
    let pending = pending
        .run()
        .cloned()
        .ok_or_else(|| ApiError::no_run(dag_id, run_id))?;
    Ok(StoredRun {
        run: bpg_pipeline::RunRecord {
            key: bpg_pipeline::RunKey::new(dag_id, run_id),
            logical_date: pending.logical_date,
            params: pending.params,
            state: bpg_pipeline::RunState::Running,
        },
        tasks: Default::default(),
        xcom: Default::default(),
    })
}

/// `GET .../dagRuns/{run_id}/taskInstances`: every task of the DAG, in declaration order.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let stored = stored_or_empty(&state, entry, &run_id).await?;
    let task_instances: Vec<Value> = (0..entry.graph.len())
        .map(|i| model::task_instance(entry, &stored, i))
        .collect();
    Ok(Json(json!({
        "task_instances": task_instances,
        "total_entries": entry.graph.len(),
    })))
}

/// `GET .../dagRuns/{run_id}/taskInstances/{task_id}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let i = task_index(entry, &task_id)?;
    let stored = stored_or_empty(&state, entry, &run_id).await?;
    Ok(Json(model::task_instance(entry, &stored, i)))
}

pub(crate) fn task_index(entry: &DagEntry, task_id: &str) -> ApiResult<usize> {
    entry.graph.index_of(task_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "Task with id `{task_id}` was not found in the Dag `{}`",
            entry.scheduled.dag().dag_id
        ))
    })
}

/// A task id, or Airflow's `[task_id, map_index]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum TaskRef {
    Id(String),
    Mapped(String, i64),
}

/// Airflow's `ClearTaskInstancesBody` (its defaults: a dry run, failed tasks only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearBody {
    dag_run_id: Option<String>,
    task_ids: Option<Vec<TaskRef>>,
    #[serde(default = "yes")]
    dry_run: bool,
    #[serde(default = "yes")]
    only_failed: bool,
    #[serde(default)]
    only_running: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
    #[serde(default = "yes")]
    #[allow(dead_code)]
    reset_dag_runs: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    #[serde(default)]
    start_date: Option<Value>,
    #[serde(default)]
    end_date: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    prevent_running_task: bool,
    #[serde(default)]
    #[allow(dead_code)]
    run_on_latest_version: Option<bool>,
}

fn yes() -> bool {
    true
}

/// `POST /api/v2/dags/{dag_id}/clearTaskInstances`: the tasks (with their downstream or
/// upstream when asked) of one run go back to `none` and the run runs them again. Answers the
/// task instances cleared (or, for a dry run, that would be).
pub(crate) async fn clear(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    body: Result<Json<ClearBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let Json(body) = body?;
    let Some(run_id) = body.dag_run_id else {
        return Err(ApiError::bad_request(
            "dag_run_id: required; bpg clears the tasks of one run (start_date/end_date ranges are not supported)",
        ));
    };
    if body.include_future
        || body.include_past
        || body.start_date.is_some()
        || body.end_date.is_some()
    {
        return Err(ApiError::bad_request(
            "include_future, include_past, start_date and end_date are not supported: clear one run at a time",
        ));
    }
    let graph = &entry.graph;
    let mut chosen: BTreeSet<usize> = match &body.task_ids {
        None => (0..graph.len()).collect(),
        Some(ids) => ids
            .iter()
            .map(|t| match t {
                TaskRef::Id(id) | TaskRef::Mapped(id, -1) => task_index(entry, id),
                TaskRef::Mapped(id, i) => Err(ApiError::bad_request(format!(
                    "task_ids: [{id:?}, {i}]: bpg has no mapped tasks; use map_index -1 or the task id alone"
                ))),
            })
            .collect::<ApiResult<_>>()?,
    };
    if body.include_downstream {
        let mut stack: Vec<usize> = chosen.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for d in graph.downstream(i) {
                if chosen.insert(d) {
                    stack.push(d);
                }
            }
        }
    }
    if body.include_upstream {
        let dag = entry.scheduled.dag();
        let mut stack: Vec<usize> = chosen.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for up in &dag.tasks[i].depends_on {
                if let Some(u) = graph.index_of(up)
                    && chosen.insert(u)
                {
                    stack.push(u);
                }
            }
        }
    }
    let stored = load(&state, &dag_id, &run_id)
        .await?
        .ok_or_else(|| ApiError::no_run(&dag_id, &run_id))?;
    let state_of = |i: usize| {
        stored
            .tasks
            .get(graph.id(i).as_ref())
            .map_or(TaskState::None, |t| t.state)
    };
    chosen.retain(|&i| {
        let s = state_of(i);
        (!body.only_failed || matches!(s, TaskState::Failed | TaskState::UpstreamFailed))
            && (!body.only_running || s == TaskState::Running)
    });
    let cleared: Vec<Value> = chosen
        .iter()
        .map(|&i| model::task_instance(entry, &stored, i))
        .collect();
    if !body.dry_run && !chosen.is_empty() {
        let ids = chosen.iter().map(|&i| graph.id(i).to_string()).collect();
        state.handle.clear(&dag_id, &run_id, ids).await?;
    }
    Ok(Json(json!({
        "task_instances": cleared,
        "total_entries": cleared.len(),
    })))
}
