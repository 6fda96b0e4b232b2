//! Airflow 3's JSON shapes (DAGResponse, DAGRunResponse, TaskInstanceResponse, ...) built from
//! bpg's DAGs and stored runs. Every field the `apache-airflow-client` models require is present.

use bpg_pipeline::schedule::is_scheduled_run_id;
use bpg_pipeline::{QueuedRun, RunRecord, RunState, StoredRun, TaskKind, TaskRecord, TaskState};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::DagEntry;

/// Airflow's timestamps: RFC 3339 with microseconds and `Z`.
pub(crate) fn ts(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, ts)
}

/// A DAG, as `GET /dags/{dag_id}` answers it.
pub(crate) fn dag(entry: &DagEntry, paused: bool, runs: &[RunRecord], now: DateTime<Utc>) -> Value {
    let d = entry.scheduled.dag();
    let next = entry.scheduled.next_run(runs, now);
    let fileloc = d
        .source
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let relative = d
        .source
        .file
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let schedule = entry.scheduled.parsed_schedule().map(ToString::to_string);
    json!({
        "dag_id": d.dag_id,
        "dag_display_name": d.dag_id,
        "description": d.description,
        "is_paused": paused,
        "is_stale": false,
        "has_import_errors": false,
        "has_task_concurrency_limits": false,
        "is_backfillable": false,
        "fileloc": fileloc,
        "relative_fileloc": relative,
        "file_token": hex(&Sha256::digest(fileloc.as_bytes())[..16]),
        "bundle_name": "dags-folder",
        "bundle_version": null,
        "owners": ["bpg"],
        "tags": [],
        "max_active_runs": entry.scheduled.active_runs_limit(),
        "max_active_tasks": d.max_active_tasks,
        "max_consecutive_failed_dag_runs": 0,
        "last_parsed_time": null,
        "last_parse_duration": null,
        "last_expired": null,
        "next_dagrun_logical_date": opt_ts(next.map(|n| n.logical_date)),
        "next_dagrun_data_interval_start": opt_ts(next.map(|n| n.data_interval.start)),
        "next_dagrun_data_interval_end": opt_ts(next.map(|n| n.data_interval.end)),
        "next_dagrun_run_after": opt_ts(next.map(|n| n.run_after)),
        "timetable_summary": schedule,
        "timetable_description": schedule.as_ref().map(|s| format!("bpg schedule {s}")),
        "timetable_periodic": schedule.is_some(),
        "timetable_partitioned": false,
        "allowed_run_types": null,
    })
}

/// A task of a DAG, as `GET /dags/{dag_id}/tasks` answers it.
pub(crate) fn task(entry: &DagEntry, i: usize) -> Value {
    let t = &entry.scheduled.dag().tasks[i];
    let settings = entry.graph.settings(i);
    let downstream: Vec<&str> = entry
        .graph
        .downstream(i)
        .map(|d| entry.graph.id(d).as_ref())
        .collect();
    json!({
        "task_id": t.id,
        "task_display_name": t.id,
        "operator_name": operator(&t.kind),
        "class_ref": {"class_name": operator(&t.kind), "module_path": "bpg"},
        "downstream_task_ids": downstream,
        "depends_on_past": settings.depends_on_past,
        "wait_for_downstream": false,
        "retries": settings.retry.retries,
        "retry_delay": {"__type": "TimeDelta", "days": 0, "seconds": settings.retry.retry_delay.as_secs(), "microseconds": settings.retry.retry_delay.subsec_micros()},
        "retry_exponential_backoff": if settings.retry.exponential_backoff { 2 } else { 0 },
        "trigger_rule": settings.trigger_rule.as_str(),
        "pool": settings.pool.clone().unwrap_or_else(|| bpg_pipeline::DEFAULT_POOL.to_owned()),
        "pool_slots": settings.pool_slots,
        "extra_links": [],
        "template_fields": [],
        "is_mapped": false,
        "params": {},
        "doc_md": null,
    })
}

/// The operator a task kind stands for, in Airflow's terms.
pub(crate) fn operator(kind: &TaskKind) -> &'static str {
    match kind {
        TaskKind::Empty => "EmptyOperator",
        TaskKind::Spark(_) => "BPGOperator",
        TaskKind::Command(_) => "BashOperator",
        TaskKind::Function(_) => "PythonOperator",
        _ => "BaseOperator",
    }
}

/// A run's state as the API shows it, from the store's (`None`: not stored yet) and the
/// scheduler's: queued wins (a cleared run waits again), then going (the store may still say
/// how the run ended before it was cleared).
pub(crate) fn run_state(stored: Option<RunState>, queued: bool, going: bool) -> &'static str {
    match stored {
        _ if queued => "queued",
        _ if going => "running",
        Some(state) => state.as_str(),
        None => "queued",
    }
}

/// A run: stored, or queued in the scheduler.
pub(crate) enum RunView<'a> {
    /// In the store; `going` when the scheduler is running it now (a cleared run restarting may
    /// still be stored as finished for a moment).
    Stored {
        run: &'a StoredRun,
        going: bool,
        queued: bool,
    },
    /// Queued, or started and not yet stored.
    Queued(&'a QueuedRun),
}

impl RunView<'_> {
    pub(crate) fn run_id(&self) -> &str {
        match self {
            RunView::Stored { run: s, .. } => &s.run.key.run_id,
            RunView::Queued(q) => &q.run_id,
        }
    }

    pub(crate) fn state(&self) -> &'static str {
        match self {
            RunView::Stored { run, going, queued } => {
                run_state(Some(run.run.state), *queued, *going)
            }
            RunView::Queued(_) => "queued",
        }
    }

    pub(crate) fn logical_date(&self) -> DateTime<Utc> {
        match self {
            RunView::Stored { run: s, .. } => s.run.logical_date,
            RunView::Queued(q) => q.logical_date,
        }
    }

    /// When its first task started.
    pub(crate) fn start_date(&self) -> Option<DateTime<Utc>> {
        match self {
            RunView::Stored { run: s, .. } => s.tasks.values().filter_map(|t| t.start_date).min(),
            RunView::Queued(_) => None,
        }
    }

    /// When its last task ended, once the run has.
    pub(crate) fn end_date(&self) -> Option<DateTime<Utc>> {
        match self {
            RunView::Stored {
                run: s,
                going: false,
                queued: false,
            } if s.run.state != RunState::Running => s
                .tasks
                .values()
                .filter_map(|t| t.end_date)
                .max()
                .or_else(|| self.start_date()),
            _ => None,
        }
    }
}

/// A run, as `GET /dags/{dag_id}/dagRuns/{run_id}` answers it.
pub(crate) fn run(entry: &DagEntry, view: &RunView<'_>) -> Value {
    let d = entry.scheduled.dag();
    let run_id = view.run_id();
    let scheduled = is_scheduled_run_id(run_id);
    let logical_date = view.logical_date();
    let interval = scheduled
        .then(|| entry.scheduled.data_interval(logical_date))
        .flatten();
    let (start, end) = (view.start_date(), view.end_date());
    let (conf, queued_at) = match view {
        RunView::Stored { run: s, .. } => (Value::Object(s.run.params.clone()), None),
        RunView::Queued(q) => (Value::Object(q.params.clone()), Some(q.queued_at)),
    };
    json!({
        "dag_id": d.dag_id,
        "dag_display_name": d.dag_id,
        "dag_run_id": run_id,
        "logical_date": ts(logical_date),
        "run_after": ts(interval.map_or(logical_date, |i| i.end)),
        "data_interval_start": opt_ts(interval.map(|i| i.start)),
        "data_interval_end": opt_ts(interval.map(|i| i.end)),
        "queued_at": opt_ts(queued_at.or(start)),
        "start_date": opt_ts(start),
        "end_date": opt_ts(end),
        "duration": duration(start, end),
        "state": view.state(),
        "run_type": if scheduled { "scheduled" } else { "manual" },
        "triggered_by": if scheduled { "timetable" } else { "rest_api" },
        "triggering_user_name": null,
        "conf": conf,
        "note": null,
        "dag_versions": [],
        "bundle_version": null,
        "last_scheduling_decision": null,
    })
}

fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Value {
    match (start, end) {
        (Some(s), Some(e)) => json!((e - s).num_microseconds().unwrap_or(0) as f64 / 1e6),
        _ => Value::Null,
    }
}

/// Airflow's name for a task state (`None` is JSON null, as Airflow's "no status").
pub(crate) fn task_state(state: TaskState) -> Value {
    match state {
        TaskState::None => Value::Null,
        s => Value::String(s.as_str().to_owned()),
    }
}

/// A task instance, as `GET .../taskInstances/{task_id}` answers it.
pub(crate) fn task_instance(entry: &DagEntry, stored: &StoredRun, i: usize) -> Value {
    let d = entry.scheduled.dag();
    let t = &d.tasks[i];
    let empty = TaskRecord::default();
    let record = stored.tasks.get(&t.id).unwrap_or(&empty);
    let settings = entry.graph.settings(i);
    let submission = record
        .submissions
        .iter()
        .rev()
        .find(|s| s.try_number == record.try_number)
        .or(record.submissions.last());
    let key = &stored.run.key;
    json!({
        "id": instance_id(&key.dag_id, &key.run_id, &t.id),
        "task_id": t.id,
        "task_display_name": t.id,
        "dag_id": d.dag_id,
        "dag_display_name": d.dag_id,
        "dag_run_id": key.run_id,
        "map_index": -1,
        "rendered_map_index": null,
        "logical_date": ts(stored.run.logical_date),
        "run_after": ts(stored.run.logical_date),
        "start_date": opt_ts(record.start_date),
        "end_date": opt_ts(record.end_date),
        "duration": duration(record.start_date, record.end_date),
        "state": task_state(record.state),
        "try_number": record.try_number,
        "max_tries": settings.retry.retries,
        "operator": operator(&t.kind),
        "operator_name": operator(&t.kind),
        "pool": settings.pool.clone().unwrap_or_else(|| bpg_pipeline::DEFAULT_POOL.to_owned()),
        "pool_slots": settings.pool_slots,
        "priority_weight": 1,
        "queue": submission.and_then(|s| s.submission.namespace.clone()),
        "executor": "bpg",
        "executor_config": "{}",
        "hostname": submission.and_then(|s| s.submission.cluster.clone()),
        "unixname": null,
        "pid": null,
        "note": null,
        "queued_when": null,
        "scheduled_when": null,
        "rendered_fields": {},
        "trigger": null,
        "triggerer_job": null,
        "dag_version": null,
        "bpg_submission_id": submission.map(|s| s.submission.id.to_string()),
        "bpg_cluster": submission.and_then(|s| s.submission.cluster.clone()),
        "bpg_connection": submission.map(|s| s.connection.clone()),
    })
}

/// A stable UUID for a task instance (Airflow's `id` is one): from a hash of its names.
fn instance_id(dag_id: &str, run_id: &str, task_id: &str) -> String {
    let digest = Sha256::digest(format!("{dag_id}\0{run_id}\0{task_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
