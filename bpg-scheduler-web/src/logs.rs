//! A task try's log: Airflow's `.../logs/{try_number}` (JSON pages with continuation tokens, or
//! plain text), `?tail=N` to open on the last lines, and `.../logs/{try_number}/stream`, the log
//! followed live as Server-Sent Events.
//!
//! A continuation token is a byte offset in the try's log file, so reading on from one costs what
//! the new lines cost, and the tail of a 1 GB log is read from its end (see
//! [`TaskLogs::tail`](bpg_pipeline::logs::TaskLogs::tail)).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bpg_pipeline::TaskState;
use bpg_pipeline::logs::{LogKey, TaskLogs};
use futures::Stream;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::runs::{Pending, load};
use crate::tasks::task_index;
use crate::{ApiState, DagEntry};

/// At most this much of a log in one JSON page (the continuation token reads on).
pub(crate) const PAGE_BYTES: usize = 1 << 20;
/// At most this many lines for `?tail=`.
pub(crate) const MAX_TAIL: usize = 100_000;
/// How often a live follower looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

fn token(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("bpg-log:{offset}"))
}

fn offset_of(token: &str) -> ApiResult<u64> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("bpg-log:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("token: not a continuation token of this log"))
}

/// Where a try's log is, once the DAG, run, task and try are known to exist.
struct Located {
    logs: TaskLogs,
    key: LogKey,
}

async fn locate(
    state: &ApiState,
    (dag_id, run_id, task_id, try_number): &(String, String, String, String),
) -> ApiResult<Located> {
    let entry: &DagEntry = state.dag(dag_id)?;
    task_index(entry, task_id)?;
    let try_number: u32 = try_number.parse().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!("path.try_number: expected a non-negative integer, got {try_number:?}"),
        )
    })?;
    let pending = Pending::of(state, dag_id, run_id);
    let current = match load(state, dag_id, run_id).await? {
        Some(run) => run.tasks.get(task_id).map_or(0, |t| t.try_number),
        // Not stored yet: no try has started.
        None if pending.run().is_some() => 0,
        None => return Err(ApiError::no_run(dag_id, run_id)),
    };
    if try_number == 0 || try_number > current {
        return Err(ApiError::not_found(format!(
            "TaskInstance {task_id} of run {run_id} has no try {try_number} (tries so far: {current})"
        )));
    }
    let logs = state.logs.clone().ok_or_else(|| {
        ApiError::not_found(
            "task logs are not kept by this scheduler (bpg scheduler keeps them beside --state)",
        )
    })?;
    Ok(Located {
        logs,
        key: LogKey::new(dag_id, run_id, task_id, try_number),
    })
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read the log: {e}"),
    )
}

/// `GET .../taskInstances/{task_id}/logs/{try_number}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(path): Path<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = Params::parse(raw.as_deref());
    let located = locate(&state, &path).await?;
    let wants_text = q.get("format") == Some("text")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("text/plain"));
    let full = q.bool("full_content")?.unwrap_or(false);
    if wants_text && full {
        // The whole file, streamed: a huge log never sits in memory.
        let path = located.logs.path(&located.key);
        let body = match tokio::fs::File::open(&path).await {
            Ok(file) => Body::from_stream(tokio_util::io::ReaderStream::new(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Body::empty(),
            Err(e) => return Err(io_error(e)),
        };
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    let (logs, key) = (located.logs, located.key);
    let tail = q.usize("tail")?;
    let from = q.get("token").map(offset_of).transpose()?;
    let page = tokio::task::spawn_blocking(move || match (tail, from) {
        (Some(n), None) => logs.tail(&key, n.min(MAX_TAIL)),
        (_, from) => logs.read(&key, from.unwrap_or(0), PAGE_BYTES),
    })
    .await
    .map_err(|e| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
    .map_err(io_error)?;
    if wants_text {
        let mut text = page.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let content: Vec<Value> = page
        .lines
        .into_iter()
        .map(|event| json!({ "event": event, "timestamp": null }))
        .collect();
    Ok(Json(json!({
        "content": content,
        "continuation_token": token(page.end),
    }))
    .into_response())
}

/// Whether try `key.try_number` has ended: a later try started, or the task or the run is done.
async fn try_ended(state: &ApiState, key: &LogKey) -> bool {
    let stored = load(state, &key.dag_id, &key.run_id).await.ok().flatten();
    let Some(run) = stored else {
        return false;
    };
    let going = state.handle.is_active(&key.dag_id, &key.run_id);
    match run.tasks.get(&key.task_id) {
        Some(t) if t.try_number > key.try_number => true,
        Some(t) if t.state.is_finished() || t.state == TaskState::UpForRetry => true,
        _ => !going && run.run.state != bpg_pipeline::RunState::Running,
    }
}

/// `GET .../logs/{try_number}/stream?token=`: the log as Server-Sent Events, one line per
/// message event (its id a continuation token, so a reconnecting `EventSource` resumes with
/// `Last-Event-ID`), then an `end` event once the try has ended and every line was sent.
pub(crate) async fn stream(
    State(state): State<ApiState>,
    Path(path): Path<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let q = Params::parse(raw.as_deref());
    let located = locate(&state, &path).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from = match resume.as_deref().or(q.get("token")) {
        Some(t) => offset_of(t)?,
        None => 0,
    };
    struct Follow {
        state: ApiState,
        located: Located,
        pos: u64,
        pending: std::collections::VecDeque<Event>,
        done: bool,
    }
    let follow = Follow {
        state,
        located,
        pos: from,
        pending: Default::default(),
        done: false,
    };
    let events = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            if f.done || f.state.closing.is_cancelled() {
                return None;
            }
            let ended = try_ended(&f.state, &f.located.key).await;
            let (logs, key, pos) = (f.located.logs.clone(), f.located.key.clone(), f.pos);
            let page = tokio::task::spawn_blocking(move || logs.read(&key, pos, PAGE_BYTES / 4))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(page) = page.filter(|p| !p.lines.is_empty()) {
                let mut offset = page.start;
                for line in page.lines {
                    offset += line.len() as u64 + 1;
                    let clean = line.replace('\r', " ");
                    f.pending
                        .push_back(Event::default().id(token(offset)).data(clean));
                }
                f.pos = page.end;
                continue;
            }
            if ended {
                f.done = true;
                f.pending
                    .push_back(Event::default().event("end").data(token(f.pos)));
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = f.state.closing.cancelled() => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
