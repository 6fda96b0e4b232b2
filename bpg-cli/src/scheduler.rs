//! `bpg scheduler`: runs every pipeline of a folder on its schedule until stopped (Ctrl-C or
//! SIGTERM), one plain timestamped line per run started and finished; with `--listen`, also
//! serves Airflow's REST API and the web UI (bpg-scheduler-web).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bpg_gateway::auth::Access;
use bpg_gateway::{Tls, TlsFiles};
use bpg_pipeline::logs::TaskLogs;
use bpg_pipeline::{
    DagScheduler, InMemoryRunStore, RunStore, ScheduledDag, SchedulerEvent, SqliteRunStore,
};
use bpg_scheduler_web::{Auth, SchedulerWeb};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::connections::registry;
use crate::failure::Failure;
use bpg_core::Connections;

/// What `bpg scheduler` was asked.
#[derive(Debug)]
pub struct SchedulerArgs {
    /// Folders of pipeline files, or pipeline files.
    pub pipelines: Vec<PathBuf>,
    /// Connections file.
    pub connections: Option<PathBuf>,
    /// Durable run store.
    pub state: Option<PathBuf>,
    /// Where to serve the API and UI.
    pub listen: Option<std::net::SocketAddr>,
    /// Access file.
    pub access: Option<PathBuf>,
    /// Certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP off loopback.
    pub allow_http: bool,
    /// Task logs older than this are removed.
    pub log_retention: Option<std::time::Duration>,
    /// No per-run lines.
    pub quiet: bool,
}

/// Every pipeline of the folders and files given.
fn load_pipelines(paths: &[PathBuf]) -> Result<Vec<ScheduledDag>, Failure> {
    let mut dags = Vec::new();
    for path in paths {
        if path.is_file() {
            let dag = bpg_pipeline::load_dag_file(path).map_err(|d| Failure::invalid(&d))?;
            dags.push(ScheduledDag::new(dag).map_err(|d| Failure::invalid(&d))?);
        } else {
            dags.extend(ScheduledDag::load_dir(path).map_err(|d| Failure::invalid(&d))?);
        }
    }
    if dags.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::Config(format!(
            "bpg: error: {}: no pipeline files (*.yaml, *.yml) to schedule",
            shown.join(", ")
        )));
    }
    Ok(dags)
}

/// Runs the scheduler until a stop signal; exit 0 after a clean shutdown.
pub async fn scheduler(args: SchedulerArgs) -> Result<ExitCode, Failure> {
    let dags = load_pipelines(&args.pipelines)?;
    let web = match args.listen {
        Some(listen) => Some(web_settings(&args, listen)?),
        None => None,
    };
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
    let store: Arc<dyn RunStore> = match &args.state {
        Some(path) => Arc::new(
            SqliteRunStore::open(path)
                .await
                .map_err(|e| Failure::from_error(&format!("--state {}", path.display()), e))?,
        ),
        None => Arc::new(InMemoryRunStore::new()),
    };
    scheduler = scheduler.store(store.clone());
    // Served logs need a directory: beside --state, else one of this process's, removed at exit.
    let mut scratch_logs = None;
    let logs = match (&args.state, &web) {
        (Some(path), _) => Some(crate::run::task_logs_beside(path)?),
        (None, Some(_)) => {
            let dir =
                std::env::temp_dir().join(format!("bpg-scheduler-{}.logs", std::process::id()));
            let logs = TaskLogs::open(&dir).map_err(|e| {
                Failure::Config(format!(
                    "bpg: error: cannot keep task logs in {}: {e}",
                    dir.display()
                ))
            })?;
            scratch_logs = Some(dir);
            Some(logs)
        }
        (None, None) => None,
    };
    if let Some(logs) = &logs {
        scheduler = scheduler.task_logs(logs.clone());
        if let Some(age) = args.log_retention {
            tokio::spawn(apply_retention(logs.clone(), age));
        }
    }
    let stop = CancellationToken::new();
    let mut server = None;
    if let Some(settings) = web {
        let mut service =
            SchedulerWeb::new(dags.iter().cloned(), store.clone(), scheduler.handle())
                .auth(settings.auth.clone());
        if let Some(logs) = &logs {
            service = service.task_logs(logs.clone());
        }
        if let Some(tls) = settings.tls.clone() {
            service = service.tls(tls);
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| {
                Failure::Config(format!(
                    "bpg: error: cannot listen on {}: {e}",
                    settings.listen
                ))
            })?;
        let bound = listener.local_addr().unwrap_or(settings.listen);
        if !args.quiet {
            let scheme = if settings.tls.is_some() {
                "https"
            } else {
                "http"
            };
            eprintln!(
                "{} serving the UI on {scheme}://{bound}/ and Airflow's REST API on {scheme}://{bound}/api/v2 ({})",
                timestamp(),
                if settings.auth.is_required() {
                    "sign-in required"
                } else {
                    "no sign-in: loopback only"
                }
            );
            if args.state.is_none() {
                eprintln!(
                    "{} runs are kept in memory and lost at exit; pass --state FILE to keep them",
                    timestamp()
                );
            }
        }
        if settings.access_file.is_some() || settings.tls.is_some() {
            let auth = settings.auth.clone();
            tokio::spawn(crate::gateway::reload_on_hangup(
                "bpg scheduler",
                settings.access_file.clone(),
                settings.tls.clone(),
                move |access| auth.reload(access),
            ));
        }
        server = Some(tokio::spawn(
            service.serve(listener, stop.clone().cancelled_owned()),
        ));
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
    let signal = tokio::spawn(stop_on_signal(stop.clone()));
    let result = scheduler.run(stop.clone()).await;
    stop.cancel();
    signal.abort();
    let _ = printer.await;
    if let Some(server) = server {
        match server.await {
            Ok(Err(e)) => eprintln!("{} the API server stopped with an error: {e}", timestamp()),
            Err(e) => eprintln!("{} the API server stopped with an error: {e}", timestamp()),
            Ok(Ok(())) => {}
        }
    }
    if let Some(dir) = scratch_logs {
        let _ = std::fs::remove_dir_all(dir);
    }
    result.map_err(|e| Failure::from_error("the scheduler could not start", e))?;
    if !args.quiet {
        eprintln!("{} scheduler stopped", timestamp());
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes task logs older than `age` now and every hour.
async fn apply_retention(logs: TaskLogs, age: std::time::Duration) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let sweep = logs.clone();
        match tokio::task::spawn_blocking(move || sweep.remove_older_than(age)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => eprintln!(
                "{} removed the task logs of {n} runs older than {}",
                timestamp(),
                humantime::format_duration(age)
            ),
            Ok(Err(e)) => eprintln!("{} could not apply the log retention: {e}", timestamp()),
            Err(_) => {}
        }
    }
}

/// How the API and UI are served.
struct WebSettings {
    listen: std::net::SocketAddr,
    auth: Auth,
    access_file: Option<PathBuf>,
    tls: Option<Tls>,
}

/// Checks the flags of `--listen`: off loopback, sign-in and (unless --allow-http) TLS.
fn web_settings(
    args: &SchedulerArgs,
    listen: std::net::SocketAddr,
) -> Result<WebSettings, Failure> {
    let auth = match &args.access {
        Some(path) => {
            Auth::users(Access::from_file(path).map_err(|d| Failure::config_diagnostics(&d))?)
        }
        None => Auth::open(),
    };
    if !auth.is_required() && !listen.ip().is_loopback() {
        return Err(Failure::Config(format!(
            "bpg: error: refusing to listen on {listen}: without --access FILE anyone who can reach it could trigger, cancel and clear runs; give users with --access (the gateway's access file: bpg gateway hash-password, bpg gateway new-token), or listen on 127.0.0.1"
        )));
    }
    let tls = match &args.tls {
        Some((cert, key)) => Some(
            Tls::from_files(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .map_err(|e| Failure::from_error("scheduler TLS", e))?,
        ),
        None => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() && !args.allow_http {
        return Err(Failure::Config(format!(
            "bpg: error: refusing to serve plain HTTP on {listen}: passwords and tokens would cross the network in the clear; give --tls-cert and --tls-key, or --allow-http behind a proxy that terminates TLS"
        )));
    }
    Ok(WebSettings {
        listen,
        auth,
        access_file: args.access.clone(),
        tls,
    })
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
