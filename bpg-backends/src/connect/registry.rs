//! [`ConnectionRegistry`]: named connections, the factories that build them, and the backends
//! built so far.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Diagnostic, Diagnostics, Error, Result};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::connection::{Connection, Resilience, SecretRef};
use super::factory::BackendFactory;
use crate::layers::{ConcurrencyLimitLayer, LayerExt, RetryLayer, TimeoutLayer, TracingLayer};

/// Prefix of environment variables that define connections: `BPG_CONN_ANALYTICS=k8s://ctx/ns`
/// defines connection `analytics`.
pub const ENV_PREFIX: &str = "BPG_CONN_";

/// Where a scheme's factory comes from, for the error when it is not registered.
fn provider_hint(scheme: &str) -> &'static str {
    match scheme {
        "bpg+http" | "bpg+https" => "the `gateway` cargo feature of bpg-backends",
        "k8s" => "the `k8s` cargo feature of bpg-backends",
        "emr" => "the `emr` cargo feature of bpg-backends",
        "local" => "the `local` cargo feature of bpg-backends",
        "routed" | "sim" => "bpg-backends (always available; use ConnectionRegistry::new)",
        _ => "a crate that provides a BackendFactory for it",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnectionsFile {
    connections: BTreeMap<String, Spanned<RawConnection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: Spanned<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    rules: Option<String>,
    #[serde(default)]
    retries: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    max_concurrency: Option<Spanned<String>>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// Named connections and the factories that turn them into backends, like Airflow connections.
///
/// Connections come from a connections file ([`load_file`](Self::load_file), DESIGN.md §7) and
/// `BPG_CONN_<NAME>=URL` environment variables ([`load_env`](Self::load_env)); the URL's scheme
/// picks a [`BackendFactory`]. A backend is built on first use, wrapped in its connection's
/// [`Resilience`] layers, and shared afterwards. Backends added with
/// [`insert_backend`](Self::insert_backend) are used as given.
///
/// ```
/// use bpg_backends::connect::ConnectionRegistry;
/// use bpg_core::Connections;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut registry = ConnectionRegistry::new();
/// registry.load_env_vars([("BPG_CONN_SIM".to_string(), "sim://?duration=2s".to_string())]).unwrap();
/// let backend = registry.backend("sim").await.unwrap();
/// assert_eq!(backend.name(), "sim");
/// registry.parse_yaml("connections:\n  cluster: { url: \"inproc://ctx\" }\n", None).unwrap();
/// let err = registry.backend("cluster").await.unwrap_err().to_string();
/// assert!(err.contains("no backend for URL scheme `inproc://`"), "{err}");
/// # }
/// ```
pub struct ConnectionRegistry {
    factories: HashMap<String, Arc<dyn BackendFactory>>,
    connections: BTreeMap<String, Connection>,
    backends: Mutex<HashMap<String, Arc<dyn Backend>>>,
}

impl fmt::Debug for ConnectionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut schemes: Vec<&String> = self.factories.keys().collect();
        schemes.sort();
        f.debug_struct("ConnectionRegistry")
            .field("schemes", &schemes)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Default for ConnectionRegistry {
    fn default() -> Self {
        ConnectionRegistry::new()
    }
}

impl ConnectionRegistry {
    /// A registry with no connections and every factory this build has (see
    /// [`builtin_factories`](super::builtin_factories)).
    pub fn new() -> Self {
        let mut registry = ConnectionRegistry::empty();
        for factory in super::builtin_factories() {
            registry.register_factory(factory);
        }
        registry
    }

    /// A registry with no connections and no factories.
    pub fn empty() -> Self {
        ConnectionRegistry {
            factories: HashMap::new(),
            connections: BTreeMap::new(),
            backends: Mutex::new(HashMap::new()),
        }
    }

    /// The usual setup: [`ConnectionRegistry::new`]'s factories, connections from `file` (if
    /// any), then `BPG_CONN_<NAME>` environment variables, which win over the file.
    pub fn from_file_and_env(file: Option<&Path>) -> Result<Self, Diagnostics> {
        let mut registry = ConnectionRegistry::new();
        if let Some(file) = file {
            registry.load_file(file)?;
        }
        registry.load_env()?;
        Ok(registry)
    }

    /// Registers `factory` for its schemes, replacing any earlier one.
    pub fn register_factory(&mut self, factory: Arc<dyn BackendFactory>) -> &mut Self {
        for scheme in factory.schemes() {
            self.factories.insert(scheme, factory.clone());
        }
        self
    }

    /// True when a factory handles `scheme`.
    pub fn has_scheme(&self, scheme: &str) -> bool {
        self.factories.contains_key(scheme)
    }

    fn built(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Backend>>> {
        self.backends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds (or replaces) a connection.
    pub fn insert(&mut self, connection: Connection) -> &mut Self {
        self.built().remove(&connection.name);
        self.connections.insert(connection.name.clone(), connection);
        self
    }

    /// Adds an already built backend under `name` (no URL, no factory, no layers added).
    pub fn insert_backend(
        &mut self,
        name: impl Into<String>,
        backend: Arc<dyn Backend>,
    ) -> &mut Self {
        let name = name.into();
        self.connections.remove(&name);
        self.built().insert(name, backend);
        self
    }

    /// Connection names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.connections.keys().cloned().collect();
        names.extend(self.built().keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// The configuration of connection `name` (none for backends inserted directly).
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.get(name)
    }

    /// Reads a connections file (DESIGN.md §7). Every problem is reported, located.
    pub fn load_file(&mut self, path: impl AsRef<Path>) -> Result<&mut Self, Diagnostics> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::from(
                Diagnostic::error("", format!("cannot read connections file: {e}")).with_file(path),
            )
        })?;
        self.parse_yaml(&text, Some(path))
    }

    /// Reads connections from YAML text; `file` names it in diagnostics and is the base for
    /// relative `rules:` and `token_file:` paths.
    pub fn parse_yaml(
        &mut self,
        text: &str,
        file: Option<&Path>,
    ) -> Result<&mut Self, Diagnostics> {
        let located = |d: Diagnostic| match file {
            Some(f) => d.with_file(f),
            None => d,
        };
        let raw: RawConnectionsFile = serde_saphyr::from_str(text)
            .map_err(|e| Diagnostics::from(located(Diagnostic::from_yaml_error(&e, text))))?;
        let base = file.and_then(Path::parent).map(Path::to_path_buf);
        let resolve = |p: &str| -> PathBuf {
            let p = PathBuf::from(p);
            match &base {
                Some(b) if p.is_relative() && !b.as_os_str().is_empty() => b.join(p),
                _ => p,
            }
        };
        let mut problems = Diagnostics::new();
        let mut parsed = Vec::new();
        for (name, raw) in raw.connections {
            let at = |field: &str, s: (u64, u64), message: String| {
                located(
                    Diagnostic::error(format!("connections.{name}.{field}"), message)
                        .at(s.0 as usize, s.1 as usize),
                )
            };
            let position = (raw.referenced.line(), raw.referenced.column());
            let r = raw.value;
            let url_position = (r.url.referenced.line(), r.url.referenced.column());
            let mut connection = match Connection::from_url(&name, &r.url.value) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(at("url", url_position, e.to_string()));
                    continue;
                }
            };
            if connection.password.is_some() {
                problems.push(at(
                    "url",
                    url_position,
                    "a password must not be written in a connections file: use password_env".into(),
                ));
                continue;
            }
            if r.token_env.is_some() && r.token_file.is_some() {
                problems.push(at(
                    "token_env",
                    position,
                    "give token_env or token_file, not both".into(),
                ));
            }
            let settings = [
                (
                    "retries",
                    r.retries.map(|s| (s.value.to_string(), s.referenced)),
                ),
                ("timeout", r.timeout.map(|s| (s.value, s.referenced))),
                (
                    "max_concurrency",
                    r.max_concurrency
                        .map(|s| (s.value.to_string(), s.referenced)),
                ),
            ];
            for (key, setting) in settings {
                if let Some((value, location)) = setting
                    && let Err(why) = connection.resilience.set(key, &value)
                {
                    problems.push(at(key, (location.line(), location.column()), why));
                }
            }
            if let Some(user) = r.user {
                connection.user = Some(user);
            }
            connection.password = r.password_env.map(SecretRef::Env);
            connection.token = r
                .token_env
                .map(SecretRef::Env)
                .or(r.token_file.map(|f| SecretRef::File(resolve(&f))));
            connection.region = r.region;
            connection.rules = r.rules.map(|f| resolve(&f));
            connection.options = r.options;
            parsed.push(connection);
        }
        if problems.has_errors() {
            return Err(problems);
        }
        for connection in parsed {
            self.insert(connection);
        }
        Ok(self)
    }

    /// Reads `BPG_CONN_<NAME>` variables from the process environment; they replace file
    /// connections of the same name.
    pub fn load_env(&mut self) -> Result<&mut Self, Diagnostics> {
        self.load_env_vars(std::env::vars())
    }

    /// Reads `BPG_CONN_<NAME>=URL` pairs (other names are ignored). `<NAME>` is lower-cased:
    /// `BPG_CONN_BPG_CONNECTION` defines `bpg_connection`.
    pub fn load_env_vars(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<&mut Self, Diagnostics> {
        let mut problems = Diagnostics::new();
        let mut parsed = Vec::new();
        for (key, value) in vars {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            match Connection::from_url(name.to_lowercase(), &value) {
                Ok(c) => parsed.push(c),
                // The value may hold a password: name the variable, never echo it.
                Err(_) => problems.push(Diagnostic::error(
                    key.clone(),
                    "not a valid connection URL (expected e.g. sim://, bpg+https://user@host/skatev2, k8s://context/namespace; retries, timeout and max_concurrency as URL parameters)",
                )),
            }
        }
        if problems.has_errors() {
            return Err(problems);
        }
        for connection in parsed {
            self.insert(connection);
        }
        Ok(self)
    }

    /// Errors for connections whose scheme no registered factory handles.
    pub fn check_schemes(&self) -> Diagnostics {
        let mut out = Diagnostics::new();
        for c in self.connections.values() {
            if !self.has_scheme(c.scheme()) {
                out.push(Diagnostic::error(
                    format!("connections.{}.url", c.name),
                    unknown_scheme_message(c),
                ));
            }
        }
        out
    }

    /// Builds (or returns the already built) backend of `name`; `path` holds the connections
    /// being built that led here, so a routed connection that reaches itself again is an error.
    async fn resolve(&self, name: &str, path: &[String]) -> Result<Arc<dyn Backend>> {
        if let Some(b) = self.built().get(name) {
            return Ok(b.clone());
        }
        if let Some(start) = path.iter().position(|c| c == name) {
            let mut cycle: Vec<&str> = path[start..].iter().map(String::as_str).collect();
            cycle.push(name);
            return Err(Error::config(format!(
                "connection {:?}: connections form a cycle: {}",
                path[start],
                cycle.join(" -> ")
            )));
        }
        let connection = self.connections.get(name).ok_or_else(|| {
            Error::config(format!(
                "unknown connection {name:?}: define it in a connections file or as {ENV_PREFIX}{}",
                name.to_uppercase()
            ))
        })?;
        let factory = self
            .factories
            .get(connection.scheme())
            .ok_or_else(|| Error::config(unknown_scheme_message(connection)))?;
        let mut inner_path = path.to_vec();
        inner_path.push(name.to_owned());
        let resolver = Resolver {
            registry: self,
            path: inner_path,
        };
        let backend = connection
            .resilience
            .wrap(factory.create(connection, &resolver).await?);
        // Two callers may race to build it; the first one built is the one everybody shares.
        Ok(self
            .built()
            .entry(name.to_owned())
            .or_insert(backend)
            .clone())
    }
}

impl Resilience {
    /// Wraps a built backend in these layers, in the order [`layers`](crate::layers) recommends:
    /// tracing, retry, timeout, concurrency limit, backend. Every backend built from a connection
    /// gets it; so can one built in code (a gateway's cluster given by a BPG `masterUrl`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bpg_backends::connect::Resilience;
    /// use bpg_core::{Backend, SimBackend};
    /// let backend = Resilience::default().wrap(Arc::new(SimBackend::new()));
    /// assert_eq!(backend.name(), "sim");
    /// ```
    pub fn wrap(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let mut backend = backend;
        if let Some(limit) = self.max_concurrency {
            backend = backend.layer(ConcurrencyLimitLayer::new(limit));
        }
        if let Some(timeout) = self.timeout {
            backend = backend.layer(TimeoutLayer::new(timeout));
        }
        if self.retries > 0 {
            backend = backend.layer(RetryLayer::new().max_retries(self.retries));
        }
        backend.layer(TracingLayer::new())
    }
}

/// The registry as a factory sees it while building one connection.
#[derive(Debug)]
struct Resolver<'a> {
    registry: &'a ConnectionRegistry,
    path: Vec<String>,
}

#[async_trait]
impl Connections for Resolver<'_> {
    fn contains(&self, name: &str) -> bool {
        self.registry.contains(name)
    }

    async fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.registry.resolve(name, &self.path).await
    }
}

#[async_trait]
impl Connections for ConnectionRegistry {
    fn contains(&self, name: &str) -> bool {
        self.connections.contains_key(name) || self.built().contains_key(name)
    }

    async fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.resolve(name, &[]).await
    }
}

fn unknown_scheme_message(c: &Connection) -> String {
    format!(
        "connection {:?}: no backend for URL scheme `{}://`; it is provided by {} (register its factories with ConnectionRegistry::register_factory)",
        c.name,
        c.scheme(),
        provider_hint(c.scheme())
    )
}
