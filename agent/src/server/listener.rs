//! Accepting connections: plain TCP or TLS (certificates re-read when they change), a bound on
//! how long a client may take to send its request, and graceful shutdown. Each request carries
//! the peer address, for per-client limits.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use voice_config::TlsConfig;

/// How often certificate files are checked for changes.
const CERT_RECHECK: Duration = Duration::from_secs(10);
/// After an accept error (e.g. out of file descriptors), wait before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` until `stop` is cancelled, then waits up to `grace` for open HTTP connections.
/// Upgraded WebSocket connections are not waited for here: sessions end on their own terms.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    stop: CancellationToken,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    builder.http2().timer(TokioTimer::new());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request)
            });
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                    Ok(Err(error)) => {
                        debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => {
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(error) = result {
                debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        warn!("HTTP connections still open after the shutdown grace period");
    }
}

/// A TLS acceptor whose certificate follows the files on disk, and the loop that watches them
/// (for the caller to run as long as the acceptor is used).
pub fn tls_acceptor(
    config: &TlsConfig,
) -> Result<(tokio_rustls::TlsAcceptor, impl Future<Output = ()> + Send + 'static), String> {
    let resolver = Arc::new(ReloadingCert::load(config.cert_file.clone(), config.key_file.clone())?);
    let watch = resolver.clone().watch();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // WebSockets run over HTTP/1.1 (browsers do not do WebSockets over HTTP/2 here).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(server)), watch))
}

#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl ReloadingCert {
    fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, String> {
        let key = read_certified_key(&cert_file, &key_file)?;
        let stamp = stamp(&cert_file, &key_file);
        Ok(Self {
            cert_file,
            key_file,
            current: RwLock::new((Arc::new(key), stamp)),
        })
    }

    async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CERT_RECHECK).await;
            let now = stamp(&self.cert_file, &self.key_file);
            let known = self.current.read().unwrap_or_else(|p| p.into_inner()).1;
            if now.is_none() || now == known {
                continue;
            }
            match read_certified_key(&self.cert_file, &self.key_file) {
                Ok(key) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(key), now);
                    info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                }
                // Half-written files during a rotation: keep serving the old certificate.
                Err(error) => warn!(%error, "TLS certificate not reloaded"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone())
    }
}

fn stamp(cert: &PathBuf, key: &PathBuf) -> Option<SystemTime> {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some(modified(cert)?.max(modified(key)?))
}

fn read_certified_key(cert_file: &PathBuf, key_file: &PathBuf) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert_file.display()));
    }
    // The error never includes key material.
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read the private key from {}: {e}", key_file.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| format!("certificate and key do not match: {e}"))
}
