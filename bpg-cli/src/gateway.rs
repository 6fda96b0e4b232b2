//! `bpg gateway`: serves the Batch Processing Gateway (bpg-gateway) from a config file of either
//! kind (ours, or BPG's own), or the embedded default of two simulated clusters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bpg_gateway::config::GatewayConfig;

use crate::failure::{Failure, render};

/// Flags of `bpg gateway`.
pub struct GatewayArgs {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub state: String,
    pub quiet: bool,
}

/// The address when neither the flag nor the config sets one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn gateway(args: GatewayArgs) -> Result<ExitCode, Failure> {
    let config = match &args.config {
        Some(path) => {
            GatewayConfig::from_file(path).map_err(|d| Failure::config_diagnostics(&d))?
        }
        None => GatewayConfig::embedded_default(),
    };
    if !config.warnings.is_empty() && !args.quiet {
        eprintln!("{}", render(&config.warnings));
    }
    let listen = args.listen.or(config.listen).unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid address"))
    });
    let dev_mode = !config.requires_users();
    if dev_mode && !listen.ip().is_loopback() {
        return Err(Failure::Config(format!(
            "bpg: error: refusing to listen on {listen}: this gateway has no users configured (development mode: any user name is accepted), so it only listens on loopback; configure allowed users, or listen on 127.0.0.1"
        )));
    }
    let store = bpg_gateway::store::open(&args.state)
        .await
        .map_err(|e| Failure::from_error("gateway state", e))?;
    let location = store.location();
    let mut config = config;
    if config.settings.upload_dir.is_none() {
        // Beside the SQLite file; in the working directory when the state is on a server.
        let dir = Some(std::path::Path::new(&args.state))
            .filter(|_| !bpg_gateway::store::is_postgres_url(&args.state))
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        config.settings.upload_dir = Some(dir.join("bpg-uploads"));
    }
    let context_path = config.settings.context_path.clone();
    let builder = config
        .builder(store)
        .await
        .map_err(|e| Failure::from_error("gateway clusters", e))?;
    let gateway = builder
        .dev_mode(dev_mode)
        .build()
        .await
        .map_err(|e| Failure::from_error("gateway", e))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Config(format!("bpg: error: cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(listen);
    if !args.quiet {
        let clusters: Vec<&str> = gateway.clusters().collect();
        eprintln!(
            "bpg gateway listening on http://{bound}{context_path} (clusters: {}; state: {})",
            clusters.join(", "),
            location
        );
        if dev_mode {
            eprintln!(
                "bpg gateway: development mode: no users are configured, any user name is accepted; loopback only"
            );
        }
    }
    gateway
        .serve(listener, crate::scheduler::stop_signal())
        .await
        .map_err(|e| Failure::Failed(format!("bpg: error: gateway: {e}")))?;
    if !args.quiet {
        eprintln!("bpg gateway stopped");
    }
    Ok(ExitCode::SUCCESS)
}
