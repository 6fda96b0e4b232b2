//! [`K8sConfig`]: which cluster, namespace and credentials a
//! [`SparkKubernetesBackend`](super::SparkKubernetesBackend) uses, from code or a `k8s://` URL; the
//! one place kubeconfig files are read.

use std::fmt;
use std::path::PathBuf;

use bpg_core::{Error, Result};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use secrecy::SecretString;

/// The host of `k8s://` URLs that selects the pod's service account instead of a kubeconfig.
pub const IN_CLUSTER: &str = "in-cluster";

const EXPECTED: &str = "expected k8s://<context>/<namespace>, k8s:///<namespace> (current context) or k8s://in-cluster/<namespace>";

/// Where a [`SparkKubernetesBackend`](super::SparkKubernetesBackend) finds its API server.
///
/// `k8s://ctx/ns` uses context `ctx` of the kubeconfig (`$KUBECONFIG`, else `~/.kube/config`, or
/// [`K8sConfig::kubeconfig`]) and namespace `ns`; `k8s:///ns` the current context; `k8s://ctx` the
/// context's namespace. Context names that are not valid in a URL host (EKS ARNs) are
/// percent-encoded. `k8s://in-cluster/ns` uses the pod's service account (namespace default: the
/// pod's).
///
/// ```
/// use bpg_backends::k8s::K8sConfig;
/// let c = K8sConfig::from_url("k8s://arn%3Aaws%3Aeks%3Aus-west-2%3A1%3Acluster%2Fphi/spark-jobs")?;
/// assert_eq!(c.context.as_deref(), Some("arn:aws:eks:us-west-2:1:cluster/phi"));
/// assert_eq!(c.namespace.as_deref(), Some("spark-jobs"));
/// let c = K8sConfig::from_url("k8s://in-cluster")?;
/// assert!(c.in_cluster && c.namespace.is_none());
/// assert!(K8sConfig::from_url("k8s://ctx/ns/extra").is_err());
/// # Ok::<(), bpg_core::Error>(())
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct K8sConfig {
    /// Kubeconfig context; `None` is the current one.
    pub context: Option<String>,
    /// Namespace applications are created in; `None` is the context's (or the pod's), else
    /// `default`.
    pub namespace: Option<String>,
    /// A kubeconfig file instead of `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Use the pod's service account (no kubeconfig).
    pub in_cluster: bool,
    /// A bearer token replacing the kubeconfig user's credentials (certificates, exec plugins).
    pub token: Option<SecretString>,
}

impl fmt::Debug for K8sConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("K8sConfig")
            .field("context", &self.context)
            .field("namespace", &self.namespace)
            .field("kubeconfig", &self.kubeconfig)
            .field("in_cluster", &self.in_cluster)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Percent-decodes a URL component (`arn%3Aaws%3Aeks...` → `arn:aws:eks...`).
fn percent_decoded(text: &str) -> String {
    // form_urlencoded decodes percent escapes; `+` is escaped first so it stays literal.
    url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

impl K8sConfig {
    /// The current context of the usual kubeconfig, its namespace.
    pub fn new() -> Self {
        K8sConfig::default()
    }

    /// Reads a `k8s://[context][/namespace]` URL (see the type's docs).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed =
            url::Url::parse(url).map_err(|e| Error::config(format!("`{url}`: {e}; {EXPECTED}")))?;
        if parsed.scheme() != "k8s" {
            return Err(Error::config(format!(
                "`{url}`: scheme is `{}`; {EXPECTED}",
                parsed.scheme()
            )));
        }
        if parsed.port().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::config(format!(
                "`{url}`: no port, query or fragment; {EXPECTED}"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::config(format!(
                "`{url}`: credentials do not belong in the URL (a Kubernetes connection authenticates with its kubeconfig, or a token); {EXPECTED}"
            )));
        }
        let segments: Vec<&str> = parsed.path().split('/').filter(|s| !s.is_empty()).collect();
        let namespace = match segments.as_slice() {
            [] => None,
            [ns] => Some(percent_decoded(ns)),
            _ => {
                return Err(Error::config(format!(
                    "`{url}`: more than a namespace after the context; {EXPECTED}"
                )));
            }
        };
        let host = parsed.host_str().map(percent_decoded).unwrap_or_default();
        let mut config = K8sConfig {
            namespace,
            ..K8sConfig::default()
        };
        match host.as_str() {
            "" => {}
            IN_CLUSTER => config.in_cluster = true,
            _ => config.context = Some(host),
        }
        Ok(config)
    }

    /// Sets the context.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Reads this kubeconfig file instead of the usual one.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Authenticates with a bearer token instead of the kubeconfig user's credentials.
    pub fn token(mut self, token: impl Into<SecretString>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Loads the client configuration: the kubeconfig (or the pod's service account), then the
    /// namespace and token set here.
    pub async fn load(&self) -> Result<kube::Config> {
        let mut config = if self.in_cluster {
            if self.kubeconfig.is_some() || self.context.is_some() {
                return Err(Error::config(
                    "`in-cluster` uses the pod's service account, not a kubeconfig or context",
                ));
            }
            kube::Config::incluster()
                .map_err(|e| Error::config(format!("not running in a Kubernetes pod: {e}")))?
        } else {
            let options = KubeConfigOptions {
                context: self.context.clone(),
                ..KubeConfigOptions::default()
            };
            match &self.kubeconfig {
                Some(path) => {
                    let file = Kubeconfig::read_from(path).map_err(|e| {
                        Error::config(format!("cannot read kubeconfig {}: {e}", path.display()))
                    })?;
                    kube::Config::from_custom_kubeconfig(file, &options)
                        .await
                        .map_err(|e| Error::config(format!("kubeconfig {}: {e}", path.display())))?
                }
                None => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| Error::config(format!("cannot load kubeconfig: {e}")))?,
            }
        };
        if let Some(ns) = &self.namespace {
            config.default_namespace = ns.clone();
        }
        if let Some(token) = &self.token {
            config.auth_info = AuthInfo {
                token: Some(token.clone()),
                ..AuthInfo::default()
            };
        }
        Ok(config)
    }
}
