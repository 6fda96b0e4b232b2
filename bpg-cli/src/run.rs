//! `bpg run`: one run of a pipeline file, with live progress, a summary and a JSON report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use bpg_pipeline::{Runner, load_dag_file};

use crate::connections::registry;
use crate::failure::Failure;
use crate::progress::{self, Mode};

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
    /// No progress or summary.
    pub quiet: bool,
}

/// Runs the pipeline; exit 0 when the run succeeded, 1 when it failed.
pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    if let Some(state) = &args.state {
        // Honest refusal: without a durable store a "resumable" run would silently not be.
        return Err(Failure::Config(format!(
            "bpg: error: {} {}: this build has no durable run store (bpg-pipeline provides only \
             the in-memory store; the SQLite store is not there yet), so --state and --resume \
             cannot be honoured",
            if args.resume {
                "--resume --state"
            } else {
                "--state"
            },
            state.display()
        )));
    }
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
    let mut runner = Runner::new(dag, registry);
    if let Some(id) = &args.run_id {
        runner = runner.run_id(id.clone());
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
