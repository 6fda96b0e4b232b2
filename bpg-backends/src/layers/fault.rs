//! Scripted faults, for testing what sits above a backend.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};

use super::{Layer, Operation};

type MakeError = Arc<dyn Fn() -> Error + Send + Sync>;

#[derive(Clone)]
enum FaultKind {
    /// Fail without calling the backend.
    Fail(MakeError),
    /// Call the backend, then fail anyway: the request arrived but the response was lost.
    LoseResponse(MakeError),
    /// Wait, then call the backend.
    Delay(Duration),
    /// Open the log stream, then break it after some lines.
    CutStream(u64, MakeError),
}

/// One scripted fault, applied to the next `times` calls of an operation
/// (see [`FaultInjectionLayer::inject`]).
///
/// ```
/// use std::time::Duration;
/// use bpg_backends::layers::Fault;
/// let storm = Fault::unavailable().times(5);
/// let slow = Fault::delay(Duration::from_secs(60));
/// # let _ = (storm, slow);
/// ```
#[derive(Clone)]
pub struct Fault {
    kind: FaultKind,
    times: u32,
}

impl Fault {
    /// The call fails with the error `make` builds, without reaching the backend.
    pub fn error(make: impl Fn() -> Error + Send + Sync + 'static) -> Fault {
        Fault {
            kind: FaultKind::Fail(Arc::new(make)),
            times: 1,
        }
    }

    /// A `503 Service Unavailable` ([`Error::Unavailable`]) without reaching the backend.
    pub fn unavailable() -> Fault {
        Fault::error(|| Error::Unavailable {
            message: "503 Service Unavailable (injected)".into(),
        })
    }

    /// The call reaches the backend (a submit is accepted), then fails with the error `make`
    /// builds, as when a connection drops before the response arrives.
    pub fn lose_response(make: impl Fn() -> Error + Send + Sync + 'static) -> Fault {
        Fault {
            kind: FaultKind::LoseResponse(Arc::new(make)),
            times: 1,
        }
    }

    /// The call waits `delay` before reaching the backend.
    pub fn delay(delay: Duration) -> Fault {
        Fault {
            kind: FaultKind::Delay(delay),
            times: 1,
        }
    }

    /// For `logs`: the stream opens, yields `lines` lines, then fails with the error `make`
    /// builds, like a connection dropped mid-stream. On other operations the call goes through.
    pub fn cut_log_stream(lines: u64, make: impl Fn() -> Error + Send + Sync + 'static) -> Fault {
        Fault {
            kind: FaultKind::CutStream(lines, Arc::new(make)),
            times: 1,
        }
    }

    /// Applies this fault to `n` consecutive calls (default 1).
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            FaultKind::Fail(make) => format!("Fail({})", make()),
            FaultKind::LoseResponse(make) => format!("LoseResponse({})", make()),
            FaultKind::Delay(d) => format!("Delay({d:?})"),
            FaultKind::CutStream(n, make) => format!("CutStream({n}, {})", make()),
        };
        f.debug_struct("Fault")
            .field("kind", &kind)
            .field("times", &self.times)
            .finish()
    }
}

#[derive(Debug, Default)]
struct FaultState {
    scripts: HashMap<Operation, VecDeque<Fault>>,
    calls: HashMap<Operation, u64>,
    in_flight: usize,
    max_in_flight: usize,
}

/// Injects scripted faults per operation and counts calls, for tests of retry logic, timeouts,
/// limits and everything above a backend. Not for production stacks.
///
/// Faults queue per [`Operation`] and are consumed in order; a call with no fault queued goes
/// straight to the backend. The layer is a handle: clones and the backends it wrapped share one
/// script, so a test can keep it, wrap a backend, and script or inspect as it goes.
///
/// ```
/// use std::sync::Arc;
/// use bpg_core::{Backend, JobId, SimBackend};
/// use bpg_backends::layers::{Fault, FaultInjectionLayer, LayerExt, Operation};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let faults = FaultInjectionLayer::new();
/// let backend = (Arc::new(SimBackend::new()) as Arc<dyn Backend>).layer(faults.clone());
/// faults.inject(Operation::Status, Fault::unavailable().times(2));
/// let id = JobId::new("nope");
/// assert!(backend.status(&id).await.unwrap_err().is_temporary());
/// assert!(backend.status(&id).await.unwrap_err().is_temporary());
/// assert!(!backend.status(&id).await.unwrap_err().is_temporary()); // the sim's own NotFound
/// assert_eq!(faults.calls(Operation::Status), 3);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct FaultInjectionLayer {
    state: Arc<Mutex<FaultState>>,
}

impl FaultInjectionLayer {
    /// A layer with nothing scripted.
    pub fn new() -> Self {
        FaultInjectionLayer::default()
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding this lock cannot leave the counters inconsistent; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `fault` for the next calls of `op` (after the faults already queued).
    pub fn inject(&self, op: Operation, fault: Fault) {
        if fault.times > 0 {
            self.lock().scripts.entry(op).or_default().push_back(fault);
        }
    }

    /// Drops every queued fault.
    pub fn clear(&self) {
        self.lock().scripts.clear();
    }

    /// Calls of `op` that reached this layer, faulted or not.
    pub fn calls(&self, op: Operation) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The most calls (of any operation) that were in progress inside this layer at once.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Counts the call, marks it in flight and takes its fault, if one is queued.
    fn begin(&self, op: Operation) -> (InFlight, Option<FaultKind>) {
        let mut state = self.lock();
        *state.calls.entry(op).or_default() += 1;
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        let mut fault = None;
        if let Some(queue) = state.scripts.get_mut(&op)
            && let Some(front) = queue.front_mut()
        {
            fault = Some(front.kind.clone());
            front.times -= 1;
            if front.times == 0 {
                queue.pop_front();
            }
        }
        (
            InFlight {
                state: self.state.clone(),
            },
            fault,
        )
    }
}

/// Leaves the in-flight count when the call ends, however it ends (a timeout drops it midway).
struct InFlight {
    state: Arc<Mutex<FaultState>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl Layer for FaultInjectionLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(FaultInjectionBackend {
            inner,
            faults: self.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultInjectionBackend {
    inner: Arc<dyn Backend>,
    faults: FaultInjectionLayer,
}

impl FaultInjectionBackend {
    async fn faulted<T>(
        &self,
        op: Operation,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let (in_flight, fault) = self.faults.begin(op);
        self.apply(in_flight, fault, call).await
    }

    async fn apply<T>(
        &self,
        _in_flight: InFlight,
        fault: Option<FaultKind>,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match fault {
            None => call.await,
            Some(FaultKind::Fail(make)) => Err(make()),
            Some(FaultKind::LoseResponse(make)) => {
                // The backend's answer is what gets lost; its side effects stay.
                let _lost = call.await;
                Err(make())
            }
            Some(FaultKind::Delay(d)) => {
                tokio::time::sleep(d).await;
                call.await
            }
            // Only log streams can be cut; see `logs`.
            Some(FaultKind::CutStream(..)) => call.await,
        }
    }
}

#[async_trait]
impl Backend for FaultInjectionBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        self.faulted(Operation::Submit, self.inner.submit(job, options))
            .await
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.faulted(Operation::Status, self.inner.status(id)).await
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        use futures::StreamExt;
        let (in_flight, fault) = self.faults.begin(Operation::Logs);
        let Some(FaultKind::CutStream(lines, make)) = fault else {
            return self
                .apply(in_flight, fault, self.inner.logs(id, options))
                .await;
        };
        let stream = self.inner.logs(id, options).await?;
        let lines = usize::try_from(lines).unwrap_or(usize::MAX);
        let broken = futures::stream::once(async move { Err(make()) });
        Ok(stream.take(lines).chain(broken).boxed())
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.faulted(Operation::Cancel, self.inner.cancel(id)).await
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        self.faulted(Operation::Find, self.inner.find(key)).await
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        self.faulted(
            Operation::NextStatus,
            self.inner.next_status(id, previous, poll_interval),
        )
        .await
    }
}
