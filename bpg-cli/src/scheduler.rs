//! `bpg scheduler`: runs every pipeline of a folder on its schedule until stopped (Ctrl-C or
//! SIGTERM), one plain timestamped line per run started and finished.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bpg_pipeline::{DagScheduler, ScheduledDag, SchedulerEvent, SqliteRunStore};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::connections::registry;
use crate::failure::Failure;
use bpg_core::Connections;

/// What `bpg scheduler` was asked.
#[derive(Debug)]
pub struct SchedulerArgs {
    /// Folder of pipeline files.
    pub pipelines: PathBuf,
    /// Connections file.
    pub connections: Option<PathBuf>,
    /// Durable run store.
    pub state: Option<PathBuf>,
    /// No per-run lines.
    pub quiet: bool,
}

/// Runs the scheduler until a stop signal; exit 0 after a clean shutdown.
pub async fn scheduler(args: SchedulerArgs) -> Result<ExitCode, Failure> {
    let dags = ScheduledDag::load_dir(&args.pipelines).map_err(|d| Failure::invalid(&d))?;
    if dags.is_empty() {
        return Err(Failure::Config(format!(
            "bpg: error: {}: no pipeline files (*.yaml, *.yml) to schedule",
            args.pipelines.display()
        )));
    }
    let registry = registry(args.connections.as_deref())?;
    let mut unknown = bpg_core::Diagnostics::new();
    for dag in &dags {
        unknown.0.extend(
            dag.dag()
                .check_connections(|name| registry.contains(name))
                .0,
        );
    }
    if unknown.has_errors() {
        return Err(Failure::config_diagnostics(&unknown));
    }
    let mut scheduler = DagScheduler::new(registry).dags(dags.iter().cloned());
    if let Some(path) = &args.state {
        let store = SqliteRunStore::open(path)
            .await
            .map_err(|e| Failure::from_error(&format!("--state {}", path.display()), e))?;
        scheduler = scheduler.store(Arc::new(store));
        scheduler = scheduler.task_logs(crate::run::task_logs_beside(path)?);
    }
    if !args.quiet {
        for dag in &dags {
            let schedule = dag
                .parsed_schedule()
                .map(ToString::to_string)
                .unwrap_or_else(|| "manual triggers only".to_owned());
            eprintln!(
                "{} scheduling {} ({schedule})",
                timestamp(),
                dag.dag().dag_id
            );
        }
    }
    let mut events = scheduler.subscribe();
    let quiet = args.quiet;
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) if !quiet => print_event(&event),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    eprintln!("{} ({n} scheduler events not shown)", timestamp())
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    let stop = CancellationToken::new();
    let signal = tokio::spawn(stop_on_signal(stop.clone()));
    let result = scheduler.run(stop).await;
    signal.abort();
    let _ = printer.await;
    result.map_err(|e| Failure::from_error("the scheduler could not start", e))?;
    if !args.quiet {
        eprintln!("{} scheduler stopped", timestamp());
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop_on_signal(stop: CancellationToken) {
    stop_signal().await;
    eprintln!("{} stopping: cancelling runs in flight", timestamp());
    stop.cancel();
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn print_event(event: &SchedulerEvent) {
    let line = match event {
        SchedulerEvent::RunStarted {
            dag_id,
            run_id,
            data_interval,
            ..
        } => match data_interval {
            Some(i) => format!(
                "run {dag_id} {run_id} started (data interval {} to {})",
                i.start.to_rfc3339(),
                i.end.to_rfc3339()
            ),
            None => format!("run {dag_id} {run_id} started"),
        },
        SchedulerEvent::RunFinished(report) => {
            let failed: Vec<&str> = report
                .tasks
                .iter()
                .filter(|(_, t)| !matches!(t.state.as_str(), "success" | "skipped"))
                .map(|(id, _)| id.as_str())
                .collect();
            let mut line = format!("run {} {} {}", report.dag_id, report.run_id, report.state);
            if !failed.is_empty() {
                line.push_str(&format!(" (not successful: {})", failed.join(", ")));
            }
            line
        }
        SchedulerEvent::RunNotStarted {
            dag_id,
            run_id,
            error,
        } => format!("run {dag_id} {run_id} could not start: {error}"),
        _ => return,
    };
    eprintln!("{} {line}", timestamp());
}
