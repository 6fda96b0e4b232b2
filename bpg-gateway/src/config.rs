//! Reading a gateway's configuration: ours (routing rules + connections + a `gateway:` section)
//! or **BPG's own** (`sparkClusters`, `queues`, ..., top-level or as Helm values under
//! `plainConfig:`), told apart by their top-level keys.
//!
//! Ours, every path relative to the file:
//!
//! ```yaml
//! gateway:                       # optional; every key optional
//!   listen: 127.0.0.1:8080
//!   context_path: /skatev2
//!   aliases: [/apiv2]
//!   access: access.yaml          # users, tokens, queue permissions (see `auth`); absent:
//!                                # development mode (any user name, loopback only)
//!   allowed_users: ["*"]         # BPG's lists, applied after authentication
//!   blocked_users: []
//!   admin_users: [ops]           # admins besides those the access file marks
//!   tls: {cert: tls.crt, key: tls.key}   # HTTPS (PEM); reloaded on SIGHUP
//!   allow_http: false            # plain HTTP beyond loopback (behind a TLS-terminating proxy)
//!   limits:                      # see `auth::Limits`
//!     requests_per_second: 50    # per user
//!     max_in_flight_per_user: 500
//!     max_log_streams: 256
//!     failed_sign_ins_per_minute: 10
//!     header_read_timeout: 10s
//!   default_spark_conf: {spark.eventLog.enabled: "false"}
//!   fixed_spark_conf: {}
//!   spark_images: [{name: "apache/spark:3.5.0", types: [Python, Scala], version: "3.5"}]
//!   poll_interval: 1s
//!   submit_wait: 30s
//!   request_timeout: 60s
//!   lease: 3s                    # how long a replica holds what it follows (see `store`)
//!   max_body_bytes: 16777216
//!   upload_dir: uploads
//!   clusters:                    # per cluster id of the rules
//!     analytics: {max_in_flight: 100, max_calls_per_second: 20}
//! rules: rules.yaml              # bpg-router rules; each cluster names a connection
//! connections: connections.yaml  # the connections those names resolve to
//! ```
//!
//! BPG's: `sparkClusters` (each reached through its `masterUrl` with `caCertDataSOPS` and
//! `userTokenSOPS`, or, our extension, through `connection: <url>` such as `sim://`), `queues`,
//! `sparkImages`, `defaultSparkConf`, `fixedSparkConf`, `allowedUsers`, `blockedUsers`,
//! `statusCacheExpireMillis`, `applicationContextPath`, `adminUsers` (enforced, unlike BPG), and
//! our extension `accessFile:` (the [access file](crate::auth), relative to the file). Every other key is reported as a warning
//! naming its line; nothing is silently dropped. A cluster with neither a `masterUrl` nor a
//! `connection` is kept, and reported unavailable: jobs routed to it wait.
//!
//! ```
//! let bpg = r#"
//! sparkClusters:
//!   - {id: analytics-cluster, weight: 50, sparkVersions: ["3.5"], queues: [dev], connection: "sim://"}
//!   - {id: datascience-cluster, weight: 50, sparkVersions: ["3.5"], queues: [dev], connection: "sim://"}
//! queues: [{name: dev}]
//! allowedUsers: ["*"]
//! s3Bucket: my-bucket
//! "#;
//! let config = bpg_gateway::config::GatewayConfig::from_yaml(bpg, None).unwrap();
//! assert_eq!(config.kind, bpg_gateway::config::ConfigKind::Bpg);
//! assert_eq!(config.rules.cluster_ids().count(), 2);
//! let warning = config.warnings.warnings().next().unwrap();
//! assert_eq!((warning.field.as_str(), warning.line), ("s3Bucket", Some(7)));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bpg_backends::connect::{Connection, ConnectionRegistry, Resilience};
use bpg_core::{Backend, Diagnostic, Diagnostics, Error};
use bpg_router::{RoutingRules, RulesConfig};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Access;
use crate::service::{ClusterSettings, Settings, SparkImage};
use crate::{Gateway, GatewayBuilder, SubmissionStore};

/// Which kind of file a configuration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    /// Ours: `gateway:`, `rules:`, `connections:`.
    Gateway,
    /// BPG's: `sparkClusters:` (or Helm values with `plainConfig:`).
    Bpg,
}

/// The top-level keys of a YAML document (lines that start a key at column 0).
fn top_level_keys(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']) && !l.trim().is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
        })
        .collect()
}

/// Tells the two kinds apart; `None` when the text is neither.
///
/// ```
/// use bpg_gateway::config::{ConfigKind, detect};
/// assert_eq!(detect("plainConfig:\n  sparkClusters: []\n"), Some(ConfigKind::Bpg));
/// assert_eq!(detect("rules: rules.yaml\nconnections: c.yaml\n"), Some(ConfigKind::Gateway));
/// assert_eq!(detect("dag_id: x\n"), None);
/// ```
pub fn detect(text: &str) -> Option<ConfigKind> {
    let keys = top_level_keys(text);
    let has = |k: &str| keys.contains(&k);
    if has("sparkClusters") || has("plainConfig") {
        Some(ConfigKind::Bpg)
    } else if has("gateway") || (has("rules") && has("connections")) {
        Some(ConfigKind::Gateway)
    } else {
        None
    }
}

/// How a cluster of a BPG configuration is reached.
#[derive(Clone)]
enum Reach {
    /// A connection URL (our extension).
    Connection(String),
    /// Its Kubernetes API server.
    Kubernetes {
        master_url: String,
        namespace: Option<String>,
        ca_data: Option<String>,
        token: Option<SecretString>,
        timeout: Option<Duration>,
    },
    /// Not reachable as configured; why.
    Unreachable(String),
}

/// A loaded configuration, ready to build a [`Gateway`].
#[non_exhaustive]
pub struct GatewayConfig {
    /// Which kind of file it was.
    pub kind: ConfigKind,
    /// Settings.
    pub settings: Settings,
    /// Routing rules.
    pub rules: RoutingRules,
    /// Where the listen address was set, if it was.
    pub listen: Option<SocketAddr>,
    /// Problems that did not stop loading (unsupported BPG keys, unreachable clusters).
    pub warnings: Diagnostics,
    /// Who may call (the access file); `None`: development mode.
    pub access: Option<Access>,
    /// Where the access file is, to read it again on reload.
    pub access_file: Option<PathBuf>,
    /// HTTPS: the certificate and key files (`gateway.tls`).
    pub tls: Option<crate::TlsFiles>,
    /// Plain HTTP on an address other than loopback (`gateway.allow_http`: behind a proxy that
    /// terminates TLS).
    pub allow_http: bool,
    connections: ConnectionRegistry,
    reach: BTreeMap<String, Reach>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("listen", &self.listen)
            .field("clusters", &self.rules.cluster_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn located(d: Diagnostic, file: Option<&Path>) -> Diagnostic {
    match file {
        Some(f) => d.with_file(f),
        None => d,
    }
}

/// The first line (1-based) where `key:` starts an entry, searching from line `from`.
fn line_of(text: &str, key: &str, from: usize) -> Option<(usize, usize)> {
    text.lines().enumerate().skip(from).find_map(|(i, l)| {
        let trimmed = l.trim_start_matches([' ', '-']);
        let col = l.len() - trimmed.len() + 1;
        let rest = trimmed.strip_prefix(key)?;
        let rest = rest.trim_start_matches(['"', '\'']);
        rest.starts_with(':').then_some((i + 1, col))
    })
}

fn parse_duration(field: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        format!("{field}: expected a duration such as 500ms or 30s, got {value:?} ({e})")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OurFile {
    #[serde(default)]
    gateway: OurSettings,
    rules: String,
    connections: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OurSettings {
    listen: Option<String>,
    context_path: Option<String>,
    aliases: Option<Vec<String>>,
    access: Option<String>,
    allowed_users: Option<Vec<String>>,
    #[serde(default)]
    blocked_users: Vec<String>,
    #[serde(default)]
    admin_users: Vec<String>,
    limits: Option<OurLimits>,
    tls: Option<OurTls>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    default_spark_conf: BTreeMap<String, ConfValue>,
    #[serde(default)]
    fixed_spark_conf: BTreeMap<String, ConfValue>,
    #[serde(default)]
    spark_images: Vec<OurImage>,
    poll_interval: Option<String>,
    submit_wait: Option<String>,
    request_timeout: Option<String>,
    lease: Option<String>,
    max_body_bytes: Option<usize>,
    upload_dir: Option<String>,
    #[serde(default)]
    clusters: BTreeMap<String, OurCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OurTls {
    cert: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OurLimits {
    requests_per_second: Option<u32>,
    max_in_flight_per_user: Option<u32>,
    max_log_streams: Option<usize>,
    failed_sign_ins_per_minute: Option<u32>,
    header_read_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OurImage {
    name: String,
    types: Vec<String>,
    version: ConfValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OurCluster {
    max_in_flight: Option<u32>,
    max_calls_per_second: Option<u32>,
    #[serde(default)]
    spark_conf: BTreeMap<String, ConfValue>,
    spark_service_account: Option<String>,
    ttl_seconds: Option<i64>,
}

/// A conf value written as a string, number or boolean (YAML users write `2000` and `true`).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum ConfValue {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

impl ConfValue {
    fn into_string(self) -> String {
        match self {
            ConfValue::S(s) => s,
            ConfValue::I(i) => i.to_string(),
            ConfValue::F(f) => f.to_string(),
            ConfValue::B(b) => b.to_string(),
        }
    }
}

fn conf(map: BTreeMap<String, ConfValue>) -> BTreeMap<String, String> {
    map.into_iter().map(|(k, v)| (k, v.into_string())).collect()
}

fn resolve(base: Option<&Path>, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    match base.and_then(Path::parent) {
        Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
        _ => p,
    }
}

impl GatewayConfig {
    /// Reads a configuration file of either kind.
    pub fn from_file(path: impl AsRef<Path>) -> Result<GatewayConfig, Diagnostics> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::from(
                Diagnostic::error("", format!("cannot read the gateway configuration: {e}"))
                    .with_file(path),
            )
        })?;
        GatewayConfig::from_yaml(&text, Some(path))
    }

    /// Reads a configuration of either kind from text; `file` names it in diagnostics and is the
    /// base of relative paths.
    pub fn from_yaml(text: &str, file: Option<&Path>) -> Result<GatewayConfig, Diagnostics> {
        match detect(text) {
            Some(ConfigKind::Bpg) => GatewayConfig::from_bpg(text, file),
            Some(ConfigKind::Gateway) => GatewayConfig::from_ours(text, file),
            None => Err(located(
                Diagnostic::error(
                    "",
                    "not a gateway configuration: expected BPG's (`sparkClusters:`, or Helm values with `plainConfig:`) or ours (`gateway:`, `rules:`, `connections:`)",
                ),
                file,
            )
            .into()),
        }
    }

    /// The embedded default: two simulated clusters, `analytics` and `datascience` (tagged
    /// `phi-compliant`, and the only place jobs labelled `data-classification: phi` may run),
    /// every queue accepted, any user name let in (development mode).
    pub fn embedded_default() -> GatewayConfig {
        const RULES: &str = r#"
clusters:
  - {id: analytics, connection: analytics, tags: {capacity: spot}}
  - {id: datascience, connection: datascience, tags: {phi-compliant: "true"}}
constraints:
  - name: phi-isolation
    when: {labels: {data-classification: phi}}
    require_tags: {phi-compliant: "true"}
rules:
  - name: phi-to-compliant
    match: {labels: {data-classification: phi}}
    route: {clusters: [datascience]}
default: {clusters: [analytics]}
"#;
        let rules = RoutingRules::from_yaml(RULES, None)
            .unwrap_or_else(|d| unreachable!("the built-in rules are valid: {d}"));
        let mut connections = ConnectionRegistry::new();
        for name in ["analytics", "datascience"] {
            if let Ok(c) = Connection::from_url(name, "sim://?duration=2s") {
                connections.insert(c);
            }
        }
        GatewayConfig {
            kind: ConfigKind::Gateway,
            settings: Settings::default(),
            rules,
            listen: None,
            warnings: Diagnostics::new(),
            access: None,
            access_file: None,
            tls: None,
            allow_http: false,
            connections,
            reach: BTreeMap::new(),
        }
    }

    fn from_ours(text: &str, file: Option<&Path>) -> Result<GatewayConfig, Diagnostics> {
        let raw: OurFile = serde_saphyr::from_str(text)
            .map_err(|e| Diagnostics::from(located(Diagnostic::from_yaml_error(&e, text), file)))?;
        let mut problems = Diagnostics::new();
        let at = |field: &str, message: String| {
            let key = field.rsplit('.').next().unwrap_or(field);
            let d = Diagnostic::error(field, message);
            let d = match line_of(text, key, 0) {
                Some((l, c)) => d.at(l, c),
                None => d,
            };
            located(d, file)
        };
        let s = raw.gateway;
        let mut settings = Settings::default();
        if let Some(p) = s.context_path {
            settings.context_path = p;
        }
        if let Some(a) = s.aliases {
            settings.aliases = a;
        }
        settings.allowed_users = s.allowed_users;
        settings.blocked_users = s.blocked_users;
        settings.admin_users = s.admin_users;
        if let Some(l) = s.limits {
            let limits = &mut settings.limits;
            limits.requests_per_second = l.requests_per_second;
            limits.max_in_flight_per_user = l.max_in_flight_per_user;
            if let Some(n) = l.max_log_streams {
                limits.max_log_streams = n;
            }
            if let Some(n) = l.failed_sign_ins_per_minute {
                limits.failed_sign_ins_per_minute = n;
            }
            if let Some(v) = l.header_read_timeout {
                match parse_duration("gateway.limits.header_read_timeout", &v) {
                    Ok(d) => limits.header_read_timeout = d,
                    Err(e) => problems.push(at("gateway.limits.header_read_timeout", e)),
                }
            }
        }
        let tls = s.tls.map(|t| crate::TlsFiles {
            cert: resolve(file, &t.cert),
            key: resolve(file, &t.key),
        });
        let allow_http = s.allow_http;
        let access_file = s.access.as_deref().map(|a| resolve(file, a));
        let access = match &access_file {
            Some(a) => match Access::from_file(a) {
                Ok(a) => Some(a),
                Err(d) => {
                    problems.0.extend(d.0);
                    None
                }
            },
            None => None,
        };
        settings.default_spark_conf = conf(s.default_spark_conf);
        settings.fixed_spark_conf = conf(s.fixed_spark_conf);
        settings.spark_images = s
            .spark_images
            .into_iter()
            .map(|i| SparkImage {
                name: i.name,
                types: i.types,
                version: i.version.into_string(),
            })
            .collect();
        for (field, value, slot) in [
            (
                "gateway.poll_interval",
                s.poll_interval,
                &mut settings.poll_interval,
            ),
            (
                "gateway.submit_wait",
                s.submit_wait,
                &mut settings.submit_wait,
            ),
            (
                "gateway.request_timeout",
                s.request_timeout,
                &mut settings.request_timeout,
            ),
            ("gateway.lease", s.lease, &mut settings.lease),
        ] {
            if let Some(v) = value {
                match parse_duration(field, &v) {
                    Ok(d) => *slot = d,
                    Err(e) => problems.push(at(field, e)),
                }
            }
        }
        if let Some(n) = s.max_body_bytes {
            settings.max_body_bytes = n;
        }
        settings.upload_dir = s.upload_dir.map(|d| resolve(file, &d));
        for (id, c) in s.clusters {
            settings.clusters.insert(
                id,
                ClusterSettings {
                    max_in_flight: c.max_in_flight,
                    max_calls_per_second: c.max_calls_per_second,
                    spark_conf: conf(c.spark_conf),
                    spark_service_account: c.spark_service_account,
                    ttl_seconds: c.ttl_seconds,
                },
            );
        }
        let listen = match s.listen {
            Some(l) => match l.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(at(
                        "gateway.listen",
                        format!("expected an address such as 127.0.0.1:8080, got {l:?} ({e})"),
                    ));
                    None
                }
            },
            None => None,
        };
        let rules = RoutingRules::from_file(resolve(file, &raw.rules));
        let mut connections = ConnectionRegistry::new();
        let loaded = connections
            .load_file(resolve(file, &raw.connections))
            .map(|_| ());
        let rules = match (rules, loaded) {
            (Ok(rules), Ok(())) => Some(rules),
            (r, c) => {
                if let Err(d) = r {
                    problems.0.extend(d.0);
                }
                if let Err(d) = c {
                    problems.0.extend(d.0);
                }
                None
            }
        };
        if let Some(rules) = &rules {
            for id in settings.clusters.keys() {
                if !rules.cluster_ids().any(|c| c == id) {
                    problems.push(at(
                        &format!("gateway.clusters.{id}"),
                        format!(
                            "no cluster {id} in the rules; clusters: {}",
                            rules.cluster_ids().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            for id in rules.cluster_ids() {
                let name = rules.connection_of(id).unwrap_or(id);
                if !connections.names().iter().any(|n| n == name)
                    && !bpg_core::Connections::contains(&connections, name)
                {
                    problems.push(located(
                        Diagnostic::error(
                            "connections",
                            format!("cluster {id} uses connection {name}, which the connections file does not define"),
                        ),
                        file,
                    ));
                }
            }
        }
        if problems.has_errors() {
            return Err(problems);
        }
        Ok(GatewayConfig {
            kind: ConfigKind::Gateway,
            settings,
            rules: rules.unwrap_or_else(|| unreachable!("errors returned above")),
            listen,
            warnings: problems,
            access,
            access_file,
            tls,
            allow_http,
            connections,
            reach: BTreeMap::new(),
        })
    }

    fn from_bpg(text: &str, file: Option<&Path>) -> Result<GatewayConfig, Diagnostics> {
        let options = serde_saphyr::options! {
            duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
        };
        let root: Value = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| Diagnostics::from(located(Diagnostic::from_yaml_error(&e, text), file)))?;
        // Helm values: the configuration is the `plainConfig:` key; the chart's own keys are not ours.
        let (config, offset) = match root.get("plainConfig") {
            Some(plain) => (
                plain.clone(),
                line_of(text, "plainConfig", 0).map_or(0, |(l, _)| l),
            ),
            None => (root, 0),
        };
        let Value::Object(config) = config else {
            return Err(located(
                Diagnostic::error("", "expected a mapping of BPG settings"),
                file,
            )
            .into());
        };
        let mut warnings = Diagnostics::new();
        let mut errors = Diagnostics::new();
        let at = |field: &str, key: &str, from: usize, message: String, error: bool| {
            let d = if error {
                Diagnostic::error(field, message)
            } else {
                Diagnostic::warning(field, message)
            };
            let d = match line_of(text, key, from) {
                Some((l, c)) => d.at(l, c),
                None => d,
            };
            located(d, file)
        };
        const SUPPORTED: &[&str] = &[
            "sparkClusters",
            "queues",
            "sparkImages",
            "defaultSparkConf",
            "fixedSparkConf",
            "allowedUsers",
            "blockedUsers",
            "adminUsers",
            "accessFile",
            "statusCacheExpireMillis",
            "applicationContextPath",
        ];
        for key in config.keys() {
            if !SUPPORTED.contains(&key.as_str()) {
                let why = match key.as_str() {
                    "server" | "logging" | "metrics" => {
                        "Dropwizard settings do not apply: use --listen and RUST_LOG"
                    }
                    "dbStorageSOPS" => "the gateway keeps its own store (--state)",
                    "s3Bucket" | "s3Folder" => "uploads go to the gateway's upload directory",
                    "queueTokenSOPS" => "secure queues (queue tokens) are not supported",
                    _ => "not supported by bpg-gateway",
                };
                warnings.push(at(
                    key,
                    key,
                    offset,
                    format!("{key} is ignored: {why}"),
                    false,
                ));
            }
        }
        let mut settings = Settings::default();
        if let Some(Value::String(p)) = config.get("applicationContextPath") {
            settings.context_path = p.clone();
        }
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::Array(a)) => a.iter().map(scalar).collect(),
                _ => Vec::new(),
            }
        };
        // BPG lets nobody in without `allowedUsers`.
        settings.allowed_users = Some(strings(config.get("allowedUsers")));
        if settings.allowed_users.as_ref().is_some_and(Vec::is_empty) {
            warnings.push(at(
                "allowedUsers",
                "sparkClusters",
                offset,
                "no allowedUsers: as in BPG, nobody can use the gateway (add allowedUsers: ['*'])"
                    .into(),
                false,
            ));
        }
        settings.blocked_users = strings(config.get("blockedUsers"));
        settings.admin_users = strings(config.get("adminUsers"));
        let access_file = match config.get("accessFile") {
            Some(Value::String(p)) => Some(resolve(file, p)),
            Some(_) => {
                errors.push(at(
                    "accessFile",
                    "accessFile",
                    offset,
                    "expected the path of an access file".into(),
                    true,
                ));
                None
            }
            None => None,
        };
        let access = access_file
            .as_ref()
            .and_then(|path| match Access::from_file(path) {
                Ok(a) => Some(a),
                Err(d) => {
                    errors.0.extend(d.0);
                    None
                }
            });
        settings.default_spark_conf = string_map(config.get("defaultSparkConf"));
        settings.fixed_spark_conf = string_map(config.get("fixedSparkConf"));
        if let Some(v) = config.get("statusCacheExpireMillis") {
            match v.as_u64() {
                Some(ms) => settings.poll_interval = Duration::from_millis(ms.max(100)),
                None => errors.push(at(
                    "statusCacheExpireMillis",
                    "statusCacheExpireMillis",
                    offset,
                    format!("expected milliseconds, got {v}"),
                    true,
                )),
            }
        }
        if let Some(Value::Array(images)) = config.get("sparkImages") {
            for (i, image) in images.iter().enumerate() {
                match (
                    image.get("name").and_then(Value::as_str),
                    image.get("version"),
                ) {
                    (Some(name), Some(version)) => settings.spark_images.push(SparkImage {
                        name: name.to_owned(),
                        types: strings(image.get("types")),
                        version: scalar(version),
                    }),
                    _ => errors.push(at(
                        &format!("sparkImages[{i}]"),
                        "sparkImages",
                        offset,
                        "expected name, types and version".into(),
                        true,
                    )),
                }
            }
        }
        const CLUSTER_KEYS: &[&str] = &[
            "id",
            "weight",
            "sparkVersions",
            "queues",
            "sparkApplicationNamespace",
            "masterUrl",
            "caCertDataSOPS",
            "userTokenSOPS",
            "userName",
            "timeoutMillis",
            "sparkConf",
            "sparkServiceAccount",
            "ttlSeconds",
            "eksCluster",
            "connection",
        ];
        let mut reach = BTreeMap::new();
        let clusters = match config.get("sparkClusters") {
            Some(Value::Array(c)) => c.clone(),
            _ => Vec::new(),
        };
        if clusters.is_empty() {
            errors.push(at(
                "sparkClusters",
                "sparkClusters",
                offset,
                "expected at least one cluster".into(),
                true,
            ));
        }
        let mut search_from = offset;
        for (i, c) in clusters.iter().enumerate() {
            let field = format!("sparkClusters[{i}]");
            let Some(id) = c.get("id").map(scalar).filter(|s| !s.is_empty()) else {
                errors.push(at(
                    &field,
                    "sparkClusters",
                    offset,
                    "a cluster needs an id".into(),
                    true,
                ));
                continue;
            };
            let here = line_of(text, "id", search_from).map_or(search_from, |(l, _)| l - 1);
            search_from = here + 1;
            if let Value::Object(m) = c {
                for key in m.keys() {
                    if !CLUSTER_KEYS.contains(&key.as_str()) {
                        warnings.push(at(
                            &format!("{field}.{key}"),
                            key,
                            here.saturating_sub(1),
                            format!(
                                "{key} of cluster {id} is ignored: not supported by bpg-gateway"
                            ),
                            false,
                        ));
                    }
                }
            }
            let text_of = |k: &str| c.get(k).map(scalar).filter(|s| !s.is_empty());
            let cluster_reach = match (text_of("connection"), text_of("masterUrl")) {
                (Some(url), _) => Reach::Connection(url),
                (None, Some(master_url)) => {
                    let token = match text_of("userTokenSOPS")
                        .map(|v| decode_sops(&v))
                        .transpose()
                    {
                        Ok(t) => t,
                        Err(e) => {
                            errors.push(at(
                                &format!("{field}.userTokenSOPS"),
                                "userTokenSOPS",
                                here,
                                e,
                                true,
                            ));
                            None
                        }
                    };
                    let ca_data = match text_of("caCertDataSOPS")
                        .map(|v| decode_sops(&v))
                        .transpose()
                    {
                        Ok(ca) => ca.map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned()),
                        Err(e) => {
                            errors.push(at(
                                &format!("{field}.caCertDataSOPS"),
                                "caCertDataSOPS",
                                here,
                                e,
                                true,
                            ));
                            None
                        }
                    };
                    Reach::Kubernetes {
                        master_url,
                        namespace: text_of("sparkApplicationNamespace"),
                        ca_data,
                        token,
                        timeout: c
                            .get("timeoutMillis")
                            .and_then(Value::as_u64)
                            .map(Duration::from_millis),
                    }
                }
                (None, None) => {
                    let why = format!(
                        "cluster {id} has neither masterUrl nor connection: jobs routed to it wait until it is configured"
                    );
                    warnings.push(at(&field, "id", here, why.clone(), false));
                    Reach::Unreachable(why)
                }
            };
            reach.insert(id.clone(), cluster_reach);
            let cluster = ClusterSettings {
                spark_conf: string_map(c.get("sparkConf")),
                spark_service_account: text_of("sparkServiceAccount"),
                ttl_seconds: c.get("ttlSeconds").and_then(Value::as_i64),
                ..ClusterSettings::default()
            };
            settings.clusters.insert(id, cluster);
        }
        // Routing as BPG routes: the router's importer reads the same keys.
        let routing_text =
            serde_json::to_string(&Value::Object(config.clone())).unwrap_or_default();
        let rules = RulesConfig::from_bpg_config(&routing_text, file, None)
            .and_then(|r| RoutingRules::new(r).map_err(|d| d.with_file_opt(file)));
        let rules = match rules {
            Ok(r) => Some(r),
            Err(d) => {
                errors.0.extend(d.0);
                None
            }
        };
        if errors.has_errors() {
            errors.0.extend(warnings.0);
            return Err(errors);
        }
        let mut connections = ConnectionRegistry::new();
        for (id, r) in &reach {
            if let Reach::Connection(url) = r {
                match Connection::from_url(id, url) {
                    Ok(c) => {
                        connections.insert(c);
                    }
                    Err(e) => {
                        errors.push(at(
                            &format!("sparkClusters.{id}.connection"),
                            "connection",
                            offset,
                            e.to_string(),
                            true,
                        ));
                    }
                }
            }
        }
        if errors.has_errors() {
            return Err(errors);
        }
        let listen = bpg_port(&config).map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        Ok(GatewayConfig {
            kind: ConfigKind::Bpg,
            settings,
            rules: rules.unwrap_or_else(|| unreachable!("errors returned above")),
            listen,
            warnings,
            access,
            access_file,
            tls: None,
            allow_http: false,
            connections,
            reach,
        })
    }

    /// Whether callers are authenticated (an access file is configured); without it the
    /// gateway is in development mode, and `bpg gateway` listens on loopback only.
    pub fn authenticates(&self) -> bool {
        self.access.is_some()
    }

    /// A builder for the gateway this configuration describes, over `store`: every cluster's
    /// backend is built (Kubernetes clients from `masterUrl`s, connections from their URLs).
    pub async fn builder(
        self,
        store: Arc<dyn SubmissionStore>,
    ) -> bpg_core::Result<GatewayBuilder> {
        let mut builder = Gateway::builder(self.rules)
            .settings(self.settings)
            .store(store);
        if let Some(access) = self.access {
            builder = builder.access(access);
        }
        for (id, reach) in self.reach {
            match reach {
                Reach::Connection(_) => {}
                Reach::Kubernetes {
                    master_url,
                    namespace,
                    ca_data,
                    token,
                    timeout,
                } => {
                    let backend =
                        kubernetes(&id, &master_url, namespace, ca_data, token, timeout).await?;
                    builder = builder.backend(id, Resilience::default().wrap(backend));
                }
                Reach::Unreachable(why) => {
                    builder = builder.backend(id.clone(), Arc::new(Unconfigured { name: id, why }));
                }
            }
        }
        Ok(builder.connections(Arc::new(self.connections)))
    }
}

trait WithFileOpt {
    fn with_file_opt(self, file: Option<&Path>) -> Self;
}

impl WithFileOpt for Diagnostics {
    fn with_file_opt(self, file: Option<&Path>) -> Self {
        match file {
            Some(f) => self.with_file(f),
            None => self,
        }
    }
}

/// The port of BPG's `server.applicationConnectors[0]`.
fn bpg_port(config: &serde_json::Map<String, Value>) -> Option<u16> {
    config
        .get("server")?
        .get("applicationConnectors")?
        .get(0)?
        .get("port")?
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        _ => BTreeMap::new(),
    }
}

/// BPG's encoded values: `plaintext:<v>`, `localhost:env:<VAR>`; a bare value is the value.
fn decode_sops(value: &str) -> Result<SecretString, String> {
    if let Some(v) = value.strip_prefix("plaintext:") {
        Ok(SecretString::from(v.to_owned()))
    } else if let Some(var) = value.strip_prefix("localhost:env:") {
        std::env::var(var)
            .map(SecretString::from)
            .map_err(|_| format!("environment variable {var} is not set"))
    } else if value.starts_with("k8s:secret:") {
        Err("k8s:secret: values are not supported: use localhost:env:<VAR> and set the variable from the secret".into())
    } else {
        Ok(SecretString::from(value.to_owned()))
    }
}

#[cfg(feature = "k8s")]
async fn kubernetes(
    id: &str,
    master_url: &str,
    namespace: Option<String>,
    ca_data: Option<String>,
    token: Option<SecretString>,
    timeout: Option<Duration>,
) -> bpg_core::Result<Arc<dyn Backend>> {
    use secrecy::ExposeSecret;
    let mut user = serde_json::Map::new();
    if let Some(t) = &token {
        user.insert("token".into(), Value::String(t.expose_secret().to_owned()));
    }
    let mut cluster = serde_json::json!({"server": master_url});
    if let Some(ca) = ca_data {
        cluster["certificate-authority-data"] = Value::String(ca);
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": id, "cluster": cluster}],
        "users": [{"name": id, "user": user}],
        "contexts": [{"name": id, "context": {"cluster": id, "user": id, "namespace": namespace.clone().unwrap_or_else(|| "default".into())}}],
        "current-context": id,
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)
        .map_err(|e| Error::config(format!("cluster {id}: {e}")))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::config(format!("cluster {id}: masterUrl {master_url}: {e}")))?;
    if let Some(t) = timeout {
        config.connect_timeout = Some(t);
        config.read_timeout = Some(t);
    }
    let backend = bpg_backends::k8s::SparkKubernetesBackend::from_config(config)?
        .with_name(id)
        .with_cluster(Some(id.to_owned()));
    Ok(Arc::new(backend))
}

#[cfg(not(feature = "k8s"))]
async fn kubernetes(
    id: &str,
    _master_url: &str,
    _namespace: Option<String>,
    _ca_data: Option<String>,
    _token: Option<SecretString>,
    _timeout: Option<Duration>,
) -> bpg_core::Result<Arc<dyn Backend>> {
    Err(Error::config(format!(
        "cluster {id} is reached through masterUrl, but this gateway was built without the k8s feature"
    )))
}

/// A cluster the configuration does not say how to reach: every call is unavailable, so jobs
/// routed to it wait (and `/explain` says why).
#[derive(Debug)]
struct Unconfigured {
    name: String,
    why: String,
}

#[async_trait::async_trait]
impl Backend for Unconfigured {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> bpg_core::Capabilities {
        bpg_core::Capabilities::default()
    }
    async fn submit(
        &self,
        _: &bpg_core::SparkJob,
        _: &bpg_core::SubmitOptions,
    ) -> bpg_core::Result<bpg_core::Submission> {
        Err(Error::Unavailable {
            message: self.why.clone(),
        })
    }
    async fn status(&self, _: &bpg_core::JobId) -> bpg_core::Result<bpg_core::JobStatus> {
        Err(Error::Unavailable {
            message: self.why.clone(),
        })
    }
    async fn logs(
        &self,
        _: &bpg_core::JobId,
        _: &bpg_core::LogOptions,
    ) -> bpg_core::Result<bpg_core::LogStream> {
        Err(Error::Unavailable {
            message: self.why.clone(),
        })
    }
    async fn cancel(&self, _: &bpg_core::JobId) -> bpg_core::Result<()> {
        Err(Error::Unavailable {
            message: self.why.clone(),
        })
    }
    async fn find(
        &self,
        _: &bpg_core::IdempotencyKey,
    ) -> bpg_core::Result<Option<bpg_core::Submission>> {
        Err(Error::Unavailable {
            message: self.why.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sops_values() {
        use secrecy::ExposeSecret;
        assert_eq!(decode_sops("plaintext:abc").unwrap().expose_secret(), "abc");
        assert!(
            decode_sops("k8s:secret::s:k")
                .unwrap_err()
                .contains("not supported")
        );
    }
}
