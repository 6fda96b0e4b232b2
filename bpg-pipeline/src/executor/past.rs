//! `depends_on_past`: the wait before a task's first try until its previous-run instance is known.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::RunEnv;
use super::attempt::Done;
use crate::scheduler::TaskIndex;
use crate::store::{PastDecision, RunStore};

/// Waits until task `i`'s `depends_on_past` is decided by the store's one rule
/// ([`RunStore::depends_on_past`]): met, blocked (the message says why), or asked again every poll
/// interval while the previous run is still going.
pub(super) async fn past_met(
    env: Arc<RunEnv>,
    store: Arc<dyn RunStore>,
    i: TaskIndex,
    stop: CancellationToken,
) -> Done {
    let task_id = env.graph.id(i).clone();
    loop {
        match store.depends_on_past(&env.key, &task_id).await {
            Ok(PastDecision::Met) => return Done::PastMet(i),
            Ok(PastDecision::Blocked(why)) => {
                return Done::PastBlocked(i, format!("depends_on_past: {why}"));
            }
            Ok(PastDecision::Wait) => {}
            Err(e) => {
                return Done::PastBlocked(
                    i,
                    format!("depends_on_past: cannot read the previous run: {e}"),
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(env.poll_interval) => {}
            _ = stop.cancelled() => return Done::RetryCancelled,
        }
    }
}
