//! DAG run endpoints: trigger, list (filters, order, pages), get, mark failed.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use bpg_pipeline::{ManualRun, QueuedRun, RunRecord, StoredRun};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::model::{self, RunView};
use crate::query::Params;
use crate::{ApiState, DagEntry};

/// A run as listed: stored, or only known to the scheduler (queued, or just started).
pub(crate) struct Listed {
    pub(crate) dag_id: String,
    pub(crate) run_id: String,
    pub(crate) logical_date: DateTime<Utc>,
    pub(crate) state: &'static str,
    pub(crate) stored: bool,
    pub(crate) pending: Option<QueuedRun>,
    /// Creation order, for `order_by=id`.
    pub(crate) order: usize,
}

impl Listed {
    /// Ended: neither queued nor running.
    pub(crate) fn is_finished(&self) -> bool {
        !matches!(self.state, "running" | "queued")
    }
}

/// What the scheduler holds of a run: queued, or going (a run is going before its runner has
/// stored it).
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) queued: Option<QueuedRun>,
    pub(crate) active: Option<QueuedRun>,
}

impl Pending {
    /// The run's, read before the store: a run moves from the queue to the active runs to the
    /// store, and leaves the active runs only once stored, so read in this order it is never
    /// missed.
    pub(crate) fn of(state: &ApiState, dag_id: &str, run_id: &str) -> Pending {
        let find = |runs: Vec<QueuedRun>| runs.into_iter().find(|r| r.run_id == run_id);
        Pending {
            queued: find(state.handle.queued_runs(dag_id)),
            active: find(state.handle.active_runs(dag_id)),
        }
    }

    /// How it was triggered or started, when the scheduler holds it.
    pub(crate) fn run(&self) -> Option<&QueuedRun> {
        self.queued.as_ref().or(self.active.as_ref())
    }
}

/// Every run of a DAG, oldest first, the store's and the scheduler's; and the store's records.
pub(crate) async fn listed(
    state: &ApiState,
    dag_id: &str,
) -> ApiResult<(Vec<Listed>, Vec<RunRecord>)> {
    // The scheduler's first, then the store (see `Pending::of`).
    let queued = state.handle.queued_runs(dag_id);
    let active: HashMap<String, QueuedRun> = state
        .handle
        .active_runs(dag_id)
        .into_iter()
        .map(|r| (r.run_id.clone(), r))
        .collect();
    let records = state.store.list_runs(dag_id).await?;
    let mut out = Vec::with_capacity(records.len() + queued.len());
    for record in &records {
        let run_id = &record.key.run_id;
        let is_queued = queued.iter().any(|q| q.run_id == *run_id);
        out.push(Listed {
            dag_id: record.key.dag_id.clone(),
            run_id: run_id.clone(),
            logical_date: record.logical_date,
            state: model::run_state(Some(record.state), is_queued, active.contains_key(run_id)),
            stored: true,
            pending: None,
            order: out.len(),
        });
    }
    let pending = active
        .into_values()
        .chain(queued)
        .filter(|p| !out.iter().any(|l| l.run_id == p.run_id))
        .collect::<Vec<_>>();
    for p in pending {
        out.push(Listed {
            dag_id: dag_id.to_owned(),
            run_id: p.run_id.clone(),
            logical_date: p.logical_date,
            state: model::run_state(None, true, false),
            stored: false,
            pending: Some(p),
            order: out.len(),
        });
    }
    Ok((out, records))
}

/// One run as JSON, or its 404.
pub(crate) async fn run_json(state: &ApiState, entry: &DagEntry, run_id: &str) -> ApiResult<Value> {
    let dag_id = &entry.scheduled.dag().dag_id;
    let pending = Pending::of(state, dag_id, run_id);
    let loaded = load(state, dag_id, run_id).await?;
    match (&loaded, pending.run()) {
        (Some(run), _) => Ok(model::run(
            entry,
            &RunView::Stored {
                run,
                going: pending.active.is_some(),
                queued: pending.queued.is_some(),
            },
        )),
        (None, Some(q)) => Ok(model::run(entry, &RunView::Queued(q))),
        (None, None) => Err(ApiError::no_run(dag_id, run_id)),
    }
}

pub(crate) async fn load(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
) -> ApiResult<Option<StoredRun>> {
    Ok(state
        .store
        .load_run(&bpg_pipeline::RunKey::new(dag_id, run_id))
        .await?)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns` (`~` for every DAG).
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = Params::parse(raw.as_deref());
    let dag_ids: Vec<String> = if dag_id == "~" {
        state.dags.keys().cloned().collect()
    } else {
        state.dag(&dag_id)?;
        vec![dag_id]
    };
    let states = q.all("state");
    let run_types = q.all("run_type");
    let bounds = [
        ("logical_date_gte", q.date("logical_date_gte")?),
        ("logical_date_gt", q.date("logical_date_gt")?),
        ("logical_date_lte", q.date("logical_date_lte")?),
        ("logical_date_lt", q.date("logical_date_lt")?),
    ];
    let (limit, offset) = crate::dags::page(q.usize("limit")?, q.usize("offset")?);
    let mut all = Vec::new();
    for id in &dag_ids {
        all.extend(listed(&state, id).await?.0);
    }
    all.retain(|r| {
        let run_type = if bpg_pipeline::schedule::is_scheduled_run_id(&r.run_id) {
            "scheduled"
        } else {
            "manual"
        };
        (states.is_empty() || states.iter().any(|s| s == r.state))
            && (run_types.is_empty() || run_types.iter().any(|t| t == run_type))
            && bounds.iter().all(|(name, bound)| match bound {
                None => true,
                Some(b) => match *name {
                    "logical_date_gte" => r.logical_date >= *b,
                    "logical_date_gt" => r.logical_date > *b,
                    "logical_date_lte" => r.logical_date <= *b,
                    _ => r.logical_date < *b,
                },
            })
    });
    let order_by = q.all("order_by");
    let order_by = if order_by.is_empty() {
        vec!["id".to_owned()]
    } else {
        order_by
    };
    for key in order_by.iter().rev() {
        let (descending, field) = match key.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, key.as_str()),
        };
        match field {
            "id" => all.sort_by_key(|r| (r.dag_id.clone(), r.order)),
            "logical_date" | "run_after" | "start_date" | "end_date" => {
                all.sort_by_key(|r| r.logical_date)
            }
            "dag_run_id" | "run_id" => all.sort_by(|a, b| a.run_id.cmp(&b.run_id)),
            "state" => all.sort_by_key(|r| r.state),
            "dag_id" => all.sort_by(|a, b| a.dag_id.cmp(&b.dag_id)),
            other => {
                return Err(ApiError::bad_request(format!(
                    "Ordering with '{other}' is disallowed or the attribute does not exist on the model; use one of id, logical_date, run_after, start_date, end_date, dag_run_id, state, dag_id (prefix - for descending)"
                )));
            }
        }
        if descending {
            all.reverse();
        }
    }
    let total = all.len();
    let mut dag_runs = Vec::new();
    for r in all.into_iter().skip(offset).take(limit) {
        let entry = state.dag(&r.dag_id)?;
        let value = match (&r.pending, r.stored) {
            (Some(p), false) => model::run(entry, &RunView::Queued(p)),
            _ => run_json(&state, entry, &r.run_id).await?,
        };
        dag_runs.push(value);
    }
    Ok(Json(
        json!({ "dag_runs": dag_runs, "total_entries": total }),
    ))
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{run_id}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    Ok(Json(run_json(&state, entry, &run_id).await?))
}

/// Airflow's `TriggerDAGRunPostBody`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerBody {
    dag_run_id: Option<String>,
    logical_date: Option<DateTime<Utc>>,
    #[serde(default)]
    conf: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    run_after: Option<DateTime<Utc>>,
    #[serde(default)]
    data_interval_start: Option<DateTime<Utc>>,
    #[serde(default)]
    data_interval_end: Option<DateTime<Utc>>,
    #[serde(default)]
    #[allow(dead_code)]
    partition_key: Option<String>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `conf` must be an object; a value for a declared param must have its default's JSON type.
pub(crate) fn check_conf(
    entry: &DagEntry,
    conf: Option<Value>,
) -> ApiResult<serde_json::Map<String, Value>> {
    let conf = match conf {
        None | Some(Value::Null) => return Ok(serde_json::Map::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "conf: expected a JSON object of params, got {}",
                json_type(&other)
            )));
        }
    };
    let params = &entry.scheduled.dag().params;
    for (k, v) in &conf {
        if let Some(default) = params.get(k)
            && !default.is_null()
            && !v.is_null()
            && json_type(default) != json_type(v)
        {
            return Err(ApiError::bad_request(format!(
                "conf.{k}: expected {} (the param's default is {default}), got {v}",
                json_type(default)
            )));
        }
    }
    Ok(conf)
}

/// `POST /api/v2/dags/{dag_id}/dagRuns`.
pub(crate) async fn trigger(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    body: Result<Json<TriggerBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let Json(body) = body?;
    let conf = check_conf(entry, body.conf)?;
    if let (Some(s), Some(e)) = (body.data_interval_start, body.data_interval_end)
        && s > e
    {
        return Err(ApiError::bad_request(
            "data_interval_start must not be after data_interval_end",
        ));
    }
    let mut run = ManualRun::new();
    for (k, v) in conf {
        run = run.param(k, v);
    }
    if let Some(date) = body.logical_date {
        run = run.logical_date(date);
    }
    if let Some(id) = body.dag_run_id {
        if id.is_empty() || id.len() > 250 || id.contains('/') {
            return Err(ApiError::bad_request(
                "dag_run_id: expected 1 to 250 characters, no '/'",
            ));
        }
        run = run.run_id(id);
    }
    let run_id = state.handle.trigger(&dag_id, run).await?;
    Ok(Json(run_json(&state, entry, &run_id).await?))
}

/// Airflow's `DAGRunPatchBody`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchRun {
    state: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// `PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`: `{"state": "failed"}` cancels the run.
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    body: Result<Json<PatchRun>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let entry = state.dag(&dag_id)?;
    let Json(body) = body?;
    match body.state.as_deref() {
        None => {}
        Some("failed") => state.handle.cancel_run(&dag_id, &run_id).await?,
        Some(s @ ("success" | "queued")) => {
            return Err(ApiError::bad_request(format!(
                "state: bpg marks runs failed (which cancels them) only; {s:?} is not supported"
            )));
        }
        Some(other) => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                format!("state: expected 'queued', 'success' or 'failed', got {other:?}"),
            ));
        }
    }
    // Give a cancelled run a moment to be recorded failed, so the answer says so.
    for _ in 0..50 {
        if !state.handle.is_active(&dag_id, &run_id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(Json(run_json(&state, entry, &run_id).await?))
}
