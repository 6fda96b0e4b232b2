//! The [`BackendFactory`]s of bpg-backends' backends, one per connection scheme of DESIGN.md §7,
//! registered by [`ConnectionRegistry::new`] when their cargo feature is on (all are by default).
//!
//! | Scheme | Feature | Backend | Connection fields |
//! |---|---|---|---|
//! | `bpg+https://[user@]host[:port]/skatev2`, `bpg+http://` | `gateway` | `GatewayBackend` | `user`, `password_env` or `token_env`/`token_file`; options `context_path`, `connect_timeout`, `request_timeout`, `log_poll_interval` |
//! | `k8s://context/namespace` | `k8s` | `SparkKubernetesBackend` | `token_env`/`token_file` (bearer token instead of the kubeconfig user); options `kubeconfig` (file), `context` |
//! | `emr://<virtual-cluster-id>?role=..&release=..` | `emr` | `EmrContainersBackend` | `region`; `user` + `password_env` as static access key id + secret access key, `token_env`/`token_file` as session token |
//! | `local://?master=local[2]` | `local` | `LocalSparkBackend` | query `master`, `spark_submit`, `working_dir`, `kill_grace` |
//! | `routed://` | (always) | `RoutedBackend` | `rules` (a bpg-router rules file); `user`; option `seed` |
//!
//! **Kubernetes.** `k8s://ctx/ns` uses context `ctx` of the kubeconfig (`$KUBECONFIG`, else
//! `~/.kube/config`, or the `kubeconfig` option) and namespace `ns`; `k8s:///ns` the current
//! context; `k8s://ctx` the context's namespace. Context names that are not valid in a URL host
//! (EKS ARNs) are percent-encoded or given as the `context` option. `k8s://in-cluster/ns` uses the
//! pod's service account (namespace default: the pod's).
//!
//! **Routed.** Each cluster of the rules file names a connection of the same registry, which is
//! built (and shared) like any other; a routed connection that reaches itself again is an error.
//!
//! Relative paths in options (`kubeconfig`, `spark_submit`, `working_dir`) are relative to the
//! current directory; `rules:` and `token_file:` are relative to the connections file.
//!
//! ```
//! use bpg_pipeline::ConnectionRegistry;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut registry = ConnectionRegistry::new();
//! registry.load_env_vars([("BPG_CONN_PLATFORM".to_string(), "routed://".to_string())]).unwrap();
//! let err = registry.get("platform").await.unwrap_err().to_string();
//! assert!(err.contains("connection \"platform\": `routed://` needs `rules:`"), "{err}");
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::connections::{BackendFactory, Connection, ConnectionRegistry};
use async_trait::async_trait;
use bpg_backends::RoutedBackend;
use bpg_core::{Backend, Error, Result};
use bpg_router::RoutingRules;

/// Registers every factory this build has (called by [`ConnectionRegistry::new`]).
pub(crate) fn register_builtin(registry: &mut ConnectionRegistry) {
    #[cfg(feature = "gateway")]
    registry.register_factory(Arc::new(GatewayFactory));
    #[cfg(feature = "k8s")]
    registry.register_factory(Arc::new(KubernetesFactory));
    #[cfg(feature = "emr")]
    registry.register_factory(Arc::new(EmrFactory));
    #[cfg(feature = "local")]
    registry.register_factory(Arc::new(LocalFactory));
    registry.register_factory(Arc::new(RoutedFactory));
}

/// A configuration error about `connection`.
fn bad(connection: &Connection, message: impl std::fmt::Display) -> Error {
    Error::config(format!("connection {:?}: {message}", connection.name))
}

/// Puts the connection's name in front of a configuration error from a backend constructor.
fn in_connection(connection: &Connection, error: Error) -> Error {
    match error {
        Error::Config { message } => bad(connection, message),
        Error::InvalidSpec(d) => bad(connection, d),
        other => other,
    }
}

#[cfg(any(feature = "gateway", feature = "k8s", feature = "emr"))]
/// Reads a secret; the error names the connection field it came from, never the value.
fn secret(
    connection: &Connection,
    field: &str,
    reference: &crate::connections::SecretRef,
) -> Result<secrecy::SecretString> {
    use crate::connections::SecretRef;

    reference.resolve().map_err(|e| {
        let why = match e {
            Error::Config { message } => message,
            other => other.to_string(),
        };
        let from = match reference {
            SecretRef::Env(_) => format!("{field}_env"),
            SecretRef::File(_) => format!("{field}_file"),
            SecretRef::Value(_) => format!("the URL's {field}"),
        };
        bad(connection, format!("{from}: {why} (expected the {field})"))
    })
}

/// Refuses connection fields a scheme has no use for, rather than ignore them.
fn refuse_fields(connection: &Connection, fields: &[&str], hint: &str) -> Result<()> {
    let given: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| match *f {
            "user" => connection.user.is_some(),
            "password" => connection.password.is_some(),
            "token" => connection.token.is_some(),
            "region" => connection.region.is_some(),
            "rules" => connection.rules.is_some(),
            _ => false,
        })
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(bad(
        connection,
        format!(
            "`{}://` connections do not take {}; {hint}",
            connection.scheme(),
            given.join(", ")
        ),
    ))
}

/// Key/value settings (a connection's `options`, or a URL query) taken one by one; whatever is
/// left over is an error naming the keys expected.
struct Settings<'a> {
    connection: &'a Connection,
    what: &'static str,
    values: BTreeMap<String, String>,
}

impl<'a> Settings<'a> {
    fn options(connection: &'a Connection) -> Self {
        Settings {
            connection,
            what: "option",
            values: connection.options.clone(),
        }
    }

    #[cfg(feature = "local")]
    fn query(connection: &'a Connection) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (key, value) in connection.url.query_pairs() {
            if values.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(bad(
                    connection,
                    format!("URL parameter `{key}` is given twice"),
                ));
            }
        }
        Ok(Settings {
            connection,
            what: "URL parameter",
            values,
        })
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    #[cfg(any(feature = "gateway", feature = "local"))]
    fn duration(&mut self, key: &str) -> Result<Option<std::time::Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => humantime::parse_duration(v.trim()).map(Some).map_err(|e| {
                let given = match self.what {
                    "option" => format!("option `{key}: {v}`"),
                    _ => format!("{} `{key}={v}`", self.what),
                };
                bad(
                    self.connection,
                    format!("{given}: {e}; expected a duration such as 30s or 500ms"),
                )
            }),
        }
    }

    /// Fails on keys nobody took.
    fn finish(self, expected: &[&str]) -> Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let unknown: Vec<&str> = self.values.keys().map(String::as_str).collect();
        Err(bad(
            self.connection,
            format!(
                "unknown {} {} for `{}://`; expected {}",
                self.what,
                unknown.join(", "),
                self.connection.scheme(),
                if expected.is_empty() {
                    "none".to_owned()
                } else {
                    format!("one of {}", expected.join(", "))
                }
            ),
        ))
    }
}

/// Percent-decodes a URL component (`arn%3Aaws%3Aeks...` → `arn:aws:eks...`).
#[cfg(feature = "k8s")]
fn percent_decoded(text: &str) -> String {
    // form_urlencoded decodes percent escapes; `+` is escaped first so it stays literal.
    url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// `bpg+https://[user@]host[:port][/context-path]` and `bpg+http://`: a
/// [`GatewayBackend`](bpg_backends::GatewayBackend).
///
/// The user comes from the URL or `user:`; the secret from `password_env` (Basic auth) or
/// `token_env`/`token_file` (bearer token). Options: `context_path`, `connect_timeout`,
/// `request_timeout`, `log_poll_interval` (durations such as `30s`).
#[cfg(feature = "gateway")]
#[derive(Debug, Default, Clone, Copy)]
pub struct GatewayFactory;

#[cfg(feature = "gateway")]
#[async_trait]
impl BackendFactory for GatewayFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["bpg+http".to_owned(), "bpg+https".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>> {
        use bpg_backends::{GatewayBackend, GatewayConfig};

        refuse_fields(
            connection,
            &["region", "rules"],
            "a gateway connection takes user, password_env, token_env or token_file",
        )?;
        let mut config = GatewayConfig::from_url(connection.url.as_str())
            .map_err(|e| in_connection(connection, e))?
            .name(connection.name.clone());
        // `user:` from the file wins over the URL's (which GatewayConfig already percent-decoded).
        if let Some(user) = &connection.user
            && user != connection.url.username()
        {
            config = config.user(user.clone());
        }
        if let Some(password) = &connection.password {
            if connection.user.is_none() {
                return Err(bad(
                    connection,
                    "a password needs a user: put it in the URL (bpg+https://user@host/skatev2) or set `user:`",
                ));
            }
            config = config.password(secret(connection, "password", password)?);
        }
        if let Some(token) = &connection.token {
            config = config.token(secret(connection, "token", token)?);
        }
        let mut options = Settings::options(connection);
        if let Some(path) = options.take("context_path") {
            config = config.context_path(path);
        }
        if let Some(t) = options.duration("connect_timeout")? {
            config = config.connect_timeout(t);
        }
        if let Some(t) = options.duration("request_timeout")? {
            config = config.request_timeout(t);
        }
        if let Some(t) = options.duration("log_poll_interval")? {
            config = config.log_poll_interval(t);
        }
        options.finish(&[
            "context_path",
            "connect_timeout",
            "request_timeout",
            "log_poll_interval",
        ])?;
        let backend = GatewayBackend::new(config).map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}

/// `k8s://context/namespace`: a [`SparkKubernetesBackend`](bpg_backends::k8s::SparkKubernetesBackend)
/// on one kubeconfig context and namespace; `k8s://in-cluster/namespace` from inside a pod. See the
/// [module docs](self) for the URL forms.
#[cfg(feature = "k8s")]
#[derive(Debug, Default, Clone, Copy)]
pub struct KubernetesFactory;

/// The host of `k8s://` URLs that selects the pod's service account instead of a kubeconfig.
#[cfg(feature = "k8s")]
pub const IN_CLUSTER: &str = "in-cluster";

#[cfg(feature = "k8s")]
#[async_trait]
impl BackendFactory for KubernetesFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["k8s".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>> {
        use bpg_backends::k8s::SparkKubernetesBackend;
        use kube::config::{KubeConfigOptions, Kubeconfig};

        const EXPECTED: &str = "expected k8s://<context>/<namespace>, k8s:///<namespace> (current context) or k8s://in-cluster/<namespace>";
        refuse_fields(
            connection,
            &["user", "password", "region", "rules"],
            "a Kubernetes connection authenticates with its kubeconfig, or token_env/token_file",
        )?;
        let url = &connection.url;
        if url.port().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                connection,
                format!("`{url}`: no port, query or fragment; {EXPECTED}"),
            ));
        }
        let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let namespace = match segments.as_slice() {
            [] => None,
            [ns] => Some(percent_decoded(ns)),
            _ => {
                return Err(bad(
                    connection,
                    format!("`{url}`: more than a namespace after the context; {EXPECTED}"),
                ));
            }
        };
        let mut options = Settings::options(connection);
        let kubeconfig = options.take("kubeconfig");
        let host = url.host_str().map(percent_decoded).unwrap_or_default();
        let context = match options.take("context") {
            Some(c) if !host.is_empty() => {
                return Err(bad(
                    connection,
                    format!(
                        "the context is given twice (`{host}` in the URL, `{c}` as an option); {EXPECTED}"
                    ),
                ));
            }
            Some(c) => Some(c),
            None => (!host.is_empty()).then_some(host),
        };
        options.finish(&["kubeconfig", "context"])?;

        let mut config = if context.as_deref() == Some(IN_CLUSTER) {
            if kubeconfig.is_some() {
                return Err(bad(
                    connection,
                    "`k8s://in-cluster/...` uses the pod's service account, not a kubeconfig",
                ));
            }
            kube::Config::incluster()
                .map_err(|e| bad(connection, format!("not running in a Kubernetes pod: {e}")))?
        } else {
            let load = KubeConfigOptions {
                context: context.clone(),
                ..KubeConfigOptions::default()
            };
            match &kubeconfig {
                Some(path) => {
                    let file = Kubeconfig::read_from(path).map_err(|e| {
                        bad(connection, format!("cannot read kubeconfig {path}: {e}"))
                    })?;
                    kube::Config::from_custom_kubeconfig(file, &load)
                        .await
                        .map_err(|e| bad(connection, format!("kubeconfig {path}: {e}")))?
                }
                None => kube::Config::from_kubeconfig(&load)
                    .await
                    .map_err(|e| bad(connection, format!("cannot load kubeconfig: {e}")))?,
            }
        };
        if let Some(ns) = namespace {
            config.default_namespace = ns;
        }
        if let Some(token) = &connection.token {
            // The token replaces the kubeconfig user's credentials (certificates, exec plugins).
            config.auth_info = kube::config::AuthInfo {
                token: Some(secret(connection, "token", token)?),
                ..kube::config::AuthInfo::default()
            };
        }
        let mut backend = SparkKubernetesBackend::from_config(config)
            .map_err(|e| in_connection(connection, e))?;
        if let Some(context) = context {
            backend = backend.with_cluster(Some(context));
        }
        Ok(Arc::new(backend.with_name(connection.name.clone())))
    }
}

/// `emr://<virtual-cluster-id>?role=<role ARN>&release=<release label>[&...]`: an
/// [`EmrContainersBackend`](bpg_backends::EmrContainersBackend) (every URL parameter of
/// [`EmrConfig::from_url`](bpg_backends::EmrConfig::from_url)).
///
/// The connection's `region` applies when the URL has none. Credentials come from the AWS default
/// chain, or, as in Airflow's AWS connection, `user` (access key id) with `password_env` (secret
/// access key) and optionally `token_env`/`token_file` (session token). No request is made until
/// the first call.
#[cfg(feature = "emr")]
#[derive(Debug, Default, Clone, Copy)]
pub struct EmrFactory;

#[cfg(feature = "emr")]
#[async_trait]
impl BackendFactory for EmrFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["emr".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>> {
        use bpg_backends::emr::{EmrConfig, EmrContainersBackend, StaticCredentials};
        use secrecy::ExposeSecret;

        refuse_fields(
            connection,
            &["rules"],
            "an EMR connection takes region, user, password_env, token_env or token_file",
        )?;
        // The access key id sits in `user`, not in the URL: EmrConfig refuses URL credentials.
        let mut url = connection.url.clone();
        let _ = url.set_username("");
        let mut config =
            EmrConfig::from_url(url.as_str()).map_err(|e| in_connection(connection, e))?;
        if !connection.url.query_pairs().any(|(k, _)| k == "name") {
            config = config.name(connection.name.clone());
        }
        match (&config.region, &connection.region) {
            (Some(in_url), Some(given)) if in_url != given => {
                return Err(bad(
                    connection,
                    format!(
                        "region `{given}` differs from the URL's `region={in_url}`; give it once"
                    ),
                ));
            }
            (None, Some(given)) => config = config.region(given.clone()),
            _ => {}
        }
        match (&connection.user, &connection.password) {
            (Some(key_id), Some(secret_key)) => {
                let secret_key = secret(connection, "password", secret_key)?;
                let session = match &connection.token {
                    Some(t) => Some(secret(connection, "token", t)?.expose_secret().to_owned()),
                    None => None,
                };
                config = config.credentials(StaticCredentials::new(
                    key_id.clone(),
                    secret_key.expose_secret(),
                    session,
                ));
            }
            (None, None) if connection.token.is_none() => {}
            _ => {
                return Err(bad(
                    connection,
                    "static AWS credentials need both `user` (access key id) and `password_env` \
                     (secret access key), with token_env/token_file only for a session token; \
                     or give none to use the AWS default chain",
                ));
            }
        }
        Settings::options(connection).finish(&[])?;
        let backend = EmrContainersBackend::connect(config)
            .await
            .map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}

/// `local://[?master=local[2]&spark_submit=PATH&working_dir=DIR&kill_grace=10s]`: a
/// [`LocalSparkBackend`](bpg_backends::local::LocalSparkBackend) running `spark-submit` on this
/// machine. Without `spark_submit`, it is looked up in `$SPARK_HOME/bin`, on `PATH`, then in the
/// `pyspark` package of `python3`.
#[cfg(feature = "local")]
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFactory;

#[cfg(feature = "local")]
#[async_trait]
impl BackendFactory for LocalFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["local".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>> {
        use bpg_backends::local::LocalSparkBackend;

        const EXPECTED: [&str; 4] = ["master", "spark_submit", "working_dir", "kill_grace"];
        refuse_fields(
            connection,
            &["user", "password", "token", "region", "rules"],
            "a local connection takes only URL parameters (local://?master=local[2])",
        )?;
        let url = &connection.url;
        if !url.host_str().unwrap_or("").is_empty() || !matches!(url.path(), "" | "/") {
            return Err(bad(
                connection,
                format!(
                    "`{url}`: expected local:// with optional parameters {}",
                    EXPECTED.join(", ")
                ),
            ));
        }
        Settings::options(connection).finish(&[])?;
        let mut query = Settings::query(connection)?;
        let mut builder = LocalSparkBackend::builder().name(connection.name.clone());
        if let Some(master) = query.take("master") {
            builder = builder.master(master);
        }
        if let Some(path) = query.take("spark_submit") {
            builder = builder.spark_submit(path);
        }
        if let Some(dir) = query.take("working_dir") {
            builder = builder.working_dir(dir);
        }
        if let Some(grace) = query.duration("kill_grace")? {
            builder = builder.kill_grace(grace);
        }
        query.finish(&EXPECTED)?;
        let backend = builder.build().map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}

/// `routed://` with `rules: rules.yaml`: a [`RoutedBackend`] over the connections the rules'
/// clusters name, resolved through the same registry. `user:` is the submitting user rules may
/// match on; option `seed` makes weighted routing reproducible.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoutedFactory;

/// Loads a routed connection's rules file.
fn routed_rules(connection: &Connection) -> Result<RoutingRules> {
    let path = connection.rules.as_deref().ok_or_else(|| {
        bad(
            connection,
            "`routed://` needs `rules:` naming a routing rules file (relative to the connections file)",
        )
    })?;
    RoutingRules::from_file(path).map_err(|d| bad(connection, format!("rules file: {d}")))
}

/// The connection names `rules`' clusters use, in order, each once.
fn cluster_connections(rules: &RoutingRules) -> Vec<String> {
    let mut seen = BTreeSet::new();
    rules
        .cluster_ids()
        .filter_map(|cluster| rules.connection_of(cluster))
        .filter(|c| seen.insert(*c))
        .map(str::to_owned)
        .collect()
}

/// Fails when following cluster connections from `path`'s last routed connection leads back to
/// one already on the path.
fn find_cycle(
    registry: &ConnectionRegistry,
    path: &mut Vec<String>,
    rules: &RoutingRules,
) -> Result<()> {
    for next in cluster_connections(rules) {
        if let Some(start) = path.iter().position(|c| *c == next) {
            let mut cycle: Vec<&str> = path[start..].iter().map(String::as_str).collect();
            cycle.push(&next);
            return Err(Error::config(format!(
                "connection {:?}: routed connections form a cycle: {}",
                path[0],
                cycle.join(" -> ")
            )));
        }
        let Some(inner) = registry.connection(&next) else {
            continue;
        };
        if inner.scheme() != "routed" {
            continue;
        }
        // An unreadable inner rules file is reported when that connection is built.
        if let Ok(inner_rules) = routed_rules(inner) {
            path.push(next);
            find_cycle(registry, path, &inner_rules)?;
            path.pop();
        }
    }
    Ok(())
}

#[async_trait]
impl BackendFactory for RoutedFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["routed".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>> {
        refuse_fields(
            connection,
            &["password", "token", "region"],
            "a routed connection takes rules, user and option seed; its clusters' connections carry the credentials",
        )?;
        let url = &connection.url;
        if !url.host_str().unwrap_or("").is_empty()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
        {
            return Err(bad(
                connection,
                format!("`{url}`: expected routed:// (the clusters come from `rules:`)"),
            ));
        }
        let mut options = Settings::options(connection);
        let seed = match options.take("seed") {
            None => None,
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
                bad(
                    connection,
                    format!("option `seed: {s}`: expected a whole number"),
                )
            })?),
        };
        options.finish(&["seed"])?;
        let rules = routed_rules(connection)?;
        find_cycle(registry, &mut vec![connection.name.clone()], &rules)?;

        let names = cluster_connections(&rules);
        let file = rules_file(connection);
        let mut builder = RoutedBackend::builder(rules).name(connection.name.clone());
        for name in names {
            let backend = registry.get(&name).await.map_err(|e| {
                let why = match e {
                    Error::Config { message } => message,
                    other => other.to_string(),
                };
                bad(
                    connection,
                    format!("cluster connection {name:?} of {file}: {why}"),
                )
            })?;
            builder = builder.backend(name, backend);
        }
        if let Some(user) = &connection.user {
            builder = builder.user(user.clone());
        }
        if let Some(seed) = seed {
            builder = builder.seed(seed);
        }
        let backend = builder.build().map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}

fn rules_file(connection: &Connection) -> String {
    connection
        .rules
        .as_deref()
        .map(Path::display)
        .map(|p| p.to_string())
        .unwrap_or_default()
}
