//! Stored task logs: every try's lines (a Spark driver log, a function's log, the runner's own
//! lines about the try) are kept per try and read back after the run, and after a restart, from a
//! fresh `TaskLogs` over the same directory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bpg_core::{AppType, Backend, SimBackend, SparkJob};
use bpg_pipeline::logs::{LogKey, TaskLogs};
use bpg_pipeline::{Dag, Runner, Task, TaskError, TaskState};

#[tokio::test(start_paused = true)]
async fn every_try_keeps_its_own_log_after_the_run_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let job = SparkJob::new("pi", AppType::Python, "3.5", "local:///pi.py")
        .with_label("sim/duration", "10s")
        .with_label("sim/log-lines", "4");
    let dag = Dag::builder("logged")
        .task(Task::spark("calculate_pi", "sim", job))
        .task(
            Task::function("flaky", |ctx| async move {
                ctx.log(format!("working on try {}", ctx.try_number()));
                if ctx.try_number() == 1 {
                    return Err(TaskError::failed("the first try fails"));
                }
                Ok(None)
            })
            .retries(1)
            .retry_delay(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let connections = HashMap::from([(
        "sim".to_string(),
        Arc::new(SimBackend::builder().name("sim").build()) as Arc<dyn Backend>,
    )]);
    // No event subscriber: the logs are kept all the same.
    let report = Runner::new(dag, connections)
        .run_id("manual__1")
        .task_logs(TaskLogs::open(dir.path()).unwrap())
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tasks["flaky"].state, TaskState::Success);

    // A new process: a fresh TaskLogs over the same directory.
    let logs = TaskLogs::open(dir.path()).unwrap();
    let pi = logs
        .tail(&LogKey::new("logged", "manual__1", "calculate_pi", 1), 100)
        .unwrap()
        .lines;
    assert_eq!(
        pi.first().map(String::as_str),
        Some("[bpg] try 1 started"),
        "{pi:#?}"
    );
    assert_eq!(
        pi.last().map(String::as_str),
        Some("[bpg] try 1 succeeded"),
        "{pi:#?}"
    );
    let driver_lines = pi.iter().filter(|l| !l.starts_with("[bpg]")).count();
    assert!(
        driver_lines >= 4,
        "the driver's 4 lines and the submission: {pi:#?}"
    );

    assert_eq!(logs.tries("logged", "manual__1", "flaky"), [1, 2]);
    let first = logs
        .tail(&LogKey::new("logged", "manual__1", "flaky", 1), 10)
        .unwrap()
        .lines;
    assert_eq!(
        first,
        [
            "[bpg] try 1 started",
            "working on try 1",
            "[bpg] try 1 failed: the first try fails"
        ]
    );
    let second = logs
        .tail(&LogKey::new("logged", "manual__1", "flaky", 2), 10)
        .unwrap()
        .lines;
    assert_eq!(
        second,
        [
            "[bpg] try 2 started",
            "working on try 2",
            "[bpg] try 2 succeeded"
        ]
    );
}
