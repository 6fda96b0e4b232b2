//! `bpg run`: one run of a pipeline file, with live progress, a summary and a JSON report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use std::path::Path;
use std::sync::Arc;

use bpg_pipeline::{RunKey, RunRecord, RunState, RunStore, Runner, SqliteRunStore, load_dag_file};

use crate::connections::registry;
use crate::failure::Failure;
use crate::progress::{self, Mode};
use bpg_core::Connections;

/// What `bpg run` was asked.
#[derive(Debug)]
pub struct RunArgs {
    /// Pipeline file.
    pub pipeline: PathBuf,
    /// Connections file.
    pub connections: Option<PathBuf>,
    /// Durable run store.
    pub state: Option<PathBuf>,
    /// Run id.
    pub run_id: Option<String>,
    /// Resume the run.
    pub resume: bool,
    /// Report path.
    pub json: Option<PathBuf>,
    /// Status poll interval.
    pub poll_interval: std::time::Duration,
    /// No progress or summary.
    pub quiet: bool,
}

/// Runs the pipeline; exit 0 when the run succeeded, 1 when it failed.
pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let dag = load_dag_file(&args.pipeline).map_err(|d| Failure::invalid(&d))?;
    let registry = registry(args.connections.as_deref())?;
    let unknown = dag.check_connections(|name| registry.contains(name));
    if unknown.has_errors() {
        let known = registry.names();
        return Err(Failure::Config(format!(
            "{}\nbpg: error: known connections: {} (give --connections FILE or set BPG_CONN_<NAME>)",
            crate::failure::render(&unknown),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    let task_ids: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
    let dag_id = dag.dag_id.clone();
    let mut runner = Runner::new(dag, registry).poll_interval(args.poll_interval);
    if let Some(id) = &args.run_id {
        runner = runner.run_id(id.clone());
    }
    if let Some(path) = &args.state {
        let (store, resumed) =
            open_store(path, &dag_id, args.run_id.as_deref(), args.resume).await?;
        if let Some(run) = resumed {
            // The same run id, logical date and params: the runner takes finished tasks' outcomes
            // from the store, reattaches to recorded Spark jobs, finds unrecorded ones by their
            // idempotency keys, and continues retries on their schedule.
            runner = runner.logical_date(run.logical_date);
            for (key, value) in run.params {
                runner = runner.param(key, value);
            }
        }
        runner = runner.store(Arc::new(store));
        runner = runner.task_logs(task_logs_beside(path)?);
    }
    let mode = if args.quiet {
        Mode::Quiet
    } else if std::io::stderr().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let display = tokio::spawn(progress::display(
        runner.subscribe(),
        task_ids.clone(),
        mode,
    ));
    let cancel = runner.cancellation_token();
    let interrupt = tokio::spawn(async move {
        // Ctrl-C cancels the run: running jobs are cancelled, never orphaned.
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("bpg: interrupted, cancelling running tasks");
            cancel.cancel();
        }
    });
    let result = runner.run().await;
    interrupt.abort();
    let timings = display.await.unwrap_or_default();
    let report = result.map_err(|e| Failure::from_error("the run could not start", e))?;
    tracing::info!(dag_id = %report.dag_id, run_id = %report.run_id, state = %report.state, "run finished");
    if let Some(path) = &args.json {
        report.write_json(path).map_err(|e| {
            Failure::Config(format!(
                "bpg: error: cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
    }
    if !args.quiet {
        out!("{}", progress::summary(&report, &task_ids, &timings));
    }
    Ok(if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Opens the durable run store. A run id already in the store is not run again from scratch;
/// `--resume` continues an unfinished one (the run record it returns) under the same run id.
async fn open_store(
    path: &Path,
    dag_id: &str,
    run_id: Option<&str>,
    resume: bool,
) -> Result<(SqliteRunStore, Option<RunRecord>), Failure> {
    let store = SqliteRunStore::open(path)
        .await
        .map_err(|e| Failure::from_error(&format!("--state {}", path.display()), e))?;
    let Some(run_id) = run_id else {
        return Ok((store, None));
    };
    let key = RunKey {
        dag_id: dag_id.to_owned(),
        run_id: run_id.to_owned(),
    };
    let stored = store
        .load_run(&key)
        .await
        .map_err(|e| Failure::from_error(&format!("--state {}", path.display()), e))?;
    match (stored, resume) {
        (None, false) => Ok((store, None)),
        (None, true) => Err(Failure::Config(format!(
            "bpg: error: --resume: no run {run_id} of {dag_id} in {}",
            path.display()
        ))),
        (Some(stored), false) => Err(Failure::Config(format!(
            "bpg: error: run {run_id} of {dag_id} is already in {} (state {}): give another --run-id, or --resume",
            path.display(),
            stored.run.state
        ))),
        (Some(stored), true) if stored.run.state != RunState::Running => {
            Err(Failure::Config(format!(
                "bpg: error: --resume: run {run_id} of {dag_id} already finished ({}); nothing to resume",
                stored.run.state
            )))
        }
        (Some(stored), true) => Ok((store, Some(stored.run))),
    }
}

/// The task logs kept beside a run store: `<state>.logs/` (one file per task try).
pub fn task_logs_beside(state: &std::path::Path) -> Result<bpg_pipeline::logs::TaskLogs, Failure> {
    let mut dir = state.as_os_str().to_owned();
    dir.push(".logs");
    bpg_pipeline::logs::TaskLogs::open(&dir).map_err(|e| {
        Failure::Config(format!(
            "bpg: error: cannot keep task logs in {}: {e}",
            std::path::Path::new(&dir).display()
        ))
    })
}
