//! `/api/v2/openapi.json`: what this server really serves (a subset of Airflow's stable API,
//! plus bpg's log stream), with Airflow's operation ids so generated clients line up.

use axum::Json;
use serde_json::{Value, json};

fn param(name: &str, location: &str, schema: Value, required: bool) -> Value {
    json!({"name": name, "in": location, "required": required, "schema": schema})
}

fn path_params(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| {
            let schema = if *n == "try_number" {
                json!({"type": "integer", "minimum": 0})
            } else {
                json!({"type": "string"})
            };
            param(n, "path", schema, true)
        })
        .collect()
}

fn op(id: &str, summary: &str, params: Vec<Value>, body: Option<&str>, ok: (&str, &str)) -> Value {
    let mut responses = json!({
        ok.0: {"description": "Successful Response", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", ok.1)}}}},
        "401": {"description": "Unauthorized", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
        "404": {"description": "Not Found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
        "422": {"description": "Validation Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
        "400": {"description": "Bad Request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
        "429": {"description": "Too many failed sign-ins (Basic auth)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
    });
    if body.is_some() {
        responses["409"] = json!({"description": "Conflict", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}});
        responses["415"] = json!({"description": "The body is not application/json", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}});
    }
    let mut operation = json!({
        "operationId": id,
        "summary": summary,
        "parameters": params,
        "responses": responses,
        "security": [{"OAuth2PasswordBearer": []}, {"HTTPBearer": []}],
    });
    if let Some(schema) = body {
        operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    operation
}

fn object(required: &[&str]) -> Value {
    json!({"type": "object", "required": required, "additionalProperties": true})
}

/// The document.
pub(crate) fn openapi() -> Value {
    let q = |n: &str, t: &str| param(n, "query", json!({"type": t}), false);
    let page = || vec![q("limit", "integer"), q("offset", "integer")];
    let dag = path_params(&["dag_id"]);
    let run = path_params(&["dag_id", "dag_run_id"]);
    let ti = path_params(&["dag_id", "dag_run_id", "task_id"]);
    let log = path_params(&["dag_id", "dag_run_id", "task_id", "try_number"]);
    let mut list_runs = [dag.clone(), page()].concat();
    list_runs.extend([
        q("state", "string"),
        q("run_type", "string"),
        q("order_by", "string"),
        param(
            "logical_date_gte",
            "query",
            json!({"type": "string", "format": "date-time"}),
            false,
        ),
        param(
            "logical_date_lte",
            "query",
            json!({"type": "string", "format": "date-time"}),
            false,
        ),
    ]);
    let mut log_params = log.clone();
    log_params.extend([
        q("token", "string"),
        q("full_content", "boolean"),
        q("tail", "integer"),
        q("format", "string"),
    ]);
    let stream_params = [log.clone(), vec![q("token", "string")]].concat();
    let mut list_dags = page();
    list_dags.extend([q("paused", "boolean"), q("dag_id_pattern", "string")]);
    let mut stream_op = op(
        "stream_log",
        "A try's log followed live: text/event-stream, one line per message (id: a continuation token), then an `end` event",
        stream_params,
        None,
        ("200", "TaskInstancesLogResponse"),
    );
    stream_op["x-bpg"] = json!(true);
    stream_op["responses"]["200"] = json!({"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": {"type": "string"}}}});
    let mut log_op = op(
        "get_log",
        "A try's log: a page from a continuation token, the tail (?tail=N), or the whole text (Accept: text/plain, full_content=true)",
        log_params,
        None,
        ("200", "TaskInstancesLogResponse"),
    );
    log_op["responses"]["200"]["content"]["text/plain"] = json!({"schema": {"type": "string"}});
    let paths = json!({
        "/auth/token": {"post": {
            "operationId": "create_token",
            "summary": "Sign in: a JWT for Authorization: Bearer (and the _token cookie)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginBody"}}}},
            "responses": {
                "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginResponse"}}}},
                "401": {"description": "Invalid credentials", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
                "422": {"description": "Validation Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
                "429": {"description": "Too many failed sign-ins", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPExceptionResponse"}}}},
            },
        }},
        "/api/v2/dags": {"get": op("get_dags", "List DAGs", list_dags, None, ("200", "DAGCollectionResponse"))},
        "/api/v2/dags/{dag_id}": {
            "get": op("get_dag", "Get a DAG", dag.clone(), None, ("200", "DAGResponse")),
            "patch": op("patch_dag", "Pause or unpause a DAG", dag.clone(), Some("DAGPatchBody"), ("200", "DAGResponse")),
        },
        "/api/v2/dags/{dag_id}/details": {"get": op("get_dag_details", "A DAG with its params", dag.clone(), None, ("200", "DAGDetailsResponse"))},
        "/api/v2/dags/{dag_id}/tasks": {"get": op("get_tasks", "The DAG's tasks and their downstream ids", dag.clone(), None, ("200", "TaskCollectionResponse"))},
        "/api/v2/dags/{dag_id}/tasks/{task_id}": {"get": op("get_task", "A task", path_params(&["dag_id", "task_id"]), None, ("200", "TaskResponse"))},
        "/api/v2/dags/{dag_id}/dagRuns": {
            "get": op("get_dag_runs", "List runs (dag_id ~ for every DAG)", list_runs, None, ("200", "DAGRunCollectionResponse")),
            "post": op("trigger_dag_run", "Trigger a run with conf and logical_date", dag.clone(), Some("TriggerDAGRunPostBody"), ("200", "DAGRunResponse")),
        },
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}": {
            "get": op("get_dag_run", "Get a run", run.clone(), None, ("200", "DAGRunResponse")),
            "patch": op("patch_dag_run", "Mark a run failed (cancels it and its Spark jobs)", run.clone(), Some("DAGRunPatchBody"), ("200", "DAGRunResponse")),
        },
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances": {"get": op("get_task_instances", "A run's task instances", run.clone(), None, ("200", "TaskInstanceCollectionResponse"))},
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}": {"get": op("get_task_instance", "A task instance", ti, None, ("200", "TaskInstanceResponse"))},
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}": {"get": log_op},
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}/stream": {"get": stream_op},
        "/api/v2/dags/{dag_id}/clearTaskInstances": {"post": op("post_clear_task_instances", "Rerun tasks (and their downstream) of one run", dag, Some("ClearTaskInstancesBody"), ("200", "TaskInstanceCollectionResponse"))},
        "/api/v2/monitor/health": {"get": {"operationId": "get_health", "summary": "Health", "responses": {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HealthInfoResponse"}}}}}}},
        "/api/v2/version": {"get": op("get_version", "Version", vec![], None, ("200", "VersionInfo"))},
    });
    let schemas = json!({
        "HTTPExceptionResponse": {"type": "object", "required": ["detail"], "properties": {"detail": {}}},
        "LoginBody": {"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
        "LoginResponse": {"type": "object", "required": ["access_token"], "properties": {"access_token": {"type": "string"}}},
        "DAGResponse": object(&["dag_id", "dag_display_name", "is_paused", "is_stale", "fileloc", "file_token", "owners", "tags", "max_active_tasks", "timetable_periodic"]),
        "DAGDetailsResponse": object(&["dag_id", "params"]),
        "DAGCollectionResponse": {"type": "object", "required": ["dags", "total_entries"], "properties": {"dags": {"type": "array", "items": {"$ref": "#/components/schemas/DAGResponse"}}, "total_entries": {"type": "integer"}}},
        "DAGPatchBody": {"type": "object", "required": ["is_paused"], "additionalProperties": false, "properties": {"is_paused": {"type": "boolean"}}},
        "TaskResponse": object(&["task_id", "downstream_task_ids", "depends_on_past", "extra_links", "retry_exponential_backoff", "wait_for_downstream"]),
        "TaskCollectionResponse": {"type": "object", "required": ["tasks", "total_entries"], "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskResponse"}}, "total_entries": {"type": "integer"}}},
        "DAGRunResponse": object(&["dag_id", "dag_run_id", "dag_display_name", "state", "run_type", "run_after", "dag_versions"]),
        "DAGRunCollectionResponse": {"type": "object", "required": ["dag_runs", "total_entries"], "properties": {"dag_runs": {"type": "array", "items": {"$ref": "#/components/schemas/DAGRunResponse"}}, "total_entries": {"type": "integer"}}},
        "TriggerDAGRunPostBody": {"type": "object", "additionalProperties": false, "properties": {
            "dag_run_id": {"type": ["string", "null"]}, "logical_date": {"type": ["string", "null"], "format": "date-time"},
            "conf": {"type": ["object", "null"]}, "note": {"type": ["string", "null"]}, "run_after": {"type": ["string", "null"], "format": "date-time"},
            "data_interval_start": {"type": ["string", "null"], "format": "date-time"}, "data_interval_end": {"type": ["string", "null"], "format": "date-time"},
            "partition_key": {"type": ["string", "null"]}}},
        "DAGRunPatchBody": {"type": "object", "additionalProperties": false, "properties": {"state": {"enum": ["queued", "success", "failed"]}, "note": {"type": ["string", "null"]}}},
        "TaskInstanceResponse": {"type": "object", "additionalProperties": true,
            "required": ["id", "task_id", "dag_id", "dag_run_id", "map_index", "try_number", "max_tries", "pool", "pool_slots", "executor_config", "run_after", "dag_display_name", "task_display_name"],
            "properties": {"bpg_submission_id": {"type": ["string", "null"], "x-bpg": true}, "bpg_cluster": {"type": ["string", "null"], "x-bpg": true}, "bpg_connection": {"type": ["string", "null"], "x-bpg": true}}},
        "TaskInstanceCollectionResponse": {"type": "object", "required": ["task_instances", "total_entries"], "properties": {"task_instances": {"type": "array", "items": {"$ref": "#/components/schemas/TaskInstanceResponse"}}, "total_entries": {"type": "integer"}}},
        "ClearTaskInstancesBody": {"type": "object", "additionalProperties": false, "required": ["dag_run_id"], "properties": {
            "dag_run_id": {"type": "string"}, "task_ids": {"type": "array"}, "dry_run": {"type": "boolean", "default": true},
            "only_failed": {"type": "boolean", "default": true}, "only_running": {"type": "boolean", "default": false},
            "include_downstream": {"type": "boolean", "default": false}, "include_upstream": {"type": "boolean", "default": false},
            "include_future": {"type": "boolean"}, "include_past": {"type": "boolean"}, "reset_dag_runs": {"type": "boolean"},
            "note": {"type": ["string", "null"]}, "start_date": {}, "end_date": {}, "prevent_running_task": {"type": "boolean"}, "run_on_latest_version": {}}},
        "TaskInstancesLogResponse": {"type": "object", "required": ["content"], "properties": {
            "content": {"type": "array", "items": {"type": "object", "required": ["event"], "properties": {"event": {"type": "string"}, "timestamp": {}}}},
            "continuation_token": {"type": ["string", "null"]}}},
        "HealthInfoResponse": object(&["metadatabase", "scheduler", "triggerer"]),
        "VersionInfo": object(&["version"]),
    });
    let security_schemes = json!({
        "OAuth2PasswordBearer": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/auth/token", "scopes": {}}}},
        "HTTPBearer": {"type": "http", "scheme": "bearer"},
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Airflow API (served by bpg scheduler)",
            "version": "2",
            "description": "The part of Airflow 3's stable REST API that bpg's scheduler serves, with Airflow's shapes, plus bpg's extensions (x-bpg): task instances' bpg_submission_id, bpg_cluster and bpg_connection; logs' ?tail=N; the log stream (Server-Sent Events).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"securitySchemes": security_schemes, "schemas": schemas},
    })
}

/// `GET /api/v2/openapi.json`.
pub(crate) async fn document() -> Json<Value> {
    Json(openapi())
}
