//! Resuming a run from its store: what an earlier process recorded, read back per task.

use std::sync::Arc;

use bpg_core::{Backend, Connections, Submission};
use chrono::{DateTime, Utc};

use crate::context::XComs;
use crate::dag::{Dag, TaskKind};
use crate::events::TaskState;
use crate::scheduler::{Graph, TaskIndex};
use crate::store::StoredRun;

/// A Spark try an earlier process of the run had started.
#[derive(Clone)]
pub(super) struct InFlight {
    pub(super) try_number: u32,
    /// Its recorded submission and the backend of the connection it went through; `None` when
    /// the process stopped before recording it (the idempotency key finds it then).
    pub(super) submission: Option<(Submission, Arc<dyn Backend>)>,
}

/// A task's recorded state, try number and when that try ended.
type RecordedTask = (TaskState, u32, Option<DateTime<Utc>>);

/// What the store held about a run being resumed.
pub(super) struct Resume {
    /// Per task: what was recorded.
    pub(super) tasks: Vec<Option<RecordedTask>>,
    /// Tasks restored since the last publish whose replayed `scheduled`/`queued` changes are
    /// not published.
    pub(super) replayed: Vec<TaskIndex>,
    pub(super) in_flight: Arc<[Option<InFlight>]>,
}

impl Resume {
    /// Reads `stored` into per-task slots, restores its XCom, and resolves the backends of
    /// recorded submissions (the recorded connection, which a changed DAG may no longer use).
    pub(super) async fn new(
        dag: &Dag,
        graph: &Graph,
        stored: StoredRun,
        xcoms: &XComs,
        backends: &[Option<Arc<dyn Backend>>],
        connections: &dyn Connections,
    ) -> Self {
        let n = graph.len();
        let mut tasks = vec![None; n];
        let mut in_flight = vec![None; n];
        for (task_id, values) in stored.xcom {
            for (key, value) in values {
                xcoms.push(&task_id, &key, value);
            }
        }
        for (task_id, record) in stored.tasks {
            let Some(i) = graph.index_of(&task_id) else {
                continue;
            };
            tasks[i] = Some((record.state, record.try_number, record.end_date));
            let TaskKind::Spark(spark) = &dag.tasks[i].kind else {
                continue;
            };
            if !matches!(record.state, TaskState::Queued | TaskState::Running) {
                continue;
            }
            let recorded = record
                .submissions
                .into_iter()
                .find(|s| s.try_number == record.try_number);
            let submission = match recorded {
                Some(s) if s.connection == spark.connection => {
                    backends[i].clone().map(|b| (s.submission, b))
                }
                Some(s) => match connections.backend(&s.connection).await {
                    Ok(b) => Some((s.submission, b)),
                    Err(e) => {
                        tracing::warn!(task = %task_id, connection = %s.connection, error = %e,
                            "cannot reach the connection of a recorded submission; looking it up by key");
                        None
                    }
                },
                None => None,
            };
            in_flight[i] = Some(InFlight {
                try_number: record.try_number,
                submission,
            });
        }
        Resume {
            tasks,
            replayed: Vec::new(),
            in_flight: in_flight.into(),
        }
    }
}
