//! `bpg submit`, `status`, `logs` and `cancel`: one job through one connection.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use bpg_core::formats::load_application_file;
use bpg_core::{Backend, BackendExt, Connections, JobId, LogOptions, SubmitOptions, WaitOptions};
use futures::StreamExt;

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
    let submission = backend
        .submit(&parsed.job, &SubmitOptions::new())
        .await
        .map_err(|e| Failure::from_error(&format!("submitting {}", parsed.job.name), e))?;
    outln!("{}", submission.id);
    if follow_logs {
        print_logs(backend.as_ref(), &submission.id, true).await?;
    }
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let status = backend
        .wait_for_terminal(&submission.id, &WaitOptions::default())
        .await
        .map_err(|e| Failure::from_error(&format!("waiting for {}", submission.id), e))?;
    let detail = status
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    outln!(
        "{} {} ({}){detail}",
        submission.id,
        status.state,
        status.native_state
    );
    Ok(if status.state.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints the job's state.
pub async fn status(args: &ConnectionArgs, id: &str) -> Result<ExitCode, Failure> {
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
