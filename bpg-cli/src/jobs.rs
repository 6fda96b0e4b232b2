//! `bpg submit`, `status`, `logs` and `cancel`: one job through one connection.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::formats::load_application_file;
use bpg_core::{Backend, Connections, JobId, LogOptions, Submission, SubmitOptions};
use bpg_pipeline::{AttemptEnd, AttemptObserver, SparkAttempt, Submitted};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::ConnectionArgs;
use crate::connections::registry;
use crate::failure::{Failure, render};

async fn backend(args: &ConnectionArgs) -> Result<Arc<dyn Backend>, Failure> {
    let registry = registry(args.connections.as_deref())?;
    registry
        .backend(&args.connection)
        .await
        .map_err(|e| Failure::from_error(&format!("connection {:?}", args.connection), e))
}

/// Submits the application file; prints the submission id (first line of stdout).
///
/// With `--wait` or `--follow-logs` the job runs through the pipeline's Spark attempt protocol
/// ([`SparkAttempt`]), as a DAG's Spark task does: the driver log is followed while waiting, and
/// Ctrl-C cancels the job instead of leaving it running.
pub async fn submit(
    args: &ConnectionArgs,
    file: &Path,
    wait: bool,
    follow_logs: bool,
    quiet: bool,
) -> Result<ExitCode, Failure> {
    let parsed = load_application_file(file).map_err(|d| Failure::invalid(&d))?;
    if !parsed.warnings.0.is_empty() && !quiet {
        eprintln!("{}", render(&parsed.warnings));
    }
    let backend = backend(args).await?;
    let job = &parsed.job;
    if !wait && !follow_logs {
        let submission = backend
            .submit(job, &SubmitOptions::new())
            .await
            .map_err(|e| Failure::from_error(&format!("submitting {}", job.name), e))?;
        outln!("{}", submission.id);
        return Ok(ExitCode::SUCCESS);
    }
    if follow_logs && !backend.capabilities().follow_logs && !quiet {
        eprintln!(
            "bpg: connection {:?} cannot follow driver logs; `bpg logs` prints them once the job ended",
            args.connection
        );
    }
    let interrupt = CancellationToken::new();
    let on_interrupt = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.cancel();
            }
        })
    };
    let outcome = SparkAttempt::new(backend.as_ref(), job, SubmitOptions::new())
        .follow_logs(follow_logs)
        .cancel_on(interrupt)
        .run(&Terminal { quiet })
        .await;
    on_interrupt.abort();
    let status = match (outcome.end, &outcome.submission) {
        (AttemptEnd::Finished(status), _) => status,
        (AttemptEnd::Failed(e), Some(submission)) => {
            return Err(Failure::from_error(
                &format!("waiting for {}", submission.id),
                e,
            ));
        }
        (AttemptEnd::Failed(e), None) => {
            return Err(Failure::from_error(&format!("submitting {}", job.name), e));
        }
        (AttemptEnd::Cancelled | AttemptEnd::TimedOut, _) => {
            return Err(Failure::Failed(format!(
                "bpg: error: interrupted while running {}",
                job.name
            )));
        }
    };
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let detail = status
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let id = outcome
        .submission
        .map(|s| s.id.to_string())
        .unwrap_or_default();
    outln!("{id} {} ({}){detail}", status.state, status.native_state);
    Ok(if status.state.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `bpg submit`'s view of the attempt: the id and driver log on stdout, notes on stderr.
struct Terminal {
    quiet: bool,
}

#[async_trait]
impl AttemptObserver for Terminal {
    async fn submitted(&self, submission: &Submission, _how: Submitted) -> bpg_core::Result<()> {
        outln!("{}", submission.id);
        Ok(())
    }

    fn log_line(&self, line: String) {
        outln!("{line}");
    }

    fn note(&self, message: String) {
        if !self.quiet {
            eprintln!("bpg: {message}");
        }
    }
}

/// Prints the job's state.
pub async fn status(args: &ConnectionArgs, id: &str, explain: bool) -> Result<ExitCode, Failure> {
    if explain {
        return explain_status(args, id).await;
    }
    let backend = backend(args).await?;
    let status = backend
        .status(&JobId::new(id))
        .await
        .map_err(|e| Failure::from_error(&format!("status of {id}"), e))?;
    outln!("id: {id}");
    outln!("state: {}", status.state);
    outln!("native_state: {}", status.native_state);
    if let Some(m) = &status.message {
        outln!("message: {m}");
    }
    if let Some(app) = &status.spark_application_id {
        outln!("spark_application_id: {app}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a bpg gateway's explanation of a submission: the routing decision and, while it waits,
/// what for.
async fn explain_status(args: &ConnectionArgs, id: &str) -> Result<ExitCode, Failure> {
    let registry = registry(args.connections.as_deref())?;
    let name = &args.connection;
    let connection = registry
        .connection(name)
        .ok_or_else(|| Failure::Config(format!("bpg: error: unknown connection {name:?}")))?;
    if !connection.scheme().starts_with("bpg+") {
        return Err(Failure::Config(format!(
            "bpg: error: --explain asks a bpg gateway; connection {name:?} is {}://",
            connection.scheme()
        )));
    }
    let config = bpg_backends::connect::GatewayFactory
        .config(connection)
        .map_err(|e| Failure::from_error(&format!("connection {name:?}"), e))?;
    let gateway = bpg_backends::gateway::GatewayBackend::new(config)
        .map_err(|e| Failure::from_error(&format!("connection {name:?}"), e))?;
    let explained = gateway.client().explain(id).await.map_err(|e| match e {
        bpg_core::Error::NotFound { .. } => Failure::Failed(format!(
            "bpg: error: {id}: not found, or the gateway does not explain decisions (a Java BPG does not): {e}"
        )),
        e => Failure::from_error(&format!("explain {id}"), e),
    })?;
    match explained.get("summary").and_then(serde_json::Value::as_str) {
        Some(summary) => outln!("{summary}"),
        None => outln!("{explained:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the job's driver log.
pub async fn logs(args: &ConnectionArgs, id: &str, follow: bool) -> Result<ExitCode, Failure> {
    let backend = backend(args).await?;
    print_logs(backend.as_ref(), &JobId::new(id), follow).await?;
    Ok(ExitCode::SUCCESS)
}

async fn print_logs(backend: &dyn Backend, id: &JobId, follow: bool) -> Result<(), Failure> {
    let options = if follow {
        LogOptions::follow()
    } else {
        LogOptions::snapshot()
    };
    let mut lines = backend
        .logs(id, &options)
        .await
        .map_err(|e| Failure::from_error(&format!("logs of {id}"), e))?;
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| Failure::from_error(&format!("logs of {id}"), e))?;
        outln!("{}", line.text);
    }
    Ok(())
}

/// Asks the backend to stop the job.
pub async fn cancel(args: &ConnectionArgs, id: &str, quiet: bool) -> Result<ExitCode, Failure> {
    let backend = backend(args).await?;
    backend
        .cancel(&JobId::new(id))
        .await
        .map_err(|e| Failure::from_error(&format!("cancelling {id}"), e))?;
    if !quiet {
        outln!("cancel requested for {id}");
    }
    Ok(ExitCode::SUCCESS)
}
