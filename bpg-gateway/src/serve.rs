//! Serving the router over HTTP or HTTPS: one accept loop that hands each connection the
//! caller's address (what [`crate::auth`] trusts proxies by), gives a slow client
//! [`Limits::header_read_timeout`](crate::auth::Limits::header_read_timeout) to send its headers
//! (and its TLS handshake), and drains on shutdown: accepting stops, requests in flight are
//! answered, followed log streams end.
//!
//! [`Tls`] serves HTTPS with rustls from PEM files; [`Tls::reload`] reads them again (as
//! `bpg gateway` does on SIGHUP), and new connections get the new certificate.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bpg_core::Error;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tower::ServiceExt;

/// HTTPS for the gateway: a certificate chain and its key, PEM files, reloadable.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// Where the certificate chain and its private key are (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::config(format!("{}: {what}: {e}", path.display()))
}

fn load(files: &TlsFiles) -> bpg_core::Result<Arc<CertifiedKey>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error(&files.cert, "cannot read the certificate", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(&files.cert, "not a PEM certificate chain", e))?;
    if certs.is_empty() {
        return Err(tls_error(
            &files.cert,
            "no certificate",
            "expected -----BEGIN CERTIFICATE----- blocks",
        ));
    }
    // The key's bytes are never shown: only that it could not be used.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_error(&files.key, "not a PEM private key", e))?;
    let certified = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| tls_error(&files.key, "the key does not fit the certificate", e))?;
    Ok(Arc::new(certified))
}

impl Tls {
    /// Reads the PEM files; an error names the file and what is wrong with it.
    pub fn from_files(files: TlsFiles) -> bpg_core::Result<Tls> {
        let current = Arc::new(CurrentCert(RwLock::new(load(&files)?)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; new connections get the new certificate. On error the one in
    /// place stays.
    pub fn reload(&self) -> bpg_core::Result<()> {
        let fresh = load(&self.files)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<Tls>,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = connection_service(router.clone(), peer);
        let watcher = graceful.watcher();
        let http = http.clone();
        match &tls {
            None => {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended");
                    }
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor.clone();
                tokio::spawn(async move {
                    let Some(stream) = handshake(acceptor, stream, header_read_timeout, peer).await
                    else {
                        return;
                    };
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    within: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake too slow");
            None
        }
    }
}

/// The router for one connection, every request carrying the peer's address.
fn connection_service(
    router: Router,
    peer: SocketAddr,
) -> TowerToHyperService<
    impl tower::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future = impl Send,
    > + Clone,
> {
    TowerToHyperService::new(tower::service_fn(
        move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        },
    ))
}
