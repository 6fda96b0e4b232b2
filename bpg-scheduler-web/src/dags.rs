//! DAG endpoints: list, get, pause, details, tasks; health and version.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::model;
use crate::{ApiState, DagEntry};

/// Airflow's page size limits.
pub(crate) const DEFAULT_LIMIT: usize = 50;
pub(crate) const MAX_LIMIT: usize = 100;

/// `limit` and `offset`, as Airflow takes them.
pub(crate) fn page(limit: Option<usize>, offset: Option<usize>) -> (usize, usize) {
    (
        limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
        offset.unwrap_or(0),
    )
}

async fn dag_json(state: &ApiState, entry: &DagEntry) -> ApiResult<Value> {
    let d = entry.scheduled.dag();
    let runs = state.store.list_runs(&d.dag_id).await?;
    Ok(model::dag(
        entry,
        state.handle.is_paused(&d.dag_id),
        &runs,
        Utc::now(),
    ))
}

#[derive(Deserialize)]
pub(crate) struct ListDags {
    limit: Option<usize>,
    offset: Option<usize>,
    paused: Option<bool>,
    dag_id_pattern: Option<String>,
    dag_id_prefix_pattern: Option<String>,
}

/// `GET /api/v2/dags`.
pub(crate) async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListDags>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let pattern = q.dag_id_pattern.map(|p| p.replace('%', "").to_lowercase());
    let matching: Vec<&DagEntry> = state
        .dags
        .values()
        .filter(|e| {
            let id = &e.scheduled.dag().dag_id;
            pattern
                .as_ref()
                .is_none_or(|p| id.to_lowercase().contains(p))
                && q.dag_id_prefix_pattern
                    .as_ref()
                    .is_none_or(|p| id.starts_with(p.trim_end_matches('%')))
                && q.paused.is_none_or(|p| state.handle.is_paused(id) == p)
        })
        .collect();
    let (limit, offset) = page(q.limit, q.offset);
    let mut dags = Vec::new();
    for entry in matching.iter().skip(offset).take(limit) {
        dags.push(dag_json(&state, entry).await?);
    }
    Ok(Json(
        json!({ "dags": dags, "total_entries": matching.len() }),
    ))
}

/// `GET /api/v2/dags/{dag_id}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    Ok(Json(dag_json(&state, entry).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchDag {
    is_paused: bool,
}

/// `PATCH /api/v2/dags/{dag_id}`: pause or unpause.
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    body: Result<Json<PatchDag>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let Json(body) = body?;
    state.handle.set_paused(&dag_id, body.is_paused).await?;
    Ok(Json(dag_json(&state, entry).await?))
}

/// `GET /api/v2/dags/{dag_id}/details`: the DAG with its params and dates.
pub(crate) async fn details(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let mut value = dag_json(&state, entry).await?;
    let d = entry.scheduled.dag();
    let params: serde_json::Map<String, Value> = d
        .params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({"__class": "airflow.sdk.definitions.param.Param", "value": v, "description": null, "schema": {}}),
            )
        })
        .collect();
    if let Value::Object(map) = &mut value {
        map.insert("params".into(), Value::Object(params));
        map.insert("catchup".into(), json!(d.catchup));
        map.insert(
            "start_date".into(),
            d.start_date.map_or(Value::Null, model::ts),
        );
        map.insert("end_date".into(), d.end_date.map_or(Value::Null, model::ts));
        map.insert("concurrency".into(), json!(d.max_active_tasks));
        map.insert("render_template_as_native_obj".into(), json!(false));
        map.insert("doc_md".into(), Value::Null);
        map.insert("owner_links".into(), json!({}));
        map.insert("dag_run_timeout".into(), Value::Null);
        map.insert("template_search_path".into(), Value::Null);
        map.insert("timezone".into(), json!("UTC"));
        map.insert("last_parsed".into(), Value::Null);
        map.insert("default_args".into(), json!({}));
        map.insert("is_paused_upon_creation".into(), Value::Null);
        map.insert("latest_dag_version".into(), Value::Null);
    }
    Ok(Json(value))
}

/// `GET /api/v2/dags/{dag_id}/tasks`: the DAG's structure.
pub(crate) async fn tasks(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let tasks: Vec<Value> = (0..entry.graph.len())
        .map(|i| model::task(entry, i))
        .collect();
    Ok(Json(
        json!({ "total_entries": tasks.len(), "tasks": tasks }),
    ))
}

/// `GET /api/v2/dags/{dag_id}/tasks/{task_id}`.
pub(crate) async fn task(
    State(state): State<ApiState>,
    Path((dag_id, task_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let i = entry
        .graph
        .index_of(&task_id)
        .ok_or_else(|| ApiError::not_found(format!("Task with id {task_id} not found")))?;
    Ok(Json(model::task(entry, i)))
}

/// `GET /api/v2/monitor/health`: the store answers, the scheduler loop runs.
pub(crate) async fn health(State(state): State<ApiState>) -> Json<Value> {
    let store_ok = match state.dags.keys().next() {
        Some(dag_id) => state.store.list_runs(dag_id).await.is_ok(),
        None => true,
    };
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    let scheduler_ok = state.handle.is_running();
    Json(json!({
        "metadatabase": {"status": status(store_ok)},
        "scheduler": {
            "status": status(scheduler_ok),
            "latest_scheduler_heartbeat": scheduler_ok.then(|| model::ts(Utc::now())),
        },
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": null,
    }))
}

/// `GET /api/v2/version`.
pub(crate) async fn version() -> Json<Value> {
    Json(json!({
        "version": concat!("bpg-", env!("CARGO_PKG_VERSION")),
        "git_version": null,
    }))
}
