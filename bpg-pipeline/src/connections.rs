//! Connections: names mapped to configured backends, like Airflow connections.
//!
//! A connection is a URL plus options, from a connections YAML file or a `BPG_CONN_<NAME>`
//! environment variable. The URL's scheme picks a [`BackendFactory`]; `sim://` is built in, the
//! others (`bpg+http(s)://`, `k8s://`, `emr://`, `local://`, `routed://`) build bpg-backends'
//! backends and are registered per cargo feature (see `backend_factories`). Backends are built on
//! first use and shared.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bpg_core::{Backend, Diagnostic, Diagnostics, Error, Result, SimBackend};
use secrecy::SecretString;
use serde::Deserialize;
use serde_saphyr::Spanned;
use url::Url;

use crate::yaml::yaml_error;

/// Prefix of environment variables that define connections: `BPG_CONN_ANALYTICS=k8s://ctx/ns`
/// defines connection `analytics`.
pub const ENV_PREFIX: &str = "BPG_CONN_";

/// Where a secret comes from. Its value is read only when a backend is built, and never shown.
#[derive(Clone)]
pub enum SecretRef {
    /// An environment variable's value.
    Env(String),
    /// A file's contents (trailing newline trimmed).
    File(PathBuf),
    /// A value given directly (from a `BPG_CONN_*` URL's password, or set in code).
    Value(SecretString),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => f.debug_tuple("Env").field(name).finish(),
            SecretRef::File(path) => f.debug_tuple("File").field(path).finish(),
            SecretRef::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl SecretRef {
    /// Reads the secret.
    pub fn resolve(&self) -> Result<SecretString> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| Error::config(format!("environment variable {name} is not set"))),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretString::from(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| {
                    Error::config(format!("cannot read secret file {}: {e}", path.display()))
                }),
            SecretRef::Value(v) => Ok(v.clone()),
        }
    }
}

/// One configured connection: what a [`BackendFactory`] builds a backend from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Connection {
    /// The connection's name.
    pub name: String,
    /// The URL, without any password (that is in [`Connection::password`]).
    pub url: Url,
    /// User name (from `user:` or the URL).
    pub user: Option<String>,
    /// Password (basic auth).
    pub password: Option<SecretRef>,
    /// Bearer token.
    pub token: Option<SecretRef>,
    /// Cloud region (EMR).
    pub region: Option<String>,
    /// Routing rules file (`routed://`), resolved against the connections file's directory.
    pub rules: Option<PathBuf>,
    /// Other backend-specific settings.
    pub options: BTreeMap<String, String>,
}

impl Connection {
    /// A connection from a URL. A password in the URL is moved into [`Connection::password`].
    pub fn from_url(name: impl Into<String>, url: &str) -> Result<Self> {
        let name = name.into();
        let mut url = Url::parse(url).map_err(|e| {
            Error::config(format!(
                "connection {name:?}: invalid URL: {e} (expected e.g. \"sim://\", \"bpg+https://host/skatev2\", \"k8s://context/namespace\")"
            ))
        })?;
        let password = url
            .password()
            .map(|p| SecretRef::Value(SecretString::from(p.to_owned())));
        let _ = url.set_password(None);
        let user = (!url.username().is_empty()).then(|| url.username().to_owned());
        Ok(Connection {
            name,
            url,
            user,
            password,
            token: None,
            region: None,
            rules: None,
            options: BTreeMap::new(),
        })
    }

    /// The URL scheme (`sim`, `bpg+https`, `k8s`).
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }
}

/// Builds backends for one or more URL schemes. bpg-backends registers one per backend feature;
/// applications can register their own.
#[async_trait]
pub trait BackendFactory: Send + Sync + 'static {
    /// The URL schemes this factory handles (`["k8s"]`, `["bpg+http", "bpg+https"]`).
    fn schemes(&self) -> Vec<String>;

    /// Builds the backend for `connection`. `registry` resolves other connections (a routed
    /// backend's clusters name them).
    async fn create(
        &self,
        connection: &Connection,
        registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>>;
}

/// The built-in factory for `sim://?duration=1s&capacity=4` (see [`bpg_core::SimScript`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SimFactory;

#[async_trait]
impl BackendFactory for SimFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["sim".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _registry: &ConnectionRegistry,
    ) -> Result<Arc<dyn Backend>> {
        let builder = SimBackend::builder()
            .name(connection.name.clone())
            .query(connection.url.query().unwrap_or(""))
            .map_err(|d| Error::config(format!("connection {:?}: {d}", connection.name)))?;
        Ok(Arc::new(builder.build()))
    }
}

/// Where a scheme's factory comes from, for the error when it is not registered.
fn provider_hint(scheme: &str) -> &'static str {
    match scheme {
        "bpg+http" | "bpg+https" => "the `gateway` cargo feature of bpg-pipeline",
        "k8s" => "the `k8s` cargo feature of bpg-pipeline",
        "emr" => "the `emr` cargo feature of bpg-pipeline",
        "local" => "the `local` cargo feature of bpg-pipeline",
        "routed" => "bpg-pipeline (routed connections are always available)",
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
    options: BTreeMap<String, String>,
}

/// Named connections and the factories that turn them into backends.
///
/// ```
/// use bpg_pipeline::ConnectionRegistry;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut registry = ConnectionRegistry::new();
/// registry.load_env_vars([("BPG_CONN_SIM".to_string(), "sim://?duration=2s".to_string())]).unwrap();
/// let backend = registry.get("sim").await.unwrap();
/// assert_eq!(backend.name(), "sim");
/// let err = registry.parse_yaml("connections:\n  cluster: { url: \"inproc://ctx\" }\n", None).and(Ok(()));
/// assert!(err.is_ok());
/// let err = registry.get("cluster").await.unwrap_err().to_string();
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
    /// A registry with no connections and the built-in `sim://` factory.
    pub fn new() -> Self {
        let mut registry = ConnectionRegistry {
            factories: HashMap::new(),
            connections: BTreeMap::new(),
            backends: Mutex::new(HashMap::new()),
        };
        registry.register_factory(Arc::new(SimFactory));
        crate::backend_factories::register_builtin(&mut registry);
        registry
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

    /// Adds (or replaces) a connection.
    pub fn insert(&mut self, connection: Connection) -> &mut Self {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&connection.name);
        self.connections.insert(connection.name.clone(), connection);
        self
    }

    /// Adds an already built backend under `name` (no URL, no factory).
    pub fn insert_backend(
        &mut self,
        name: impl Into<String>,
        backend: Arc<dyn Backend>,
    ) -> &mut Self {
        let name = name.into();
        self.connections.remove(&name);
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, backend);
        self
    }

    /// True when `name` is a connection.
    pub fn contains(&self, name: &str) -> bool {
        self.connections.contains_key(name)
            || self
                .backends
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(name)
    }

    /// Connection names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.connections.keys().cloned().collect();
        names.extend(
            self.backends
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .cloned(),
        );
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
        let raw: RawConnectionsFile =
            serde_saphyr::from_str(text).map_err(|e| Diagnostics::from(yaml_error(&e, file)))?;
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
                let mut d = Diagnostic::error(format!("connections.{name}.{field}"), message)
                    .at(s.0 as usize, s.1 as usize);
                if let Some(f) = file {
                    d = d.with_file(f);
                }
                d
            };
            let position = (raw.referenced.line(), raw.referenced.column());
            let url_position = (
                raw.value.url.referenced.line(),
                raw.value.url.referenced.column(),
            );
            let r = raw.value;
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
                    "not a valid connection URL (expected e.g. sim://, bpg+https://user@host/skatev2, k8s://context/namespace)",
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

    /// The backend of connection `name`, built on first use and shared afterwards.
    pub async fn get(&self, name: &str) -> Result<Arc<dyn Backend>> {
        if let Some(b) = self
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(b.clone());
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
        let backend = factory.create(connection, self).await?;
        let mut backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        // Two callers may race to build it; the first one built is the one everybody shares.
        Ok(backends.entry(name.to_owned()).or_insert(backend).clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_connections_with_secret_references() {
        let mut r = ConnectionRegistry::new();
        r.parse_yaml(
            r#"
connections:
  bpg_connection: { url: "bpg+https://gateway.internal/skatev2", user: admin, password_env: BPG_PASSWORD }
  analytics_k8s:  { url: "k8s://analytics-context/spark-jobs", token_file: tokens/k8s }
  emr_direct:     { url: "emr://abcdef123?role=arn:aws:iam::123456789012:role/spark&release=emr-7.2.0-latest", region: us-west-2 }
  sim:            { url: "sim://?duration=1s" }
  platform:       { url: "routed://", rules: rules.yaml }
"#,
            Some(Path::new("conf/connections.yaml")),
        )
        .unwrap();
        assert_eq!(r.names().len(), 5);
        let bpg = r.connection("bpg_connection").unwrap();
        assert_eq!(bpg.user.as_deref(), Some("admin"));
        assert!(matches!(&bpg.password, Some(SecretRef::Env(v)) if v == "BPG_PASSWORD"));
        let k8s = r.connection("analytics_k8s").unwrap();
        assert!(
            matches!(&k8s.token, Some(SecretRef::File(p)) if p == Path::new("conf/tokens/k8s"))
        );
        assert_eq!(
            r.connection("platform").unwrap().rules.as_deref(),
            Some(Path::new("conf/rules.yaml"))
        );
        let unknown = r.check_schemes();
        let features = [
            cfg!(feature = "gateway"),
            cfg!(feature = "k8s"),
            cfg!(feature = "emr"),
        ];
        assert_eq!(
            unknown.len(),
            features.iter().filter(|on| !**on).count(),
            "{unknown}"
        );
        assert_eq!(
            unknown
                .to_string()
                .contains("`emr` cargo feature of bpg-pipeline"),
            !cfg!(feature = "emr"),
            "{unknown}"
        );
    }

    #[test]
    fn inline_passwords_and_bad_urls_are_rejected_with_location() {
        let mut r = ConnectionRegistry::new();
        let err = r
            .parse_yaml(
                "connections:\n  a: { url: \"bpg+https://admin:hunter2@host/skatev2\" }\n  b: { url: \"not a url\" }\n",
                Some(Path::new("c.yaml")),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("c.yaml:2:"), "{text}");
        assert!(text.contains("must not be written"), "{text}");
        assert!(
            text.contains("c.yaml:3:") && text.contains("invalid URL"),
            "{text}"
        );
        let err = r
            .parse_yaml(
                "connections:\n  a: { url: \"sim://\", pasword_env: X }\n",
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("pasword_env"), "{err}");
    }

    #[test]
    fn env_urls_keep_passwords_secret() {
        let mut r = ConnectionRegistry::new();
        r.load_env_vars([
            (
                "BPG_CONN_GW".to_string(),
                "bpg+https://admin:s3cret@gw/skatev2".to_string(),
            ),
            ("PATH".to_string(), "/bin".to_string()),
        ])
        .unwrap();
        let gw = r.connection("gw").unwrap();
        assert_eq!(gw.user.as_deref(), Some("admin"));
        let debug = format!("{r:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!gw.url.as_str().contains("s3cret"));
        use secrecy::ExposeSecret;
        assert_eq!(
            gw.password
                .as_ref()
                .unwrap()
                .resolve()
                .unwrap()
                .expose_secret(),
            "s3cret"
        );
        let err = r
            .load_env_vars([(
                "BPG_CONN_BAD".to_string(),
                "::pw-like-garbage::".to_string(),
            )])
            .unwrap_err();
        assert!(!err.to_string().contains("pw-like-garbage"), "{err}");
        assert!(err.to_string().contains("BPG_CONN_BAD"), "{err}");
    }

    #[tokio::test]
    async fn sim_connections_build_once_and_bad_queries_fail() {
        let mut r = ConnectionRegistry::new();
        r.load_env_vars([
            (
                "BPG_CONN_SIM".to_string(),
                "sim://?duration=2s&capacity=3".to_string(),
            ),
            (
                "BPG_CONN_BROKEN".to_string(),
                "sim://?duration=later".to_string(),
            ),
        ])
        .unwrap();
        let a = r.get("sim").await.unwrap();
        let b = r.get("sim").await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let err = r.get("broken").await.unwrap_err().to_string();
        assert!(err.contains("duration"), "{err}");
        let err = r.get("nope").await.unwrap_err().to_string();
        assert!(err.contains("BPG_CONN_NOPE"), "{err}");
    }
}
