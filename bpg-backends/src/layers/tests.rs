use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpg_core::{
    AppType, Backend, BackendExt, Error, IdempotencyKey, JobState, SimBackend, SparkJob,
    SubmitOptions, WaitOptions,
};
use futures::StreamExt;
use tokio::time::Instant;

use super::*;

fn job() -> SparkJob {
    SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py")
}

fn keyed() -> SubmitOptions {
    SubmitOptions::new().with_idempotency_key(IdempotencyKey::for_task("dag", "run-1", "pi", 1))
}

/// sim ← faults ← retry (no jitter, 100 ms doubling), the stack most tests use.
fn retried(max_retries: u32) -> (Arc<SimBackend>, FaultInjectionLayer, Arc<dyn Backend>) {
    let sim = Arc::new(SimBackend::new());
    let faults = FaultInjectionLayer::new();
    let backend = (sim.clone() as Arc<dyn Backend>)
        .layer(faults.clone())
        .layer(
            RetryLayer::new()
                .max_retries(max_retries)
                .initial_backoff(Duration::from_millis(100))
                .no_jitter(),
        );
    (sim, faults, backend)
}

#[tokio::test(start_paused = true)]
async fn a_503_storm_is_retried_to_success_with_exponential_backoff() {
    let (_sim, faults, backend) = retried(6);
    let submission = backend.submit(&job(), &SubmitOptions::new()).await.unwrap();
    faults.inject(Operation::Status, Fault::unavailable().times(5));

    let started = Instant::now();
    let status = backend.status(&submission.id).await.unwrap();
    // The retries took longer than the simulated job's one second.
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(faults.calls(Operation::Status), 6);
    // 100 + 200 + 400 + 800 + 1600 ms, nothing more.
    assert_eq!(started.elapsed(), Duration::from_millis(3100));
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_each_delay_between_half_and_all_of_the_backoff() {
    let sim: Arc<dyn Backend> = Arc::new(SimBackend::new());
    let faults = FaultInjectionLayer::new();
    let backend = sim
        .layer(faults.clone())
        .layer(RetryLayer::new().initial_backoff(Duration::from_secs(1)));
    let submission = backend.submit(&job(), &SubmitOptions::new()).await.unwrap();
    faults.inject(Operation::Status, Fault::unavailable().times(3));
    let started = Instant::now();
    backend.status(&submission.id).await.unwrap();
    let elapsed = started.elapsed();
    // Backoffs 1 s + 2 s + 4 s = 7 s; equal jitter waits between half (3.5 s) and all of it.
    assert!(elapsed >= Duration::from_millis(3500), "{elapsed:?}");
    assert!(elapsed <= Duration::from_secs(7), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried() {
    let (_sim, faults, backend) = retried(6);
    faults.inject(
        Operation::Status,
        Fault::error(|| Error::Forbidden {
            message: "namespace spark-jobs".into(),
        }),
    );
    let started = Instant::now();
    let err = backend.status(&"job-1".into()).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err}");
    assert_eq!(faults.calls(Operation::Status), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_the_limit_with_the_last_error() {
    let (_sim, faults, backend) = retried(3);
    faults.inject(Operation::Cancel, Fault::unavailable().times(10));
    let err = backend.cancel(&"job-1".into()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(faults.calls(Operation::Cancel), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_server_is_honoured() {
    let (_sim, faults, backend) = retried(2);
    let submission = backend.submit(&job(), &SubmitOptions::new()).await.unwrap();
    faults.inject(
        Operation::Status,
        Fault::error(|| Error::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            message: "429 Too Many Requests".into(),
        }),
    );
    let started = Instant::now();
    backend.status(&submission.id).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_submit_without_idempotency_key_is_never_retried() {
    let (sim, faults, backend) = retried(6);
    faults.inject(Operation::Submit, Fault::unavailable());
    let err = backend
        .submit(&job(), &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_temporary());
    assert_eq!(faults.calls(Operation::Submit), 1);
    assert_eq!(faults.calls(Operation::Find), 0);
    assert_eq!(sim.accepted_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_keyed_submit_whose_response_was_lost_adopts_the_accepted_job() {
    let (sim, faults, backend) = retried(6);
    faults.inject(
        Operation::Submit,
        Fault::lose_response(|| Error::Unavailable {
            message: "connection reset".into(),
        }),
    );
    let submission = backend.submit(&job(), &keyed()).await.unwrap();
    assert_eq!(sim.accepted_count(), 1, "no second application");
    assert_eq!(faults.calls(Operation::Submit), 1, "found, not resubmitted");
    assert_eq!(faults.calls(Operation::Find), 1);
    assert_eq!(sim.submissions(), vec![submission]);
}

#[tokio::test(start_paused = true)]
async fn a_keyed_submit_that_never_arrived_is_resubmitted_once_find_says_so() {
    let (sim, faults, backend) = retried(6);
    faults.inject(Operation::Submit, Fault::unavailable().times(2));
    faults.inject(Operation::Find, Fault::unavailable());
    backend.submit(&job(), &keyed()).await.unwrap();
    assert_eq!(sim.accepted_count(), 1);
    // submit fails, find fails (so no blind submit), find: none, submit fails, find: none, submit ok.
    assert_eq!(faults.calls(Operation::Find), 3);
    assert_eq!(faults.calls(Operation::Submit), 3);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_cancels_a_slow_call() {
    let sim: Arc<dyn Backend> = Arc::new(SimBackend::new());
    let faults = FaultInjectionLayer::new();
    let backend = sim
        .layer(faults.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(5)));
    faults.inject(Operation::Submit, Fault::delay(Duration::from_secs(60)));
    let started = Instant::now();
    let err = backend
        .submit(&job(), &SubmitOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_secs(5)),
        "{err}"
    );
    assert!(err.is_temporary());
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(faults.max_in_flight(), 1);
    // The dropped call left nothing in flight behind it.
    faults.inject(Operation::Status, Fault::delay(Duration::from_secs(1)));
    let _ = backend.status(&"x".into()).await;
    assert_eq!(faults.max_in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_by_an_outer_retry_layer() {
    let sim = Arc::new(SimBackend::new());
    let faults = FaultInjectionLayer::new();
    let backend = (sim.clone() as Arc<dyn Backend>)
        .layer(faults.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(
            RetryLayer::new()
                .initial_backoff(Duration::from_secs(1))
                .no_jitter(),
        );
    faults.inject(Operation::Submit, Fault::delay(Duration::from_secs(60)));
    let started = Instant::now();
    backend.submit(&job(), &keyed()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    assert_eq!(sim.accepted_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_holds() {
    let sim: Arc<dyn Backend> = Arc::new(SimBackend::new());
    let faults = FaultInjectionLayer::new();
    let backend = sim
        .layer(faults.clone())
        .layer(ConcurrencyLimitLayer::new(3));
    let submission = backend.submit(&job(), &SubmitOptions::new()).await.unwrap();
    faults.inject(
        Operation::Status,
        Fault::delay(Duration::from_secs(1)).times(10),
    );

    let started = Instant::now();
    let calls = (0..10).map(|_| backend.status(&submission.id));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(faults.max_in_flight(), 3);
    // Ten one-second calls, three at a time: four rounds.
    assert_eq!(started.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn one_limit_value_is_shared_by_every_backend_it_wraps() {
    let limit = ConcurrencyLimitLayer::new(1);
    let faults = FaultInjectionLayer::new();
    let a = (Arc::new(SimBackend::new()) as Arc<dyn Backend>)
        .layer(faults.clone())
        .layer(limit.clone());
    let b = (Arc::new(SimBackend::new()) as Arc<dyn Backend>)
        .layer(faults.clone())
        .layer(limit);
    faults.inject(
        Operation::Find,
        Fault::delay(Duration::from_secs(1)).times(2),
    );
    let key = IdempotencyKey::new("k");
    let started = Instant::now();
    let (ra, rb) = tokio::join!(a.find(&key), b.find(&key));
    assert_eq!((ra.unwrap(), rb.unwrap()), (None, None));
    assert_eq!(faults.max_in_flight(), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn tracing_wraps_each_call_in_a_span_and_reports_failures() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let backend = (Arc::new(SimBackend::new()) as Arc<dyn Backend>).layer(TracingLayer::new());
    let submission = backend.submit(&job(), &SubmitOptions::new()).await.unwrap();
    let err = backend.status(&"no-such-job".into()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let submit_line = text
        .lines()
        .find(|l| l.contains("op=\"submit\""))
        .unwrap_or_default();
    assert!(submit_line.contains("bpg.backend"), "{text}");
    assert!(submit_line.contains("job=pi"), "{text}");
    assert!(
        submit_line.contains(&format!("submission={}", submission.id))
            || submit_line.contains(" ok"),
        "{text}"
    );
    let failure = text
        .lines()
        .find(|l| l.contains("failed"))
        .unwrap_or_default();
    assert!(failure.contains("op=\"status\""), "{text}");
    assert!(failure.contains("job=no-such-job"), "{text}");
    assert!(failure.contains("temporary=false"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_recommended_stack_runs_a_job_through_a_flaky_backend() {
    let sim = Arc::new(SimBackend::new());
    let faults = FaultInjectionLayer::new();
    let backend = (sim.clone() as Arc<dyn Backend>)
        .layer(faults.clone())
        .layer(ConcurrencyLimitLayer::new(4))
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(RetryLayer::new())
        .layer(TracingLayer::new());
    faults.inject(Operation::Submit, Fault::unavailable());
    faults.inject(Operation::NextStatus, Fault::unavailable().times(2));
    let (_, status) = backend
        .submit_and_wait(&job(), &keyed(), &WaitOptions::default())
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(sim.accepted_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_log_stream_is_resumed_after_the_last_line_delivered() {
    let (_sim, faults, backend) = retried(3);
    let job = job().with_label("sim/log-lines", "10");
    let (submission, _) = backend
        .submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default())
        .await
        .unwrap();
    faults.inject(
        Operation::Logs,
        Fault::cut_log_stream(4, || Error::Unavailable {
            message: "connection reset".into(),
        }),
    );
    let lines: Vec<_> = backend
        .logs(&submission.id, &bpg_core::LogOptions::follow())
        .await
        .unwrap()
        .map(|l| l.unwrap().position)
        .collect()
        .await;
    assert_eq!(lines, (0..10).collect::<Vec<u64>>());
    assert_eq!(faults.calls(Operation::Logs), 2);
}

#[tokio::test(start_paused = true)]
async fn a_log_stream_that_keeps_breaking_ends_with_the_error() {
    let (_sim, faults, backend) = retried(2);
    let job = job().with_label("sim/log-lines", "10");
    let (submission, _) = backend
        .submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default())
        .await
        .unwrap();
    let cut = || {
        Fault::cut_log_stream(1, || Error::Unavailable {
            message: "connection reset".into(),
        })
    };
    faults.inject(Operation::Logs, cut().times(1));
    faults.inject(
        Operation::Logs,
        Fault::cut_log_stream(0, || Error::Forbidden {
            message: "token expired".into(),
        }),
    );
    let items: Vec<_> = backend
        .logs(&submission.id, &bpg_core::LogOptions::snapshot())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().position, 0);
    assert!(
        matches!(items[1], Err(Error::Forbidden { .. })),
        "a permanent error ends the stream"
    );
}
