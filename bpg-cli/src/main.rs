//! The `bpg` command line: check, route, submit and run Spark applications and pipelines.
//!
//! Commands and flags follow DESIGN.md §8. Exit codes: 0 success; 1 a job, task or validation
//! failed (including an invalid file given as the command's subject); 2 a usage or configuration
//! error (bad flags, an unknown connection, an invalid connections or rules file).

/// `println!` that ignores a closed stdout, so `bpg ... | head` ends quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod connections;
mod failure;
mod gateway;
mod graph;
mod import;
mod jobs;
mod progress;
mod route;
mod run;
mod scheduler;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::failure::Failure;

/// Spark applications and pipelines across many clusters.
#[derive(Debug, Parser)]
#[command(name = "bpg", version, about, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success, 1 a job/task/validation failed, 2 usage or configuration error.\n\
Connections come from --connections FILE (or $BPG_CONNECTIONS) and BPG_CONN_<NAME>=URL variables.\n\
RUST_LOG sets the tracing filter (default: warn)."
)]
struct Cli {
    /// Print only errors and the command's result: no progress, no log lines, no summary.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ConnectionArgs {
    /// The connection to use (from --connections or a BPG_CONN_<NAME> variable).
    #[arg(long)]
    connection: String,
    /// Connections file (see examples/connections/).
    #[arg(long, env = "BPG_CONNECTIONS")]
    connections: Option<PathBuf>,
}

/// Output format of `bpg graph`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum GraphFormat {
    /// A Mermaid flowchart (renders in GitHub Markdown).
    #[default]
    Mermaid,
    /// Graphviz dot.
    Dot,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check application, pipeline, connections and routing rules files (the kind is detected).
    Validate {
        /// Files to check; every problem is reported as FILE:LINE:COL: message.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert ScheduledSparkApplications and Airflow DAG files (.py, read, never run) into
    /// pipelines, plus a connections skeleton; report what could not be converted.
    Import {
        /// Output folder (default: the current folder).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Anything that cannot be converted is an error and its file is not written.
        #[arg(long)]
        strict: bool,
        /// ScheduledSparkApplication (.yaml) and Airflow DAG (.py) files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Decide which cluster an application goes to under a routing rules file.
    Route {
        /// Routing rules file.
        #[arg(long)]
        rules: PathBuf,
        /// Application file (BPG request or SparkApplication manifest, JSON or YAML).
        file: PathBuf,
        /// Show the rules matched, the constraints applied and every candidate cluster.
        #[arg(long)]
        explain: bool,
        /// Print the decision (with its explanation) as JSON.
        #[arg(long, conflicts_with = "explain")]
        json: bool,
        /// The submitting user, for rules and queues that match on users.
        #[arg(long)]
        user: Option<String>,
        /// Seed for weighted-random routes, for repeatable decisions.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Submit an application file through a connection; prints the submission id.
    Submit {
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Application file (BPG request or SparkApplication manifest, JSON or YAML).
        file: PathBuf,
        /// Wait for the job to end; exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
        /// Stream the driver log until the job ends.
        #[arg(long)]
        follow_logs: bool,
    },
    /// Show a submitted job's state.
    Status {
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Submission id (as printed by `bpg submit`).
        id: String,
        /// Ask the bpg gateway why the job went where it went, and what it waits for.
        #[arg(long)]
        explain: bool,
    },
    /// Print a submitted job's driver log.
    Logs {
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Submission id.
        id: String,
        /// Keep printing lines until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a submitted job.
    Cancel {
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Submission id.
        id: String,
    },
    /// Run a pipeline file to the end, with live progress and a summary.
    Run {
        /// Pipeline file (YAML, see examples/pipelines/).
        pipeline: PathBuf,
        /// Connections file.
        #[arg(long, env = "BPG_CONNECTIONS")]
        connections: Option<PathBuf>,
        /// SQLite file that keeps the run's progress, so a restarted run can resume.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Run id (default: manual__<now>).
        #[arg(long)]
        run_id: Option<String>,
        /// Continue the unfinished run named by --run-id from --state: finished tasks keep
        /// their outcomes, running Spark jobs are reattached (never submitted again), and
        /// retries continue on their schedule.
        #[arg(long, requires_all = ["state", "run_id"])]
        resume: bool,
        /// Write the JSON run report to this file.
        #[arg(long, value_name = "REPORT")]
        json: Option<PathBuf>,
        /// How often Spark job status is polled on backends that cannot watch (e.g. "500ms").
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1s")]
        poll_interval: std::time::Duration,
    },
    /// Run every pipeline of a folder on its schedule until Ctrl-C or SIGTERM; with --listen,
    /// also serve the web UI and Airflow's REST API (/api/v2).
    Scheduler {
        /// Folders of pipeline files (*.yaml, *.yml), or pipeline files.
        #[arg(required = true, num_args = 1..)]
        pipelines: Vec<PathBuf>,
        /// Connections file.
        #[arg(long, env = "BPG_CONNECTIONS")]
        connections: Option<PathBuf>,
        /// SQLite file that records the runs, so a restarted scheduler does not repeat intervals
        /// (task logs are kept beside it, in FILE.logs/).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Serve Airflow's REST API (/api/v2) and the web UI on this address, e.g. 127.0.0.1:8081.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Users who may sign in (the gateway's access file: argon2id password hashes, token
        /// hashes). Required to listen on anything but loopback.
        #[arg(long)]
        access: Option<PathBuf>,
        /// TLS certificate chain (PEM), with --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM), with --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address (behind a proxy that terminates TLS).
        #[arg(long)]
        allow_http: bool,
        /// Remove task logs older than this (e.g. 30d), checked at start and hourly. Default:
        /// kept until removed by hand.
        #[arg(long, value_parser = humantime::parse_duration)]
        log_retention: Option<std::time::Duration>,
    },
    /// Serve the Batch Processing Gateway: BPG's REST API routing jobs to clusters, until Ctrl-C
    /// or SIGTERM. Without --config: two simulated clusters (analytics, and datascience for PHI),
    /// any user name accepted, loopback only.
    #[command(args_conflicts_with_subcommands = true)]
    Gateway {
        /// Gateway config: ours (gateway:, rules:, connections:) or BPG's own (sparkClusters:,
        /// or Helm values with plainConfig:); the kind is detected.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (default: the config's, else 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where submissions are kept: a SQLite file (created if missing), or a
        /// postgres://user:password@host/db URL that several gateway replicas share.
        #[arg(long, default_value = "bpg-gateway.db")]
        state: String,
        /// Access file (users with hashed passwords and tokens, queue permissions, trusted
        /// proxies); overrides the config's. Without one: development mode, loopback only.
        /// Read again on SIGHUP.
        #[arg(long)]
        access: Option<PathBuf>,
        /// Serve HTTPS with this certificate chain (PEM; with --tls-key). Read again on SIGHUP.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on an address other than loopback (behind a proxy that terminates
        /// TLS); without it, plain HTTP is served on loopback only.
        #[arg(long)]
        allow_http: bool,
        #[command(subcommand)]
        tool: Option<GatewayTool>,
    },
    /// Draw a pipeline's task graph.
    Graph {
        /// Pipeline file.
        pipeline: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: GraphFormat,
    },
}

/// Helpers for the gateway's access file.
#[derive(Debug, Subcommand)]
enum GatewayTool {
    /// Read a password from standard input (one line) and print its argon2id hash, for an access
    /// file's `password:`. Never pass a password as an argument, where `ps` and shell history
    /// would keep it.
    HashPassword,
    /// Make a bearer token: prints the token (give it to its user; it is not kept) and the hash
    /// for the user's `tokens:` in the access file.
    NewToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) => {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                eprintln!("bpg: warning: RUST_LOG is not a valid filter ({e}); using `warn`");
            }
            EnvFilter::new("warn")
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into CI logs or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bpg: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    }
}

async fn execute(cli: Cli) -> Result<ExitCode, Failure> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Validate { files } => Ok(validate::validate(&files, quiet)),
        Command::Import { out, strict, files } => Ok(import::import(&import::ImportArgs {
            out: &out,
            strict,
            files: &files,
        })),
        Command::Route {
            rules,
            file,
            explain,
            json,
            user,
            seed,
        } => route::route(&route::RouteArgs {
            rules,
            file,
            explain,
            json,
            user,
            seed,
        }),
        Command::Submit {
            connection,
            file,
            wait,
            follow_logs,
        } => jobs::submit(&connection, &file, wait, follow_logs, quiet).await,
        Command::Status {
            connection,
            id,
            explain,
        } => jobs::status(&connection, &id, explain).await,
        Command::Logs {
            connection,
            id,
            follow,
        } => jobs::logs(&connection, &id, follow).await,
        Command::Cancel { connection, id } => jobs::cancel(&connection, &id, quiet).await,
        Command::Run {
            pipeline,
            connections,
            state,
            run_id,
            resume,
            json,
            poll_interval,
        } => {
            run::run(run::RunArgs {
                pipeline,
                connections,
                state,
                run_id,
                resume,
                json,
                poll_interval,
                quiet,
            })
            .await
        }
        Command::Scheduler {
            pipelines,
            connections,
            state,
            listen,
            access,
            tls_cert,
            tls_key,
            allow_http,
            log_retention,
        } => {
            scheduler::scheduler(scheduler::SchedulerArgs {
                log_retention,
                pipelines,
                connections,
                state,
                listen,
                access,
                tls: tls_cert.zip(tls_key),
                allow_http,
                quiet,
            })
            .await
        }
        Command::Gateway {
            tool: Some(tool), ..
        } => match tool {
            GatewayTool::HashPassword => gateway::hash_password(),
            GatewayTool::NewToken => gateway::new_token(),
        },
        Command::Gateway {
            config,
            listen,
            state,
            access,
            tls_cert,
            tls_key,
            allow_http,
            tool: None,
        } => {
            gateway::gateway(gateway::GatewayArgs {
                config,
                listen,
                state,
                access,
                tls: tls_cert.zip(tls_key),
                allow_http,
                quiet,
            })
            .await
        }
        Command::Graph { pipeline, format } => graph::graph(&pipeline, format),
    }
}
