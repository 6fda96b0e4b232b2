//! `bpg gateway`: serves the Batch Processing Gateway (bpg-gateway) from a config file of either
//! kind (ours, or BPG's own), or the embedded default of two simulated clusters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bpg_gateway::auth::Access;
use bpg_gateway::config::GatewayConfig;
use bpg_gateway::{Tls, TlsFiles};

use crate::failure::{Failure, render};

/// Flags of `bpg gateway`.
pub struct GatewayArgs {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub state: String,
    pub access: Option<PathBuf>,
    /// Certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub allow_http: bool,
    pub quiet: bool,
}

/// `bpg gateway hash-password`: one line of standard input, hashed.
pub fn hash_password() -> Result<ExitCode, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::Failed(format!("bpg: error: cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(Failure::Config(
            "bpg: error: no password on standard input (try: printf '%s' \"$PASSWORD\" | bpg gateway hash-password)".into(),
        ));
    }
    println!("{}", bpg_gateway::auth::hash_password(password));
    Ok(ExitCode::SUCCESS)
}

/// `bpg gateway new-token`: a token and its hash.
pub fn new_token() -> Result<ExitCode, Failure> {
    let (token, hash) = bpg_gateway::auth::new_token();
    println!("token: {token}");
    println!("hash:  {hash}");
    eprintln!(
        "give the token to its user (it is not kept anywhere); put the hash in the user's tokens: in the access file"
    );
    Ok(ExitCode::SUCCESS)
}

/// The address when neither the flag nor the config sets one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn gateway(args: GatewayArgs) -> Result<ExitCode, Failure> {
    let mut config = match &args.config {
        Some(path) => {
            GatewayConfig::from_file(path).map_err(|d| Failure::config_diagnostics(&d))?
        }
        None => GatewayConfig::embedded_default(),
    };
    if let Some(path) = &args.access {
        config.access = Some(Access::from_file(path).map_err(|d| Failure::config_diagnostics(&d))?);
        config.access_file = Some(path.clone());
    }
    if !config.warnings.is_empty() && !args.quiet {
        eprintln!("{}", render(&config.warnings));
    }
    let listen = args.listen.or(config.listen).unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid address"))
    });
    let dev_mode = !config.authenticates();
    if dev_mode && !listen.ip().is_loopback() {
        return Err(Failure::Config(format!(
            "bpg: error: refusing to listen on {listen}: without an access file this gateway checks no password (development mode: any user name is taken at its word), so it listens on loopback only; give users with --access FILE (or gateway.access / accessFile: in the config), or listen on 127.0.0.1"
        )));
    }
    if let Some((cert, key)) = &args.tls {
        config.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let tls = match &config.tls {
        Some(files) => Some(
            Tls::from_files(files.clone()).map_err(|e| Failure::from_error("gateway TLS", e))?,
        ),
        None => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() && !(args.allow_http || config.allow_http) {
        return Err(Failure::Config(format!(
            "bpg: error: refusing to serve plain HTTP on {listen}: passwords and tokens would cross the network in the clear; give --tls-cert and --tls-key (or gateway.tls in the config), or --allow-http behind a proxy that terminates TLS"
        )));
    }
    let access_file = config.access_file.clone();
    let store = bpg_gateway::store::open(&args.state)
        .await
        .map_err(|e| Failure::from_error("gateway state", e))?;
    let location = store.location();
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
        .build()
        .await
        .map_err(|e| Failure::from_error("gateway", e))?;
    if access_file.is_some() || tls.is_some() {
        let reloaded = gateway.clone();
        tokio::spawn(reload_on_hangup(
            "bpg gateway",
            access_file,
            tls.clone(),
            move |access| reloaded.reload_access(access),
        ));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Config(format!("bpg: error: cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(listen);
    if !args.quiet {
        let clusters: Vec<&str> = gateway.clusters().collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "bpg gateway listening on {scheme}://{bound}{context_path} (clusters: {}; state: {}; replica: {})",
            clusters.join(", "),
            location,
            gateway.replica()
        );
        if dev_mode {
            eprintln!(
                "bpg gateway: development mode: no users are configured, any user name is accepted; loopback only"
            );
        }
    }
    let served = match tls {
        Some(tls) => {
            gateway
                .serve_tls(listener, tls, crate::scheduler::stop_signal())
                .await
        }
        None => {
            gateway
                .serve(listener, crate::scheduler::stop_signal())
                .await
        }
    };
    served.map_err(|e| Failure::Failed(format!("bpg: error: gateway: {e}")))?;
    if !args.quiet {
        eprintln!("bpg gateway stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the access file and the TLS files again on every SIGHUP (`bpg gateway` and `bpg
/// scheduler --listen`); a file that no longer loads is reported and the one in place is kept.
pub(crate) async fn reload_on_hangup(
    service: &'static str,
    access: Option<PathBuf>,
    tls: Option<Tls>,
    apply: impl Fn(Access) + Send + 'static,
) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the access and TLS files will not be reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Some(path) = &access {
            match Access::from_file(path) {
                Ok(access) => {
                    let users = access.user_names().count();
                    apply(access);
                    eprintln!(
                        "{service}: reloaded the access file {} ({users} users)",
                        path.display()
                    );
                }
                Err(d) => eprintln!(
                    "{service}: the access file {} was not reloaded, the one in place stays:\n{}",
                    path.display(),
                    render(&d)
                ),
            }
        }
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => eprintln!(
                    "{service}: reloaded the TLS certificate {}",
                    tls.files().cert.display()
                ),
                Err(e) => eprintln!(
                    "{service}: the TLS certificate was not reloaded, the one in place stays: {e}"
                ),
            }
        }
    }
}
