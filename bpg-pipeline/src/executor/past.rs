//! `depends_on_past`: the wait before a task's first try until its previous-run instance is known.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::RunEnv;
use super::attempt::Done;
use crate::events::{RunState, TaskState};
use crate::scheduler::TaskIndex;
use crate::store::RunStore;

/// Waits until task `i`'s `depends_on_past` is decided: met when the same task's instance in the
/// DAG's previous run succeeded or was skipped (or there is none); blocked when it ended
/// otherwise, or its run ended without it finishing. While the previous run is still going, the
/// instance is looked at again every poll interval.
pub(super) async fn past_met(
    env: Arc<RunEnv>,
    store: Arc<dyn RunStore>,
    i: TaskIndex,
    stop: CancellationToken,
) -> Done {
    let task_id = env.graph.id(i).clone();
    loop {
        let previous = match store.previous_task_instance(&env.key, &task_id).await {
            Ok(previous) => previous,
            Err(e) => {
                return Done::PastBlocked(
                    i,
                    format!("depends_on_past: cannot read the previous run: {e}"),
                );
            }
        };
        let Some(previous) = previous else {
            return Done::PastMet(i);
        };
        match previous.state {
            TaskState::Success | TaskState::Skipped => return Done::PastMet(i),
            state if state.is_finished() => {
                return Done::PastBlocked(
                    i,
                    format!("depends_on_past: its instance in the previous run ended {state}"),
                );
            }
            state => {
                let previous_run = match store.list_runs(&env.key.dag_id).await {
                    Ok(runs) => runs
                        .into_iter()
                        .filter(|r| r.logical_date < env.run.logical_date)
                        .max_by(|a, b| a.logical_date.cmp(&b.logical_date)),
                    Err(e) => {
                        return Done::PastBlocked(
                            i,
                            format!("depends_on_past: cannot read the previous run: {e}"),
                        );
                    }
                };
                if previous_run.is_none_or(|r| r.state != RunState::Running) {
                    return Done::PastBlocked(
                        i,
                        format!("depends_on_past: the previous run ended with this task {state}"),
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(env.poll_interval) => {}
            _ = stop.cancelled() => return Done::RetryCancelled,
        }
    }
}
