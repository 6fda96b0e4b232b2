//! [`NamespaceView`]: one watch of a namespace's `SparkApplication`s, kept in memory as their
//! statuses, which [`next_status`](bpg_core::Backend::next_status) of every job in the namespace
//! reads. However many jobs are followed, the API server sees one list and one long watch per
//! namespace, not a watch per job.
//!
//! The view's task lists, then watches from the list's `resourceVersion`, resuming from the last
//! version it saw when the server ends a stream. A watch the server refuses, or a `410 Gone`
//! (the version is too old), relists after a backoff. While it cannot list or watch the view is
//! not live, and followers read or watch their one application instead, as without a view.
//!
//! Followers wait on their own application's channel, so a change wakes the one follower it
//! concerns, not every follower of the namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bpg_core::JobStatus;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use tokio::sync::watch;

/// What the view knows of one application.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seen {
    /// The view is live: the application's status, or `None` when the namespace has no such
    /// application (not yet seen, or deleted).
    Live(Option<JobStatus>),
    /// The view has not listed yet.
    Starting,
    /// The view cannot list or watch right now.
    NotLive,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Phase {
    #[default]
    Starting,
    Live,
    Lost,
}

#[derive(Default)]
struct State {
    statuses: HashMap<String, JobStatus>,
    phase: Phase,
    /// One channel per followed application, created by [`NamespaceView::subscribe`].
    waiters: HashMap<String, watch::Sender<()>>,
}

impl State {
    fn wake(&mut self, name: &str) {
        if let Some(tx) = self.waiters.get(name) {
            if tx.receiver_count() == 0 {
                self.waiters.remove(name);
            } else {
                tx.send_replace(());
            }
        }
    }

    fn wake_all(&mut self) {
        self.waiters.retain(|_, tx| tx.receiver_count() > 0);
        for tx in self.waiters.values() {
            tx.send_replace(());
        }
    }
}

/// The statuses of one namespace's applications, kept current by one watch. Dropping the view
/// stops its watch.
pub(crate) struct NamespaceView {
    state: Mutex<State>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for NamespaceView {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// How a view turns an application object into a status.
pub(crate) type StatusOf = fn(&DynamicObject) -> JobStatus;

/// The longest a watch request asks the server to hold (kube rejects 295 s and more).
const WATCH_SECONDS: u32 = 290;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl NamespaceView {
    /// A view of the applications `api` reaches, and the task that keeps it current (on the
    /// caller's runtime).
    pub(crate) fn start(api: Api<DynamicObject>, status_of: StatusOf) -> Arc<NamespaceView> {
        let view = Arc::new(NamespaceView {
            state: Mutex::new(State::default()),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&view), api, status_of));
        *view.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        view
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the view knows of application `name`.
    pub(crate) fn seen(&self, name: &str) -> Seen {
        let state = self.state();
        match state.phase {
            Phase::Live => Seen::Live(state.statuses.get(name).cloned()),
            Phase::Starting => Seen::Starting,
            Phase::Lost => Seen::NotLive,
        }
    }

    /// A channel that wakes when `name`'s status changes, or the view goes live or is lost.
    pub(crate) fn subscribe(&self, name: &str) -> watch::Receiver<()> {
        let mut state = self.state();
        match state.waiters.get(name) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(());
                state.waiters.insert(name.to_owned(), tx);
                rx
            }
        }
    }

    /// How many applications the view holds.
    #[cfg(all(test, feature = "k8s-mock"))]
    pub(crate) fn len(&self) -> usize {
        self.state().statuses.len()
    }

    fn replace(&self, items: &[DynamicObject], status_of: StatusOf) {
        let mut state = self.state();
        state.statuses = items
            .iter()
            .filter_map(|o| Some((o.metadata.name.clone()?, status_of(o))))
            .collect();
        state.phase = Phase::Live;
        state.wake_all();
    }

    fn put(&self, object: &DynamicObject, status_of: StatusOf) {
        let Some(name) = object.metadata.name.as_deref() else {
            return;
        };
        let status = status_of(object);
        let mut state = self.state();
        if state.statuses.get(name) != Some(&status) {
            state.statuses.insert(name.to_owned(), status);
            state.wake(name);
        }
    }

    fn remove(&self, object: &DynamicObject) {
        let Some(name) = object.metadata.name.as_deref() else {
            return;
        };
        let mut state = self.state();
        state.statuses.remove(name);
        state.wake(name);
    }

    fn lost(&self) {
        let mut state = self.state();
        if state.phase != Phase::Lost {
            state.phase = Phase::Lost;
            state.wake_all();
        }
    }
}

/// Lists and watches until the view is dropped.
async fn run(view: Weak<NamespaceView>, api: Api<DynamicObject>, status_of: StatusOf) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listed = api.list(&ListParams::default()).await;
        let Some(v) = view.upgrade() else { return };
        let mut version = match listed {
            Ok(list) => {
                v.replace(&list.items, status_of);
                list.metadata.resource_version.unwrap_or_default()
            }
            Err(e) => {
                tracing::debug!(error = %e, "namespace view: list failed");
                v.lost();
                drop(v);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        drop(v);
        backoff = Duration::from_millis(100);
        // Watch from `version` until the server refuses a watch or the version expires.
        let mut quiet = Duration::from_millis(50);
        loop {
            let params = WatchParams::default().timeout(WATCH_SECONDS);
            let started = tokio::time::Instant::now();
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "namespace view: watch refused, relisting");
                    break;
                }
            };
            let mut stream = stream.boxed();
            let mut events = 0usize;
            let mut expired = false;
            while let Some(event) = stream.next().await {
                let Some(v) = view.upgrade() else { return };
                events += 1;
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                        v.put(&o, status_of);
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                        v.remove(&o);
                    }
                    Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                    // 410 Gone and the like: what we hold may be stale; list afresh.
                    Ok(WatchEvent::Error(e)) => {
                        tracing::debug!(code = e.code, message = %e.message, "namespace view: watch error, relisting");
                        expired = true;
                        break;
                    }
                    // A stream cut mid-way: resume from the last version seen.
                    Err(e) => {
                        tracing::debug!(error = %e, "namespace view: watch stream broke");
                        break;
                    }
                }
            }
            if expired {
                break;
            }
            // A server (or proxy) that ends streams at once, empty: do not spin.
            if events == 0 && started.elapsed() < Duration::from_millis(100) {
                tokio::time::sleep(quiet).await;
                quiet = (quiet * 2).min(Duration::from_secs(5));
            } else {
                quiet = Duration::from_millis(50);
            }
        }
        if let Some(v) = view.upgrade() {
            v.lost();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(all(test, feature = "k8s-mock"))]
mod tests {
    use super::*;
    use crate::k8s::SparkKubernetesBackend;
    use crate::k8s::mock::MockApiServer;
    use bpg_core::{AppType, Backend, SparkJob, SubmitOptions};

    /// Submits a job that stays `SUBMITTED`; its application's name.
    async fn submit(backend: &SparkKubernetesBackend, name: &str) -> String {
        let job = SparkJob::new(name, AppType::Python, "3.5", "local:///opt/app/job.py")
            .with_label("sim/queue-delay", "1h");
        let submission = backend.submit(&job, &SubmitOptions::new()).await.unwrap();
        let (_, name) = submission.id.as_str().split_once('/').unwrap();
        name.to_owned()
    }

    /// Waits (real time: the stand-in is a real HTTP server) until `done` holds.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn lists_then_follows_and_recovers_from_refused_watches() {
        let server = MockApiServer::start().await;
        let backend = server.backend().unwrap();
        for name in ["a", "b", "c"] {
            submit(&backend, name).await;
        }
        let api = backend.apps(server.namespace());
        let view = NamespaceView::start(api, SparkKubernetesBackend::status_of);
        eventually("the view lists 3", || view.len() == 3).await;
        let first = server.applications()[0].clone();
        let (_, first) = first.split_once('/').unwrap();
        assert!(matches!(view.seen(first), Seen::Live(Some(s)) if s.native_state == "SUBMITTED"));
        assert_eq!(view.seen("nope"), Seen::Live(None));

        // Watches refused (a proxy that cannot stream, then 410 Gone): the view relists and
        // still learns of an application created meanwhile.
        server.fail_next_watches(2, 410);
        let fourth = submit(&backend, "d").await;
        eventually("the view is live with the 4th", || {
            matches!(view.seen(&fourth), Seen::Live(Some(_)))
        })
        .await;
        assert_eq!(view.len(), 4);
    }

    #[tokio::test]
    async fn is_not_live_while_the_server_refuses_to_list() {
        let server = MockApiServer::start().await;
        let backend = server.backend().unwrap();
        server.fail_next(3, 503);
        let view = NamespaceView::start(
            backend.apps(server.namespace()),
            SparkKubernetesBackend::status_of,
        );
        let mut changes = view.subscribe("x");
        // The failed list wakes followers, who then read on their own.
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.seen("x"), Seen::NotLive);
        eventually("the view recovers", || view.seen("x") == Seen::Live(None)).await;
    }
}
